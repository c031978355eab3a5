//! ES256 (P-256, SHA-256), ES384 (P-384, SHA-384) and ES512 (P-521, SHA-512) on RustCrypto
//! `p256` / `p384` / `p521`
//! (RFC 7518 §3.4: raw `r || s` signatures). Keys are validated points, parsed at load.

use std::borrow::Cow;

use jwt_compact::{Algorithm, AlgorithmSignature};
use p256::ecdsa::signature::{Signer as _, Verifier as _};

use crate::jwk::{P256Key, P384Key, P521Key};

macro_rules! ecdsa_alg {
    ($name:ident, $sig:ident, $jws:literal, $crate_:ident, $key:ty, $len:literal) => {
        #[doc = concat!("A `", $jws, "` signature: `r || s`, ", stringify!($len), " bytes, 0 < r, s < n.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $sig(pub $crate_::ecdsa::Signature);

        impl AlgorithmSignature for $sig {
            const LENGTH: Option<std::num::NonZeroUsize> = std::num::NonZeroUsize::new($len);

            fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
                $crate_::ecdsa::Signature::from_slice(slice)
                    .map($sig)
                    .map_err(|_| anyhow::Error::msg("not a raw r || s signature"))
            }

            fn as_bytes(&self) -> Cow<'_, [u8]> {
                Cow::Owned(self.0.to_bytes().to_vec())
            }
        }

        #[doc = concat!("`", $jws, "`.")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl Algorithm for $name {
            type SigningKey = $crate_::ecdsa::SigningKey;
            type VerifyingKey = $key;
            type Signature = $sig;

            fn name(&self) -> Cow<'static, str> {
                Cow::Borrowed($jws)
            }

            /// Deterministic (RFC 6979) signing; used by tests.
            fn sign(&self, key: &Self::SigningKey, message: &[u8]) -> $sig {
                $sig(key.sign(message))
            }

            fn verify_signature(&self, signature: &$sig, key: &$key, message: &[u8]) -> bool {
                key.key.verify(message, &signature.0).is_ok()
            }
        }
    };
}

ecdsa_alg!(Es256, Es256Signature, "ES256", p256, P256Key, 64);
ecdsa_alg!(Es384, Es384Signature, "ES384", p384, P384Key, 96);
ecdsa_alg!(Es512, Es512Signature, "ES512", p521, P521Key, 132);
