//! Connection tokens: verifying a JWT against the configured key(s) into [`Claims`].
//!
//! The signature work is `jsonwebtoken`'s (with the pure-Rust RustCrypto backend), the keys
//! are loaded by [`keys`](crate::auth::keys); the policy is ours and sits in front of both:
//! - **Keys.** `--token-secret` gives HS256; `--token-public-key` (PEM) gives RS256 for an
//!   RSA key or ES256 for a P-256 key. Both may be set. A token's `alg` picks the key:
//!   HS256 only ever meets the secret and RS256/ES256 only the public key, so a token
//!   HMAC-signed with the public key's PEM as the "secret" (the HS/RS confusion) finds no key
//!   when no secret is configured, and fails its MAC against the real secret when one is.
//!   `none` and every other algorithm are refused before any crypto runs.
//! - **Claims.** `sub` (required) is the user, held to the user-name rule; `exp` (required)
//!   and `nbf` (optional) are checked against the `now` the caller passes, with
//!   [`LEEWAY_SECS`] either way for clock skew between issuer and server. `subscribe` and
//!   `publish` are permission lists ([`Perms`]); **an absent list allows nothing**: a token
//!   grants what it names and no more, an issuer that means "everything" writes `["*"]`,
//!   and a token minted only to prove who someone is (for presence, say) cannot publish by
//!   omission. `aud` must name the configured audience when one is set, and a token carrying
//!   `aud` is refused when none is (RFC 7519 §4.1.3: a principal that cannot find itself in
//!   `aud` rejects the token). `iat`, `iss`, `jti` and unknown claims are ignored.
//! - **Bounds.** A token over [`MAX_TOKEN_BYTES`] is refused unread; the signature is checked
//!   before the claims are parsed, so only the issuer's bytes reach the claim parser.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Number;

use crate::auth::keys::{self, Alg, KeyError, Keys};
use crate::auth::perms::Perms;
use crate::names::valid_user;

/// Longest token taken, in bytes (401 above it, before any parsing). Room for a few hundred
/// permission patterns, and well under the request head limit.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed between the issuer and this server, in seconds: a token is still valid
/// this long after its `exp`, and already valid this long before its `nbf`. Small, because
/// it lengthens every token's life.
pub const LEEWAY_SECS: u64 = 5;

/// A claim named by a [`TokenError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Sub,
    Exp,
    Nbf,
    Aud,
    Subscribe,
    Publish,
}

/// Why a token is refused. Every one is `401` before an upgrade; on an open `/ws` (a
/// refresh) the connection is told the reason and keeps its current token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Over [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not three base64url parts of JSON, or a header or claim of the wrong JSON type.
    Malformed,
    /// `alg` is `none`, unknown, or of no configured key.
    WrongAlgorithm,
    BadSignature,
    /// `aud` does not name the configured audience, or is present when none is configured.
    WrongAudience,
    MissingClaim(Claim),
    /// A claim of the right JSON type with a value we cannot take (a negative `exp`, an
    /// invalid channel pattern).
    InvalidClaim(Claim),
    /// `sub` breaks the user-name rule: 1-64 bytes of `A-Z a-z 0-9 _ - . : @`.
    InvalidSub,
    Expired,
    NotYetValid,
    /// A refresh token for another user.
    SubjectChanged,
    /// A refresh token that does not expire later than the current one.
    NotLater,
}

impl TokenError {
    /// Always 401: the request lacks valid credentials, whatever is wrong with them.
    pub fn http_status(self) -> u16 {
        401
    }

    /// Short text for the 401 body or the `/ws` error message.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::TooLarge => "token too large",
            TokenError::Malformed => "token malformed",
            TokenError::WrongAlgorithm => "token algorithm not accepted",
            TokenError::BadSignature => "token signature invalid",
            TokenError::WrongAudience => "token audience (aud) not accepted",
            TokenError::MissingClaim(Claim::Sub) => "token has no sub",
            TokenError::MissingClaim(Claim::Exp) => "token has no exp",
            TokenError::MissingClaim(Claim::Aud) => "token has no aud",
            TokenError::MissingClaim(_) => "token lacks a claim",
            TokenError::InvalidClaim(Claim::Exp) => "token exp is not a date",
            TokenError::InvalidClaim(Claim::Nbf) => "token nbf is not a date",
            TokenError::InvalidClaim(Claim::Subscribe) => "token subscribe has an invalid pattern",
            TokenError::InvalidClaim(Claim::Publish) => "token publish has an invalid pattern",
            TokenError::InvalidClaim(_) => "token has an invalid claim",
            TokenError::InvalidSub => "token sub is not a valid user name",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::SubjectChanged => "refresh token is for another user",
            TokenError::NotLater => "refresh token does not expire later",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.http_status(), self.reason())
    }
}

impl std::error::Error for TokenError {}

/// What a verified token says, kept on its connection for as long as it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user: the only source of identity when tokens are on.
    pub sub: Box<str>,
    /// Expiry, unix seconds (a fractional `exp` rounded down).
    pub exp: u64,
    pub subscribe: Perms,
    pub publish: Perms,
}

impl Claims {
    /// The unix second from which this token no longer verifies: the connection is closed
    /// then unless a refresh came first.
    pub fn close_at(&self) -> u64 {
        self.exp.saturating_add(LEEWAY_SECS)
    }
}

/// One configured key with the `alg` it serves.
struct Slot {
    alg: Alg,
    key: DecodingKey,
    /// Signature, `alg` and `aud` only: times are ours (against the caller's `now`).
    validation: Validation,
}

impl Slot {
    fn new(alg: Alg, key: DecodingKey, audience: Option<&str>) -> Slot {
        let mut validation = Validation::new(alg.jwt());
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        if let Some(aud) = audience {
            validation.set_audience(&[aud]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        Slot {
            alg,
            key,
            validation,
        }
    }
}

/// Verifies tokens against the keys configured at start. Shared by every worker (`Sync`);
/// each verification is independent.
pub struct Verifier {
    hmac: Option<Slot>,
    public: Option<Slot>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.algorithms().collect::<Vec<_>>())
            .finish()
    }
}

impl Verifier {
    /// Builds the verifier, checking every key now so a bad one stops the start, not the
    /// first connection.
    pub fn new(keys: &Keys<'_>) -> Result<Verifier, KeyError> {
        if keys.audience.is_some_and(str::is_empty) {
            return Err(KeyError::EmptyAudience);
        }
        let loaded = keys::load(keys)?;
        let slot = |alg, key| Slot::new(alg, key, keys.audience);
        Ok(Verifier {
            hmac: loaded.hmac.map(|key| slot(Alg::Hs256, key)),
            public: loaded.public.map(|(alg, key)| slot(alg, key)),
        })
    }

    /// The algorithms tokens may use, for the start-up log.
    pub fn algorithms(&self) -> impl Iterator<Item = Alg> + '_ {
        [&self.hmac, &self.public]
            .into_iter()
            .flatten()
            .map(|s| s.alg)
    }

    /// Verifies `token` at unix second `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let alg = header_alg(token)?;
        let slot = [&self.hmac, &self.public]
            .into_iter()
            .flatten()
            .find(|s| s.alg == alg)
            .ok_or(TokenError::WrongAlgorithm)?;
        let data = jsonwebtoken::decode::<RawClaims>(token, &slot.key, &slot.validation)
            .map_err(|e| from_jwt(e.kind()))?;
        data.claims.check(now)
    }

    /// Verifies a token sent on an open connection to extend it: the same `sub`, a later
    /// `exp`. Its permissions replace the current ones (the issuer may narrow or widen them).
    pub fn refresh(&self, current: &Claims, token: &str, now: u64) -> Result<Claims, TokenError> {
        let next = self.verify(token, now)?;
        if next.sub != current.sub {
            return Err(TokenError::SubjectChanged);
        }
        if next.exp <= current.exp {
            return Err(TokenError::NotLater);
        }
        Ok(next)
    }
}

/// The `alg` of a token's header, read before any key is chosen.
fn header_alg(token: &str) -> Result<Alg, TokenError> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        alg: Cow<'a, str>,
    }
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| TokenError::Malformed)?;
    let head: Head<'_> = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    Alg::from_name(&head.alg).ok_or(TokenError::WrongAlgorithm)
}

/// Maps what `jsonwebtoken` refused to our reasons.
fn from_jwt(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => TokenError::WrongAlgorithm,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => TokenError::MissingClaim(Claim::Aud),
        // Keys were proven usable at start; a signature they cannot even parse is a bad one.
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Provider(_) => TokenError::BadSignature,
        _ => TokenError::Malformed,
    }
}

/// The claims as sent. Unknown claims are ignored; a duplicated one is a JSON error.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    exp: Option<Number>,
    nbf: Option<Number>,
    subscribe: Option<Vec<String>>,
    publish: Option<Vec<String>>,
}

impl RawClaims {
    fn check(self, now: u64) -> Result<Claims, TokenError> {
        let sub = self.sub.ok_or(TokenError::MissingClaim(Claim::Sub))?;
        if !valid_user(&sub) {
            return Err(TokenError::InvalidSub);
        }
        let exp = self.exp.ok_or(TokenError::MissingClaim(Claim::Exp))?;
        // Rounded towards the shorter life: exp down, nbf up.
        let exp = numeric_date(&exp, f64::floor).ok_or(TokenError::InvalidClaim(Claim::Exp))?;
        if now >= exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = self.nbf {
            let nbf = numeric_date(&nbf, f64::ceil).ok_or(TokenError::InvalidClaim(Claim::Nbf))?;
            if now.saturating_add(LEEWAY_SECS) < nbf {
                return Err(TokenError::NotYetValid);
            }
        }
        let subscribe = perms(self.subscribe, Claim::Subscribe)?;
        let publish = perms(self.publish, Claim::Publish)?;
        Ok(Claims {
            sub: sub.into_boxed_str(),
            exp,
            subscribe,
            publish,
        })
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional, never negative.
fn numeric_date(n: &Number, round: fn(f64) -> f64) -> Option<u64> {
    if let Some(secs) = n.as_u64() {
        return Some(secs);
    }
    let secs = n.as_f64().filter(|f| f.is_finite() && *f >= 0.0)?;
    // `as` saturates: a date past u64 seconds is "never" either way.
    Some(round(secs) as u64)
}

/// An absent list allows nothing (see the module doc).
fn perms(list: Option<Vec<String>>, claim: Claim) -> Result<Perms, TokenError> {
    match list {
        None => Ok(Perms::none()),
        Some(list) => Perms::parse(list).map_err(|_| TokenError::InvalidClaim(claim)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};

    const NOW: u64 = 1_800_000_000;
    const SECRET: &[u8] = b"test-only secret, 32+ bytes long!";
    const OTHER_SECRET: &[u8] = b"another test-only secret, 32+ bytes";

    use crate::auth::fixture;
    const RSA_PRIVATE: &[u8] = fixture!("rsa_private.pem");
    const RSA_PUBLIC: &[u8] = fixture!("rsa_public.pem");
    const RSA_PUBLIC_PKCS1: &[u8] = fixture!("rsa_public_pkcs1.pem");
    const EC_PRIVATE: &[u8] = fixture!("ec_private.pem");
    const EC_PUBLIC: &[u8] = fixture!("ec_public.pem");

    fn verifier(secret: Option<&[u8]>, public_key_pem: Option<&[u8]>) -> Verifier {
        Verifier::new(&Keys {
            secret,
            public_key_pem,
            audience: None,
        })
        .unwrap()
    }

    fn hs_only() -> Verifier {
        verifier(Some(SECRET), None)
    }

    /// `sub` alice, an hour left, plus `extra` (a `null` removes a claim).
    fn claims(extra: Value) -> Value {
        let mut c = json!({ "sub": "alice", "exp": NOW + 3600 });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        encode(&Header::new(alg), claims, key).unwrap()
    }

    fn hs(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET).unwrap(),
            claims,
        )
    }

    fn rs(claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        sign(Algorithm::RS256, &key, claims)
    }

    fn es(claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        sign(Algorithm::ES256, &key, claims)
    }

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    /// A token with any header, HMAC-signed with `secret` (or unsigned when `None`).
    fn hand_built(header: &str, claims: &Value, secret: Option<&[u8]>) -> String {
        let message = format!("{}.{}", b64(header), b64(&claims.to_string()));
        let signature = match secret {
            Some(s) => {
                let key = EncodingKey::from_secret(s).unwrap();
                jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap()
            }
            None => String::new(),
        };
        format!("{message}.{signature}")
    }

    #[test]
    fn hs256_valid() {
        let c = hs_only().verify(&hs(&claims(json!({}))), NOW).unwrap();
        assert_eq!(&*c.sub, "alice");
        assert_eq!(c.exp, NOW + 3600);
        assert_eq!(c.close_at(), NOW + 3600 + LEEWAY_SECS);
        // Absent permission claims allow nothing.
        assert!(c.subscribe.is_none() && c.publish.is_none());
    }

    #[test]
    fn rs256_and_es256_valid() {
        for pem in [RSA_PUBLIC, RSA_PUBLIC_PKCS1] {
            let v = verifier(None, Some(pem));
            assert_eq!(v.algorithms().collect::<Vec<_>>(), [Alg::Rs256]);
            assert_eq!(
                &*v.verify(&rs(&claims(json!({}))), NOW).unwrap().sub,
                "alice"
            );
        }
        let v = verifier(None, Some(EC_PUBLIC));
        assert_eq!(v.algorithms().collect::<Vec<_>>(), [Alg::Es256]);
        assert_eq!(
            &*v.verify(&es(&claims(json!({}))), NOW).unwrap().sub,
            "alice"
        );
    }

    #[test]
    fn both_keys_each_serve_their_algorithm() {
        let v = verifier(Some(SECRET), Some(RSA_PUBLIC));
        assert_eq!(v.algorithms().collect::<Vec<_>>(), [Alg::Hs256, Alg::Rs256]);
        assert!(v.verify(&hs(&claims(json!({}))), NOW).is_ok());
        assert!(v.verify(&rs(&claims(json!({}))), NOW).is_ok());
        assert_eq!(
            v.verify(&es(&claims(json!({}))), NOW),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn permissions_from_claims() {
        let token = hs(&claims(json!({ "subscribe": ["room:*"] })));
        let c = hs_only().verify(&token, NOW).unwrap();
        assert!(c.subscribe.allows("room:1") && !c.subscribe.allows("other"));
        assert!(
            !c.publish.allows("room:1"),
            "no publish claim, no publishing"
        );

        let token = hs(&claims(
            json!({ "subscribe": ["*"], "publish": ["chat:*", "news"] }),
        ));
        let c = hs_only().verify(&token, NOW).unwrap();
        assert!(c.subscribe.is_all());
        assert!(c.publish.allows("chat:x") && c.publish.allows("news") && !c.publish.allows("x"));

        let token = hs(&claims(json!({ "subscribe": [], "publish": null })));
        let c = hs_only().verify(&token, NOW).unwrap();
        assert!(c.subscribe.is_none() && c.publish.is_none());
    }

    #[test]
    fn expiry_with_leeway() {
        let v = hs_only();
        let at = |exp: Value| v.verify(&hs(&claims(json!({ "exp": exp }))), NOW);
        assert_eq!(at(json!(NOW - LEEWAY_SECS)), Err(TokenError::Expired));
        assert_eq!(at(json!(NOW - 3600)), Err(TokenError::Expired));
        assert_eq!(at(json!(0)), Err(TokenError::Expired));
        assert!(
            at(json!(NOW - LEEWAY_SECS + 1)).is_ok(),
            "inside the leeway"
        );
        assert!(at(json!(NOW)).is_ok());
        // A fractional exp is rounded down, towards the shorter life.
        assert_eq!(
            at(json!((NOW - LEEWAY_SECS) as f64 + 0.9)),
            Err(TokenError::Expired)
        );
        assert_eq!(at(json!(u64::MAX)).unwrap().close_at(), u64::MAX);
        assert_eq!(at(json!(-1)), Err(TokenError::InvalidClaim(Claim::Exp)));
        assert_eq!(at(json!("soon")), Err(TokenError::Malformed));
    }

    #[test]
    fn not_before_with_leeway() {
        let v = hs_only();
        let at = |nbf: Value| v.verify(&hs(&claims(json!({ "nbf": nbf }))), NOW);
        assert_eq!(
            at(json!(NOW + LEEWAY_SECS + 1)),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(at(json!(NOW + 60)), Err(TokenError::NotYetValid));
        assert!(at(json!(NOW + LEEWAY_SECS)).is_ok(), "inside the leeway");
        assert!(at(json!(NOW - 60)).is_ok());
        // Rounded up, towards the shorter life.
        let frac = (NOW + LEEWAY_SECS) as f64 + 0.5;
        assert_eq!(at(json!(frac)), Err(TokenError::NotYetValid));
        assert_eq!(at(json!(-5)), Err(TokenError::InvalidClaim(Claim::Nbf)));
    }

    #[test]
    fn wrong_signature() {
        let v = hs_only();
        let other = EncodingKey::from_secret(OTHER_SECRET).unwrap();
        let token = sign(Algorithm::HS256, &other, &claims(json!({})));
        assert_eq!(v.verify(&token, NOW), Err(TokenError::BadSignature));

        // A valid token whose claims were swapped for others: the signature no longer fits.
        let good = hs(&claims(json!({})));
        let forged = b64(&claims(json!({ "sub": "mallory", "publish": ["*"] })).to_string());
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[1] = &forged;
        assert_eq!(
            v.verify(&parts.join("."), NOW),
            Err(TokenError::BadSignature)
        );

        let v = verifier(None, Some(RSA_PUBLIC));
        let mut token = rs(&claims(json!({})));
        token.pop();
        token.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(v.verify(&token, NOW), Err(TokenError::BadSignature));
        let v = verifier(None, Some(EC_PUBLIC));
        let good = es(&claims(json!({})));
        let (message, _) = good.rsplit_once('.').unwrap();
        let token = format!("{message}.{}", b64("not a signature at all"));
        assert_eq!(v.verify(&token, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn alg_none_is_refused() {
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None"}"#,
            r#"{"alg":"NONE"}"#,
        ] {
            let token = hand_built(header, &claims(json!({})), None);
            assert!(token.ends_with('.'));
            for v in [hs_only(), verifier(None, Some(RSA_PUBLIC))] {
                assert_eq!(
                    v.verify(&token, NOW),
                    Err(TokenError::WrongAlgorithm),
                    "{header}"
                );
            }
        }
    }

    /// The HS/RS confusion: an attacker who knows the public key HMAC-signs a token with
    /// the PEM file's bytes as the secret and claims `HS256`.
    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        for pem in [RSA_PUBLIC, EC_PUBLIC] {
            let forged = claims(json!({ "publish": ["*"] }));
            let key = EncodingKey::from_secret(pem).unwrap();
            let by_library = sign(Algorithm::HS256, &key, &forged);
            let by_hand = hand_built(r#"{"alg":"HS256","typ":"JWT"}"#, &forged, Some(pem));
            for token in [by_library, by_hand] {
                // Only a public key: HS256 has no key at all.
                let v = verifier(None, Some(pem));
                assert_eq!(v.verify(&token, NOW), Err(TokenError::WrongAlgorithm));
                // A secret too: HS256 is checked against the secret, never the public key.
                let v = verifier(Some(SECRET), Some(pem));
                assert_eq!(v.verify(&token, NOW), Err(TokenError::BadSignature));
            }
        }
    }

    #[test]
    fn public_key_algorithms_need_the_public_key() {
        let v = hs_only();
        assert_eq!(
            v.verify(&rs(&claims(json!({}))), NOW),
            Err(TokenError::WrongAlgorithm)
        );
        assert_eq!(
            v.verify(&es(&claims(json!({}))), NOW),
            Err(TokenError::WrongAlgorithm)
        );
        let v = verifier(None, Some(RSA_PUBLIC));
        assert_eq!(
            v.verify(&es(&claims(json!({}))), NOW),
            Err(TokenError::WrongAlgorithm)
        );
        let v = verifier(None, Some(EC_PUBLIC));
        assert_eq!(
            v.verify(&rs(&claims(json!({}))), NOW),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn other_algorithms_are_refused() {
        let hmac = EncodingKey::from_secret(SECRET).unwrap();
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign(alg, &hmac, &claims(json!({})));
            assert_eq!(
                hs_only().verify(&token, NOW),
                Err(TokenError::WrongAlgorithm)
            );
        }
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let v = verifier(None, Some(RSA_PUBLIC));
        for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
            let token = sign(alg, &rsa, &claims(json!({})));
            assert_eq!(
                v.verify(&token, NOW),
                Err(TokenError::WrongAlgorithm),
                "{alg:?}"
            );
        }
        // Lower case is not the same name.
        let token = hand_built(r#"{"alg":"hs256"}"#, &claims(json!({})), Some(SECRET));
        assert_eq!(
            hs_only().verify(&token, NOW),
            Err(TokenError::WrongAlgorithm)
        );
    }

    #[test]
    fn required_claims() {
        let v = hs_only();
        let with = |extra: Value| v.verify(&hs(&claims(extra)), NOW);
        assert_eq!(
            with(json!({ "sub": null })),
            Err(TokenError::MissingClaim(Claim::Sub))
        );
        assert_eq!(
            with(json!({ "exp": null })),
            Err(TokenError::MissingClaim(Claim::Exp))
        );
        let long = "u".repeat(65);
        for bad in ["", "al ice", "alice/1", "é", &long] {
            assert_eq!(
                with(json!({ "sub": bad })),
                Err(TokenError::InvalidSub),
                "{bad:?}"
            );
        }
        assert!(with(json!({ "sub": "u".repeat(64) })).is_ok());
        assert!(with(json!({ "sub": "user:42@example.org" })).is_ok());
        assert_eq!(with(json!({ "sub": 42 })), Err(TokenError::Malformed));
        // Other claims are ignored, whatever their type.
        assert!(with(json!({ "iat": "x", "iss": 1, "jti": [1], "role": {"a": 1} })).is_ok());
    }

    #[test]
    fn invalid_permission_claims_refuse_the_token() {
        let v = hs_only();
        let with = |extra: Value| v.verify(&hs(&claims(extra)), NOW);
        let bad = Err(TokenError::InvalidClaim(Claim::Subscribe));
        assert_eq!(with(json!({ "subscribe": ["room:1", "a*b"] })), bad);
        assert_eq!(with(json!({ "subscribe": [""] })), bad);
        let bad = Err(TokenError::InvalidClaim(Claim::Publish));
        assert_eq!(with(json!({ "publish": ["**"] })), bad);
        // Not a list of strings at all.
        assert_eq!(
            with(json!({ "publish": "room:*" })),
            Err(TokenError::Malformed)
        );
        assert_eq!(with(json!({ "publish": [1] })), Err(TokenError::Malformed));
    }

    #[test]
    fn duplicate_claims_are_malformed() {
        let message = format!(
            "{}.{}",
            b64(r#"{"alg":"HS256"}"#),
            b64(&format!(
                r#"{{"sub":"alice","sub":"admin","exp":{}}}"#,
                NOW + 60
            ))
        );
        let key = EncodingKey::from_secret(SECRET).unwrap();
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
        let token = format!("{message}.{sig}");
        assert_eq!(hs_only().verify(&token, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn malformed_tokens() {
        let v = hs_only();
        let good = hs(&claims(json!({})));
        let (head, rest) = good.split_once('.').unwrap();
        for bad in [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c".into(),
            format!("{good}.x"),
            format!("{head}="),
            format!("{}.{rest}", b64("not json")),
            format!("{}.{rest}", b64(r#"{"typ":"JWT"}"#)),
            format!("{}.{rest}", b64(r#"{"alg":"HS256","crit":["exp"]}"#)),
        ] {
            assert_eq!(v.verify(&bad, NOW), Err(TokenError::Malformed), "{bad:?}");
        }
        // Claims that are not base64 JSON behind a good signature: the issuer's bug, still a
        // refusal. (Behind a bad signature the same bytes are a bad signature: it is checked
        // first.)
        let key = EncodingKey::from_secret(SECRET).unwrap();
        for payload in ["!!!", &b64("[1,2]"), &b64("not json")] {
            let message = format!("{head}.{payload}");
            let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256);
            let token = format!("{message}.{}", sig.unwrap());
            assert_eq!(
                v.verify(&token, NOW),
                Err(TokenError::Malformed),
                "{payload}"
            );
            let unsigned = format!("{message}.{}", rest.split_once('.').unwrap().1);
            assert_eq!(v.verify(&unsigned, NOW), Err(TokenError::BadSignature));
        }
    }

    #[test]
    fn size_is_bounded_before_parsing() {
        let v = hs_only();
        assert_eq!(
            v.verify(&"x".repeat(MAX_TOKEN_BYTES + 1), NOW),
            Err(TokenError::TooLarge)
        );
        // Just under the bound, a real token still verifies.
        let patterns: Vec<String> = (0..500).map(|i| format!("room:{i}")).collect();
        let token = hs(&claims(json!({ "subscribe": patterns })));
        assert!(token.len() > MAX_TOKEN_BYTES * 7 / 8 && token.len() <= MAX_TOKEN_BYTES);
        let c = v.verify(&token, NOW).unwrap();
        assert!(c.subscribe.allows("room:499") && !c.subscribe.allows("room:500"));
        let patterns: Vec<String> = (0..700).map(|i| format!("room:{i}")).collect();
        let token = hs(&claims(json!({ "subscribe": patterns })));
        assert_eq!(v.verify(&token, NOW), Err(TokenError::TooLarge));
    }

    #[test]
    fn audience() {
        let v = Verifier::new(&Keys {
            secret: Some(SECRET),
            public_key_pem: None,
            audience: Some("switchboard"),
        })
        .unwrap();
        let with = |extra: Value| v.verify(&hs(&claims(extra)), NOW);
        assert!(with(json!({ "aud": "switchboard" })).is_ok());
        assert!(with(json!({ "aud": ["other", "switchboard"] })).is_ok());
        assert_eq!(
            with(json!({ "aud": "other" })),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(with(json!({})), Err(TokenError::MissingClaim(Claim::Aud)));
        // No audience configured: a token meant for some audience is not for us.
        let v = hs_only();
        let with = |extra: Value| v.verify(&hs(&claims(extra)), NOW);
        assert_eq!(
            with(json!({ "aud": "switchboard" })),
            Err(TokenError::WrongAudience)
        );
        assert!(with(json!({})).is_ok());
    }

    #[test]
    fn refresh() {
        let v = hs_only();
        let current = v.verify(&hs(&claims(json!({}))), NOW).unwrap();
        let later = claims(json!({ "exp": NOW + 7200, "publish": ["room:*"] }));
        let next = v.refresh(&current, &hs(&later), NOW + 3000).unwrap();
        assert_eq!(next.exp, NOW + 7200);
        assert!(
            next.publish.allows("room:1"),
            "the new token's permissions replace the old"
        );

        let other_user = claims(json!({ "sub": "bob", "exp": NOW + 7200 }));
        assert_eq!(
            v.refresh(&current, &hs(&other_user), NOW),
            Err(TokenError::SubjectChanged)
        );
        for exp in [NOW + 3600, NOW + 60] {
            let not_later = claims(json!({ "exp": exp }));
            assert_eq!(
                v.refresh(&current, &hs(&not_later), NOW),
                Err(TokenError::NotLater)
            );
        }
        assert_eq!(
            v.refresh(&current, &hs(&later), NOW + 7200 + LEEWAY_SECS),
            Err(TokenError::Expired)
        );
        assert_eq!(v.refresh(&current, "junk", NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn key_errors_stop_the_start() {
        let new = |keys: Keys<'_>| Verifier::new(&keys).map(|_| ());
        assert_eq!(new(Keys::default()), Err(KeyError::NoKey));
        let pem = Some(RSA_PRIVATE);
        let private = Keys {
            public_key_pem: pem,
            ..Keys::default()
        };
        assert_eq!(new(private), Err(KeyError::PrivateKey));
        let empty_aud = Keys {
            secret: Some(SECRET),
            audience: Some(""),
            ..Keys::default()
        };
        assert_eq!(new(empty_aud), Err(KeyError::EmptyAudience));
        assert!(!format!("{:?}", hs_only()).contains("secret, 32"));
    }

    #[test]
    fn every_refusal_is_401() {
        let all = [
            TokenError::TooLarge,
            TokenError::Malformed,
            TokenError::WrongAlgorithm,
            TokenError::BadSignature,
            TokenError::WrongAudience,
            TokenError::MissingClaim(Claim::Sub),
            TokenError::InvalidClaim(Claim::Publish),
            TokenError::InvalidSub,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::SubjectChanged,
            TokenError::NotLater,
        ];
        for e in all {
            assert_eq!(e.http_status(), 401);
            assert!(
                e.to_string().starts_with("401 token") || e.to_string().starts_with("401 refresh")
            );
        }
    }

    #[test]
    fn claims_stay_small() {
        assert_eq!(std::mem::size_of::<Claims>(), 56);
        assert!(std::mem::size_of::<TokenError>() <= 2);
    }

    #[test]
    fn verifier_is_shared_across_workers() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Verifier>();
    }
}
