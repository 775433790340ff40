//! Which `permessage-deflate` offer a client's `Sec-WebSocket-Extensions` headers make that
//! we accept, and what the 101 answers (RFC 7692 §5, §7.1; the header grammar of RFC 6455
//! §9.1).
//!
//! We always use no context takeover both ways, so nothing of DEFLATE outlives a message:
//! the answer is `permessage-deflate; server_no_context_takeover;
//! client_no_context_takeover`, with `server_max_window_bits=N` echoed when the offer
//! limited our window. Offers are tried in the client's order; one we cannot honour is
//! declined and the next one tried (§5). A header that does not parse at all means no
//! compression for the connection (the upgrade itself still succeeds: compression is an
//! optional extension, and refusing the connection would punish a client for an extension
//! it can live without).

use std::borrow::Cow;
use std::num::NonZeroU8;

/// Our compressor's window when the client does not limit it.
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window zlib can compress raw DEFLATE with: it cannot do 8 (a 256-byte
/// window) for a raw stream, so an offer of `server_max_window_bits=8` is declined.
pub const MIN_WINDOW_BITS: u8 = 9;

const NAME: &str = "permessage-deflate";

/// What was agreed for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// `server_max_window_bits` as offered (9..=15), echoed in the answer; `None`: the
    /// client did not limit our window (we use 15).
    server_max_window_bits: Option<u8>,
}

/// What a connection keeps of the agreement after the 101: that it compresses, and the
/// most window bits our compressor may use for it. One byte (`Option<Window>` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(NonZeroU8);

impl Window {
    /// The largest window, what a connection that did not limit ours gets.
    pub const MAX: Window = Window(match NonZeroU8::new(MAX_WINDOW_BITS) {
        Some(n) => n,
        None => NonZeroU8::MIN,
    });

    /// 9..=15.
    pub fn bits(self) -> u8 {
        self.0.get()
    }
}

impl Agreed {
    /// The most window bits our compressor may use for this connection.
    pub fn window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS)
    }

    /// What the connection remembers.
    pub fn window(&self) -> Window {
        Window(NonZeroU8::new(self.window_bits()).unwrap_or(NonZeroU8::MIN))
    }

    /// The `Sec-WebSocket-Extensions` value of the 101.
    pub fn answer(&self) -> String {
        let mut s = format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
        if let Some(n) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={n}"));
        }
        s
    }
}

/// The offer we accept among every `Sec-WebSocket-Extensions` header value of a request
/// (in order), or `None`: no offer of ours, every one declined, or a header that does not
/// parse.
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Agreed> {
    let mut offers = Vec::new();
    for value in headers {
        offers.extend(parse_header(value).ok()?);
    }
    offers.iter().find_map(accept)
}

/// One extension of an offer list, with its parameters (values unquoted).
#[derive(Debug, PartialEq, Eq)]
struct Offer<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<Cow<'a, str>>)>,
}

/// Whether we accept `offer`, and on what terms.
fn accept(offer: &Offer<'_>) -> Option<Agreed> {
    if !offer.name.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreed = Agreed {
        server_max_window_bits: None,
    };
    for (name, value) in &offer.params {
        let value = value.as_deref();
        let which = [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        ]
        .iter()
        .position(|p| name.eq_ignore_ascii_case(p))?;
        // §7.1: a parameter given twice declines the offer.
        if std::mem::replace(&mut seen[which], true) {
            return None;
        }
        match (which, value) {
            // The two no-context-takeover parameters take no value.
            (0 | 1, None) => {}
            (0 | 1, Some(_)) => return None,
            // Our window: we must stay within it; below 9 zlib cannot.
            (2, Some(v)) => match window_bits(v)? {
                n if n >= MIN_WINDOW_BITS => agreed.server_max_window_bits = Some(n),
                _ => return None,
            },
            (2, None) => return None,
            // The client's window: we inflate with the largest (15), which covers any it
            // uses, so we need not answer it; a value must still be valid.
            (_, Some(v)) => {
                window_bits(v)?;
            }
            (_, None) => {}
        }
    }
    Some(agreed)
}

/// §7.1.2: a window is a decimal 8..=15 without leading zeros.
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|n| (8..=15).contains(n))
}

/// A header value that is not an extension list (RFC 6455 §9.1).
#[derive(Debug, PartialEq, Eq)]
struct Malformed;

/// Parses one header value: `ext *(";" param) *("," ext ...)`, where a param is
/// `token ["=" (token | quoted-string)]` and a quoted value must unquote to a token. Empty
/// list elements (`a, , b`) are allowed (RFC 9110 §5.6.1); whitespace around separators too.
fn parse_header(value: &str) -> Result<Vec<Offer<'_>>, Malformed> {
    let mut p = Lexer { s: value, at: 0 };
    let mut offers = Vec::new();
    loop {
        p.skip_ws();
        match p.peek() {
            None => break,
            Some(b',') => {
                p.at += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = p.token()?;
        let mut params = Vec::new();
        loop {
            p.skip_ws();
            match p.peek() {
                None | Some(b',') => break,
                Some(b';') => p.at += 1,
                Some(_) => return Err(Malformed),
            }
            p.skip_ws();
            let pname = p.token()?;
            p.skip_ws();
            let pvalue = if p.peek() == Some(b'=') {
                p.at += 1;
                p.skip_ws();
                Some(p.value()?)
            } else {
                None
            };
            params.push((pname, pvalue));
        }
        offers.push(Offer { name, params });
    }
    Ok(offers)
}

struct Lexer<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// One or more token characters.
    fn token(&mut self) -> Result<&'a str, Malformed> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        match self.s.get(start..self.at) {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(Malformed),
        }
    }

    /// A token, or a quoted string whose content (unescaped) is a token.
    fn value(&mut self) -> Result<Cow<'a, str>, Malformed> {
        if self.peek() != Some(b'"') {
            return self.token().map(Cow::Borrowed);
        }
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(Malformed),
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(b'\\') => {
                    let c = self
                        .s
                        .as_bytes()
                        .get(self.at + 1)
                        .copied()
                        .ok_or(Malformed)?;
                    out.push(char::from(c));
                    self.at += 2;
                }
                Some(c) => {
                    out.push(char::from(c));
                    self.at += 1;
                }
            }
        }
        if out.is_empty() || !out.bytes().all(is_tchar) {
            return Err(Malformed);
        }
        Ok(Cow::Owned(out))
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn answer(headers: &[&str]) -> Option<String> {
        negotiate(headers.iter().copied()).map(|a| a.answer())
    }

    fn with_bits(n: u8) -> String {
        format!("{PLAIN}; server_max_window_bits={n}")
    }

    #[test]
    fn offers_real_clients_make() {
        let table: &[(&str, &[&str], Option<String>)] = &[
            (
                "Chrome, Firefox, Node ws (default)",
                &["permessage-deflate; client_max_window_bits"],
                Some(PLAIN.into()),
            ),
            (
                "Python websockets (default client)",
                &["permessage-deflate; client_max_window_bits"],
                Some(PLAIN.into()),
            ),
            (
                "Python websockets with its server-side defaults as a client offer",
                &["permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"],
                Some(with_bits(12)),
            ),
            (
                "Node ws, every option",
                &["permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"],
                Some(with_bits(10)),
            ),
            (
                "Autobahn default offer",
                &["permessage-deflate; client_no_context_takeover; client_max_window_bits"],
                Some(PLAIN.into()),
            ),
            ("bare", &["permessage-deflate"], Some(PLAIN.into())),
            ("other extensions only", &["x-webkit-deflate-frame"], None),
            ("none", &[], None),
        ];
        for (who, headers, want) in table {
            assert_eq!(&answer(headers), want, "{who}");
        }
    }

    #[test]
    fn rfc7692_section_7_1_examples() {
        // §7.1.1/§7.1.2 examples, and §5.2's "several offers, first acceptable wins".
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits; server_max_window_bits=10"]),
            Some(with_bits(10))
        );
        assert_eq!(
            answer(&["permessage-deflate; server_max_window_bits=10, permessage-deflate"]),
            Some(with_bits(10))
        );
        assert_eq!(
            answer(&["permessage-deflate; server_no_context_takeover"]),
            Some(PLAIN.into())
        );
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits=10"]),
            Some(PLAIN.into()),
            "we inflate with 15 bits, so client_max_window_bits is not answered"
        );
    }

    #[test]
    fn window_bits_rules() {
        for n in 9..=15 {
            let offer = format!("permessage-deflate; server_max_window_bits={n}");
            assert_eq!(answer(&[&offer]), Some(with_bits(n)), "{n}");
            let quoted = format!("permessage-deflate; server_max_window_bits=\"{n}\"");
            assert_eq!(answer(&[&quoted]), Some(with_bits(n)), "quoted {n}");
        }
        for bad in [
            "8", "7", "16", "0", "09", "015", "1a", "", "-9", "+9", "9.0",
        ] {
            let offer = format!("permessage-deflate; server_max_window_bits={bad}");
            assert_eq!(answer(&[&offer]), None, "server_max_window_bits={bad:?}");
        }
        assert_eq!(
            answer(&["permessage-deflate; server_max_window_bits"]),
            None,
            "needs a value"
        );
        assert_eq!(
            answer(&["permessage-deflate; client_max_window_bits=8"]),
            Some(PLAIN.into()),
            "8 is a valid client window: we inflate with 15"
        );
        for bad in ["7", "16", "08", "x"] {
            let offer = format!("permessage-deflate; client_max_window_bits={bad}");
            assert_eq!(answer(&[&offer]), None, "client_max_window_bits={bad}");
        }
    }

    #[test]
    fn a_declined_offer_falls_through_to_the_next() {
        // Autobahn 13.7's three offers, with the 8 bits older suites sent in the first.
        assert_eq!(
            answer(&["permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8, permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover, permessage-deflate; client_no_context_takeover; client_max_window_bits"]),
            Some(PLAIN.into())
        );
        // Across header lines, in order.
        assert_eq!(
            answer(&[
                "permessage-deflate; server_max_window_bits=8",
                "x-foo, permessage-deflate; server_max_window_bits=11"
            ]),
            Some(with_bits(11))
        );
        for declined in [
            "permessage-deflate; unknown_param",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"x\"",
        ] {
            assert_eq!(answer(&[declined]), None, "{declined}");
            let then_plain = format!("{declined}, permessage-deflate");
            assert_eq!(answer(&[&then_plain]), Some(PLAIN.into()), "{then_plain}");
        }
    }

    #[test]
    fn syntax() {
        // Case, whitespace, empty list elements, quoted values.
        assert_eq!(
            answer(&["  , Permessage-Deflate ;\tSERVER_MAX_WINDOW_BITS = \"12\" , "]),
            Some(with_bits(12))
        );
        assert_eq!(
            parse_header("a; b=\"c\\d\", e").unwrap(),
            vec![
                Offer {
                    name: "a",
                    params: vec![("b", Some(Cow::Owned("cd".into())))],
                },
                Offer {
                    name: "e",
                    params: vec![],
                },
            ]
        );
    }

    #[test]
    fn an_unparseable_header_means_no_compression() {
        for bad in [
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=\"1 0\"",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate;",
            "permessage-deflate; =10",
            "permessage-deflate x",
            "permessage-deflate; a=b=c",
            "per\u{e9}message-deflate",
            ";permessage-deflate",
        ] {
            assert_eq!(answer(&[bad]), None, "{bad}");
            // Even with a good offer in another header line.
            assert_eq!(answer(&["permessage-deflate", bad]), None, "{bad}");
        }
    }
}
