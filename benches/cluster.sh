#!/usr/bin/env bash
# Cluster benchmarks (run by hand, not in CI; issues #13 and #14): switchboard nodes in cluster
# mode (`--redis`) against a baseline measured in the same cycle. Loopback only; each case
# starts its own redis-server (free port, temp dir, --save '' --appendonly no) and its own
# nodes (--workers 1, port 0), and stops everything it started when it ends or is interrupted.
#
#   benches/cluster.sh                              every case, 3 cycles (about 12 minutes)
#   CASES=publish,send CYCLES=5 benches/cluster.sh  only these cases
#   CASE_SECS=5                                     measured seconds per run (default 5)
#   OUT=target/cluster/results.json                 raw figures (cases merged into an existing file)
#
# Cases (baseline in brackets):
#   publish   acknowledged publishes/s through one node, WebSocket publish ops pipelined
#             (1 conn x depth 1, 4 conns x depth 16) [redis-benchmark: EVALSHA of the node's own
#             publish script, same keys/args, -c 1 (the node has one command connection per
#             shard) and -P = the client's total in flight, on the same Redis]
#   fanout    10,000 raw subscribers over 2 nodes, serial publisher (WS) on a third: publish ->
#             last delivery p50/p99, deliveries/s [the same on one node, no Redis]
#   scale     100,000 subscribers of one channel over 6 nodes, 6 bench processes, 40 source
#             addresses: handshakes/s, RSS per connection per node, publish -> all 100,000
#             [handshakes and memory: the same 100,000 on 6 nodes without Redis; publish: one
#             node without Redis with one node's share, 16,666 subscribers]
#   presence  10,000 /ws connections with distinct ?user= (with and without ?channel=room, which
#             makes them present there), --presence-ttl 6 (a refresh every 2.5 s): Redis commands
#             and bytes per tick (INFO commandstats/stats deltas), node CPU per tick [idle node]
#   send      POST /users/alice/send on 4 keep-alive connections x 16 pipelined, alice connected
#             to another node: sends/s, every acknowledged send counted at the receiver [one node
#             without Redis, receiver on it]
#   drain     10,000 connections, SIGTERM with --drain-seconds 10: closes per second after the
#             signal, timed at the client [--drain-seconds 0]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
    { echo "needs redis-server and redis-benchmark (apt-get install redis-server)" >&2; exit 2; }
echo "building switchboard and switchboard-bench (release)..." >&2
cargo build --release --quiet --bin switchboard --bin switchboard-bench
# The orchestrator owns every process it starts (and stops them on exit and on signals).
exec python3 benches/cluster.py
