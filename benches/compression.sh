#!/usr/bin/env bash
# permessage-deflate benchmark (run by hand, not in CI): one broadcast of ~1 KiB of realistic
# JSON records (`switchboard-bench broadcast --json-records --size 1024`) to N subscribers,
# with the server's --compression on and off, for N = 1,000 and 10,000. Every client offers
# permessage-deflate as browsers do; only the server's flag changes. Loopback only.
#
#   benches/compression.sh [SECONDS]      (default 10 s of measurement per case)
#
# Serial publishing over a WebSocket, raw-format subscribers, --workers 1, the first 30
# publishes left out. Per case: frame bytes received per delivery, publish -> last
# subscriber p50, the server's CPU (share of one core while publishing, and per publish,
# from /proc/PID/stat sampled by the bench once a second), and per subscriber count the
# compression's extra CPU per publish (on - off): if DEFLATE ran per subscriber it would grow
# tenfold from 1,000 to 10,000 subscribers; run once per message it stays flat (or shrinks:
# smaller frames are cheaper to send). Ratios are against the uncompressed run just before.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cargo build --release --quiet --bin switchboard --bin switchboard-bench
srv=./target/release/switchboard
bench=./target/release/switchboard-bench

# run_case N on|off: prints one JSON line of figures.
run_case() {
    local n=$1 comp=$2 out pid addr flag=()
    [ "$comp" = on ] && flag=(--compression)
    out=$(mktemp)
    "$srv" --listen 127.0.0.1:0 --workers 1 --log-level warn --publish-rate 0 "${flag[@]}" >"$out" 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do grep -q '^listening on' "$out" && break; sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$out" | head -n1)
    local load json
    load=$(cut -d' ' -f1 /proc/loadavg)
    json=$("$bench" broadcast --target "$addr" -n "$n" --publish-mode serial --publish-via ws \
        --json-records --size 1024 --compression --duration "$secs" --warmup 30 \
        --source 127.0.0.2-127.0.0.60 --quiet --json --server-pid "$pid")
    # The server's own count of DEFLATE runs and of publishes (warm-up included in both).
    local metrics
    metrics=$(curl -s "http://$addr/metrics")
    kill "$pid"; wait "$pid" 2>/dev/null || true; rm -f "$out"
    python3 - "$n" "$comp" "$load" "$json" "$metrics" <<'PY'
import json, sys
n, comp, load, j = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
m = {l.split()[0]: float(l.split()[1]) for l in sys.argv[5].splitlines() if l and not l.startswith("#") and len(l.split()) == 2}
c = j["counters"]
runs = [s for s in j["memory"]["samples"] if s["label"] == "run" and s.get("cpu_ms") is not None]
ready = [s for s in j["memory"]["samples"] if s["label"] == "ready"][-1]
last = runs[-1]
span_s = last["t_s"] - ready["t_s"]
cpu_share = (last["cpu_ms"] - ready["cpu_ms"]) / 1000 / span_s
publishes = c["published"]
pub_rate = j["rates"]["publishes_per_s"]
print(json.dumps({
    "n": n, "comp": comp, "load1": load,
    "wire_per_delivery": c["wire_bytes"] / max(c["deliveries"], 1),
    "compressed_share": c["compressed_deliveries"] / max(c["deliveries"], 1),
    "p50_ms": j["latency_us"]["publish_to_all_us"]["p50"] / 1000,
    "cpu_share": cpu_share,
    "cpu_us_per_publish": cpu_share * 1e6 / pub_rate if pub_rate else None,
    "publishes": publishes, "pub_rate": pub_rate,
    "deflates_per_publish": m.get("switchboard_compressed_messages_total", 0) / max(m.get("switchboard_broadcasts_total", 0), 1),
}))
PY
}

echo "# $(date -u +%F) $(nproc) cores, $(uname -r); ${secs}s per case; commit $(git rev-parse --short HEAD)"
results=()
for n in 1000 10000; do
    for comp in off on; do
        line=$(run_case "$n" "$comp")
        echo "$line"
        results+=("$line")
    done
done
python3 - "${results[@]}" <<'PY'
import json, sys
rows = [json.loads(a) for a in sys.argv[1:]]
by = {(r["n"], r["comp"]): r for r in rows}
print()
print("| subscribers | compression | bytes/delivery | publish->last p50 | server CPU (one core) | CPU per publish | DEFLATE runs per publish |")
print("|---|---|---|---|---|---|---|")
for (n, comp), r in sorted(by.items()):
    print(f"| {n:,} | {comp} | {r['wire_per_delivery']:.0f} B ({r['compressed_share']:.0%} compressed) | {r['p50_ms']:.2f} ms | {r['cpu_share']:.0%} | {r['cpu_us_per_publish']:.0f} µs | {r['deflates_per_publish']:.2f} |")
print()
for n in sorted({r["n"] for r in rows}):
    off, on = by[(n, "off")], by[(n, "on")]
    ratio = lambda a, b: f"x{a / b:.2f}" if b else "n/a (too few publishes: a longer run)"
    print(f"{n:>6} subscribers: bytes x{on['wire_per_delivery'] / off['wire_per_delivery']:.3f}, "
          f"p50 {ratio(on['p50_ms'], off['p50_ms'])}, CPU per publish {ratio(on['cpu_us_per_publish'], off['cpu_us_per_publish'])}, "
          f"compression's extra CPU per publish {on['cpu_us_per_publish'] - off['cpu_us_per_publish']:+.0f} µs")
PY
