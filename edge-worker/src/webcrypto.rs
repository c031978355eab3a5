//! Signature checks on WebCrypto (`crypto.subtle`, native BoringSSL in workerd): the host's answer
//! to the core's [`edgegate::step::Step::NeedSignature`].
//!
//! The core says which checks a request needs (the credential it picked, the key it selected,
//! the signing input and the signature, already format-checked); this module imports each key
//! once per isolate (cached under the algorithm and the key's JWK) and verifies; the core then
//! decides with exactly those results. Measured in workerd, WebCrypto verifies RS256 and ECDSA
//! ten times or more faster than ring, p256 and p384 compiled to wasm (README, "Crypto backends").
//!
//! This module serves the async path ([`crate::handle`]); the synchronous fast path
//! ([`crate::fast`]) hands the same checks to `worker.mjs`, which verifies them the same way.
//!
//! `EDGEGATE_CRYPTO = "wasm"` keeps everything in the core's pure-Rust backends instead.

use std::cell::RefCell;
use std::collections::HashMap;

use edgegate::backend::SignatureCheck;
use edgegate::jwk::PublicKey;
use edgegate::Alg;
use js_sys::{Array, Promise, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// The binding that picks the signature backend: `webcrypto` (default) or `wasm`.
pub const CRYPTO_BINDING: &str = "EDGEGATE_CRYPTO";
/// Imported keys kept per isolate (the table is emptied when full: keys rotate rarely).
const MAX_CACHED_KEYS: usize = 64;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = importKey)]
    fn import_key(
        format: &str,
        key: &JsValue,
        algorithm: &JsValue,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = verify)]
    fn subtle_verify(
        algorithm: &JsValue,
        key: &JsValue,
        signature: &[u8],
        data: &[u8],
    ) -> Result<Promise, JsValue>;
}

/// Which backend verifies RSA, ECDSA and Ed25519 signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crypto {
    /// `crypto.subtle.verify`, answering the core's `NeedSignature` steps.
    WebCrypto,
    /// The core's own backends (ring, p256, p384, p521) compiled to wasm.
    Wasm,
}

impl Crypto {
    /// From the binding's value (`None`: not set).
    pub fn from_binding(value: Option<&str>) -> Result<Crypto, String> {
        match value.map(str::trim) {
            None | Some("") | Some("webcrypto") => Ok(Crypto::WebCrypto),
            Some("wasm") => Ok(Crypto::Wasm),
            Some(other) => Err(format!(
                "{CRYPTO_BINDING}: {other:?} is not a signature backend; use \"webcrypto\" (the default) or \"wasm\""
            )),
        }
    }
}

/// Verifies one check with WebCrypto. A check WebCrypto cannot run (a key it refuses) is
/// logged and answered `false`: the token is refused.
pub async fn verify(check: &SignatureCheck) -> bool {
    match verify_one(check).await {
        Ok(v) => v,
        Err(e) => {
            let why = js_sys::Error::from(e)
                .message()
                .as_string()
                .unwrap_or_default();
            crate::log_error(&format!(
                "edgegate: WebCrypto could not verify a {} signature: {why}",
                check.alg()
            ));
            false
        }
    }
}

thread_local! {
    /// Imported keys by algorithm and key material (a WebCrypto key is bound to one algorithm
    /// and hash). The material is compared, not a JWK string built per request.
    static KEYS: RefCell<HashMap<(Alg, Vec<u8>), JsValue>> = RefCell::new(HashMap::new());
    /// importKey and verify parameters by algorithm.
    static PARAMS: RefCell<HashMap<Alg, (JsValue, JsValue)>> = RefCell::new(HashMap::new());
}

/// WebCrypto's import and verify parameters for `alg` (RFC 7518 §3.5: PSS salt = hash length).
fn params_json(alg: Alg) -> Option<(&'static str, &'static str)> {
    Some(match alg {
        Alg::RS256 => (
            r#"{"name":"RSASSA-PKCS1-v1_5","hash":"SHA-256"}"#,
            r#"{"name":"RSASSA-PKCS1-v1_5"}"#,
        ),
        Alg::RS384 => (
            r#"{"name":"RSASSA-PKCS1-v1_5","hash":"SHA-384"}"#,
            r#"{"name":"RSASSA-PKCS1-v1_5"}"#,
        ),
        Alg::RS512 => (
            r#"{"name":"RSASSA-PKCS1-v1_5","hash":"SHA-512"}"#,
            r#"{"name":"RSASSA-PKCS1-v1_5"}"#,
        ),
        Alg::PS256 => (
            r#"{"name":"RSA-PSS","hash":"SHA-256"}"#,
            r#"{"name":"RSA-PSS","saltLength":32}"#,
        ),
        Alg::PS384 => (
            r#"{"name":"RSA-PSS","hash":"SHA-384"}"#,
            r#"{"name":"RSA-PSS","saltLength":48}"#,
        ),
        Alg::PS512 => (
            r#"{"name":"RSA-PSS","hash":"SHA-512"}"#,
            r#"{"name":"RSA-PSS","saltLength":64}"#,
        ),
        Alg::ES256 => (
            r#"{"name":"ECDSA","namedCurve":"P-256"}"#,
            r#"{"name":"ECDSA","hash":"SHA-256"}"#,
        ),
        Alg::ES384 => (
            r#"{"name":"ECDSA","namedCurve":"P-384"}"#,
            r#"{"name":"ECDSA","hash":"SHA-384"}"#,
        ),
        Alg::ES512 => (
            r#"{"name":"ECDSA","namedCurve":"P-521"}"#,
            r#"{"name":"ECDSA","hash":"SHA-512"}"#,
        ),
        Alg::EdDSA => (r#"{"name":"Ed25519"}"#, r#"{"name":"Ed25519"}"#),
        _ => return None,
    })
}

pub(crate) fn params(alg: Alg) -> Result<(JsValue, JsValue), JsValue> {
    if let Some(p) = PARAMS.with(|p| p.borrow().get(&alg).cloned()) {
        return Ok(p);
    }
    let (import, verify) = params_json(alg)
        .ok_or_else(|| JsValue::from_str("the algorithm is not verified with WebCrypto"))?;
    let p = (JSON::parse(import)?, JSON::parse(verify)?);
    PARAMS.with(|m| m.borrow_mut().insert(alg, p.clone()));
    Ok(p)
}

/// The key's identity in [`KEYS`]: its public material (RSA: `n` then `e`, each length-prefixed;
/// EC: the SEC1 point; Ed25519: the 32 bytes). `None` for HMAC, never host-verified.
fn key_id(check: &SignatureCheck) -> Option<(Alg, Vec<u8>)> {
    let material = match check.key() {
        PublicKey::Rsa(k) => {
            let (n, e) = (k.modulus(), k.exponent());
            let mut v = Vec::with_capacity(n.len() + e.len() + 8);
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
            v.extend_from_slice(&(e.len() as u32).to_be_bytes());
            v.extend_from_slice(e);
            v
        }
        PublicKey::P256(k) => k.sec1_uncompressed(),
        PublicKey::P384(k) => k.sec1_uncompressed(),
        PublicKey::P521(k) => k.sec1_uncompressed(),
        PublicKey::Ed25519(k) => k.as_bytes().to_vec(),
        PublicKey::Hmac(_) => return None,
    };
    Some((check.alg(), material))
}

/// The WebCrypto key already imported for this check's algorithm and key, if any.
pub(crate) fn cached_key(check: &SignatureCheck) -> Option<JsValue> {
    let id = key_id(check)?;
    KEYS.with(|k| k.borrow().get(&id).cloned())
}

/// Starts `crypto.subtle.verify` for `check` with an imported `key` (WebCrypto copies the
/// signature and data before this returns, so the wasm memory views may go).
pub(crate) fn start_verify(check: &SignatureCheck, key: &JsValue) -> Result<Promise, JsValue> {
    let (_, verify_params) = params(check.alg())?;
    subtle_verify(
        &verify_params,
        key,
        check.signature(),
        check.signing_input(),
    )
}

async fn verify_one(check: &SignatureCheck) -> Result<bool, JsValue> {
    let alg = check.alg();
    let (import_params, verify_params) = params(alg)?;
    let cache_key =
        key_id(check).ok_or_else(|| JsValue::from_str("the key is not a public key"))?;
    let cached = KEYS.with(|k| k.borrow().get(&cache_key).cloned());
    let key = match cached {
        Some(k) => k,
        None => {
            let jwk = check
                .key_jwk()
                .ok_or_else(|| JsValue::from_str("the key is not a public key"))?;
            let usages = Array::of1(&JsValue::from_str("verify"));
            let k = JsFuture::from(import_key(
                "jwk",
                &JSON::parse(&jwk)?,
                &import_params,
                false,
                &usages,
            )?)
            .await?;
            KEYS.with(|m| {
                let mut m = m.borrow_mut();
                if m.len() >= MAX_CACHED_KEYS {
                    m.clear();
                }
                m.insert(cache_key, k.clone());
            });
            k
        }
    };
    let ok = JsFuture::from(subtle_verify(
        &verify_params,
        &key,
        check.signature(),
        check.signing_input(),
    )?)
    .await?;
    Ok(ok.as_bool() == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_picks_the_backend_and_refuses_typos() {
        assert_eq!(Crypto::from_binding(None), Ok(Crypto::WebCrypto));
        assert_eq!(
            Crypto::from_binding(Some("webcrypto")),
            Ok(Crypto::WebCrypto)
        );
        assert_eq!(Crypto::from_binding(Some(" wasm ")), Ok(Crypto::Wasm));
        let e = Crypto::from_binding(Some("subtle")).unwrap_err();
        assert!(
            e.contains("EDGEGATE_CRYPTO") && e.contains("\"wasm\""),
            "{e}"
        );
    }

    #[test]
    fn every_public_key_alg_has_webcrypto_params_and_hmac_has_none() {
        for alg in Alg::ALL {
            let has = params_json(alg).is_some();
            assert_eq!(has, edgegate::backend::host_verifies(alg), "{alg}");
            if let Some((i, v)) = params_json(alg) {
                let name = |j: &str| j.split('"').nth(3).unwrap().to_string();
                assert_eq!(name(i), name(v), "{alg}");
            }
        }
        // ES512 is ECDSA on P-521 with SHA-512 (RFC 7518 §3.4)
        let (i, v) = params_json(Alg::ES512).unwrap();
        assert!(
            i.contains("\"P-521\"") && v.contains("\"SHA-512\""),
            "{i} {v}"
        );
        // PSS salt = hash length (RFC 7518 §3.5)
        assert!(params_json(Alg::PS384)
            .unwrap()
            .1
            .contains("\"saltLength\":48"));
    }
}
