//! HS256/384/512 (RFC 7518 §3.2) on `hmac` + `sha2`, with keys pre-keyed at load
//! ([`HmacKey`]) and a constant-time tag comparison (`verify_slice`).

use std::borrow::Cow;

use hmac::Mac;
use jwt_compact::Algorithm;

use super::FixedSignature;
use crate::jwk::HmacKey;

macro_rules! hmac_alg {
    ($name:ident, $jws:literal, $field:ident, $len:literal) => {
        #[doc = concat!("`", $jws, "`.")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl Algorithm for $name {
            type SigningKey = HmacKey;
            type VerifyingKey = HmacKey;
            type Signature = FixedSignature<$len>;

            fn name(&self) -> Cow<'static, str> {
                Cow::Borrowed($jws)
            }

            fn sign(&self, key: &HmacKey, message: &[u8]) -> Self::Signature {
                let tag = key
                    .states
                    .$field
                    .clone()
                    .chain_update(message)
                    .finalize()
                    .into_bytes();
                let mut out = [0u8; $len];
                out.iter_mut().zip(tag.iter()).for_each(|(o, t)| *o = *t);
                FixedSignature(out)
            }

            fn verify_signature(
                &self,
                signature: &Self::Signature,
                key: &HmacKey,
                message: &[u8],
            ) -> bool {
                key.states
                    .$field
                    .clone()
                    .chain_update(message)
                    .verify_slice(&signature.0)
                    .is_ok()
            }
        }
    };
}

hmac_alg!(Hs256, "HS256", hs256, 32);
hmac_alg!(Hs384, "HS384", hs384, 48);
hmac_alg!(Hs512, "HS512", hs512, 64);
