//! The login routes and session renewal as one sans-IO machine, the way [`crate::step`] is for a
//! request: the host starts it ([`crate::Engine::login_route`], [`crate::Engine::renewal_due`]),
//! does what each [`LoginStep`] asks (fetch the discovery document, POST to the token endpoint,
//! run [`crate::Engine::check_id_token`] or [`crate::Engine::identify`] through its own step
//! driver) and resumes the paused flow with the answer, until a [`LoginReply`] or a
//! [`RenewalOutcome`]. Every protocol decision, every status, page and log line of the login
//! lives here, so the worker and the Envoy filter answer alike; the hosts own only the I/O,
//! the random bytes, the clock and (for renewals) who waits for whose token request
//! ([`RenewalBoard`]).
//!
//! Flow order, as types:
//! - login: `NeedDiscovery` → `Reply(302 to the provider)`;
//! - callback: `NeedDiscovery` → `NeedTokens` → `NeedIdToken` → `Reply(302 to the return URL)`;
//! - logout: `NeedDiscovery` (a failure logs out locally) → `Reply(302)`;
//! - me: `NeedIdentity` → `Reply(200 JSON | refusal)`;
//! - renewal: `NeedDiscovery` → `NeedTokens` → (`NeedIdToken`) → `Renewed`.
//!
//! A paused flow carries the engine generation that started it; resumed on another engine (the
//! config changed meanwhile) it ends in a 500, fail closed.

use std::collections::HashMap;

use super::{AfterFailure, REFRESH_NONCE_BYTES};
use super::{Discovery, Grant, Login, RefreshState, Renewal, Route, TokenRequest, TokenResponse};
use crate::cache::TokenCache;
use crate::engine::{html_escape, Engine, LocalReply, Verdict};
use crate::error::{Error, Reason};
use crate::extractor::Request;
use crate::identity::{CredentialKind, Identity};
use crate::oidc::{self, Attempt, LOGIN_RANDOM_BYTES};
use crate::session::{find_cookie, Session};
use crate::step::IdTokenOutcome;
use crate::UnixTime;

/// Random bytes a host passes to start a flow (from its CSPRNG: `crypto.getRandomValues`,
/// WASI `random_get`, the OS).
pub const FLOW_RANDOM_BYTES: usize = LOGIN_RANDOM_BYTES;
const _: () = assert!(REFRESH_NONCE_BYTES <= FLOW_RANDOM_BYTES);

/// How loud a [`LogLine`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Warn,
}

/// A line for the host's log: never a token, a code or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub text: String,
}

impl LogLine {
    pub(super) fn info(text: String) -> Self {
        LogLine {
            level: LogLevel::Info,
            text,
        }
    }
    pub(super) fn warn(text: String) -> Self {
        LogLine {
            level: LogLevel::Warn,
            text,
        }
    }
}

/// The answer to a login route: send it (every `set-cookie` entry as its own header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub log: Option<LogLine>,
}

impl LoginReply {
    pub(super) fn new(status: u16, mut headers: Vec<(String, String)>, body: String) -> Self {
        headers.push(("cache-control".into(), "no-store".into()));
        LoginReply {
            status,
            headers,
            body,
            log: None,
        }
    }

    pub(super) fn redirect(location: String, set_cookies: Vec<String>) -> Self {
        let mut headers = vec![("location".to_string(), location)];
        headers.extend(
            set_cookies
                .into_iter()
                .map(|c| ("set-cookie".to_string(), c)),
        );
        Self::new(302, headers, String::new())
    }

    pub(super) fn method_not_allowed(allow: &str) -> Self {
        Self::new(405, vec![("allow".into(), allow.into())], String::new())
    }

    /// A refused login: a page for browsers, else JSON; no session cookie (`set_cookies` only
    /// delete cookies); logged with its reason.
    fn refused(html: bool, e: &Error, set_cookies: Vec<String>) -> Self {
        let mut headers: Vec<(String, String)> = Vec::new();
        let body = if html {
            headers.push(("content-type".into(), "text/html; charset=utf-8".into()));
            headers.push(("x-frame-options".into(), "DENY".into()));
            headers.push((
                "content-security-policy".into(),
                "default-src 'none'".into(),
            ));
            format!(
                "<!doctype html><meta charset=utf-8><title>Login failed</title>\
                 <h1>Login failed</h1><p>{}</p><p>Reason: <code>{}</code></p><p><a href=\"/\">Start again</a></p>",
                html_escape(e.message()),
                e.reason().code()
            )
        } else {
            headers.push(("content-type".into(), "application/json".into()));
            serde_json::json!({
                "error": "login_failed",
                "reason": e.reason().code(),
                "message": e.message(),
            })
            .to_string()
        };
        headers.extend(
            set_cookies
                .into_iter()
                .map(|c| ("set-cookie".to_string(), c)),
        );
        let mut reply = Self::new(e.http_status(), headers, body);
        reply.log = Some(LogLine::warn(format!(
            "login refused: {}: {}",
            e.reason().code(),
            e.message()
        )));
        reply
    }

    /// A 500 (the host or the config is broken, not the user): logged, never explained.
    fn internal(what: &str) -> Self {
        let mut reply = Self::new(
            500,
            vec![("content-type".into(), "application/json".into())],
            r#"{"error":"error","reason":"internal"}"#.into(),
        );
        reply.log = Some(LogLine::warn(format!("login: {what}")));
        reply
    }

    fn from_local(d: &LocalReply) -> Self {
        LoginReply {
            status: d.status,
            headers: d.headers.clone(),
            body: d.body.clone(),
            log: None,
        }
    }

    /// The `set-cookie` values of this reply.
    pub fn set_cookies(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.as_str())
    }
}

/// What a login flow needs next.
#[derive(Debug)]
pub enum LoginStep {
    /// Send this reply; the flow is over.
    Reply(LoginReply),
    /// The provider's discovery document (the host's cached copy, the key source's, or a fetch
    /// of [`Login::discovery_url`] checked by [`Login::parse_discovery`]).
    NeedDiscovery(AwaitDiscovery),
    /// POST [`AwaitTokens::request`] to the token endpoint.
    NeedTokens(AwaitTokens),
    /// Run [`Engine::check_id_token`] with [`AwaitIdToken::query`] to its end.
    NeedIdToken(AwaitIdToken),
    /// Run [`Engine::identify`] on the request to its end (`/auth/me`).
    NeedIdentity(AwaitIdentity),
    /// A renewal ended: share it ([`RenewalBoard::finish`]) and carry it out
    /// ([`Engine::apply_renewal`]).
    Renewed(RenewalOutcome),
}

/// The flow's state between steps (owned: it survives the host's await or callback).
struct Flow {
    generation: u64,
    html: bool,
    random: [u8; FLOW_RANDOM_BYTES],
    client_secret: Option<String>,
    /// `Set-Cookie` values every end of a callback carries (its attempt is over).
    clear: Vec<String>,
    stage: Stage,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("generation", &self.generation)
            .field("stage", &self.stage.name())
            .finish_non_exhaustive()
    }
}

enum Stage {
    Start {
        query: String,
    },
    Callback {
        query: String,
        cookies: String,
    },
    CallbackTokens {
        attempt: Attempt,
    },
    CallbackIdToken {
        attempt: Attempt,
        tokens: TokenResponse,
    },
    Logout {
        cookies: String,
    },
    Me,
    Renew {
        refresh: RefreshState,
        current: Option<Session>,
    },
    RenewTokens {
        refresh: RefreshState,
        current: Option<Session>,
    },
    RenewIdToken {
        refresh: RefreshState,
        current: Option<Session>,
        tokens: TokenResponse,
    },
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Start { .. } => "start",
            Stage::Callback { .. } => "callback",
            Stage::CallbackTokens { .. } => "callback_tokens",
            Stage::CallbackIdToken { .. } => "callback_id_token",
            Stage::Logout { .. } => "logout",
            Stage::Me => "me",
            Stage::Renew { .. } => "renew",
            Stage::RenewTokens { .. } => "renew_tokens",
            Stage::RenewIdToken { .. } => "renew_id_token",
        }
    }
}

/// Paused for the discovery document.
#[derive(Debug)]
pub struct AwaitDiscovery(Box<Flow>);
/// Paused for the token endpoint's response.
#[derive(Debug)]
pub struct AwaitTokens(Box<Flow>, TokenRequest);
/// Paused for an ID token's check.
#[derive(Debug)]
pub struct AwaitIdToken(Box<Flow>);
/// Paused for the identity of the request's credential.
#[derive(Debug)]
pub struct AwaitIdentity(Box<Flow>);

/// How a renewal ended: the `Set-Cookie` values of the renewed session, or why it failed.
/// Shared with the requests that waited for it ([`RenewalBoard`]).
pub type RenewalOutcome = Result<Vec<String>, Error>;

/// A renewal the request's cookies call for ([`Engine::renewal_due`]).
#[derive(Debug)]
pub struct DueRenewal {
    /// The refresh cookie's value: requests carrying the same one share one renewal.
    pub key: String,
    /// The request still has a valid session (a provider outage then keeps it).
    pub still_valid: bool,
    refresh: RefreshState,
    current: Option<Session>,
}

/// What a request carries on with after a renewal ([`Engine::apply_renewal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    /// `Set-Cookie` values for the response (the new session, or both cookies deleted).
    pub set_cookies: Vec<String>,
    /// The `Cookie` header the request is decided with (the renewed session in place of the
    /// old one, or both removed); `None`: unchanged.
    pub cookie_header: Option<String>,
    pub log: Option<LogLine>,
}

fn not_configured() -> Error {
    Error::new(Reason::Internal, "OIDC login is not configured")
}

fn query_of(path: &str) -> &str {
    path.split_once('?').map_or("", |(_, q)| q)
}

fn check_random(random: &[u8; FLOW_RANDOM_BYTES]) -> Result<(), Error> {
    if random.iter().all(|b| *b == 0) {
        return Err(Error::new(
            Reason::Internal,
            "the host's random source gave zeros; no login without randomness",
        ));
    }
    Ok(())
}

impl Engine {
    /// Starts the login route `req.path` names, `None` when it names none (or there is no
    /// `login` section). `random`: fresh bytes from the host's CSPRNG; `client_secret`: the
    /// host's secret binding, overriding `login.client_secret`. Refusals are pages for
    /// browsers ([`Request::wants_html`]), else JSON.
    pub fn login_route(
        &self,
        req: &Request<'_>,
        random: &[u8; FLOW_RANDOM_BYTES],
        client_secret: Option<&str>,
    ) -> Option<LoginStep> {
        let login = self.login()?;
        let route = login.route(req.path)?;
        let allowed: &[&str] = match route {
            Route::Login | Route::Me => &["GET", "HEAD"],
            Route::Callback => &["GET"],
            Route::Logout => &["GET", "POST"],
        };
        if !allowed.contains(&req.method) {
            return Some(LoginStep::Reply(LoginReply::method_not_allowed(
                &allowed.join(", "),
            )));
        }
        let query = query_of(req.path).to_string();
        let cookies = req.cookie_header();
        let mut flow = Flow {
            generation: self.generation(),
            html: req.wants_html(),
            random: *random,
            client_secret: client_secret.map(str::to_string),
            clear: Vec::new(),
            stage: Stage::Me,
        };
        flow.stage = match route {
            Route::Me => return Some(LoginStep::NeedIdentity(AwaitIdentity(Box::new(flow)))),
            Route::Logout => Stage::Logout { cookies },
            Route::Login => Stage::Start { query },
            Route::Callback => {
                // Whatever happens, the attempt named by the callback's state is over.
                if let Ok(cb) = oidc::parse_callback(&query) {
                    flow.clear.push(login.clear_attempt_cookie(&cb.state));
                }
                Stage::Callback { query, cookies }
            }
        };
        if let Err(e) = check_random(random) {
            return Some(flow.fail(e));
        }
        Some(LoginStep::NeedDiscovery(AwaitDiscovery(Box::new(flow))))
    }

    /// Whether a request to `path` with these cookies calls for a renewal with the refresh
    /// token now ([`Login::renewal`]); `None` when not (or without `login` and `session`
    /// sections). Never on the magic-link path: its POST sets a session of its own. A session
    /// cookie the verified-token `cache` holds is not due (sessions the login renews are cached
    /// only until their renewal is due), so a logged-in browser's requests open it once.
    pub fn renewal_due(
        &self,
        path: &str,
        cookie_header: &str,
        now: UnixTime,
        cache: &mut TokenCache,
    ) -> Option<DueRenewal> {
        let bare = path.split_once('?').map_or(path, |(p, _)| p);
        if cookie_header.is_empty() || self.magic_link_path() == Some(bare) {
            return None;
        }
        let login = self.login()?;
        let sessions = self.sessions()?;
        if let Some(value) = sessions.from_cookie_header(cookie_header) {
            let mut cached = |kind| cache.get(kind, value, now).is_some();
            if cached(CredentialKind::Session) || cached(CredentialKind::MagicLink) {
                return None;
            }
        }
        match login.renewal(sessions, cookie_header, now) {
            Renewal::Keep => None,
            Renewal::Renew { refresh, current } => Some(DueRenewal {
                key: find_cookie(cookie_header, login.refresh_cookie_name())
                    .unwrap_or_default()
                    .to_string(),
                still_valid: current.is_some(),
                refresh,
                current,
            }),
        }
    }

    /// Carries out a renewal's outcome on a request whose `Cookie` header is `cookie_header`
    /// (the request that renewed, or one that shared its outcome): the renewed session, or,
    /// when the provider refused, both cookies deleted; a provider outage with a still-valid
    /// session changes nothing ([`Login::after_failed_renewal`]).
    pub fn apply_renewal(
        &self,
        cookie_header: &str,
        outcome: &RenewalOutcome,
        still_valid: bool,
    ) -> Renewed {
        let unchanged = |log| Renewed {
            set_cookies: Vec::new(),
            cookie_header: None,
            log,
        };
        let (Some(login), Some(sessions)) = (self.login(), self.sessions()) else {
            return unchanged(None);
        };
        let session_name = sessions.cookie_name();
        let failed = |e: &Error, what: &str| {
            Some(LogLine::warn(format!(
                "session renewal failed, {what}: {}: {}",
                e.reason().code(),
                e.message()
            )))
        };
        match outcome {
            Ok(set) => {
                let value = set
                    .iter()
                    .filter_map(|c| cookie_pair(c))
                    .find(|(n, _)| *n == session_name)
                    .map(|(_, v)| v);
                Renewed {
                    set_cookies: set.clone(),
                    cookie_header: Some(rewrite_cookies(cookie_header, &[(session_name, value)])),
                    log: None,
                }
            }
            Err(e) if login.after_failed_renewal(e, still_valid) == AfterFailure::KeepSession => {
                unchanged(failed(e, "the session continues until it expires"))
            }
            Err(e) => Renewed {
                set_cookies: vec![sessions.clear_cookie_header(), login.clear_refresh_cookie()],
                cookie_header: Some(rewrite_cookies(
                    cookie_header,
                    &[(session_name, None), (login.refresh_cookie_name(), None)],
                )),
                log: failed(e, "the session ends"),
            },
        }
    }
}

impl DueRenewal {
    /// Starts the renewal (this request leads it: [`RenewalBoard::join`] said so).
    pub fn begin(
        self,
        engine: &Engine,
        random: &[u8; FLOW_RANDOM_BYTES],
        client_secret: Option<&str>,
    ) -> LoginStep {
        let flow = Flow {
            generation: engine.generation(),
            html: false,
            random: *random,
            client_secret: client_secret.map(str::to_string),
            clear: Vec::new(),
            stage: Stage::Renew {
                refresh: self.refresh,
                current: self.current,
            },
        };
        match check_random(random) {
            Ok(()) => LoginStep::NeedDiscovery(AwaitDiscovery(Box::new(flow))),
            Err(e) => flow.fail(e),
        }
    }
}

impl Flow {
    /// The flow's login section, on the engine that started it: a flow resumed on another
    /// engine (the config changed meanwhile) fails closed.
    fn login<'e>(&self, engine: &'e Engine) -> Result<&'e Login, Error> {
        if self.generation != engine.generation() {
            return Err(Error::new(
                Reason::Internal,
                "the configuration changed during the login; start again",
            ));
        }
        engine.login().ok_or_else(not_configured)
    }

    fn is_renewal(&self) -> bool {
        matches!(
            self.stage,
            Stage::Renew { .. } | Stage::RenewTokens { .. } | Stage::RenewIdToken { .. }
        )
    }

    /// Ends the flow with `e`: a refused login (no session; the callback's attempt cookie
    /// deleted), or a failed renewal.
    fn fail(self, e: Error) -> LoginStep {
        if self.is_renewal() {
            return LoginStep::Renewed(Err(e));
        }
        LoginStep::Reply(LoginReply::refused(self.html, &e, self.clear))
    }

    /// Continues with `stage`, or ends with the error.
    fn then(mut self, next: Result<Stage, Error>, pause: fn(Flow) -> LoginStep) -> LoginStep {
        match next {
            Ok(stage) => {
                self.stage = stage;
                pause(self)
            }
            Err(e) => self.fail(e),
        }
    }

    /// The `Set-Cookie` values of a new session for `identity`.
    fn establish(
        &self,
        engine: &Engine,
        identity: &Identity,
        refresh_token: Option<&str>,
        id_token: Option<&str>,
        now: UnixTime,
    ) -> Result<Vec<String>, Error> {
        let sessions = engine.sessions().ok_or_else(not_configured)?;
        let mut nonce = [0u8; REFRESH_NONCE_BYTES];
        nonce.copy_from_slice(&self.random[..REFRESH_NONCE_BYTES]);
        self.login(engine)?
            .establish(sessions, identity, refresh_token, id_token, &nonce, now)
    }

    /// The token request of `grant`.
    fn token_request(
        &self,
        engine: &Engine,
        d: &Discovery,
        grant: Grant<'_>,
    ) -> Result<TokenRequest, Error> {
        self.login(engine)?
            .token_request(d, grant, self.client_secret.as_deref())
    }

    /// The discovery document arrived: the next step of each flow.
    fn discovered(self, engine: &Engine, d: &Discovery, now: UnixTime) -> LoginStep {
        let login = match self.login(engine) {
            Ok(l) => l,
            Err(e) => return self.fail(e),
        };
        match &self.stage {
            Stage::Start { query } => {
                let mut random = [0u8; LOGIN_RANDOM_BYTES];
                random.copy_from_slice(&self.random[..LOGIN_RANDOM_BYTES]);
                match login.start(d, engine.redirects(), query, &random, now) {
                    Ok(s) => LoginStep::Reply(LoginReply::redirect(s.location, vec![s.set_cookie])),
                    Err(e) => self.fail(e),
                }
            }
            Stage::Callback { query, cookies } => {
                let opened =
                    login
                        .open_callback(query, cookies, d, now)
                        .and_then(|(cb, attempt)| {
                            let req =
                                self.token_request(engine, d, Grant::callback(&cb, &attempt))?;
                            Ok((req, attempt))
                        });
                match opened {
                    Ok((req, attempt)) => {
                        let mut flow = self;
                        flow.stage = Stage::CallbackTokens { attempt };
                        LoginStep::NeedTokens(AwaitTokens(Box::new(flow), req))
                    }
                    Err(e) => self.fail(e),
                }
            }
            Stage::Renew { refresh, .. } => {
                let grant = Grant::Refresh {
                    refresh_token: &refresh.refresh_token,
                };
                match self.token_request(engine, d, grant) {
                    Ok(req) => {
                        let mut flow = self;
                        if let Stage::Renew { refresh, current } =
                            std::mem::replace(&mut flow.stage, Stage::Me)
                        {
                            flow.stage = Stage::RenewTokens { refresh, current };
                        }
                        LoginStep::NeedTokens(AwaitTokens(Box::new(flow), req))
                    }
                    Err(e) => self.fail(e),
                }
            }
            _ => self.fail(lost()),
        }
    }

    /// The renewed session's cookies (the new refresh token, or the old one when the provider
    /// did not rotate it; the new ID token, or the old one for logout's hint).
    fn renewed(
        &self,
        engine: &Engine,
        (refresh, current, tokens): (&RefreshState, Option<&Session>, &TokenResponse),
        verified: Option<Identity>,
        now: UnixTime,
    ) -> LoginStep {
        let outcome = self
            .login(engine)
            .and_then(|l| l.renewed_identity(refresh, current, verified))
            .and_then(|identity| {
                let refresh_token = tokens
                    .refresh_token
                    .as_deref()
                    .unwrap_or(&refresh.refresh_token);
                let id_token = tokens.id_token.as_deref().or(refresh.id_token.as_deref());
                self.establish(engine, &identity, Some(refresh_token), id_token, now)
            });
        LoginStep::Renewed(outcome)
    }
}

fn lost() -> Error {
    Error::new(Reason::Internal, "the login flow lost its place")
}

impl AwaitDiscovery {
    /// Resumes with the discovery document (or why there is none).
    pub fn resume(
        self,
        engine: &Engine,
        discovery: Result<Discovery, Error>,
        now: UnixTime,
    ) -> LoginStep {
        let flow = self.0;
        let Stage::Logout { cookies } = &flow.stage else {
            return match discovery {
                Ok(d) => flow.discovered(engine, &d, now),
                Err(e) => flow.fail(e),
            };
        };
        // Without discovery (provider down), log out locally.
        let (disco, log) = match discovery {
            Ok(d) => (Some(d), None),
            Err(e) => (
                None,
                Some(LogLine::warn(format!(
                    "logout without the provider's end_session_endpoint: {}",
                    e.message()
                ))),
            ),
        };
        let login = flow.login(engine);
        let (Ok(login), Some(sessions)) = (login, engine.sessions()) else {
            return flow.fail(not_configured());
        };
        let r = login.logout(sessions, disco.as_ref(), cookies, now);
        let mut reply = LoginReply::redirect(r.location, r.set_cookies);
        reply.log = log;
        LoginStep::Reply(reply)
    }
}

impl AwaitTokens {
    /// The request to POST (`application/x-www-form-urlencoded`): URL, headers, body.
    pub fn request(&self) -> &TokenRequest {
        &self.1
    }

    /// Resumes with the token endpoint's response (`Ok((status, body))`, the body at most
    /// [`super::MAX_RESPONSE_BYTES`] + 1 bytes), or why there is none (connection failed,
    /// timed out, too large): safe to log.
    pub fn resume(
        self,
        engine: &Engine,
        response: Result<(u16, &[u8]), String>,
        now: UnixTime,
    ) -> LoginStep {
        let mut flow = self.0;
        let tokens = flow
            .login(engine)
            .and_then(|_| {
                response.map_err(|why| {
                    Error::new(
                        Reason::KeysUnavailable,
                        format!("the token endpoint could not be reached: {why}"),
                    )
                })
            })
            .and_then(|(status, body)| Login::parse_token_response(status, body));
        let tokens = match tokens {
            Ok(t) => t,
            Err(e) => return flow.fail(e),
        };
        match std::mem::replace(&mut flow.stage, Stage::Me) {
            Stage::CallbackTokens { attempt } => {
                let next = match tokens.id_token {
                    Some(_) => Ok(Stage::CallbackIdToken { attempt, tokens }),
                    None => Err(Error::new(
                        Reason::LoginMismatch,
                        "the token response has no id_token (is `openid` among the scopes?)",
                    )),
                };
                flow.then(next, |f| LoginStep::NeedIdToken(AwaitIdToken(Box::new(f))))
            }
            Stage::RenewTokens { refresh, current } if tokens.id_token.is_some() => {
                let next = Stage::RenewIdToken {
                    refresh,
                    current,
                    tokens,
                };
                flow.then(Ok(next), |f| {
                    LoginStep::NeedIdToken(AwaitIdToken(Box::new(f)))
                })
            }
            Stage::RenewTokens { refresh, current } => {
                flow.renewed(engine, (&refresh, current.as_ref(), &tokens), None, now)
            }
            _ => flow.fail(lost()),
        }
    }
}

/// What [`Engine::check_id_token`] is run with.
#[derive(Debug, Clone, Copy)]
pub struct IdTokenQuery<'a> {
    pub id_token: &'a str,
    /// The attempt's nonce at login; `None` on renewal (OIDC Core 12.2).
    pub nonce: Option<&'a str>,
    /// The access token of the same response (for `at_hash`).
    pub access_token: Option<&'a str>,
}

impl AwaitIdToken {
    /// The ID token to check, and how.
    pub fn query(&self) -> IdTokenQuery<'_> {
        let (tokens, nonce) = match &self.0.stage {
            Stage::CallbackIdToken { attempt, tokens } => {
                (Some(tokens), Some(attempt.nonce.as_str()))
            }
            Stage::RenewIdToken { tokens, .. } => (Some(tokens), None),
            _ => (None, None),
        };
        IdTokenQuery {
            id_token: tokens.and_then(|t| t.id_token.as_deref()).unwrap_or(""),
            nonce,
            access_token: tokens.and_then(|t| t.access_token.as_deref()),
        }
    }

    /// Resumes with the end of [`Engine::check_id_token`].
    pub fn resume(self, engine: &Engine, outcome: IdTokenOutcome, now: UnixTime) -> LoginStep {
        let flow = self.0;
        let identity = match outcome.and_then(|id| flow.login(engine).map(|_| id)) {
            Ok(id) => id,
            Err(e) => return flow.fail(e),
        };
        match &flow.stage {
            Stage::CallbackIdToken { attempt, tokens } => {
                let set = flow.establish(
                    engine,
                    &identity,
                    tokens.refresh_token.as_deref(),
                    tokens.id_token.as_deref(),
                    now,
                );
                match set {
                    Ok(mut set) => {
                        set.extend(flow.clear.iter().cloned());
                        let mut reply = LoginReply::redirect(attempt.return_to.clone(), set);
                        reply.log = Some(LogLine::info(format!(
                            "login of {:?} through {:?}",
                            identity.subject, identity.provider
                        )));
                        LoginStep::Reply(reply)
                    }
                    Err(e) => flow.fail(e),
                }
            }
            Stage::RenewIdToken {
                refresh,
                current,
                tokens,
            } => flow.renewed(
                engine,
                (refresh, current.as_ref(), tokens),
                Some(identity),
                now,
            ),
            _ => flow.fail(lost()),
        }
    }
}

impl AwaitIdentity {
    /// Resumes with the end of [`Engine::identify`]: the identity as JSON, or the refusal.
    pub fn resume(self, engine: &Engine, verdict: Verdict) -> LoginStep {
        if let Err(e) = self.0.login(engine) {
            return LoginStep::Reply(LoginReply::internal(e.message()));
        }
        LoginStep::Reply(match verdict {
            Verdict::Allow {
                identity: Some(id), ..
            } => LoginReply::new(
                200,
                vec![("content-type".into(), "application/json".into())],
                super::whoami_json(&id),
            ),
            Verdict::Reply(d) => LoginReply::from_local(&d),
            _ => LoginReply::internal("/auth/me ended without an identity"),
        })
    }
}

/// The name=value of a `Set-Cookie` header value.
fn cookie_pair(set_cookie: &str) -> Option<(&str, &str)> {
    set_cookie.split(';').next()?.split_once('=')
}

/// The `Cookie` header with `replace`d cookies (a value: set; `None`: removed).
fn rewrite_cookies(cookie_header: &str, replace: &[(&str, Option<&str>)]) -> String {
    let mut kept: Vec<String> = cookie_header
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split_once('=').map_or(*p, |(n, _)| n);
            !replace.iter().any(|(r, _)| *r == name)
        })
        .map(str::to_string)
        .collect();
    for (name, value) in replace {
        if let Some(v) = value {
            kept.push(format!("{name}={v}"));
        }
    }
    kept.join("; ")
}

/// Renewals by refresh cookie, in one isolate or VM (or, encoded, in the store the host shares
/// between them): a page's parallel requests all find the session due; one of them renews (a
/// rotated refresh token can be used once) and the others wait for its outcome, then reuse it
/// for [`RenewalBoard::SHARE_MS`]. Cookies are kept as SHA-256 digests, never in clear. Times
/// in milliseconds from the host's clock.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RenewalBoard {
    entries: HashMap<String, Renewing>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Renewing {
    InFlight(u64),
    Done(u64, RenewalOutcome),
}

/// What a request due for renewal does ([`RenewalBoard::join`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// Renew: this request leads (marked in flight).
    Lead,
    /// Another request is renewing the same cookie: ask again shortly (bounded by
    /// [`RenewalBoard::WAIT_MS`], after which this request leads).
    Wait,
    /// A renewal of the same cookie just ended: carry out its outcome.
    Shared(RenewalOutcome),
}

fn digest(key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl RenewalBoard {
    /// How long a finished renewal's outcome is reused.
    pub const SHARE_MS: u64 = 30_000;
    /// How long a request waits for a renewal in flight.
    pub const WAIT_MS: u64 = 10_000;
    /// Most cookies remembered (beyond it, a request renews without sharing).
    pub const MAX_ENTRIES: usize = 10_000;

    /// Joins the renewal of `key` (the refresh cookie) at `now_ms`; `waiting_since_ms`: when
    /// this request first asked (it leads once it has waited [`Self::WAIT_MS`]).
    pub fn join(&mut self, key: &str, now_ms: u64, waiting_since_ms: u64) -> Join {
        self.prune(now_ms);
        let id = digest(key);
        match self.entries.get(&id) {
            Some(Renewing::Done(_, r)) => return Join::Shared(r.clone()),
            Some(Renewing::InFlight(at))
                if now_ms.saturating_sub(*at) < Self::WAIT_MS
                    && now_ms.saturating_sub(waiting_since_ms) < Self::WAIT_MS =>
            {
                return Join::Wait
            }
            _ => {}
        }
        if self.entries.len() < Self::MAX_ENTRIES {
            self.entries.insert(id, Renewing::InFlight(now_ms));
        }
        Join::Lead
    }

    /// Records how the renewal of `key` ended, for the requests waiting on it.
    pub fn finish(&mut self, key: &str, outcome: &RenewalOutcome, now_ms: u64) {
        self.prune(now_ms);
        self.entries
            .insert(digest(key), Renewing::Done(now_ms, outcome.clone()));
    }

    /// Forgets what no request can use any more.
    fn prune(&mut self, now_ms: u64) {
        self.entries.retain(|_, r| match r {
            Renewing::InFlight(at) => now_ms.saturating_sub(*at) < Self::WAIT_MS,
            Renewing::Done(at, _) => now_ms.saturating_sub(*at) < Self::SHARE_MS,
        });
    }

    /// The board as text, for a store shared between VMs: a line per cookie,
    /// `<digest> wait <ms>`, `<digest> ok <ms> <set-cookie>\t<set-cookie>...` or
    /// `<digest> err <ms> <reason> <message>`.
    pub fn encode(&self) -> String {
        let clean = |s: &str| s.replace(['\n', '\r', '\t'], " ");
        let mut out = String::new();
        for (id, r) in &self.entries {
            let line = match r {
                Renewing::InFlight(at) => format!("{id} wait {at}"),
                Renewing::Done(at, Ok(set)) => {
                    let set: Vec<String> = set.iter().map(|c| clean(c)).collect();
                    format!("{id} ok {at} {}", set.join("\t"))
                }
                Renewing::Done(at, Err(e)) => {
                    format!("{id} err {at} {} {}", e.reason().code(), clean(e.message()))
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// A board from [`Self::encode`]'s text; lines it cannot read are dropped.
    pub fn decode(text: &str) -> Self {
        let mut entries = HashMap::new();
        for line in text.lines() {
            let mut parts = line.splitn(4, ' ');
            let (Some(id), Some(kind), Some(at)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(at) = at.parse::<u64>() else { continue };
            let rest = parts.next().unwrap_or("");
            let r = match kind {
                "wait" => Renewing::InFlight(at),
                "ok" => Renewing::Done(
                    at,
                    Ok(rest
                        .split('\t')
                        .filter(|c| !c.is_empty())
                        .map(str::to_string)
                        .collect()),
                ),
                "err" => {
                    let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                    let reason = Reason::ALL
                        .iter()
                        .copied()
                        .find(|r| r.code() == code)
                        .unwrap_or(Reason::Internal);
                    Renewing::Done(at, Err(Error::new(reason, message.to_string())))
                }
                _ => continue,
            };
            entries.insert(id.to_string(), r);
        }
        RenewalBoard { entries }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::{json, Value};

    const RND: [u8; FLOW_RANDOM_BYTES] = [7; FLOW_RANDOM_BYTES];

    /// A login route's step for a request with these cookies (`html`: a browser's `Accept`).
    fn route(
        e: &Engine,
        (method, path, cookies): (&str, &str, &str),
        html: bool,
        random: &[u8; FLOW_RANDOM_BYTES],
    ) -> Option<LoginStep> {
        let accept = if html {
            "text/html"
        } else {
            "application/json"
        };
        let headers = [("cookie", cookies), ("accept", accept)];
        let req = Request {
            method,
            path,
            headers: &headers,
        };
        e.login_route(&req, random, None)
    }

    fn reply(step: LoginStep) -> LoginReply {
        match step {
            LoginStep::Reply(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn header<'r>(r: &'r LoginReply, name: &str) -> Option<&'r str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json_of(r: &LoginReply) -> Value {
        serde_json::from_str(&r.body).unwrap()
    }

    fn discovered(e: &Engine, step: LoginStep, now: UnixTime) -> LoginStep {
        match step {
            LoginStep::NeedDiscovery(p) => p.resume(e, Ok(disco()), now),
            other => panic!("expected NeedDiscovery, got {other:?}"),
        }
    }

    /// A started login: the `Cookie` header the browser sends back, and the callback query.
    fn started(e: &Engine) -> (String, String) {
        let step = route(e, ("GET", "/auth/login?rd=/app", ""), false, &RND);
        let r = reply(discovered(e, step.unwrap(), NOW));
        assert_eq!(r.status, 302);
        let location = header(&r, "location").unwrap();
        assert!(
            location.starts_with("https://idp.example/auth?"),
            "{location}"
        );
        let state = url::Url::parse(location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        let cookie = r.set_cookies().next().unwrap().split(';').next().unwrap();
        (cookie.to_string(), format!("code=c0de&state={state}"))
    }

    /// The callback paused for the token endpoint.
    fn at_tokens(e: &Engine) -> AwaitTokens {
        let (cookie, query) = started(e);
        let path = format!("/auth/callback?{query}");
        let step = route(e, ("GET", &path, &cookie), false, &RND);
        match discovered(e, step.unwrap(), NOW + 5) {
            LoginStep::NeedTokens(t) => t,
            other => panic!("expected NeedTokens, got {other:?}"),
        }
    }

    #[test]
    fn routes_answer_only_their_methods() {
        let e = engine();
        let r = reply(route(&e, ("POST", "/auth/login", ""), false, &RND).unwrap());
        assert_eq!((r.status, header(&r, "allow")), (405, Some("GET, HEAD")));
        let r = reply(route(&e, ("PUT", "/auth/logout", ""), false, &RND).unwrap());
        assert_eq!(header(&r, "allow"), Some("GET, POST"));
        let r = reply(route(&e, ("HEAD", "/auth/callback", ""), false, &RND).unwrap());
        assert_eq!(header(&r, "allow"), Some("GET"));
        assert!(route(&e, ("GET", "/app", ""), false, &RND).is_none());
    }

    #[test]
    fn no_login_without_randomness() {
        let e = engine();
        let zeros = [0u8; FLOW_RANDOM_BYTES];
        let r = reply(route(&e, ("GET", "/auth/login", ""), false, &zeros).unwrap());
        assert_eq!(r.status, 500);
        assert_eq!(json_of(&r)["reason"], "internal");
    }

    #[test]
    fn a_callback_runs_tokens_then_id_token_then_sets_the_session() {
        let e = engine();
        let t = at_tokens(&e);
        assert_eq!(t.request().url, "https://idp.example/token");
        assert!(
            t.request().body.contains("code=c0de"),
            "{}",
            t.request().body
        );
        let body = json!({"id_token": "h.p.s", "access_token": "at", "refresh_token": "rt",
                          "token_type": "Bearer"})
        .to_string();
        let LoginStep::NeedIdToken(p) = t.resume(&e, Ok((200, body.as_bytes())), NOW + 6) else {
            panic!("expected NeedIdToken");
        };
        let q = p.query();
        assert_eq!((q.id_token, q.access_token), ("h.p.s", Some("at")));
        assert!(q.nonce.is_some_and(|n| n.len() >= 22));
        let r = reply(p.resume(&e, Ok(oidc_identity()), NOW + 6));
        assert_eq!((r.status, header(&r, "location")), (302, Some("/app")));
        let cookies: Vec<&str> = r.set_cookies().collect();
        assert!(cookies[0].starts_with("edgegate_session="), "{cookies:?}");
        assert!(cookies[1].starts_with("edgegate_session_refresh="));
        assert!(
            cookies.last().unwrap().contains("Max-Age=0"),
            "attempt cleared"
        );
        assert_eq!(r.log.as_ref().map(|l| l.level), Some(LogLevel::Info));
    }

    #[test]
    fn a_refused_callback_sets_no_session_and_ends_the_attempt() {
        let e = engine();
        // The ID token does not pass.
        let t = at_tokens(&e);
        let body = json!({"id_token": "h.p.s", "token_type": "Bearer"}).to_string();
        let LoginStep::NeedIdToken(p) = t.resume(&e, Ok((200, body.as_bytes())), NOW) else {
            panic!("expected NeedIdToken");
        };
        let bad = Error::new(Reason::BadSignature, "bad signature");
        let r = reply(p.resume(&e, Err(bad), NOW));
        assert_eq!(
            (r.status, json_of(&r)["reason"].as_str()),
            (401, Some("bad_signature"))
        );
        let cookies: Vec<&str> = r.set_cookies().collect();
        assert_eq!(cookies.len(), 1);
        assert!(cookies[0].contains("Max-Age=0") && !cookies[0].starts_with("edgegate_session"));
        // No ID token in the response.
        let body = json!({"access_token": "at", "token_type": "Bearer"}).to_string();
        let r = reply(at_tokens(&e).resume(&e, Ok((200, body.as_bytes())), NOW));
        assert_eq!(json_of(&r)["reason"], "login_mismatch");
        // The provider unreachable: 503, the user's fault is never a 5xx and this is not one.
        let r = reply(at_tokens(&e).resume(&e, Err("timed out".into()), NOW));
        assert_eq!(r.status, 503);
        // No attempt cookie: refused before any token request.
        let (_, query) = started(&e);
        let path = format!("/auth/callback?{query}");
        let step = route(&e, ("GET", &path, ""), true, &RND);
        let r = reply(discovered(&e, step.unwrap(), NOW));
        assert_eq!(r.status, 401);
        assert!(r.body.contains("<h1>Login failed</h1>") && r.body.contains("login_mismatch"));
        assert_eq!(
            header(&r, "content-security-policy"),
            Some("default-src 'none'")
        );
    }

    #[test]
    fn a_flow_resumed_on_another_config_fails_closed() {
        let e = engine();
        let t = at_tokens(&e);
        let other = engine();
        let body = json!({"id_token": "h.p.s", "token_type": "Bearer"}).to_string();
        let r = reply(t.resume(&other, Ok((200, body.as_bytes())), NOW));
        assert_eq!(r.status, 500);
    }

    #[test]
    fn logout_clears_cookies_even_without_the_provider() {
        let e = engine();
        let cookies = logged_in(&e, NOW, true);
        let LoginStep::NeedDiscovery(p) =
            route(&e, ("POST", "/auth/logout", &cookies), false, &RND).unwrap()
        else {
            panic!("expected NeedDiscovery");
        };
        let down = Error::new(Reason::KeysUnavailable, "down");
        let r = reply(p.resume(&e, Err(down), NOW));
        assert_eq!(
            (r.status, header(&r, "location")),
            (302, Some("https://app.example.com/bye"))
        );
        assert!(r.set_cookies().all(|c| c.contains("Max-Age=0")));
        assert_eq!(r.log.map(|l| l.level), Some(LogLevel::Warn));
    }

    fn renewal_at_tokens(e: &Engine, cookies: &str, now: UnixTime) -> AwaitTokens {
        let due = e
            .renewal_due("/", cookies, now, &mut e.new_cache())
            .expect("due");
        match discovered(e, due.begin(e, &RND, None), now) {
            LoginStep::NeedTokens(t) => t,
            other => panic!("expected NeedTokens, got {other:?}"),
        }
    }

    /// A session the login renews is cached only until its renewal is due: before, the cache
    /// answers both the decision and the renewal check (the cookie is opened once); from then
    /// on the check opens it and finds the renewal due, whatever the cache held.
    #[test]
    fn a_cached_session_is_never_kept_past_its_renewal() {
        use crate::verifier::NoRemoteKeys;
        let e = engine();
        let cookies = format!("a=1; {}", logged_in(&e, NOW, true));
        let headers = [("cookie", cookies.as_str())];
        let req = Request {
            method: "GET",
            path: "/app",
            headers: &headers,
        };
        let mut cache = e.new_cache();
        let decided = |cache: &mut TokenCache, now| match e.decide(&req, &NoRemoteKeys, cache, now)
        {
            crate::Step::Done(Verdict::Allow { cached, .. }) => cached,
            other => panic!("expected an allow, got {other:?}"),
        };
        assert!(!decided(&mut cache, NOW + 100), "opened the first time");
        assert!(decided(&mut cache, NOW + 101), "then cached");
        assert!(e
            .renewal_due("/app", &cookies, NOW + 101, &mut cache)
            .is_none());
        assert_eq!(cache.len(), 1);
        // Lifetime 400 s: due from 300 s on.
        assert!(e
            .renewal_due("/app", &cookies, NOW + 299, &mut cache)
            .is_none());
        let due = e.renewal_due("/app", &cookies, NOW + 300, &mut cache);
        assert!(
            due.is_some_and(|d| d.still_valid),
            "due though it was cached"
        );
        assert!(
            !decided(&mut cache, NOW + 300),
            "the decision opens it again"
        );
        assert!(e
            .renewal_due("/app", &cookies, NOW + 301, &mut cache)
            .is_some());
    }

    #[test]
    fn renewal_replaces_the_session_or_ends_it() {
        let e = engine();
        let cookies = format!("a=1; {}", logged_in(&e, NOW, true));
        assert!(
            e.renewal_due("/", &cookies, NOW + 100, &mut e.new_cache())
                .is_none(),
            "young session"
        );
        let now = NOW + 350;
        let due = e
            .renewal_due("/app", &cookies, now, &mut e.new_cache())
            .unwrap();
        assert!(due.still_valid && !due.key.is_empty());
        // Renewed without a new ID token: the current session's identity, a new cookie.
        let t = renewal_at_tokens(&e, &cookies, now);
        assert!(t.request().body.contains("grant_type=refresh_token"));
        let body = json!({"access_token": "at2", "token_type": "Bearer"}).to_string();
        let LoginStep::Renewed(outcome) = t.resume(&e, Ok((200, body.as_bytes())), now) else {
            panic!("expected Renewed");
        };
        let r = e.apply_renewal(&cookies, &outcome, true);
        let header = r.cookie_header.unwrap();
        assert!(header.starts_with("a=1; ") && header.contains("edgegate_session="));
        assert!(!cookies.contains(header.split("edgegate_session=").nth(1).unwrap()));
        assert!(!r.set_cookies.is_empty());
        // The provider refuses: both cookies end, in the request and the response.
        let t = renewal_at_tokens(&e, &cookies, now);
        let body = json!({"error": "invalid_grant"}).to_string();
        let LoginStep::Renewed(outcome) = t.resume(&e, Ok((400, body.as_bytes())), now) else {
            panic!("expected Renewed");
        };
        let r = e.apply_renewal(&cookies, &outcome, true);
        assert_eq!(r.cookie_header.as_deref(), Some("a=1"));
        assert_eq!(r.set_cookies.len(), 2);
        // The provider down while the session is valid: nothing changes.
        let t = renewal_at_tokens(&e, &cookies, now);
        let LoginStep::Renewed(outcome) = t.resume(&e, Err("refused".into()), now) else {
            panic!("expected Renewed");
        };
        let r = e.apply_renewal(&cookies, &outcome, true);
        assert_eq!((r.cookie_header, r.set_cookies.len()), (None, 0));
        // ... but without a valid session it ends.
        let r = e.apply_renewal(&cookies, &outcome, false);
        assert_eq!(r.cookie_header.as_deref(), Some("a=1"));
    }

    #[test]
    fn browsers_without_a_credential_go_to_the_login_route() {
        let mut v = config_value();
        v["rules"] = json!([
            {"name": "app", "match": {"path": {"glob": "/app/**"}}, "require": {"roles_any": ["admin"]}},
            {"name": "sso", "match": {"path": {"glob": "/sso"}}, "login_url": "/sso/start"}
        ]);
        let e = engine_from(&v).unwrap();
        let decide = |path: &str, accept: &str| {
            let headers = [("accept", accept)];
            let req = crate::Request {
                method: "GET",
                path,
                headers: &headers,
            };
            let mut cache = e.new_cache();
            match e.decide(&req, &crate::verifier::NoRemoteKeys, &mut cache, NOW) {
                crate::step::Step::Done(Verdict::Reply(d)) => d,
                other => panic!("{other:?}"),
            }
        };
        let browser = decide("/app/x?y=1", "text/html");
        let location = browser
            .headers
            .iter()
            .find(|(n, _)| n == "location")
            .unwrap();
        assert_eq!(
            (browser.status, location.1.as_str()),
            (302, "/auth/login?rd=%2Fapp%2Fx%3Fy%3D1")
        );
        // A rule's own login_url wins; API clients get the 401.
        let own = decide("/sso", "text/html");
        assert!(own
            .headers
            .iter()
            .any(|(n, v)| n == "location" && v.starts_with("/sso/start?rd=")));
        assert_eq!(decide("/app/x", "application/json").status, 401);
    }

    #[test]
    fn the_renewal_board_lets_one_request_renew() {
        let mut b = RenewalBoard::default();
        assert_eq!(b.join("k", 1_000, 1_000), Join::Lead);
        assert_eq!(b.join("k", 1_050, 1_050), Join::Wait);
        assert_eq!(b.join("other", 1_050, 1_050), Join::Lead);
        // A waiter that waited too long leads.
        assert_eq!(
            b.join("k", 1_000 + RenewalBoard::WAIT_MS, 1_000),
            Join::Lead
        );
        b.finish("k", &Ok(vec!["s=1; Path=/".into(), "r=2".into()]), 2_000);
        let shared = Join::Shared(Ok(vec!["s=1; Path=/".into(), "r=2".into()]));
        assert_eq!(b.join("k", 2_010, 2_010), shared);
        // Shared between VMs as text: the same answers, no cookie in clear.
        let text = b.encode();
        let mut copy = RenewalBoard::decode(&text);
        assert_eq!(copy, b);
        assert!(text.lines().all(|l| !l.starts_with("k ")), "{text}");
        assert_eq!(copy.join("k", 2_020, 2_020), shared);
        let refused = Err(Error::new(Reason::LoginMismatch, "another\nsubject"));
        copy.finish("x", &refused, 2_030);
        let back = RenewalBoard::decode(&(copy.encode() + "garbage\n1 ok\n"));
        match back.clone().join("x", 2_040, 2_040) {
            Join::Shared(Err(e)) => assert_eq!(e.reason(), Reason::LoginMismatch),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            b.join(
                "k",
                2_000 + RenewalBoard::SHARE_MS,
                2_000 + RenewalBoard::SHARE_MS
            ),
            Join::Lead
        );
    }
}
