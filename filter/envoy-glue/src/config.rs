//! Loading the plugin configuration: what both packagings log when they refuse one or accept it
//! with notices. The config is the same JSON in both (a `StringValue` in Envoy's config).

use edgegate::{ConfigErrors, Engine};

/// The error lines of a refused config: every error with its field path.
pub fn refusal_lines(errors: &ConfigErrors) -> Vec<String> {
    errors
        .0
        .iter()
        .map(|e| format!("config refused: {e}"))
        .collect()
}

/// The warning lines of an accepted config (dev mode, risky options). Both packagings serve
/// every section, `login` included.
pub fn notice_lines(engine: &Engine) -> Vec<String> {
    engine.warnings().to_vec()
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
