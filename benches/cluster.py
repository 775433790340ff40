#!/usr/bin/env python3
"""Cluster benchmarks (issues #13 and #14), run by benches/cluster.sh; see its header for usage.

Every case starts its own redis-server (a free port, a temp dir, no persistence) and its own
switchboard nodes on 127.0.0.1 (port 0, address read from `listening on`), drives them with
switchboard-bench or redis-benchmark, and stops everything it started: after each case, and
on exit or SIGINT/SIGTERM/SIGHUP (only the processes this script started, by pid). Figures
are ratios against a baseline measured in the same cycle; subject and baseline alternate, the
order flipped every cycle, and medians are taken over the cycles.
"""

import atexit
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRV = os.path.join(ROOT, "target/release/switchboard")
BENCH = os.path.join(ROOT, "target/release/switchboard-bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

STARTED = []  # every Popen this script started, newest last
TMP = tempfile.mkdtemp(prefix="sb-cluster-")


def cleanup():
    for p in reversed(STARTED):
        if p.poll() is None:
            try:
                p.terminate()
            except OSError:
                pass
    deadline = time.time() + 5
    for p in reversed(STARTED):
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    STARTED.clear()
    shutil.rmtree(TMP, ignore_errors=True)


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


atexit.register(cleanup)
for _s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, on_signal)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    STARTED.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=15):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in STARTED:
        STARTED.remove(p)


def cpu_s(pid):
    """utime + stime of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KB


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[7]) / CLK_TCK  # user nice system steal


class Redis:
    def __init__(self):
        self.port = free_port()
        d = tempfile.mkdtemp(dir=TMP)
        self.p = spawn(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", d, "--daemonize", "no",
             "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.cli("PING", check=False) == "PONG":
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        self.url = f"redis://127.0.0.1:{self.port}"

    def cli(self, *args, stdin=None, check=True):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], input=stdin,
                           capture_output=True, text=True, check=check)
        return r.stdout.strip()

    def info(self, section):
        out = {}
        for line in self.cli("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def commandstats(self):
        """{command: calls}"""
        return {k[len("cmdstat_"):]: int(re.search(r"calls=(\d+)", v).group(1))
                for k, v in self.info("commandstats").items()}

    def netbytes(self):
        s = self.info("stats")
        return int(s["total_net_input_bytes"]), int(s["total_net_output_bytes"])

    def stop(self):
        stop(self.p)


class Node:
    def __init__(self, redis=None, node_id=None, workers=1, extra=()):
        out = os.path.join(TMP, f"node-{len(STARTED)}.out")
        args = [SRV, "--listen", "127.0.0.1:0", "--workers", str(workers),
                "--log-level", "warn",
                # The benches measure the server, not the abuse limits.
                "--publish-rate", "0", "--max-channels", "10000000", *extra]
        if redis is not None:
            args += ["--redis", redis.url, "--node-id", node_id or f"n{len(STARTED)}"]
        self.outf = open(out, "w")
        self.p = spawn(args, stdout=self.outf, stderr=subprocess.STDOUT)
        self.pid = self.p.pid
        self.addr = None
        for _ in range(100):
            with open(out) as f:
                m = re.search(r"^listening on (\S+)", f.read(), re.M)
            if m:
                self.addr = m.group(1)
                break
            time.sleep(0.05)
        if not self.addr:
            raise RuntimeError(f"node did not start: {open(out).read()}")
        if redis is not None:
            self.wait_healthy()

    def wait_healthy(self):
        host, port = self.addr.rsplit(":", 1)
        for _ in range(100):
            try:
                with socket.create_connection((host, int(port)), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("node never became healthy (redis link)")

    def stop(self):
        stop(self.p)
        self.outf.close()


def bench(args, timeout=600):
    """Runs switchboard-bench with --json; returns its report (raises on a failed run)."""
    r = subprocess.run([BENCH, *args, "--json", "--quiet"], capture_output=True, text=True,
                       timeout=timeout)
    try:
        j = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"bench failed ({r.returncode}): {r.stderr[-2000:]}")
    j["exit"] = r.returncode
    return j


class Usage:
    """CPU seconds of some processes and of the whole machine over a stretch of time."""

    def __init__(self, pids):
        self.pids = pids
        self.t0 = time.monotonic()
        self.c0 = {k: cpu_s(p) for k, p in pids.items()}
        self.m0 = machine_busy_s()
        self.k0 = self.children()

    @staticmethod
    def children():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def done(self):
        wall = time.monotonic() - self.t0
        used = {k: cpu_s(p) - self.c0[k] for k, p in self.pids.items()}
        client = self.children() - self.k0
        busy = (machine_busy_s() - self.m0) / wall
        # Whatever ran that is not ours: other work on this shared machine.
        others = busy - (sum(used.values()) + client) / wall
        return {"wall_s": wall, "cpu_s": used, "client_cpu_s": client, "machine_busy_cores": busy,
                "others_cores": others}


def ratio(a, b):
    return a / b if a is not None and b else None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def payload(size):
    """The body switchboard-bench sends (modes/broadcast.rs `payload(0, 0, size)`)."""
    s = '{"seq":0,"ts":0,"pad":"'
    return s + "x" * max(0, size - len(s) - 2) + '"}'


# ---------------------------------------------------------------------------------------------
# Case 1: publish throughput, node vs redis-benchmark on the same script


def publish_script():
    src = open(os.path.join(ROOT, "src/hub/redis/scripts.rs")).read()
    return re.search(r'pub const PUBLISH: &str = r#"(.*?)"#;', src, re.S).group(1)


def redis_benchmark(redis, sha, channel, conns, pipeline, n, size):
    keys = [f"sb:{{{channel}}}:m", f"sb:{{{channel}}}:h", f"sb:{{{channel}}}:p"]
    # ARGV as cmds.rs/scripts.rs `publish_args` builds them with the default flags: kind 'j',
    # payload, a 12-letter epoch proposal, --history-size 1000, --history-ttl 300, META_TTL_S
    # 604800, TRIM_PER_PUBLISH 4.
    args = ["redis-benchmark", "-p", str(redis.port), "-c", str(conns), "-P", str(pipeline),
            "-n", str(n), "--csv", "EVALSHA", sha, "3", *keys, "j", payload(size),
            "k2v9x0q7m3ab", "1000", "300", "604800", "4"]
    # A run now and then prints no result row (seen once in ~20 runs on a loaded machine):
    # try again rather than lose the cycle, and say why if it keeps failing.
    for _ in range(3):
        r = subprocess.run(args, capture_output=True, text=True, timeout=300)
        rows = [l for l in r.stdout.splitlines() if l.startswith('"EVALSHA')]
        if rows:
            return float(rows[-1].split('","')[1].strip('"'))
    raise RuntimeError(f"redis-benchmark gave no result: {r.stdout[-300:]!r} {r.stderr[-300:]!r}")


def case_publish(cycles, secs):
    configs = [(1, 1), (4, 16)]  # (connections, depth per connection)
    size = 64
    channel = "bench-pub"
    rows = []
    redis = Redis()
    sha = redis.cli("-x", "SCRIPT", "LOAD", stdin=publish_script())
    node = Node(redis, "pub1")
    try:
        for cycle in range(cycles):
            for conns, depth in configs:
                order = ["node", "redis-benchmark"]
                if cycle % 2:
                    order.reverse()
                res = {"cycle": cycle, "connections": conns, "depth": depth}
                for who in order:
                    u = Usage({"redis": redis.p.pid, "node": node.pid})
                    s0 = redis.commandstats().get("evalsha", 0)
                    if who == "node":
                        j = bench(["publish", "--target", node.addr, "-n", str(conns),
                                   "--depth", str(depth), "--publish-via", "ws",
                                   "--channel", channel, "--size", str(size),
                                   "--duration", str(secs)])
                        rate = j["rates"]["acked_per_s"]
                        errs = {k: v for k, v in j["counters"].items() if k.startswith("error")}
                        res["node_ack_p50_us"] = j["latency_us"]["ack_rtt_us"]["p50"]
                        res["node_errors"] = errs
                    else:
                        n = int(max(20000, (res.get("node_per_s") or 30000) * secs))
                        rate = redis_benchmark(redis, sha, channel, 1, conns * depth, n, size)
                    usage = u.done()
                    calls = redis.commandstats().get("evalsha", 0) - s0
                    res[f"{key(who)}_per_s"] = rate
                    res[f"{key(who)}_usage"] = usage
                    res[f"{key(who)}_evalsha"] = calls
                res["ratio"] = res["node_per_s"] / res["rb_per_s"]
                log(f"publish c={conns} d={depth} cycle {cycle}: node {res['node_per_s']:,.0f}/s "
                    f"redis-benchmark {res['rb_per_s']:,.0f}/s ratio {res['ratio']:.2f}")
                rows.append(res)
    finally:
        node.stop()
        redis.stop()
    summary = []
    for conns, depth in configs:
        rs = [r for r in rows if (r["connections"], r["depth"]) == (conns, depth)]
        per = lambda who, what: med([r[f"{who}_usage"]["cpu_s"][what] / r[f"{who}_usage"]["wall_s"] for r in rs])
        summary.append({
            "connections": conns, "depth": depth, "in_flight": conns * depth,
            "node_per_s": med([r["node_per_s"] for r in rs]),
            "rb_per_s": med([r["rb_per_s"] for r in rs]),
            "ratio": med([r["ratio"] for r in rs]),
            "ratios": [round(r["ratio"], 3) for r in rs],
            "node_run_node_cores": per("node", "node"), "node_run_redis_cores": per("node", "redis"),
            "rb_run_redis_cores": per("rb", "redis"),
            "node_run_client_cores": med([r["node_usage"]["client_cpu_s"] / r["node_usage"]["wall_s"] for r in rs]),
            "rb_run_client_cores": med([r["rb_usage"]["client_cpu_s"] / r["rb_usage"]["wall_s"] for r in rs]),
            "node_run_others_cores": med([r["node_usage"]["others_cores"] for r in rs]),
            "rb_run_others_cores": med([r["rb_usage"]["others_cores"] for r in rs]),
            "node_cpu_us_per_publish": med([r["node_usage"]["cpu_s"]["node"] * 1e6 / (r["node_per_s"] * r["node_usage"]["wall_s"]) for r in rs]),
            "redis_cpu_us_per_publish_node_run": med([r["node_usage"]["cpu_s"]["redis"] * 1e6 / (r["node_per_s"] * r["node_usage"]["wall_s"]) for r in rs]),
            "redis_cpu_us_per_publish_rb_run": med([r["rb_usage"]["cpu_s"]["redis"] * 1e6 / (r["rb_per_s"] * r["rb_usage"]["wall_s"]) for r in rs]),
        })
    return {"rows": rows, "summary": summary}


def key(who):
    return "node" if who == "node" else "rb"


# ---------------------------------------------------------------------------------------------
# Case 2: fan-out to 10,000 over 2 nodes, publisher on a third; baseline one node in memory

SOURCES = "127.0.0.2-127.0.0.41"


def broadcast_figures(j):
    lat = j["latency_us"].get("publish_to_all_us", {})
    c = j["counters"]
    return {"p50_ms": lat.get("p50", 0) / 1000, "p99_ms": lat.get("p99", 0) / 1000,
            "deliveries_per_s": j["rates"]["deliveries_per_s"],
            "complete": c.get("publishes_complete", 0),
            "incomplete": c.get("publishes_incomplete", 0),
            "subscribers": c.get("subscribers_ready", 0), "failures": j.get("failures", {})}


def case_fanout(cycles, secs, n=10000):
    rows = []
    for cycle in range(cycles):
        order = ["cluster", "single"] if cycle % 2 == 0 else ["single", "cluster"]
        res = {"cycle": cycle}
        for who in order:
            args = ["broadcast", "-n", str(n), "--publish-mode", "serial", "--publish-via", "ws",
                    "--size", "32", "--duration", str(3 * secs), "--warmup", "10",
                    "--source", SOURCES, "--channel", "fan", "--connect-timeout", "15"]
            if who == "cluster":
                redis = Redis()
                nodes = [Node(redis, f"fan{i}") for i in range(3)]
                try:
                    j = bench(args + ["--target", nodes[0].addr, "--target", nodes[1].addr,
                                      "--publish-target", nodes[2].addr])
                finally:
                    for nd in nodes:
                        nd.stop()
                    redis.stop()
            else:
                node = Node()
                try:
                    j = bench(args + ["--target", node.addr])
                finally:
                    node.stop()
            res[who] = broadcast_figures(j)
        res["p50_ratio"] = ratio(res["cluster"]["p50_ms"], res["single"]["p50_ms"])
        res["p99_ratio"] = ratio(res["cluster"]["p99_ms"], res["single"]["p99_ms"])
        res["deliveries_ratio"] = ratio(res["cluster"]["deliveries_per_s"], res["single"]["deliveries_per_s"])
        log(f"fanout cycle {cycle}: cluster p50 {res['cluster']['p50_ms']:.1f} ms p99 "
            f"{res['cluster']['p99_ms']:.1f} ms {res['cluster']['deliveries_per_s']:,.0f}/s; single "
            f"p50 {res['single']['p50_ms']:.1f} ms p99 {res['single']['p99_ms']:.1f} ms "
            f"{res['single']['deliveries_per_s']:,.0f}/s")
        rows.append(res)
    summary = {k: med([r[k] for r in rows]) for k in ("p50_ratio", "p99_ratio", "deliveries_ratio")}
    for who in ("cluster", "single"):
        for f in ("p50_ms", "p99_ms", "deliveries_per_s"):
            summary[f"{who}_{f}"] = med([r[who][f] for r in rows])
    return {"rows": rows, "summary": summary}


# ---------------------------------------------------------------------------------------------
# Case 3: 100,000 connections over 6 nodes on one Redis


class Sampler(threading.Thread):
    """RSS and open descriptors of some processes, every 0.5 s."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.samples, self.stopped = pids, [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            t = time.monotonic()
            self.samples.append((t, {p: (rss_kb(p), fds(p)) for p in self.pids}))
            self.stopped.wait(0.5)

    def stop(self):
        self.stopped.set()
        self.join()

    def held(self, pid):
        """Median RSS (KiB) and descriptors while the process held its most descriptors."""
        top = max(s[pid][1] for _, s in self.samples)
        at = [s[pid] for _, s in self.samples if s[pid][1] >= top * 0.999]
        return med([a[0] for a in at]), top


def per_node_memory(nodes, before, sampler, base_fds):
    out = []
    for nd in nodes:
        rss, top = sampler.held(nd.pid)
        conns = top - base_fds[nd.pid]
        out.append({"node": nd.addr, "connections": conns, "rss_before_kb": before[nd.pid],
                    "rss_held_kb": rss,
                    "bytes_per_conn": (rss - before[nd.pid]) * 1024 / conns if conns else None})
    return out


def case_scale(cycles, secs, n=100000, k=6):
    rows = []
    per_node = n // k
    for cycle in range(cycles):
        order = ["cluster", "memory"] if cycle % 2 == 0 else ["memory", "cluster"]
        res = {"cycle": cycle}
        for who in order:
            redis = Redis() if who == "cluster" else None
            nodes = [Node(redis, f"big{i}") for i in range(k)]
            time.sleep(0.5)
            before = {nd.pid: rss_kb(nd.pid) for nd in nodes}
            base_fds = {nd.pid: fds(nd.pid) for nd in nodes}
            sampler = Sampler([nd.pid for nd in nodes])
            sampler.start()
            targets = sum((["--target", nd.addr] for nd in nodes), [])
            try:
                if who == "cluster":
                    # Everything at once: handshakes/s, memory, and publish -> all 100,000.
                    j = bench(["broadcast", "-n", str(n), "--procs", str(k), *targets,
                               "--publish-target", nodes[0].addr, "--publish-via", "ws",
                               "--rate", "1", "--warmup", "3", "--duration", str(max(15, 3 * secs)),
                               "--size", "32", "--ramp-rate", "0", "--connect-timeout", "30",
                               "--channel", "big", "--source", SOURCES, "--drain", "5"])
                    res["cluster"] = {**broadcast_figures(j), "ramp_s": j["ramp_s"],
                                      "opened": j["counters"].get("opened", 0),
                                      "handshakes_per_s": j["rates"]["connects_per_s"]}
                else:
                    # Baseline handshakes and memory: the same 100,000 on 6 nodes in memory.
                    j = bench(["connect", "-n", str(n), "--procs", str(k), *targets,
                               "--path", "/ws?channel=big", "--rate", "0", "--duration", "5",
                               "--connect-timeout", "30", "--source", SOURCES])
                    res["memory"] = {"ramp_s": j["ramp_s"], "opened": j["counters"].get("opened", 0),
                                     "handshakes_per_s": j["rates"]["connects_per_s"],
                                     "failures": j.get("failures", {})}
            finally:
                sampler.stop()
                res[who]["nodes"] = per_node_memory(nodes, before, sampler, base_fds)
                res[who]["bytes_per_conn"] = med([x["bytes_per_conn"] for x in res[who]["nodes"]])
                t0 = time.monotonic()
                for nd in nodes:
                    nd.stop()
                res[who]["teardown_s"] = time.monotonic() - t0
                if redis:
                    redis.stop()
        # Baseline for the publish: one node in memory with one node's share of subscribers.
        node = Node()
        try:
            j = bench(["broadcast", "-n", str(per_node), "--target", node.addr, "--publish-via",
                       "ws", "--rate", "1", "--warmup", "3", "--duration", str(max(15, 3 * secs)), "--size",
                       "32", "--channel", "big", "--source", SOURCES, "--connect-timeout", "15"])
            res["single_share"] = broadcast_figures(j)
        finally:
            node.stop()
        res["handshakes_ratio"] = ratio(res["cluster"]["handshakes_per_s"], res["memory"]["handshakes_per_s"])
        res["bytes_per_conn_ratio"] = ratio(res["cluster"]["bytes_per_conn"], res["memory"]["bytes_per_conn"])
        res["p50_ratio"] = ratio(res["cluster"]["p50_ms"], res["single_share"]["p50_ms"])
        log(f"scale cycle {cycle}: cluster {res['cluster']['opened']} open, "
            f"{res['cluster']['handshakes_per_s']:,.0f} hs/s, {res['cluster']['bytes_per_conn']:.0f} B/conn, "
            f"publish->all p50 {res['cluster']['p50_ms']:.0f} ms ({res['cluster']['complete']} complete); "
            f"memory {res['memory']['handshakes_per_s']:,.0f} hs/s {res['memory']['bytes_per_conn']:.0f} B/conn; "
            f"one node {per_node}: p50 {res['single_share']['p50_ms']:.0f} ms")
        rows.append(res)
    summary = {k2: med([r[k2] for r in rows]) for k2 in ("handshakes_ratio", "bytes_per_conn_ratio", "p50_ratio")}
    for who, f in [("cluster", "handshakes_per_s"), ("cluster", "bytes_per_conn"), ("cluster", "p50_ms"),
                   ("cluster", "p99_ms"), ("memory", "handshakes_per_s"), ("memory", "bytes_per_conn"),
                   ("single_share", "p50_ms"), ("single_share", "p99_ms"), ("cluster", "teardown_s")]:
        summary[f"{who}_{f}"] = med([r[who][f] for r in rows])
    return {"rows": rows, "summary": summary}


# ---------------------------------------------------------------------------------------------
# Case 4: presence refresh of 10,000 users


def redis_window(redis, node, secs):
    c0, b0 = redis.commandstats(), redis.netbytes()
    u = Usage({"node": node.pid, "redis": redis.p.pid})
    time.sleep(secs)
    usage = u.done()
    c1, b1 = redis.commandstats(), redis.netbytes()
    calls = {k: v - c0.get(k, 0) for k, v in c1.items() if v - c0.get(k, 0)}
    return {"calls": calls, "in_bytes": b1[0] - b0[0], "out_bytes": b1[1] - b0[1], **usage}


def case_presence(cycles, secs, n=10000, ttl=6):
    tick = ttl * 5 / 12
    ticks = max(4, round(2 * secs / tick))
    window = ticks * tick
    variants = [("idle", None), ("users", "/ws?user=u{i}"),
                ("users+presence", "/ws?user=u{i}&channel=room")]
    rows = []
    for cycle in range(cycles):
        order = variants if cycle % 2 == 0 else variants[::-1]
        res = {"cycle": cycle}
        for name, path in order:
            redis = Redis()
            node = Node(redis, "pres1", extra=["--presence-ttl", str(ttl)])
            proc = None
            try:
                if path:
                    proc = spawn([BENCH, "connect", "--target", node.addr, "-n", str(n), "--path", path,
                                  "--rate", "5000", "--duration", str(window + 60), "--quiet", "--json",
                                  "--source", SOURCES], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
                    base = fds(node.pid)
                    t_end = time.time() + 30
                    while fds(node.pid) < base + n and time.time() < t_end:
                        time.sleep(0.2)
                    # The joins and registrations of the ramp settle; start on a fresh tick.
                    time.sleep(2 * tick)
                else:
                    time.sleep(tick)
                w = redis_window(redis, node, window)
                w["node_fds"] = fds(node.pid)
                w["ticks"] = ticks
                res[name] = w
            finally:
                if proc:
                    stop(proc, signal.SIGKILL)
                node.stop()
                redis.stop()
        for name, _ in variants[1:]:
            d = {}
            for f in ("in_bytes", "out_bytes"):
                d[f + "_per_tick"] = (res[name][f] - res["idle"][f]) / ticks
            d["commands_per_tick"] = (sum(res[name]["calls"].values()) - sum(res["idle"]["calls"].values())) / ticks
            d["evalsha_per_tick"] = (res[name]["calls"].get("evalsha", 0) - res["idle"]["calls"].get("evalsha", 0)) / ticks
            d["node_cpu_ms_per_tick"] = (res[name]["cpu_s"]["node"] - res["idle"]["cpu_s"]["node"]) * 1000 / ticks
            d["redis_cpu_ms_per_tick"] = (res[name]["cpu_s"]["redis"] - res["idle"]["cpu_s"]["redis"]) * 1000 / ticks
            d["node_cpu_ratio"] = res[name]["cpu_s"]["node"] / max(res["idle"]["cpu_s"]["node"], 0.01)
            res[f"{name}_delta"] = d
            log(f"presence {name} cycle {cycle}: {d['commands_per_tick']:.0f} commands/tick "
                f"({d['evalsha_per_tick']:.0f} EVALSHA), in {d['in_bytes_per_tick']:,.0f} B/tick, "
                f"node CPU {d['node_cpu_ms_per_tick']:.1f} ms/tick, redis {d['redis_cpu_ms_per_tick']:.1f} ms/tick")
        rows.append(res)
    summary = {}
    for name, _ in variants[1:]:
        for f in rows[0][f"{name}_delta"]:
            summary[f"{name}:{f}"] = med([r[f"{name}_delta"][f] for r in rows])
    summary["idle_node_cpu_ms_per_tick"] = med([r["idle"]["cpu_s"]["node"] * 1000 / ticks for r in rows])
    summary["idle_commands_per_tick"] = med([sum(r["idle"]["calls"].values()) / ticks for r in rows])
    summary["idle_in_bytes_per_tick"] = med([r["idle"]["in_bytes"] / ticks for r in rows])
    return {"rows": rows, "summary": summary, "tick_s": tick, "ticks": ticks}


# ---------------------------------------------------------------------------------------------
# Case 5: direct sends through one node to a user on another


def case_send(cycles, secs, conns=4, depth=16):
    rows = []
    for cycle in range(cycles):
        order = ["cluster", "single"] if cycle % 2 == 0 else ["single", "cluster"]
        res = {"cycle": cycle}
        for who in order:
            args = ["publish", "--send-to", "alice", "--publish-via", "http", "-n", str(conns),
                    "--depth", str(depth), "--duration", str(secs), "--drain", "5"]
            if who == "cluster":
                redis = Redis()
                a, b = Node(redis, "send-a"), Node(redis, "send-b")
                try:
                    j = bench(args + ["--target", a.addr, "--receiver", b.addr])
                finally:
                    a.stop()
                    b.stop()
                    redis.stop()
            else:
                node = Node()
                try:
                    j = bench(args + ["--target", node.addr, "--receiver", node.addr])
                finally:
                    node.stop()
            c = j["counters"]
            res[who] = {"sends_per_s": j["rates"]["acked_per_s"], "acked": c.get("acked", 0),
                        "received": c.get("received", 0), "sent": c.get("sent", 0),
                        "errors": {k: v for k, v in c.items() if k.startswith("error")},
                        "ack_p50_us": j["latency_us"]["ack_rtt_us"]["p50"],
                        "bench_errors": j.get("errors", [])}
        res["ratio"] = ratio(res["cluster"]["sends_per_s"], res["single"]["sends_per_s"])
        log(f"send cycle {cycle}: cluster {res['cluster']['sends_per_s']:,.0f}/s "
            f"(acked {res['cluster']['acked']}, received {res['cluster']['received']}); single "
            f"{res['single']['sends_per_s']:,.0f}/s (acked {res['single']['acked']}, received "
            f"{res['single']['received']})")
        rows.append(res)
    summary = {"ratio": med([r["ratio"] for r in rows]),
               "cluster_sends_per_s": med([r["cluster"]["sends_per_s"] for r in rows]),
               "single_sends_per_s": med([r["single"]["sends_per_s"] for r in rows]),
               "all_arrived": all(r[w]["received"] == r[w]["acked"] for r in rows for w in ("cluster", "single"))}
    return {"rows": rows, "summary": summary, "connections": conns, "depth": depth}


# ---------------------------------------------------------------------------------------------
# Case 6: drain


def case_drain(cycles, _secs, n=10000, drain=10):
    rows = []
    for cycle in range(cycles):
        order = [drain, 0] if cycle % 2 == 0 else [0, drain]
        res = {"cycle": cycle}
        for d in order:
            redis = Redis()
            node = Node(redis, "drain1", extra=["--drain-seconds", str(d)])
            try:
                j = bench(["drain", "--target", node.addr, "-n", str(n), "--path", "/ws?channel=d",
                           "--rate", "5000", "--duration", str(drain + 20), "--server-pid",
                           str(node.pid), "--source", SOURCES, "--drain", "1"])
                node.p.wait(timeout=30)
            finally:
                node.stop()
                redis.stop()
            c = j["counters"]
            buckets = {int(k[len("closed_at_s_"):]): v for k, v in c.items() if k.startswith("closed_at_s_")}
            res[f"drain_{d}"] = {"buckets": [buckets.get(s, 0) for s in range(max(buckets, default=0) + 1)],
                                 "ends": {k: v for k, v in c.items() if k.startswith("ended_")},
                                 "still_open": c.get("still_open_at_end", 0),
                                 "closed_before_signal": c.get("closed_before_signal", 0),
                                 "opened": c.get("opened", 0),
                                 "closed_after_signal_us": j["latency_us"].get("closed_after_signal_us"),
                                 "node_exit": node.p.returncode, "errors": j.get("errors", [])}
            log(f"drain {d}s cycle {cycle}: buckets {res[f'drain_{d}']['buckets']} ends {res[f'drain_{d}']['ends']}")
        rows.append(res)
    return {"rows": rows, "n": n, "drain_seconds": drain}


CASES = {"publish": case_publish, "fanout": case_fanout, "scale": case_scale,
         "presence": case_presence, "send": case_send, "drain": case_drain}


def main():
    cases = [c for c in os.environ.get("CASES", ",".join(CASES)).split(",") if c]
    cycles = int(os.environ.get("CYCLES", "3"))
    secs = float(os.environ.get("CASE_SECS", "5"))
    out = os.environ.get("OUT", os.path.join(ROOT, "target/cluster/results.json"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
               "cores": os.cpu_count(), "kernel": os.uname().release, "cycles": cycles,
               "case_secs": secs, "load1_at_start": os.getloadavg()[0], "cases": {}}
    if os.path.exists(out):
        try:
            prev = json.load(open(out))
            results["cases"] = prev.get("cases", {})
        except (OSError, json.JSONDecodeError):
            pass
    for c in cases:
        if c not in CASES:
            sys.exit(f"unknown case {c}; cases: {', '.join(CASES)}")
        log(f"== {c} ({cycles} cycles)")
        t0 = time.monotonic()
        r = CASES[c](cycles, secs)
        r["date"], r["commit"], r["wall_s"] = results["date"], commit, time.monotonic() - t0
        r["load1_at_start"] = results["load1_at_start"]
        results["cases"][c] = r
        json.dump(results, open(out, "w"), indent=1)
        print(json.dumps({c: r.get("summary", r.get("rows"))}, indent=1), flush=True)
    log(f"raw results: {out}")


if __name__ == "__main__":
    main()
