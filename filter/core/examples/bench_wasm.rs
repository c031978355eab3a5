//! Verifications per second per algorithm, for running inside a wasm engine (wasm32-wasip1).
//! See the commands at the top of `filter/core/benches/verify.rs`. Argument: milliseconds per
//! algorithm (default 1000). Timing uses `std::time::Instant`, WASI's monotonic clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/measure.rs"]
mod support;

use edgegate_testkit::test_keys;

use std::hint::black_box;

use std::time::Duration;
use support::measure;

use edgegate::backend::{NativeBackend, SignatureBackend};
use edgegate::jwk::KeySet;
use edgegate::{jws, Alg};

const PAYLOAD: &str = r#"{"iss":"https://idp.example","sub":"248289761001","aud":"api","exp":4102444800,"iat":1700000000,"scope":"read write"}"#;

fn main() {
    let ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let budget = Duration::from_millis(ms);
    let ks = KeySet::parse_jwks(test_keys::jwks_all().as_bytes()).unwrap();
    println!("alg\tverify/s\tus/verify\tparse+select+verify/s");
    for alg in [
        Alg::HS256,
        Alg::RS256,
        Alg::PS256,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ] {
        let token = test_keys::token(alg.name(), Some(test_keys::kid_for(alg.name())), PAYLOAD);
        let j = jws::parse(&token, jws::DEFAULT_MAX_TOKEN_BYTES).unwrap();
        let key = &ks.select(j.kid.as_deref(), j.alg).unwrap().key;
        let verify = measure(budget, || {
            NativeBackend
                .verify(
                    j.alg,
                    key,
                    black_box(j.signing_input),
                    black_box(&j.signature),
                )
                .unwrap()
        });
        let full = measure(budget, || {
            let j = jws::parse(black_box(&token), jws::DEFAULT_MAX_TOKEN_BYTES).unwrap();
            let key = &ks.select(j.kid.as_deref(), j.alg).unwrap().key;
            NativeBackend
                .verify(j.alg, key, j.signing_input, &j.signature)
                .unwrap()
        });
        println!(
            "{}\t{:.0}\t{:.1}\t{:.0}",
            alg.name(),
            verify,
            1e6 / verify,
            full
        );
    }
}
