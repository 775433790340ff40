//! Command line: flags into a validated `Config`, and back into flags for child processes.
//!
//! The flags are declared once, with clap's derive, on [`Flags`] (which also makes `--help`);
//! [`Config`] is what the modes read, with the defaults that depend on the mode filled in.
//! `child_args` turns a `Config` back into flags for the children of `--procs`.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};

use clap::error::ErrorKind;

use crate::addrs::{parse_source, parse_target, Sources};
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

/// Most source addresses `--source` may expand to.
/// Most child processes `--procs` may start.
const MAX_PROCS: u32 = 64;
/// `--rate` when not given, in connect and echo mode (connects/s).
const DEFAULT_CONNECT_RATE: f64 = 1000.0;
/// `--rate` when not given, in broadcast (publishes/s) and churn (reconnects/s) mode.
const DEFAULT_MODE_RATE: f64 = 100.0;
/// `--ramp-rate` when neither it nor (in connect and echo mode) `--rate` is given.
const DEFAULT_RAMP_RATE: f64 = 1000.0;

// `--help` headings, in the order of the first flag under each.
const CONNECTIONS: &str = "Connections";
const RUN: &str = "Run and output";
const MESSAGES: &str = "Messages (echo, broadcast)";
const PUBLISHING: &str = "Publishing (broadcast, churn)";
const CHURN: &str = "Churn";

/// `--help`'s text above the usage line: the modes, which the flags' groups refer to.
const ABOUT: &str = "\
switchboard-bench: load generator for switchboard (loopback targets only)

Modes:
  connect    open N WebSockets at --rate, hold them --duration; report connect rate, failures
             by cause and (with --server-pid) server RSS and kernel TCP memory
  echo       N connections on /echo, --depth messages in flight each, --size bytes:
             messages/s, MB/s, round-trip latency percentiles
  broadcast  N subscribers on /ws?channel=C&format=raw, one publisher: time from publish
             until every subscriber has it, deliveries/s
  churn      N subscribers that disconnect and resume (since=<last id>) at --rate/s while
             a publisher publishes; checks every client for gaps and duplicates
  publish    N publishing connections, each keeping --depth publishes in flight (WebSocket
             ops or pipelined HTTP POSTs): acknowledged publishes/s, latency to the ack;
             with --send-to USER, POST /users/USER/send instead, and with --receiver a
             WebSocket as USER that counts what arrives
  drain      N WebSockets, then SIGTERM to --server-pid: when each was closed, in 1 s
             buckets from the signal (for --drain-seconds)";

/// What to run (see [`ABOUT`]). Variants carry no doc comments: clap would print those as a
/// longer `--help` than `-h`, and the modes are described in `ABOUT` already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Connect,
    Echo,
    Broadcast,
    Churn,
    Publish,
    Drain,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Connect => "connect",
            Mode::Echo => "echo",
            Mode::Broadcast => "broadcast",
            Mode::Churn => "churn",
            Mode::Publish => "publish",
            Mode::Drain => "drain",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishMode {
    // (Described in `--publish-mode`'s help; see `Mode` for why not here.)
    Serial,
    Rate,
}

impl PublishMode {
    pub fn name(self) -> &'static str {
        match self {
            PublishMode::Serial => "serial",
            PublishMode::Rate => "rate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishVia {
    // (Described in `--publish-via`'s help; see `Mode` for why not here.)
    Http,
    Ws,
}

impl PublishVia {
    pub fn name(self) -> &'static str {
        match self {
            PublishVia::Http => "http",
            PublishVia::Ws => "ws",
        }
    }
}

/// Every flag as given. `Config` is built from it.
#[derive(Debug, Parser)]
#[command(
    name = "switchboard-bench",
    version,
    about = ABOUT,
    long_about = None,
    override_usage = "switchboard-bench <MODE> --target <ADDR> [OPTIONS]",
    arg_required_else_help = true,
    next_line_help = true
)]
struct Flags {
    /// what to run (see Modes above)
    #[arg(value_enum)]
    mode: Mode,

    /// server address: IP:PORT, [::1]:PORT or localhost:PORT, optionally as ws://ADDR/path;
    /// loopback only. Repeatable (or a comma list): connections go round robin over the
    /// targets, client i to target i mod T
    #[arg(long, value_name = "ADDR", required = true, value_parser = parse_target,
          value_delimiter = ',', help_heading = CONNECTIONS)]
    target: Vec<SocketAddr>,

    /// source IPs to bind, round robin: A, an inclusive range A-B, or a comma list of those
    /// (e.g. 127.0.0.2-127.0.0.200); repeatable
    #[arg(long, value_name = "A[-B][,C..]", value_parser = parse_source, value_delimiter = ',',
          help_heading = CONNECTIONS)]
    source: Vec<Sources>,

    /// connections / subscribers / churning clients
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100, value_parser = num::<u64>,
          help_heading = CONNECTIONS)]
    connections: u64,

    /// connect and echo: connects/s; broadcast: publishes/s; churn: reconnects/s
    /// [default: connect/echo 1000, broadcast/churn 100]
    #[arg(long, value_name = "R", value_parser = num::<f64>, help_heading = CONNECTIONS)]
    rate: Option<f64>,

    /// connects/s while opening the connections (0 = unlimited)
    /// [default: 1000, or --rate in connect and echo mode]
    #[arg(long, value_name = "R", value_parser = num::<f64>, help_heading = CONNECTIONS)]
    ramp_rate: Option<f64>,

    /// connect + handshake timeout per connection, in seconds
    #[arg(long, value_name = "S", default_value_t = 5.0, value_parser = num::<f64>,
          help_heading = CONNECTIONS)]
    connect_timeout: f64,

    /// request path for connect and drain mode; `{i}` in it becomes the client's number
    /// (unique over every process of --procs), e.g. /ws?user=u{i}
    #[arg(long, value_name = "PATH", default_value = "/ws", help_heading = CONNECTIONS)]
    path: String,

    /// take masked frames from the server (not RFC 6455): only for the raw TCP echo floor in
    /// benches/peers/mio-tcp, which sends the client's frames back unchanged; payloads are
    /// left masked
    #[arg(long, help_heading = CONNECTIONS)]
    accept_masked: bool,

    /// offer permessage-deflate (RFC 7692) on every WebSocket, as browsers do; compressed
    /// messages are inflated, and broadcast reports the frame bytes received
    #[arg(long, help_heading = CONNECTIONS)]
    compression: bool,

    /// seconds of measurement after all connections are up
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = num::<f64>,
          help_heading = RUN)]
    duration: f64,

    /// after --duration, wait this long (seconds) for in-flight messages
    #[arg(long, value_name = "S", default_value_t = 2.0, value_parser = num::<f64>,
          help_heading = RUN)]
    drain: f64,

    /// split the work over K processes (re-executes this binary)
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = num::<u32>,
          help_heading = RUN)]
    procs: u32,

    /// sample the server's VmRSS (and /proc/net/sockstat) during the run
    #[arg(long, value_name = "PID", value_parser = num::<u32>, help_heading = RUN)]
    server_pid: Option<u32>,

    /// print one JSON object on stdout instead of the table
    #[arg(long, help_heading = RUN)]
    json: bool,

    /// no progress line on stderr
    #[arg(long, help_heading = RUN)]
    quiet: bool,

    /// set by the parent of --procs in each child it starts
    #[arg(long, hide = true, value_parser = num::<u32>)]
    child_index: Option<u32>,

    /// set by the parent of --procs: the number of this child's first client (for `{i}`)
    #[arg(long, hide = true, default_value_t = 0, value_parser = num::<u64>)]
    client_offset: u64,

    /// echo: message size; broadcast: payload size (bytes)
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = num::<usize>,
          help_heading = MESSAGES)]
    size: usize,

    /// echo, publish: messages (publishes, sends) in flight per connection
    #[arg(long, value_name = "D", default_value_t = 1, value_parser = num::<u32>,
          help_heading = MESSAGES)]
    depth: u32,

    /// echo: text frames instead of binary
    #[arg(long, help_heading = MESSAGES)]
    text: bool,

    /// broadcast: payloads as realistic JSON records (ids, names, prices, timestamps) rather
    /// than a run of padding, for compression figures that mean something
    #[arg(long, help_heading = MESSAGES)]
    json_records: bool,

    /// channel to subscribe and publish to [default: bench-<pid>]
    #[arg(long, value_name = "NAME", help_heading = PUBLISHING)]
    channel: Option<String>,

    /// broadcast: serial = the next publish only once every subscriber has the previous one;
    /// rate = at --rate regardless
    #[arg(long, value_name = "MODE", value_enum, default_value_t = PublishMode::Rate,
          help_heading = PUBLISHING)]
    publish_mode: PublishMode,

    /// how the publisher publishes: http = POST /publish/NAME on a keep-alive connection;
    /// ws = {"op":"publish",...} text frames on a /ws connection
    #[arg(long, value_name = "VIA", value_enum, default_value_t = PublishVia::Http,
          help_heading = PUBLISHING)]
    publish_via: PublishVia,

    /// broadcast: the publisher's server [default: round robin with the subscribers]
    #[arg(long, value_name = "ADDR", value_parser = parse_target, help_heading = PUBLISHING)]
    publish_target: Option<SocketAddr>,

    /// publish: send direct messages to this user (POST /users/USER/send, HTTP) instead of
    /// publishing to --channel
    #[arg(long, value_name = "USER", help_heading = PUBLISHING)]
    send_to: Option<String>,

    /// publish with --send-to: open a WebSocket as the user (/ws?user=USER) on this server
    /// before sending, and count the direct messages it receives
    #[arg(long, value_name = "ADDR", value_parser = parse_target, help_heading = PUBLISHING)]
    receiver: Option<SocketAddr>,

    /// churn: publishes/s (broadcast publishes at --rate)
    #[arg(long, value_name = "R", default_value_t = DEFAULT_MODE_RATE, value_parser = num::<f64>,
          help_heading = PUBLISHING)]
    publish_rate: f64,

    /// broadcast: the first N publishes are sent but not measured (a new connection's first
    /// segments are ACKed at once, later ones delayed)
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = num::<u64>,
          help_heading = PUBLISHING)]
    warmup: u64,

    /// reconnect only from this many seconds into the run (publishing goes on), so memory can
    /// be compared before and after
    #[arg(long, value_name = "S", default_value_t = 0.0, value_parser = num::<f64>,
          help_heading = CHURN)]
    churn_start: f64,

    /// reconnect only until this many seconds into the run [default: the end]
    #[arg(long, value_name = "S", value_parser = num::<f64>, help_heading = CHURN)]
    churn_stop: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub targets: Vec<SocketAddr>,
    pub sources: Vec<IpAddr>,
    pub connections: u64,
    /// The mode's own rate (see `--rate`).
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
    /// Broadcast: realistic JSON payloads (`--json-records`).
    pub json_records: bool,
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
    /// Set only in a child started by `--procs`: its first client's number.
    pub client_offset: u64,
    pub publish_target: Option<SocketAddr>,
    pub send_to: Option<String>,
    pub receiver: Option<SocketAddr>,
    /// Offer permessage-deflate.
    pub compression: bool,
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

/// The clap command for the bench's flags.
pub fn command() -> clap::Command {
    Flags::command().mut_args(|a| {
        // A value may start with '-' (`--rate -1` is refused by validation as before, not
        // taken for an unknown flag).
        if a.get_long().is_some() && a.get_action().takes_values() {
            a.allow_hyphen_values(true)
        } else {
            a
        }
    })
}

/// Parses `args` (without the program name). `--help` and `--version` come back as the error
/// clap prints (`clap::Error::exit` prints them on stdout and exits 0; refusals exit 2).
pub fn parse<I, T>(args: I) -> Result<Config, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv = std::iter::once(OsString::from("switchboard-bench"))
        .chain(args.into_iter().map(Into::into));
    let matches = command().try_get_matches_from(argv)?;
    let flags = Flags::from_arg_matches(&matches)?;
    let cfg = flags.into_config();
    validate(&cfg).map_err(|msg| command().error(ErrorKind::ValueValidation, msg))?;
    Ok(cfg)
}

impl Flags {
    fn into_config(self) -> Config {
        let mode = self.mode;
        let rate = self.rate.unwrap_or(match mode {
            Mode::Connect | Mode::Echo | Mode::Publish | Mode::Drain => DEFAULT_CONNECT_RATE,
            Mode::Broadcast | Mode::Churn => DEFAULT_MODE_RATE,
        });
        // In connect and echo mode `--rate` is the connect rate; say so once, here.
        let ramp_rate = match (self.ramp_rate, self.rate, mode) {
            (Some(r), _, _) => r,
            (None, Some(r), Mode::Connect | Mode::Echo | Mode::Drain) => r,
            (None, _, _) => DEFAULT_RAMP_RATE,
        };
        Config {
            mode,
            targets: self.target,
            sources: self.source.into_iter().flat_map(|s| s.0).collect(),
            connections: self.connections,
            rate,
            ramp_rate,
            duration_us: secs_to_us(self.duration),
            connect_timeout_us: secs_to_us(self.connect_timeout),
            drain_us: secs_to_us(self.drain),
            path: self.path,
            server_pid: self.server_pid,
            json: self.json,
            quiet: self.quiet,
            procs: self.procs,
            child_index: self.child_index,
            size: self.size,
            depth: self.depth,
            text: self.text,
            json_records: self.json_records,
            channel: self
                .channel
                .unwrap_or_else(|| format!("bench-{}", std::process::id())),
            publish_mode: self.publish_mode,
            publish_via: self.publish_via,
            publish_rate: if mode == Mode::Broadcast {
                rate
            } else {
                self.publish_rate
            },
            warmup_publishes: self.warmup,
            churn_start_us: secs_to_us(self.churn_start),
            churn_stop_us: self.churn_stop.map(secs_to_us),
            accept_masked: self.accept_masked,
            client_offset: self.client_offset,
            publish_target: self.publish_target,
            send_to: self.send_to,
            receiver: self.receiver,
            compression: self.compression,
        }
    }
}

/// A number, surrounding blanks allowed.
fn num<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a valid number"))
}

fn validate(cfg: &Config) -> Result<(), String> {
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
    if cfg.mode == Mode::Publish {
        if cfg.depth == 0 {
            return Err("--depth must be at least 1".into());
        }
        if cfg.send_to.is_some() && cfg.publish_via != PublishVia::Http {
            return Err("--send-to sends over HTTP: use --publish-via http".into());
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || "-_:.@".contains(c);
        if cfg
            .send_to
            .as_ref()
            .is_some_and(|u| u.is_empty() || !u.chars().all(ok))
        {
            return Err("--send-to: use letters, digits and - _ : . @ only".into());
        }
        if cfg.receiver.is_some() && cfg.send_to.is_none() {
            return Err("--receiver needs --send-to".into());
        }
    }
    if cfg.mode == Mode::Drain && (cfg.procs != 1 || cfg.server_pid.is_none()) {
        return Err(
            "drain signals the server and times every close from that moment: \
                    it needs --server-pid and --procs 1"
                .into(),
        );
    }
    let v6_extra = [cfg.publish_target, cfg.receiver];
    if v6_extra.iter().flatten().any(|t| t.is_ipv6() != v6) {
        return Err("--publish-target and --receiver must match --target's IP version".into());
    }
    if cfg.mode == Mode::Churn && cfg.rate < 0.0 {
        return Err("--rate must not be negative".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procs::{child_args, share};

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn clap_accepts_the_declarations() {
        command().debug_assert();
    }

    #[test]
    fn defaults_follow_the_mode() {
        let Ok(c) = parse(args("echo --target 127.0.0.1:9")) else {
            panic!("parse failed");
        };
        assert_eq!((c.connections, c.rate, c.ramp_rate), (100, 1000.0, 1000.0));
        assert_eq!(
            (c.duration_us, c.connect_timeout_us, c.drain_us),
            (10_000_000, 5_000_000, 2_000_000)
        );
        assert_eq!(
            (c.size, c.depth, c.procs, c.path.as_str()),
            (64, 1, 1, "/ws")
        );
        assert_eq!(c.channel, format!("bench-{}", std::process::id()));
        let Ok(c) = parse(args("broadcast --target 127.0.0.1:9 --rate 50")) else {
            panic!("parse failed");
        };
        assert_eq!((c.rate, c.publish_rate, c.ramp_rate), (50.0, 50.0, 1000.0));
        assert_eq!(
            (c.publish_mode, c.publish_via),
            (PublishMode::Rate, PublishVia::Http)
        );
        let Ok(c) = parse(args("churn --target 127.0.0.1:9 --churn-stop 2.5")) else {
            panic!("parse failed");
        };
        assert_eq!(
            (c.rate, c.publish_rate, c.churn_stop_us),
            (100.0, 100.0, Some(2_500_000))
        );
    }

    #[test]
    fn refusals() {
        for (line, needle) in [
            ("connect", "--target"),
            ("bogus --target 127.0.0.1:9", "bogus"),
            (
                "connect --target 127.0.0.1:9 --rate fast",
                "\"fast\" is not a valid number",
            ),
            (
                "connect --target 127.0.0.1:9 -n 0",
                "--connections must be at least 1",
            ),
            (
                "connect --target 127.0.0.1:9 --procs 65",
                "--procs must be 1..=64",
            ),
            (
                "echo --target 127.0.0.1:9 --depth 0",
                "--depth must be at least 1",
            ),
            (
                "churn --target 127.0.0.1:9 --rate -1",
                "--rate must not be negative",
            ),
            (
                "broadcast --target 127.0.0.1:9 --channel a/b",
                "--channel: use letters",
            ),
            ("broadcast --target 127.0.0.1:9 --publish-mode fast", "fast"),
            (
                "connect --target 127.0.0.1:9 --target [::1]:9",
                "all be IPv4 or all be IPv6",
            ),
            (
                "connect --target 127.0.0.1:9 --duration 0",
                "must be positive",
            ),
        ] {
            match parse(args(line)) {
                Ok(_) => panic!("{line}: accepted"),
                Err(e) => assert!(e.to_string().contains(needle), "{line}: {e}"),
            }
        }
    }

    #[test]
    fn targets_repeat_and_take_comma_lists() {
        let c = parse(args(
            "connect --target 127.0.0.1:1,127.0.0.1:2 --target ws://localhost:3/ws",
        ))
        .map(|c| c.targets.iter().map(SocketAddr::port).collect::<Vec<_>>())
        .map_err(|e| e.to_string());
        assert_eq!(c, Ok(vec![1, 2, 3]));
    }

    #[test]
    fn refuses_non_loopback() {
        assert!(parse(args("connect --target 10.0.0.1:80")).is_err());
        assert!(parse(args("connect --target 127.0.0.1:80 --source 192.168.0.1")).is_err());
        assert!(parse(args(
            "connect --target 127.0.0.1:80 --source 127.0.0.2-128.0.0.1"
        ))
        .is_err());
        assert!(parse(args("connect --target example.com:80")).is_err());
        assert!(parse(args("connect --target [::1]:80")).is_ok());
        assert!(parse(args("connect --target localhost:80")).is_ok());
    }

    #[test]
    fn sources_and_shares() {
        let c = parse(args(
            "connect --target ws://127.0.0.1:9/x --source 127.0.0.2-127.0.0.6,127.0.0.7 \
             --source 127.0.0.8-127.0.0.11 -n 10 --rate 500",
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
        let Ok(mut c) = parse(args(
            "broadcast --target 127.0.0.1:9 --source 127.0.0.2-127.0.0.5 -n 7 --procs 2 \
             --size 100 --warmup 5",
        )) else {
            panic!("parse failed");
        };
        c.procs = 2;
        let child = parse(child_args(&c, 1)).map_err(|e| e.to_string());
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
