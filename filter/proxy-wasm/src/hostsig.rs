//! Signature verification by the host: Envoy's `verify_signature` foreign function.
//!
//! RSA in V8 wasm (ring) costs ~0.4 ms per RS256 verification; Envoy registers a proxy-wasm
//! foreign function, `verify_signature` (source/extensions/common/wasm/foreign.cc), that verifies
//! with BoringSSL: `EVP_DigestVerifyInit(md)` + `EVP_DigestVerify` under a DER
//! SubjectPublicKeyInfo, with the key's default padding. That is exactly RS256/384/512 (PKCS#1
//! v1.5) and ES256/ES384/ES512 (ECDSA with a DER signature; BoringSSL has P-521), so
//! [`HostBackend`] sends those there and
//! everything else (PS*, EdDSA, HMAC) to the core's [`NativeBackend`].
//!
//! The core still makes every decision: it picks the key and checks that its type fits the
//! alg; [`check_signature_format`] runs before the host is asked. Fail closed: only a decoded
//! `result == true` is a valid signature; an error status, a result that does not decode or
//! `result == false` is `BadSignature`.
//!
//! A host without the function (NotFound at the probe in `on_configure`, or on any call) is
//! served by the wasm backends.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use edgegate::alg::Alg;
use edgegate::backend::{check_signature_format, NativeBackend, SignatureBackend};
use edgegate::error::Error;
use edgegate::jwk::PublicKey;

/// The foreign function's name in Envoy.
pub const FUNCTION: &str = "verify_signature";

/// Counter of signature checks, labeled by where they ran: `backend.host` (Envoy's BoringSSL)
/// or `backend.wasm` (in the filter). Envoy shows it as `wasmcustom.edgegate_signature_checks.backend.host`
/// (`edgegate_signature_checks{backend="host"}` with the stats tag rule in envoy.yaml).
pub const METRIC: &str = "edgegate_signature_checks";

/// `envoy.source.extensions.common.wasm.VerifySignatureArguments`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VerifySignatureArguments {
    #[prost(string, tag = "1")]
    pub hash_function: String,
    /// DER SubjectPublicKeyInfo.
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub text: Vec<u8>,
    #[prost(string, tag = "5")]
    pub public_key_pem: String,
}

/// `envoy.source.extensions.common.wasm.VerifySignatureResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    pub result: bool,
    #[prost(string, tag = "2")]
    pub error: String,
}

// state: 0 = not probed yet (the host is tried), then:
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;

/// Sends RS256/384/512, ES256, ES384 and ES512 to the host's `verify_signature`, the rest to
/// [`NativeBackend`].
#[derive(Default)]
pub struct HostBackend {
    state: AtomicU8,
    /// Metric ids + 1 (0: not defined yet), host then wasm.
    metric_ids: [AtomicU32; 2],
}

/// Where a check ran.
#[derive(Clone, Copy)]
enum Ran {
    Host = 0,
    Wasm = 1,
}

impl HostBackend {
    /// Asks the host once whether it has the function (an empty argument: Envoy answers it
    /// without verifying anything) and logs which backend RSA/ECDSA use. Returns true when
    /// the host has it.
    pub fn probe(&self) -> bool {
        let present = !matches!(
            hostcalls::call_foreign_function(FUNCTION, Some(&[])),
            Err(Status::NotFound)
        );
        self.state
            .store(if present { PRESENT } else { ABSENT }, Ordering::Relaxed);
        if present {
            log::info!("signature backend: RS256/384/512, ES256, ES384, ES512 verified by the host (verify_signature); PS*, EdDSA, HMAC in wasm");
        } else {
            log::info!("signature backend: wasm (the host has no verify_signature function)");
        }
        present
    }

    /// Whether the host function is used (after [`HostBackend::probe`]; unprobed: tried).
    pub fn host_present(&self) -> bool {
        self.state.load(Ordering::Relaxed) != ABSENT
    }

    fn count(&self, ran: Ran) {
        let Some(slot) = self.metric_ids.get(ran as usize) else {
            return;
        };
        let id = match slot.load(Ordering::Relaxed) {
            0 => {
                let label = match ran {
                    Ran::Host => "host",
                    Ran::Wasm => "wasm",
                };
                match hostcalls::define_metric(
                    MetricType::Counter,
                    &format!("{METRIC}.backend.{label}"),
                ) {
                    Ok(id) => {
                        slot.store(id.saturating_add(1), Ordering::Relaxed);
                        id
                    }
                    Err(_) => return,
                }
            }
            n => n.saturating_sub(1),
        };
        let _ = hostcalls::increment_metric(id, 1);
    }

    /// The host's answer with `hash`, or `None` where the host cannot give one (then the wasm
    /// backend decides).
    fn on_host(
        &self,
        hash: &str,
        alg: Alg,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Option<Result<(), Error>> {
        if !self.host_present() {
            return None;
        }
        // The core's checks first: the key fits the alg, the signature has its format.
        if let Err(e) = check_signature_format(alg, key, signature) {
            return Some(Err(e));
        }
        let (Some(der), Some(sig)) = (build_spki(key), host_signature(alg, signature)) else {
            // Not expected for a key the core accepted; the wasm backend still decides correctly.
            log::debug!("cannot encode the {alg} key or signature for the host; verifying in wasm");
            return None;
        };
        let args = encode_arguments(hash, der, sig, signing_input);
        let answer = hostcalls::call_foreign_function(FUNCTION, Some(&args));
        if matches!(answer, Err(Status::NotFound)) {
            self.state.store(ABSENT, Ordering::Relaxed);
            log::info!("signature backend: wasm (the host has no verify_signature function)");
            return None;
        }
        self.count(Ran::Host);
        Some(read_result(answer).map_err(|why| {
            log::debug!("{alg} signature refused by the host: {why}");
            refused()
        }))
    }
}

/// SubjectPublicKeyInfo DER of an RSA (from `n`, `e`) or EC (from the SEC1 point) key.
pub fn build_spki(key: &PublicKey) -> Option<Vec<u8>> {
    use p256::pkcs8::EncodePublicKey as _;
    use spki::der::Encode as _;
    match key {
        PublicKey::Rsa(k) => {
            let rsa = pkcs1::RsaPublicKey {
                modulus: pkcs1::UintRef::new(k.modulus()).ok()?,
                public_exponent: pkcs1::UintRef::new(k.exponent()).ok()?,
            }
            .to_der()
            .ok()?;
            spki::SubjectPublicKeyInfoRef {
                algorithm: pkcs1::ALGORITHM_ID,
                subject_public_key: spki::der::asn1::BitStringRef::from_bytes(&rsa).ok()?,
            }
            .to_der()
            .ok()
        }
        PublicKey::P256(k) => p256::ecdsa::VerifyingKey::from_sec1_bytes(&k.sec1_uncompressed())
            .ok()?
            .to_public_key_der()
            .ok()
            .map(|d| d.into_vec()),
        PublicKey::P384(k) => p384::ecdsa::VerifyingKey::from_sec1_bytes(&k.sec1_uncompressed())
            .ok()?
            .to_public_key_der()
            .ok()
            .map(|d| d.into_vec()),
        PublicKey::P521(k) => p521::ecdsa::VerifyingKey::from_sec1_bytes(&k.sec1_uncompressed())
            .ok()?
            .to_public_key_der()
            .ok()
            .map(|d| d.into_vec()),
        _ => None,
    }
}

/// The hash the host verifies `alg` with, for the algorithms it can verify.
pub fn host_hash(alg: Alg) -> Option<&'static str> {
    match alg {
        Alg::RS256 | Alg::ES256 => Some("sha256"),
        Alg::RS384 | Alg::ES384 => Some("sha384"),
        Alg::RS512 | Alg::ES512 => Some("sha512"),
        _ => None,
    }
}

/// The signature as BoringSSL takes it: RSA as is, ECDSA raw `r || s` as DER.
fn host_signature(alg: Alg, signature: &[u8]) -> Option<Vec<u8>> {
    // The same conversion on each curve's own signature type.
    macro_rules! der {
        ($curve:ident) => {
            $curve::ecdsa::Signature::from_slice(signature)
                .ok()?
                .to_der()
                .as_bytes()
                .to_vec()
        };
    }
    Some(match alg {
        Alg::ES256 => der!(p256),
        Alg::ES384 => der!(p384),
        Alg::ES512 => der!(p521),
        _ => signature.to_vec(),
    })
}

/// Encodes the foreign function's argument.
pub fn encode_arguments(hash: &str, spki_der: Vec<u8>, signature: Vec<u8>, text: &[u8]) -> Vec<u8> {
    use prost::Message as _;
    VerifySignatureArguments {
        hash_function: hash.to_string(),
        public_key: spki_der,
        signature,
        text: text.to_vec(),
        public_key_pem: String::new(),
    }
    .encode_to_vec()
}

/// Reads the host's answer: `Ok` only for a decoded `result == true`.
pub fn read_result(answer: Result<Option<Vec<u8>>, Status>) -> Result<(), String> {
    use prost::Message as _;
    match answer {
        Ok(Some(bytes)) => match VerifySignatureResult::decode(bytes.as_slice()) {
            Ok(r) if r.result => Ok(()),
            Ok(r) => Err(format!("refused: {}", r.error)),
            Err(_) => Err("the host's answer does not decode".to_string()),
        },
        Ok(None) => Err("the host answered nothing".to_string()),
        Err(s) => Err(format!("the host call failed: {s:?}")),
    }
}

fn refused() -> Error {
    Error::bad_signature()
}

impl SignatureBackend for HostBackend {
    fn verify(
        &self,
        alg: Alg,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        let on_host =
            host_hash(alg).and_then(|hash| self.on_host(hash, alg, key, signing_input, signature));
        on_host.unwrap_or_else(|| {
            self.count(Ran::Wasm);
            NativeBackend.verify(alg, key, signing_input, signature)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn only_pkcs1_v15_and_ecdsa_go_to_the_host() {
        for alg in Alg::ALL {
            let host = host_hash(alg).is_some();
            let want = matches!(
                alg,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::ES256 | Alg::ES384 | Alg::ES512
            );
            assert_eq!(host, want, "{alg}");
        }
    }

    #[test]
    fn results_fail_closed() {
        let ok = VerifySignatureResult {
            result: true,
            error: String::new(),
        }
        .encode_to_vec();
        assert!(read_result(Ok(Some(ok))).is_ok());
        let no = VerifySignatureResult {
            result: false,
            error: "bad".into(),
        }
        .encode_to_vec();
        assert!(read_result(Ok(Some(no))).is_err());
        // result = false encodes as nothing: an empty answer is false
        assert!(read_result(Ok(Some(Vec::new()))).is_err());
        assert!(read_result(Ok(None)).is_err());
        assert!(read_result(Ok(Some(vec![0xff, 0xff, 0xff]))).is_err());
        assert!(read_result(Err(Status::BadArgument)).is_err());
        assert!(read_result(Err(Status::InternalFailure)).is_err());
    }

    #[test]
    fn ecdsa_signatures_become_der() {
        let mut raw = [1u8; 64];
        raw[0] = 0x80; // needs a 0x00 pad in DER
        let der = host_signature(Alg::ES256, &raw).unwrap();
        assert_eq!(der[0], 0x30);
        let back = p256::ecdsa::Signature::from_der(&der).unwrap();
        assert_eq!(back.to_bytes().as_slice(), &raw[..]);
        assert!(host_signature(Alg::ES256, &[0; 64]).is_none());
        // ES512: two 66-byte scalars; DER needs a two-byte length (over 127 bytes)
        let mut raw = [0u8; 132];
        raw[1] = 0xff;
        raw[67] = 0x01;
        let der = host_signature(Alg::ES512, &raw).unwrap();
        assert_eq!(&der[..2], &[0x30, 0x81]);
        let back = p521::ecdsa::Signature::from_der(&der).unwrap();
        assert_eq!(back.to_bytes().as_slice(), &raw[..]);
        assert_eq!(host_signature(Alg::RS256, &[7; 256]).unwrap(), vec![7; 256]);
    }

    #[test]
    fn keys_become_subject_public_key_infos() {
        use p256::pkcs8::DecodePublicKey as _;
        use spki::der::Decode as _;
        // RFC 7515 A.2's RSA key (n shortened is fine: only the encoding is checked) and A.3's P-256 key.
        let jwks = r#"{"keys":[
            {"kty":"RSA","kid":"r","e":"AQAB","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"},
            {"kty":"EC","kid":"e","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}"#;
        let ks = edgegate::jwk::KeySet::parse_jwks(jwks.as_bytes()).unwrap();
        let rsa = &ks.select(Some("r"), Alg::RS256).unwrap().key;
        let der = build_spki(rsa).unwrap();
        let info = spki::SubjectPublicKeyInfoRef::from_der(&der).unwrap();
        assert_eq!(info.algorithm.oid, pkcs1::ALGORITHM_OID);
        let PublicKey::Rsa(k) = rsa else { panic!() };
        let inner = pkcs1::RsaPublicKey::<pkcs1::UintRef<'_>>::from_der(
            info.subject_public_key.raw_bytes(),
        )
        .unwrap();
        assert_eq!(inner.modulus.as_bytes(), k.modulus());
        assert_eq!(inner.public_exponent.as_bytes(), k.exponent());
        let ec = &ks.select(Some("e"), Alg::ES256).unwrap().key;
        let der = build_spki(ec).unwrap();
        let PublicKey::P256(k) = ec else { panic!() };
        let back = p256::ecdsa::VerifyingKey::from_public_key_der(&der).unwrap();
        assert_eq!(
            back.to_sec1_point(false).as_bytes(),
            k.sec1_uncompressed().as_slice()
        );
        let hmac = edgegate::jwk::hmac_secret(None, &[1; 32]).unwrap();
        assert!(build_spki(&hmac.key).is_none());
    }

    #[test]
    fn arguments_round_trip() {
        let a = encode_arguments("sha256", vec![1, 2], vec![3], b"x.y");
        let d = VerifySignatureArguments::decode(a.as_slice()).unwrap();
        assert_eq!(d.hash_function, "sha256");
        assert_eq!(d.public_key, vec![1, 2]);
        assert_eq!(d.signature, vec![3]);
        assert_eq!(d.text, b"x.y".to_vec());
        assert!(d.public_key_pem.is_empty());
    }
}
