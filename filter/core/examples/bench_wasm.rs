//! Verifications per second per algorithm, for running inside a wasm engine (wasm32-wasip1).
//! See the commands at the top of `filter/core/benches/verify.rs`. Argument: milliseconds per
//! algorithm (default 1000). Timing uses `std::time::Instant`, WASI's monotonic clock.
#![allow(clippy::unwrap_used)]

#[path = "support/verify.rs"]
mod cases;
#[path = "support/measure.rs"]
mod measure;

fn main() {
    let budget = measure::budget_from_args();
    let keys = cases::key_set();
    println!("alg\tverify/s\tus/verify\tparse+select+verify/s");
    for alg in cases::ALGS {
        let token = cases::token(alg);
        let (j, key) = cases::parsed(&keys, &token);
        let verified = measure::measure(budget, || cases::verify(&j, key));
        let full = measure::measure(budget, || {
            cases::parse_select_verify(&keys, &token).unwrap()
        });
        println!(
            "{}\t{:.0}\t{:.1}\t{:.0}",
            alg.name(),
            verified,
            1e6 / verified,
            full
        );
    }
}
