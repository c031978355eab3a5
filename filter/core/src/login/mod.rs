//! OIDC login at the edge: the `login` config section and every decision of the relying party
//! that is not already in [`crate::oidc`]. Sans-IO: the host does discovery and token requests,
//! passes random bytes (from its CSPRNG) and `now`, and sets the cookies this module writes.
//!
//! The files follow the flow, as a host runs it:
//!
//! 0. `config.rs`: the `login` section ([`LoginConfig`]) compiled into [`Login`] (this file:
//!    the compiled type and [`Login::route`], which of the routes below a request is);
//! 1. `GET login_path?rd=…`: `discovery.rs`, [`Login::discovery`] (one discovery document per
//!    isolate/VM: the provider's key source's when it follows the same URL, else the host
//!    fetches [`Login::discovery_url`] and caches [`Login::parse_discovery`]'s result), then
//!    `authorize.rs`, [`Login::start`] → 302 to the authorization endpoint with the
//!    per-attempt cookie (state, nonce, PKCE verifier, return URL);
//! 2. `GET` the redirect URI's path: `callback.rs`, [`Login::open_callback`] (state, attempt
//!    cookie, RFC 9207 `iss`, required when discovery advertises it), [`Grant::callback`] from
//!    what it opened, [`Login::token_request`] (code + PKCE verifier, `client_secret_basic` or
//!    `_post`), [`Login::parse_token_response`]; `id_token.rs`, [`crate::Engine::check_id_token`]
//!    (signature with the provider's keys, then OIDC Core 3.1.3.7); `refresh_cookie.rs`,
//!    [`Login::establish`] → session cookie (and the encrypted refresh cookie), 302 to the
//!    return URL;
//! 3. every other request: `renewal.rs`, [`Login::renewal`] says whether to use the refresh
//!    token now (the session is in the last quarter of its lifetime, or gone while the refresh
//!    cookie lives); [`Login::renewed_identity`] decides what the new session holds;
//! 4. `logout_path`: `logout.rs`, [`Login::logout`] clears every cookie and names where to go
//!    (the provider's `end_session_endpoint` with `id_token_hint` when it has one);
//! 5. `me_path`: `me.rs`, [`whoami_json`].
//!
//! `flow.rs` strings these steps together as one sans-IO machine ([`LoginStep`]) that both
//! hosts drive: [`crate::Engine::login_route`] for the routes, [`crate::Engine::renewal_due`]
//! and [`crate::Engine::apply_renewal`] for renewal, [`RenewalBoard`] for parallel requests.
//!
//! Shared test fixtures (a config, an engine, a discovery document, a logged-in cookie header)
//! are in `test_support.rs`.

mod authorize;
mod callback;
mod config;
mod device;
mod device_config;
mod discovery;
mod flow;
mod id_token;
mod logout;
mod me;
mod refresh_cookie;
mod renewal;
#[cfg(test)]
mod test_support;

pub use callback::{attempt_states, Grant, TokenRequest, TokenResponse};
pub use config::{LoginConfig, RefreshKeyConfig, TokenAuthMethod};
pub use device::{
    display_user_code, normalize_user_code, DeviceRead, DeviceStep, DeviceWrite, Stored,
    BEARER_PREFIX as DEVICE_BEARER_PREFIX, DEVICE_GRANT_TYPE, DEVICE_RANDOM_BYTES,
    USER_CODE_ALPHABET,
};
pub use device_config::{Device, DeviceConfig, DeviceRoute};
pub use discovery::{Discovery, DiscoveryStep, DISCOVERY_TTL_SECONDS};
pub use flow::{
    AwaitDiscovery, AwaitIdToken, AwaitIdentity, AwaitTokens, DueRenewal, IdTokenQuery, Join,
    LogLevel, LogLine, LoginReply, LoginStep, RenewalBoard, RenewalOutcome, Renewed,
    FLOW_RANDOM_BYTES,
};
pub use logout::LogoutReply;
pub use me::whoami_json;
pub use refresh_cookie::{
    RefreshState, MAX_REFRESH_COOKIE_BYTES, REFRESH_LIFETIME_SECONDS, REFRESH_NONCE_BYTES,
};
pub use renewal::{AfterFailure, Renewal};

use aes_gcm::Aes256Gcm;

use crate::error::{Error, Reason};
use crate::keyring::{KeyRing, Secret};
use crate::verifier::{IssuerRule, JwtVerifier, Provider};

/// Largest discovery document or token response a host should read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The compiled `login` section.
pub struct Login {
    provider: String,
    issuer: String,
    issuer_rule: IssuerRule,
    discovery: String,
    client_id: String,
    client_secret: Option<Secret>,
    auth: TokenAuthMethod,
    redirect_uri: String,
    callback_path: String,
    scope: String,
    offline_access: bool,
    login_path: String,
    logout_path: String,
    me_path: String,
    post_logout: Option<String>,
    refresh_keys: Vec<(String, Aes256Gcm)>,
    ring: KeyRing,
    refresh_cookie: String,
    cookie_path: String,
    cookie_domain: Option<String>,
    cluster: Option<String>,
    device: Option<Device>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field(
                "refresh_kids",
                &self
                    .refresh_keys
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A login route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Login,
    Callback,
    Logout,
    Me,
}

fn bad_response(reason: Reason, what: impl Into<String>) -> Error {
    Error::new(reason, what)
}

impl Login {
    /// The provider's name (a `jwt.providers[]` entry).
    pub fn provider_name(&self) -> &str {
        &self.provider
    }

    /// The provider's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The compiled provider (keys, algorithms, claim mapping) among the verifier's.
    pub fn provider<'v>(&self, jwt: &'v JwtVerifier) -> Option<&'v Provider> {
        jwt.providers().iter().find(|p| p.name == self.provider)
    }

    /// True when refresh tokens are kept (refresh keys configured).
    pub fn refresh_enabled(&self) -> bool {
        !self.refresh_keys.is_empty()
    }

    /// Envoy: the configured cluster for discovery and token requests (else one per URL
    /// authority).
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The login route (`login_path`): where browsers without a credential are sent when their
    /// rule names no `login_url`.
    pub fn login_path(&self) -> &str {
        &self.login_path
    }

    /// The refresh cookie's name (`<session cookie>_refresh`).
    pub fn refresh_cookie_name(&self) -> &str {
        &self.refresh_cookie
    }

    /// Which login route a request path (without query) is, if any.
    pub fn route(&self, path: &str) -> Option<Route> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        if path == self.login_path {
            Some(Route::Login)
        } else if path == self.callback_path {
            Some(Route::Callback)
        } else if path == self.logout_path {
            Some(Route::Logout)
        } else if path == self.me_path {
            Some(Route::Me)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn a_good_section_compiles_with_defaults() {
        let (_, l) = engine_and_login();
        assert_eq!(l.route("/auth/login?rd=/x"), Some(Route::Login));
        assert_eq!(l.route("/auth/callback?code=1"), Some(Route::Callback));
        assert_eq!(l.route("/auth/logout"), Some(Route::Logout));
        assert_eq!(l.route("/auth/me"), Some(Route::Me));
        assert_eq!(l.route("/auth/mee"), None);
        assert_eq!(
            l.discovery_url(),
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(l.refresh_cookie_name(), "edgegate_session_refresh");
        assert!(l.refresh_enabled());
        // Debug never shows secrets
        let dbg = format!("{l:?}");
        assert!(!dbg.contains("s:cret") && !dbg.contains(&key(2)), "{dbg}");
    }
}
