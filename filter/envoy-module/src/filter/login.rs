//! OIDC login in the native module: the I/O of the core's login machine
//! ([`edgegate::login::LoginStep`]), as the proxy-wasm filter's `login.rs` does it:
//!
//! - discovery and token requests are callouts of the stream to the cluster `login.cluster`,
//!   else one named after the URL's authority (as for `remote_jwks`), bounded by [`IDP_TIMEOUT`];
//!   the request stays paused until the answer (or Envoy's timeout) arrives on its worker thread;
//! - the discovery document is cached per process for `DISCOVERY_TTL_SECONDS`, taken from the
//!   provider's key set when that fetched it from the same URL ([`Shared::cached_discovery`]);
//! - ID tokens are checked on the same machine as a request ([`Engine::check_id_token`]); a
//!   provider without keys yet, or a `kid` the key set lacks, waits like a request does;
//! - randomness from the OS (`getrandom`);
//! - renewals are shared by every worker thread through one [`edgegate::login::RenewalBoard`]
//!   ([`Shared::join_renewal`]), one per refresh cookie; the renewed cookies go on the upstream's
//!   response.
//!
//! Every status, page, cookie and log line is the core's.
//!
//! [`Shared::cached_discovery`]: crate::config::Shared::cached_discovery
//! [`Shared::join_renewal`]: crate::config::Shared::join_renewal
//! [`Engine::check_id_token`]: edgegate::Engine::check_id_token

use std::sync::Arc;
use std::time::Duration;

use edgegate::login::{
    AwaitDiscovery, AwaitIdToken, AwaitIdentity, AwaitTokens, DueRenewal, LogLevel, LogLine,
    LoginReply, LoginStep, RenewalBoard, RenewalOutcome, Route, FLOW_RANDOM_BYTES,
    MAX_RESPONSE_BYTES,
};
use edgegate::step::{IdTokenOutcome, NeedKeys, Step};
use edgegate::{Error, Reason};
use edgegate_envoy_glue::login as glue_login;
use edgegate_envoy_glue::metrics;
use edgegate_envoy_glue::request::OwnedRequest;
use edgegate_envoy_glue::verdict::{self as glue, internal_error};

use super::{Filter, Next};
use crate::abi::{CalloutResponse, FilterCtx, RequestMap};
use crate::config::{self, Joined};

/// How long one request to the provider (discovery, token endpoint) may take.
pub const IDP_TIMEOUT: Duration = Duration::from_secs(5);

/// The process environment variable holding the login's client secret; it overrides
/// `login.client_secret` (the proxy-wasm filter reads the same name from its VM's environment,
/// the worker from its secret binding).
pub const CLIENT_SECRET_ENV: &str = "OIDC_CLIENT_SECRET";

/// What the request headers hook does after [`Filter::login_begin`].
pub enum Begin {
    /// Decide the request (its cookies may have been renewed).
    Decide(OwnedRequest),
    /// The login machine answered, holds the request, or decided it already.
    Held,
}

/// A machine paused for a callout's answer.
enum Pending {
    Discovery(AwaitDiscovery),
    Tokens(AwaitTokens),
}

/// A renewal this stream leads.
struct RenewalCx {
    key: String,
    still_valid: bool,
}

/// An ID token check waiting for its provider's keys.
struct IdTokenWait {
    paused: NeedKeys<IdTokenOutcome>,
    flow: AwaitIdToken,
    request: OwnedRequest,
}

/// A stream waiting for another stream's renewal of the same refresh cookie.
struct RenewalWait {
    request: OwnedRequest,
    due: DueRenewal,
    since_ms: u64,
}

/// One stream's side of the login machine.
#[derive(Default)]
pub struct StreamLogin {
    /// `Set-Cookie` values for the upstream's response (a renewed session, or its end).
    set_cookies: Vec<String>,
    /// Set while this stream leads a renewal.
    renewal: Option<RenewalCx>,
    /// The callout in flight: its id, the paused machine, the held request.
    call: Option<(u64, Pending, OwnedRequest)>,
    id_token_wait: Option<IdTokenWait>,
    renewal_wait: Option<RenewalWait>,
}

impl StreamLogin {
    /// The `Set-Cookie` values for the upstream's response.
    pub fn set_cookies(&self) -> impl Iterator<Item = &str> {
        self.set_cookies.iter().map(String::as_str)
    }
}

fn now_ms64() -> u64 {
    u64::try_from(config::now_ms()).unwrap_or(u64::MAX)
}

fn log(line: &LogLine) {
    match line.level {
        LogLevel::Info => log::info!("{}", line.text),
        LogLevel::Warn => log::warn!("{}", line.text),
    }
}

/// Fresh bytes from the OS; zeros (which the core refuses) when it gives none.
pub(super) fn random_bytes() -> [u8; FLOW_RANDOM_BYTES] {
    let mut b = [0u8; FLOW_RANDOM_BYTES];
    if getrandom::getrandom(&mut b).is_err() {
        log::error!("the OS random source failed; login refused");
        b = [0u8; FLOW_RANDOM_BYTES];
    }
    b
}

/// The client secret from the process environment, if set.
fn client_secret() -> Option<String> {
    std::env::var(CLIENT_SECRET_ENV)
        .ok()
        .filter(|s| !s.is_empty())
}

impl Filter {
    fn stream_login(&mut self) -> &mut StreamLogin {
        self.login.get_or_insert_with(Box::default)
    }

    /// Before deciding a request: a login route is served, a session due for renewal is renewed
    /// (or the request waits for the renewal another stream is making).
    pub(super) fn login_begin(&mut self, ctx: &FilterCtx<'_>, req: OwnedRequest) -> Begin {
        let shared = Arc::clone(&self.shared);
        let Some(login) = shared.engine.login() else {
            return Begin::Decide(req);
        };
        let route = login.route(req.path());
        if route.is_some_and(|r| r != Route::Me) {
            self.start_route(ctx, req);
            return Begin::Held;
        }
        let now = config::now();
        let cookies = req.cookie_header();
        // The cache's lock is held only for the check (the decision takes it again).
        let due = {
            let mut cache = shared.cache();
            shared
                .engine
                .renewal_due(req.path(), &cookies, now, &mut cache)
        };
        let Some(due) = due else {
            return self.after_renewal_check(ctx, req);
        };
        self.join_renewal(ctx, req, due, now_ms64())
    }

    /// `/auth/me` runs the identification (after any renewal); other requests are decided.
    fn after_renewal_check(&mut self, ctx: &FilterCtx<'_>, req: OwnedRequest) -> Begin {
        let is_me = self.shared.engine.login().and_then(|l| l.route(req.path())) == Some(Route::Me);
        if !is_me {
            return Begin::Decide(req);
        }
        self.start_route(ctx, req);
        Begin::Held
    }

    /// Joins the process's renewal of the request's refresh cookie: leads it, waits for it, or
    /// carries out its outcome.
    fn join_renewal(
        &mut self,
        ctx: &FilterCtx<'_>,
        req: OwnedRequest,
        due: DueRenewal,
        since_ms: u64,
    ) -> Begin {
        let shared = Arc::clone(&self.shared);
        // Should it wait for another stream's renewal: until that ends, or until it has waited
        // long enough to lead.
        let deadline_ms = u128::from(since_ms)
            .saturating_add(u128::from(RenewalBoard::WAIT_MS))
            .saturating_add(1);
        let waiter = self.waiter(ctx, "", deadline_ms, None, Some(due.key.clone()));
        let joined = shared.join_renewal(&due.key, now_ms64(), since_ms, waiter);
        self.stream_login().renewal = Some(RenewalCx {
            key: due.key.clone(),
            still_valid: due.still_valid,
        });
        match joined {
            Joined::Lead => {
                let step = due.begin(&shared.engine, &random_bytes(), client_secret().as_deref());
                self.drive(ctx, req, step);
                Begin::Held
            }
            Joined::Shared(outcome) => self.apply_renewal(ctx, req, &outcome),
            // Another stream (on any worker thread) is renewing this cookie: wait for its outcome.
            Joined::Waiting => {
                self.stream_login().renewal_wait = Some(RenewalWait {
                    request: req,
                    due,
                    since_ms,
                });
                shared.wake();
                Begin::Held
            }
            Joined::Full => {
                self.send(ctx, &shared.engine.keys_unavailable());
                Begin::Held
            }
        }
    }

    /// A scheduled event for a login wait: an ID token's keys arrived (or their wait is over),
    /// or the renewal this stream waited for ended.
    pub(super) fn login_resume(&mut self, ctx: &FilterCtx<'_>) {
        let Some(l) = self.login.as_mut() else {
            return;
        };
        if let Some(w) = l.id_token_wait.take() {
            let engine = &self.shared.engine;
            let now = config::now();
            let step = match self.check_id_token(&w.flow, Some(w.paused)) {
                Step::Done(outcome) => w.flow.resume(engine, outcome, now),
                _ => w.flow.resume(engine, Err(Error::keys_unavailable()), now),
            };
            self.drive(ctx, w.request, step);
        } else if let Some(w) = l.renewal_wait.take() {
            if let Begin::Decide(req) = self.join_renewal(ctx, w.request, w.due, w.since_ms) {
                self.decide_held(ctx, req, None);
            }
        }
    }

    /// Carries out a renewal's outcome on the request, then goes on to decide it.
    fn apply_renewal(
        &mut self,
        ctx: &FilterCtx<'_>,
        mut req: OwnedRequest,
        outcome: &RenewalOutcome,
    ) -> Begin {
        let shared = Arc::clone(&self.shared);
        let still_valid = self
            .stream_login()
            .renewal
            .take()
            .is_some_and(|r| r.still_valid);
        let r = shared
            .engine
            .apply_renewal(&req.cookie_header(), outcome, still_valid);
        if let Some(line) = &r.log {
            log(line);
        }
        if let Some(c) = &r.cookie_header {
            req.replace_cookie_header(c);
            ctx.set(RequestMap::Headers, "cookie", (!c.is_empty()).then_some(c));
        }
        self.stream_login().set_cookies.extend(r.set_cookies);
        self.after_renewal_check(ctx, req)
    }

    /// Starts the machine of a login route.
    fn start_route(&mut self, ctx: &FilterCtx<'_>, req: OwnedRequest) {
        let shared = Arc::clone(&self.shared);
        let random = random_bytes();
        let secret = client_secret();
        let step = req.with(|r| shared.engine.login_route(r, &random, secret.as_deref()));
        match step {
            Some(step) => self.drive(ctx, req, step),
            None => self.send(ctx, &internal_error()),
        }
    }

    /// Drives the machine until it answers, or pauses for a callout or for keys.
    fn drive(&mut self, ctx: &FilterCtx<'_>, req: OwnedRequest, mut step: LoginStep) {
        let shared = Arc::clone(&self.shared);
        let engine = &shared.engine;
        loop {
            let now = config::now();
            step = match step {
                LoginStep::Reply(r) => return self.send_login_reply(ctx, &r),
                LoginStep::Renewed(outcome) => return self.renewed(ctx, req, &outcome),
                LoginStep::NeedDiscovery(p) => match shared.cached_discovery(now) {
                    Some(d) => p.resume(engine, Ok(d), now),
                    None => {
                        let Some(login) = engine.login() else {
                            return self.send(ctx, &internal_error());
                        };
                        let url = login.discovery_url();
                        match self.call(ctx, "GET", &url, &[], "") {
                            Ok(id) => return self.park(id, Pending::Discovery(p), req),
                            Err(why) => {
                                p.resume(engine, Err(login.discovery_unreachable(&why)), now)
                            }
                        }
                    }
                },
                LoginStep::NeedTokens(p) => {
                    let r = p.request();
                    match self.call(ctx, "POST", &r.url, &r.headers, &r.body) {
                        Ok(id) => return self.park(id, Pending::Tokens(p), req),
                        Err(why) => p.resume(engine, Err(why), now),
                    }
                }
                LoginStep::NeedIdToken(p) => match self.check_id_token(&p, None) {
                    Step::Done(outcome) => p.resume(engine, outcome, now),
                    Step::NeedKeys(paused) => {
                        let provider = paused.provider().to_string();
                        let snapshot = shared.snapshot();
                        if self.wait_keys(ctx, &provider, config::now_ms(), &snapshot) {
                            self.stream_login().id_token_wait = Some(IdTokenWait {
                                paused,
                                flow: p,
                                request: req,
                            });
                            return;
                        }
                        log::warn!(
                            "keys of provider {provider} are not available (too many requests waiting): 503"
                        );
                        p.resume(engine, Err(Error::keys_unavailable()), now)
                    }
                    _ => p.resume(
                        engine,
                        Err(Error::new(Reason::Internal, "unexpected step")),
                        now,
                    ),
                },
                // `/auth/me`: the request's own machine, started with `identify`.
                LoginStep::NeedIdentity(p) => return self.decide_held(ctx, req, Some(p)),
            };
        }
    }

    /// The ID token's check on the machine a request uses (`waited`: resumed after its keys).
    fn check_id_token(
        &self,
        p: &AwaitIdToken,
        waited: Option<NeedKeys<IdTokenOutcome>>,
    ) -> Step<IdTokenOutcome> {
        let shared = &self.shared;
        let snapshot = shared.snapshot();
        let mut cache = shared.cache();
        let q = p.query();
        let now = config::now();
        glue::run_from(
            &shared.engine,
            &OwnedRequest::default(),
            &*snapshot,
            &mut cache,
            now,
            |_, _| {
                shared
                    .engine
                    .check_id_token(q.id_token, q.nonce, q.access_token, &*snapshot, now)
            },
            waited,
        )
    }

    /// A renewal this stream led ended: shared with the streams waiting for it, carried out, and
    /// the request decided.
    fn renewed(&mut self, ctx: &FilterCtx<'_>, req: OwnedRequest, outcome: &RenewalOutcome) {
        if let Some(r) = self.login.as_ref().and_then(|l| l.renewal.as_ref()) {
            self.shared.finish_renewal(&r.key, outcome, now_ms64());
        }
        if let Begin::Decide(req) = self.apply_renewal(ctx, req, outcome) {
            self.decide_held(ctx, req, None);
        }
    }

    /// Decides a held request (`me`: `/auth/me`'s identification); an allow continues it (in the
    /// request headers hook, by the hook's return value).
    fn decide_held(&mut self, ctx: &FilterCtx<'_>, req: OwnedRequest, me: Option<AwaitIdentity>) {
        let next = self.decide_and_apply(ctx, req, config::now_ms(), None, me);
        if let Next::Continue = next {
            if !self.in_headers {
                ctx.continue_decoding();
            }
        }
    }

    /// Sends a login reply (every `set-cookie` its own header), logged and counted.
    pub(super) fn send_login_reply(&self, ctx: &FilterCtx<'_>, r: &LoginReply) {
        if let Some(line) = &r.log {
            log(line);
        }
        metrics::count_login_reply(&mut self.counters(ctx), r.status);
        // After a renewal (`/auth/me`), its cookies go with the answer.
        let headers: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(self.renewal_cookies())
            .collect();
        ctx.send_response(r.status, &headers, r.body.as_bytes(), "edgegate_login");
    }

    /// Sends a request to the provider as a callout of this stream; its id.
    fn call(
        &self,
        ctx: &FilterCtx<'_>,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> Result<u64, String> {
        let call = glue_login::IdpCall::new(&self.shared.engine, method, url, headers);
        let timeout_ms = u64::try_from(IDP_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        ctx.http_callout(&call.cluster, &call.headers, body.as_bytes(), timeout_ms)
            .map_err(|refused| call.refused(refused.name()))
    }

    fn park(&mut self, id: u64, pending: Pending, req: OwnedRequest) {
        self.stream_login().call = Some((id, pending, req));
    }

    /// The answer (or failure) of a login callout.
    pub(super) fn login_call_done(
        &mut self,
        ctx: &FilterCtx<'_>,
        id: u64,
        response: &CalloutResponse<'_>,
    ) {
        let Some(l) = self.login.as_mut() else {
            return;
        };
        match &l.call {
            Some((i, _, _)) if *i == id => {}
            _ => return,
        }
        let Some((_, pending, req)) = l.call.take() else {
            return;
        };
        let status = response.status();
        let body = response.body(MAX_RESPONSE_BYTES.saturating_add(1));
        let shared = Arc::clone(&self.shared);
        let engine = &shared.engine;
        let now = config::now();
        let answer = glue_login::answer(status, &body);
        let step = match pending {
            Pending::Discovery(p) => {
                let d = glue_login::discovery(engine, answer);
                if let Ok(d) = &d {
                    shared.keep_discovery(d, now);
                }
                p.resume(engine, d, now)
            }
            Pending::Tokens(p) => p.resume(engine, answer, now),
        };
        self.drive(ctx, req, step);
    }
}
