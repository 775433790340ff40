#!/usr/bin/env bash
# Fan-out benchmark (run by hand, not in CI): time from publish until the last of N
# subscribers has the message (p50/p99) and deliveries per second, for N = 1,000 and
# 10,000 subscribers, with --workers 1 and --workers 2. Loopback only.
#
#   benches/broadcast.sh [SECONDS]      (default 10 s of measurement per case)
#
# Serial publishing (the next publish after every subscriber got the previous one) over a
# WebSocket, 32-byte payloads, raw-format subscribers; the first 30 publishes warm the
# connections up (quick-ACK mode) and are left out. Prints one line per case and the
# machine's load average, so disturbed runs can be spotted and discarded.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cargo build --release --quiet --bin switchboard --bin switchboard-bench
srv=./target/release/switchboard
bench=./target/release/switchboard-bench

run_case() {
    local workers=$1 n=$2 out pid addr
    out=$(mktemp)
    "$srv" --listen 127.0.0.1:0 --workers "$workers" --log-level warn --publish-rate 0 >"$out" 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do grep -q '^listening on' "$out" && break; sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$out" | head -n1)
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    local json
    json=$("$bench" broadcast --target "$addr" -n "$n" --publish-mode serial --publish-via ws \
        --size 32 --duration "$secs" --warmup 30 --source 127.0.0.2-127.0.0.60 --quiet --json --server-pid "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true; rm -f "$out"
    python3 - "$workers" "$n" "$load" "$json" <<'PY'
import json, sys
w, n, load, j = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
lat = j["latency_us"]["publish_to_all_us"]
deliv = j["rates"]["deliveries_per_s"]
pubs = j["counters"]["publishes_complete"]
print(f"workers={w} subscribers={n:>6}  publish->last p50={lat['p50']/1000:.2f} ms p99={lat['p99']/1000:.2f} ms"
      f"  deliveries/s={deliv:,.0f}  publishes={pubs}  load1={load}")
PY
}

echo "# $(date -u +%F) $(nproc) cores, $(uname -r); ${secs}s per case"
for workers in 1 2; do
    for n in 1000 10000; do
        run_case "$workers" "$n"
    done
done
