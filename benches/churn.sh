#!/usr/bin/env bash
# Churn benchmark (run by hand, not in CI): N subscribers on one channel keep disconnecting
# and resuming with `since=<last id>` at RATE reconnects/s for SECONDS while a publisher
# publishes 100 messages/s over HTTP. Loopback only; stops by itself.
#
#   benches/churn.sh [SECONDS] [RATE] [N]      (default 60 s, 1,000 reconnects/s, 1,000 clients)
#
# The run is WARM s of steady publishing (history fills: 1,000 messages at 100/s), SECONDS of
# churn, then HOLD s of steady publishing again (a closed connection's timer entry lives up
# to the 30 s ping interval), with the same N clients connected throughout. Verdict: no gap
# and no duplicate in any client's ids, every reconnect resumed from the buffer, and the
# server's RSS at the end within 5% of its RSS just before the churn began. The full report
# is kept in target/churn/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
rate=${2:-1000}
n=${3:-1000}
warm=${WARM:-20}
hold=${HOLD:-40}
cargo build --release --quiet --bin switchboard --bin switchboard-bench
out=$(mktemp)
mkdir -p target/churn
json=target/churn/results.json
./target/release/switchboard --listen 127.0.0.1:0 --workers 1 --log-level warn --publish-rate 0 >"$out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 50); do grep -q '^listening on' "$out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$out" | head -n1)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); load1 $(cut -d' ' -f1 /proc/loadavg)"
./target/release/switchboard-bench churn --target "$addr" -n "$n" --rate "$rate" \
    --duration $((warm + secs + hold)) --churn-start "$warm" --churn-stop $((warm + secs)) \
    --channel churn --publish-rate 100 --source 127.0.0.2-127.0.0.60 \
    --server-pid "$pid" --json >"$json"
python3 - "$json" "$warm" "$secs" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
warm, secs = int(sys.argv[2]), int(sys.argv[3])
c, m = j["counters"], j["memory"]
print(json.dumps({k: c.get(k) for k in [
    "reconnects", "reconnect_failed", "messages", "gaps", "missing_ids", "duplicates",
    "not_recovered", "clients_with_gaps", "clients_never_received", "published"]}))
run = [s for s in m["samples"] if s["label"] == "run"]
print("server RSS KiB during the run (every 5 s):",
      " ".join(str(s["rss_kb"]) for s in run[::5]))
# Run samples come once a second from 1 s in: the one before the churn began, and the last.
base = run[max(0, min(warm - 1, len(run) - 1))]["rss_kb"]
last = run[-1]["rss_kb"]
drift = (last - base) * 100.0 / base
rate = c.get("reconnects", 0) / secs
ok = (c.get("gaps", 1) == 0 and c.get("duplicates", 1) == 0 and c.get("not_recovered", 1) == 0
      and drift is not None and abs(drift) <= 5.0 and not j.get("failures"))
peak = max(s["rss_kb"] for s in run)
print(f"reconnects/s {rate:,.0f}  server RSS before churn {base} KiB, peak {peak} KiB, "
      f"end {last} KiB: {drift:+.1f}%  -> {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
