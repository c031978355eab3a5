//! EdDSA with Ed25519 (RFC 8037) on ring.

use std::borrow::Cow;

use jwt_compact::Algorithm;
use ring::signature::{UnparsedPublicKey, ED25519};

use super::{FixedSignature, VerifyOnly};
use crate::jwk::Ed25519Key;

/// `EdDSA` over Ed25519 (verification only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ed25519;

impl Algorithm for Ed25519 {
    type SigningKey = VerifyOnly;
    type VerifyingKey = Ed25519Key;
    type Signature = FixedSignature<64>;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("EdDSA")
    }

    fn sign(&self, key: &VerifyOnly, _message: &[u8]) -> Self::Signature {
        match *key {}
    }

    fn verify_signature(
        &self,
        signature: &Self::Signature,
        key: &Ed25519Key,
        message: &[u8],
    ) -> bool {
        UnparsedPublicKey::new(&ED25519, key.as_bytes())
            .verify(message, &signature.0)
            .is_ok()
    }
}
