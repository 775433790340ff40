//! Configuration: every flag, its default, and where limits come from.
//!
//! Flags come from the command line or, for deployments under systemd, from environment
//! variables named `SWITCHBOARD_<FLAG>` (`--max-connections` → `SWITCHBOARD_MAX_CONNECTIONS`;
//! repeatable flags take a comma-separated list). The command line wins over the environment.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Default listen address: loopback, so a bare start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Request head limit (431 above it).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;
/// Largest message, all fragments together (1009 above it).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Queued outbound bytes per connection before it counts as a slow consumer.
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PING_INTERVAL_S: u64 = 30;
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 60;
pub const DEFAULT_HANDSHAKE_TIMEOUT_S: u64 = 10;
pub const DEFAULT_CLOSE_TIMEOUT_S: u64 = 5;
pub const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 10;
/// A long-poll with nothing to return answers (empty) after this; below common proxy
/// timeouts (30 s and up).
pub const DEFAULT_POLL_TIMEOUT_S: u64 = 25;
/// Messages kept per channel for resume and the history API.
pub const DEFAULT_HISTORY_SIZE: usize = 1000;
pub const DEFAULT_HISTORY_TTL_S: u64 = 300;
/// Channels one connection may subscribe to.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 100;
/// Upper bound on `--history-size`: each kept message holds its encoded frames.
pub const MAX_HISTORY_SIZE: usize = 1_000_000;
/// File descriptors kept back from `--max-connections` for listeners, the poll and waker fds,
/// logs, the accept reserve and whatever the process opens later.
pub const FD_RESERVE: u64 = 64;
/// Upper bound on `--max-header-bytes`: a request head is read whole into memory.
pub const MAX_HEADER_BYTES_LIMIT: usize = 1024 * 1024;
/// Most `--listen` addresses: each worker has one listener per address, and the token module
/// reserves this many tokens for them.
pub const MAX_LISTENERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub workers: usize,
    /// `None`: derived from the fd limit at start (see `sys::raise_fd_limit`).
    pub max_connections: Option<usize>,
    pub max_header_bytes: usize,
    pub max_message_bytes: usize,
    pub max_outbound_bytes: usize,
    pub allowed_origins: Vec<String>,
    pub subprotocols: Vec<String>,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub close_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub poll_timeout: Duration,
    pub log_level: LogLevel,
    pub history_size: usize,
    pub history_ttl: Duration,
    pub max_subscriptions: usize,
    /// When set, `POST /publish` needs `Authorization: Bearer <token>`.
    pub publish_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Vec::new(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: None,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            allowed_origins: Vec::new(),
            subprotocols: Vec::new(),
            ping_interval: Duration::from_secs(DEFAULT_PING_INTERVAL_S),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_S),
            handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_S),
            close_timeout: Duration::from_secs(DEFAULT_CLOSE_TIMEOUT_S),
            shutdown_timeout: Duration::from_secs(DEFAULT_SHUTDOWN_TIMEOUT_S),
            poll_timeout: Duration::from_secs(DEFAULT_POLL_TIMEOUT_S),
            log_level: LogLevel::Info,
            history_size: DEFAULT_HISTORY_SIZE,
            history_ttl: Duration::from_secs(DEFAULT_HISTORY_TTL_S),
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            publish_token: None,
        }
    }
}

/// A refused flag or value: one line for the operator; the process exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

struct Flag {
    name: &'static str,
    value: &'static str,
    default: &'static str,
    help: &'static str,
    repeatable: bool,
    apply: fn(&mut Config, &str) -> Result<(), String>,
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "listen",
        value: "ADDR",
        default: DEFAULT_LISTEN,
        help: "address to listen on (repeatable; port 0 picks a free port)",
        repeatable: true,
        apply: |c, v| {
            c.listen.push(v.parse().map_err(|_| format!("not an IP:PORT address: {v:?}"))?);
            Ok(())
        },
    },
    Flag {
        name: "workers",
        value: "N",
        default: "CPU count",
        help: "event-loop threads, each with its own listener (SO_REUSEPORT) and connections",
        repeatable: false,
        apply: |c, v| {
            c.workers = parse_range(v, 1, 1024)?;
            Ok(())
        },
    },
    Flag {
        name: "max-connections",
        value: "N",
        default: "fd limit - 64",
        help: "open connections before new ones get 503",
        repeatable: false,
        apply: |c, v| {
            c.max_connections = Some(parse_range(v, 1, usize::MAX)?);
            Ok(())
        },
    },
    Flag {
        name: "max-header-bytes",
        value: "N",
        default: "8192",
        help: "largest HTTP request head (431 above)",
        repeatable: false,
        apply: |c, v| {
            c.max_header_bytes = parse_range(v, 256, MAX_HEADER_BYTES_LIMIT)?;
            Ok(())
        },
    },
    Flag {
        name: "max-message-bytes",
        value: "N",
        default: "1048576",
        help: "largest WebSocket message, all fragments (close 1009 above)",
        repeatable: false,
        apply: |c, v| {
            c.max_message_bytes = parse_range(v, 125, 1 << 31)?;
            Ok(())
        },
    },
    Flag {
        name: "max-outbound-bytes",
        value: "N",
        default: "1048576",
        help: "queued output per connection; above it a reader is paused or a subscriber cut off (1008)",
        repeatable: false,
        apply: |c, v| {
            c.max_outbound_bytes = parse_range(v, 1024, 1 << 31)?;
            Ok(())
        },
    },
    Flag {
        name: "allowed-origin",
        value: "ORIGIN",
        default: "any",
        help: "Origin accepted for upgrades (repeatable; others get 403)",
        repeatable: true,
        apply: |c, v| {
            c.allowed_origins.push(non_empty(v)?);
            Ok(())
        },
    },
    Flag {
        name: "subprotocol",
        value: "NAME",
        default: "none",
        help: "WebSocket subprotocol to accept, in order of preference (repeatable)",
        repeatable: true,
        apply: |c, v| {
            c.subprotocols.push(non_empty(v)?);
            Ok(())
        },
    },
    Flag {
        name: "ping-interval",
        value: "SECONDS",
        default: "30",
        help: "ping a connection that has been silent this long",
        repeatable: false,
        apply: |c, v| {
            c.ping_interval = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "idle-timeout",
        value: "SECONDS",
        default: "60",
        help: "close a connection that sent nothing (no data, no pong) this long",
        repeatable: false,
        apply: |c, v| {
            c.idle_timeout = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "handshake-timeout",
        value: "SECONDS",
        default: "10",
        help: "time allowed for the HTTP request head",
        repeatable: false,
        apply: |c, v| {
            c.handshake_timeout = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "close-timeout",
        value: "SECONDS",
        default: "5",
        help: "time a closing connection gets to answer our Close before it is dropped",
        repeatable: false,
        apply: |c, v| {
            c.close_timeout = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "shutdown-timeout",
        value: "SECONDS",
        default: "10",
        help: "on SIGTERM/SIGINT, time to flush and finish close handshakes before exit",
        repeatable: false,
        apply: |c, v| {
            c.shutdown_timeout = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "poll-timeout",
        value: "SECONDS",
        default: "25",
        help: "a long-poll (GET /poll) with nothing new answers with no messages after this",
        repeatable: false,
        apply: |c, v| {
            c.poll_timeout = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "history-size",
        value: "N",
        default: "1000",
        help: "messages kept per channel for resume (since=) and GET /history",
        repeatable: false,
        apply: |c, v| {
            c.history_size = parse_range(v, 0, MAX_HISTORY_SIZE)?;
            Ok(())
        },
    },
    Flag {
        name: "history-ttl",
        value: "SECONDS",
        default: "300",
        help: "how long a message stays in history",
        repeatable: false,
        apply: |c, v| {
            c.history_ttl = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-subscriptions",
        value: "N",
        default: "100",
        help: "channels one connection may subscribe to",
        repeatable: false,
        apply: |c, v| {
            c.max_subscriptions = parse_range(v, 1, 100_000)?;
            Ok(())
        },
    },
    Flag {
        name: "publish-token",
        value: "TOKEN",
        default: "none",
        help: "require Authorization: Bearer TOKEN on POST /publish (401 otherwise)",
        repeatable: false,
        apply: |c, v| {
            c.publish_token = Some(non_empty(v)?);
            Ok(())
        },
    },
    Flag {
        name: "log-level",
        value: "LEVEL",
        default: "info",
        help: "error, warn, info or debug (logs go to stderr)",
        repeatable: false,
        apply: |c, v| {
            c.log_level = match v {
                "error" => LogLevel::Error,
                "warn" => LogLevel::Warn,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                _ => return Err(format!("expected error, warn, info or debug, got {v:?}")),
            };
            Ok(())
        },
    },
];

fn parse_range(v: &str, min: usize, max: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("{v} is out of range ({min}..={max})")),
        Err(_) => Err(format!("not a whole number: {v:?}")),
    }
}

fn parse_secs(v: &str) -> Result<Duration, String> {
    // Whole seconds, at least 1: a zero timeout would close everything at once.
    parse_range(v, 1, 86_400).map(|s| Duration::from_secs(s as u64))
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.trim().is_empty() {
        Err("empty value".into())
    } else {
        Ok(v.trim().to_string())
    }
}

fn env_name(flag: &str) -> String {
    format!(
        "SWITCHBOARD_{}",
        flag.to_ascii_uppercase().replace('-', "_")
    )
}

/// Parses the command line (without the program name) over the environment.
pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let mut cfg = Config::default();
    let mut given: Vec<(&Flag, String)> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ConfigError(format!(
                "unexpected argument {arg:?} (see --help)"
            )));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let flag = FLAGS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ConfigError(format!("unknown flag --{name} (see --help)")))?;
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .ok_or_else(|| ConfigError(format!("--{name} needs a value ({})", flag.value)))?,
        };
        given.push((flag, value));
    }
    for flag in FLAGS {
        let on_cli: Vec<&String> = given
            .iter()
            .filter(|(f, _)| f.name == flag.name)
            .map(|(_, v)| v)
            .collect();
        if !flag.repeatable && on_cli.len() > 1 {
            return Err(ConfigError(format!("--{} given more than once", flag.name)));
        }
        let values: Vec<String> = if !on_cli.is_empty() {
            on_cli.into_iter().cloned().collect()
        } else if let Some(v) = env(&env_name(flag.name)) {
            if flag.repeatable {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            } else {
                vec![v]
            }
        } else {
            continue;
        };
        for v in values {
            (flag.apply)(&mut cfg, &v).map_err(|e| ConfigError(format!("--{}: {e}", flag.name)))?;
        }
    }
    if cfg.listen.is_empty() {
        cfg.listen.push(
            DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError("bad default listen address".into()))?,
        );
    }
    if cfg.listen.len() > MAX_LISTENERS {
        return Err(ConfigError(format!(
            "at most {} --listen addresses",
            MAX_LISTENERS
        )));
    }
    if cfg.idle_timeout <= cfg.ping_interval {
        return Err(ConfigError(format!(
            "--idle-timeout ({}s) must be longer than --ping-interval ({}s) so a pong can arrive",
            cfg.idle_timeout.as_secs(),
            cfg.ping_interval.as_secs()
        )));
    }
    Ok(Command::Run(Box::new(cfg)))
}

/// The `--help` text: every flag with its default and environment variable.
pub fn help() -> String {
    let mut s = String::from(
        "switchboard: a real-time WebSocket server\n\nUSAGE: switchboard [FLAGS]\n\nFLAGS (each also read from the environment variable shown; repeatable flags take a comma list there):\n",
    );
    for f in FLAGS {
        s.push_str(&format!(
            "  --{} {}\n      {} [default: {}] [env: {}]\n",
            f.name,
            f.value,
            f.help,
            f.default,
            env_name(f.name)
        ));
    }
    s.push_str("  -h, --help\n      print this help\n  -V, --version\n      print the version\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(args.iter().map(|s| s.to_string()), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(c.max_header_bytes, 8192);
        assert_eq!(c.max_message_bytes, 1 << 20);
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_connections, None);
    }

    #[test]
    fn flags_env_and_precedence() {
        let c = run(
            &[
                "--listen",
                "127.0.0.1:0",
                "--listen=[::1]:9000",
                "--workers",
                "3",
                "--subprotocol",
                "chat",
            ],
            &[
                ("SWITCHBOARD_WORKERS", "5"),
                ("SWITCHBOARD_ALLOWED_ORIGIN", "http://a, http://b"),
                ("SWITCHBOARD_IDLE_TIMEOUT", "90"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.workers, 3, "command line wins");
        assert_eq!(c.allowed_origins, vec!["http://a", "http://b"]);
        assert_eq!(c.subprotocols, vec!["chat"]);
        assert_eq!(c.idle_timeout, Duration::from_secs(90));
    }

    #[test]
    fn refusals_are_one_line() {
        for (args, needle) in [
            (&["--nope"][..], "unknown flag --nope"),
            (&["--workers"][..], "needs a value"),
            (&["--workers", "0"][..], "out of range"),
            (&["--workers", "x"][..], "not a whole number"),
            (&["--listen", "localhost"][..], "not an IP:PORT"),
            (&["--log-level", "loud"][..], "expected error"),
            (
                &["--ping-interval", "60", "--idle-timeout", "60"][..],
                "must be longer",
            ),
            (&["--workers", "1", "--workers", "2"][..], "more than once"),
            (&["stray"][..], "unexpected argument"),
        ] {
            let e = run(args, &[]).unwrap_err();
            assert!(e.0.contains(needle), "{args:?}: {e}");
            assert!(!e.0.contains('\n'));
        }
        assert!(run(&[], &[("SWITCHBOARD_MAX_CONNECTIONS", "lots")]).is_err());
    }

    #[test]
    fn help_lists_every_flag() {
        let h = help();
        for f in FLAGS {
            assert!(h.contains(&format!("--{}", f.name)), "{}", f.name);
            assert!(h.contains(&env_name(f.name)));
        }
    }
}
