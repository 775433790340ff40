//! Who may come in and what they may do: the connection token a `/ws`, `/sse` or `/poll`
//! request must carry when tokens are on (401 before the upgrade), the rights its claims give
//! on a channel, the per-address connection limits, and the publish rate. The checks
//! themselves are `crate::auth`'s (pure); this module applies them to requests and
//! connections, with the keys and tables built once at start.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::auth::keys::Keys;
use crate::auth::limits::{Bucket, ClientKey, ClientLimits, ClientTable, Rate, Refusal};
use crate::auth::token::{Claims, TokenError, Verifier};
use crate::codec::http::Request;
use crate::codec::{cursor, query};
use crate::config::Config;
use crate::error::HandshakeError;
use crate::transport::pending::ConnId;

/// A connection not counted in the client table (limits off, or a loopback peer).
pub const NOT_COUNTED: u64 = u64::MAX;

/// What a token may be used for on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Subscribe, and read its history and presence.
    Subscribe,
    Publish,
}

/// Whether `claims` (none: tokens are off) allow `right` on `channel`.
pub fn allows(claims: Option<&Claims>, right: Right, channel: &str) -> bool {
    match (claims, right) {
        (None, _) => true,
        (Some(c), Right::Subscribe) => c.subscribe.allows(channel),
        (Some(c), Right::Publish) => c.publish.allows(channel),
    }
}

/// The keys, tables and rates every worker checks against.
#[derive(Debug)]
pub struct Access {
    /// `Some` when tokens are on.
    pub verifier: Option<Verifier>,
    clients: Option<ClientTable>,
    /// Publishes per connection (`None`: no limit).
    pub publish_rate: Option<Rate>,
    limit_loopback: bool,
    /// The clock of the client table and the publish buckets (milliseconds from here).
    start: Instant,
}

impl Access {
    /// Reads the key files and builds the verifier and tables; an error names the flag and
    /// what is wrong, for the operator.
    pub fn new(cfg: &Config) -> Result<Access, String> {
        let secret = match (&cfg.token_secret, &cfg.token_secret_file) {
            (Some(s), _) => Some(s.expose().as_bytes().to_vec()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--token-secret-file {}: {e}", path.display()))?;
                // A file written with `echo` ends in a newline that is not part of the key.
                Some(text.trim_end_matches(['\r', '\n']).as_bytes().to_vec())
            }
            (None, None) => None,
        };
        let pem = match &cfg.token_public_key {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("--token-public-key {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let verifier = if secret.is_some() || pem.is_some() {
            let keys = Keys {
                secret: secret.as_deref(),
                public_key_pem: pem.as_deref(),
                audience: cfg.token_audience.as_deref(),
            };
            Some(Verifier::new(&keys).map_err(|e| format!("tokens: {e}"))?)
        } else if cfg.token_audience.is_some() {
            return Err("--token-audience needs --token-secret or --token-public-key".into());
        } else {
            None
        };
        let limits = ClientLimits {
            max_connections: std::num::NonZeroU32::new(cfg.max_connections_per_ip),
            connect_rate: Rate::new(cfg.connect_rate, cfg.connect_rate),
            // Every connection could come from its own address; twice that leaves room for
            // clients whose buckets are still refilling.
            max_clients: cfg
                .max_connections
                .unwrap_or(1 << 20)
                .saturating_mul(2)
                .max(4096),
        };
        let limited = limits.max_connections.is_some() || limits.connect_rate.is_some();
        Ok(Access {
            verifier,
            clients: limited.then(|| ClientTable::new(limits)),
            publish_rate: Rate::new(cfg.publish_rate, cfg.publish_burst.max(1)),
            limit_loopback: cfg.limit_loopback,
            start: Instant::now(),
        })
    }

    /// Milliseconds on the limits' clock.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn tokens_on(&self) -> bool {
        self.verifier.is_some()
    }

    /// Counts a new connection from `ip`: its key for [`Access::release`] (or
    /// [`NOT_COUNTED`]), or why it is refused.
    pub fn admit(&self, ip: IpAddr) -> Result<u64, HandshakeError> {
        match &self.clients {
            Some(t) if self.limit_loopback || !ip.is_loopback() => t
                .acquire(ip, self.now_ms())
                .map(ClientKey::compact)
                .map_err(|r| match r {
                    Refusal::TooManyConnections => HandshakeError::TooManyFromAddress,
                    Refusal::RateLimited(wait) => HandshakeError::ConnectingTooFast(wait.secs()),
                    Refusal::TableFull => HandshakeError::TooManyClients,
                }),
            _ => Ok(NOT_COUNTED),
        }
    }

    /// A connection counted by [`Access::admit`] closed.
    pub fn release(&self, client: u64) {
        if client == NOT_COUNTED {
            return;
        }
        if let Some(t) = &self.clients {
            t.release(ClientKey::from_compact(client), self.now_ms());
        }
    }

    /// Forgets clients that hold nothing (periodically, from the janitor).
    pub fn sweep(&self) {
        if let Some(t) = &self.clients {
            t.sweep(self.now_ms());
        }
    }

    /// The claims a stream request (`/ws`, `/sse`, `/poll`) connects with: `None` with tokens
    /// off; with tokens on a valid token is required (401) and `?user=` is refused (400),
    /// since the token's `sub` is the only identity.
    pub fn stream_claims(&self, req: &Request<'_>) -> Result<Option<Claims>, HandshakeError> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        if query::first(req.query, "user").is_some() {
            return Err(HandshakeError::Malformed(
                "?user= is not taken when tokens are on: the token's sub is the user",
            ));
        }
        let token = bearer(req).ok_or(HandshakeError::Unauthorized(
            "a connection token is required (Authorization: Bearer, or ?token=)",
        ))?;
        verifier
            .verify(&token, unix_now())
            .map(Some)
            .map_err(|e: TokenError| HandshakeError::Unauthorized(e.reason()))
    }
}

/// Who a stream request (`/sse`, `/poll`) is: its user and, with tokens on, its claims,
/// which must allow every channel it names (`403` otherwise: such a stream has no way to
/// report a refusal per channel).
pub fn stream_who(
    access: &Access,
    req: &Request<'_>,
    channels: &[String],
) -> Result<(Option<Box<str>>, Option<Claims>), HandshakeError> {
    match access.stream_claims(req)? {
        Some(c) if !channels.iter().all(|ch| c.subscribe.allows(ch)) => {
            Err(HandshakeError::Forbidden)
        }
        Some(c) => Ok((Some(c.sub.clone()), Some(c))),
        None => Ok((cursor::user_of(req.query)?, None)),
    }
}

/// The publish buckets of a worker's plain HTTP connections (a `/ws` connection keeps its
/// own in its session): only connections that published without the API key have one.
#[derive(Debug, Default)]
pub struct HttpBuckets(HashMap<u32, (u32, Bucket)>);

impl HttpBuckets {
    /// Takes one publish for connection `who`, or says in how many milliseconds one is there.
    pub fn take(&mut self, who: ConnId, access: &Access) -> Result<(), u64> {
        let Some(rate) = access.publish_rate else {
            return Ok(());
        };
        let slot = self
            .0
            .entry(who.key)
            .or_insert((who.gen, Bucket::default()));
        if slot.0 != who.gen {
            // A stale entry of a closed connection whose slot was reused.
            *slot = (who.gen, Bucket::default());
        }
        slot.1
            .try_take(rate, access.now_ms())
            .map_err(|w| w.millis().max(1))
    }

    /// The connection in slot `key` closed.
    pub fn forget(&mut self, key: usize) {
        if !self.0.is_empty() {
            self.0.remove(&(key as u32));
        }
    }
}

/// The bearer token of a request: `Authorization: Bearer T`, or `?token=T` for browsers,
/// which cannot set headers on a WebSocket or an EventSource.
pub fn bearer<'r>(req: &Request<'r>) -> Option<Cow<'r, str>> {
    let header = req
        .authorization
        .and_then(|a| {
            a.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| &a[7..])
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match header {
        Some(t) => Some(Cow::Borrowed(t)),
        None => query::first(req.query, "token"),
    }
}

/// Seconds since the Unix epoch (token times are in it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How many seconds from now until `claims` expire (their `close_at`), at least 0.
pub fn secs_left(claims: &Claims) -> u64 {
    claims.close_at().saturating_sub(unix_now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(query: &'a str, authorization: Option<&'a str>) -> Request<'a> {
        Request {
            query,
            authorization,
            ..Request::default()
        }
    }

    #[test]
    fn the_bearer_comes_from_the_header_first_then_the_query() {
        let t = |q, a| bearer(&req(q, a)).map(|c| c.into_owned());
        assert_eq!(t("", Some("Bearer abc")), Some("abc".into()));
        assert_eq!(t("", Some("bearer  abc ")), Some("abc".into()));
        assert_eq!(t("token=q", Some("Bearer h")), Some("h".into()));
        assert_eq!(t("token=q", Some("Basic h")), Some("q".into()));
        assert_eq!(t("token=q", Some("Bearer ")), Some("q".into()));
        assert_eq!(t("", Some("Bearer")), None);
        assert_eq!(t("x=1", None), None);
    }

    #[test]
    fn with_tokens_off_everything_is_allowed() {
        assert!(allows(None, Right::Publish, "any"));
        assert!(allows(None, Right::Subscribe, "any"));
    }

    #[test]
    fn loopback_is_counted_only_when_asked() {
        let cfg = Config {
            max_connections_per_ip: 1,
            connect_rate: 0,
            ..Config::default()
        };
        let open = Access::new(&cfg).expect("no keys");
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let far: IpAddr = "203.0.113.7".parse().expect("ip");
        assert_eq!(open.admit(lo), Ok(NOT_COUNTED));
        assert_eq!(open.admit(lo), Ok(NOT_COUNTED));
        let k = open.admit(far).expect("first");
        assert_eq!(open.admit(far), Err(HandshakeError::TooManyFromAddress));
        open.release(k);
        assert!(open.admit(far).is_ok(), "released");
        let strict = Access::new(&Config {
            limit_loopback: true,
            ..cfg
        })
        .expect("no keys");
        assert!(strict.admit(lo).is_ok());
        assert_eq!(strict.admit(lo), Err(HandshakeError::TooManyFromAddress));
    }
}
