//! The value parsers of the flags: each turns one flag's text into its value or says, in a
//! few words, what is wrong with it (clap prints that after the flag's name).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::redis_url::RedisUrl;
use super::values::*;

/// A whole number in `MIN..=MAX`.
pub(super) fn range<const MIN: usize, const MAX: usize>(v: &str) -> Result<usize, String> {
    parse_range(v, MIN, MAX)
}

pub(super) fn parse_range(v: &str, min: usize, max: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("{v} is out of range ({min}..={max})")),
        Err(_) => Err(format!("not a whole number: {v:?}")),
    }
}

pub(super) fn secs(v: &str) -> Result<u64, String> {
    // Whole seconds, at least 1: a zero timeout would close everything at once.
    parse_range(v, 1, MAX_TIMEOUT_S).map(|s| s as u64)
}

/// One item of `--redis`; `None` for an empty one (see [`list`]).
pub(super) fn redis_url(v: &str) -> Result<Option<RedisUrl>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    RedisUrl::parse(v).map(Some)
}

pub(super) fn node_id(v: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = !v.is_empty()
        && v.len() <= MAX_NODE_ID_BYTES
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{v:?}: 1-{MAX_NODE_ID_BYTES} letters, digits, '-', '_' or '.'"
        ))
    }
}

pub(super) fn drain_secs(v: &str) -> Result<u64, String> {
    parse_range(v, 0, MAX_DRAIN_S).map(|s| s as u64)
}

pub(super) fn non_empty(v: &str) -> Result<String, String> {
    if v.trim().is_empty() {
        Err("empty value".into())
    } else {
        Ok(v.trim().to_string())
    }
}

/// One item of `--allowed-origin`/`--subprotocol`; `None` for an empty one (see [`list`]).
pub(super) fn list_item(v: &str) -> Result<Option<String>, String> {
    let v = v.trim();
    Ok((!v.is_empty()).then(|| v.to_string()))
}

/// One item of `--listen`; `None` for an empty one (see [`list`]).
pub(super) fn listen_item(v: &str) -> Result<Option<SocketAddr>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("not an IP:PORT address: {v:?}"))
}

/// A secret (`--api-key`, `--token-secret`): not empty, surrounding spaces trimmed.
pub(super) fn secret(v: &str) -> Result<Secret, String> {
    non_empty(v).map(Secret::new)
}

/// A file the server reads at start (it must exist then; read errors are reported there).
pub(super) fn file(v: &str) -> Result<PathBuf, String> {
    non_empty(v).map(PathBuf::from)
}

/// A byte count: a whole number, with an optional `KiB`, `MiB` or `GiB` suffix.
pub(super) fn bytes<const MIN: usize, const MAX: usize>(v: &str) -> Result<usize, String> {
    let t = v.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let mult: usize = match unit.trim() {
        "" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} (use KiB, MiB or GiB)")),
    };
    let n = num
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("not a byte count: {v:?}"))?;
    if (MIN..=MAX).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{v} is out of range ({MIN}..={MAX} bytes)"))
    }
}

/// A rate per second, or 0 for none.
pub(super) fn rate(v: &str) -> Result<u32, String> {
    parse_range(v, 0, MAX_RATE).map(|n| n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_suffixes_and_refuse_the_rest() {
        let b = bytes::<1024, { 1 << 31 }>;
        assert_eq!(b("1048576"), Ok(1 << 20));
        assert_eq!(b("32MiB"), Ok(32 << 20));
        assert_eq!(b("32M"), Ok(32 << 20));
        assert_eq!(b("2 GiB"), Ok(2 << 30));
        assert_eq!(b("64KiB"), Ok(64 << 10));
        assert!(b("1023").is_err(), "below the floor");
        assert!(b("3GiB").is_err(), "above the ceiling");
        assert!(b("32MB").is_err(), "decimal units are ambiguous");
        assert!(b("-1").is_err() && b("").is_err() && b("MiB").is_err());
        assert!(b("99999999999999999999GiB").is_err(), "overflow");
    }

    #[test]
    fn rates_and_secrets() {
        assert_eq!(rate("0"), Ok(0));
        assert_eq!(rate("1000"), Ok(1000));
        assert!(rate("-1").is_err() && rate("1.5").is_err());
        assert_eq!(
            secret("  k3y ").map(|s| s.expose().to_owned()),
            Ok("k3y".into())
        );
        assert!(secret("   ").is_err());
        assert_eq!(format!("{:?}", Secret::new("k3y")), "Secret([redacted])");
    }
}
