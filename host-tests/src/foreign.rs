//! Envoy's `verify_signature` foreign function (source/extensions/common/wasm/foreign.cc), with
//! the same argument and result protobufs and the same answers: BAD_ARGUMENT when the argument
//! does not parse, else OK with `VerifySignatureResult { result, error }`. Envoy verifies with
//! BoringSSL (`EVP_DigestVerify`, default padding: PKCS#1 v1.5 for RSA, DER ECDSA signatures);
//! this host verifies the same inputs with ring (P-521, which ring lacks, with RustCrypto
//! `p521`). The messages are declared here again from
//! Envoy's .proto, not imported from the filter: a wrong field tag in the filter must fail here
//! as it would in Envoy, not be mirrored.

use prost::Message as _;
use ring::signature as sig;
use spki::der::Decode as _;

use crate::state::status;

/// What `proxy_call_foreign_function("verify_signature", ...)` does in this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForeignMode {
    /// Verifies, as Envoy does (the default).
    #[default]
    Verify,
    /// The host has no such function: NOT_FOUND (as Envoy for an unknown name).
    Absent,
    /// The call fails with this status (e.g. BAD_ARGUMENT, INTERNAL_FAILURE).
    Fail(i32),
    /// The call succeeds with bytes that are no `VerifySignatureResult`.
    Garbage,
}

/// `envoy.source.extensions.common.wasm.VerifySignatureArguments`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VerifySignatureArguments {
    #[prost(string, tag = "1")]
    pub hash_function: String,
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

const RSA_OID: &str = "1.2.840.113549.1.1.1";
const EC_OID: &str = "1.2.840.10045.2.1";
const P256_OID: &str = "1.2.840.10045.3.1.7";
const P384_OID: &str = "1.3.132.0.34";
const P521_OID: &str = "1.3.132.0.35";

/// Runs the function on `args`: (status, result bytes), plus the hash function asked for (for
/// the tests' call log) when the argument parsed.
pub fn verify_signature(mode: ForeignMode, args: &[u8]) -> (i32, Vec<u8>, Option<String>) {
    match mode {
        ForeignMode::Absent => return (status::NOT_FOUND, Vec::new(), None),
        ForeignMode::Fail(s) => return (s, Vec::new(), None),
        ForeignMode::Garbage => return (status::OK, vec![0xff, 0xff, 0xff, 0x0f], None),
        ForeignMode::Verify => {}
    }
    let Ok(a) = VerifySignatureArguments::decode(args) else {
        return (status::BAD_ARGUMENT, Vec::new(), None);
    };
    let outcome = check(&a);
    let r = VerifySignatureResult {
        result: outcome.is_ok(),
        error: outcome.err().unwrap_or_default(),
    };
    (status::OK, r.encode_to_vec(), Some(a.hash_function))
}

fn check(a: &VerifySignatureArguments) -> Result<(), String> {
    if !matches!(
        a.hash_function.as_str(),
        "sha1" | "sha224" | "sha256" | "sha384" | "sha512"
    ) {
        return Err(format!("{} is not supported.", a.hash_function));
    }
    let info = spki::SubjectPublicKeyInfoRef::from_der(&a.public_key)
        .map_err(|_| "Failed to initialize digest verify.".to_string())?;
    let key = info.subject_public_key.raw_bytes();
    let oid = info.algorithm.oid.to_string();
    let curve = info
        .algorithm
        .parameters
        .and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
        .map(|o| o.to_string());
    if (oid.as_str(), curve.as_deref(), a.hash_function.as_str())
        == (EC_OID, Some(P521_OID), "sha512")
    {
        use p521::ecdsa::signature::Verifier as _;
        let failed = || "Failed to verify digest. Error code: 0".to_string();
        let k = p521::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| failed())?;
        let s = p521::ecdsa::Signature::from_der(&a.signature).map_err(|_| failed())?;
        return k.verify(&a.text, &s).map_err(|_| failed());
    }
    let alg: &'static dyn sig::VerificationAlgorithm =
        match (oid.as_str(), curve.as_deref(), a.hash_function.as_str()) {
            (RSA_OID, _, "sha256") => &sig::RSA_PKCS1_2048_8192_SHA256,
            (RSA_OID, _, "sha384") => &sig::RSA_PKCS1_2048_8192_SHA384,
            (RSA_OID, _, "sha512") => &sig::RSA_PKCS1_2048_8192_SHA512,
            (EC_OID, Some(P256_OID), "sha256") => &sig::ECDSA_P256_SHA256_ASN1,
            (EC_OID, Some(P384_OID), "sha384") => &sig::ECDSA_P384_SHA384_ASN1,
            _ => return Err("unsupported key / hash in this test host".to_string()),
        };
    sig::UnparsedPublicKey::new(alg, key)
        .verify(&a.text, &a.signature)
        .map_err(|_| "Failed to verify digest. Error code: 0".to_string())
}
