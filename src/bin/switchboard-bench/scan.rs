//! Numbers out of server messages without parsing them: the receive path looks at every
//! message of every subscriber, so it scans for a key instead of building a JSON tree.

/// The unsigned integer after the first `"key":` in `text`, if any: how the bench reads
/// sequence numbers and ids out of payloads.
pub fn find_u64(text: &[u8], key: &str) -> Option<u64> {
    let needle = format!("\"{key}\":");
    let at = text
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?;
    let mut rest = text.get(at + needle.len()..)?;
    while let Some((b' ', tail)) = rest.split_first() {
        rest = tail;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(rest.get(..digits)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numbers_in_payloads() {
        let msg = br#"{"type":"message","channel":"c","id": 42,"data":{"seq":7}}"#;
        assert_eq!(find_u64(msg, "id"), Some(42));
        assert_eq!(find_u64(msg, "seq"), Some(7));
        assert_eq!(find_u64(msg, "ts"), None);
        assert_eq!(find_u64(br#"{"id":"x"}"#, "id"), None);
    }
}
