//! Test support shared by the workspace's tests, benches and examples (a dev-dependency only).
//!
//! - [`python`]: the interpreter with the independent JWT implementations (PyJWT, jwcrypto).
//! - [`test_keys`]: fixed signing keys, their JWKs and token minting (never for production use).
//!
//! It does not depend on `edgegate`, so the core can dev-depend on it (its unit tests use the
//! keys as `crate::backend::test_keys`).

pub mod test_keys;

use std::path::{Path, PathBuf};

/// The workspace root: the nearest directory at or above `start` whose `Cargo.toml` has a
/// `[workspace]` table.
fn workspace_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|toml| toml.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
}

/// The Python the tests run: `$EDGEGATE_PYTHON` when set, else the project's venv
/// (`<workspace root>/.tools/venv/bin/python`, made by `scripts/setup.sh`).
///
/// # Panics
/// When neither is there, with one line saying how to make the venv.
#[allow(clippy::panic)]
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGEGATE_PYTHON") {
        return PathBuf::from(p);
    }
    // The test binary's crate when run by cargo, else this crate: both are in the workspace.
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = workspace_root(&start).unwrap_or(start);
    let venv = root.join(".tools/venv/bin/python");
    if venv.is_file() {
        return venv;
    }
    panic!(
        "no Python venv at {}: run scripts/setup.sh (or set EDGEGATE_PYTHON)",
        venv.display()
    );
}
