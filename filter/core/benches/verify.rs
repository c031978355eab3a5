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
#![allow(clippy::unwrap_used)]

#[path = "../examples/support/verify.rs"]
mod cases;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgegate::Alg;

fn verify(c: &mut Criterion) {
    let keys = cases::key_set();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    for alg in cases::ALGS {
        let token = cases::token(alg);
        let (j, key) = cases::parsed(&keys, &token);
        cases::verify(&j, key);
        g.bench_function(alg.name(), |b| b.iter(|| cases::verify(&j, key)));
    }
    g.finish();

    // The whole token path: parse (base64, strict JSON header), select, verify.
    let mut g = c.benchmark_group("parse_select_verify");
    g.throughput(Throughput::Elements(1));
    for alg in [Alg::HS256, Alg::RS256, Alg::ES256] {
        let token = cases::token(alg);
        g.bench_function(alg.name(), |b| {
            b.iter(|| cases::parse_select_verify(&keys, &token).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
