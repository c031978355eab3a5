//! The module's signature backend: RSA PKCS#1 v1.5 (RS256/384/512) by AWS-LC through
//! `aws-lc-rs`, with each key parsed once and kept; everything else by the core's own backend.
//!
//! Why: `ring` (the core's RSA) takes the modulus and exponent on every check and derives the
//! key's Montgomery constants each time. That is about a quarter of an RS256 check (21 µs
//! against 15.6 µs for a kept AWS-LC key, measured side by side on this machine), and BoringSSL,
//! which `jwt_authn` uses, keeps them with the key. Fresh tokens pay it on every request.
//!
//! What goes in is what the core's backend gets, checked the same way first
//! ([`check_signature_format`]: the key's family fits the alg, the signature has the modulus's
//! length); the parameters are the same (2048 to 8192-bit keys). Keys are kept by their bytes
//! (alg, modulus, exponent), never by address, so a rotated-out key can never answer for a new
//! one; at most [`MAX_KEPT`] of them, then the list starts again.

use std::sync::{Arc, PoisonError, RwLock};

use aws_lc_rs::signature::{self as lc, ParsedPublicKey, VerificationAlgorithm};
use edgegate::backend::{check_signature_format, NativeBackend, SignatureBackend};
use edgegate::jwk::{PublicKey, RsaKey};
use edgegate::{Alg, Error};
use pkcs1::der::Encode;

/// Most parsed keys kept (a process verifies against a few key sets of a few keys each).
pub const MAX_KEPT: usize = 64;

/// A parsed key, by the alg and the key's bytes it was parsed for.
struct Kept {
    alg: Alg,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
    parsed: Arc<ParsedPublicKey>,
}

/// See the module's documentation.
#[derive(Default)]
pub struct ModuleBackend {
    /// Looked up by comparing bytes (a few keys; no key copied per check).
    kept: RwLock<Vec<Kept>>,
}

impl ModuleBackend {
    /// The parsed key for `alg` and `key`, parsed now if it is not kept yet. `None`: AWS-LC
    /// refused the key (then the core's backend answers, with its own error).
    fn parsed(
        &self,
        alg: Alg,
        params: &'static dyn VerificationAlgorithm,
        key: &RsaKey,
    ) -> Option<Arc<ParsedPublicKey>> {
        let found = self
            .kept
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|k| k.alg == alg && k.modulus == key.modulus() && k.exponent == key.exponent())
            .map(|k| Arc::clone(&k.parsed));
        if found.is_some() {
            return found;
        }
        let der = pkcs1::RsaPublicKey {
            modulus: pkcs1::UintRef::new(key.modulus()).ok()?,
            public_exponent: pkcs1::UintRef::new(key.exponent()).ok()?,
        }
        .to_der()
        .ok()?;
        let parsed = Arc::new(ParsedPublicKey::new(params, der).ok()?);
        let mut kept = self.kept.write().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.push(Kept {
            alg,
            modulus: key.modulus().to_vec(),
            exponent: key.exponent().to_vec(),
            parsed: Arc::clone(&parsed),
        });
        Some(parsed)
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.kept
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// AWS-LC's parameters for the RSA PKCS#1 v1.5 algs; `None` for every other alg.
fn pkcs1_params(alg: Alg) -> Option<&'static dyn VerificationAlgorithm> {
    match alg {
        Alg::RS256 => Some(&lc::RSA_PKCS1_2048_8192_SHA256),
        Alg::RS384 => Some(&lc::RSA_PKCS1_2048_8192_SHA384),
        Alg::RS512 => Some(&lc::RSA_PKCS1_2048_8192_SHA512),
        _ => None,
    }
}

impl SignatureBackend for ModuleBackend {
    fn verify(
        &self,
        alg: Alg,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        if let (Some(params), PublicKey::Rsa(rsa)) = (pkcs1_params(alg), key) {
            check_signature_format(alg, key, signature)?;
            if let Some(parsed) = self.parsed(alg, params, rsa) {
                return parsed
                    .verify_sig(signing_input, signature)
                    .map_err(|_| Error::bad_signature());
            }
        }
        NativeBackend.verify(alg, key, signing_input, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgegate::jwk::KeySet;
    use edgegate::{b64, jws, Reason};
    use edgegate_testkit::test_keys;
    use serde_json::Value;

    const VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/jose-vectors"
    );

    /// Every outcome (allowed, or refused with a reason) of the module's backend and the
    /// core's for one token against one key set.
    fn both(
        module: &ModuleBackend,
        ks: &KeySet,
        token: &str,
    ) -> (Result<(), Reason>, Result<(), Reason>) {
        let run = |b: &dyn SignatureBackend| -> Result<(), Reason> {
            let j = jws::parse(token, jws::DEFAULT_MAX_TOKEN_BYTES).map_err(|e| e.reason())?;
            let jwk = ks.select(j.kid.as_deref(), j.alg).map_err(|e| e.reason())?;
            b.verify(j.alg, &jwk.key, j.signing_input, &j.signature)
                .map_err(|e| e.reason())
        };
        (run(module), run(&NativeBackend))
    }

    /// The token, each way a client could spoil it: a payload byte, signature bytes, a
    /// truncated signature.
    fn spoiled(token: &str) -> Vec<String> {
        let (input, sig) = token.rsplit_once('.').unwrap();
        let raw = b64::decode(sig).unwrap();
        let mut out = Vec::new();
        for pos in [0, 7, raw.len() - 1] {
            let mut s = raw.clone();
            s[pos] ^= 0x04;
            out.push(format!("{input}.{}", b64::encode(&s)));
        }
        out.push(format!("{input}.{}", b64::encode(&raw[..raw.len() - 1])));
        let dot = token.find('.').unwrap();
        let mut b = token.as_bytes().to_vec();
        b[dot + 2] = if b[dot + 2] == b'A' { b'B' } else { b'A' };
        out.push(String::from_utf8(b).unwrap());
        out
    }

    #[test]
    fn it_answers_as_the_cores_backend_for_every_alg_and_every_spoiled_token() {
        let module = ModuleBackend::default();
        let ks = KeySet::parse_jwks(test_keys::jwks_all().as_bytes()).unwrap();
        for alg in [
            "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256",
        ] {
            let token = test_keys::token(alg, Some(test_keys::kid_for(alg)), r#"{"sub":"a"}"#);
            let (m, n) = both(&module, &ks, &token);
            assert_eq!(m, Ok(()), "{alg}");
            assert_eq!(n, Ok(()), "{alg}");
            for bad in spoiled(&token) {
                let (m, n) = both(&module, &ks, &bad);
                assert!(m.is_err(), "{alg}: a spoiled token verified");
                assert_eq!(m, n, "{alg}: {bad}");
            }
        }
        // RS256/384/512 went through AWS-LC: one kept key per alg.
        assert_eq!(module.kept(), 3);
    }

    #[test]
    fn published_rs256_vectors_verify_and_their_spoiled_copies_do_not() {
        let module = ModuleBackend::default();
        let mut rsa = 0;
        for file in ["rfc7515_appendix_a.json", "jose_cookbook.json"] {
            let path = format!("{VECTORS}/{file}");
            let doc: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for v in doc["vectors"].as_array().unwrap() {
                let Some(token) = v["compact"].as_str() else {
                    continue;
                };
                let jwks = serde_json::json!({ "keys": [v["verification_key"].clone()] });
                let Ok(ks) = KeySet::parse_jwks(jwks.to_string().as_bytes()) else {
                    continue;
                };
                let (m, n) = both(&module, &ks, token);
                assert_eq!(m, n, "{}", v["section"]);
                if v["alg"].as_str().is_some_and(|a| a.starts_with("RS")) {
                    assert_eq!(m, Ok(()), "{}", v["section"]);
                    rsa += 1;
                }
                for bad in spoiled(token) {
                    let (m, n) = both(&module, &ks, &bad);
                    assert!(m.is_err());
                    assert_eq!(m, n, "{}: {bad}", v["section"]);
                }
            }
        }
        assert!(rsa >= 2, "RFC 7515 A.2 and the cookbook's RS256 example");
    }

    #[test]
    fn a_key_is_never_taken_for_another_and_the_kept_list_is_bounded() {
        let module = ModuleBackend::default();
        let ks = KeySet::parse_jwks(test_keys::jwks_all().as_bytes()).unwrap();
        let token = test_keys::token("RS256", Some(test_keys::kid_for("RS256")), "{}");
        assert_eq!(both(&module, &ks, &token).0, Ok(()));
        // Another RSA key of the same size: kept apart, and the token does not verify under it.
        let j = jws::parse(&token, jws::DEFAULT_MAX_TOKEN_BYTES).unwrap();
        let PublicKey::Rsa(k) = &ks.select(j.kid.as_deref(), j.alg).unwrap().key else {
            panic!("an RSA key")
        };
        let mut n = k.modulus().to_vec();
        n[100] ^= 0x10;
        let other = PublicKey::Rsa(RsaKey::new(&n, k.exponent()).unwrap());
        let r = module.verify(Alg::RS256, &other, j.signing_input, &j.signature);
        assert_eq!(r.unwrap_err().reason(), Reason::BadSignature);
        assert_eq!(module.kept(), 2);
        for i in 0..(MAX_KEPT * 2) {
            let mut n = k.modulus().to_vec();
            n[50] = i as u8;
            n[51] = (i >> 8) as u8;
            let key = PublicKey::Rsa(RsaKey::new(&n, k.exponent()).unwrap());
            let _ = module.verify(Alg::RS256, &key, j.signing_input, &j.signature);
            assert!(module.kept() <= MAX_KEPT);
        }
    }
}
