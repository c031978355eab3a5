//! Helpers shared by the core's integration tests.

use edgegate::cache::TokenCache;
use edgegate::engine::{Engine, Verdict};
use edgegate::extractor::Request;
use edgegate::verifier::NoRemoteKeys;

/// The verdict on a GET of `path` with these headers at `now`, with no remote key sets (a
/// request that needed them would not end in a verdict: the test fails).
pub fn verdict(
    engine: &Engine,
    cache: &mut TokenCache,
    path: &str,
    headers: &[(&str, &str)],
    now: u64,
) -> Verdict {
    let req = Request {
        method: "GET",
        path,
        headers,
    };
    engine
        .decide(&req, &NoRemoteKeys, cache, now)
        .into_verdict()
        .unwrap()
}

/// The `authorization` value that carries `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
