//! Command line: flags into a validated `Config`, and back into flags for child processes.
//!
//! Hand-written (no clap): the flag set is small and the parent must be able to re-emit a
//! config exactly for `--procs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Most source addresses `--source` may expand to.
const MAX_SOURCES: u32 = 1 << 16;
/// Most child processes `--procs` may start.
const MAX_PROCS: u32 = 64;

pub const USAGE: &str = "\
switchboard-bench MODE [options]      load generator for switchboard (loopback only)

Modes:
  connect    open N WebSockets at --rate, hold them --duration, report connect rate,
             failures by cause and (with --server-pid) server RSS and kernel TCP memory
  echo       N connections on /echo, --depth messages in flight each, --size bytes:
             messages/s, MB/s, round-trip latency percentiles
  broadcast  N subscribers on /ws?channel=C&format=raw, one publisher: time from publish
             until every subscriber has it, deliveries/s
  churn      N subscribers that disconnect and resume (since=<last id>) at --rate/s while
             a publisher publishes; checks every client for gaps and duplicates

Common options:
  --target ADDR          server address (IP:port or localhost:port; repeatable; loopback only)
  --source A[-B][,C..]   source IPs to bind, round robin (e.g. 127.0.0.2-127.0.0.200)
  -n, --connections N    connections / subscribers / churning clients   [100]
  --rate R               connect: connects/s; echo: connects/s; broadcast: publishes/s;
                         churn: reconnects/s   [connect/echo 1000, broadcast 100, churn 100]
  --ramp-rate R          connects/s while opening the connections (0 = unlimited)  [1000]
  --duration S           seconds of measurement after all connections are up   [10]
  --connect-timeout S    connect + handshake timeout per connection   [5]
  --drain S              after --duration, wait this long for in-flight messages   [2]
  --path PATH            request path for connect mode   [/ws]
  --server-pid PID       sample the server's VmRSS (and /proc/net/sockstat) during the run
  --json                 print one JSON object on stdout instead of the table
  --quiet                no progress line on stderr
  --procs K              split the work over K processes (re-executes this binary)
  --accept-masked        take masked frames from the server (not RFC 6455): only for the
                         raw TCP echo floor in benches/peers/mio-tcp, which sends the
                         client's frames back unchanged; payloads are left masked

echo:       --size BYTES [64]   --depth D [1]   --text (text frames instead of binary)
broadcast:  --channel NAME [bench-PID]   --size BYTES (payload size) [64]
            --publish-mode serial|rate [rate]   --publish-via http|ws [http]
            --warmup N (the first N publishes are sent but not measured: a new
            connection's first segments are ACKed at once, later ones delayed) [0]
churn:      --channel NAME   --publish-rate R (publishes/s) [100]   --publish-via http|ws
            --churn-start S / --churn-stop S: reconnect only from S to S seconds into the
            run (publishing goes on), so memory can be compared before and after [0 / end]
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Connect,
    Echo,
    Broadcast,
    Churn,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Connect => "connect",
            Mode::Echo => "echo",
            Mode::Broadcast => "broadcast",
            Mode::Churn => "churn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// Next publish only once every subscriber has the previous one.
    Serial,
    /// Publish at `--rate` regardless.
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishVia {
    /// `POST /publish/NAME` on a keep-alive connection.
    Http,
    /// `{"op":"publish",...}` text frames on a `/ws` connection.
    Ws,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub targets: Vec<SocketAddr>,
    pub sources: Vec<IpAddr>,
    pub connections: u64,
    /// The mode's own rate (see USAGE).
    pub rate: f64,
    pub ramp_rate: f64,
    pub duration_us: u64,
    pub connect_timeout_us: u64,
    pub drain_us: u64,
    pub path: String,
    pub server_pid: Option<u32>,
    pub json: bool,
    pub quiet: bool,
    pub procs: u32,
    /// Set only in a child started by `--procs`.
    pub child_index: Option<u32>,
    pub size: usize,
    pub depth: u32,
    pub text: bool,
    pub channel: String,
    pub publish_mode: PublishMode,
    pub publish_via: PublishVia,
    pub publish_rate: f64,
    /// Broadcast: publishes sent but left out of every figure (sequence numbers 1..=N).
    pub warmup_publishes: u64,
    /// Churn: reconnect only between these offsets into the run (µs); publishing goes on.
    pub churn_start_us: u64,
    pub churn_stop_us: Option<u64>,
    pub accept_masked: bool,
}

impl Config {
    /// Whether this process runs the publisher (broadcast, churn): the only process, or child 0.
    pub fn runs_publisher(&self) -> bool {
        !matches!(self.child_index, Some(i) if i != 0)
    }
}

fn secs_to_us(s: f64) -> u64 {
    (s * 1e6) as u64
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Result<Config, String> {
    let mut it = args.iter();
    let mode = match it.next().map(String::as_str) {
        Some("connect") => Mode::Connect,
        Some("echo") => Mode::Echo,
        Some("broadcast") => Mode::Broadcast,
        Some("churn") => Mode::Churn,
        Some("-h" | "--help") | None => return Err(String::new()),
        Some(other) => return Err(format!("unknown mode {other:?}")),
    };
    let mut cfg = Config {
        mode,
        targets: Vec::new(),
        sources: Vec::new(),
        connections: 100,
        rate: match mode {
            Mode::Connect | Mode::Echo => 1000.0,
            Mode::Broadcast | Mode::Churn => 100.0,
        },
        ramp_rate: 1000.0,
        duration_us: 10_000_000,
        connect_timeout_us: 5_000_000,
        drain_us: 2_000_000,
        path: "/ws".into(),
        server_pid: None,
        json: false,
        quiet: false,
        procs: 1,
        child_index: None,
        size: 64,
        depth: 1,
        text: false,
        channel: format!("bench-{}", std::process::id()),
        publish_mode: PublishMode::Rate,
        publish_via: PublishVia::Http,
        publish_rate: 100.0,
        warmup_publishes: 0,
        churn_start_us: 0,
        churn_stop_us: None,
        accept_masked: false,
    };
    let mut rate_given = false;
    let mut ramp_given = false;
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--target" => cfg.targets.push(parse_target(&value()?)?),
            "--source" => cfg.sources.extend(parse_sources(&value()?)?),
            "-n" | "--connections" => cfg.connections = num(flag, &value()?)?,
            "--rate" => {
                cfg.rate = num(flag, &value()?)?;
                rate_given = true;
            }
            "--ramp-rate" => {
                cfg.ramp_rate = num(flag, &value()?)?;
                ramp_given = true;
            }
            "--duration" => cfg.duration_us = secs_to_us(num(flag, &value()?)?),
            "--connect-timeout" => cfg.connect_timeout_us = secs_to_us(num(flag, &value()?)?),
            "--drain" => cfg.drain_us = secs_to_us(num(flag, &value()?)?),
            "--path" => cfg.path = value()?,
            "--server-pid" => cfg.server_pid = Some(num(flag, &value()?)?),
            "--json" => cfg.json = true,
            "--quiet" => cfg.quiet = true,
            "--procs" => cfg.procs = num(flag, &value()?)?,
            "--child-index" => cfg.child_index = Some(num(flag, &value()?)?),
            "--size" => cfg.size = num(flag, &value()?)?,
            "--depth" => cfg.depth = num(flag, &value()?)?,
            "--text" => cfg.text = true,
            "--accept-masked" => cfg.accept_masked = true,
            "--channel" => cfg.channel = value()?,
            "--publish-rate" => cfg.publish_rate = num(flag, &value()?)?,
            "--warmup" => cfg.warmup_publishes = num(flag, &value()?)?,
            "--churn-start" => cfg.churn_start_us = secs_to_us(num(flag, &value()?)?),
            "--churn-stop" => cfg.churn_stop_us = Some(secs_to_us(num(flag, &value()?)?)),
            "--publish-mode" => {
                cfg.publish_mode = match value()?.as_str() {
                    "serial" => PublishMode::Serial,
                    "rate" => PublishMode::Rate,
                    v => return Err(format!("--publish-mode: {v:?} is not serial|rate")),
                }
            }
            "--publish-via" => {
                cfg.publish_via = match value()?.as_str() {
                    "http" => PublishVia::Http,
                    "ws" => PublishVia::Ws,
                    v => return Err(format!("--publish-via: {v:?} is not http|ws")),
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    // In connect and echo mode `--rate` is the connect rate; say so once, here.
    if matches!(mode, Mode::Connect | Mode::Echo) && rate_given && !ramp_given {
        cfg.ramp_rate = cfg.rate;
    }
    if mode == Mode::Broadcast {
        cfg.publish_rate = cfg.rate;
    }
    validate(&cfg)?;
    Ok(cfg)
}

fn num<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a valid number"))
}

fn validate(cfg: &Config) -> Result<(), String> {
    if cfg.targets.is_empty() {
        return Err("at least one --target is required (e.g. --target 127.0.0.1:8080)".into());
    }
    let v6 = cfg.targets.iter().any(SocketAddr::is_ipv6);
    if cfg.targets.iter().any(|t| t.is_ipv6() != v6)
        || cfg.sources.iter().any(|s| s.is_ipv6() != v6)
    {
        return Err("--target and --source must all be IPv4 or all be IPv6".into());
    }
    if cfg.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if !(1..=MAX_PROCS).contains(&cfg.procs) {
        return Err(format!("--procs must be 1..={MAX_PROCS}"));
    }
    if cfg.procs > 1 && cfg.mode == Mode::Broadcast && cfg.publish_mode == PublishMode::Serial {
        return Err(
            "--publish-mode serial needs every subscriber in the publishing process: \
                    use --procs 1 or --publish-mode rate"
                .into(),
        );
    }
    if cfg.duration_us == 0 || cfg.connect_timeout_us == 0 {
        return Err("--duration and --connect-timeout must be positive".into());
    }
    if cfg.mode == Mode::Echo && cfg.depth == 0 {
        return Err("--depth must be at least 1".into());
    }
    if matches!(cfg.mode, Mode::Broadcast | Mode::Churn) {
        if cfg.publish_rate <= 0.0 && cfg.publish_mode == PublishMode::Rate {
            return Err("the publish rate must be positive".into());
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || "-_:.".contains(c);
        if cfg.channel.is_empty() || !cfg.channel.chars().all(ok) {
            return Err("--channel: use letters, digits and - _ : . only".into());
        }
    }
    if cfg.mode == Mode::Churn && cfg.rate < 0.0 {
        return Err("--rate must not be negative".into());
    }
    Ok(())
}

/// The workplace rule: every run targets this machine only.
fn require_loopback(ip: IpAddr, what: &str) -> Result<(), String> {
    if ip.is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{what} {ip} is not a loopback address: switchboard-bench only runs against \
             127.0.0.0/8 or ::1"
        ))
    }
}

/// `IP:port`, `[::1]:port`, `localhost:port`, optionally with a `ws://` prefix and a path.
fn parse_target(text: &str) -> Result<SocketAddr, String> {
    let bare = text.strip_prefix("ws://").unwrap_or(text);
    let bare = bare.split('/').next().unwrap_or(bare);
    let addr = match bare.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let (host, _) = bare
                .rsplit_once(':')
                .ok_or_else(|| format!("--target {text:?}: expected HOST:PORT"))?;
            if host != "localhost" {
                return Err(format!(
                    "--target {text:?}: use an IP literal or localhost (names are not resolved)"
                ));
            }
            bare.to_socket_addrs()
                .map_err(|e| format!("--target {text:?}: {e}"))?
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| format!("--target {text:?}: localhost has no IPv4 address"))?
        }
    };
    require_loopback(addr.ip(), "target")?;
    Ok(addr)
}

/// `A`, `A-B` (inclusive, IPv4) and comma lists of those.
fn parse_sources(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |_| format!("--source {part:?}: not an IP address or A-B range");
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(bad)?;
            let b: Ipv4Addr = b.trim().parse().map_err(bad)?;
            let (lo, hi) = (u32::from(a), u32::from(b));
            if lo > hi || hi - lo >= MAX_SOURCES {
                return Err(format!(
                    "--source {part:?}: range must be ascending and under {MAX_SOURCES} addresses"
                ));
            }
            // Both ends inside 127.0.0.0/8 means everything between is too.
            require_loopback(IpAddr::V4(a), "source")?;
            require_loopback(IpAddr::V4(b), "source")?;
            out.extend((lo..=hi).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
        } else {
            let ip: IpAddr = part.parse().map_err(bad)?;
            require_loopback(ip, "source")?;
            out.push(ip);
        }
    }
    Ok(out)
}

/// The share `i` of `k` gets of `total` (the first `total % k` get one more).
pub fn share(total: u64, i: u32, k: u32) -> u64 {
    let (i, k) = (u64::from(i), u64::from(k.max(1)));
    total / k + u64::from(i < total % k)
}

/// The flags that make child `i` of `cfg.procs` run its share of the work.
pub fn child_args(cfg: &Config, i: u32) -> Vec<String> {
    let k = cfg.procs;
    let mut a: Vec<String> = vec![cfg.mode.name().into()];
    let mut push = |flag: &str, value: String| {
        a.push(flag.into());
        a.push(value);
    };
    for t in &cfg.targets {
        push("--target", t.to_string());
    }
    // Each child gets its own slice of the source addresses when there are enough of them,
    // so no two processes compete for the same (source, target) port space.
    let n_src = cfg.sources.len() as u64;
    let sources: Vec<String> = if n_src >= u64::from(k) {
        let start: u64 = (0..i).map(|j| share(n_src, j, k)).sum();
        cfg.sources
            .iter()
            .skip(start as usize)
            .take(share(n_src, i, k) as usize)
            .map(ToString::to_string)
            .collect()
    } else {
        cfg.sources.iter().map(ToString::to_string).collect()
    };
    if !sources.is_empty() {
        push("--source", sources.join(","));
    }
    push("--connections", share(cfg.connections, i, k).to_string());
    let per_child = |r: f64| if r > 0.0 { r / f64::from(k) } else { r };
    let rate = match cfg.mode {
        Mode::Connect | Mode::Echo | Mode::Churn => per_child(cfg.rate),
        // Only child 0 publishes, at the full rate.
        Mode::Broadcast => cfg.rate,
    };
    push("--rate", rate.to_string());
    push("--ramp-rate", per_child(cfg.ramp_rate).to_string());
    push("--duration", (cfg.duration_us as f64 / 1e6).to_string());
    push(
        "--connect-timeout",
        (cfg.connect_timeout_us as f64 / 1e6).to_string(),
    );
    push("--drain", (cfg.drain_us as f64 / 1e6).to_string());
    push("--path", cfg.path.clone());
    push("--size", cfg.size.to_string());
    push("--depth", cfg.depth.to_string());
    push("--channel", cfg.channel.clone());
    push("--publish-rate", cfg.publish_rate.to_string());
    push("--warmup", cfg.warmup_publishes.to_string());
    push(
        "--churn-start",
        (cfg.churn_start_us as f64 / 1e6).to_string(),
    );
    if let Some(stop) = cfg.churn_stop_us {
        push("--churn-stop", (stop as f64 / 1e6).to_string());
    }
    push(
        "--publish-mode",
        match cfg.publish_mode {
            PublishMode::Serial => "serial",
            PublishMode::Rate => "rate",
        }
        .into(),
    );
    push(
        "--publish-via",
        match cfg.publish_via {
            PublishVia::Http => "http",
            PublishVia::Ws => "ws",
        }
        .into(),
    );
    push("--child-index", i.to_string());
    if cfg.text {
        a.push("--text".into());
    }
    if cfg.accept_masked {
        a.push("--accept-masked".into());
    }
    a.push("--json".into());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn refuses_non_loopback() {
        assert!(parse(&args("connect --target 10.0.0.1:80")).is_err());
        assert!(parse(&args("connect --target 127.0.0.1:80 --source 192.168.0.1")).is_err());
        assert!(parse(&args(
            "connect --target 127.0.0.1:80 --source 127.0.0.2-128.0.0.1"
        ))
        .is_err());
        assert!(parse(&args("connect --target example.com:80")).is_err());
        assert!(parse(&args("connect --target [::1]:80")).is_ok());
        assert!(parse(&args("connect --target localhost:80")).is_ok());
    }

    #[test]
    fn sources_and_shares() {
        let c = parse(&args(
            "connect --target ws://127.0.0.1:9/x --source 127.0.0.2-127.0.0.11 -n 10 --rate 500",
        ))
        .map_err(|e| e.to_string());
        let c = c
            .as_ref()
            .map(|c| (c.sources.len(), c.ramp_rate, c.targets.len()));
        assert_eq!(c, Ok((10, 500.0, 1)));
        assert_eq!(
            (0..3).map(|i| share(10, i, 3)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
    }

    #[test]
    fn child_args_parse_back() {
        let Ok(mut c) = parse(&args(
            "broadcast --target 127.0.0.1:9 --source 127.0.0.2-127.0.0.5 -n 7 --procs 2 \
             --size 100 --warmup 5",
        )) else {
            panic!("parse failed");
        };
        c.procs = 2;
        let child = parse(&child_args(&c, 1)).map_err(|e| e.to_string());
        let child = child.as_ref().map(|k| {
            (
                k.connections,
                k.sources.len(),
                k.size,
                k.child_index,
                k.json,
                k.warmup_publishes,
            )
        });
        assert_eq!(child, Ok((3, 2, 100, Some(1), true, 5)));
    }
}
