//! The command line and the environment: every flag declared once, on [`Flags`], which clap
//! parses, reads from its variable and prints in `--help` (grouped by topic, with its
//! default and variable) from the same attributes.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::parsers::*;
use super::redis_url::RedisUrl;
use super::values::*;

// `--help` headings. clap lists them in the order of the first flag under each, so the
// fields of `Flags` are grouped in this order; cluster flags get a "Cluster" heading of their
// own, after "History".
const LISTENING: &str = "Listening";
const WEBSOCKET: &str = "WebSocket";
const LIMITS: &str = "Limits";
const TIMEOUTS: &str = "Heartbeats and timeouts";
const HISTORY: &str = "History";
const CLUSTER: &str = "Cluster";
const SECURITY: &str = "Security";
const LOGGING: &str = "Logging";

/// Every flag, as the command line and the environment give it. One-paragraph doc comments
/// only: a second paragraph would make clap print a different, longer `--help` than `-h`.
#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "switchboard: a real-time WebSocket server",
    long_about = None,
    after_help = "Every flag can also come from the environment variable shown; repeatable flags \
                  take a comma-separated list there. The command line wins over the environment.",
    next_line_help = true
)]
struct Flags {
    /// address to listen on (repeatable; port 0 picks a free port)
    #[arg(long, value_name = "ADDR", env = "SWITCHBOARD_LISTEN", help_heading = LISTENING,
          default_value = DEFAULT_LISTEN, value_parser = listen_item, value_delimiter = ',')]
    listen: Vec<Option<SocketAddr>>,

    /// event-loop threads, each with its own listener (SO_REUSEPORT) and connections
    #[arg(long, value_name = "N", env = "SWITCHBOARD_WORKERS", help_heading = LISTENING,
          value_parser = range::<1, MAX_WORKERS>)]
    workers: Option<usize>,

    /// WebSocket subprotocol to accept, in order of preference (repeatable)
    #[arg(long, value_name = "NAME", env = "SWITCHBOARD_SUBPROTOCOL", help_heading = WEBSOCKET,
          value_parser = list_item, value_delimiter = ',')]
    subprotocol: Vec<Option<String>>,

    /// accept permessage-deflate (RFC 7692) when a client offers it: compressed messages,
    /// CPU for bandwidth (off: every client is answered uncompressed)
    #[arg(long, env = "SWITCHBOARD_COMPRESSION", help_heading = WEBSOCKET)]
    compression: bool,

    /// with --compression, messages smaller than this go out uncompressed
    #[arg(long, value_name = "N", env = "SWITCHBOARD_COMPRESSION_MIN_BYTES",
          help_heading = WEBSOCKET, default_value_t = DEFAULT_COMPRESSION_MIN_BYTES,
          value_parser = range::<0, MAX_BYTES_LIMIT>)]
    compression_min_bytes: usize,

    /// open connections before new ones get 503
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_CONNECTIONS", help_heading = LIMITS,
          value_parser = range::<1, { usize::MAX }>)]
    max_connections: Option<usize>,

    /// largest HTTP request head (431 above)
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_HEADER_BYTES", help_heading = LIMITS,
          default_value_t = DEFAULT_MAX_HEADER_BYTES,
          value_parser = range::<256, MAX_HEADER_BYTES_LIMIT>)]
    max_header_bytes: usize,

    /// largest WebSocket message, all fragments (close 1009 above); also the largest HTTP
    /// body (413)
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_MESSAGE_BYTES", help_heading = LIMITS,
          default_value_t = DEFAULT_MAX_MESSAGE_BYTES,
          value_parser = range::<125, MAX_BYTES_LIMIT>)]
    max_message_bytes: usize,

    /// queued output per connection; above it a reader is paused or a subscriber cut off (1008)
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_OUTBOUND_BYTES", help_heading = LIMITS,
          default_value_t = DEFAULT_MAX_OUTBOUND_BYTES,
          value_parser = range::<1024, MAX_BYTES_LIMIT>)]
    max_outbound_bytes: usize,

    /// channels one connection may subscribe to
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_SUBSCRIPTIONS", help_heading = LIMITS,
          default_value_t = DEFAULT_MAX_SUBSCRIPTIONS,
          value_parser = range::<1, MAX_SUBSCRIPTIONS_LIMIT>)]
    max_subscriptions: usize,

    /// live channels (with subscribers or history) before new ones are refused
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_CHANNELS", help_heading = LIMITS,
          default_value_t = DEFAULT_MAX_CHANNELS, value_parser = range::<1, MAX_CHANNELS_LIMIT>)]
    max_channels: usize,

    /// open connections per client address (an IPv6 /64 counts as one); 0: no limit
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP",
          help_heading = LIMITS, default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP,
          value_parser = rate)]
    max_connections_per_ip: u32,

    /// new connections per client address per second (also the burst); 0: no limit
    #[arg(long, value_name = "N", env = "SWITCHBOARD_CONNECT_RATE", help_heading = LIMITS,
          default_value_t = DEFAULT_CONNECT_RATE, value_parser = rate)]
    connect_rate: u32,

    /// count loopback clients against the per-address limits too (by default a local proxy
    /// or load generator is not limited)
    #[arg(long, env = "SWITCHBOARD_LIMIT_LOOPBACK", help_heading = LIMITS)]
    limit_loopback: bool,

    /// publishes per connection per second, WebSocket and HTTP (API-key requests are not
    /// limited); 0: no limit
    #[arg(long, value_name = "N", env = "SWITCHBOARD_PUBLISH_RATE", help_heading = LIMITS,
          default_value_t = DEFAULT_PUBLISH_RATE, value_parser = rate)]
    publish_rate: u32,

    /// publishes a connection may make at once before the rate applies
    #[arg(long, value_name = "N", env = "SWITCHBOARD_PUBLISH_BURST", help_heading = LIMITS,
          value_parser = rate)]
    publish_burst: Option<u32>,

    /// ping a connection that has been silent this long (SSE: a comment)
    #[arg(long, value_name = "SECONDS", env = "SWITCHBOARD_PING_INTERVAL", help_heading = TIMEOUTS,
          default_value_t = DEFAULT_PING_INTERVAL_S, value_parser = secs)]
    ping_interval: u64,

    /// close a connection that sent nothing (no data, no pong) this long; must be longer than
    /// --ping-interval
    #[arg(long, value_name = "SECONDS", env = "SWITCHBOARD_IDLE_TIMEOUT", help_heading = TIMEOUTS,
          default_value_t = DEFAULT_IDLE_TIMEOUT_S, value_parser = secs)]
    idle_timeout: u64,

    /// time allowed for an HTTP request head (also the keep-alive idle time)
    #[arg(long, value_name = "SECONDS", env = "SWITCHBOARD_HANDSHAKE_TIMEOUT",
          help_heading = TIMEOUTS, default_value_t = DEFAULT_HANDSHAKE_TIMEOUT_S,
          value_parser = secs)]
    handshake_timeout: u64,

    /// time a closing connection gets to answer our Close before it is dropped
    #[arg(long, value_name = "SECONDS", env = "SWITCHBOARD_CLOSE_TIMEOUT", help_heading = TIMEOUTS,
          default_value_t = DEFAULT_CLOSE_TIMEOUT_S, value_parser = secs)]
    close_timeout: u64,

    /// on SIGTERM/SIGINT, time to flush and finish close handshakes before exit
    #[arg(long, value_name = "SECONDS", env = "SWITCHBOARD_SHUTDOWN_TIMEOUT",
          help_heading = TIMEOUTS, default_value_t = DEFAULT_SHUTDOWN_TIMEOUT_S,
          value_parser = secs)]
    shutdown_timeout: u64,

    /// on SIGTERM, close connections spread evenly over this many seconds (with jitter) instead
    /// of all at once, so a rolling restart does not move every client in the same second;
    /// 0 closes all at once
    #[arg(long, value_name = "SECONDS", env = "SWITCHBOARD_DRAIN_SECONDS",
          help_heading = TIMEOUTS, default_value_t = 0, value_parser = drain_secs)]
    drain_seconds: u64,

    /// a long-poll (GET /poll) with nothing new answers with no messages after this
    #[arg(long, value_name = "SECONDS", env = "SWITCHBOARD_POLL_TIMEOUT", help_heading = TIMEOUTS,
          default_value_t = DEFAULT_POLL_TIMEOUT_S, value_parser = secs)]
    poll_timeout: u64,

    /// messages kept per channel for resume (since=) and GET /history
    #[arg(long, value_name = "N", env = "SWITCHBOARD_HISTORY_SIZE", help_heading = HISTORY,
          default_value_t = DEFAULT_HISTORY_SIZE, value_parser = range::<0, MAX_HISTORY_SIZE>)]
    history_size: usize,

    /// how long a message stays in history
    #[arg(long, value_name = "SECONDS", env = "SWITCHBOARD_HISTORY_TTL", help_heading = HISTORY,
          default_value_t = DEFAULT_HISTORY_TTL_S, value_parser = secs)]
    history_ttl: u64,

    /// bytes all channels' history may hold together (what it really costs: payloads,
    /// frames, structures); past it the oldest history goes first. KiB/MiB/GiB suffixes
    #[arg(long, value_name = "BYTES", env = "SWITCHBOARD_HISTORY_MAX_BYTES",
          help_heading = HISTORY, default_value = "256MiB",
          value_parser = bytes::<MIN_HISTORY_MAX_BYTES, MAX_BYTES_LIMIT>)]
    history_max_bytes: usize,

    /// a Redis server for cluster mode (repeatable: several are shards, a channel belongs to
    /// one by a hash of its name): redis://[[user]:pass@]host[:port][/db] or
    /// unix:///path[?db=N&password=P]; without it the node keeps everything in memory
    #[arg(long, value_name = "URL", env = "SWITCHBOARD_REDIS", help_heading = CLUSTER,
          value_parser = redis_url, value_delimiter = ',')]
    redis: Vec<Option<RedisUrl>>,

    /// cluster mode: how long a user stays present (and in the registry) without its node's
    /// heartbeat, so the users of a node that died go offline by themselves within it
    #[arg(long, value_name = "SECONDS", env = "SWITCHBOARD_PRESENCE_TTL", help_heading = CLUSTER,
          default_value_t = DEFAULT_PRESENCE_TTL_S, value_parser = secs)]
    presence_ttl: u64,

    /// this node's name in logs, metrics and the connection registry
    #[arg(long, value_name = "NAME", env = "SWITCHBOARD_NODE_ID", help_heading = CLUSTER,
          value_parser = node_id)]
    node_id: Option<String>,

    /// Origin accepted for upgrades (repeatable; others get 403); also enables CORS for them
    #[arg(long, value_name = "ORIGIN", env = "SWITCHBOARD_ALLOWED_ORIGIN", help_heading = SECURITY,
          value_parser = list_item, value_delimiter = ',')]
    allowed_origin: Vec<Option<String>>,

    /// connection tokens (JWT) signed with this HS256 secret (at least 32 bytes) are required
    /// on /ws, /sse and /poll
    #[arg(long, value_name = "SECRET", env = "SWITCHBOARD_TOKEN_SECRET",
          help_heading = SECURITY, value_parser = secret, conflicts_with = "token_secret_file")]
    token_secret: Option<Secret>,

    /// the HS256 secret, read from this file at start (so it stays out of `ps`)
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_TOKEN_SECRET_FILE",
          help_heading = SECURITY, value_parser = file)]
    token_secret_file: Option<PathBuf>,

    /// connection tokens signed with the private key of this PEM public key (RS256: RSA of at
    /// least 2048 bits; ES256: P-256) are required on /ws, /sse and /poll
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_TOKEN_PUBLIC_KEY",
          help_heading = SECURITY, value_parser = file)]
    token_public_key: Option<PathBuf>,

    /// tokens must name this audience in `aud` (without it, a token with `aud` is refused)
    #[arg(long, value_name = "AUD", env = "SWITCHBOARD_TOKEN_AUDIENCE",
          help_heading = SECURITY, value_parser = non_empty)]
    token_audience: Option<String>,

    /// the HTTP API (/publish, /history, /presence, /users) needs Authorization: Bearer KEY
    /// (or, with tokens on, a user token its claims allow)
    #[arg(long, value_name = "KEY", env = "SWITCHBOARD_API_KEY", help_heading = SECURITY,
          value_parser = secret, conflicts_with = "publish_token")]
    api_key: Option<Secret>,

    /// the same as --api-key (its former name)
    #[arg(long, value_name = "KEY", env = "SWITCHBOARD_PUBLISH_TOKEN", help_heading = SECURITY,
          value_parser = secret)]
    publish_token: Option<Secret>,

    /// what to log (to stderr)
    #[arg(long, value_name = "LEVEL", env = "SWITCHBOARD_LOG_LEVEL", help_heading = LOGGING,
          value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,

    /// Testing only: the in-memory engine answers through the workers' mailboxes, as a remote
    /// engine does (see `Config::defer_answers`). Not shown in --help.
    #[arg(long, env = "SWITCHBOARD_DEFER_ANSWERS", hide = true)]
    defer_answers: bool,
}

/// What `--help` shows as the default of flags without one clap could print: the value is
/// worked out at start, or the feature is off. (Arg id, text.)
fn computed_defaults() -> [(&'static str, String); 15] {
    [
        ("compression", "off".into()),
        ("redis", "none (a single node, in memory)".into()),
        ("node_id", "host name and process id".into()),
        ("workers", "CPU count".into()),
        ("max_connections", format!("fd limit - {FD_RESERVE}")),
        ("subprotocol", "none".into()),
        ("allowed_origin", "any".into()),
        ("publish_token", "none".into()),
        ("api_key", "none (the API is open)".into()),
        ("token_secret", "none".into()),
        ("token_secret_file", "none".into()),
        (
            "token_public_key",
            "none (no tokens: anyone may connect)".into(),
        ),
        ("token_audience", "none".into()),
        ("publish_burst", "the rate".into()),
        ("limit_loopback", "off".into()),
    ]
}

/// The clap command for the server's flags, as `parse` uses it.
pub fn command() -> clap::Command {
    let computed = computed_defaults();
    // `mut_args` edits in place (`mut_arg` would move an arg, and so its heading, to the end).
    Flags::command().mut_args(|a| {
        // Values may start with '-' (`--publish-token -x`; `--workers -1` gets "not a whole
        // number" rather than "unknown flag -1"), as every value is a flag's argument here;
        // variables show by name only, so `--help` never prints a token from the environment.
        let a = a.hide_env_values(true);
        let a = if a.get_action().takes_values() {
            a.allow_hyphen_values(true)
        } else {
            a
        };
        let Some((_, shown)) = computed.iter().find(|(id, _)| a.get_id() == *id) else {
            return a;
        };
        // The same "[env: ..] [default: ..]" order clap uses for the others.
        let help = a.get_help().map(ToString::to_string).unwrap_or_default();
        let env = a
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        a.help(format!("{help} [env: {env}] [default: {shown}]"))
            .hide_env(true)
    })
}

/// Parses the command line (without the program name) over the process environment.
pub fn parse<I, T>(args: I) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    parse_with(command(), args)
}

fn parse_with<I, T>(cmd: clap::Command, args: I) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv =
        std::iter::once(OsString::from("switchboard")).chain(args.into_iter().map(Into::into));
    let matches = match cmd.try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            return Ok(Command::Print(e));
        }
        Err(e) => return Err(ConfigError(one_line(&e))),
    };
    let flags = Flags::from_arg_matches(&matches).map_err(|e| ConfigError(one_line(&e)))?;
    flags
        .into_config(&matches)
        .map(|c| Command::Run(Box::new(c)))
}

impl Flags {
    fn into_config(self, matches: &ArgMatches) -> Result<Config, ConfigError> {
        let mut listen = list(matches, "listen", self.listen)?;
        if listen.is_empty() {
            // Only a variable of empty items gets here: it means "not set".
            listen.push(
                DEFAULT_LISTEN
                    .parse()
                    .map_err(|_| ConfigError("bad default listen address".into()))?,
            );
        }
        if listen.len() > MAX_LISTENERS {
            return Err(ConfigError(format!(
                "at most {MAX_LISTENERS} --listen addresses"
            )));
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(ConfigError(format!(
                "--idle-timeout ({}s) must be longer than --ping-interval ({}s) so a pong can arrive",
                self.idle_timeout, self.ping_interval
            )));
        }
        Ok(Config {
            listen,
            workers: self.workers.unwrap_or_else(default_workers),
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            max_message_bytes: self.max_message_bytes,
            max_outbound_bytes: self.max_outbound_bytes,
            allowed_origins: list(matches, "allowed_origin", self.allowed_origin)?,
            subprotocols: list(matches, "subprotocol", self.subprotocol)?,
            compression: self.compression,
            compression_min_bytes: self.compression_min_bytes,
            ping_interval: Duration::from_secs(self.ping_interval),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            handshake_timeout: Duration::from_secs(self.handshake_timeout),
            close_timeout: Duration::from_secs(self.close_timeout),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            drain: Duration::from_secs(self.drain_seconds),
            poll_timeout: Duration::from_secs(self.poll_timeout),
            log_level: self.log_level,
            history_size: self.history_size,
            history_ttl: Duration::from_secs(self.history_ttl),
            max_subscriptions: self.max_subscriptions,
            api_key: self.api_key.or(self.publish_token),
            token_secret: self.token_secret,
            token_secret_file: self.token_secret_file,
            token_public_key: self.token_public_key,
            token_audience: self.token_audience,
            history_max_bytes: self.history_max_bytes,
            max_channels: self.max_channels,
            max_connections_per_ip: self.max_connections_per_ip,
            connect_rate: self.connect_rate,
            limit_loopback: self.limit_loopback,
            publish_rate: self.publish_rate,
            publish_burst: self.publish_burst.unwrap_or(self.publish_rate),
            redis: list(matches, "redis", self.redis)?,
            node_id: self.node_id.unwrap_or_else(default_node_id),
            presence_ttl: Duration::from_secs(self.presence_ttl),
            defer_answers: self.defer_answers,
        })
    }
}

/// A repeatable flag's items. An empty item is skipped in a variable's comma list (a trailing
/// comma, or a variable set to nothing) but refused on the command line.
fn list<T>(matches: &ArgMatches, id: &str, items: Vec<Option<T>>) -> Result<Vec<T>, ConfigError> {
    let from_env = matches.value_source(id) == Some(ValueSource::EnvVariable);
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Some(v) => out.push(v),
            None if from_env => {}
            None => {
                return Err(ConfigError(format!(
                    "--{}: empty value",
                    id.replace('_', "-")
                )))
            }
        }
    }
    Ok(out)
}

/// clap's own message carries a usage block and tips; the operator (and the journal) gets one
/// line naming the flag and what is wrong with it.
fn one_line(e: &clap::Error) -> String {
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    // clap names an argument with its value: "--workers <N>".
    let arg = text(ContextKind::InvalidArg).unwrap_or_default();
    let (flag, value_name) = arg.split_once(' ').unwrap_or((arg, ""));
    match e.kind() {
        ErrorKind::UnknownArgument if arg.starts_with("--") => {
            let flag = arg.split('=').next().unwrap_or(arg);
            match text(ContextKind::SuggestedArg) {
                Some(s) => format!("unknown flag {flag} (did you mean {s}?)"),
                None => format!("unknown flag {flag} (see --help)"),
            }
        }
        ErrorKind::UnknownArgument => format!("unexpected argument {arg:?} (see --help)"),
        ErrorKind::ValueValidation => match std::error::Error::source(e) {
            Some(why) => format!("{flag}: {why}"),
            None => format!("{flag}: invalid value"),
        },
        ErrorKind::InvalidValue => match text(ContextKind::InvalidValue) {
            Some(v) if !v.is_empty() => {
                let valid = match e.get(ContextKind::ValidValue) {
                    Some(ContextValue::Strings(v)) => v.join(", "),
                    _ => String::new(),
                };
                format!("{flag}: expected one of {valid}, got {v:?}")
            }
            _ => format!(
                "{flag} needs a value ({})",
                value_name.trim_matches(|c| c == '<' || c == '>')
            ),
        },
        ErrorKind::ArgumentConflict if text(ContextKind::PriorArg) == Some(arg) => {
            format!("{flag} given more than once")
        }
        _ => {
            let full = e.to_string();
            let first = full.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args` as if no `SWITCHBOARD_*` variable were set (clap reads the real
    /// environment; the integration tests in tests/config_cli.rs cover variables).
    fn run(args: &[&str]) -> Result<Config, ConfigError> {
        let cmd = command().mut_args(|a| a.env(None));
        match parse_with(cmd, args.iter().copied())? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clap_accepts_the_declarations() {
        command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(c.workers, default_workers());
        assert_eq!(c.max_header_bytes, 8192);
        assert_eq!(c.max_message_bytes, 1 << 20);
        assert_eq!(c.max_outbound_bytes, 1 << 20);
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.poll_timeout, Duration::from_secs(25));
        assert_eq!(c.history_size, 1000);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.max_connections, None);
        assert_eq!(c.api_key, None);
        assert!(c.allowed_origins.is_empty() && c.subprotocols.is_empty());
        assert!(!c.compression);
        assert_eq!(c.compression_min_bytes, 128);
    }

    #[test]
    fn compression_flags() {
        let c = run(&["--compression", "--compression-min-bytes", "0"]).unwrap();
        assert!(c.compression);
        assert_eq!(c.compression_min_bytes, 0);
        match run(&["--compression-min-bytes=x"]) {
            Err(ConfigError(e)) => assert!(e.contains("--compression-min-bytes"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_and_lists() {
        let c = run(&[
            "--listen",
            "127.0.0.1:0",
            "--listen=[::1]:9000",
            "--workers",
            "3",
            "--subprotocol",
            "chat",
            "--allowed-origin",
            "http://a, http://b",
            "--idle-timeout=90",
            "--publish-token",
            " -s3cret ",
            "--log-level",
            "debug",
            "--history-size",
            "0",
        ])
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.workers, 3);
        assert_eq!(c.allowed_origins, vec!["http://a", "http://b"]);
        assert_eq!(c.subprotocols, vec!["chat"]);
        assert_eq!(c.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.api_key.as_ref().map(|k| k.expose()), Some("-s3cret"));
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.history_size, 0);
    }

    #[test]
    fn refusals_are_one_line() {
        let many: Vec<String> = (0..=MAX_LISTENERS)
            .map(|i| format!("--listen=127.0.0.1:{}", 9000 + i))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        for (args, needle) in [
            (&["--bogus"][..], "unknown flag --bogus (see --help)"),
            (&["--bogus=1"][..], "unknown flag --bogus (see --help)"),
            (
                &["--worker", "2"][..],
                "unknown flag --worker (did you mean --workers?)",
            ),
            (&["--workers"][..], "--workers needs a value (N)"),
            (
                &["--workers", "0"][..],
                "--workers: 0 is out of range (1..=1024)",
            ),
            (
                &["--workers", "x"][..],
                "--workers: not a whole number: \"x\"",
            ),
            (&["--workers", "-1"][..], "not a whole number"),
            (&["--listen", "localhost"][..], "--listen: not an IP:PORT"),
            (&["--listen", ""][..], "--listen: empty value"),
            (
                &["--allowed-origin", "a,,b"][..],
                "--allowed-origin: empty value",
            ),
            (&["--subprotocol", " "][..], "--subprotocol: empty value"),
            (&["--publish-token", ""][..], "--publish-token: empty value"),
            (
                &["--log-level", "loud"][..],
                "--log-level: expected one of error, warn, info, debug",
            ),
            (
                &["--ping-interval", "0"][..],
                "--ping-interval: 0 is out of range (1..=86400)",
            ),
            (
                &["--ping-interval", "60", "--idle-timeout", "60"][..],
                "must be longer",
            ),
            (
                &["--workers", "1", "--workers", "2"][..],
                "--workers given more than once",
            ),
            (&["stray"][..], "unexpected argument \"stray\""),
            (&["-x"][..], "unexpected argument \"-x\""),
            (&many[..], "at most 32 --listen addresses"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.0.contains(needle), "{args:?}: {e}");
            assert!(!e.0.contains('\n'), "{args:?}: {e}");
        }
    }

    #[test]
    fn help_and_version_are_printed_not_refused() {
        for (flag, kind) in [
            ("--help", ErrorKind::DisplayHelp),
            ("-h", ErrorKind::DisplayHelp),
            ("--version", ErrorKind::DisplayVersion),
            ("-V", ErrorKind::DisplayVersion),
        ] {
            match parse_with(command(), [flag]) {
                Ok(Command::Print(e)) => assert_eq!(e.kind(), kind, "{flag}"),
                other => panic!("{flag}: {other:?}"),
            }
        }
    }

    #[test]
    fn help_groups_every_flag_with_its_default_and_variable() {
        let mut cmd = command();
        let help = cmd.render_help().to_string();
        let mut last_heading = 0;
        for heading in [
            LISTENING, WEBSOCKET, LIMITS, TIMEOUTS, HISTORY, CLUSTER, SECURITY, LOGGING,
        ] {
            let at = help
                .find(&format!("\n{heading}:\n"))
                .unwrap_or_else(|| panic!("no {heading:?} heading in\n{help}"));
            assert!(at > last_heading, "{heading:?} out of order");
            last_heading = at;
        }
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" || arg.is_hide_set() {
                continue;
            }
            let env = format!(
                "SWITCHBOARD_{}",
                long.to_ascii_uppercase().replace('-', "_")
            );
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env.as_str()));
            // A flag with a value is shown as `--flag <VALUE>`, a switch as `--flag` alone.
            let shown = if arg.get_action().takes_values() {
                format!("--{long} <")
            } else {
                format!("--{long}\n")
            };
            let block = help
                .split(&shown)
                .nth(1)
                .and_then(|rest| {
                    let mut lines = rest.lines();
                    if arg.get_action().takes_values() {
                        lines.next();
                    }
                    lines.next()
                })
                .unwrap_or_else(|| panic!("--{long} missing from\n{help}"));
            assert!(
                block.contains(&format!("[env: {env}]")),
                "--{long}: {block}"
            );
            assert!(block.contains("[default: "), "--{long}: {block}");
        }
    }
}
