//! `--redis` URLs: `redis://[[user]:pass@]host[:port][/db]` and `unix:///path[?db=N&password=P]`.

use std::fmt;

/// Where one Redis server (one shard of the channel space) is.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub target: RedisTarget,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Tcp { host: String, port: u16 },
    Unix(String),
}

/// The port Redis listens on by default.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Shown in logs and statuses: never the password.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            RedisTarget::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}")?,
            RedisTarget::Tcp { host, port } => write!(f, "{host}:{port}")?,
            RedisTarget::Unix(path) => write!(f, "unix:{path}")?,
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

impl RedisUrl {
    /// Parses a URL; the error is one line for the operator.
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("unix://") {
            return parse_unix(rest);
        }
        let rest = s
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{s:?}: expected redis://host:port or unix:///path"))?;
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (non_empty(u), non_empty(p)),
                None => (None, non_empty(a)),
            },
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, d)) => (
                h,
                d.parse()
                    .map_err(|_| format!("{s:?}: db must be a number"))?,
            ),
            None => (hostpart, 0),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed [ in the host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        let port = match port {
            None => DEFAULT_REDIS_PORT,
            Some(p) => p
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{s:?}: port must be 1-65535"))?,
        };
        Ok(RedisUrl {
            target: RedisTarget::Tcp {
                host: host.to_string(),
                port,
            },
            username,
            password,
            db,
        })
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn parse_unix(rest: &str) -> Result<RedisUrl, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return Err(format!("unix://{rest:?}: the socket path must be absolute"));
    }
    let mut url = RedisUrl {
        target: RedisTarget::Unix(path.to_string()),
        username: None,
        password: None,
        db: 0,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("db", d)) => {
                url.db = d
                    .parse()
                    .map_err(|_| format!("unix://{rest}: db must be a number"))?
            }
            Some(("password", p)) => url.password = non_empty(p),
            Some(("user", u)) => url.username = non_empty(u),
            _ => return Err(format!("unix://{rest}: unknown parameter {pair:?}")),
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> RedisTarget {
        RedisTarget::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn the_forms_operators_write() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380").unwrap();
        assert_eq!(
            (u.target, u.db, u.password),
            (tcp("127.0.0.1", 6380), 0, None)
        );
        let u = RedisUrl::parse("redis://:s3cret@redis.internal/2").unwrap();
        assert_eq!(u.target, tcp("redis.internal", 6379));
        assert_eq!((u.password.as_deref(), u.db), (Some("s3cret"), 2));
        let u = RedisUrl::parse("redis://app:pw@[::1]:7000/").unwrap();
        assert_eq!(u.target, tcp("::1", 7000));
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(u.to_string(), "[::1]:7000", "no password shown");
        let u = RedisUrl::parse("unix:///run/redis.sock?db=3&password=x").unwrap();
        assert_eq!(u.target, RedisTarget::Unix("/run/redis.sock".into()));
        assert_eq!((u.db, u.password.as_deref()), (3, Some("x")));
        assert_eq!(u.to_string(), "unix:/run/redis.sock/3");
    }

    #[test]
    fn refusals_are_one_line() {
        for bad in [
            "127.0.0.1:6379",
            "redis://",
            "redis://h:0",
            "redis://h:port",
            "redis://h/db",
            "redis://[::1",
            "unix://relative.sock",
            "unix:///s?color=red",
        ] {
            let e = RedisUrl::parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
