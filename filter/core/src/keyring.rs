//! Secrets in the config, and the HS256 key ring for the tokens edgegate signs itself
//! (magic-link tokens and the session cookie).
//!
//! A [`Secret`] is a config string whose `Debug` output is redacted, so printing a config never
//! prints a secret. A [`KeyRing`] is an ordered list of `{ kid, secret }`: the **first** key signs,
//! **every** key verifies. To rotate, put a new key first, keep the old one until every token it
//! signed has expired, then remove it.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::alg::Alg;
use crate::b64;
use crate::error::{ConfigError, Error, Reason};
use crate::jws::{self, CompactJws};

type HmacSha256 = Hmac<Sha256>;

/// Minimum length of an HMAC secret or pepper, in bytes (after base64url decoding).
pub const MIN_SECRET_BYTES: usize = 32;

/// A secret from the config (a key, a pepper, a hash of a key). Serialized as a plain string;
/// its `Debug` output is `Secret(<redacted>)`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's text. Never log or display it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Decodes the secret as unpadded base64url of at least `min_bytes` bytes. The error is a
    /// config error at `path` that never repeats the value.
    pub fn decode_base64url(&self, path: &str, min_bytes: usize) -> Result<Vec<u8>, ConfigError> {
        let bytes = b64::decode(&self.0).map_err(|_| {
            ConfigError::new(
                path,
                "not unpadded base64url; generate one with `openssl rand 32 | basenc --base64url | tr -d =`",
            )
        })?;
        if bytes.len() < min_bytes {
            return Err(ConfigError::new(
                path,
                format!(
                    "decodes to {} bytes; at least {min_bytes} random bytes are required",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One HMAC key of a key ring.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HmacKeyConfig {
    /// Key id, written into the `kid` header of every token this key signs. 1–64 characters of
    /// `A-Z a-z 0-9 . _ -`, unique within the list.
    pub kid: String,
    /// The secret: unpadded base64url of at least 32 random bytes.
    pub secret: Secret,
}

/// Compiled HS256 keys: the first signs, all verify.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

#[derive(Clone)]
struct RingKey {
    kid: String,
    mac: HmacSha256,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "kids",
                &self.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn valid_kid(kid: &str) -> bool {
    crate::syntax::is_short_name(kid, b"._-")
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

impl KeyRing {
    /// Validates and compiles `keys` (reported at `keys[i].kid` / `keys[i].secret`).
    pub fn compile(keys: &[HmacKeyConfig]) -> Result<KeyRing, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut out: Vec<RingKey> = Vec::with_capacity(keys.len());
        if keys.is_empty() {
            errors.push(ConfigError::new(
                "keys",
                "at least one key is required (the first signs, all verify)",
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            if !valid_kid(&k.kid) {
                errors.push(ConfigError::new(
                    format!("keys[{i}].kid"),
                    "a kid is 1-64 characters of A-Z a-z 0-9 . _ -",
                ));
            } else if keys.iter().take(i).any(|o| o.kid == k.kid) {
                errors.push(ConfigError::new(
                    format!("keys[{i}].kid"),
                    format!(
                        "kid \"{}\" appears twice; every key needs its own kid",
                        k.kid
                    ),
                ));
            }
            match k
                .secret
                .decode_base64url(&format!("keys[{i}].secret"), MIN_SECRET_BYTES)
            {
                Ok(bytes) => match HmacSha256::new_from_slice(&bytes) {
                    Ok(mac) => out.push(RingKey {
                        kid: k.kid.clone(),
                        mac,
                    }),
                    Err(_) => errors.push(ConfigError::new(
                        format!("keys[{i}].secret"),
                        "not usable as an HMAC key",
                    )),
                },
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(KeyRing { keys: out })
        } else {
            Err(errors)
        }
    }

    /// The kid of the signing key.
    pub fn signing_kid(&self) -> Option<&str> {
        self.keys.first().map(|k| k.kid.as_str())
    }

    /// Signs `claims` (a JSON object's bytes) as a compact HS256 JWS with the first key,
    /// header `{"alg":"HS256","typ":"JWT","kid":<kid>}`.
    pub fn sign(&self, claims: &[u8]) -> Result<String, Error> {
        let key = self
            .keys
            .first()
            .ok_or_else(|| Error::new(Reason::Internal, "the key ring has no signing key"))?;
        let header = serde_json::to_vec(&Header {
            alg: "HS256",
            typ: "JWT",
            kid: &key.kid,
        })
        .map_err(|_| Error::new(Reason::Internal, "could not encode a token header"))?;
        let mut token = b64::encode(header);
        token.push('.');
        token.push_str(&b64::encode(claims));
        let mut mac = key.mac.clone();
        mac.update(token.as_bytes());
        let sig = mac.finalize().into_bytes();
        token.push('.');
        token.push_str(&b64::encode(sig));
        Ok(token)
    }

    /// Parses `token` strictly ([`jws::parse`]), requires `alg: HS256` (else `AlgNotAllowed`),
    /// a `kid` naming a key of the ring (else `UnknownKid`) and a valid signature, checked in
    /// constant time (else `BadSignature`). Returns the parsed token and the kid that verified it.
    pub fn verify<'t>(
        &self,
        token: &'t str,
        max_bytes: usize,
    ) -> Result<(CompactJws<'t>, &str), Error> {
        let jws = jws::parse(token, max_bytes)?;
        if jws.alg != Alg::HS256 {
            return Err(Error::new(
                Reason::AlgNotAllowed,
                "edgegate's own tokens are signed with HS256 only",
            ));
        }
        let Some(kid) = jws.kid.as_deref() else {
            return Err(Error::new(Reason::UnknownKid, "the token has no kid"));
        };
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or_else(|| {
            Error::new(
                Reason::UnknownKid,
                "the token's kid names no configured key",
            )
        })?;
        let mut mac = key.mac.clone();
        mac.update(jws.signing_input);
        mac.verify_slice(&jws.signature).map_err(|_| {
            Error::new(
                Reason::BadSignature,
                "the token's signature does not verify",
            )
        })?;
        Ok((jws, key.kid.as_str()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::error_paths;

    pub(crate) fn secret(byte: u8) -> Secret {
        Secret::new(b64::encode([byte; 32]))
    }

    pub(crate) fn key(kid: &str, byte: u8) -> HmacKeyConfig {
        HmacKeyConfig {
            kid: kid.into(),
            secret: secret(byte),
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let k = key("k1", 7);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(k.secret.expose()), "{dbg}");
        let ring = KeyRing::compile(std::slice::from_ref(&k)).unwrap();
        let dbg = format!("{ring:?}");
        assert!(
            dbg.contains("k1") && !dbg.contains(k.secret.expose()),
            "{dbg}"
        );
    }

    #[test]
    fn config_errors_are_all_reported_with_paths() {
        let short = HmacKeyConfig {
            kid: "a".into(),
            secret: Secret::new(b64::encode([1u8; 31])),
        };
        let padded = HmacKeyConfig {
            kid: "a".into(),
            secret: Secret::new(format!("{}=", b64::encode([1u8; 32]))),
        };
        let badkid = key("a b", 3);
        let errs = KeyRing::compile(&[short, padded, badkid]).unwrap_err();
        assert_eq!(
            error_paths(&errs),
            [
                "keys[0].secret",
                "keys[1].kid",
                "keys[1].secret",
                "keys[2].kid"
            ]
        );
        assert_eq!(KeyRing::compile(&[]).unwrap_err()[0].path(), "keys");
    }

    #[test]
    fn first_signs_all_verify() {
        let old = KeyRing::compile(&[key("old", 1)]).unwrap();
        let rotated = KeyRing::compile(&[key("new", 2), key("old", 1)]).unwrap();
        let t_old = old.sign(br#"{"a":1}"#).unwrap();
        let t_new = rotated.sign(br#"{"a":1}"#).unwrap();
        assert_eq!(rotated.verify(&t_old, 4096).unwrap().1, "old");
        assert_eq!(rotated.verify(&t_new, 4096).unwrap().1, "new");
        assert_eq!(
            old.verify(&t_new, 4096).unwrap_err().reason(),
            Reason::UnknownKid
        );
        // same kid, different secret
        let impostor = KeyRing::compile(&[key("old", 9)]).unwrap();
        let forged = impostor.sign(br#"{"a":1}"#).unwrap();
        assert_eq!(
            old.verify(&forged, 4096).unwrap_err().reason(),
            Reason::BadSignature
        );
    }

    #[test]
    fn refuses_other_algs_and_missing_kid() {
        let ring = KeyRing::compile(&[key("k", 1)]).unwrap();
        let p = b64::encode(r#"{"a":1}"#);
        // why a token with this header (and a junk signature) is refused
        let refused = |header: &str| {
            let h = b64::encode(header);
            ring.verify(&format!("{h}.{p}.AAAA"), 4096)
                .unwrap_err()
                .reason()
        };
        assert_eq!(
            refused(r#"{"alg":"HS512","kid":"k"}"#),
            Reason::AlgNotAllowed
        );
        assert_eq!(refused(r#"{"alg":"HS256"}"#), Reason::UnknownKid);
        assert_eq!(refused(r#"{"alg":"none","kid":"k"}"#), Reason::AlgNone);
        // truncated signature
        let t = ring.sign(br#"{"a":1}"#).unwrap();
        let dot = t.rfind('.').unwrap();
        let sig = b64::decode(&t[dot + 1..]).unwrap();
        let cut = format!("{}.{}", &t[..dot], b64::encode(&sig[..31]));
        assert_eq!(
            ring.verify(&cut, 4096).unwrap_err().reason(),
            Reason::BadSignature
        );
    }
}
