//! Helpers the unit tests of several modules share (the login tests have their own in
//! `login/test_support.rs`).

use crate::error::ConfigError;

/// Where a config was refused: the paths of its errors, in order.
pub(crate) fn error_paths(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(ConfigError::path).collect()
}
