//! The key material tokens are verified with, loaded and checked once at start: an HS256
//! secret, and/or one PEM public key that is RSA (RS256) or EC on P-256 (ES256).
//!
//! Everything an operator can get wrong is refused here with a sentence saying what, so a
//! bad key stops the start rather than every connection: a short secret, a private key in
//! the public key's place, a certificate, a second PEM block, an unsupported curve, a small
//! RSA modulus, a key the crypto backend cannot use.

use std::fmt;

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, DecodingKey};

/// Shortest HS256 secret taken, in bytes: RFC 7518 §3.2 requires a key at least as long as
/// the hash output (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;
/// Smallest RSA modulus taken for RS256, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A signature algorithm the server takes. Anything else in a token's `alg` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// HMAC-SHA256 with the configured secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and the configured RSA public key.
    Rs256,
    /// ECDSA on P-256 with SHA-256 and the configured EC public key.
    Es256,
}

impl Alg {
    /// The name a JWT header gives it.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }

    /// Exactly these names, case and all: `none`, `HS512`, `hs256`… are no algorithm of ours.
    pub(crate) fn from_name(name: &str) -> Option<Alg> {
        [Alg::Hs256, Alg::Rs256, Alg::Es256]
            .into_iter()
            .find(|a| a.name() == name)
    }

    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            Alg::Hs256 => Algorithm::HS256,
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
        }
    }
}

/// What the verifier is built from: the configured key material, as read at start.
#[derive(Clone, Copy, Default)]
pub struct Keys<'a> {
    /// The HS256 secret, raw bytes.
    pub secret: Option<&'a [u8]>,
    /// The contents of a PEM file holding one RSA or P-256 EC public key.
    pub public_key_pem: Option<&'a [u8]>,
    /// The audience tokens must name in `aud`.
    pub audience: Option<&'a str>,
}

impl fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("secret", &self.secret.map(|_| "[redacted]"))
            .field("public_key_pem", &self.public_key_pem.map(<[u8]>::len))
            .field("audience", &self.audience)
            .finish()
    }
}

/// Why the configured keys cannot make a verifier. Found once, at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    NoKey,
    /// The build has no usable crypto backend (neither or both of jsonwebtoken's backends).
    NoCryptoProvider,
    /// The secret's length in bytes.
    SecretTooShort(usize),
    EmptyAudience,
    /// Not PEM text holding exactly one `PUBLIC KEY` or `RSA PUBLIC KEY` block.
    NotPem,
    /// A private key where the public one belongs: the server needs only the public half.
    PrivateKey,
    /// A public key that is neither RSA nor EC on P-256.
    UnsupportedKey,
    /// The RSA modulus, in bits.
    RsaTooSmall(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KeyError::NoKey => f.write_str("no token secret and no token public key"),
            KeyError::NoCryptoProvider => f.write_str("built without a JWT crypto backend"),
            KeyError::SecretTooShort(n) => write!(
                f,
                "token secret is {n} bytes; HS256 needs at least {MIN_SECRET_BYTES}"
            ),
            KeyError::EmptyAudience => f.write_str("token audience is empty"),
            KeyError::NotPem => f.write_str("token public key is not one PEM PUBLIC KEY block"),
            KeyError::PrivateKey => f.write_str(
                "token public key file holds a private key; give the server the public half only",
            ),
            KeyError::UnsupportedKey => {
                f.write_str("token public key is neither RSA (RS256) nor EC P-256 (ES256)")
            }
            KeyError::RsaTooSmall(bits) => write!(
                f,
                "token RSA key has {bits} bits; RS256 needs at least {MIN_RSA_BITS}"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// The keys, ready for the verifier.
pub(crate) struct Loaded {
    pub hmac: Option<DecodingKey>,
    pub public: Option<(Alg, DecodingKey)>,
}

/// Loads and checks the configured keys (the audience is the verifier's business).
pub(crate) fn load(keys: &Keys<'_>) -> Result<Loaded, KeyError> {
    if CryptoProvider::try_get_default().is_none() {
        return Err(KeyError::NoCryptoProvider);
    }
    if keys.secret.is_none() && keys.public_key_pem.is_none() {
        return Err(KeyError::NoKey);
    }
    let hmac = match keys.secret {
        Some(s) if s.len() < MIN_SECRET_BYTES => return Err(KeyError::SecretTooShort(s.len())),
        Some(s) => {
            Some(DecodingKey::from_secret(s).map_err(|_| KeyError::SecretTooShort(s.len()))?)
        }
        None => None,
    };
    let public = keys.public_key_pem.map(public_key).transpose()?;
    Ok(Loaded { hmac, public })
}

/// The RS256 or ES256 key in a PEM file, proven usable.
fn public_key(pem: &[u8]) -> Result<(Alg, DecodingKey), KeyError> {
    match pem_label(pem)? {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
        label if label.contains("PRIVATE KEY") => return Err(KeyError::PrivateKey),
        _ => return Err(KeyError::NotPem),
    }
    let (alg, key) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        (Alg::Rs256, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        (Alg::Es256, key)
    } else {
        return Err(KeyError::UnsupportedKey);
    };
    // A verifier is built from the key on every check; build one now, so that a key the
    // backend cannot use (an EC key on another curve, a broken modulus) fails here.
    if jsonwebtoken::crypto::verify("", b"", &key, alg.jwt()).is_err() {
        return Err(KeyError::UnsupportedKey);
    }
    if alg == Alg::Rs256 {
        let bits = rsa_bits(&key).ok_or(KeyError::UnsupportedKey)?;
        if bits < MIN_RSA_BITS {
            return Err(KeyError::RsaTooSmall(bits));
        }
    }
    Ok((alg, key))
}

/// The label of the one PEM block in `pem` (`-----BEGIN <label>-----`).
fn pem_label(pem: &[u8]) -> Result<&str, KeyError> {
    const BEGIN: &str = "-----BEGIN ";
    let text = std::str::from_utf8(pem).map_err(|_| KeyError::NotPem)?;
    let mut blocks = text.match_indices(BEGIN);
    let (at, _) = blocks.next().ok_or(KeyError::NotPem)?;
    if blocks.next().is_some() {
        return Err(KeyError::NotPem);
    }
    let rest = text.get(at + BEGIN.len()..).ok_or(KeyError::NotPem)?;
    let (label, _) = rest.split_once("-----").ok_or(KeyError::NotPem)?;
    Ok(label)
}

/// The size of an RSA public key's modulus, in bits.
fn rsa_bits(key: &DecodingKey) -> Option<usize> {
    let der = key.try_get_as_bytes().ok()?;
    let provider = CryptoProvider::try_get_default()?;
    let (n, _e) = (provider.key_utils.rsa_pub_components_from_public_key)(der).ok()?;
    let first = n.iter().position(|&b| b != 0)?;
    let top = n.get(first)?;
    Some((n.len() - first) * 8 - top.leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::auth::fixture;

    fn load_pem(pem: &[u8]) -> Result<Alg, KeyError> {
        let keys = Keys {
            public_key_pem: Some(pem),
            ..Keys::default()
        };
        load(&keys).map(|l| l.public.map(|(alg, _)| alg).unwrap())
    }

    #[test]
    fn public_keys_by_type() {
        assert_eq!(load_pem(fixture!("rsa_public.pem")), Ok(Alg::Rs256));
        assert_eq!(load_pem(fixture!("rsa_public_pkcs1.pem")), Ok(Alg::Rs256));
        assert_eq!(load_pem(fixture!("ec_public.pem")), Ok(Alg::Es256));
    }

    #[test]
    fn operator_mistakes_are_named() {
        let secret = |s: &[u8]| {
            load(&Keys {
                secret: Some(s),
                ..Keys::default()
            })
            .map(|l| l.hmac.is_some())
        };
        assert_eq!(load(&Keys::default()).map(|_| ()), Err(KeyError::NoKey));
        assert_eq!(secret(b"short"), Err(KeyError::SecretTooShort(5)));
        assert_eq!(secret(b""), Err(KeyError::SecretTooShort(0)));
        assert_eq!(secret(&[7; MIN_SECRET_BYTES]), Ok(true));

        assert_eq!(
            load_pem(fixture!("rsa_private.pem")),
            Err(KeyError::PrivateKey)
        );
        assert_eq!(
            load_pem(fixture!("ec_private.pem")),
            Err(KeyError::PrivateKey)
        );
        assert_eq!(
            load_pem(fixture!("ec384_public.pem")),
            Err(KeyError::UnsupportedKey)
        );
        assert_eq!(
            load_pem(fixture!("rsa1024_public.pem")),
            Err(KeyError::RsaTooSmall(1024))
        );
        assert_eq!(load_pem(b"not pem"), Err(KeyError::NotPem));
        assert_eq!(load_pem(&[0xff, 0xfe]), Err(KeyError::NotPem));
        let two = [&fixture!("rsa_public.pem")[..], fixture!("ec_public.pem")].concat();
        assert_eq!(load_pem(&two), Err(KeyError::NotPem));
        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(load_pem(cert), Err(KeyError::NotPem));
        let garbage = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert_eq!(load_pem(garbage), Err(KeyError::UnsupportedKey));
        let ed25519 = b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert_eq!(load_pem(ed25519), Err(KeyError::UnsupportedKey));
    }

    #[test]
    fn the_secret_never_reaches_a_log_line() {
        let keys = Keys {
            secret: Some(b"hunter2-hunter2-hunter2-hunter2-!"),
            ..Keys::default()
        };
        assert!(!format!("{keys:?}").contains("hunter2"));
    }
}
