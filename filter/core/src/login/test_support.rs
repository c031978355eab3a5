//! Fixtures the login tests share: a config with a provider, a session and a login section,
//! the engine it compiles to, a discovery document, multi-tenant (Entra ID) variants, and the
//! cookies of a fresh login.

use serde_json::{json, Value};

use std::sync::LazyLock;

use super::{Discovery, Login};
use crate::b64;
use crate::engine::Engine;
use crate::error::{ConfigError, Error};
use crate::identity::{CredentialKind, Identity};
use crate::oidc::LoginStart;
use crate::session::Sessions;

pub(super) const NOW: u64 = 1_700_000_000;

pub(super) const SESSION_KEY: &str = "jwoaIj8MA4uqORbygI3Aqi_UBO4gJmB9oGyzqIjWUPI";

pub(super) const IDP_SECRET: &str = "N6DNzRHwFWHzTbEbCwlpezlWIlf8Kvn1o1oZe_GowmY";

pub(super) fn key(byte: u8) -> String {
    b64::encode([byte; 32])
}

pub(super) fn config_value() -> Value {
    json!({
        "jwt": {"providers": [{
            "name": "op", "issuer": "https://idp.example", "audiences": ["edge"],
            "algorithms": ["HS256"],
            "shared_secrets": [{"kid": "k1", "secret": IDP_SECRET}],
            "claims": {"roles": ["roles"]}
        }]},
        "session": {"keys": [{"kid": "s1", "secret": SESSION_KEY}], "lifetime_seconds": 400},
        "login": {
            "provider": "op",
            "client_id": "edge",
            "client_secret": "s:cret/+",
            "redirect_uri": "https://app.example.com/auth/callback",
            "scopes": ["openid", "email", "offline_access"],
            "post_logout_redirect_uri": "https://app.example.com/bye",
            "refresh_keys": [{"kid": "r2", "secret": key(2)}, {"kid": "r1", "secret": key(1)}]
        }
    })
}

pub(super) fn engine_from(v: &Value) -> Result<Engine, Vec<ConfigError>> {
    Engine::from_json(v.to_string().as_bytes()).map_err(|e| e.0)
}

pub(super) fn engine() -> Engine {
    engine_from(&config_value()).unwrap()
}

/// The engine of `config_value()`, compiled once for all the tests, and its login section.
pub(super) fn engine_and_login() -> (&'static Engine, &'static Login) {
    static ENGINE: LazyLock<Engine> = LazyLock::new(engine);
    (&ENGINE, ENGINE.login().unwrap())
}

pub(super) fn paths(v: &Value) -> Vec<String> {
    engine_from(v)
        .unwrap_err()
        .iter()
        .map(|e| e.path().to_string())
        .collect()
}

/// Starts a login on `e` at `NOW`, with the query `query` (`rd=…`) and 64 random bytes `seed`.
/// The shared engine and login, with a login started for `query` with state seed `seed`.
pub(super) fn started_login(
    query: &str,
    seed: u8,
) -> (&'static Engine, &'static Login, LoginStart) {
    let (e, l) = engine_and_login();
    (e, l, start_login(e, query, seed).unwrap())
}

pub(super) fn start_login(e: &Engine, query: &str, seed: u8) -> Result<LoginStart, Error> {
    e.login()
        .unwrap()
        .start(&disco(), e.redirects(), query, &[seed; 64], NOW)
}

pub(super) fn disco() -> Discovery {
    Discovery {
        authorization_endpoint: "https://idp.example/auth".into(),
        token_endpoint: "https://idp.example/token".into(),
        end_session_endpoint: Some("https://idp.example/logout".into()),
        iss_parameter_supported: false,
    }
}

pub(super) const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

pub(super) const TENANT_A: &str = "3c4b8f1e-5d2a-4e7b-9f61-0a2b3c4d5e6f";

pub(super) const TENANT_B: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

pub(super) const ORGS_DISCOVERY: &str =
    "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration";

pub(super) fn entra_issuer(tenant: &str) -> String {
    TEMPLATE.replace("{tenantid}", tenant)
}

/// A multi-tenant (Entra ID `organizations`) provider allowing `tenants`.
pub(super) fn multi_tenant(tenants: Value) -> Value {
    let mut v = config_value();
    v["jwt"]["providers"][0]["issuer"] = json!(TEMPLATE);
    v["jwt"]["providers"][0]["allowed_tenants"] = tenants;
    v["login"]["discovery_url"] = json!(ORGS_DISCOVERY);
    v
}

pub(super) fn sessions_of(e: &Engine) -> &Sessions {
    e.sessions().unwrap()
}

/// The shared engine, its login and its sessions.
pub(super) fn login_and_sessions() -> (&'static Engine, &'static Login, &'static Sessions) {
    let (e, l) = engine_and_login();
    (e, l, sessions_of(e))
}

pub(super) fn oidc_identity() -> Identity {
    let mut id = Identity::new("alice", CredentialKind::Jwt, "op");
    id.roles = vec!["admin".into()];
    id
}

/// The cookies of a fresh login at `at`, as a `Cookie` header.
pub(super) fn logged_in(e: &Engine, at: u64, with_refresh: bool) -> String {
    let l = e.login().unwrap();
    let rt = with_refresh.then_some("rt-1");
    let set = l
        .establish(
            sessions_of(e),
            &oidc_identity(),
            rt,
            Some("id.tok.en"),
            &[3; 12],
            at,
        )
        .unwrap();
    set.iter()
        .map(|c| c.split(';').next().unwrap())
        .filter(|c| !c.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}
