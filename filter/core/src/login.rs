//! OIDC login at the edge: the `login` config section and every decision of the relying party
//! that is not already in [`crate::oidc`]. Sans-IO: the host does discovery and token requests,
//! passes random bytes (from its CSPRNG) and `now`, and sets the cookies this module writes.
//!
//! The flow, as a host runs it:
//!
//! 1. `GET login_path?rd=…`: [`Login::discovery`] (one discovery document per isolate/VM: the
//!    provider's key source's when it follows the same URL, else the host fetches
//!    [`Login::discovery_url`] and caches [`Login::parse_discovery`]'s result), then
//!    [`Login::start`] → 302 to the authorization endpoint with the per-attempt cookie;
//! 2. `GET` the redirect URI's path: [`Login::open_callback`] (state, attempt cookie, RFC 9207
//!    `iss`, required when discovery advertises it), [`Login::token_request`] (code + PKCE verifier, `client_secret_basic` or
//!    `_post`), [`Login::parse_token_response`], [`Login::verify_id_token`] (signature with the
//!    provider's keys, then OIDC Core 3.1.3.7), [`Login::establish`] → session cookie (and the
//!    encrypted refresh cookie), 302 to the return URL;
//! 3. every other request: [`Login::renewal`] says whether to use the refresh token now
//!    (the session is in the last quarter of its lifetime, or gone while the refresh cookie
//!    lives); [`Login::renewed_identity`] decides what the new session holds;
//! 4. `logout_path`: [`Login::logout`] clears every cookie and names where to go (the
//!    provider's `end_session_endpoint` with `id_token_hint` when it has one);
//! 5. `me_path`: [`whoami_json`].
//!
//! # The refresh cookie
//!
//! Named `<session cookie>_refresh`, same `Path`/`Domain` as the session, `HttpOnly; Secure;
//! SameSite=Lax`. Value: `<kid>.<base64url(nonce ‖ AES-256-GCM(json))>` with the 12-byte nonce
//! from the host and the AAD `edgegate-refresh:<kid>`. The JSON holds the refresh token, the
//! session's subject, when it fits the ID token (for `id_token_hint`), `iat` and `exp`. Without
//! `refresh_keys` no refresh token is ever stored.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::b64;
use crate::backend::SignatureBackend;
use crate::error::{Error, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::jwk::KeySet;
use crate::jws;
use crate::keyring::{KeyRing, Secret};
use crate::oidc::{self, Attempt, AuthorizationParams, Callback, LoginStart, LOGIN_RANDOM_BYTES};
use crate::redirect::RedirectPolicy;
use crate::session::{find_cookie, Session, SessionConfig, Sessions};
use crate::verifier::{IssuerRule, JwtVerifier, Provider, ProviderConfig};
use crate::UnixTime;

/// Random bytes [`Login::establish`] and [`Login::seal_refresh`] need (the AES-GCM nonce).
pub const REFRESH_NONCE_BYTES: usize = 12;
/// How long the refresh cookie lives, in seconds (30 days); the provider may end the refresh
/// token sooner, and then the next renewal fails and the user logs in again.
pub const REFRESH_LIFETIME_SECONDS: u64 = 30 * 86_400;
/// Largest refresh cookie value written or accepted (the ID token is left out to stay below).
pub const MAX_REFRESH_COOKIE_BYTES: usize = 3800;
/// Largest discovery document or token response a host should read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How long a host may keep a discovery document, in seconds.
pub const DISCOVERY_TTL_SECONDS: u64 = 3600;
/// An ID token issued longer ago than this is refused at login (a stale token replayed).
const ID_TOKEN_MAX_AGE_SECONDS: u64 = 600;
/// Largest ID token accepted.
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;
const REFRESH_AAD_PREFIX: &str = "edgegate-refresh:";

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
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}
fn default_login_path() -> String {
    "/auth/login".into()
}
fn default_logout_path() -> String {
    "/auth/logout".into()
}
fn default_me_path() -> String {
    "/auth/me".into()
}

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

/// What the host needs from the provider's discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub end_session_endpoint: Option<String>,
    /// RFC 9207 `authorization_response_iss_parameter_supported`: the provider puts `iss` in
    /// every authorization response, so a callback without it is refused.
    pub iss_parameter_supported: bool,
}

/// Where the login flow gets the provider's discovery document ([`Login::discovery`]): one
/// document per isolate/VM, shared with the provider's key source when both follow the same
/// discovery URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryStep {
    /// The key source fetched it: use it.
    Ready(Discovery),
    /// The key source follows this document and has none yet: drive it (its next poll asks
    /// for the document now), then ask again.
    FetchKeys,
    /// The key source is fetching (it may be this document): wait, bounded, and ask again.
    Wait,
    /// The provider's keys do not come from this document (inline keys, a `jwks_uri`, another
    /// discovery URL): fetch [`Login::discovery_url`] yourself, check it with
    /// [`Login::parse_discovery`] and keep it for [`DISCOVERY_TTL_SECONDS`].
    Own,
}

/// A token request for the host to POST (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub url: String,
    /// Includes `content-type`, `accept`, and `authorization` for `client_secret_basic`.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The grant a token request carries.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// The callback's code and the attempt's PKCE verifier.
    Code { code: &'a str, verifier: &'a str },
    /// A stored refresh token.
    Refresh { refresh_token: &'a str },
}

/// The useful part of a token response. Never log it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TokenResponse {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// The outcome of checking an ID token.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum IdTokenCheck {
    /// Valid: the identity the session will carry (credential `jwt`, the provider's name).
    Valid(Identity),
    /// The provider's remote keys have not been fetched yet: fetch, then check again.
    NeedKeys,
    /// No key has the token's `kid`: refetch the key set early (rate-limited), check again;
    /// if it is still unknown, this error is the refusal.
    UnknownKid(Error),
    Invalid(Error),
}

/// The contents of an opened refresh cookie. Never log it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshState {
    pub refresh_token: String,
    /// The subject of the session it belongs to.
    pub subject: String,
    /// The last ID token, for `id_token_hint` at logout (absent when it did not fit).
    pub id_token: Option<String>,
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for RefreshState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshState")
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshClaims {
    rt: String,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idt: Option<String>,
    iat: UnixTime,
    exp: UnixTime,
}

/// What a request's cookies call for, before it is decided.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Renewal {
    /// Nothing to do (no refresh cookie, the session is young, or not an OIDC session).
    Keep,
    /// Use the refresh token now. `current` is the still-valid session, if any (without one,
    /// the token response must carry an ID token for the same subject).
    Renew {
        refresh: RefreshState,
        current: Option<Session>,
    },
}

/// What to do after a failed renewal ([`Login::after_failed_renewal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Delete the session and refresh cookies; decide the request without them.
    EndSession,
    /// Leave both cookies as they are (try again on a later request).
    KeepSession,
}

/// What logout answers: a 302 to `location` with every `set_cookies` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutReply {
    pub location: String,
    pub set_cookies: Vec<String>,
}

fn bad_response(reason: Reason, what: impl Into<String>) -> Error {
    Error::new(reason, what)
}

fn valid_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && p.len() <= 256
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b';' | b'%' | b'\\'))
}

fn is_local_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An absolute `https://` URL (or `http://` on localhost) without a fragment.
fn check_endpoint(u: &str) -> Result<url::Url, &'static str> {
    let url = url::Url::parse(u).map_err(|_| "not an absolute URL")?;
    match url.scheme() {
        "https" => {}
        "http" if is_local_host(&url) => {}
        "http" => return Err("must be https:// (http:// only for localhost)"),
        _ => return Err("must be an https:// URL"),
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("must have no fragment and no user info");
    }
    Ok(url)
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl LoginConfig {
    /// Validates the section against the session section and the providers. Paths are relative
    /// to `login` (except a missing `session`, reported by the config's global checks).
    pub fn compile(
        &self,
        session: Option<&SessionConfig>,
        providers: &[ProviderConfig],
    ) -> Result<Login, Vec<Error>> {
        let mut errors = Vec::new();
        let mut rule = None;
        let issuer = match providers.iter().find(|p| p.name == self.provider) {
            // A provider without keys (or a bad issuer template) is reported by Provider::compile.
            Some(p) => {
                rule = IssuerRule::compile(&p.issuer, &p.allowed_tenants).ok();
                Some(p.issuer.clone())
            }
            None => {
                let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
                errors.push(Error::config(
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
                errors.push(Error::config(
                    "provider",
                    format!("the provider's issuer {m}; discovery needs <issuer>/.well-known/openid-configuration"),
                ));
            }
        }
        let template = rule.as_ref().is_some_and(IssuerRule::is_template);
        let discovery = match (&self.discovery_url, &issuer) {
            (Some(u), _) => match check_endpoint(u) {
                Ok(_) => Some(u.clone()),
                Err(m) => {
                    errors.push(Error::config(
                        "discovery_url",
                        format!("{m}; use the provider's .well-known/openid-configuration URL"),
                    ));
                    None
                }
            },
            (None, Some(_)) if template => {
                errors.push(Error::config(
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
        };
        if self.client_id.is_empty()
            || self.client_id.len() > 255
            || self.client_id.chars().any(char::is_control)
        {
            errors.push(Error::config(
                "client_id",
                "must be the client id registered at the provider (1-255 characters, no control characters)",
            ));
        }
        if let Some(s) = &self.client_secret {
            if s.expose().is_empty() || s.expose().chars().any(char::is_control) {
                errors.push(Error::config(
                    "client_secret",
                    "must be non-empty without control characters; or leave it out and bind OIDC_CLIENT_SECRET",
                ));
            }
        }
        let callback_path = match check_endpoint(&self.redirect_uri) {
            Ok(u) if u.query().is_none() => Some(u.path().to_string()),
            Ok(_) => {
                errors.push(Error::config(
                    "redirect_uri",
                    "must have no query; use e.g. https://app.example.com/auth/callback",
                ));
                None
            }
            Err(m) => {
                errors.push(Error::config(
                    "redirect_uri",
                    format!("{m}; use the absolute callback URL registered at the provider, e.g. https://app.example.com/auth/callback"),
                ));
                None
            }
        };
        if !self.scopes.iter().any(|s| s == "openid") {
            errors.push(Error::config(
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
                errors.push(Error::config(
                    format!("scopes[{i}]"),
                    "a scope is printable ASCII without spaces, quotes or backslashes",
                ));
            }
        }
        let mut paths: Vec<(&str, &str)> = Vec::new();
        for (field, p) in [
            ("login_path", &self.login_path),
            ("logout_path", &self.logout_path),
            ("me_path", &self.me_path),
        ] {
            if !valid_path(p) {
                errors.push(Error::config(
                    field,
                    "a path starts with `/` and has no `?`, `#`, `;`, `%`, `\\` or spaces (e.g. /auth/login)",
                ));
            }
            paths.push((field, p));
        }
        if let Some(cb) = &callback_path {
            paths.push(("redirect_uri", cb));
        }
        for (i, (field, p)) in paths.iter().enumerate() {
            if paths.iter().take(i).any(|(_, q)| q == p) {
                errors.push(Error::config(
                    *field,
                    format!("{p:?} is used by two login routes; give each its own path"),
                ));
            }
        }
        if let Some(u) = &self.post_logout_redirect_uri {
            if !u.starts_with('/') || u.starts_with("//") {
                if let Err(m) = check_endpoint(u) {
                    errors.push(Error::config(
                        "post_logout_redirect_uri",
                        format!("{m}; use the absolute URL registered at the provider"),
                    ));
                }
            }
        }
        let mut refresh_keys = Vec::new();
        for (i, k) in self.refresh_keys.iter().enumerate() {
            let path = format!("refresh_keys[{i}]");
            if !valid_kid(&k.kid) {
                errors.push(Error::config(
                    format!("{path}.kid"),
                    "1-64 characters of A-Z a-z 0-9 _ -",
                ));
            }
            if self.refresh_keys.iter().take(i).any(|o| o.kid == k.kid) {
                errors.push(Error::config(
                    format!("{path}.kid"),
                    format!("{:?} is used twice; every key needs its own kid", k.kid),
                ));
            }
            match k.secret.decode_base64url(&format!("{path}.secret"), 32) {
                Ok(bytes) if bytes.len() == 32 => match Aes256Gcm::new_from_slice(&bytes) {
                    Ok(c) => refresh_keys.push((k.kid.clone(), c)),
                    Err(_) => errors.push(Error::config(
                        format!("{path}.secret"),
                        "not a usable AES-256 key",
                    )),
                },
                Ok(bytes) => errors.push(Error::config(
                    format!("{path}.secret"),
                    format!(
                        "decodes to {} bytes; AES-256-GCM needs exactly 32 (openssl rand 32 | basenc --base64url | tr -d =)",
                        bytes.len()
                    ),
                )),
                Err(e) => errors.push(e),
            }
        }
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

    /// `discovery_url`, default `<issuer>/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        self.discovery.clone()
    }

    /// Checks a discovery response: HTTP 200, `issuer` exactly the provider's (a `{tenantid}`
    /// template only when the provider is configured with that template), the
    /// authorization and token endpoints (and `end_session_endpoint` when given) absolute
    /// `https://` URLs (`http://` on localhost).
    pub fn parse_discovery(&self, status: u16, body: &[u8]) -> Result<Discovery, Error> {
        let unavailable = |m: String| bad_response(Reason::KeysUnavailable, m);
        if status != 200 {
            return Err(unavailable(format!(
                "the discovery endpoint answered HTTP {status}"
            )));
        }
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(unavailable("the discovery document is too large".into()));
        }
        let doc = crate::json::parse_object(
            body,
            crate::json::DOCUMENT_MAX_DEPTH,
            Reason::KeysUnavailable,
            "discovery document",
        )?;
        match doc.get("issuer") {
            Some(Value::String(s)) if *s == self.issuer => {}
            _ => {
                return Err(Error::new(
                    Reason::UnknownIssuer,
                    format!(
                        "the discovery document's issuer is not exactly {:?} (OIDC Discovery 4.3); configure the provider's issuer as the IdP spells it",
                        self.issuer
                    ),
                ))
            }
        }
        let endpoint = |name: &str, required: bool| -> Result<Option<String>, Error> {
            match doc.get(name) {
                Some(Value::String(u)) => check_endpoint(u)
                    .map(|_| Some(u.clone()))
                    .map_err(|m| unavailable(format!("the discovered {name} {m}"))),
                None if !required => Ok(None),
                _ => Err(unavailable(format!("the discovery document has no {name}"))),
            }
        };
        let authorization_endpoint = endpoint("authorization_endpoint", true)?.unwrap_or_default();
        let token_endpoint = endpoint("token_endpoint", true)?.unwrap_or_default();
        let end_session_endpoint = endpoint("end_session_endpoint", false)?;
        let iss_parameter_supported =
            match doc.get("authorization_response_iss_parameter_supported") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(unavailable(
                        "the discovery document's authorization_response_iss_parameter_supported \
                         is not a boolean (RFC 9207)"
                            .into(),
                    ))
                }
            };
        Ok(Discovery {
            authorization_endpoint,
            token_endpoint,
            end_session_endpoint,
            iss_parameter_supported,
        })
    }

    /// The discovery document for the login flow, shared with the provider's key source
    /// `keys` (its [`JwksState`](crate::jwks::JwksState), when remote) so one fetch serves both:
    /// see [`DiscoveryStep`]. An error when the key source's fetch of it failed (503, it
    /// retries with backoff) or the document does not serve a login ([`Login::parse_discovery`]).
    pub fn discovery(
        &self,
        keys: Option<&crate::jwks::JwksState>,
        now: UnixTime,
    ) -> Result<DiscoveryStep, Error> {
        let Some(keys) = keys.filter(|k| k.discovery_url() == Some(self.discovery.as_str())) else {
            return Ok(DiscoveryStep::Own);
        };
        if let Some(doc) = keys.discovery_document() {
            return self.parse_discovery(200, doc).map(DiscoveryStep::Ready);
        }
        if keys.fetching() {
            return Ok(DiscoveryStep::Wait);
        }
        if keys.next_wakeup().is_some_and(|at| at <= now) {
            return Ok(DiscoveryStep::FetchKeys);
        }
        Err(bad_response(
            Reason::KeysUnavailable,
            "the provider's discovery document could not be fetched; retrying with backoff",
        ))
    }

    /// Starts a login from the login route's query (`rd=<return URL>`, checked by `redirects`;
    /// absent: `/`). `random` from a CSPRNG.
    pub fn start(
        &self,
        disco: &Discovery,
        redirects: &RedirectPolicy,
        query: &str,
        random: &[u8; LOGIN_RANDOM_BYTES],
        now: UnixTime,
    ) -> Result<LoginStart, Error> {
        let rd = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "rd")
            .map(|(_, v)| v.into_owned());
        let return_to = match rd {
            Some(rd) => redirects.check(&rd)?,
            None => "/".to_string(),
        };
        let params = AuthorizationParams {
            authorization_endpoint: &disco.authorization_endpoint,
            client_id: &self.client_id,
            redirect_uri: &self.redirect_uri,
            scope: &self.scope,
        };
        let mut start = oidc::start_login(&self.ring, &params, random, &return_to, now)?;
        if self.offline_access {
            // OIDC Core 11: offline access needs prompt=consent (providers drop the scope, and
            // issue no refresh token, without it).
            start.location.push_str("&prompt=consent");
        }
        Ok(start)
    }

    /// Parses the callback query and opens its attempt cookie from the `Cookie` header.
    /// RFC 9207: `iss`, when sent, must be the provider's issuer; when the provider's discovery
    /// document says `authorization_response_iss_parameter_supported: true`, it must be sent
    /// (else `login_mismatch`: a mix-up attack would strip it).
    pub fn open_callback(
        &self,
        query: &str,
        cookie_header: &str,
        disco: &Discovery,
        now: UnixTime,
    ) -> Result<(Callback, Attempt), Error> {
        let cb = oidc::parse_callback(query)?;
        // RFC 9207 `iss`, when sent: the provider's issuer (for a template, with an allowed
        // tenant); the attempt is then opened without it.
        match &cb.iss {
            Some(iss) => self.issuer_rule.matches_bare(iss)?,
            None if disco.iss_parameter_supported => {
                return Err(Error::new(
                    Reason::LoginMismatch,
                    "the callback has no `iss`, and the provider's discovery document says it \
                     always sends one (RFC 9207 authorization_response_iss_parameter_supported)",
                ))
            }
            None => {}
        }
        let name = oidc::attempt_cookie_name(&cb.state);
        let cookie = find_cookie(cookie_header, &name).ok_or_else(|| {
            Error::new(
                Reason::LoginMismatch,
                "no login attempt matches the callback's state (expired, used, or started in another browser); start again",
            )
        })?;
        let bare = Callback {
            iss: None,
            ..cb.clone()
        };
        let attempt = oidc::open_attempt(&self.ring, cookie, &bare, &self.issuer, now)?;
        Ok((cb, attempt))
    }

    /// The `Set-Cookie` value that deletes an attempt cookie.
    pub fn clear_attempt_cookie(&self, state: &str) -> String {
        format!(
            "{}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax",
            oidc::attempt_cookie_name(state)
        )
    }

    /// The token request for a grant. `secret_override` (a host binding) wins over the
    /// config's `client_secret`; with neither, the request is refused (`Internal`).
    pub fn token_request(
        &self,
        disco: &Discovery,
        grant: Grant<'_>,
        secret_override: Option<&str>,
    ) -> Result<TokenRequest, Error> {
        let secret = secret_override
            .filter(|s| !s.is_empty())
            .or(self.client_secret.as_ref().map(Secret::expose))
            .ok_or_else(|| {
                Error::new(
                    Reason::Internal,
                    "no client secret: set login.client_secret or the host's secret binding (OIDC_CLIENT_SECRET)",
                )
            })?;
        let mut form = form_urlencoded::Serializer::new(String::new());
        match grant {
            Grant::Code { code, verifier } => {
                form.append_pair("grant_type", "authorization_code")
                    .append_pair("code", code)
                    .append_pair("redirect_uri", &self.redirect_uri)
                    .append_pair("code_verifier", verifier);
            }
            Grant::Refresh { refresh_token } => {
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh_token);
            }
        }
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("accept".to_string(), "application/json".to_string()),
        ];
        match self.auth {
            TokenAuthMethod::ClientSecretBasic => {
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(&self.client_id), enc(secret));
                headers.push((
                    "authorization".to_string(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                ));
            }
            TokenAuthMethod::ClientSecretPost => {
                form.append_pair("client_id", &self.client_id)
                    .append_pair("client_secret", secret);
            }
        }
        Ok(TokenRequest {
            url: disco.token_endpoint.clone(),
            headers,
            body: form.finish(),
        })
    }

    /// Reads a token response. A 4xx is the provider refusing (`LoginMismatch`, with its
    /// `error` code only); a 5xx or garbage is `KeysUnavailable` (503).
    pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenResponse, Error> {
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(bad_response(
                Reason::KeysUnavailable,
                "the token response is too large",
            ));
        }
        let doc = serde_json::from_slice::<Map<String, Value>>(body).ok();
        if status != 200 {
            let code: String = doc
                .as_ref()
                .and_then(|d| d.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            let reason = if (400..500).contains(&status) {
                Reason::LoginMismatch
            } else {
                Reason::KeysUnavailable
            };
            return Err(bad_response(
                reason,
                format!("the token endpoint answered HTTP {status} {code}"),
            ));
        }
        let doc = doc.ok_or_else(|| {
            bad_response(
                Reason::KeysUnavailable,
                "the token response is not a JSON object",
            )
        })?;
        if let Some(t) = doc.get("token_type") {
            if !t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
                return Err(bad_response(
                    Reason::LoginMismatch,
                    "the token response's token_type is not Bearer",
                ));
            }
        }
        let s = |name: &str| {
            doc.get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        Ok(TokenResponse {
            id_token: s("id_token"),
            access_token: s("access_token"),
            refresh_token: s("refresh_token"),
        })
    }

    /// Checks an ID token: signature by the provider's keys (inline first, then `remote`, the
    /// key set the host fetched) with an algorithm the provider allows, then OIDC Core
    /// 3.1.3.7 ([`oidc::check_id_token_claims`]); `nonce` is the attempt's (None on refresh,
    /// OIDC Core 12.2), `access_token` the one from the same response (for `at_hash`). The
    /// identity is mapped with the provider's claim paths and preset.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_id_token(
        &self,
        provider: &Provider,
        remote: Option<&KeySet>,
        backend: &dyn SignatureBackend,
        id_token: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        now: UnixTime,
    ) -> IdTokenCheck {
        let jws = match jws::parse(id_token, MAX_ID_TOKEN_BYTES) {
            Ok(j) => j,
            Err(e) => return IdTokenCheck::Invalid(e),
        };
        if !provider.algorithms().contains(&jws.alg) {
            return IdTokenCheck::Invalid(Error::new(
                Reason::AlgNotAllowed,
                format!(
                    "the ID token is signed with {}, which provider {} does not allow",
                    jws.alg, provider.name
                ),
            ));
        }
        let from_static = provider
            .static_keys()
            .map(|s| s.select(jws.kid.as_deref(), jws.alg));
        let key = match from_static {
            Some(Ok(k)) => k,
            Some(Err(e)) if provider.remote().is_none() => return IdTokenCheck::Invalid(e),
            _ => match remote {
                None if provider.remote().is_some() => return IdTokenCheck::NeedKeys,
                None => {
                    return IdTokenCheck::Invalid(Error::new(
                        Reason::KeysUnavailable,
                        "the provider has no keys",
                    ))
                }
                Some(set) => match set.select(jws.kid.as_deref(), jws.alg) {
                    Ok(k) => k,
                    Err(e) if e.reason() == Reason::UnknownKid => {
                        return IdTokenCheck::UnknownKid(e)
                    }
                    Err(e) => return IdTokenCheck::Invalid(e),
                },
            },
        };
        if let Err(e) = backend.verify(jws.alg, &key.key, jws.signing_input, &jws.signature) {
            return IdTokenCheck::Invalid(e);
        }
        let claims = match jws.claims() {
            Ok(c) => c,
            Err(e) => return IdTokenCheck::Invalid(e),
        };
        // A multi-tenant template: the expected `iss` is the template with the token's `tid`,
        // an allowed tenant (Microsoft's validation rule); else the issuer exactly.
        let issuer = match claims.get("iss").and_then(Value::as_str) {
            Some(iss) if provider.issuer_rule().is_template() => {
                match provider.issuer_rule().matches_token(iss, &claims) {
                    Ok(true) => iss.to_string(),
                    Ok(false) => {
                        return IdTokenCheck::Invalid(Error::new(
                            Reason::UnknownIssuer,
                            "the ID token's `iss` is not the provider's issuer",
                        ))
                    }
                    Err(e) => return IdTokenCheck::Invalid(e),
                }
            }
            _ => self.issuer.clone(),
        };
        let expect = IdTokenExpect {
            issuer: &issuer,
            client_id: &self.client_id,
            nonce,
            skew: provider.clock_skew_seconds(),
        };
        if let Err(e) = expect.check(&claims, jws.alg, access_token, now) {
            return IdTokenCheck::Invalid(e);
        }
        // The provider's own rules hold for its ID tokens too.
        if let Err(e) = provider.check_lifetime_and_required_claims(&claims) {
            return IdTokenCheck::Invalid(e);
        }
        let mut identity = Identity::new(String::new(), CredentialKind::Jwt, provider.name.clone());
        provider.mapping().apply(&claims, &mut identity);
        if identity.subject.is_empty() {
            return IdTokenCheck::Invalid(Error::new(
                Reason::MissingClaim,
                "the ID token has no subject at the provider's subject claim",
            ));
        }
        identity.key_name = key.kid.clone();
        identity.expires_at = None;
        // OAuth scopes of the login are not the user's permissions.
        identity.scopes.clear();
        IdTokenCheck::Valid(identity)
    }

    /// The `Set-Cookie` values after a successful login or renewal: the session, and the
    /// refresh cookie (encrypted with `nonce`) when a refresh token came and refresh keys are
    /// configured — else a deletion of any old refresh cookie.
    pub fn establish(
        &self,
        sessions: &Sessions,
        identity: &Identity,
        refresh_token: Option<&str>,
        id_token: Option<&str>,
        nonce: &[u8; REFRESH_NONCE_BYTES],
        now: UnixTime,
    ) -> Result<Vec<String>, Error> {
        let mut sealed = identity.clone();
        sealed.credential = CredentialKind::Jwt;
        sealed.key_name = None;
        sealed.expires_at = None;
        let value = sessions.seal(&sealed, now)?;
        let mut out = vec![sessions.set_cookie_header(&value, now)];
        let refresh = match refresh_token {
            Some(rt) => self.seal_refresh(rt, &identity.subject, id_token, nonce, now)?,
            None => None,
        };
        out.push(match refresh {
            Some(v) => self.refresh_cookie_header(&v),
            None => self.clear_refresh_cookie(),
        });
        Ok(out)
    }

    /// Encrypts a refresh cookie value with the first refresh key. `Ok(None)` when no refresh
    /// key is configured, or the value would not fit even without the ID token.
    pub fn seal_refresh(
        &self,
        refresh_token: &str,
        subject: &str,
        id_token: Option<&str>,
        nonce: &[u8; REFRESH_NONCE_BYTES],
        now: UnixTime,
    ) -> Result<Option<String>, Error> {
        let Some((kid, cipher)) = self.refresh_keys.first() else {
            return Ok(None);
        };
        for idt in [id_token, None] {
            let claims = RefreshClaims {
                rt: refresh_token.to_string(),
                sub: subject.to_string(),
                idt: idt.map(str::to_string),
                iat: now,
                exp: now.saturating_add(REFRESH_LIFETIME_SECONDS),
            };
            let json = serde_json::to_vec(&claims)
                .map_err(|_| Error::new(Reason::Internal, "could not encode the refresh cookie"))?;
            // nonce + ciphertext + 16-byte tag, base64url (4/3), plus the kid
            let estimate = (json.len() + REFRESH_NONCE_BYTES + 16) * 4 / 3 + kid.len() + 2;
            if estimate > MAX_REFRESH_COOKIE_BYTES {
                continue;
            }
            let aad = format!("{REFRESH_AAD_PREFIX}{kid}");
            let ct = cipher
                .encrypt(
                    &Nonce::from(*nonce),
                    Payload {
                        msg: &json,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| {
                    Error::new(Reason::Internal, "could not encrypt the refresh cookie")
                })?;
            let mut blob = nonce.to_vec();
            blob.extend_from_slice(&ct);
            return Ok(Some(format!("{kid}.{}", b64::encode(blob))));
        }
        Ok(None)
    }

    /// Decrypts a refresh cookie value (any configured key, by kid) and checks its expiry.
    /// `SessionInvalid` for anything tampered, unknown or malformed; `SessionExpired` after
    /// `exp`.
    pub fn open_refresh(&self, value: &str, now: UnixTime) -> Result<RefreshState, Error> {
        let invalid = || Error::new(Reason::SessionInvalid, "the refresh cookie is not valid");
        if value.len() > MAX_REFRESH_COOKIE_BYTES {
            return Err(invalid());
        }
        let (kid, data) = value.split_once('.').ok_or_else(invalid)?;
        let (_, cipher) = self
            .refresh_keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or_else(invalid)?;
        let blob = b64::decode(data).map_err(|_| invalid())?;
        if blob.len() < REFRESH_NONCE_BYTES + 16 {
            return Err(invalid());
        }
        let (nonce, ct) = blob.split_at(REFRESH_NONCE_BYTES);
        let nonce: [u8; REFRESH_NONCE_BYTES] = nonce.try_into().map_err(|_| invalid())?;
        let aad = format!("{REFRESH_AAD_PREFIX}{kid}");
        let json = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| invalid())?;
        let c: RefreshClaims = serde_json::from_slice(&json).map_err(|_| invalid())?;
        if c.rt.is_empty() || c.sub.is_empty() || c.exp <= c.iat {
            return Err(invalid());
        }
        if now >= c.exp {
            return Err(Error::new(
                Reason::SessionExpired,
                "the refresh cookie has expired",
            ));
        }
        Ok(RefreshState {
            refresh_token: c.rt,
            subject: c.sub,
            id_token: c.idt,
            expires_at: c.exp,
        })
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        let mut s = format!(
            "{name}={value}; Path={}; Max-Age={max_age}",
            self.cookie_path
        );
        if max_age == 0 {
            s.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        }
        if let Some(d) = &self.cookie_domain {
            s.push_str("; Domain=");
            s.push_str(d);
        }
        s.push_str("; HttpOnly; Secure; SameSite=Lax");
        s
    }

    /// The `Set-Cookie` value for a sealed refresh cookie.
    pub fn refresh_cookie_header(&self, value: &str) -> String {
        self.cookie(&self.refresh_cookie, value, REFRESH_LIFETIME_SECONDS)
    }

    /// The `Set-Cookie` value that deletes the refresh cookie.
    pub fn clear_refresh_cookie(&self) -> String {
        self.cookie(&self.refresh_cookie, "", 0)
    }

    /// Whether this request's session should be renewed with its refresh token now: the
    /// refresh cookie opens, and either the session (an OIDC session of this provider and
    /// the same subject) is in the last quarter of its lifetime, or there is no valid session
    /// (the browser dropped it at `Max-Age`, or it expired).
    pub fn renewal(&self, sessions: &Sessions, cookie_header: &str, now: UnixTime) -> Renewal {
        if self.refresh_keys.is_empty() {
            return Renewal::Keep;
        }
        let Some(rc) = find_cookie(cookie_header, &self.refresh_cookie) else {
            return Renewal::Keep;
        };
        let session = sessions
            .from_cookie_header(cookie_header)
            .and_then(|v| sessions.open_session(v, now).ok());
        if let Some(s) = &session {
            if s.origin != CredentialKind::Jwt || s.identity.provider != self.provider {
                return Renewal::Keep;
            }
            let lifetime = s.expires_at.saturating_sub(s.issued_at);
            let renew_at = s.issued_at.saturating_add(lifetime.saturating_mul(3) / 4);
            if now < renew_at {
                return Renewal::Keep;
            }
        }
        let Ok(refresh) = self.open_refresh(rc, now) else {
            return Renewal::Keep;
        };
        if let Some(s) = &session {
            if s.identity.subject != refresh.subject {
                return Renewal::Keep;
            }
        }
        Renewal::Renew {
            refresh,
            current: session,
        }
    }

    /// The identity of a renewed session: the new ID token's (already verified, without a
    /// nonce), which must name the same subject (OIDC Core 12.2); without a new ID token, the
    /// current session's; with neither, the renewal fails and the session ends.
    pub fn renewed_identity(
        &self,
        refresh: &RefreshState,
        current: Option<&Session>,
        verified: Option<Identity>,
    ) -> Result<Identity, Error> {
        match (verified, current) {
            (Some(id), _) if id.subject == refresh.subject => Ok(id),
            (Some(_), _) => Err(Error::new(
                Reason::LoginMismatch,
                "the refreshed ID token names another subject",
            )),
            (None, Some(s)) => {
                let mut id = s.identity.clone();
                id.credential = s.origin;
                Ok(id)
            }
            (None, None) => Err(Error::new(
                Reason::SessionExpired,
                "the session expired and the refresh gave no ID token; log in again",
            )),
        }
    }

    /// What a failed renewal means. The provider refusing (a 4xx from the token endpoint, an
    /// ID token that does not pass, another subject) ends the session. The provider being
    /// unreachable or broken (`KeysUnavailable`: network, 5xx, no keys) while the session is
    /// still valid keeps it until its own expiry (bounded by the session lifetime): an outage
    /// of the provider does not log everyone out; without a valid session it ends too.
    pub fn after_failed_renewal(&self, error: &Error, session_still_valid: bool) -> AfterFailure {
        if session_still_valid && error.reason() == Reason::KeysUnavailable {
            AfterFailure::KeepSession
        } else {
            AfterFailure::EndSession
        }
    }

    /// Logout: delete the session, refresh and attempt cookies; go to the provider's
    /// `end_session_endpoint` (with `id_token_hint` when the refresh cookie kept the ID token,
    /// `post_logout_redirect_uri` and `client_id`) when `disco` names one, else to
    /// `post_logout_redirect_uri` or `/`.
    pub fn logout(
        &self,
        sessions: &Sessions,
        disco: Option<&Discovery>,
        cookie_header: &str,
        now: UnixTime,
    ) -> LogoutReply {
        let mut set_cookies = vec![sessions.clear_cookie_header(), self.clear_refresh_cookie()];
        for state in attempt_states(cookie_header) {
            set_cookies.push(self.clear_attempt_cookie(&state));
        }
        let hint = find_cookie(cookie_header, &self.refresh_cookie)
            .and_then(|v| self.open_refresh(v, now).ok())
            .and_then(|r| r.id_token);
        let location = match disco.and_then(|d| d.end_session_endpoint.as_deref()) {
            Some(end) => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                if let Some(h) = &hint {
                    q.append_pair("id_token_hint", h);
                }
                if let Some(p) = &self.post_logout {
                    q.append_pair("post_logout_redirect_uri", p);
                }
                q.append_pair("client_id", &self.client_id);
                let sep = if end.contains('?') { '&' } else { '?' };
                format!("{end}{sep}{}", q.finish())
            }
            None => self.post_logout.clone().unwrap_or_else(|| "/".into()),
        };
        LogoutReply {
            location,
            set_cookies,
        }
    }
}

/// The `state`s of the login-attempt cookies in a `Cookie` header (at most 16).
pub fn attempt_states(cookie_header: &str) -> Vec<String> {
    cookie_header
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .filter_map(|(n, _)| n.strip_prefix(oidc::ATTEMPT_COOKIE_PREFIX))
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .take(16)
        .map(str::to_string)
        .collect()
}

/// ID-token expectations with an optional nonce (absent on refresh).
struct IdTokenExpect<'a> {
    issuer: &'a str,
    client_id: &'a str,
    nonce: Option<&'a str>,
    skew: u64,
}

impl IdTokenExpect<'_> {
    fn check(
        &self,
        claims: &Map<String, Value>,
        alg: crate::Alg,
        access_token: Option<&str>,
        now: UnixTime,
    ) -> Result<(), Error> {
        match self.nonce {
            Some(nonce) => oidc::check_id_token_claims(
                claims,
                alg,
                &oidc::IdTokenExpectations {
                    issuer: self.issuer,
                    client_id: self.client_id,
                    nonce,
                    clock_skew_seconds: self.skew,
                    max_age_seconds: ID_TOKEN_MAX_AGE_SECONDS,
                },
                access_token,
                now,
            ),
            None => {
                // A refreshed ID token need not carry a nonce (OIDC Core 12.2): check it as if
                // it carried the one it has, so every other rule still applies.
                let mut c = claims.clone();
                let nonce = c
                    .get("nonce")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string();
                c.insert("nonce".into(), Value::String(nonce.clone()));
                oidc::check_id_token_claims(
                    &c,
                    alg,
                    &oidc::IdTokenExpectations {
                        issuer: self.issuer,
                        client_id: self.client_id,
                        nonce: &nonce,
                        clock_skew_seconds: self.skew,
                        max_age_seconds: ID_TOKEN_MAX_AGE_SECONDS,
                    },
                    access_token,
                    now,
                )
            }
        }
    }
}

/// The `/auth/me` body for an accepted credential.
pub fn whoami_json(identity: &Identity) -> String {
    json!({
        "subject": identity.subject,
        "email": identity.email,
        "name": identity.name,
        "roles": identity.roles,
        "permissions": identity.permissions,
        "amr": identity.amr,
        "provider": identity.provider,
        "credential": identity.credential.code(),
        "expires_at": identity.expires_at,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;
    use crate::config::Config;
    use crate::engine::Engine;
    use crate::keyring::HmacKeyConfig;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const SESSION_KEY: &str = "jwoaIj8MA4uqORbygI3Aqi_UBO4gJmB9oGyzqIjWUPI";
    const IDP_SECRET: &str = "N6DNzRHwFWHzTbEbCwlpezlWIlf8Kvn1o1oZe_GowmY";

    fn key(byte: u8) -> String {
        b64::encode([byte; 32])
    }

    fn config_value() -> Value {
        json!({
            "jwt": {"providers": [{
                "name": "op", "issuer": "https://idp.example",
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

    fn engine_from(v: &Value) -> Result<Engine, Vec<Error>> {
        Engine::from_json(v.to_string().as_bytes()).map_err(|e| e.0)
    }

    fn engine() -> Engine {
        engine_from(&config_value()).unwrap()
    }

    fn paths(v: &Value) -> Vec<String> {
        engine_from(v)
            .unwrap_err()
            .iter()
            .map(|e| e.path().unwrap_or("").to_string())
            .collect()
    }

    fn disco() -> Discovery {
        Discovery {
            authorization_endpoint: "https://idp.example/auth".into(),
            token_endpoint: "https://idp.example/token".into(),
            end_session_endpoint: Some("https://idp.example/logout".into()),
            iss_parameter_supported: false,
        }
    }

    #[test]
    fn a_good_section_compiles_with_defaults() {
        let e = engine();
        let l = e.login().unwrap();
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
    fn discovery_checks() {
        let e = engine();
        let l = e.login().unwrap();
        let doc = |v: Value| v.to_string().into_bytes();
        let good = json!({"issuer": "https://idp.example", "authorization_endpoint": "https://idp.example/auth",
                          "token_endpoint": "https://idp.example/token", "jwks_uri": "https://idp.example/jwks"});
        let d = l.parse_discovery(200, &doc(good.clone())).unwrap();
        assert_eq!(d.token_endpoint, "https://idp.example/token");
        assert_eq!(d.end_session_endpoint, None);
        assert!(!d.iss_parameter_supported);
        // RFC 9207's flag: a boolean, anything else refuses the document
        for (flag, supported) in [
            (json!(true), Some(true)),
            (json!(false), Some(false)),
            (json!("true"), None),
            (json!(1), None),
        ] {
            let mut v = good.clone();
            v["authorization_response_iss_parameter_supported"] = flag.clone();
            match supported {
                Some(b) => assert_eq!(
                    l.parse_discovery(200, &doc(v))
                        .unwrap()
                        .iss_parameter_supported,
                    b
                ),
                None => assert_eq!(
                    l.parse_discovery(200, &doc(v)).unwrap_err().reason(),
                    Reason::KeysUnavailable,
                    "{flag}"
                ),
            }
        }
        let mut v = good.clone();
        v["issuer"] = json!("https://idp.example/");
        assert_eq!(
            l.parse_discovery(200, &doc(v)).unwrap_err().reason(),
            Reason::UnknownIssuer
        );
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove("token_endpoint");
        assert!(l.parse_discovery(200, &doc(v)).is_err());
        let mut v = good.clone();
        v["authorization_endpoint"] = json!("http://idp.example/auth");
        assert!(l.parse_discovery(200, &doc(v)).is_err());
        assert!(l.parse_discovery(500, &doc(good)).is_err());
        assert!(l.parse_discovery(200, b"not json").is_err());
    }

    #[test]
    fn one_discovery_document_serves_the_key_source_and_the_login() {
        use crate::jwks::{FetchKind, JwksSource, JwksState};
        let e = engine();
        let l = e.login().unwrap();
        let state = |iss: &str| {
            JwksState::new(
                JwksSource {
                    oidc_issuer: Some(iss.into()),
                    ..JwksSource::default()
                }
                .compile()
                .unwrap(),
            )
        };
        // keys that do not come from this document: the login fetches its own
        assert_eq!(l.discovery(None, NOW).unwrap(), DiscoveryStep::Own);
        let by_uri = JwksState::new(
            JwksSource {
                jwks_uri: Some("https://idp.example/jwks".into()),
                ..JwksSource::default()
            }
            .compile()
            .unwrap(),
        );
        assert_eq!(l.discovery(Some(&by_uri), NOW).unwrap(), DiscoveryStep::Own);
        let other = state("https://other.example");
        assert_eq!(l.discovery(Some(&other), NOW).unwrap(), DiscoveryStep::Own);
        // the same document: the key source fetches it, once, for both
        let mut s = state("https://idp.example");
        assert_eq!(
            l.discovery(Some(&s), NOW).unwrap(),
            DiscoveryStep::FetchKeys
        );
        let req = s.poll(NOW).unwrap();
        assert_eq!(req.kind, FetchKind::Discovery);
        assert_eq!(req.url, l.discovery_url());
        assert_eq!(l.discovery(Some(&s), NOW).unwrap(), DiscoveryStep::Wait);
        let doc = json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks",
                         "authorization_endpoint": "https://idp.example/auth",
                         "token_endpoint": "https://idp.example/token",
                         "authorization_response_iss_parameter_supported": true});
        s.on_response(&req, 200, None, doc.to_string().as_bytes(), NOW)
            .unwrap();
        let DiscoveryStep::Ready(d) = l.discovery(Some(&s), NOW).unwrap() else {
            panic!("the key source's document")
        };
        assert_eq!(d.token_endpoint, "https://idp.example/token");
        assert!(d.iss_parameter_supported);
        // the key source goes on to the JWKS, not to a second discovery
        assert_eq!(s.poll(NOW).unwrap().kind, FetchKind::Jwks);
        assert!(matches!(
            l.discovery(Some(&s), NOW).unwrap(),
            DiscoveryStep::Ready(_)
        ));
        // the key source's fetch failed: 503 now (it retries with backoff), no fetch of our own
        let mut s = state("https://idp.example");
        s.poll(NOW).unwrap();
        s.on_failure(NOW);
        assert_eq!(
            l.discovery(Some(&s), NOW + 1).unwrap_err().reason(),
            Reason::KeysUnavailable
        );
        assert_eq!(
            l.discovery(Some(&s), NOW + 5).unwrap(),
            DiscoveryStep::FetchKeys
        );
        // a document good for keys but not for a login (no authorization endpoint)
        let mut s = state("https://idp.example");
        let req = s.poll(NOW).unwrap();
        let keys_only =
            json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks"});
        s.on_response(&req, 200, None, keys_only.to_string().as_bytes(), NOW)
            .unwrap();
        assert_eq!(
            l.discovery(Some(&s), NOW).unwrap_err().reason(),
            Reason::KeysUnavailable
        );
    }

    #[test]
    fn start_checks_rd_and_asks_consent_for_offline_access() {
        let e = engine();
        let l = e.login().unwrap();
        let s = l
            .start(
                &disco(),
                e.redirects(),
                "rd=%2Fadmin%3Fa%3D1",
                &[7; 64],
                NOW,
            )
            .unwrap();
        assert!(s.location.starts_with("https://idp.example/auth?"));
        assert!(s.location.ends_with("&prompt=consent"));
        assert!(s.location.contains("scope=openid+email+offline_access"));
        let cookie = s.set_cookie.split(';').next().unwrap();
        let (_, att) = l
            .open_callback(
                &format!("code=c&state={}", s.state),
                cookie,
                &disco(),
                NOW + 1,
            )
            .unwrap();
        assert_eq!(att.return_to, "/admin?a=1");
        for rd in [
            "https%3A%2F%2Fevil.example%2F",
            "%2F%2Fevil.example",
            "javascript%3Aalert(1)",
        ] {
            let err = l
                .start(&disco(), e.redirects(), &format!("rd={rd}"), &[7; 64], NOW)
                .unwrap_err();
            assert_eq!(err.reason(), Reason::UnsafeRedirect, "{rd}");
        }
        let s = l.start(&disco(), e.redirects(), "", &[8; 64], NOW).unwrap();
        let cookie = s.set_cookie.split(';').next().unwrap();
        let (_, att) = l
            .open_callback(&format!("code=c&state={}", s.state), cookie, &disco(), NOW)
            .unwrap();
        assert_eq!(att.return_to, "/");
        // without offline_access, no prompt
        let mut v = config_value();
        v["login"]["scopes"] = json!(["openid"]);
        let e2 = engine_from(&v).unwrap();
        let s = e2
            .login()
            .unwrap()
            .start(&disco(), e2.redirects(), "", &[8; 64], NOW)
            .unwrap();
        assert!(!s.location.contains("prompt="));
    }

    #[test]
    fn callback_needs_its_attempt_cookie() {
        let e = engine();
        let l = e.login().unwrap();
        let s = l.start(&disco(), e.redirects(), "", &[7; 64], NOW).unwrap();
        let cookie = s.set_cookie.split(';').next().unwrap().to_string();
        let other = l.start(&disco(), e.redirects(), "", &[9; 64], NOW).unwrap();
        let q = format!("code=c&state={}", s.state);
        // no cookie; another attempt's cookie only; wrong iss
        assert_eq!(
            l.open_callback(&q, "a=b", &disco(), NOW)
                .unwrap_err()
                .reason(),
            Reason::LoginMismatch
        );
        let other_cookie = other.set_cookie.split(';').next().unwrap();
        assert_eq!(
            l.open_callback(&q, other_cookie, &disco(), NOW)
                .unwrap_err()
                .reason(),
            Reason::LoginMismatch
        );
        // RFC 9207: a provider that advertises `iss` in authorization responses must send it
        let strict = Discovery {
            iss_parameter_supported: true,
            ..disco()
        };
        let e = l.open_callback(&q, &cookie, &strict, NOW).unwrap_err();
        assert_eq!(e.reason(), Reason::LoginMismatch);
        assert_eq!(e.http_status(), 401);
        assert!(e.message().contains("RFC 9207"), "{}", e.message());
        // with or without that promise, a wrong iss is refused and the right one accepted
        for d in [disco(), strict] {
            let evil = format!("{q}&iss=https%3A%2F%2Fevil");
            let e = l.open_callback(&evil, &cookie, &d, NOW).unwrap_err();
            assert_eq!(e.reason(), Reason::UnknownIssuer);
            let good = format!("{q}&iss=https%3A%2F%2Fidp.example");
            assert!(l.open_callback(&good, &cookie, &d, NOW).is_ok());
        }
        // both attempts' cookies in one header: each callback finds its own
        let both = format!("{cookie}; {other_cookie}");
        assert!(l.open_callback(&q, &both, &disco(), NOW).is_ok());
        let clear = l.clear_attempt_cookie(&s.state);
        assert!(clear.starts_with(&format!("edgegate_login_{}=;", s.state)));
        assert!(clear.contains("Max-Age=0"));
        assert_eq!(attempt_states(&both).len(), 2);
    }

    #[test]
    fn token_requests() {
        let e = engine();
        let l = e.login().unwrap();
        let r = l
            .token_request(
                &disco(),
                Grant::Code {
                    code: "c1",
                    verifier: "v1",
                },
                None,
            )
            .unwrap();
        assert_eq!(r.url, "https://idp.example/token");
        let auth = r
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.strip_prefix("Basic ").unwrap())
            .unwrap();
        // RFC 6749 2.3.1: both parts form-urlencoded
        assert_eq!(decoded, b"edge:s%3Acret%2F%2B");
        let body: Vec<(String, String)> = form_urlencoded::parse(r.body.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| body.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some("authorization_code"));
        assert_eq!(get("code_verifier"), Some("v1"));
        assert_eq!(
            get("redirect_uri"),
            Some("https://app.example.com/auth/callback")
        );
        assert_eq!(get("client_secret"), None);
        // the host's binding wins
        let r = l
            .token_request(
                &disco(),
                Grant::Refresh {
                    refresh_token: "rt",
                },
                Some("bound"),
            )
            .unwrap();
        assert!(r.body.contains("grant_type=refresh_token") && r.body.contains("refresh_token=rt"));
        let auth = &r
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(auth.strip_prefix("Basic ").unwrap())
                .unwrap(),
            b"edge:bound"
        );
        // client_secret_post: in the body, no Authorization
        let mut v = config_value();
        v["login"]["token_endpoint_auth_method"] = json!("client_secret_post");
        v["login"].as_object_mut().unwrap().remove("client_secret");
        let e2 = engine_from(&v).unwrap();
        let l2 = e2.login().unwrap();
        assert_eq!(
            l2.token_request(
                &disco(),
                Grant::Refresh {
                    refresh_token: "rt"
                },
                None
            )
            .unwrap_err()
            .reason(),
            Reason::Internal
        );
        let r = l2
            .token_request(
                &disco(),
                Grant::Refresh {
                    refresh_token: "rt",
                },
                Some("p/s"),
            )
            .unwrap();
        assert!(r.headers.iter().all(|(n, _)| n != "authorization"));
        assert!(r.body.contains("client_id=edge") && r.body.contains("client_secret=p%2Fs"));
    }

    #[test]
    fn token_responses() {
        let ok = Login::parse_token_response(
            200,
            br#"{"access_token":"a","token_type":"Bearer","id_token":"i","refresh_token":"r"}"#,
        )
        .unwrap();
        assert_eq!(ok.refresh_token.as_deref(), Some("r"));
        assert!(!format!("{ok:?}").contains("\"r\""));
        let e = Login::parse_token_response(
            400,
            br#"{"error":"invalid_grant","error_description":"<b>x"}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason(), Reason::LoginMismatch);
        assert!(e.message().contains("invalid_grant") && !e.message().contains('<'));
        assert_eq!(
            Login::parse_token_response(502, b"oops")
                .unwrap_err()
                .reason(),
            Reason::KeysUnavailable
        );
        assert_eq!(
            Login::parse_token_response(200, br#"{"token_type":"mac","id_token":"i"}"#)
                .unwrap_err()
                .reason(),
            Reason::LoginMismatch
        );
        assert!(Login::parse_token_response(200, b"[]").is_err());
    }

    fn id_token(claims: Value) -> String {
        let ring = KeyRing::compile(&[HmacKeyConfig {
            kid: "k1".into(),
            secret: Secret::new(IDP_SECRET),
        }])
        .unwrap();
        ring.sign(claims.to_string().as_bytes()).unwrap()
    }

    fn good_claims() -> Value {
        json!({"iss": "https://idp.example", "aud": "edge", "sub": "alice", "iat": NOW,
               "exp": NOW + 300, "nonce": "n1", "roles": ["admin"], "email": "a@example.com",
               "name": "Alice", "amr": ["pwd"], "scope": "openid offline_access",
               "at_hash": oidc::token_hash(crate::Alg::HS256, "at")})
    }

    fn verify(e: &Engine, token: &str, nonce: Option<&str>) -> IdTokenCheck {
        let l = e.login().unwrap();
        let p = l.provider(e.jwt()).unwrap();
        l.verify_id_token(p, None, e.backend(), token, nonce, Some("at"), NOW + 1)
    }

    #[test]
    fn id_tokens_are_checked_and_mapped() {
        let e = engine();
        let IdTokenCheck::Valid(id) = verify(&e, &id_token(good_claims()), Some("n1")) else {
            panic!("valid")
        };
        assert_eq!(id.subject, "alice");
        assert_eq!(id.roles, vec!["admin"]);
        assert_eq!(id.amr, vec!["pwd"]);
        assert_eq!(id.provider, "op");
        assert!(id.scopes.is_empty(), "login scopes are not permissions");
        // refresh: no nonce expected; a token without one passes
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove("nonce");
        assert!(matches!(
            verify(&e, &id_token(c), None),
            IdTokenCheck::Valid(_)
        ));
        let cases: Vec<(&str, Value, Reason)> = vec![
            ("nonce", json!("n2"), Reason::LoginMismatch),
            ("aud", json!("other"), Reason::WrongAudience),
            ("iss", json!("https://evil"), Reason::UnknownIssuer),
            ("exp", json!(NOW - 100), Reason::TokenExpired),
            (
                "at_hash",
                json!("AAAAAAAAAAAAAAAAAAAAAA"),
                Reason::LoginMismatch,
            ),
        ];
        for (field, value, reason) in cases {
            let mut c = good_claims();
            c[field] = value.clone();
            match verify(&e, &id_token(c), Some("n1")) {
                IdTokenCheck::Invalid(err) => assert_eq!(err.reason(), reason, "{field}={value}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        // a forged signature
        let mut t = id_token(good_claims());
        t.pop();
        t.push('A');
        assert!(matches!(
            verify(&e, &t, Some("n1")),
            IdTokenCheck::Invalid(_)
        ));
        // alg none
        let none = format!(
            "{}.{}.",
            b64::encode(br#"{"alg":"none"}"#),
            b64::encode(good_claims().to_string())
        );
        assert!(matches!(
            verify(&e, &none, Some("n1")),
            IdTokenCheck::Invalid(_)
        ));
    }

    #[test]
    fn id_tokens_obey_the_providers_required_claims_and_max_lifetime() {
        let mut v = config_value();
        v["jwt"]["providers"][0]["required_claims"] = json!(["email", "amr"]);
        v["jwt"]["providers"][0]["max_lifetime_seconds"] = json!(300);
        let e = engine_from(&v).unwrap();
        assert!(matches!(
            verify(&e, &id_token(good_claims()), Some("n1")),
            IdTokenCheck::Valid(_)
        ));
        let reason = |c: Value, nonce: Option<&str>| match verify(&e, &id_token(c), nonce) {
            IdTokenCheck::Invalid(err) => err.reason(),
            other => panic!("{other:?}"),
        };
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove("email");
        assert_eq!(reason(c.clone(), Some("n1")), Reason::MissingClaim);
        // on refresh too
        c.as_object_mut().unwrap().remove("nonce");
        assert_eq!(reason(c, None), Reason::MissingClaim);
        let mut c = good_claims();
        c["exp"] = json!(NOW + 301);
        assert_eq!(reason(c.clone(), Some("n1")), Reason::LifetimeTooLong);
        c.as_object_mut().unwrap().remove("nonce");
        assert_eq!(reason(c, None), Reason::LifetimeTooLong);
        // without the limits the same tokens pass
        let mut c = good_claims();
        c["exp"] = json!(NOW + 301);
        c.as_object_mut().unwrap().remove("email");
        assert!(matches!(
            verify(&engine(), &id_token(c), Some("n1")),
            IdTokenCheck::Valid(_)
        ));
    }

    const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    const TENANT_A: &str = "3c4b8f1e-5d2a-4e7b-9f61-0a2b3c4d5e6f";
    const TENANT_B: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
    const ORGS_DISCOVERY: &str =
        "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration";

    fn entra_issuer(tenant: &str) -> String {
        TEMPLATE.replace("{tenantid}", tenant)
    }

    /// A multi-tenant (Entra ID `organizations`) provider allowing `tenants`.
    fn multi_tenant(tenants: Value) -> Value {
        let mut v = config_value();
        v["jwt"]["providers"][0]["issuer"] = json!(TEMPLATE);
        v["jwt"]["providers"][0]["allowed_tenants"] = tenants;
        v["login"]["discovery_url"] = json!(ORGS_DISCOVERY);
        v
    }

    fn entra_claims(iss_tenant: &str, tid: Option<&str>) -> Value {
        let mut c = good_claims();
        c["iss"] = json!(entra_issuer(iss_tenant));
        if let Some(t) = tid {
            c["tid"] = json!(t);
        }
        c
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

    #[test]
    fn multi_tenant_discovery_accepts_the_template_only_when_configured() {
        let doc = |iss: &str| {
            json!({"issuer": iss,
                   "authorization_endpoint": "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
                   "token_endpoint": "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"})
            .to_string()
            .into_bytes()
        };
        let e = engine_from(&multi_tenant(json!([TENANT_A]))).unwrap();
        let l = e.login().unwrap();
        assert!(l.parse_discovery(200, &doc(TEMPLATE)).is_ok());
        // a tenant's own document is not the configured (template) issuer
        assert_eq!(
            l.parse_discovery(200, &doc(&entra_issuer(TENANT_A)))
                .unwrap_err()
                .reason(),
            Reason::UnknownIssuer
        );
        // a provider configured with one tenant's issuer refuses the template document
        let mut v = config_value();
        v["jwt"]["providers"][0]["issuer"] = json!(entra_issuer(TENANT_A));
        let single = engine_from(&v).unwrap();
        let sl = single.login().unwrap();
        assert_eq!(
            sl.discovery_url(),
            format!(
                "{}/.well-known/openid-configuration",
                entra_issuer(TENANT_A)
            )
        );
        assert_eq!(
            sl.parse_discovery(200, &doc(TEMPLATE))
                .unwrap_err()
                .reason(),
            Reason::UnknownIssuer
        );
        assert!(sl
            .parse_discovery(200, &doc(&entra_issuer(TENANT_A)))
            .is_ok());
    }

    #[test]
    fn multi_tenant_id_tokens_and_jwts_need_iss_equal_to_the_template_with_their_allowed_tid() {
        let e = engine_from(&multi_tenant(json!([TENANT_A]))).unwrap();
        let jwt = |c: Value| {
            e.jwt().check(
                &id_token(c),
                &crate::verifier::NoRemoteKeys,
                e.backend(),
                NOW + 1,
            )
        };
        // accepted: iss = template with tid, tid allowed (also upper-case in the allow-list)
        let good = entra_claims(TENANT_A, Some(TENANT_A));
        assert!(matches!(
            verify(&e, &id_token(good.clone()), Some("n1")),
            IdTokenCheck::Valid(_)
        ));
        assert!(matches!(
            jwt(good.clone()),
            crate::verifier::JwtCheck::Valid(_)
        ));
        let upper = engine_from(&multi_tenant(json!([TENANT_A.to_ascii_uppercase()]))).unwrap();
        assert!(matches!(
            verify(&upper, &id_token(good.clone()), Some("n1")),
            IdTokenCheck::Valid(_)
        ));
        // refused: tid mismatch, tenant not allowed, no tid, literal template as iss,
        // another issuer shape
        let cases: Vec<(Value, Reason)> = vec![
            (
                entra_claims(TENANT_A, Some(TENANT_B)),
                Reason::UnknownIssuer,
            ),
            (
                entra_claims(TENANT_B, Some(TENANT_A)),
                Reason::UnknownIssuer,
            ),
            (
                entra_claims(TENANT_B, Some(TENANT_B)),
                Reason::UnknownIssuer,
            ),
            (entra_claims(TENANT_A, None), Reason::MissingClaim),
            (
                entra_claims("{tenantid}", Some("{tenantid}")),
                Reason::UnknownIssuer,
            ),
            (entra_claims("", Some("")), Reason::UnknownIssuer),
            (
                entra_claims(&format!("{TENANT_A}/x"), Some(&format!("{TENANT_A}/x"))),
                Reason::UnknownIssuer,
            ),
        ];
        for (c, reason) in cases {
            match verify(&e, &id_token(c.clone()), Some("n1")) {
                IdTokenCheck::Invalid(err) => assert_eq!(err.reason(), reason, "login {c}"),
                other => panic!("login {c}: {other:?}"),
            }
            match jwt(c.clone()) {
                crate::verifier::JwtCheck::Invalid { error, .. } => {
                    assert_eq!(error.reason(), reason, "jwt {c}")
                }
                other => panic!("jwt {c}: {other:?}"),
            }
        }
        let mut c = good.clone();
        c["iss"] = json!("https://idp.example");
        assert!(matches!(
            verify(&e, &id_token(c), Some("n1")),
            IdTokenCheck::Invalid(_)
        ));
        let mut c = good.clone();
        c["tid"] = json!(7);
        assert!(matches!(
            verify(&e, &id_token(c), Some("n1")),
            IdTokenCheck::Invalid(_)
        ));
        // "*": any well-formed tenant, still iss = template with tid
        let any = engine_from(&multi_tenant(json!(["*"]))).unwrap();
        assert!(matches!(
            verify(
                &any,
                &id_token(entra_claims(TENANT_B, Some(TENANT_B))),
                Some("n1")
            ),
            IdTokenCheck::Valid(_)
        ));
        match verify(
            &any,
            &id_token(entra_claims(TENANT_A, Some(TENANT_B))),
            Some("n1"),
        ) {
            IdTokenCheck::Invalid(err) => assert_eq!(err.reason(), Reason::UnknownIssuer),
            other => panic!("{other:?}"),
        }
        // a provider with one tenant's exact issuer does not accept other tenants (no template)
        let mut v = config_value();
        v["jwt"]["providers"][0]["issuer"] = json!(entra_issuer(TENANT_A));
        let single = engine_from(&v).unwrap();
        assert!(matches!(
            verify(
                &single,
                &id_token(entra_claims(TENANT_A, Some(TENANT_A))),
                Some("n1")
            ),
            IdTokenCheck::Valid(_)
        ));
        match verify(
            &single,
            &id_token(entra_claims(TENANT_B, Some(TENANT_B))),
            Some("n1"),
        ) {
            IdTokenCheck::Invalid(err) => assert_eq!(err.reason(), Reason::UnknownIssuer),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_tenants_own_provider_wins_over_the_template() {
        let mut v = multi_tenant(json!(["*"]));
        let mut own = v["jwt"]["providers"][0].clone();
        own["name"] = json!("tenant-a");
        own["issuer"] = json!(entra_issuer(TENANT_A));
        own.as_object_mut().unwrap().remove("allowed_tenants");
        v["jwt"]["providers"] = json!([v["jwt"]["providers"][0].clone(), own]);
        let e = engine_from(&v).unwrap();
        let provider_of = |tenant: &str| match e.jwt().check(
            &id_token(entra_claims(tenant, Some(tenant))),
            &crate::verifier::NoRemoteKeys,
            e.backend(),
            NOW + 1,
        ) {
            crate::verifier::JwtCheck::Valid(id) => id.provider,
            other => panic!("{other:?}"),
        };
        assert_eq!(provider_of(TENANT_A), "tenant-a");
        assert_eq!(provider_of(TENANT_B), "op");
    }

    #[test]
    fn multi_tenant_callback_iss_must_be_an_allowed_tenant() {
        let e = engine_from(&multi_tenant(json!([TENANT_A]))).unwrap();
        let l = e.login().unwrap();
        let s = l.start(&disco(), e.redirects(), "", &[7; 64], NOW).unwrap();
        let cookie = s.set_cookie.split(';').next().unwrap().to_string();
        let q = |iss: &str| {
            format!(
                "code=c&state={}&iss={}",
                s.state,
                form_urlencoded::byte_serialize(iss.as_bytes()).collect::<String>()
            )
        };
        assert!(l
            .open_callback(&q(&entra_issuer(TENANT_A)), &cookie, &disco(), NOW)
            .is_ok());
        for bad in [
            entra_issuer(TENANT_B),
            TEMPLATE.to_string(),
            "https://evil".into(),
        ] {
            assert_eq!(
                l.open_callback(&q(&bad), &cookie, &disco(), NOW)
                    .unwrap_err()
                    .reason(),
                Reason::UnknownIssuer,
                "{bad}"
            );
        }
    }

    #[test]
    fn remote_keys_are_waited_for_and_refetched_on_unknown_kid() {
        let mut v = config_value();
        v["jwt"]["providers"][0] = json!({
            "name": "op", "issuer": "https://idp.example", "algorithms": ["HS256"],
            "remote_jwks": {"oidc_issuer": "https://idp.example"}
        });
        // HS256 from a remote JWKS is refused by the provider compile; use RS256 then.
        v["jwt"]["providers"][0]["algorithms"] = json!(["RS256"]);
        let e = engine_from(&v).unwrap();
        let l = e.login().unwrap();
        let p = l.provider(e.jwt()).unwrap();
        let token = format!(
            "{}.{}.{}",
            b64::encode(br#"{"alg":"RS256","kid":"new"}"#),
            b64::encode(good_claims().to_string()),
            b64::encode([0u8; 256])
        );
        assert!(matches!(
            l.verify_id_token(p, None, e.backend(), &token, Some("n1"), None, NOW),
            IdTokenCheck::NeedKeys
        ));
        let doc = format!(
            "{{\"keys\":[{}]}}",
            crate::backend::test_keys::rsa_jwk("old", 2048)
        );
        let set = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        assert!(matches!(
            l.verify_id_token(p, Some(&set), e.backend(), &token, Some("n1"), None, NOW),
            IdTokenCheck::UnknownKid(_)
        ));
    }

    fn sessions_of(e: &Engine) -> &Sessions {
        e.sessions().unwrap()
    }

    fn oidc_identity() -> Identity {
        let mut id = Identity::new("alice", CredentialKind::Jwt, "op");
        id.roles = vec!["admin".into()];
        id
    }

    /// The cookies of a fresh login at `at`, as a `Cookie` header.
    fn logged_in(e: &Engine, at: u64, with_refresh: bool) -> String {
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

    #[test]
    fn refresh_cookie_seals_opens_rotates_and_refuses_tampering() {
        let e = engine();
        let l = e.login().unwrap();
        let v = l
            .seal_refresh("rt-1", "alice", Some("id.tok.en"), &[5; 12], NOW)
            .unwrap()
            .unwrap();
        assert!(v.starts_with("r2."), "the first key encrypts");
        assert!(!v.contains("rt-1"));
        let r = l.open_refresh(&v, NOW + 10).unwrap();
        assert_eq!(r.refresh_token, "rt-1");
        assert_eq!(r.subject, "alice");
        assert_eq!(r.id_token.as_deref(), Some("id.tok.en"));
        assert!(!format!("{r:?}").contains("rt-1"));
        // another nonce, another ciphertext
        let v2 = l
            .seal_refresh("rt-1", "alice", None, &[6; 12], NOW)
            .unwrap()
            .unwrap();
        assert_ne!(v, v2);
        // every byte flipped is refused
        let (kid, data) = v.split_once('.').unwrap();
        let raw = b64::decode(data).unwrap();
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 1;
            let forged = format!("{kid}.{}", b64::encode(&t));
            assert_eq!(
                l.open_refresh(&forged, NOW).unwrap_err().reason(),
                Reason::SessionInvalid,
                "byte {i}"
            );
        }
        // the kid is bound (AAD): relabelled under the other key, it fails
        assert!(l.open_refresh(&format!("r1.{data}"), NOW).is_err());
        assert!(l.open_refresh(&format!("zz.{data}"), NOW).is_err());
        assert!(l.open_refresh("garbage", NOW).is_err());
        assert!(l
            .open_refresh(&format!("{kid}.{}", b64::encode([0u8; 20])), NOW)
            .is_err());
        assert_eq!(
            l.open_refresh(&v, NOW + REFRESH_LIFETIME_SECONDS)
                .unwrap_err()
                .reason(),
            Reason::SessionExpired
        );
        // rotation: a cookie of the old key r1 still opens once r1 is second; not once removed
        let mut old = config_value();
        old["login"]["refresh_keys"] = json!([{"kid": "r1", "secret": key(1)}]);
        let e_old = engine_from(&old).unwrap();
        let old_cookie = e_old
            .login()
            .unwrap()
            .seal_refresh("rt-0", "alice", None, &[1; 12], NOW)
            .unwrap()
            .unwrap();
        assert_eq!(
            l.open_refresh(&old_cookie, NOW).unwrap().refresh_token,
            "rt-0"
        );
        let mut new = config_value();
        new["login"]["refresh_keys"] = json!([{"kid": "r2", "secret": key(2)}]);
        let e_new = engine_from(&new).unwrap();
        assert!(e_new
            .login()
            .unwrap()
            .open_refresh(&old_cookie, NOW)
            .is_err());
        // same kid, another key: refused
        let mut other = config_value();
        other["login"]["refresh_keys"] = json!([{"kid": "r2", "secret": key(9)}]);
        let e_other = engine_from(&other).unwrap();
        assert!(e_other.login().unwrap().open_refresh(&v, NOW).is_err());
    }

    #[test]
    fn refresh_cookie_stays_small() {
        let e = engine();
        let l = e.login().unwrap();
        let big_id_token = "x".repeat(4000);
        let v = l
            .seal_refresh("rt-1", "alice", Some(&big_id_token), &[5; 12], NOW)
            .unwrap()
            .unwrap();
        assert!(v.len() <= MAX_REFRESH_COOKIE_BYTES);
        assert_eq!(
            l.open_refresh(&v, NOW).unwrap().id_token,
            None,
            "the hint is dropped"
        );
        let huge = "r".repeat(4000);
        assert_eq!(
            l.seal_refresh(&huge, "alice", None, &[5; 12], NOW).unwrap(),
            None
        );
        // without refresh keys nothing is stored
        let mut v = config_value();
        v["login"].as_object_mut().unwrap().remove("refresh_keys");
        let e2 = engine_from(&v).unwrap();
        let l2 = e2.login().unwrap();
        assert!(!l2.refresh_enabled());
        let set = l2
            .establish(
                sessions_of(&e2),
                &oidc_identity(),
                Some("rt"),
                None,
                &[1; 12],
                NOW,
            )
            .unwrap();
        assert!(set[1].contains("Max-Age=0"), "{set:?}");
    }

    #[test]
    fn renewal_decision() {
        let e = engine();
        let l = e.login().unwrap();
        let s = sessions_of(&e);
        // lifetime 400 s: renew from 300 s on
        let cookies = logged_in(&e, NOW, true);
        assert!(matches!(l.renewal(s, &cookies, NOW + 299), Renewal::Keep));
        match l.renewal(s, &cookies, NOW + 300) {
            Renewal::Renew { refresh, current } => {
                assert_eq!(refresh.refresh_token, "rt-1");
                assert_eq!(current.unwrap().identity.subject, "alice");
            }
            Renewal::Keep => panic!("last quarter"),
        }
        // expired, or dropped by the browser: renew without a current session
        assert!(matches!(
            l.renewal(s, &cookies, NOW + 1000),
            Renewal::Renew { current: None, .. }
        ));
        let only_refresh: String = cookies
            .split("; ")
            .filter(|c| c.starts_with("edgegate_session_refresh="))
            .collect();
        assert!(matches!(
            l.renewal(s, &only_refresh, NOW + 10),
            Renewal::Renew { current: None, .. }
        ));
        // no refresh cookie, or a broken one: nothing to do
        let no_refresh = logged_in(&e, NOW, false);
        assert!(matches!(
            l.renewal(s, &no_refresh, NOW + 350),
            Renewal::Keep
        ));
        let broken = format!("{no_refresh}; edgegate_session_refresh=r2.AAAA");
        assert!(matches!(l.renewal(s, &broken, NOW + 350), Renewal::Keep));
        // a magic-link session is not renewed by a refresh cookie
        let mut magic = oidc_identity();
        magic.credential = CredentialKind::MagicLink;
        let m = s.seal(&magic, NOW).unwrap();
        let refresh = only_refresh.clone();
        let mixed = format!("edgegate_session={m}; {refresh}");
        assert!(matches!(l.renewal(s, &mixed, NOW + 350), Renewal::Keep));
        // another subject's refresh cookie does not renew this session
        let bob = l
            .seal_refresh("rt-b", "bob", None, &[4; 12], NOW)
            .unwrap()
            .unwrap();
        let session_only: String = cookies
            .split("; ")
            .filter(|c| c.starts_with("edgegate_session="))
            .collect();
        let swapped = format!("{session_only}; edgegate_session_refresh={bob}");
        assert!(matches!(l.renewal(s, &swapped, NOW + 350), Renewal::Keep));
    }

    #[test]
    fn renewed_identity_rules() {
        let e = engine();
        let l = e.login().unwrap();
        let s = sessions_of(&e);
        let refresh = RefreshState {
            refresh_token: "rt".into(),
            subject: "alice".into(),
            id_token: None,
            expires_at: NOW + 100,
        };
        let value = s.seal(&oidc_identity(), NOW).unwrap();
        let current = s.open_session(&value, NOW).unwrap();
        let id = l.renewed_identity(&refresh, Some(&current), None).unwrap();
        assert_eq!(id.credential, CredentialKind::Jwt);
        assert_eq!(id.roles, vec!["admin"]);
        let mut fresh = oidc_identity();
        fresh.roles = vec!["staff".into()];
        assert_eq!(
            l.renewed_identity(&refresh, Some(&current), Some(fresh))
                .unwrap()
                .roles,
            vec!["staff"]
        );
        let bob = Identity::new("bob", CredentialKind::Jwt, "op");
        assert_eq!(
            l.renewed_identity(&refresh, None, Some(bob))
                .unwrap_err()
                .reason(),
            Reason::LoginMismatch
        );
        assert_eq!(
            l.renewed_identity(&refresh, None, None)
                .unwrap_err()
                .reason(),
            Reason::SessionExpired
        );
    }

    #[test]
    fn a_provider_outage_keeps_a_valid_session_a_refusal_ends_it() {
        let e = engine();
        let l = e.login().unwrap();
        let outage = Error::new(Reason::KeysUnavailable, "token endpoint down");
        let refused = Error::new(Reason::LoginMismatch, "invalid_grant");
        assert_eq!(
            l.after_failed_renewal(&outage, true),
            AfterFailure::KeepSession
        );
        assert_eq!(
            l.after_failed_renewal(&outage, false),
            AfterFailure::EndSession
        );
        assert_eq!(
            l.after_failed_renewal(&refused, true),
            AfterFailure::EndSession
        );
        let other = Error::new(Reason::BadSignature, "x");
        assert_eq!(
            l.after_failed_renewal(&other, true),
            AfterFailure::EndSession
        );
    }

    #[test]
    fn logout_clears_everything_and_hints_the_provider() {
        let e = engine();
        let l = e.login().unwrap();
        let s = sessions_of(&e);
        let cookies = format!(
            "{}; edgegate_login_abc=x; edgegate_login_de-f=y",
            logged_in(&e, NOW, true)
        );
        let r = l.logout(s, Some(&disco()), &cookies, NOW + 5);
        assert!(r.location.starts_with("https://idp.example/logout?"));
        assert!(r.location.contains("id_token_hint=id.tok.en"));
        assert!(r
            .location
            .contains("post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fbye"));
        assert!(r.location.contains("client_id=edge"));
        assert_eq!(r.set_cookies.len(), 4);
        assert!(r.set_cookies.iter().all(|c| c.contains("Max-Age=0")));
        assert!(r.set_cookies[0].starts_with("edgegate_session="));
        assert!(r.set_cookies[1].starts_with("edgegate_session_refresh="));
        // no end_session_endpoint: straight to post_logout_redirect_uri
        let mut d = disco();
        d.end_session_endpoint = None;
        assert_eq!(
            l.logout(s, Some(&d), "", NOW).location,
            "https://app.example.com/bye"
        );
        let mut v = config_value();
        v["login"]
            .as_object_mut()
            .unwrap()
            .remove("post_logout_redirect_uri");
        let e2 = engine_from(&v).unwrap();
        let r = e2.login().unwrap().logout(sessions_of(&e2), None, "", NOW);
        assert_eq!(r.location, "/");
    }

    #[test]
    fn whoami_lists_the_identity() {
        let mut id = oidc_identity();
        id.credential = CredentialKind::Session;
        id.expires_at = Some(NOW);
        let v: Value = serde_json::from_str(&whoami_json(&id)).unwrap();
        assert_eq!(v["subject"], "alice");
        assert_eq!(v["roles"], json!(["admin"]));
        assert_eq!(v["credential"], "session");
        assert_eq!(v["provider"], "op");
        assert_eq!(v["expires_at"], json!(NOW));
    }
}
