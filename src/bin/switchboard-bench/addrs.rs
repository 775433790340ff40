//! Target and source addresses from the command line: loopback only (the workplace rule),
//! ranges of source IPs expanded for runs that need many client addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Most source addresses one `--source` range may expand to.
const MAX_SOURCES: u32 = 1 << 16;

/// The addresses one `--source` item expands to.
#[derive(Debug, Clone)]
pub struct Sources(pub Vec<IpAddr>);

/// The workplace rule: every run targets this machine only.
pub fn require_loopback(ip: IpAddr, what: &str) -> Result<(), String> {
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
pub fn parse_target(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
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

/// One item of `--source`: `A` or `A-B` (inclusive, IPv4); an empty item (from `a,,b`) is none.
pub fn parse_source(text: &str) -> Result<Sources, String> {
    let part = text.trim();
    let mut out = Vec::new();
    if part.is_empty() {
        return Ok(Sources(out));
    }
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
    Ok(Sources(out))
}
