//! Helpers the unit tests of several modules share (the login tests have their own in
//! `login/test_support.rs`).

use std::fmt::Debug;

use crate::error::ConfigError;

/// Where a config was refused: the paths of its errors, in order.
pub(crate) fn error_paths(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(ConfigError::path).collect()
}

/// That none of `shown` (a config section, what it compiles to) prints `secret` in its `Debug`.
pub(crate) fn assert_debug_hides(secret: &str, shown: &[&dyn Debug]) {
    for s in shown {
        assert!(!format!("{s:?}").contains(secret), "{s:?}");
    }
}
