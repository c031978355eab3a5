//! JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037) turned into trusted verification keys.
//!
//! Every key is decoded, checked and put in the form its backend needs once, when the key set
//! is loaded; the per-request path only looks a key up ([`KeySet::select`]) and hands it to a
//! [`crate::backend::SignatureBackend`].
//!
//! Load-time refusals (each names the key and member, e.g. `keys[2].n`, and says how to fix it):
//! RSA moduli under 2048 bits, even or tiny exponents, EC points off their curve or with the wrong
//! coordinate length, Ed25519 keys that are not 32 bytes or are points of small order, shared
//! secrets under 32 bytes, a `kid` shared by two keys that one algorithm could both use
//! (ambiguous), a JWK `alg` that contradicts the key type, and private-key members in a public set.
//! Keys for encryption (`use: "enc"`, an encryption `alg` such as `RSA-OAEP` or `ECDH-ES`), of an
//! unknown `kty` or of an unsupported curve are skipped: identity providers publish such extras
//! next to their signing keys. The same `kid` on keys of different types is allowed (RFC 7517
//! §4.5): [`KeySet::select`] picks by `kid` and by fit for the token's `alg`.

use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use crate::alg::{Alg, KeyFamily};
use crate::b64;
use crate::error::{Error, Reason};
use crate::json;

/// Upper bound on a key set document's size.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Upper bound on the number of keys in one set.
pub const MAX_KEYS: usize = 100;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (ring's limit).
pub const MAX_RSA_BITS: usize = 8192;
/// Smallest shared secret accepted, in bytes (RFC 7518 §3.2 for HS256).
pub const MIN_HMAC_BYTES: usize = 32;

/// Members that only a private key has. Their presence means someone published a private key.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// One trusted verification key.
#[derive(Debug, Clone)]
pub struct Jwk {
    /// The key id tokens name in their header.
    pub kid: Option<String>,
    /// When the JWK names an `alg`, the key verifies that algorithm only.
    pub alg: Option<Alg>,
    pub key: PublicKey,
}

/// A verification key, parsed into the form its backend uses.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Hmac(HmacKey),
    Rsa(RsaKey),
    P256(P256Key),
    P384(P384Key),
    P521(P521Key),
    Ed25519(Ed25519Key),
}

impl PublicKey {
    pub fn family(&self) -> KeyFamily {
        match self {
            PublicKey::Hmac(_) => KeyFamily::Hmac,
            PublicKey::Rsa(_) => KeyFamily::Rsa,
            PublicKey::P256(_) => KeyFamily::P256,
            PublicKey::P384(_) => KeyFamily::P384,
            PublicKey::P521(_) => KeyFamily::P521,
            PublicKey::Ed25519(_) => KeyFamily::Ed25519,
        }
    }
}

/// A shared secret, kept as HMAC states already keyed for SHA-256/384/512 so a verification
/// starts hashing the message at once. Its Debug output shows nothing of the secret.
#[derive(Clone)]
pub struct HmacKey {
    pub(crate) states: Box<HmacStates>,
    len: usize,
}

/// The three keyed HMAC states (boxed: together they are about 1 KiB).
#[derive(Clone)]
pub(crate) struct HmacStates {
    pub(crate) hs256: Hmac<Sha256>,
    pub(crate) hs384: Hmac<Sha384>,
    pub(crate) hs512: Hmac<Sha512>,
}

impl HmacKey {
    /// Keys a secret; refuses one shorter than [`MIN_HMAC_BYTES`].
    pub fn new(secret: &[u8]) -> Result<HmacKey, Error> {
        if secret.len() < MIN_HMAC_BYTES {
            return Err(Error::new(
                Reason::WeakKey,
                format!(
                    "the shared secret is {} bytes; use at least {MIN_HMAC_BYTES} random bytes",
                    secret.len()
                ),
            ));
        }
        let bad = |_| Error::new(Reason::Internal, "HMAC refused the key");
        Ok(HmacKey {
            states: Box::new(HmacStates {
                hs256: Hmac::new_from_slice(secret).map_err(bad)?,
                hs384: Hmac::new_from_slice(secret).map_err(bad)?,
                hs512: Hmac::new_from_slice(secret).map_err(bad)?,
            }),
            len: secret.len(),
        })
    }

    /// Whether the secret is long enough for `alg` (RFC 7518 §3.2: at least the hash size).
    pub fn strong_enough_for(&self, alg: Alg) -> bool {
        let need = match alg {
            Alg::HS384 => 48,
            Alg::HS512 => 64,
            _ => MIN_HMAC_BYTES,
        };
        self.len >= need
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

/// An RSA public key: modulus and exponent as minimal big-endian bytes (what ring and WebCrypto take).
#[derive(Clone)]
pub struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
    bits: usize,
}

impl RsaKey {
    /// Checks and keeps a modulus and exponent (big-endian; leading zero bytes are dropped).
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, (&'static str, Error)> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_len(n);
        if bits < MIN_RSA_BITS {
            return Err((
                "n",
                Error::new(
                    Reason::WeakKey,
                    format!(
                        "the RSA modulus is {bits} bits; use a key of at least {MIN_RSA_BITS} bits"
                    ),
                ),
            ));
        }
        if bits > MAX_RSA_BITS {
            return Err((
                "n",
                Error::new(
                    Reason::MalformedKey,
                    format!("the RSA modulus is {bits} bits; at most {MAX_RSA_BITS} are supported"),
                ),
            ));
        }
        if n.last().is_some_and(|b| b & 1 == 0) {
            return Err((
                "n",
                Error::new(
                    Reason::MalformedKey,
                    "the RSA modulus is even: this is not an RSA key",
                ),
            ));
        }
        // ring accepts exponents of 3 up to 2^33 - 1.
        let e_value = if e.len() <= 5 {
            e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        } else {
            u64::MAX
        };
        if e_value < 3 || e_value & 1 == 0 {
            return Err((
                "e",
                Error::new(
                    Reason::WeakKey,
                    "the RSA exponent is even or below 3; the usual value is 65537 (\"AQAB\")",
                ),
            ));
        }
        if e_value > (1u64 << 33) - 1 {
            return Err((
                "e",
                Error::new(
                    Reason::MalformedKey,
                    "the RSA exponent is larger than 2^33 - 1; the usual value is 65537 (\"AQAB\")",
                ),
            ));
        }
        Ok(RsaKey {
            n: n.to_vec(),
            e: e.to_vec(),
            bits,
        })
    }

    /// The modulus, big-endian, without leading zeros.
    pub fn modulus(&self) -> &[u8] {
        &self.n
    }

    /// The public exponent, big-endian, without leading zeros.
    pub fn exponent(&self) -> &[u8] {
        &self.e
    }

    /// The modulus length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The modulus length in bytes: the length every signature under this key has.
    pub fn modulus_len(&self) -> usize {
        self.n.len()
    }
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaKey({} bits)", self.bits)
    }
}

/// The EC public key types, one a curve: validated on the curve, `Debug` without the point.
macro_rules! ec_keys {
    ($($name:ident: $curve:ident, $label:literal, $point_len:literal;)+) => {$(
        #[doc = concat!("A ", $label, " public key, validated on the curve.")]
        #[derive(Clone)]
        pub struct $name {
            pub(crate) key: $curve::ecdsa::VerifyingKey,
        }

        impl $name {
            #[doc = concat!(
                "The SEC1 uncompressed point `04 || x || y` (", $point_len,
                " bytes), as WebCrypto's \"raw\" import takes it."
            )]
            pub fn sec1_uncompressed(&self) -> Vec<u8> {
                self.key.to_sec1_point(false).as_bytes().to_vec()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    )+};
}

ec_keys! {
    P256Key: p256, "P-256", 65;
    P384Key: p384, "P-384", 97;
    P521Key: p521, "P-521", 133;
}

/// An Ed25519 public key (RFC 8037 `x`, 32 bytes): a valid point, not of small order.
#[derive(Clone)]
pub struct Ed25519Key {
    pub(crate) x: [u8; 32],
}

impl Ed25519Key {
    /// Checks an encoded public key: a point on the curve (it decompresses), and not of small
    /// order. No honest key has small order; under one, a signature that verifies for many
    /// messages can be made without any private key, and verifiers disagree on such keys.
    pub fn new(x: [u8; 32]) -> Result<Ed25519Key, Error> {
        let point = curve25519_dalek::edwards::CompressedEdwardsY(x)
            .decompress()
            .ok_or_else(|| {
                Error::new(
                    Reason::MalformedKey,
                    "is not an Ed25519 point (it does not decompress); check that x is this key's public key",
                )
            })?;
        if point.is_small_order() {
            return Err(Error::new(
                Reason::WeakKey,
                "the Ed25519 public key is a point of small order: no real key is, and signatures under it can be forged without any private key",
            ));
        }
        Ok(Ed25519Key { x })
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.x
    }
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ed25519Key")
    }
}

/// A shared-secret key for providers that sign with HMAC (no JWKS).
pub fn hmac_secret(kid: Option<String>, secret: &[u8]) -> Result<Jwk, Error> {
    Ok(Jwk {
        kid,
        alg: None,
        key: PublicKey::Hmac(HmacKey::new(secret)?),
    })
}

/// A set of trusted keys, as loaded from a JWKS document or config.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`) under the strict JSON rules.
    ///
    /// Errors carry `Reason::MalformedKey` or `Reason::WeakKey`; their message starts with the
    /// place in the document (`keys[2].n: ...`), and every bad key is reported at once.
    pub fn parse_jwks(bytes: &[u8]) -> Result<KeySet, Vec<Error>> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(vec![Error::new(
                Reason::MalformedKey,
                format!("the key set is larger than {MAX_JWKS_BYTES} bytes"),
            )]);
        }
        let map = json::parse_object(
            bytes,
            json::DOCUMENT_MAX_DEPTH,
            Reason::MalformedKey,
            "key set",
        )
        .map_err(|e| vec![e])?;
        Self::from_map(&map)
    }

    /// Builds a key set from an already parsed JWKS value (e.g. one inlined in the config).
    pub fn from_jwks_value(value: &Value) -> Result<KeySet, Vec<Error>> {
        match value {
            Value::Object(map) => Self::from_map(map),
            _ => Err(vec![Error::new(
                Reason::MalformedKey,
                "the key set is not a JSON object",
            )]),
        }
    }

    /// A set made of the given keys (e.g. from [`hmac_secret`]); refuses a `kid` used twice.
    pub fn from_keys(keys: Vec<Jwk>) -> Result<KeySet, Vec<Error>> {
        let mut set = KeySet::default();
        let mut errors = Vec::new();
        for (i, jwk) in keys.into_iter().enumerate() {
            if let Err(e) = set.push(jwk, &format!("keys[{i}]")) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    fn from_map(map: &Map<String, Value>) -> Result<KeySet, Vec<Error>> {
        let keys = match map.get("keys") {
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(vec![malformed("keys", "is not an array of JWKs")]),
            None => {
                return Err(vec![malformed(
                    "keys",
                    "is missing: a JWKS is an object {\"keys\": [...]}",
                )])
            }
        };
        if keys.len() > MAX_KEYS {
            return Err(vec![malformed(
                "keys",
                &format!("holds {} keys; at most {MAX_KEYS} are accepted", keys.len()),
            )]);
        }
        let mut set = KeySet::default();
        let mut errors = Vec::new();
        for (i, value) in keys.iter().enumerate() {
            let path = format!("keys[{i}]");
            match parse_jwk(value) {
                Ok(Some(jwk)) => {
                    if let Err(e) = set.push(jwk, &path) {
                        errors.push(e);
                    }
                }
                Ok(None) => {}
                Err((member, e)) => {
                    let at = if member.is_empty() {
                        path
                    } else {
                        format!("{path}.{member}")
                    };
                    errors.push(Error::new(e.reason(), format!("{at}: {}", e.message())));
                }
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// Adds a key. Several keys may share a `kid` (RFC 7517 §4.5: e.g. an RSA and an EC key
    /// published under one id) as long as no algorithm fits two of them: a token's `kid` and
    /// `alg` must always name exactly one key.
    fn push(&mut self, jwk: Jwk, path: &str) -> Result<(), Error> {
        if let Some(kid) = &jwk.kid {
            let shared = Alg::ALL.iter().copied().find(|a| {
                jwk.fits(*a)
                    && self
                        .keys
                        .iter()
                        .any(|k| k.kid.as_ref() == Some(kid) && k.fits(*a))
            });
            if let Some(alg) = shared {
                return Err(Error::new(
                    Reason::MalformedKey,
                    format!("{path}.kid: kid {kid:?} is used by two keys that both fit {alg}, so a token could not say which one it means; give every key its own kid (or each key its own `alg`)"),
                ));
            }
        }
        self.keys.push(jwk);
        Ok(())
    }

    /// The key to verify a token with `kid` (if any) and `alg`.
    ///
    /// With a `kid`: the key with that `kid` that fits `alg` (keys of different types may share
    /// a `kid`; at load no algorithm fits two of them), or `UnknownKid` when no key has it.
    /// Without: the one key that fits `alg`, else `NoMatchingKey` (none, or several: ambiguous).
    /// A key of another family than `alg` needs, or whose own `alg` differs, is
    /// `AlgKeyMismatch`: an HMAC token is never checked against the bytes of an RSA or EC key.
    pub fn select(&self, kid: Option<&str>, alg: Alg) -> Result<&Jwk, Error> {
        match kid {
            Some(kid) => {
                let mut refusal: Option<(bool, Error)> = None;
                for jwk in self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)) {
                    match check_fit(jwk, alg) {
                        Ok(()) => return Ok(jwk),
                        // The refusal of a key of alg's own family says most (e.g. WeakKey).
                        Err(e) => {
                            let same_family = jwk.key.family() == alg.family();
                            if refusal.as_ref().map_or(true, |(f, _)| !f && same_family) {
                                refusal = Some((same_family, e));
                            }
                        }
                    }
                }
                Err(refusal.map(|(_, e)| e).unwrap_or_else(|| {
                    Error::new(Reason::UnknownKid, "no key has the token's kid")
                }))
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| fits(k, alg));
                match (fitting.next(), fitting.next()) {
                    (Some(jwk), None) => {
                        check_fit(jwk, alg)?;
                        Ok(jwk)
                    }
                    (None, _) => Err(Error::new(
                        Reason::NoMatchingKey,
                        "the token names no kid and no key fits its alg",
                    )),
                    (Some(_), Some(_)) => Err(Error::new(
                        Reason::NoMatchingKey,
                        "the token names no kid and several keys fit its alg",
                    )),
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids in the set (keys without one are left out).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// Every key in the set.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }
}

fn fits(jwk: &Jwk, alg: Alg) -> bool {
    jwk.fits(alg)
}

impl Jwk {
    /// True when this key can verify `alg`: same key family, and the JWK's own `alg` (if any) agrees.
    pub fn fits(&self, alg: Alg) -> bool {
        self.key.family() == alg.family() && self.alg.map_or(true, |a| a == alg)
    }
}

fn check_fit(jwk: &Jwk, alg: Alg) -> Result<(), Error> {
    if jwk.key.family() != alg.family() {
        return Err(Error::new(
            Reason::AlgKeyMismatch,
            format!("the token's alg {alg} does not fit the key's type"),
        ));
    }
    if let Some(own) = jwk.alg {
        if own != alg {
            return Err(Error::new(
                Reason::AlgKeyMismatch,
                format!("the key is for {own} only, the token says {alg}"),
            ));
        }
    }
    if let PublicKey::Hmac(k) = &jwk.key {
        if !k.strong_enough_for(alg) {
            return Err(Error::new(
                Reason::WeakKey,
                format!("the shared secret is shorter than {alg} requires"),
            ));
        }
    }
    Ok(())
}

fn malformed(path: &str, what: &str) -> Error {
    Error::new(Reason::MalformedKey, format!("{path}: {what}"))
}

type KeyResult<T> = Result<T, (&'static str, Error)>;

fn key_err(member: &'static str, reason: Reason, msg: impl Into<String>) -> (&'static str, Error) {
    (member, Error::new(reason, msg))
}

/// Parses one JWK. `Ok(None)` = skipped (not for signatures, or a type we do not implement).
fn parse_jwk(value: &Value) -> KeyResult<Option<Jwk>> {
    let Value::Object(m) = value else {
        return Err(key_err("", Reason::MalformedKey, "is not a JSON object"));
    };
    let kty =
        str_member(m, "kty")?.ok_or_else(|| key_err("kty", Reason::MalformedKey, "is missing"))?;
    let use_ = str_member(m, "use")?;
    if use_.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    match m.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if !ops.iter().any(|o| o.as_str() == Some("verify")) => {
            return Ok(None);
        }
        Some(Value::Array(_)) => {}
        Some(_) => {
            return Err(key_err(
                "key_ops",
                Reason::MalformedKey,
                "is not an array of strings",
            ));
        }
    }
    let kid = str_member(m, "kid")?.map(str::to_owned);
    let crv = str_member(m, "crv")?;
    let family = match (kty, crv) {
        ("oct", _) => KeyFamily::Hmac,
        ("RSA", _) => KeyFamily::Rsa,
        ("EC", Some("P-256")) => KeyFamily::P256,
        ("EC", Some("P-384")) => KeyFamily::P384,
        ("EC", Some("P-521")) => KeyFamily::P521,
        ("EC", None) | ("OKP", None) => {
            return Err(key_err("crv", Reason::MalformedKey, "is missing"));
        }
        ("OKP", Some("Ed25519")) => KeyFamily::Ed25519,
        // Other curves (secp256k1, X25519, Ed448) and key types are not ours to use.
        _ => return Ok(None),
    };
    if family != KeyFamily::Hmac {
        if let Some(p) = PRIVATE_MEMBERS.iter().find(|p| m.contains_key(**p)) {
            return Err(key_err(
                p,
                Reason::MalformedKey,
                "is a private-key member: this is a private key; publish only the public members",
            ));
        }
    }
    let alg = match str_member(m, "alg")? {
        None => None,
        // A key for encryption (RFC 7518 §4.1 names) is not for signatures: skip it.
        Some(name) if ENCRYPTION_ALGS.contains(&name) => return Ok(None),
        Some(name) => {
            let alg = Alg::ALL
                .iter()
                .copied()
                .find(|a| a.name() == name)
                .ok_or_else(|| {
                    key_err(
                        "alg",
                        Reason::MalformedKey,
                        format!("{name:?} is not a supported signature alg"),
                    )
                })?;
            if alg.family() != family {
                return Err(key_err(
                    "alg",
                    Reason::MalformedKey,
                    format!(
                        "{alg} does not fit a key of kty {kty}{}",
                        crv.map(|c| format!(" crv {c}")).unwrap_or_default()
                    ),
                ));
            }
            Some(alg)
        }
    };
    let key = match family {
        KeyFamily::Hmac => {
            let k = bytes_member(m, "k")?;
            let key = HmacKey::new(&k).map_err(|e| ("k", e))?;
            if let Some(a) = alg {
                if !key.strong_enough_for(a) {
                    return Err(key_err(
                        "k",
                        Reason::WeakKey,
                        format!("the secret is shorter than {a} requires (the hash size); use a longer random secret"),
                    ));
                }
            }
            PublicKey::Hmac(key)
        }
        KeyFamily::Rsa => {
            let n = bytes_member(m, "n")?;
            let e = bytes_member(m, "e")?;
            PublicKey::Rsa(RsaKey::new(&n, &e)?)
        }
        KeyFamily::P256 => {
            let point = sec1_uncompressed(m, 32)?;
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| off_curve("P-256"))?;
            PublicKey::P256(P256Key { key })
        }
        KeyFamily::P384 => {
            let point = sec1_uncompressed(m, 48)?;
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| off_curve("P-384"))?;
            PublicKey::P384(P384Key { key })
        }
        KeyFamily::P521 => {
            let point = sec1_uncompressed(m, 66)?;
            let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| off_curve("P-521"))?;
            PublicKey::P521(P521Key { key })
        }
        KeyFamily::Ed25519 => {
            let x = bytes_member(m, "x")?;
            let x: [u8; 32] = x.as_slice().try_into().map_err(|_| {
                key_err(
                    "x",
                    Reason::MalformedKey,
                    format!("is {} bytes; an Ed25519 key is 32", x.len()),
                )
            })?;
            PublicKey::Ed25519(Ed25519Key::new(x).map_err(|e| ("x", e))?)
        }
    };
    Ok(Some(Jwk { kid, alg, key }))
}

/// JWE key-management algorithms (RFC 7518 §4.1, RFC 8037 §3.2): a JWK naming one is an
/// encryption key, published beside the signing keys; it is skipped, not refused.
const ENCRYPTION_ALGS: [&str; 19] = [
    "RSA1_5",
    "RSA-OAEP",
    "RSA-OAEP-256",
    "RSA-OAEP-384",
    "RSA-OAEP-512",
    "A128KW",
    "A192KW",
    "A256KW",
    "dir",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A192KW",
    "ECDH-ES+A256KW",
    "A128GCMKW",
    "A192GCMKW",
    "A256GCMKW",
    "PBES2-HS256+A128KW",
    "PBES2-HS384+A192KW",
    "PBES2-HS512+A256KW",
];

fn off_curve(curve: &str) -> (&'static str, Error) {
    key_err(
        "x",
        Reason::WeakKey,
        format!("the point (x, y) is not on {curve} (or is the identity); check that x and y belong to this key"),
    )
}

/// `04 || x || y` from a JWK's coordinates, each exactly `len` bytes.
fn sec1_uncompressed(m: &Map<String, Value>, len: usize) -> KeyResult<Vec<u8>> {
    let x = bytes_member(m, "x")?;
    let y = bytes_member(m, "y")?;
    for (name, c) in [("x", &x), ("y", &y)] {
        if c.len() != len {
            return Err(key_err(
                name,
                Reason::MalformedKey,
                format!(
                    "is {} bytes; this curve's coordinates are exactly {len} (RFC 7518 §6.2.1.2)",
                    c.len()
                ),
            ));
        }
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

fn str_member<'a>(m: &'a Map<String, Value>, name: &'static str) -> KeyResult<Option<&'a str>> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(key_err(name, Reason::MalformedKey, "is not a string")),
    }
}

fn bytes_member(m: &Map<String, Value>, name: &'static str) -> KeyResult<Vec<u8>> {
    let s =
        str_member(m, name)?.ok_or_else(|| key_err(name, Reason::MalformedKey, "is missing"))?;
    let bytes = b64::decode(s).map_err(|_| {
        key_err(
            name,
            Reason::MalformedKey,
            "is not canonical unpadded base64url",
        )
    })?;
    if bytes.is_empty() {
        return Err(key_err(name, Reason::MalformedKey, "is empty"));
    }
    Ok(bytes)
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

fn bit_len(b: &[u8]) -> usize {
    match b.first() {
        None => 0,
        Some(top) => (b.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_keys;

    fn errs(doc: &str) -> Vec<(Reason, String)> {
        KeySet::parse_jwks(doc.as_bytes())
            .unwrap_err()
            .into_iter()
            .map(|e| (e.reason(), e.message().to_string()))
            .collect()
    }

    fn one_err(doc: &str) -> (Reason, String) {
        let e = errs(doc);
        assert_eq!(e.len(), 1, "{e:?}");
        e.into_iter().next().unwrap()
    }

    fn set(keys: &[String]) -> String {
        format!("{{\"keys\":[{}]}}", keys.join(","))
    }

    #[test]
    fn parses_every_supported_key_type() {
        let doc = set(&[
            test_keys::rsa_jwk("r1", 2048),
            test_keys::p256_jwk("e1"),
            test_keys::p384_jwk("e2"),
            test_keys::ed25519_jwk("o1"),
            r#"{"kty":"oct","kid":"h1","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#.to_string(),
        ]);
        let ks = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(ks.len(), 5);
        assert_eq!(
            ks.kids().collect::<Vec<_>>(),
            ["r1", "e1", "e2", "o1", "h1"]
        );
        let fam: Vec<KeyFamily> = ks.keys().iter().map(|k| k.key.family()).collect();
        assert_eq!(
            fam,
            [
                KeyFamily::Rsa,
                KeyFamily::P256,
                KeyFamily::P384,
                KeyFamily::Ed25519,
                KeyFamily::Hmac
            ]
        );
        match &ks.keys()[0].key {
            PublicKey::Rsa(r) => {
                assert_eq!(r.bits(), 2048);
                assert_eq!(r.modulus_len(), 256);
                assert_eq!(r.exponent(), [1, 0, 1]);
            }
            k => panic!("{k:?}"),
        }
        match &ks.keys()[1].key {
            PublicKey::P256(k) => assert_eq!(k.sec1_uncompressed().len(), 65),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn skips_enc_keys_unknown_types_and_curves() {
        let doc = set(&[
            test_keys::p256_jwk("e1"),
            r#"{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}"#.to_string(),
            r#"{"kty":"EC","key_ops":["encrypt"],"crv":"P-256","x":"AA","y":"AA"}"#.to_string(),
            r#"{"kty":"PQC","kid":"future","pub":"xyz"}"#.to_string(),
            r#"{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}"#.to_string(),
            r#"{"kty":"OKP","crv":"X25519","x":"AA"}"#.to_string(),
            // an encryption alg names an encryption key, whatever its `use` says (or not)
            r#"{"kty":"RSA","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}"#.to_string(),
            r#"{"kty":"RSA","alg":"RSA-OAEP-256","use":"sig","n":"AQAB","e":"AQAB"}"#.to_string(),
            r#"{"kty":"EC","alg":"ECDH-ES","crv":"P-256","x":"AA","y":"AA"}"#.to_string(),
            r#"{"kty":"OKP","alg":"ECDH-ES+A256KW","crv":"X25519","x":"AA"}"#.to_string(),
            r#"{"kty":"oct","alg":"A256KW","k":"AA"}"#.to_string(),
        ]);
        let ks = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(ks.len(), 1);
        // a signing key with its alg member is normal
        let doc = set(&[
            test_keys::p256_jwk("e1").replace("{", r#"{"alg":"ES256","use":"sig","#),
            test_keys::rsa_jwk("r1", 2048).replace("{", r#"{"alg":"RS256","#),
            test_keys::rsa_jwk("enc", 2048).replace("{", r#"{"alg":"RSA-OAEP","use":"enc","#),
        ]);
        let ks = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(ks.kids().collect::<Vec<_>>(), ["e1", "r1"]);
    }

    #[test]
    fn parses_p521_keys_and_refuses_bad_ones() {
        let good = test_keys::p521_jwk("e5");
        let ks = KeySet::parse_jwks(set(std::slice::from_ref(&good)).as_bytes()).unwrap();
        let key = ks.select(Some("e5"), Alg::ES512).unwrap();
        assert_eq!(key.key.family(), KeyFamily::P521);
        match &key.key {
            PublicKey::P521(k) => assert_eq!(k.sec1_uncompressed().len(), 133),
            k => panic!("{k:?}"),
        }
        assert_eq!(
            ks.select(Some("e5"), Alg::ES384).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        assert_eq!(
            ks.select(None, Alg::ES512).unwrap().kid.as_deref(),
            Some("e5")
        );
        let v: Value = serde_json::from_str(&good).unwrap();
        let x = v["x"].as_str().unwrap();
        let y = v["y"].as_str().unwrap();
        let mut yb = b64::decode(y).unwrap();
        yb[65] ^= 1;
        let (r, m) = one_err(&set(&[good.replace(y, &b64::encode(&yb))]));
        assert_eq!(r, Reason::WeakKey);
        assert!(m.contains("not on P-521"), "{m}");
        let xb = b64::decode(x).unwrap();
        let (r, m) = one_err(&set(&[good.replace(x, &b64::encode(&xb[1..]))]));
        assert_eq!(r, Reason::MalformedKey);
        assert!(m.contains("exactly 66"), "{m}");
        // a JWK alg of ES512 on a P-256 key contradicts it
        let doc = set(&[test_keys::p256_jwk("a").replace("{", r#"{"alg":"ES512","#)]);
        assert!(one_err(&doc).1.starts_with("keys[0].alg:"));
    }

    #[test]
    fn refuses_small_order_and_undecodable_ed25519_keys() {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        // the identity (y = 1) and a point of order 8 (the canonical torsion generator's y)
        let identity = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        let order8 = curve25519_dalek::constants::EIGHT_TORSION[1]
            .compress()
            .to_bytes();
        let order2 = curve25519_dalek::constants::EIGHT_TORSION[4]
            .compress()
            .to_bytes();
        for x in [identity, order8, order2] {
            let doc = format!(
                r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}"}}]}}"#,
                b64::encode(x)
            );
            let (r, m) = one_err(&doc);
            assert_eq!(r, Reason::WeakKey, "{m}");
            assert!(
                m.starts_with("keys[0].x:") && m.contains("small order"),
                "{m}"
            );
        }
        // bytes that are no point on the curve at all
        let off = (2u8..=255)
            .map(|i| {
                let mut b = [0u8; 32];
                b[0] = i;
                b
            })
            .find(|b| CompressedEdwardsY(*b).decompress().is_none())
            .unwrap();
        let doc = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}"}}]}}"#,
            b64::encode(off)
        );
        assert_eq!(one_err(&doc).0, Reason::MalformedKey);
        // a real key loads
        assert!(KeySet::parse_jwks(set(&[test_keys::ed25519_jwk("o")]).as_bytes()).is_ok());
    }

    #[test]
    fn one_kid_on_keys_of_different_types_selects_by_alg() {
        // RFC 7517 §4.5: kids need only be unique among keys of the same type
        let doc = set(&[
            test_keys::rsa_jwk("k1", 2048),
            test_keys::p256_jwk("k1"),
            test_keys::ed25519_jwk("k1"),
            test_keys::p521_jwk("k1"),
        ]);
        let ks = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(ks.len(), 4);
        for (alg, fam) in [
            (Alg::RS256, KeyFamily::Rsa),
            (Alg::PS512, KeyFamily::Rsa),
            (Alg::ES256, KeyFamily::P256),
            (Alg::ES512, KeyFamily::P521),
            (Alg::EdDSA, KeyFamily::Ed25519),
        ] {
            assert_eq!(
                ks.select(Some("k1"), alg).unwrap().key.family(),
                fam,
                "{alg}"
            );
        }
        // no key under that kid fits: a mismatch, never another kid's key
        assert_eq!(
            ks.select(Some("k1"), Alg::ES384).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        assert_eq!(
            ks.select(Some("k1"), Alg::HS256).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        assert_eq!(
            ks.select(Some("k2"), Alg::RS256).unwrap_err().reason(),
            Reason::UnknownKid
        );
        // two RSA keys under one kid, each pinned to its own alg: not ambiguous
        let doc = set(&[
            test_keys::rsa_jwk("r", 2048).replace("{", r#"{"alg":"RS256","#),
            test_keys::rsa_jwk("r", 2048).replace("{", r#"{"alg":"PS256","#),
        ]);
        let ks = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(
            ks.select(Some("r"), Alg::PS256).unwrap().alg,
            Some(Alg::PS256)
        );
        assert_eq!(
            ks.select(Some("r"), Alg::RS256).unwrap().alg,
            Some(Alg::RS256)
        );
        assert_eq!(
            ks.select(Some("r"), Alg::RS512).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        // an HMAC secret and an RSA key may share a kid; a too-short secret still says WeakKey
        let ks = KeySet::from_keys(vec![
            hmac_secret(Some("s".into()), &[3; 32]).unwrap(),
            KeySet::parse_jwks(set(&[test_keys::rsa_jwk("s", 2048)]).as_bytes())
                .unwrap()
                .keys()[0]
                .clone(),
        ])
        .unwrap();
        assert_eq!(
            ks.select(Some("s"), Alg::HS256).unwrap().key.family(),
            KeyFamily::Hmac
        );
        assert_eq!(
            ks.select(Some("s"), Alg::RS256).unwrap().key.family(),
            KeyFamily::Rsa
        );
        assert_eq!(
            ks.select(Some("s"), Alg::HS512).unwrap_err().reason(),
            Reason::WeakKey
        );
    }

    #[test]
    fn refuses_short_rsa_moduli_and_bad_exponents() {
        let (r, m) = one_err(&set(&[test_keys::rsa_jwk("r1", 1024)]));
        assert_eq!(r, Reason::WeakKey);
        assert!(
            m.starts_with("keys[0].n: the RSA modulus is 1024 bits"),
            "{m}"
        );
        let good = test_keys::rsa_jwk("r1", 2048);
        for (e, reason) in [
            ("Ag", Reason::WeakKey),
            ("AQ", Reason::WeakKey),
            ("AQAA", Reason::WeakKey),
            ("AQAAAAAB", Reason::MalformedKey),
        ] {
            let doc = set(&[good.replace("\"AQAB\"", &format!("\"{e}\""))]);
            let (r, m) = one_err(&doc);
            assert_eq!(r, reason, "{e}");
            assert!(m.starts_with("keys[0].e:"), "{m}");
        }
        // leading zero bytes are tolerated and dropped
        let v: Value = serde_json::from_str(&good).unwrap();
        let n = b64::decode(v["n"].as_str().unwrap()).unwrap();
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        let doc = set(&[good.replace(v["n"].as_str().unwrap(), &b64::encode(&padded))]);
        let ks = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        match &ks.keys()[0].key {
            PublicKey::Rsa(r) => assert_eq!(r.modulus(), n.as_slice()),
            k => panic!("{k:?}"),
        }
        // an even modulus
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        let doc = set(&[good.replace(v["n"].as_str().unwrap(), &b64::encode(&even))]);
        assert_eq!(one_err(&doc).0, Reason::MalformedKey);
    }

    #[test]
    fn refuses_bad_ec_points() {
        let good = test_keys::p256_jwk("e1");
        let v: Value = serde_json::from_str(&good).unwrap();
        let x = v["x"].as_str().unwrap();
        let y = v["y"].as_str().unwrap();
        // y of another point: off the curve
        let mut yb = b64::decode(y).unwrap();
        yb[31] ^= 1;
        let (r, m) = one_err(&set(&[good.replace(y, &b64::encode(&yb))]));
        assert_eq!(r, Reason::WeakKey);
        assert!(m.contains("not on P-256"), "{m}");
        // 31-byte and 33-byte coordinates
        let xb = b64::decode(x).unwrap();
        let (r, m) = one_err(&set(&[good.replace(x, &b64::encode(&xb[1..]))]));
        assert_eq!(r, Reason::MalformedKey);
        assert!(m.starts_with("keys[0].x: is 31 bytes"), "{m}");
        let mut long = vec![0];
        long.extend_from_slice(&xb);
        assert_eq!(
            one_err(&set(&[good.replace(x, &b64::encode(&long))])).0,
            Reason::MalformedKey
        );
        // a P-256 key claimed as P-384: wrong length for that curve
        let (r, m) = one_err(&set(&[good.replace("P-256", "P-384")]));
        assert_eq!(r, Reason::MalformedKey);
        assert!(m.contains("exactly 48"), "{m}");
        // P-384 off curve
        let good = test_keys::p384_jwk("e2");
        let v: Value = serde_json::from_str(&good).unwrap();
        let y = v["y"].as_str().unwrap();
        let mut yb = b64::decode(y).unwrap();
        yb[0] ^= 0x80;
        assert_eq!(
            one_err(&set(&[good.replace(y, &b64::encode(&yb))])).0,
            Reason::WeakKey
        );
        // missing crv
        assert_eq!(
            one_err(r#"{"keys":[{"kty":"EC","x":"AA","y":"AA"}]}"#).0,
            Reason::MalformedKey
        );
    }

    #[test]
    fn refuses_bad_ed25519_and_short_secrets() {
        let (r, m) = one_err(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}"#);
        assert_eq!(r, Reason::MalformedKey);
        assert!(m.contains("32"), "{m}");
        let k31 = b64::encode([7u8; 31]);
        let (r, m) = one_err(&format!(r#"{{"keys":[{{"kty":"oct","k":"{k31}"}}]}}"#));
        assert_eq!(r, Reason::WeakKey);
        assert!(
            m.starts_with("keys[0].k: the shared secret is 31 bytes"),
            "{m}"
        );
        // HS512 needs 64 bytes
        let k32 = b64::encode([7u8; 32]);
        assert_eq!(
            one_err(&format!(
                r#"{{"keys":[{{"kty":"oct","alg":"HS512","k":"{k32}"}}]}}"#
            ))
            .0,
            Reason::WeakKey
        );
        assert_eq!(
            hmac_secret(None, &[1; 31]).unwrap_err().reason(),
            Reason::WeakKey
        );
        let k = hmac_secret(Some("s".into()), &[1; 32]).unwrap();
        assert!(format!("{k:?}").contains("redacted"));
    }

    #[test]
    fn refuses_duplicate_kids_private_keys_and_contradicting_alg() {
        // one kid on two keys that one alg fits: ambiguous, refused
        let (r, m) = one_err(&set(&[
            test_keys::p256_jwk("k2"),
            test_keys::p256_jwk("k2"),
        ]));
        assert_eq!(r, Reason::MalformedKey);
        assert!(
            m.starts_with("keys[1].kid:") && m.contains("kid \"k2\"") && m.contains("ES256"),
            "{m}"
        );
        let (_, m) = one_err(&set(&[
            test_keys::rsa_jwk("k3", 2048),
            test_keys::rsa_jwk("k3", 2048).replace("{", r#"{"alg":"PS384","#),
        ]));
        assert!(m.contains("PS384"), "{m}");
        let private = test_keys::p256_jwk("k1").replace("{", r#"{"d":"AAAA","#);
        let (r, m) = one_err(&set(&[private]));
        assert_eq!(r, Reason::MalformedKey);
        assert!(
            m.starts_with("keys[0].d:") && m.contains("private key"),
            "{m}"
        );
        let rsa_private = test_keys::rsa_jwk("r", 2048).replace("{", r#"{"p":"AAAA","#);
        assert!(one_err(&set(&[rsa_private])).1.starts_with("keys[0].p:"));
        for (jwk, alg) in [
            (test_keys::p256_jwk("a"), "ES384"),
            (test_keys::p256_jwk("a"), "RS256"),
            (test_keys::p384_jwk("a"), "ES256"),
            (test_keys::rsa_jwk("a", 2048), "HS256"),
            (test_keys::ed25519_jwk("a"), "ES256"),
        ] {
            let doc = set(&[jwk.replace("{", &format!(r#"{{"alg":"{alg}","#))]);
            let (r, m) = one_err(&doc);
            assert_eq!(r, Reason::MalformedKey);
            assert!(m.starts_with("keys[0].alg:"), "{m}");
        }
        let doc = set(&[test_keys::p256_jwk("a").replace("{", r#"{"alg":"ES999","#)]);
        assert_eq!(one_err(&doc).0, Reason::MalformedKey);
    }

    #[test]
    fn reports_every_bad_key_at_once_and_refuses_bad_documents() {
        let doc = set(&[
            test_keys::rsa_jwk("r1", 1024),
            test_keys::p256_jwk("ok"),
            r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#.to_string(),
        ]);
        let e = errs(&doc);
        assert_eq!(e.len(), 2);
        assert!(e[0].1.starts_with("keys[0].n"));
        assert!(e[1].1.starts_with("keys[2].x"));
        assert_eq!(one_err("[]").0, Reason::MalformedKey);
        assert_eq!(one_err("{}").0, Reason::MalformedKey);
        assert_eq!(one_err(r#"{"keys":{}}"#).0, Reason::MalformedKey);
        assert_eq!(one_err(r#"{"keys":[1]}"#).0, Reason::MalformedKey);
        assert_eq!(
            one_err(r#"{"keys":[],"keys":[]}"#).0,
            Reason::DuplicateJsonKey
        );
        assert_eq!(
            one_err(r#"{"keys":[{"kty":"RSA","n":"AQAB=","e":"AQAB"}]}"#).0,
            Reason::MalformedKey
        );
        assert_eq!(
            one_err(r#"{"keys":[{"kty":"RSA","e":"AQAB"}]}"#).0,
            Reason::MalformedKey
        );
        assert_eq!(one_err(r#"{"keys":[{"kid":"x"}]}"#).0, Reason::MalformedKey);
        assert_eq!(
            one_err(r#"{"keys":[{"kty":"RSA","kid":5}]}"#).0,
            Reason::MalformedKey
        );
        let many = set(&vec![r#"{"kty":"none"}"#.to_string(); MAX_KEYS + 1]);
        assert_eq!(one_err(&many).0, Reason::MalformedKey);
        let huge = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(
            KeySet::parse_jwks(&huge).unwrap_err()[0].reason(),
            Reason::MalformedKey
        );
        // from_jwks_value takes the same shape
        let v: Value = serde_json::from_str(&set(&[test_keys::p256_jwk("a")])).unwrap();
        assert_eq!(KeySet::from_jwks_value(&v).unwrap().len(), 1);
        assert!(KeySet::from_jwks_value(&Value::Null).is_err());
    }

    #[test]
    fn select_by_kid_and_by_alg() {
        let doc = set(&[
            test_keys::rsa_jwk("r1", 2048),
            test_keys::rsa_jwk("r2", 2048),
            test_keys::p256_jwk("e1"),
            test_keys::ed25519_jwk("o1").replace("{", r#"{"alg":"EdDSA","#),
        ]);
        let ks = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        assert_eq!(
            ks.select(Some("r2"), Alg::PS256).unwrap().kid.as_deref(),
            Some("r2")
        );
        assert_eq!(
            ks.select(Some("nope"), Alg::RS256).unwrap_err().reason(),
            Reason::UnknownKid
        );
        // algorithm confusion: HS256 against an RSA or EC key
        assert_eq!(
            ks.select(Some("r1"), Alg::HS256).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        assert_eq!(
            ks.select(Some("e1"), Alg::HS256).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        assert_eq!(
            ks.select(Some("e1"), Alg::ES384).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        assert_eq!(
            ks.select(Some("e1"), Alg::RS256).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        // no kid: the single fitting key, ambiguity and absence are NoMatchingKey
        assert_eq!(
            ks.select(None, Alg::ES256).unwrap().kid.as_deref(),
            Some("e1")
        );
        assert_eq!(
            ks.select(None, Alg::EdDSA).unwrap().kid.as_deref(),
            Some("o1")
        );
        assert_eq!(
            ks.select(None, Alg::RS256).unwrap_err().reason(),
            Reason::NoMatchingKey
        );
        assert_eq!(
            ks.select(None, Alg::HS256).unwrap_err().reason(),
            Reason::NoMatchingKey
        );
        assert_eq!(
            ks.select(None, Alg::ES384).unwrap_err().reason(),
            Reason::NoMatchingKey
        );

        // a JWK's own alg restricts it
        let doc = set(&[test_keys::rsa_jwk("r1", 2048).replace("{", r#"{"alg":"RS256","#)]);
        let ks = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        assert!(ks.select(Some("r1"), Alg::RS256).is_ok());
        assert_eq!(
            ks.select(Some("r1"), Alg::PS256).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        assert_eq!(
            ks.select(None, Alg::PS256).unwrap_err().reason(),
            Reason::NoMatchingKey
        );

        // HMAC keys: HS512 needs a 64-byte secret
        let ks = KeySet::from_keys(vec![hmac_secret(Some("h".into()), &[3; 32]).unwrap()]).unwrap();
        assert!(ks.select(None, Alg::HS256).is_ok());
        assert_eq!(
            ks.select(Some("h"), Alg::HS512).unwrap_err().reason(),
            Reason::WeakKey
        );
        assert_eq!(
            ks.select(Some("h"), Alg::RS256).unwrap_err().reason(),
            Reason::AlgKeyMismatch
        );
        let dup = KeySet::from_keys(vec![
            hmac_secret(Some("h".into()), &[3; 32]).unwrap(),
            hmac_secret(Some("h".into()), &[4; 32]).unwrap(),
        ]);
        assert_eq!(dup.unwrap_err()[0].reason(), Reason::MalformedKey);
        assert!(KeySet::default().is_empty());
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let secret = [0x41u8; 40];
        let k = hmac_secret(Some("kid1".into()), &secret).unwrap();
        let dbg = format!("{k:?}");
        assert!(
            !dbg.contains("65, 65") && !dbg.contains("AAAA") && !dbg.contains("4141"),
            "{dbg}"
        );
        assert!(dbg.contains("kid1"));
    }
}
