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

/// Why the native module cannot serve a config the core accepts, if it cannot: `login.device`
/// (device authorization) needs the flow's state store and POST bodies, which the edge worker
/// and the proxy-wasm filter carry out, not the native module yet. Refused at load rather than
/// leaving `/auth/device/...` to the rules, where the routes would silently not exist.
pub fn unsupported_natively(engine: &Engine) -> Option<String> {
    engine.login().and_then(|l| l.device()).map(|_| {
        "config refused: login.device: device authorization (RFC 8628) is served by the edge worker and the Envoy wasm filter, not yet by the native module; \
         leave login.device out of this config or use the wasm filter (see docs/recipes/device-login-for-a-cli.md)"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_device_is_refused_with_its_path() {
        let key = "jwoaIj8MA4uqORbygI3Aqi_UBO4gJmB9oGyzqIjWUPI";
        let config = |device: &str| {
            format!(
                r#"{{"jwt":{{"providers":[{{"name":"op","issuer":"https://idp.example","remote_jwks":{{"jwks_uri":"https://idp.example/jwks"}}}}]}},
                "session":{{"keys":[{{"kid":"s1","secret":"{key}"}}]}},
                "login":{{"provider":"op","client_id":"c","redirect_uri":"https://app.example/auth/callback"{device}}},
                "rules":[]}}"#
            )
        };
        let plain = Engine::from_json(config("").as_bytes()).unwrap();
        assert_eq!(unsupported_natively(&plain), None);
        let device = Engine::from_json(config(r#","device":{}"#).as_bytes()).unwrap();
        assert!(unsupported_natively(&device)
            .unwrap()
            .contains("login.device"));
    }

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
