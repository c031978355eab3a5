//! Helpers the unit tests of several modules share (the login tests have their own in
//! `login/test_support.rs`).

use std::fmt::Debug;

use crate::error::ConfigError;

/// Where a config was refused: the paths of its errors, in order.
pub(crate) fn error_paths(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(ConfigError::path).collect()
}

/// An `at_hash` that matches no access token (16 zero bytes, base64url).
pub(crate) const WRONG_AT_HASH: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// `claims` with `field` set to `value` (a claim set with one thing wrong).
pub(crate) fn with_claim(
    mut claims: serde_json::Value,
    field: &str,
    value: &serde_json::Value,
) -> serde_json::Value {
    claims[field] = value.clone();
    claims
}

/// That none of `shown` (a config section, what it compiles to) prints `secret` in its `Debug`.
pub(crate) fn assert_debug_hides(secret: &str, shown: &[&dyn Debug]) {
    for s in shown {
        assert!(!format!("{s:?}").contains(secret), "{s:?}");
    }
}
