#!/usr/bin/env bash
# Side-by-side benchmark (run by hand, not in CI): switchboard against baseline servers in
# benches/peers/, loopback only, with switchboard-bench as the client.
#
#   benches/compare.sh                      3 cycles, 5 s per case (about 10 minutes + builds)
#   CYCLES=1 SECONDS=3 benches/compare.sh   a quick pass (about 2.5 minutes + builds)
#   CASES=echo-20B-d1,handshakes benches/compare.sh    only these cases
#   CASES=handshakes CYCLES=12 benches/compare.sh      handshakes alone: a run lasts ~0.4 s
#                                                       and varies ~10%, so take more cycles
#   SB_BEFORE=../old/target/release/switchboard benches/compare.sh
#                                           also an earlier build, with an after/before ratio
#
# Other settings: DISTURBED_CORES (default 0.25; see below), OUT (default
# target/compare/results.json).
#
# Servers:
#   switchboard         --workers 1 (broadcast also --workers 2)
#   tokio-tungstenite   benches/peers/tokio-tungstenite: current-thread runtime, its example's echo,
#                       4 KiB read buffer (tungstenite's advice for many connections; its 128 KiB
#                       default is zeroed on every read: 3x slower at 20 B, 135 KB per idle conn)
#   fastwebsockets      benches/peers/fastwebsockets: current-thread runtime, its example's echo
#   mio-tcp             benches/peers/mio-tcp: the floor, a raw TCP echo after a fixed 101 (the
#                       bench runs with --accept-masked against it, as its echo is the client's
#                       own masked frames)
#   tokio-broadcast     benches/peers/tokio-broadcast: tokio-tungstenite + tokio::sync::broadcast
#                       relay (1 thread, and 2 threads against switchboard --workers 2), 4 KiB
#                       read buffer as above
#   *-defaults          the two tokio peers again with tungstenite's default 128 KiB read
#                       buffer (what code written from its examples runs with); switchboard's
#                       rows get an extra ratio against them, the main ratio stays the tuned one
#
# Cases (each run on a fresh server; servers take turns A B C D, A B C D, ... in every
# cycle, the order rotated from one cycle to the next):
#   echo-20B-d1, echo-20B-d16   100 connections x 20 B, 1 / 16 messages in flight: msgs/s
#   echo-1KiB-d16               100 connections x 1 KiB, 16 in flight: msgs/s
#   echo-16KiB-d16              10 connections x 16 KiB, 16 in flight: msgs/s
#   handshakes                  10,000 connections opened as fast as the client can: connects/s
#   rss-idle                    10,000 idle connections (opened at 5,000/s, held SECONDS):
#                               server RSS growth per connection
#   broadcast                   32 B published (over a WebSocket, serially) to 10,000 raw
#                               subscribers: time from publish to the last subscriber, p50,
#                               after 30 warm-up publishes (runs at least 12 s)
# Ratios are taken within each cycle against a baseline: mio-tcp (echo, rss-idle),
# fastwebsockets (handshakes), tokio-broadcast with the same thread count (broadcast).
#
# Placement: the server is pinned to CPU 0 and the client to CPU 1 (taskset). Two-thread
# broadcast servers get CPUs 0-1, so they share CPU 1 with the client: the machine has 2.
#
# Background load: over every run, the whole machine's busy CPU time (/proc/stat: user, nice,
# system, steal) minus the server's (/proc/PID/stat) and the client's (rusage) own is divided by
# the run's wall time; a run where other processes used more than DISTURBED_CORES cores is
# marked disturbed (the 1-minute load average before the run is recorded too). Medians are
# over every run that completed; the table says how many were disturbed.
#
# Output: one line per run as it goes, a table of medians and ratios at the end, and every
# run's raw figures (with the client's full JSON report) in target/compare/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

# SECONDS is bash's own clock; what the caller exported is still in the environment.
case_secs=$(printenv SECONDS || echo 5)
cycles=${CYCLES:-3}

echo "building switchboard and switchboard-bench (release)..." >&2
cargo build --release --quiet --bin switchboard --bin switchboard-bench
for peer in tokio-tungstenite fastwebsockets mio-tcp tokio-broadcast; do
    echo "building benches/peers/$peer (release)..." >&2
    CARGO_TARGET_DIR=target/peers cargo build --release --quiet \
        --manifest-path "benches/peers/$peer/Cargo.toml"
done
mkdir -p target/compare

CYCLES=$cycles CASE_SECS=$case_secs exec python3 - <<'PY'
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CYCLES = int(os.environ["CYCLES"])
SECS = float(os.environ["CASE_SECS"])
ONLY = [c for c in os.environ.get("CASES", "").split(",") if c]
DISTURBED_CORES = float(os.environ.get("DISTURBED_CORES", "0.25"))
OUT = os.environ.get("OUT", "target/compare/results.json")
HZ = os.sysconf("SC_CLK_TCK")

SB = "target/release/switchboard"
BENCH = "target/release/switchboard-bench"
PEERS = "target/peers/release"
SOURCES = "127.0.0.2-127.0.0.60"
SERVER_CPUS_1, SERVER_CPUS_2, CLIENT_CPUS = "0", "0,1", "1"

# Broadcast: a new connection's first segments are ACKed at once (quick-ACK mode) and later
# ones delayed, so the first publishes cost more (p50 ~57 ms instead of ~45 ms at 10,000 here);
# the first 30 are left out of the figures, and the run is long enough for the slowest peer
# to finish its warm-up and still measure a dozen publishes.
BROADCAST_WARMUP, BROADCAST_MIN_SECS = 30, 12
DEFAULT_BUFFER = ["--read-buffer-size", str(128 * 1024)]

# name: (command without --listen, worker threads)
SERVERS = {
    "switchboard": ([SB, "--workers", "1", "--log-level", "warn", "--publish-rate", "0"], 1),
    "tokio-tungstenite": ([f"{PEERS}/peer-tokio-tungstenite"], 1),
    "fastwebsockets": ([f"{PEERS}/peer-fastwebsockets"], 1),
    "mio-tcp": ([f"{PEERS}/peer-mio-tcp"], 1),
    "switchboard-w1": ([SB, "--workers", "1", "--log-level", "warn", "--publish-rate", "0"], 1),
    "switchboard-w2": ([SB, "--workers", "2", "--log-level", "warn", "--publish-rate", "0"], 2),
    "tokio-broadcast-w1": ([f"{PEERS}/peer-tokio-broadcast", "--workers", "1"], 1),
    "tokio-broadcast-w2": ([f"{PEERS}/peer-tokio-broadcast", "--workers", "2"], 2),
    # The same peers with tungstenite's default 128 KiB read buffer: what a relay or echo
    # written from its examples without tuning runs with.
    "tokio-tungstenite-defaults": ([f"{PEERS}/peer-tokio-tungstenite"] + DEFAULT_BUFFER, 1),
    "tokio-broadcast-w1-defaults": ([f"{PEERS}/peer-tokio-broadcast", "--workers", "1"]
                                    + DEFAULT_BUFFER, 1),
    "tokio-broadcast-w2-defaults": ([f"{PEERS}/peer-tokio-broadcast", "--workers", "2"]
                                    + DEFAULT_BUFFER, 2),
}
ECHO_SERVERS = ["switchboard", "tokio-tungstenite", "fastwebsockets", "mio-tcp",
                "tokio-tungstenite-defaults"]
BROADCAST_SERVERS = ["switchboard-w1", "tokio-broadcast-w1", "tokio-broadcast-w1-defaults",
                     "switchboard-w2", "tokio-broadcast-w2", "tokio-broadcast-w2-defaults"]

# SB_BEFORE=path/to/another/switchboard: an earlier build runs in the same cycles, and
# switchboard's rows get a ratio against it (before/after a change, on one noisy machine).
SB_BEFORE = os.environ.get("SB_BEFORE")
if SB_BEFORE:
    SERVERS["switchboard-before"] = ([SB_BEFORE, "--workers", "1", "--log-level", "warn"], 1)
    for w in (1, 2):
        SERVERS[f"switchboard-before-w{w}"] = (
            [SB_BEFORE, "--workers", str(w), "--log-level", "warn"], w)
    ECHO_SERVERS.insert(1, "switchboard-before")
    BROADCAST_SERVERS += ["switchboard-before-w1", "switchboard-before-w2"]


def dig(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


# Extra ratios printed for switchboard's rows: against every peer, same cycle.
def ALSO_ECHO(server):
    if server != "switchboard":
        return []
    before = ["switchboard-before"] if SB_BEFORE else []
    return ["tokio-tungstenite", "tokio-tungstenite-defaults", "fastwebsockets"] + before


def ALSO_BROADCAST(server):
    if not server.startswith("switchboard"):
        return []
    w = SERVERS[server][1]
    before = [f"switchboard-before-w{w}"] if SB_BEFORE and "before" not in server else []
    return [f"tokio-broadcast-w{w}-defaults"] + before


def echo_case(name, n, size, depth):
    def args(server, pid):
        a = ["echo", "-n", str(n), "--size", str(size), "--depth", str(depth),
             "--duration", str(SECS)]
        return a + (["--accept-masked"] if server == "mio-tcp" else [])

    def check(r):
        c = r.get("counters", {})
        return c.get("messages", 0) > 0 and c.get("mismatched", 1) == 0 and not r.get("failures")

    return dict(name=name, servers=ECHO_SERVERS, baseline=lambda s: "mio-tcp",
                baseline_label="mio-tcp", also=ALSO_ECHO, args=args,
                metric=lambda r: dig(r, "rates", "messages_per_s"), unit="msgs/s",
                higher_better=True, check=check)


def connect_check(r):
    return dig(r, "counters", "opened") == 10000 and not r.get("failures")


CASE_LIST = [
    echo_case("echo-20B-d1", 100, 20, 1),
    echo_case("echo-20B-d16", 100, 20, 16),
    echo_case("echo-1KiB-d16", 100, 1024, 16),
    echo_case("echo-16KiB-d16", 10, 16384, 16),
    dict(name="handshakes", servers=ECHO_SERVERS, baseline=lambda s: "fastwebsockets",
         baseline_label="fastwebsockets",
         args=lambda s, pid: ["connect", "-n", "10000", "--rate", "0", "--duration", "1",
                              "--path", "/echo", "--source", SOURCES],
         metric=lambda r: dig(r, "rates", "connects_per_s"), unit="connects/s",
         higher_better=True, check=connect_check),
    dict(name="rss-idle", servers=ECHO_SERVERS, baseline=lambda s: "mio-tcp",
         baseline_label="mio-tcp",
         args=lambda s, pid: ["connect", "-n", "10000", "--ramp-rate", "5000",
                              "--duration", str(SECS), "--path", "/echo", "--source", SOURCES,
                              "--server-pid", str(pid)],
         metric=lambda r: dig(r, "memory", "server_rss_bytes_per_conn"), unit="B/conn",
         higher_better=False, check=connect_check),
    dict(name="broadcast", servers=BROADCAST_SERVERS,
         baseline=lambda s: f"tokio-broadcast-w{SERVERS[s][1]}",
         baseline_label="tokio-broadcast with as many threads", also=ALSO_BROADCAST,
         args=lambda s, pid: ["broadcast", "-n", "10000", "--publish-mode", "serial",
                              "--publish-via", "ws", "--size", "32",
                              "--duration", str(max(SECS, BROADCAST_MIN_SECS)),
                              "--warmup", str(BROADCAST_WARMUP),
                              "--ramp-rate", "0", "--source", SOURCES],
         metric=lambda r: dig(r, "latency_us", "publish_to_all_us", "p50"), unit="us to last",
         higher_better=False,
         check=lambda r: (dig(r, "counters", "publishes_complete") or 0) > 0
         and dig(r, "counters", "subscribers_ready") == 10000 and not r.get("failures")),
]
CASES = [c for c in CASE_LIST if not ONLY or c["name"] in ONLY]


def cpu_busy_ticks():
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, fields[1:9])
    # irq/softirq left out: loopback traffic's own packet processing lands there.
    return user + nice + system + steal


def proc_cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def loadavg1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def start_server(name):
    cmd, workers = SERVERS[name]
    cpus = SERVER_CPUS_2 if workers > 1 else SERVER_CPUS_1
    full = ["taskset", "-c", cpus] + cmd + ["--listen", "127.0.0.1:0"]
    out = tempfile.NamedTemporaryFile("w+", prefix="compare-srv-", delete=False)
    proc = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        out.seek(0)
        for line in out.read().splitlines():
            if line.startswith("listening on "):
                return proc, line.split()[-1], full, out
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_server(proc, out)
    raise RuntimeError(f"{name} did not start: {' '.join(full)}")


def stop_server(proc, out):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out.close()
    os.unlink(out.name)


def run_client(cmd, timeout):
    """Runs the client; returns (exit status, stdout, stderr, its CPU seconds)."""
    err = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        killer.cancel()
    err.seek(0)
    return proc.returncode, stdout, err.read(), usage.ru_utime + usage.ru_stime


def one_run(case, server, cycle):
    load = loadavg1()
    proc, addr, server_cmd, out = start_server(server)
    try:
        client = (["taskset", "-c", CLIENT_CPUS, BENCH] + case["args"](server, proc.pid)
                  + ["--target", addr, "--json", "--quiet"])
        busy0, srv0, t0 = cpu_busy_ticks(), proc_cpu_ticks(proc.pid), time.time()
        status, stdout, stderr, client_cpu = run_client(client, timeout=SECS * 4 + 90)
        busy1, srv1, t1 = cpu_busy_ticks(), proc_cpu_ticks(proc.pid), time.time()
    finally:
        stop_server(proc, out)
    wall = t1 - t0
    server_cpu = (srv1 - srv0) / HZ if srv0 is not None and srv1 is not None else 0.0
    background = max(0.0, (busy1 - busy0) / HZ - server_cpu - client_cpu) / max(wall, 1e-9)
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report = None
    value = case["metric"](report) if report else None
    valid = status == 0 and report is not None and value is not None and case["check"](report)
    return dict(cycle=cycle, case=case["name"], server=server, value=value, unit=case["unit"],
                valid=valid, exit_status=status, wall_s=round(wall, 3),
                server_cpu_s=round(server_cpu, 3), client_cpu_s=round(client_cpu, 3),
                background_cores=round(background, 3), loadavg1_before=load,
                disturbed=background > DISTURBED_CORES, server_command=server_cmd,
                client_command=client, client_stderr=stderr[-2000:], report=report)


def ratios_against(runs, case, mine, base_name):
    """Per cycle: each of `mine`'s values over base_name's valid value in the same cycle."""
    out = []
    for r in mine:
        base = [b for b in runs if b["case"] == case["name"] and b["valid"]
                and b["server"] == base_name and b["cycle"] == r["cycle"]]
        if base and base[0]["value"]:
            out.append(r["value"] / base[0]["value"])
    return out


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def main():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uname = os.uname()
    rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                         text=True).stdout.strip()
    meta = dict(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), git=rev,
                kernel=uname.release, cpus=os.cpu_count(), cycles=CYCLES, seconds=SECS,
                disturbed_cores=DISTURBED_CORES, server_cpus=SERVER_CPUS_1,
                client_cpus=CLIENT_CPUS, cases=[c["name"] for c in CASES])
    print(f"# {meta['date']} {rev} {meta['cpus']} cpus, kernel {uname.release}; "
          f"{CYCLES} cycles, {SECS:g} s per case; disturbed above {DISTURBED_CORES} cores "
          f"of background load", flush=True)
    runs = []
    started = time.time()
    for cycle in range(CYCLES):
        for case in CASES:
            servers = case["servers"]
            k = cycle % len(servers)
            for server in servers[k:] + servers[:k]:
                try:
                    r = one_run(case, server, cycle)
                except RuntimeError as e:
                    r = dict(cycle=cycle, case=case["name"], server=server, value=None,
                             unit=case["unit"], valid=False, error=str(e))
                runs.append(r)
                flag = "" if r["valid"] else "  FAILED"
                if r.get("disturbed"):
                    flag += "  DISTURBED"
                print(f"cycle {cycle + 1} {case['name']:<15} {server:<28} "
                      f"{fmt(r['value']):>12} {case['unit']:<10} "
                      f"bg {r.get('background_cores', 0):.2f} cores, "
                      f"load1 {r.get('loadavg1_before', 0):.2f}{flag}", flush=True)
                time.sleep(0.5)
    meta["elapsed_s"] = round(time.time() - started, 1)

    summary = []
    lines = ["", f"{'case':<15} {'server':<28} {'median':>12} {'unit':<10} "
                 f"{'ratio':>6}  {'per cycle':<22} {'runs':>5} {'disturbed':>9}"]
    for case in CASES:
        base_of = case["baseline"]
        better = "higher" if case["higher_better"] else "lower"
        for server in case["servers"]:
            mine = [r for r in runs if r["case"] == case["name"] and r["server"] == server]
            ok = [r for r in mine if r["valid"]]
            values = [r["value"] for r in ok]
            ratios = ratios_against(runs, case, ok, base_of(server))
            row = dict(case=case["name"], server=server, baseline=base_of(server),
                       unit=case["unit"], better=better,
                       median=statistics.median(values) if values else None,
                       ratio_median=statistics.median(ratios) if ratios else None,
                       ratios=ratios, values=values, runs=len(mine), valid=len(ok),
                       disturbed=sum(1 for r in mine if r.get("disturbed")))
            summary.append(row)
            per_cycle = " ".join(f"{x:.2f}" for x in ratios)
            lines.append(f"{case['name']:<15} {server:<28} {fmt(row['median']):>12} "
                         f"{case['unit']:<10} {fmt(row['ratio_median']):>6}  {per_cycle:<22} "
                         f"{row['valid']:>2}/{row['runs']:<2} {row['disturbed']:>9}")
            for other in case.get("also", lambda s: [])(server):
                extra = ratios_against(runs, case, ok, other)
                row.setdefault("also", {})[other] = dict(
                    ratio_median=statistics.median(extra) if extra else None, ratios=extra)
                lines.append(f"{'':<15} {'  vs ' + other:<41} {'':<10} "
                             f"{fmt(statistics.median(extra) if extra else None):>6}  "
                             f"{' '.join(f'{x:.2f}' for x in extra)}")
        lines.append(f"{'':<15} ratio = server / {case['baseline_label']} "
                     f"(same cycle); {better} is better")
    print("\n".join(lines))
    os.makedirs(os.path.dirname(OUT) or ".", exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(dict(meta=meta, summary=summary, runs=runs), f, indent=1)
    print(f"\nraw results: {OUT}  ({meta['elapsed_s']:.0f} s)")
    bad = sum(1 for r in runs if not r["valid"])
    if bad:
        print(f"{bad} run(s) failed; see client_stderr in {OUT}", file=sys.stderr)
        sys.exit(1)


main()
PY
