//! The server's settings as the rest of the server sees them: every limit and default as a
//! named constant, and [`Config`]. Where they come from is `flags.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use super::redis_url::RedisUrl;

/// Default listen address: loopback, so a bare start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Request head limit (431 above it).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;
/// Largest message, all fragments together (1009 above it).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Queued outbound bytes per connection before it counts as a slow consumer.
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 1024 * 1024;
/// With `--compression`, messages below this many bytes go out uncompressed: a DEFLATE
/// block costs a few bytes of its own, and small JSON rarely shrinks enough to pay for the
/// CPU.
pub const DEFAULT_COMPRESSION_MIN_BYTES: usize = 128;
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
/// Upper bound on `--workers`.
pub const MAX_WORKERS: usize = 1024;
/// Upper bound on `--max-subscriptions`.
pub const MAX_SUBSCRIPTIONS_LIMIT: usize = 100_000;
/// Upper bound on `--max-message-bytes` and `--max-outbound-bytes` (2 GiB).
pub const MAX_BYTES_LIMIT: usize = 1 << 31;
/// Upper bound on `--drain-seconds` (one hour).
pub const MAX_DRAIN_S: usize = 3600;
/// Upper bound on every timeout and interval flag (one day), in seconds.
pub const MAX_TIMEOUT_S: usize = 86_400;

/// Default budget for every channel's history together (the embedded engine): past it the
/// oldest history goes first.
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 256 * 1024 * 1024;
/// Smallest `--history-max-bytes` (one large message must fit).
pub const MIN_HISTORY_MAX_BYTES: usize = 1024 * 1024;
/// Live channels (with subscribers or history) before new ones are refused.
pub const DEFAULT_MAX_CHANNELS: usize = 100_000;
/// Upper bound on `--max-channels`.
pub const MAX_CHANNELS_LIMIT: usize = 100_000_000;
/// Open connections per client address (0: no limit).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 1000;
/// New connections per client address per second, also the burst (0: no limit).
pub const DEFAULT_CONNECT_RATE: u32 = 100;
/// Publishes per connection per second, also the default burst (0: no limit).
pub const DEFAULT_PUBLISH_RATE: u32 = 1000;
/// Upper bound on the rate flags.
pub const MAX_RATE: usize = 10_000_000;

/// A secret from the command line or the environment: never printed (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// What to log; `Error` logs least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
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
    /// Accept permessage-deflate offers.
    pub compression: bool,
    /// Messages below this go out uncompressed on a compressing connection.
    pub compression_min_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub close_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// On SIGTERM, connections are closed spread over this window (zero: all at once).
    pub drain: Duration,
    pub poll_timeout: Duration,
    pub log_level: LogLevel,
    pub history_size: usize,
    pub history_ttl: Duration,
    pub max_subscriptions: usize,
    /// When set, the HTTP API needs `Authorization: Bearer <key>` (or a user token).
    pub api_key: Option<Secret>,
    /// Connection tokens: an HS256 secret (given, or read from a file at start), a PEM
    /// public key file (RS256/ES256), and the audience tokens must name. Any key: tokens on.
    pub token_secret: Option<Secret>,
    pub token_secret_file: Option<PathBuf>,
    pub token_public_key: Option<PathBuf>,
    pub token_audience: Option<String>,
    /// Bytes every channel's history may hold together (embedded engine).
    pub history_max_bytes: usize,
    /// Live channels before new ones are refused.
    pub max_channels: usize,
    /// Per client address: open connections and new connections per second (0: no limit);
    /// loopback addresses are not counted unless `limit_loopback`.
    pub max_connections_per_ip: u32,
    pub connect_rate: u32,
    pub limit_loopback: bool,
    /// Publishes per connection per second and the burst (0: no limit).
    pub publish_rate: u32,
    pub publish_burst: u32,
    /// Cluster mode: the Redis servers (shards) the channel space lives in. Empty: in memory.
    pub redis: Vec<RedisUrl>,
    /// This node's name (logs, metrics, the connection registry).
    pub node_id: String,
    /// Cluster mode: how long a presence or registry entry lives without a heartbeat.
    pub presence_ttl: Duration,
    /// Test seam: the memory engine answers through the workers' mailboxes, as a remote
    /// engine does, so the test suite runs the transports' later-answer paths without Redis.
    pub defer_answers: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Vec::new(),
            workers: default_workers(),
            max_connections: None,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            allowed_origins: Vec::new(),
            subprotocols: Vec::new(),
            compression: false,
            compression_min_bytes: DEFAULT_COMPRESSION_MIN_BYTES,
            ping_interval: Duration::from_secs(DEFAULT_PING_INTERVAL_S),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_S),
            handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_S),
            close_timeout: Duration::from_secs(DEFAULT_CLOSE_TIMEOUT_S),
            shutdown_timeout: Duration::from_secs(DEFAULT_SHUTDOWN_TIMEOUT_S),
            drain: Duration::ZERO,
            poll_timeout: Duration::from_secs(DEFAULT_POLL_TIMEOUT_S),
            log_level: LogLevel::Info,
            history_size: DEFAULT_HISTORY_SIZE,
            history_ttl: Duration::from_secs(DEFAULT_HISTORY_TTL_S),
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            api_key: None,
            token_secret: None,
            token_secret_file: None,
            token_public_key: None,
            token_audience: None,
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            max_channels: DEFAULT_MAX_CHANNELS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            connect_rate: DEFAULT_CONNECT_RATE,
            limit_loopback: false,
            publish_rate: DEFAULT_PUBLISH_RATE,
            publish_burst: DEFAULT_PUBLISH_RATE,
            redis: Vec::new(),
            node_id: default_node_id(),
            presence_ttl: Duration::from_secs(DEFAULT_PRESENCE_TTL_S),
            defer_answers: false,
        }
    }
}

/// How long a presence or registry entry lives in Redis without a refresh (nodes refresh
/// theirs every 5/12 of it: 25 s of 60).
pub const DEFAULT_PRESENCE_TTL_S: u64 = 60;

/// Longest `--node-id`.
pub const MAX_NODE_ID_BYTES: usize = 64;

/// A node name unique per process: the host name (from `/proc`, as `uname` would give it)
/// and the process id.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                .take(MAX_NODE_ID_BYTES - 12)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}", std::process::id())
}

pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    /// `--help` or `--version`: clap's text, to print on stdout (`clap::Error::print`) before
    /// exiting 0.
    Print(clap::Error),
}
