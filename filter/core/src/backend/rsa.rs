//! RS256/384/512 (RSASSA-PKCS1-v1_5) and PS256/384/512 (RSASSA-PSS, MGF1 with the same hash,
//! salt length = hash length, RFC 7518 §3.5) on ring. Moduli of 2048..=8192 bits.
//!
//! ring re-reads the modulus on each verification (it has no public pre-parsed RSA verifying
//! key); what we keep pre-parsed is the decoded, checked, minimal big-endian `n` and `e`.

use std::borrow::Cow;

use jwt_compact::{Algorithm, AlgorithmSignature};
use ring::signature::{self as rs, RsaParameters, RsaPublicKeyComponents};

use super::VerifyOnly;
use crate::jwk::RsaKey;

/// An RSA signature: as long as the key's modulus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaSignature(pub Vec<u8>);

impl AlgorithmSignature for RsaSignature {
    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Ok(RsaSignature(slice.to_vec()))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

fn verify(
    params: &'static RsaParameters,
    sig: &RsaSignature,
    key: &RsaKey,
    message: &[u8],
) -> bool {
    RsaPublicKeyComponents {
        n: key.modulus(),
        e: key.exponent(),
    }
    .verify(params, message, &sig.0)
    .is_ok()
}

macro_rules! rsa_alg {
    ($name:ident, $jws:literal, $params:expr) => {
        #[doc = concat!("`", $jws, "` (verification only).")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl Algorithm for $name {
            type SigningKey = VerifyOnly;
            type VerifyingKey = RsaKey;
            type Signature = RsaSignature;

            fn name(&self) -> Cow<'static, str> {
                Cow::Borrowed($jws)
            }

            fn sign(&self, key: &VerifyOnly, _message: &[u8]) -> Self::Signature {
                match *key {}
            }

            fn verify_signature(
                &self,
                signature: &RsaSignature,
                key: &RsaKey,
                message: &[u8],
            ) -> bool {
                verify($params, signature, key, message)
            }
        }
    };
}

rsa_alg!(Rs256, "RS256", &rs::RSA_PKCS1_2048_8192_SHA256);
rsa_alg!(Rs384, "RS384", &rs::RSA_PKCS1_2048_8192_SHA384);
rsa_alg!(Rs512, "RS512", &rs::RSA_PKCS1_2048_8192_SHA512);
rsa_alg!(Ps256, "PS256", &rs::RSA_PSS_2048_8192_SHA256);
rsa_alg!(Ps384, "PS384", &rs::RSA_PSS_2048_8192_SHA384);
rsa_alg!(Ps512, "PS512", &rs::RSA_PSS_2048_8192_SHA512);
