//! Loading the plugin configuration: what both packagings log when they refuse one or accept it
//! with notices. The config is the same JSON in both (a `StringValue` in Envoy's config).

use edgegate::{ConfigErrors, Engine};

/// Logged at load by a packaging that does not serve the `login` section (the native module,
/// for now).
pub const LOGIN_IGNORED: &str = "login (OIDC /auth/login, callback, logout, /auth/me) is not served by the native module yet; it ignores it (sessions set by the proxy-wasm filter or the edge worker are still accepted); load the proxy-wasm filter for login";

/// The error lines of a refused config: every error with its field path.
pub fn refusal_lines(errors: &ConfigErrors) -> Vec<String> {
    errors
        .0
        .iter()
        .map(|e| format!("config refused: {e}"))
        .collect()
}

/// The warning lines of an accepted config (dev mode, risky options, an ignored `login` when
/// the packaging does not `serve_login`).
pub fn notice_lines(engine: &Engine, serve_login: bool) -> Vec<String> {
    let mut lines: Vec<String> = engine.warnings().to_vec();
    if engine.login().is_some() && !serve_login {
        lines.push(LOGIN_IGNORED.to_string());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_each_field() {
        let errors = Engine::from_json(br#"{"rules": 5}"#).unwrap_err();
        let lines = refusal_lines(&errors);
        assert!(
            lines.first().unwrap().starts_with("config refused: rules"),
            "{lines:?}"
        );
        assert_eq!(lines.len(), errors.0.len());
    }
}
