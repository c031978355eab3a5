//! Shared by the benchmark examples (`bench_wasm`, `bench_decide`), natively and as wasm.

use std::time::{Duration, Instant};

/// The time to spend per case: the first argument, in milliseconds (default 1000).
pub fn budget_from_args() -> Duration {
    let ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

/// Runs `f` in batches until `budget` has passed; returns operations per second.
pub fn measure(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut batch: u64 = 1;
    while start.elapsed() < budget {
        for _ in 0..batch {
            f();
        }
        n += batch;
        if batch < 1024 {
            batch *= 2;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}
