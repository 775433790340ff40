//! URL query strings: `a=1&b=x%20y`, percent-decoded (`+` is a space, as browsers send it).

use std::borrow::Cow;

/// The `key=value` pairs of a query, decoded. Pairs that do not decode to UTF-8 are skipped.
pub fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
}

/// Every value of `key`.
pub fn all<'q>(query: &'q str, key: &'q str) -> impl Iterator<Item = Cow<'q, str>> + 'q {
    pairs(query).filter(move |(k, _)| k == key).map(|(_, v)| v)
}

/// The first value of `key`.
pub fn first<'q>(query: &'q str, key: &'q str) -> Option<Cow<'q, str>> {
    all(query, key).next()
}

/// Percent-decodes one component; `None` if the result is not UTF-8 or an escape is bad.
pub fn decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let q = "channel=a&channel=room%3A1&user=al+ice&flag&x=%E2%82%AC";
        let got: Vec<(String, String)> = pairs(q)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("channel".into(), "a".into()),
                ("channel".into(), "room:1".into()),
                ("user".into(), "al ice".into()),
                ("flag".into(), "".into()),
                ("x".into(), "€".into()),
            ]
        );
        assert_eq!(all(q, "channel").count(), 2);
        assert_eq!(first(q, "user").as_deref(), Some("al ice"));
        assert_eq!(first(q, "none"), None);
    }

    #[test]
    fn bad_escapes_are_skipped() {
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%ff"), None, "not UTF-8");
        assert_eq!(pairs("a=%&b=2").count(), 1);
    }
}
