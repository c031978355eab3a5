//! Signature verification, behind a trait so hosts can swap the backend.
//!
//! [`NativeBackend`] verifies everything in-process through jwt-compact's [`Algorithm`] trait,
//! implemented here for our own algorithm types on the fastest maintained crate for each (as
//! measured in V8 wasm): ring for RSA (PKCS#1 v1.5 and PSS) and Ed25519, RustCrypto `p256` /
//! `p384` / `p521` for ECDSA, `hmac` + `sha2` for HMAC with the key schedule done at load time.
//!
//! A host with its own crypto (an edge worker with WebCrypto, which is async) does the
//! signature step itself: it picks the key with [`crate::jwk::KeySet::select`], calls
//! [`check_signature_format`] (which every backend must call first), then verifies with the key's
//! raw material ([`crate::jwk::RsaKey::modulus`], [`crate::jwk::P256Key::sec1_uncompressed`], ...).

pub mod ecdsa;
pub mod eddsa;
pub mod hmac;
pub mod rsa;

use std::borrow::Cow;
use std::num::NonZeroUsize;

use jwt_compact::{Algorithm, AlgorithmSignature};

use crate::alg::Alg;
use crate::b64;
use crate::error::{Error, Reason};
use crate::jwk::PublicKey;

#[cfg(test)]
pub(crate) use edgegate_testkit::test_keys;

/// Checks a signature against a key.
pub trait SignatureBackend {
    /// `Ok(())` when `signature` is `alg`'s signature of `signing_input` under `key`.
    /// Errors: `AlgKeyMismatch`, `BadSignatureFormat`, `BadSignature`.
    fn verify(
        &self,
        alg: Alg,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), Error>;
}

/// Verifies in-process with ring, p256, p384, p521 and hmac.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeBackend;

impl SignatureBackend for NativeBackend {
    fn verify(
        &self,
        alg: Alg,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        check_signature_format(alg, key, signature)?;
        let msg = signing_input;
        match (alg, key) {
            (Alg::HS256, PublicKey::Hmac(k)) => run(&hmac::Hs256, k, msg, signature),
            (Alg::HS384, PublicKey::Hmac(k)) => run(&hmac::Hs384, k, msg, signature),
            (Alg::HS512, PublicKey::Hmac(k)) => run(&hmac::Hs512, k, msg, signature),
            (Alg::RS256, PublicKey::Rsa(k)) => run(&rsa::Rs256, k, msg, signature),
            (Alg::RS384, PublicKey::Rsa(k)) => run(&rsa::Rs384, k, msg, signature),
            (Alg::RS512, PublicKey::Rsa(k)) => run(&rsa::Rs512, k, msg, signature),
            (Alg::PS256, PublicKey::Rsa(k)) => run(&rsa::Ps256, k, msg, signature),
            (Alg::PS384, PublicKey::Rsa(k)) => run(&rsa::Ps384, k, msg, signature),
            (Alg::PS512, PublicKey::Rsa(k)) => run(&rsa::Ps512, k, msg, signature),
            (Alg::ES256, PublicKey::P256(k)) => run(&ecdsa::Es256, k, msg, signature),
            (Alg::ES384, PublicKey::P384(k)) => run(&ecdsa::Es384, k, msg, signature),
            (Alg::ES512, PublicKey::P521(k)) => run(&ecdsa::Es512, k, msg, signature),
            (Alg::EdDSA, PublicKey::Ed25519(k)) => run(&eddsa::Ed25519, k, msg, signature),
            _ => Err(mismatch(alg)),
        }
    }
}

/// Whether the host verifies `alg` (everything but HMAC, whose secret stays in the core).
pub fn host_verifies(alg: Alg) -> bool {
    !matches!(alg, Alg::HS256 | Alg::HS384 | Alg::HS512)
}

/// One signature verification the host must perform.
#[derive(Debug, Clone)]
pub struct SignatureCheck {
    alg: Alg,
    key: PublicKey,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

impl SignatureCheck {
    pub(crate) fn new(alg: Alg, key: &PublicKey, signing_input: &[u8], signature: &[u8]) -> Self {
        SignatureCheck {
            alg,
            key: key.clone(),
            signing_input: signing_input.to_vec(),
            signature: signature.to_vec(),
        }
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The bytes that were signed (`header.payload`, ASCII).
    pub fn signing_input(&self) -> &[u8] {
        &self.signing_input
    }

    /// The decoded signature (RSA: modulus length; ECDSA: raw `r || s`; Ed25519: 64 bytes).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The public key as a minimal JWK (JSON, members in a fixed order, no `kid`/`alg`/`use`):
    /// what WebCrypto's `importKey("jwk", ...)` takes, and the same string for the same key, so
    /// hosts can cache the imported key under it (with the algorithm: a WebCrypto RSA key is
    /// bound to one hash). `None` for HMAC, which never goes to the host.
    pub fn key_jwk(&self) -> Option<String> {
        public_jwk(&self.key)
    }

    /// Verifies with an in-process backend (the synchronous hosts' answer).
    pub fn verify_with(&self, backend: &dyn SignatureBackend) -> Result<(), Error> {
        backend.verify(self.alg, &self.key, &self.signing_input, &self.signature)
    }

    /// The error for a signature the host found invalid (the same the core's backends give).
    pub fn refused() -> Error {
        Error::bad_signature()
    }
}

fn public_jwk(key: &PublicKey) -> Option<String> {
    let ec = |crv: &str, point: Vec<u8>, len: usize| {
        // SEC1 uncompressed: 04 || x || y
        let x = point.get(1..1 + len)?;
        let y = point.get(1 + len..1 + 2 * len)?;
        Some(format!(
            r#"{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}"}}"#,
            b64::encode(x),
            b64::encode(y)
        ))
    };
    match key {
        PublicKey::Rsa(k) => Some(format!(
            r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#,
            b64::encode(k.modulus()),
            b64::encode(k.exponent())
        )),
        PublicKey::P256(k) => ec("P-256", k.sec1_uncompressed(), 32),
        PublicKey::P384(k) => ec("P-384", k.sec1_uncompressed(), 48),
        PublicKey::P521(k) => ec("P-521", k.sec1_uncompressed(), 66),
        PublicKey::Ed25519(k) => Some(format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            b64::encode(k.as_bytes())
        )),
        PublicKey::Hmac(_) => None,
    }
}

/// Runs one jwt-compact algorithm: signature decoding (format) then verification.
fn run<A: Algorithm>(
    alg: &A,
    key: &A::VerifyingKey,
    msg: &[u8],
    signature: &[u8],
) -> Result<(), Error> {
    let sig = A::Signature::try_from_slice(signature).map_err(|_| {
        Error::new(
            Reason::BadSignatureFormat,
            format!("the signature is not a valid {} signature", alg.name()),
        )
    })?;
    if alg.verify_signature(&sig, key, msg) {
        Ok(())
    } else {
        Err(Error::bad_signature())
    }
}

fn mismatch(alg: Alg) -> Error {
    Error::new(
        Reason::AlgKeyMismatch,
        format!("the token's alg {alg} does not fit the key's type"),
    )
}

fn bad_format(msg: String) -> Error {
    Error::new(Reason::BadSignatureFormat, msg)
}

/// Structural checks on a signature before any verification, shared by every backend (a host
/// verifying with WebCrypto calls it too):
/// the key's family must fit `alg`; HMAC tags have the digest's length; RSA signatures the
/// modulus' length; ECDSA signatures are raw `r || s` of 64 (ES256), 96 (ES384) or 132 (ES512,
/// two 66-byte scalars) bytes with
/// `0 < r, s < n` (DER is refused); Ed25519 signatures are 64 bytes.
pub fn check_signature_format(alg: Alg, key: &PublicKey, signature: &[u8]) -> Result<(), Error> {
    if key.family() != alg.family() {
        return Err(mismatch(alg));
    }
    let want = match (alg, key) {
        (Alg::HS256, _) => 32,
        (Alg::HS384, _) => 48,
        (Alg::HS512, _) => 64,
        (_, PublicKey::Rsa(k)) => k.modulus_len(),
        (Alg::ES256, _) => 64,
        (Alg::ES384, _) => 96,
        (Alg::ES512, _) => 132,
        (Alg::EdDSA, _) => 64,
        _ => return Err(mismatch(alg)),
    };
    if signature.len() != want {
        let der = if matches!(alg, Alg::ES256 | Alg::ES384 | Alg::ES512)
            && signature.first() == Some(&0x30)
        {
            " (DER-encoded ECDSA signatures are not JWS signatures: JWS uses raw r || s)"
        } else {
            ""
        };
        return Err(bad_format(format!(
            "a {alg} signature here is {want} bytes, this one is {}{der}",
            signature.len()
        )));
    }
    let scalars_ok = match alg {
        Alg::ES256 => p256::ecdsa::Signature::from_slice(signature).is_ok(),
        Alg::ES384 => p384::ecdsa::Signature::from_slice(signature).is_ok(),
        Alg::ES512 => p521::ecdsa::Signature::from_slice(signature).is_ok(),
        _ => true,
    };
    if !scalars_ok {
        return Err(bad_format(format!(
            "the {alg} signature's r or s is zero or not below the group order"
        )));
    }
    Ok(())
}

/// The key type of algorithms this crate only verifies with: it has no values, so `sign` can
/// never be called.
#[derive(Debug, Clone, Copy)]
pub enum VerifyOnly {}

/// A signature of exactly `N` bytes (HMAC tags, Ed25519).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedSignature<const N: usize>(pub [u8; N]);

impl<const N: usize> AlgorithmSignature for FixedSignature<N> {
    const LENGTH: Option<NonZeroUsize> = NonZeroUsize::new(N);

    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        <[u8; N]>::try_from(slice)
            .map(FixedSignature)
            .map_err(|_| anyhow::Error::msg("signature has the wrong length"))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

/// Randomness source for wasm32-unknown-unknown, where ring's `getrandom` dependency needs one:
/// verification uses no randomness, so this always fails. A host crate (the final cdylib)
/// registers it with [`register_no_random!`](crate::register_no_random).
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub fn no_random(_buf: &mut [u8]) -> Result<(), getrandom::Error> {
    Err(getrandom::Error::UNSUPPORTED)
}

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[doc(hidden)]
pub use getrandom as __getrandom;

/// Registers [`backend::no_random`](crate::backend) as the `getrandom` source of a
/// wasm32-unknown-unknown cdylib. Call once at the host crate's root: `edgegate::register_no_random!();`
/// (a no-op on other targets).
#[macro_export]
macro_rules! register_no_random {
    () => {
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        $crate::backend::__getrandom::register_custom_getrandom!($crate::backend::no_random);
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::KeySet;
    use crate::jws;

    fn keys() -> KeySet {
        KeySet::parse_jwks(test_keys::jwks_all().as_bytes()).unwrap()
    }

    fn check(ks: &KeySet, token: &str) -> Result<(), Error> {
        let j = jws::parse(token, jws::DEFAULT_MAX_TOKEN_BYTES)?;
        let key = ks.select(j.kid.as_deref(), j.alg)?;
        NativeBackend.verify(j.alg, &key.key, j.signing_input, &j.signature)
    }

    /// Flips one bit of the byte at `i` of a base64url string while keeping it canonical
    /// (stays inside the alphabet and leaves the last character's unused bits alone).
    fn flip_char(s: &str, i: usize) -> String {
        let mut b = s.as_bytes().to_vec();
        b[i] = match b[i] {
            b'A' => b'B',
            b'B' => b'A',
            c if c.is_ascii_uppercase() => c ^ 0x20,
            c if c.is_ascii_lowercase() => c ^ 0x20,
            b'0' => b'1',
            _ => b'0',
        };
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn every_alg_verifies_and_tampering_fails() {
        let ks = keys();
        for alg in Alg::ALL {
            let name = alg.name();
            let t = test_keys::token(name, Some(test_keys::kid_for(name)), r#"{"sub":"alice"}"#);
            check(&ks, &t).unwrap_or_else(|e| panic!("{name}: {e}"));
            // a changed payload character
            let dot = t.find('.').unwrap();
            let bad = flip_char(&t, dot + 3);
            assert_eq!(
                check(&ks, &bad).unwrap_err().reason(),
                Reason::BadSignature,
                "{name} payload"
            );
            // a changed signature byte (decode, flip, encode)
            let (input, sig) = t.rsplit_once('.').unwrap();
            let mut s = crate::b64::decode(sig).unwrap();
            s[5] ^= 0x01;
            let bad = format!("{input}.{}", crate::b64::encode(&s));
            assert_eq!(
                check(&ks, &bad).unwrap_err().reason(),
                Reason::BadSignature,
                "{name} signature"
            );
        }
    }

    #[test]
    fn jwt_compact_algorithms_sign_what_they_verify() {
        let ks = keys();
        let PublicKey::Hmac(hk) = &ks.select(Some("hmac"), Alg::HS256).unwrap().key else {
            panic!()
        };
        let sig = hmac::Hs384.sign(hk, b"msg");
        assert_eq!(sig.0.to_vec(), test_keys::sign("HS384", b"msg"));
        assert!(hmac::Hs384.verify_signature(&sig, hk, b"msg"));
        assert!(!hmac::Hs384.verify_signature(&sig, hk, b"msG"));
        let PublicKey::P256(pk) = &ks.select(Some("p256"), Alg::ES256).unwrap().key else {
            panic!()
        };
        let sig = ecdsa::Es256.sign(&test_keys::p256_signing_key(), b"msg");
        assert!(ecdsa::Es256.verify_signature(&sig, pk, b"msg"));
        assert_eq!(ecdsa::Es256.name(), "ES256");
        assert_eq!(rsa::Ps512.name(), "PS512");
        assert_eq!(eddsa::Ed25519.name(), "EdDSA");
    }

    #[test]
    fn signature_formats_are_checked_first() {
        let ks = keys();
        let key = |kid: &str| {
            ks.keys()
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .unwrap()
                .key
                .clone()
        };
        let fmt = |alg: Alg, kid: &str, sig: &[u8]| {
            let k = key(kid);
            let direct = check_signature_format(alg, &k, sig)
                .err()
                .map(|e| e.reason());
            let via_backend = NativeBackend
                .verify(alg, &k, b"x.y", sig)
                .err()
                .map(|e| e.reason());
            if direct.is_some() {
                assert_eq!(direct, via_backend);
            }
            direct
        };
        let bsf = Some(Reason::BadSignatureFormat);
        // HMAC: exact digest length
        assert_eq!(fmt(Alg::HS256, "hmac", &[0; 31]), bsf);
        assert_eq!(fmt(Alg::HS256, "hmac", &[0; 64]), bsf);
        assert_eq!(fmt(Alg::HS512, "hmac", &[0; 32]), bsf);
        assert_eq!(fmt(Alg::HS384, "hmac", &[0; 48]), None);
        // RSA: modulus length
        assert_eq!(fmt(Alg::RS256, "rsa", &[1; 255]), bsf);
        assert_eq!(fmt(Alg::RS256, "rsa", &[1; 257]), bsf);
        assert_eq!(fmt(Alg::PS256, "rsa", &[1; 256]), None);
        // Ed25519: 64 bytes
        assert_eq!(fmt(Alg::EdDSA, "ed25519", &[1; 63]), bsf);
        // ECDSA: raw r||s, lengths, zero and out-of-range scalars, DER
        let good = test_keys::sign("ES256", b"x.y");
        assert_eq!(fmt(Alg::ES256, "p256", &good), None);
        assert_eq!(fmt(Alg::ES256, "p256", &good[..63]), bsf);
        let mut zero_r = good.clone();
        zero_r[..32].fill(0);
        assert_eq!(fmt(Alg::ES256, "p256", &zero_r), bsf);
        let mut zero_s = good.clone();
        zero_s[32..].fill(0);
        assert_eq!(fmt(Alg::ES256, "p256", &zero_s), bsf);
        let mut big_s = good.clone();
        big_s[32..].fill(0xff); // >= n
        assert_eq!(fmt(Alg::ES256, "p256", &big_s), bsf);
        let der = der_ecdsa(&good[..32], &good[32..]);
        let e = check_signature_format(Alg::ES256, &key("p256"), &der).unwrap_err();
        assert_eq!(e.reason(), Reason::BadSignatureFormat);
        assert!(e.message().contains("DER"), "{}", e.message());
        let good = test_keys::sign("ES384", b"x.y");
        assert_eq!(fmt(Alg::ES384, "p384", &good), None);
        assert_eq!(fmt(Alg::ES384, "p384", &good[..64]), bsf);
        let mut zero_r = good.clone();
        zero_r[..48].fill(0);
        assert_eq!(fmt(Alg::ES384, "p384", &zero_r), bsf);
        assert_eq!(
            fmt(Alg::ES384, "p384", &der_ecdsa(&good[..48], &good[48..])),
            bsf
        );
        let good = test_keys::sign("ES512", b"x.y");
        assert_eq!(good.len(), 132);
        assert_eq!(fmt(Alg::ES512, "p521", &good), None);
        assert_eq!(fmt(Alg::ES512, "p521", &good[..131]), bsf);
        let mut zero_s = good.clone();
        zero_s[66..].fill(0);
        assert_eq!(fmt(Alg::ES512, "p521", &zero_s), bsf);
        let mut big_r = good.clone();
        big_r[..66].fill(0xff); // >= n
        assert_eq!(fmt(Alg::ES512, "p521", &big_r), bsf);
        let e = check_signature_format(
            Alg::ES512,
            &key("p521"),
            &der_ecdsa(&good[..66], &good[66..]),
        )
        .unwrap_err();
        assert!(e.message().contains("DER"), "{}", e.message());
        assert_eq!(
            fmt(Alg::ES512, "p384", &[1; 132]),
            Some(Reason::AlgKeyMismatch)
        );
        // an ES256 signature presented as ES384 is the wrong length for its key anyway
        assert_eq!(
            fmt(Alg::ES384, "p256", &[1; 96]),
            Some(Reason::AlgKeyMismatch)
        );
    }

    #[test]
    fn algorithm_confusion_is_refused_by_the_backend_too() {
        let ks = keys();
        let rsa = &ks.select(Some("rsa"), Alg::RS256).unwrap().key;
        // an HS256 "signature" computed with the RSA key's public bytes as secret
        let PublicKey::Rsa(r) = rsa else { panic!() };
        let mac = {
            use ::hmac::Mac as _;
            ::hmac::Hmac::<sha2::Sha256>::new_from_slice(r.modulus())
                .unwrap()
                .chain_update(b"x.y")
                .finalize()
                .into_bytes()
        };
        assert_eq!(
            NativeBackend
                .verify(Alg::HS256, rsa, b"x.y", &mac)
                .unwrap_err()
                .reason(),
            Reason::AlgKeyMismatch
        );
        let hmac = &ks.select(Some("hmac"), Alg::HS256).unwrap().key;
        for alg in [Alg::RS256, Alg::ES256, Alg::ES384, Alg::ES512, Alg::EdDSA] {
            assert_eq!(
                NativeBackend
                    .verify(alg, hmac, b"x.y", &[1; 64])
                    .unwrap_err()
                    .reason(),
                Reason::AlgKeyMismatch
            );
        }
        let p256 = &ks.select(Some("p256"), Alg::ES256).unwrap().key;
        assert_eq!(
            NativeBackend
                .verify(Alg::ES384, p256, b"x.y", &[1; 96])
                .unwrap_err()
                .reason(),
            Reason::AlgKeyMismatch
        );
    }

    #[test]
    fn a_valid_signature_under_another_key_of_the_same_type_fails() {
        // an HS256 token signed with another secret
        let other = crate::jwk::hmac_secret(None, &[9; 64]).unwrap();
        let t = test_keys::token("HS256", None, "{}");
        let j = jws::parse(&t, 10_000).unwrap();
        assert_eq!(
            NativeBackend
                .verify(Alg::HS256, &other.key, j.signing_input, &j.signature)
                .unwrap_err()
                .reason(),
            Reason::BadSignature
        );
        // an ES256 signature over other bytes
        let ks = keys();
        let p = &ks.select(Some("p256"), Alg::ES256).unwrap().key;
        let sig = test_keys::sign("ES256", b"other");
        assert_eq!(
            NativeBackend
                .verify(Alg::ES256, p, b"x.y", &sig)
                .unwrap_err()
                .reason(),
            Reason::BadSignature
        );
        // RS256 signature checked as PS256 and vice versa
        let r = &ks.select(Some("rsa"), Alg::RS256).unwrap().key;
        let sig = test_keys::sign("RS256", b"x.y");
        assert!(NativeBackend.verify(Alg::RS256, r, b"x.y", &sig).is_ok());
        assert_eq!(
            NativeBackend
                .verify(Alg::PS256, r, b"x.y", &sig)
                .unwrap_err()
                .reason(),
            Reason::BadSignature
        );
        assert_eq!(
            NativeBackend
                .verify(Alg::RS384, r, b"x.y", &sig)
                .unwrap_err()
                .reason(),
            Reason::BadSignature
        );
    }

    fn der_ecdsa(r: &[u8], s: &[u8]) -> Vec<u8> {
        let int = |x: &[u8]| {
            let mut v = vec![0x02];
            let pad = x[0] & 0x80 != 0;
            v.push((x.len() + usize::from(pad)) as u8);
            if pad {
                v.push(0);
            }
            v.extend_from_slice(x);
            v
        };
        let body = [int(r), int(s)].concat();
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    }
}
