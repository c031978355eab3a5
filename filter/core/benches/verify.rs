//! Verifications per second for each signature algorithm, native and in wasm.
//!
//! Native (criterion; prints time per verification, and "thrpt" = verifications/s):
//!   cd <repo> && cargo bench -p edgegate --bench verify
//!
//! WebAssembly (the same measurement, `filter/core/examples/bench_wasm.rs`, for wasm32-wasip1):
//!   cargo build -p edgegate --example bench_wasm --target wasm32-wasip1 --release
//!   # in V8 (node >= 20), the engine Cloudflare-style workers run:
//!   node filter/core/benches/run_wasm_bench.mjs target/wasm32-wasip1/release/examples/bench_wasm.wasm
//!   # in wasmtime (the host-tests runner; Envoy release builds carry only V8):
//!   cargo run -p host-tests --bin wasi-bench -- target/wasm32-wasip1/release/examples/bench_wasm.wasm
//! (with CARGO_TARGET_DIR set, the .wasm is under $CARGO_TARGET_DIR instead of target/).
//! The example takes an optional argument: milliseconds to spend per algorithm (default 1000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use edgegate_testkit::test_keys;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgegate::backend::{NativeBackend, SignatureBackend};
use edgegate::jwk::KeySet;
use edgegate::{jws, Alg};
use std::hint::black_box;

const ALGS: [Alg; 6] = [
    Alg::HS256,
    Alg::RS256,
    Alg::PS256,
    Alg::ES256,
    Alg::ES384,
    Alg::EdDSA,
];
const PAYLOAD: &str = r#"{"iss":"https://idp.example","sub":"248289761001","aud":"api","exp":4102444800,"iat":1700000000,"scope":"read write"}"#;

fn verify(c: &mut Criterion) {
    let ks = KeySet::parse_jwks(test_keys::jwks_all().as_bytes()).unwrap();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    for alg in ALGS {
        let token = test_keys::token(alg.name(), Some(test_keys::kid_for(alg.name())), PAYLOAD);
        let j = jws::parse(&token, jws::DEFAULT_MAX_TOKEN_BYTES).unwrap();
        let key = &ks.select(j.kid.as_deref(), j.alg).unwrap().key;
        NativeBackend
            .verify(j.alg, key, j.signing_input, &j.signature)
            .unwrap();
        g.bench_function(alg.name(), |b| {
            b.iter(|| {
                NativeBackend
                    .verify(
                        j.alg,
                        key,
                        black_box(j.signing_input),
                        black_box(&j.signature),
                    )
                    .unwrap()
            })
        });
    }
    g.finish();

    // The whole token path: parse (base64, strict JSON header), select, verify.
    let mut g = c.benchmark_group("parse_select_verify");
    g.throughput(Throughput::Elements(1));
    for alg in [Alg::HS256, Alg::RS256, Alg::ES256] {
        let token = test_keys::token(alg.name(), Some(test_keys::kid_for(alg.name())), PAYLOAD);
        g.bench_function(alg.name(), |b| {
            b.iter(|| {
                let j = jws::parse(black_box(&token), jws::DEFAULT_MAX_TOKEN_BYTES).unwrap();
                let key = &ks.select(j.kid.as_deref(), j.alg).unwrap().key;
                NativeBackend
                    .verify(j.alg, key, j.signing_input, &j.signature)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
