//! Arbitrary bytes as a connection token, the way a client hands one over (`?token=`, a
//! Bearer header, a `refresh` op): verifying must never panic and never accept a token the
//! server's keys did not sign. Bytes starting with `{` are also signed with the test secret
//! as a token's claims, so the claim checks (sub, times, permission patterns) are fuzzed past
//! the signature: whatever they accept must hold up.
#![no_main]

use std::sync::OnceLock;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use switchboard::auth::keys::Keys;
use switchboard::auth::perms::valid_pattern;
use switchboard::auth::token::Verifier;
use switchboard::names::valid_user;

const SECRET: &[u8] = b"the fuzz target's secret, thirty-two bytes at least";
const NOW: u64 = 1_800_000_000;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let keys = Keys {
            secret: Some(SECRET),
            ..Keys::default()
        };
        Verifier::new(&keys).expect("the test secret is a valid key")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(claims) = verifier().verify(text, NOW) {
        panic!("accepted a token nobody signed: {text:?} → {claims:?}");
    }
    if !text.starts_with('{') {
        return;
    }
    let Ok(raw) = RawValue::from_string(text.to_owned()) else {
        return;
    };
    let key = EncodingKey::from_secret(SECRET).expect("an HMAC key");
    let Ok(token) = encode(&Header::new(Algorithm::HS256), &raw, &key) else {
        return;
    };
    match verifier().verify(&token, NOW) {
        Ok(c) => {
            assert!(valid_user(&c.sub), "accepted sub {:?}", c.sub);
            assert!(c.close_at() > NOW, "accepted an expired token: {c:?}");
            for p in c.subscribe.patterns().chain(c.publish.patterns()) {
                assert!(valid_pattern(p), "accepted pattern {p:?} from {text}");
            }
        }
        Err(e) => assert_eq!(e.http_status(), 401),
    }
});
