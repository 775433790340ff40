//! Incremental UTF-8 validation for text messages that arrive in pieces (fragments, partial
//! reads), failing on the first byte that no valid continuation could follow (RFC 6455 §8.1:
//! fail the connection as soon as invalid data is seen, not at the end of the message).

/// Validation state carried between pieces: the bytes of a character cut by a piece boundary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// The piece contains a byte sequence that is not, and cannot become, valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece. Everything fed so far must be a prefix of valid UTF-8.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            // Complete the character cut at the last boundary, one byte at a time (at most 3).
            while self.carry_len > 0 {
                let Some((&b, rest)) = piece.split_first() else {
                    return Ok(());
                };
                piece = rest;
                self.carry[usize::from(self.carry_len)] = b;
                self.carry_len += 1;
                let have = &self.carry[..usize::from(self.carry_len)];
                match std::str::from_utf8(have) {
                    Ok(_) => self.carry_len = 0,
                    Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                    Err(_) => {}
                }
            }
        }
        match std::str::from_utf8(piece) {
            Ok(_) => Ok(()),
            // An invalid sequence, or a prefix that no continuation can make valid.
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                // A valid but incomplete character at the end (std checks that the prefix can
                // still become valid, so F4 90 fails above while F4 8F waits here).
                let tail = piece.get(e.valid_up_to()..).unwrap_or_default();
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Whether the input so far ended on a character boundary (required at message end).
    pub fn is_complete(&self) -> bool {
        self.carry_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(pieces: &[&[u8]]) -> Result<bool, InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for p in pieces {
            v.feed(p)?;
        }
        Ok(v.is_complete())
    }

    #[test]
    fn whole_strings() {
        assert_eq!(feed_all(&[b""]), Ok(true));
        assert_eq!(feed_all(&["Hello-µ@ßöäüàá-UTF-8!!".as_bytes()]), Ok(true));
        assert_eq!(
            feed_all(&[b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"]),
            Ok(true)
        );
        assert_eq!(feed_all(&[b"\xff"]), Err(InvalidUtf8));
        assert_eq!(feed_all(&[b"\xed\xa0\x80"]), Err(InvalidUtf8), "surrogate");
        assert_eq!(feed_all(&[b"\xc0\xaf"]), Err(InvalidUtf8), "overlong");
        assert_eq!(
            feed_all(&[b"\xf4\x90\x80\x80"]),
            Err(InvalidUtf8),
            "above U+10FFFF"
        );
    }

    #[test]
    fn every_split_of_valid_text_is_accepted() {
        let text = "κόσμε a𝄞b€c\u{10FFFF}".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let r = feed_all(&[&text[..i], &text[i..j], &text[j..]]);
                assert_eq!(r, Ok(true), "split {i} {j}");
            }
        }
    }

    #[test]
    fn incomplete_end_is_reported() {
        assert_eq!(feed_all(&[b"ab\xe2\x82"]), Ok(false));
        assert_eq!(feed_all(&[b"ab\xe2", b"\x82"]), Ok(false));
        assert_eq!(feed_all(&[b"ab\xe2", b"\x82", b"\xac"]), Ok(true));
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        // Autobahn 6.4.x: the bad byte arrives before the rest of the message.
        assert_eq!(
            feed_all(&[b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90"]),
            Err(InvalidUtf8)
        );
        assert_eq!(feed_all(&[b"\xf4", b"\x90"]), Err(InvalidUtf8));
        assert_eq!(
            feed_all(&[b"\xe0", b"\x80"]),
            Err(InvalidUtf8),
            "overlong prefix"
        );
        assert_eq!(
            feed_all(&[b"\xed", b"\xa0"]),
            Err(InvalidUtf8),
            "surrogate prefix"
        );
        assert_eq!(feed_all(&[b"\xf4\x8f"]), Ok(false), "still possible");
    }

    #[test]
    fn invalid_in_any_position_of_any_split_fails() {
        let bad = b"hello\xc3\x28world";
        for i in 0..=bad.len() {
            assert_eq!(
                feed_all(&[&bad[..i], &bad[i..]]),
                Err(InvalidUtf8),
                "split {i}"
            );
        }
    }
}
