//! The `login` config section and its compilation into [`Login`]: the provider, the client,
//! the routes, the refresh-cookie keys; checked against the session section and the providers.

use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use serde::{Deserialize, Serialize};

use super::device_config::DeviceConfig;
use super::Login;
use crate::error::ConfigError;
use crate::keyring::{KeyRing, Secret};
use crate::session::SessionConfig;
use crate::verifier::{IssuerRule, ProviderConfig};

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// One AES-256-GCM key for the refresh cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshKeyConfig {
    /// Key id, written in front of every cookie this key encrypts. 1–64 characters of
    /// `A-Z a-z 0-9 _ -`, unique within the list.
    pub kid: String,
    /// The key: unpadded base64url of exactly 32 random bytes
    /// (`openssl rand 32 | basenc --base64url | tr -d =`).
    pub secret: Secret,
}

/// The `login` section: OpenID Connect login (authorization code flow with PKCE) through one
/// of the `jwt.providers`. Needs a `session` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// The `name` of a `jwt.providers[]` entry. Its `issuer` is the OpenID Provider (discovery
    /// at `<issuer>/.well-known/openid-configuration`, whose `issuer` must match exactly); its
    /// `algorithms`, keys (`remote_jwks`, `jwks`) and `claims`/preset apply to ID tokens.
    pub provider: String,
    /// The provider's discovery document. Default `<issuer>/.well-known/openid-configuration`.
    /// Required when the issuer is a `{tenantid}` template (Entra ID multi-tenant:
    /// `https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration`,
    /// or `common` to admit personal Microsoft accounts too); its `issuer` must still be exactly
    /// the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret. Optional here: a host binding (the worker's `OIDC_CLIENT_SECRET`)
    /// overrides it, and keeps it out of the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub token_endpoint_auth_method: TokenAuthMethod,
    /// The absolute callback URL registered at the provider; its path is the callback route.
    /// `https://`, or `http://` on localhost only.
    pub redirect_uri: String,
    /// Scopes requested. Default `["openid", "email", "profile"]`; must contain `openid`. Add
    /// `offline_access` for refresh tokens at providers that want it (the login then asks for
    /// `prompt=consent`, as OIDC Core 11 requires).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `GET <login_path>?rd=<return URL>` starts a login. Default `/auth/login`.
    #[serde(default = "default_login_path")]
    pub login_path: String,
    /// `GET` or `POST` ends the session (and at the provider, when it has an
    /// `end_session_endpoint`). Default `/auth/logout`.
    #[serde(default = "default_logout_path")]
    pub logout_path: String,
    /// `GET` answers the caller's identity as JSON. Default `/auth/me`.
    #[serde(default = "default_me_path")]
    pub me_path: String,
    /// Where the provider sends the user after logout (must be registered there). Without an
    /// `end_session_endpoint` the user goes here directly; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_logout_redirect_uri: Option<String>,
    /// AES-256-GCM keys for the refresh-token cookie: the first encrypts, all decrypt
    /// (rotation). Empty (default): refresh tokens are dropped and sessions end at their
    /// lifetime.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh_keys: Vec<RefreshKeyConfig>,
    /// Envoy only: the cluster that discovery and token requests go to. Default: a cluster
    /// named after each URL's authority as the URL writes it (`idp.example.com`,
    /// `127.0.0.1:10002`), as for `remote_jwks`. The worker reaches the provider with `fetch`
    /// and ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Device authorization (RFC 8628) brokered by edgegate: `login.device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceConfig>,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

crate::config::string_defaults! {
    default_login_path => "/auth/login",
    default_logout_path => "/auth/logout",
    default_me_path => "/auth/me",
}

pub(super) fn valid_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && p.len() <= 256
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b';' | b'%' | b'\\'))
}

/// An absolute `https://` URL (or `http://` on localhost) without a fragment.
pub(super) fn check_endpoint(u: &str) -> Result<url::Url, &'static str> {
    let url = url::Url::parse(u).map_err(|_| "not an absolute URL")?;
    match url.scheme() {
        "https" => {}
        "http" if url.host().is_some_and(crate::loopback::is_loopback_host) => {}
        "http" => return Err("must be https:// (http:// only for localhost)"),
        _ => return Err("must be an https:// URL"),
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("must have no fragment and no user info");
    }
    Ok(url)
}

fn valid_kid(kid: &str) -> bool {
    crate::syntax::is_short_name(kid, b"_-")
}

impl LoginConfig {
    /// Validates the section against the session section and the providers. Paths are relative
    /// to `login` (except a missing `session`, reported by the config's global checks).
    pub fn compile(
        &self,
        session: Option<&SessionConfig>,
        providers: &[ProviderConfig],
    ) -> Result<Login, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let (issuer, rule) = self.issuer(providers, &mut errors);
        let discovery = self.discovery(issuer.as_deref(), rule.as_ref(), &mut errors);
        self.check_client(&mut errors);
        let callback_path = self.callback_path(&mut errors);
        self.check_scopes(&mut errors);
        self.check_routes(callback_path.as_deref(), &mut errors);
        self.check_post_logout(&mut errors);
        if self.cluster.as_deref().is_some_and(|c| c.trim().is_empty()) {
            errors.push(ConfigError::new(
                "cluster",
                "must name an Envoy cluster, or be left out (a cluster per URL authority)",
            ));
        }
        let refresh_keys = self.refresh_ciphers(&mut errors);
        let device = self.device.as_ref().and_then(|d| {
            let origin = check_endpoint(&self.redirect_uri)
                .ok()
                .map(|u| u.origin().ascii_serialization());
            let mut taken = vec![
                self.login_path.as_str(),
                self.logout_path.as_str(),
                self.me_path.as_str(),
            ];
            taken.extend(callback_path.as_deref());
            d.compile(
                origin.as_deref(),
                &taken,
                session.map(|s| s.lifetime_seconds),
                &mut errors,
            )
        });
        // The attempt cookie is signed with the session keys (audience `edgegate-login`).
        let ring = session.and_then(|s| KeyRing::compile(&s.keys).ok());
        match (issuer, callback_path, ring, rule, discovery) {
            (Some(issuer), Some(callback_path), Some(ring), Some(issuer_rule), Some(discovery))
                if errors.is_empty() =>
            {
                Ok(Login {
                    provider: self.provider.clone(),
                    issuer,
                    issuer_rule,
                    discovery,
                    client_id: self.client_id.clone(),
                    client_secret: self.client_secret.clone(),
                    auth: self.token_endpoint_auth_method,
                    redirect_uri: self.redirect_uri.clone(),
                    callback_path,
                    scope: self.scopes.join(" "),
                    offline_access: self.scopes.iter().any(|s| s == "offline_access"),
                    login_path: self.login_path.clone(),
                    logout_path: self.logout_path.clone(),
                    me_path: self.me_path.clone(),
                    post_logout: self.post_logout_redirect_uri.clone(),
                    refresh_keys,
                    ring,
                    cluster: self.cluster.clone(),
                    device,
                    refresh_cookie: session
                        .map(|s| format!("{}_refresh", s.cookie_name))
                        .unwrap_or_default(),
                    cookie_path: session.map(|s| s.path.clone()).unwrap_or_default(),
                    cookie_domain: session.and_then(|s| {
                        s.domain
                            .as_ref()
                            .map(|d| d.trim_start_matches('.').to_ascii_lowercase())
                    }),
                })
            }
            _ => Err(errors),
        }
    }

    /// The provider's issuer and issuer rule (its `jwt.providers[]` entry).
    fn issuer(
        &self,
        providers: &[ProviderConfig],
        errors: &mut Vec<ConfigError>,
    ) -> (Option<String>, Option<IssuerRule>) {
        let mut rule = None;
        let issuer = match providers.iter().find(|p| p.name == self.provider) {
            // A provider without keys (or a bad issuer template) is reported by Provider::compile.
            Some(p) => {
                rule = IssuerRule::compile(&p.issuer, &p.allowed_tenants).ok();
                Some(p.issuer.clone())
            }
            None => {
                let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
                errors.push(ConfigError::new(
                    "provider",
                    format!(
                        "{:?} names no jwt.providers[] entry (configured: {names:?}); add the OpenID Provider there with its issuer and remote_jwks",
                        self.provider
                    ),
                ));
                None
            }
        };
        if let Some(iss) = &issuer {
            if let Err(m) = check_endpoint(iss) {
                errors.push(ConfigError::new(
                    "provider",
                    format!("the provider's issuer {m}; discovery needs <issuer>/.well-known/openid-configuration"),
                ));
            }
        }
        (issuer, rule)
    }

    /// `discovery_url`, or the issuer's `.well-known/openid-configuration`.
    fn discovery(
        &self,
        issuer: Option<&str>,
        rule: Option<&IssuerRule>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<String> {
        let template = rule.is_some_and(IssuerRule::is_template);
        match (&self.discovery_url, issuer) {
            (Some(u), _) => match check_endpoint(u) {
                Ok(_) => Some(u.clone()),
                Err(m) => {
                    errors.push(ConfigError::new(
                        "discovery_url",
                        format!("{m}; use the provider's .well-known/openid-configuration URL"),
                    ));
                    None
                }
            },
            (None, Some(_)) if template => {
                errors.push(ConfigError::new(
                    "discovery_url",
                    "the provider's issuer is a {tenantid} template, which has no discovery document of its own; set discovery_url (Entra ID: https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration, or common/ to admit personal accounts)",
                ));
                None
            }
            (None, Some(iss)) => Some(format!(
                "{}/.well-known/openid-configuration",
                iss.trim_end_matches('/')
            )),
            (None, None) => None,
        }
    }

    fn check_client(&self, errors: &mut Vec<ConfigError>) {
        if self.client_id.is_empty()
            || self.client_id.len() > 255
            || self.client_id.chars().any(char::is_control)
        {
            errors.push(ConfigError::new(
                "client_id",
                "must be the client id registered at the provider (1-255 characters, no control characters)",
            ));
        }
        if let Some(s) = &self.client_secret {
            if s.expose().is_empty() || s.expose().chars().any(char::is_control) {
                errors.push(ConfigError::new(
                    "client_secret",
                    "must be non-empty without control characters; or leave it out and bind OIDC_CLIENT_SECRET",
                ));
            }
        }
    }

    /// The callback route: the path of `redirect_uri`.
    fn callback_path(&self, errors: &mut Vec<ConfigError>) -> Option<String> {
        match check_endpoint(&self.redirect_uri) {
            Ok(u) if u.query().is_none() => Some(u.path().to_string()),
            Ok(_) => {
                errors.push(ConfigError::new(
                    "redirect_uri",
                    "must have no query; use e.g. https://app.example.com/auth/callback",
                ));
                None
            }
            Err(m) => {
                errors.push(ConfigError::new(
                    "redirect_uri",
                    format!("{m}; use the absolute callback URL registered at the provider, e.g. https://app.example.com/auth/callback"),
                ));
                None
            }
        }
    }

    fn check_scopes(&self, errors: &mut Vec<ConfigError>) {
        if !self.scopes.iter().any(|s| s == "openid") {
            errors.push(ConfigError::new(
                "scopes",
                "must contain \"openid\" (this is an OpenID Connect login)",
            ));
        }
        for (i, s) in self.scopes.iter().enumerate() {
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                errors.push(ConfigError::new(
                    format!("scopes[{i}]"),
                    "a scope is printable ASCII without spaces, quotes or backslashes",
                ));
            }
        }
    }

    /// Every route path well-formed, and no two routes on one path.
    fn check_routes(&self, callback_path: Option<&str>, errors: &mut Vec<ConfigError>) {
        let mut paths: Vec<(&str, &str)> = Vec::new();
        for (field, p) in [
            ("login_path", &self.login_path),
            ("logout_path", &self.logout_path),
            ("me_path", &self.me_path),
        ] {
            if !valid_path(p) {
                errors.push(ConfigError::new(
                    field,
                    "a path starts with `/` and has no `?`, `#`, `;`, `%`, `\\` or spaces (e.g. /auth/login)",
                ));
            }
            paths.push((field, p));
        }
        if let Some(cb) = callback_path {
            paths.push(("redirect_uri", cb));
        }
        for (i, (field, p)) in paths.iter().enumerate() {
            if paths.iter().take(i).any(|(_, q)| q == p) {
                errors.push(ConfigError::new(
                    *field,
                    format!("{p:?} is used by two login routes; give each its own path"),
                ));
            }
        }
    }

    fn check_post_logout(&self, errors: &mut Vec<ConfigError>) {
        if let Some(u) = &self.post_logout_redirect_uri {
            if !u.starts_with('/') || u.starts_with("//") {
                if let Err(m) = check_endpoint(u) {
                    errors.push(ConfigError::new(
                        "post_logout_redirect_uri",
                        format!("{m}; use the absolute URL registered at the provider"),
                    ));
                }
            }
        }
    }

    /// The refresh-cookie ciphers, by kid, in the configured order.
    fn refresh_ciphers(&self, errors: &mut Vec<ConfigError>) -> Vec<(String, Aes256Gcm)> {
        let mut refresh_keys = Vec::new();
        for (i, k) in self.refresh_keys.iter().enumerate() {
            let path = format!("refresh_keys[{i}]");
            if !valid_kid(&k.kid) {
                errors.push(ConfigError::new(
                    format!("{path}.kid"),
                    "1-64 characters of A-Z a-z 0-9 _ -",
                ));
            }
            if self.refresh_keys.iter().take(i).any(|o| o.kid == k.kid) {
                errors.push(ConfigError::new(
                    format!("{path}.kid"),
                    format!("{:?} is used twice; every key needs its own kid", k.kid),
                ));
            }
            match k.secret.decode_base64url(&format!("{path}.secret"), 32) {
                Ok(bytes) if bytes.len() == 32 => match Aes256Gcm::new_from_slice(&bytes) {
                    Ok(c) => refresh_keys.push((k.kid.clone(), c)),
                    Err(_) => errors.push(ConfigError::new(
                        format!("{path}.secret"),
                        "not a usable AES-256 key",
                    )),
                },
                Ok(bytes) => errors.push(ConfigError::new(
                    format!("{path}.secret"),
                    format!(
                        "decodes to {} bytes; AES-256-GCM needs exactly 32 (openssl rand 32 | basenc --base64url | tr -d =)",
                        bytes.len()
                    ),
                )),
                Err(e) => errors.push(e),
            }
        }
        refresh_keys
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::b64;
    use crate::config::Config;
    use serde_json::{json, Value};

    #[test]
    fn config_refusals_name_the_field() {
        let mut v = config_value();
        v.as_object_mut().unwrap().remove("session");
        assert!(
            paths(&v).contains(&"session".to_string()),
            "{:?}",
            paths(&v)
        );

        let cases: Vec<(&str, Value, &str)> = vec![
            ("provider", json!("nope"), "login.provider"),
            ("client_id", json!(""), "login.client_id"),
            ("client_secret", json!(""), "login.client_secret"),
            (
                "redirect_uri",
                json!("http://app.example.com/cb"),
                "login.redirect_uri",
            ),
            (
                "redirect_uri",
                json!("/auth/callback"),
                "login.redirect_uri",
            ),
            (
                "redirect_uri",
                json!("https://app.example.com/cb?x=1"),
                "login.redirect_uri",
            ),
            ("scopes", json!(["email"]), "login.scopes"),
            ("scopes", json!(["openid", "a b"]), "login.scopes[1]"),
            ("login_path", json!("auth/login"), "login.login_path"),
            ("me_path", json!("/auth/callback"), "login.redirect_uri"),
            ("logout_path", json!("/auth/login"), "login.logout_path"),
            (
                "post_logout_redirect_uri",
                json!("http://evil.example/"),
                "login.post_logout_redirect_uri",
            ),
            (
                "refresh_keys",
                json!([{"kid": "r1", "secret": b64::encode([1u8; 48])}]),
                "login.refresh_keys[0].secret",
            ),
            (
                "refresh_keys",
                json!([{"kid": "r1", "secret": "short"}]),
                "login.refresh_keys[0].secret",
            ),
            (
                "refresh_keys",
                json!([{"kid": "r 1", "secret": key(1)}]),
                "login.refresh_keys[0].kid",
            ),
            (
                "refresh_keys",
                json!([{"kid": "r1", "secret": key(1)}, {"kid": "r1", "secret": key(2)}]),
                "login.refresh_keys[1].kid",
            ),
            (
                "token_endpoint_auth_method",
                json!("private_key_jwt"),
                "login.token_endpoint_auth_method",
            ),
            ("colour", json!("red"), "login.colour"),
        ];
        for (field, value, path) in cases {
            let mut v = config_value();
            v["login"][field] = value.clone();
            let got = paths(&v);
            assert!(
                got.iter().any(|p| p == path),
                "{field}={value}: expected {path}, got {got:?}"
            );
        }
        // A secret is never repeated in an error.
        let mut v = config_value();
        v["login"]["refresh_keys"] =
            json!([{"kid": "r1", "secret": "c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0"}]);
        let msgs: Vec<String> = engine_from(&v)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(msgs.iter().all(|m| !m.contains("c2VjcmV0")), "{msgs:?}");
        // localhost may use http (tests, development)
        let mut v = config_value();
        v["login"]["redirect_uri"] = json!("http://127.0.0.1:8787/auth/callback");
        assert!(engine_from(&v).is_ok());
        // the parsed config round-trips through the published shape
        let cfg = Config::from_json(config_value().to_string().as_bytes()).unwrap();
        assert_eq!(
            cfg.login.unwrap().token_endpoint_auth_method,
            TokenAuthMethod::ClientSecretBasic
        );
    }

    #[test]
    fn a_magic_link_path_may_not_take_a_login_or_device_route() {
        for (path, field) in [
            ("/auth/callback", "login.redirect_uri"),
            ("/auth/login", "login.login_path"),
            ("/auth/me", "login.me_path"),
            ("/auth/device", "login.device.path"),
            ("/auth/device/token", "login.device.path"),
        ] {
            let mut v = config_value();
            v["login"]["device"] = json!({});
            v["magic_links"] = json!({"keys": [{"kid": "m1", "secret": key(7)}], "path": path});
            let msgs: Vec<String> = engine_from(&v)
                .unwrap_err()
                .iter()
                .map(|e| e.to_string())
                .collect();
            assert!(
                msgs.iter()
                    .any(|m| m.starts_with("magic_links.path") && m.contains(field)),
                "{path}: {msgs:?}"
            );
        }
        let mut v = config_value();
        v["login"]["device"] = json!({});
        v["magic_links"] =
            json!({"keys": [{"kid": "m1", "secret": key(7)}], "path": "/auth/devices"});
        assert!(engine_from(&v).is_ok());
    }

    #[test]
    fn multi_tenant_issuer_config() {
        let e = engine_from(&multi_tenant(json!([TENANT_A]))).unwrap();
        assert!(e.warnings().is_empty(), "{:?}", e.warnings());
        assert_eq!(e.login().unwrap().discovery_url(), ORGS_DISCOVERY);
        // "*" is accepted, loudly
        let any = engine_from(&multi_tenant(json!(["*"]))).unwrap();
        assert!(
            any.warnings().iter().any(|w| w.contains("EVERY tenant")),
            "{:?}",
            any.warnings()
        );
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "jwt.providers[0].allowed_tenants"),
            (json!(["*", TENANT_A]), "jwt.providers[0].allowed_tenants"),
            (json!(["a/b"]), "jwt.providers[0].allowed_tenants[0]"),
            (json!([""]), "jwt.providers[0].allowed_tenants[0]"),
        ];
        for (tenants, path) in cases {
            let got = paths(&multi_tenant(tenants.clone()));
            assert!(got.iter().any(|p| p == path), "{tenants}: {got:?}");
        }
        // the template needs an explicit discovery URL
        let mut v = multi_tenant(json!([TENANT_A]));
        v["login"].as_object_mut().unwrap().remove("discovery_url");
        assert!(paths(&v).contains(&"login.discovery_url".to_string()));
        let mut v = multi_tenant(json!([TENANT_A]));
        v["login"]["discovery_url"] = json!("http://login.microsoftonline.com/x");
        assert!(paths(&v).contains(&"login.discovery_url".to_string()));
        // allowed_tenants without a template; two placeholders; other braces
        let mut v = config_value();
        v["jwt"]["providers"][0]["allowed_tenants"] = json!([TENANT_A]);
        assert!(paths(&v).contains(&"jwt.providers[0].allowed_tenants".to_string()));
        for bad in [
            "https://x.example/{tenantid}/{tenantid}",
            "https://x.example/{tenant}/v2.0",
        ] {
            let mut v = multi_tenant(json!([TENANT_A]));
            v["jwt"]["providers"][0]["issuer"] = json!(bad);
            assert!(
                paths(&v).contains(&"jwt.providers[0].issuer".to_string()),
                "{bad}"
            );
        }
        // a template has no discovery document for its keys
        let mut v = multi_tenant(json!([TENANT_A]));
        v["jwt"]["providers"][0]["algorithms"] = json!(["RS256"]);
        v["jwt"]["providers"][0]
            .as_object_mut()
            .unwrap()
            .remove("shared_secrets");
        v["jwt"]["providers"][0]["remote_jwks"] = json!({"oidc_issuer": TEMPLATE});
        assert!(paths(&v).contains(&"jwt.providers[0].remote_jwks.oidc_issuer".to_string()));
    }
}
