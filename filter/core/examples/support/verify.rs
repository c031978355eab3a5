//! The signature verifications measured natively (`benches/verify.rs`, criterion) and in wasm
//! (`bench_wasm`): the same tokens, keys and steps, so the two sets of numbers compare.

use edgegate::backend::{NativeBackend, SignatureBackend};
use edgegate::jwk::{KeySet, PublicKey};
use edgegate::jws::{self, CompactJws};
use edgegate::{Alg, Error};
use edgegate_testkit::test_keys;
use std::hint::black_box;

/// The algorithms measured, one per key family and padding.
pub const ALGS: [Alg; 6] = [
    Alg::HS256,
    Alg::RS256,
    Alg::PS256,
    Alg::ES256,
    Alg::ES384,
    Alg::EdDSA,
];

const PAYLOAD: &str = r#"{"iss":"https://idp.example","sub":"248289761001","aud":"api","exp":4102444800,"iat":1700000000,"scope":"read write"}"#;

/// The test keys of every family (`test_keys::jwks_all`).
pub fn key_set() -> KeySet {
    KeySet::parse_jwks(test_keys::jwks_all().as_bytes()).unwrap()
}

/// A token signed with the test key for `alg`, naming it by kid.
pub fn token(alg: Alg) -> String {
    test_keys::token(alg.name(), Some(test_keys::kid_for(alg.name())), PAYLOAD)
}

/// `token` parsed, and the key of `keys` it selects: what [`verify`] needs.
pub fn parsed<'a>(keys: &'a KeySet, token: &'a str) -> (CompactJws<'a>, &'a PublicKey) {
    let j = jws::parse(token, jws::DEFAULT_MAX_TOKEN_BYTES).unwrap();
    let key = &keys.select(j.kid.as_deref(), j.alg).unwrap().key;
    (j, key)
}

/// The signature check alone, on a parsed token and its key.
pub fn verify(j: &CompactJws<'_>, key: &PublicKey) {
    NativeBackend
        .verify(
            j.alg,
            key,
            black_box(j.signing_input),
            black_box(&j.signature),
        )
        .unwrap()
}

/// The whole token path: parse (base64, strict JSON header), select the key, verify.
pub fn parse_select_verify(keys: &KeySet, token: &str) -> Result<(), Error> {
    let j = jws::parse(black_box(token), jws::DEFAULT_MAX_TOKEN_BYTES)?;
    let key = &keys.select(j.kid.as_deref(), j.alg)?.key;
    NativeBackend.verify(j.alg, key, j.signing_input, &j.signature)
}
