//! OIDC login in the Envoy filter: the I/O of the core's login machine
//! ([`edgegate::login::LoginStep`]), as the worker's `src/login.rs` does it with `fetch`:
//!
//! - discovery and token requests by `dispatch_http_call` to the cluster `login.cluster`, else
//!   one named after the URL's authority (as for `remote_jwks`), bounded by [`IDP_TIMEOUT`];
//!   the request stays paused until the answer (or Envoy's timeout) arrives;
//! - the discovery document cached per VM for `DISCOVERY_TTL_SECONDS`;
//! - ID tokens checked on the same machine as a request ([`Engine::check_id_token`]), with
//!   Envoy's `verify_signature`; a `kid` the key set lacks waits for a refetch like a request;
//! - randomness from WASI `random_get` ([`crate::random`]);
//! - renewals shared by every VM through shared data, one per refresh cookie
//!   ([`crate::shared::with_renewal_board`]); the renewed cookies go on the upstream's response.
//!
//! Every status, page, cookie and log line is the core's. Calls are kept by the plugin, not by
//! the HTTP context, because Envoy delivers every call's response to the root context: either
//! context's `on_http_call_response` hands it to [`on_call_response`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use edgegate::login::{
    AwaitDiscovery, AwaitIdToken, AwaitTokens, Discovery, DueRenewal, Join, LogLevel, LogLine,
    LoginReply, LoginStep, RenewalOutcome, Route, DISCOVERY_TTL_SECONDS, MAX_RESPONSE_BYTES,
};
use edgegate::step::{IdTokenOutcome, NeedKeys, Step};
use edgegate::{Engine, Error, Reason, UnixTime};
use edgegate_envoy_glue::login as glue_login;
use edgegate_envoy_glue::verdict as glue;

use crate::request::OwnedRequest;
use crate::verdict::{self, Next};
use crate::{now_ms, Plugin};

/// How long one request to the provider (discovery, token endpoint) may take.
pub const IDP_TIMEOUT: Duration = Duration::from_secs(5);
/// Most login calls in flight per VM; beyond it logins get a 503 at once.
const MAX_CALLS: usize = 1024;

/// One request's side of the login machine: who to answer, and what it carries on with.
#[derive(Clone)]
pub struct Cx {
    pub context_id: u32,
    pub allowed: Rc<Cell<bool>>,
    /// `Set-Cookie` values for the upstream's response (a renewed session).
    pub set_cookies: Rc<RefCell<Vec<String>>>,
    pub request: OwnedRequest,
    /// Set when the machine is this request's renewal.
    pub renewal: Option<RenewalCx>,
}

/// A renewal in progress for a request.
#[derive(Clone)]
pub struct RenewalCx {
    pub key: String,
    pub still_valid: bool,
}

/// A machine paused for a call's response.
enum Pending {
    Discovery(AwaitDiscovery),
    Tokens(AwaitTokens),
}

/// A login call in flight.
pub struct Call {
    token: u32,
    cx: Cx,
    pending: Pending,
}

/// A request waiting for another request's renewal of the same refresh cookie.
pub struct RenewalWaiter {
    cx: Cx,
    due: DueRenewal,
    since_ms: u64,
}

/// A request's ID token check waiting for its provider's keys.
pub struct IdTokenWait {
    pub paused: NeedKeys<IdTokenOutcome>,
    pub flow: AwaitIdToken,
    pub cx: Cx,
}

/// The login state of one plugin in one VM.
#[derive(Default)]
pub struct LoginState {
    calls: RefCell<Vec<Call>>,
    discovery: RefCell<Option<(Discovery, UnixTime)>>,
    renewal_waiters: RefCell<Vec<RenewalWaiter>>,
}

impl LoginState {
    /// Forgets a request that went away (its calls' answers are dropped).
    pub fn forget(&self, context_id: u32) {
        if let Ok(mut c) = self.calls.try_borrow_mut() {
            c.retain(|c| c.cx.context_id != context_id);
        }
        if let Ok(mut w) = self.renewal_waiters.try_borrow_mut() {
            w.retain(|w| w.cx.context_id != context_id);
        }
    }

    /// Requests are waiting for a renewal (the root ticks fast).
    pub fn busy(&self) -> bool {
        self.renewal_waiters
            .try_borrow()
            .map_or(true, |w| !w.is_empty())
    }
}

/// What the HTTP context does after [`begin`].
pub enum Begin {
    /// Decide the request (its cookies may have been renewed).
    Decide(OwnedRequest),
    /// The login machine answered or holds the request: pause.
    Held,
}

fn now_ms64() -> u64 {
    u64::try_from(now_ms()).unwrap_or(u64::MAX)
}

fn log(line: &LogLine) {
    match line.level {
        LogLevel::Info => log::info!("{}", line.text),
        LogLevel::Warn => log::warn!("{}", line.text),
    }
}

/// Before deciding a request: a login route is served, a session due for renewal is renewed
/// (or the request waits for the renewal another request of this VM is making).
pub fn begin(plugin: &Plugin, cx: Cx) -> Begin {
    let engine = &plugin.engine;
    let Some(login) = engine.login() else {
        return Begin::Decide(cx.request);
    };
    let route = login.route(cx.request.path());
    if route.is_some_and(|r| r != Route::Me) {
        start_route(plugin, cx);
        return Begin::Held;
    }
    let now = crate::now();
    let cookies = cx.request.cookie_header();
    let due = engine.renewal_due(
        cx.request.path(),
        &cookies,
        now,
        &mut plugin.cache.borrow_mut(),
    );
    let Some(due) = due else {
        return after_renewal_check(plugin, cx);
    };
    join_renewal(plugin, cx, due, now_ms64())
}

/// `/auth/me` runs the identification (after any renewal); other requests are decided.
fn after_renewal_check(plugin: &Plugin, cx: Cx) -> Begin {
    let is_me = plugin
        .engine
        .login()
        .and_then(|l| l.route(cx.request.path()))
        == Some(Route::Me);
    if !is_me {
        return Begin::Decide(cx.request);
    }
    start_route(plugin, cx);
    Begin::Held
}

/// Joins the VM's renewal of the request's refresh cookie: leads it, waits for it, or
/// carries out its outcome.
fn join_renewal(plugin: &Plugin, mut cx: Cx, due: DueRenewal, since_ms: u64) -> Begin {
    // Shared by every VM (worker thread); without the store, this request renews alone.
    let now = now_ms64();
    let join = crate::shared::with_renewal_board(&due.key, |b| b.join(&due.key, now, since_ms))
        .unwrap_or(Join::Lead);
    cx.renewal = Some(RenewalCx {
        key: due.key.clone(),
        still_valid: due.still_valid,
    });
    match join {
        Join::Lead => {
            let rnd = crate::wasi::random_bytes();
            let step = due.begin(&plugin.engine, &rnd, crate::client_secret().as_deref());
            drive(plugin, cx, step);
            Begin::Held
        }
        Join::Shared(outcome) => apply_renewal(plugin, cx, &outcome),
        // Another request (on any worker thread) is renewing this cookie: wait for its outcome
        // (the root's tick asks again), as the worker does.
        Join::Wait => {
            let waiter = RenewalWaiter { cx, due, since_ms };
            match plugin.login.renewal_waiters.try_borrow_mut() {
                Ok(mut w) if w.len() < MAX_CALLS => {
                    w.push(waiter);
                    plugin.wake_root(waiter_context(&w));
                }
                _ => verdict::send(&plugin.engine.keys_unavailable(), Some(plugin)),
            }
            Begin::Held
        }
    }
}

fn waiter_context(w: &[RenewalWaiter]) -> u32 {
    w.last().map_or(0, |w| w.cx.context_id)
}

/// Runs on the root's tick: requests waiting for a renewal join it again.
pub fn resolve_renewal_waiters(plugin: &Plugin, root_id: u32) {
    let waiting = plugin
        .login
        .renewal_waiters
        .try_borrow_mut()
        .map(|mut w| std::mem::take(&mut *w))
        .unwrap_or_default();
    for w in waiting {
        if hostcalls::set_effective_context(w.cx.context_id).is_err() {
            continue; // the client went away
        }
        if let Begin::Decide(req) = join_renewal(plugin, w.cx.clone(), w.due, w.since_ms) {
            let cx = Cx {
                request: req,
                ..w.cx
            };
            decide(plugin, &cx, verdict::Start::Decide);
        }
    }
    let _ = hostcalls::set_effective_context(root_id);
}

/// Carries out a renewal's outcome on the request, then decides it.
fn apply_renewal(plugin: &Plugin, mut cx: Cx, outcome: &RenewalOutcome) -> Begin {
    let still_valid = cx.renewal.as_ref().is_some_and(|r| r.still_valid);
    let cookies = cx.request.cookie_header();
    let r = plugin.engine.apply_renewal(&cookies, outcome, still_valid);
    if let Some(line) = &r.log {
        log(line);
    }
    if let Some(c) = &r.cookie_header {
        cx.request.replace_cookie_header(c);
        let value = (!c.is_empty()).then_some(c.as_bytes());
        let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, "cookie", value);
    }
    if let Ok(mut set) = cx.set_cookies.try_borrow_mut() {
        set.extend(r.set_cookies);
    }
    cx.renewal = None;
    after_renewal_check(plugin, cx)
}

/// Starts the machine of a login route.
fn start_route(plugin: &Plugin, cx: Cx) {
    let rnd = crate::wasi::random_bytes();
    let secret = crate::client_secret();
    let step = cx
        .request
        .with(|r| plugin.engine.login_route(r, &rnd, secret.as_deref()));
    match step {
        Some(step) => drive(plugin, cx, step),
        None => verdict::send(&verdict::internal_error(), Some(plugin)),
    }
}

/// Drives the machine until it answers, or pauses for a call or for keys.
fn drive(plugin: &Plugin, mut cx: Cx, mut step: LoginStep) {
    let engine = &plugin.engine;
    loop {
        let now = crate::now();
        step = match step {
            LoginStep::Reply(r) => return send_reply(plugin, &r),
            LoginStep::Renewed(outcome) => return renewed(plugin, cx, &outcome),
            LoginStep::NeedDiscovery(p) => match need_discovery(plugin, cx, p, now) {
                Some((back, next)) => {
                    cx = back;
                    next
                }
                None => return,
            },
            LoginStep::NeedTokens(p) => {
                let r = p.request();
                let body = r.body.clone();
                match dispatch(
                    plugin,
                    "POST",
                    &r.url.clone(),
                    &r.headers.clone(),
                    Some(&body),
                ) {
                    Ok(token) => return park(plugin, token, cx, Pending::Tokens(p)),
                    Err(why) => p.resume(engine, Err(why), now),
                }
            }
            LoginStep::NeedIdToken(p) => match check_id_token(plugin, &p, None) {
                Step::Done(outcome) => p.resume(engine, outcome, now),
                Step::NeedKeys(paused) => {
                    return wait_for_keys(
                        plugin,
                        IdTokenWait {
                            paused,
                            flow: p,
                            cx,
                        },
                    )
                }
                _ => p.resume(
                    engine,
                    Err(Error::new(Reason::Internal, "unexpected step")),
                    now,
                ),
            },
            LoginStep::NeedIdentity(p) => {
                // `/auth/me`: the request's own machine, started with `identify`.
                return decide(plugin, &cx, verdict::Start::Identify(p));
            }
        };
    }
}

/// The discovery document the machine asks for: the VM's cached one, or a fetch the request
/// parks for (None: parked, or answered). Otherwise the request and the machine's next step.
fn need_discovery(
    plugin: &Plugin,
    cx: Cx,
    p: AwaitDiscovery,
    now: UnixTime,
) -> Option<(Cx, LoginStep)> {
    let engine = &plugin.engine;
    if let Some(d) = cached_discovery(plugin, now) {
        return Some((cx, p.resume(engine, Ok(d), now)));
    }
    let Some(login) = engine.login() else {
        verdict::send(&verdict::internal_error(), Some(plugin));
        return None;
    };
    let url = login.discovery_url();
    match dispatch(plugin, "GET", &url, &[], None) {
        Ok(token) => {
            park(plugin, token, cx, Pending::Discovery(p));
            None
        }
        Err(why) => Some((
            cx,
            p.resume(engine, Err(login.discovery_unreachable(&why)), now),
        )),
    }
}

/// The ID token's check on the machine a request uses (`waited`: resumed after its keys).
fn check_id_token(
    plugin: &Plugin,
    p: &AwaitIdToken,
    waited: Option<NeedKeys<IdTokenOutcome>>,
) -> Step<IdTokenOutcome> {
    let now_ms = now_ms();
    let (Ok(mut keys), Ok(mut cache)) =
        (plugin.keys.try_borrow_mut(), plugin.cache.try_borrow_mut())
    else {
        return Step::Done(Err(Error::new(Reason::Internal, "state busy")));
    };
    if keys.refresh_if_due(now_ms) {
        cache.clear();
    }
    let q = p.query();
    let now = glue::secs(now_ms);
    glue::run_from(
        &plugin.engine,
        &OwnedRequest::default(),
        &*keys,
        &mut cache,
        now,
        |_, _| {
            plugin
                .engine
                .check_id_token(q.id_token, q.nonce, q.access_token, &*keys, now)
        },
        waited,
    )
}

/// Registers an ID token check as a waiter for its provider's keys.
fn wait_for_keys(plugin: &Plugin, wait: IdTokenWait) {
    let provider = wait.paused.provider().to_string();
    let context_id = wait.cx.context_id;
    let allowed = wait.cx.allowed.clone();
    let job = crate::Job::IdToken(Box::new(wait));
    if let Next::Wait =
        verdict::wait_for_keys(plugin, context_id, &allowed, now_ms(), &provider, job)
    {
        plugin.wake_root(context_id);
    }
}

/// Runs in the root context (the effective context is the request's): an ID token check's
/// wait for keys is over.
pub fn resume_id_token(plugin: &Plugin, wait: IdTokenWait) {
    let IdTokenWait { paused, flow, cx } = wait;
    let step = match check_id_token(plugin, &flow, Some(paused)) {
        Step::Done(outcome) => flow.resume(&plugin.engine, outcome, crate::now()),
        _ => flow.resume(&plugin.engine, Err(Error::keys_unavailable()), crate::now()),
    };
    drive(plugin, cx, step);
}

/// A renewal ended: shared with the VM's waiters, carried out, and the request decided.
fn renewed(plugin: &Plugin, cx: Cx, outcome: &RenewalOutcome) {
    if let Some(r) = &cx.renewal {
        let now = now_ms64();
        let _ = crate::shared::with_renewal_board(&r.key, |b| b.finish(&r.key, outcome, now));
    }
    if let Begin::Decide(req) = apply_renewal(plugin, cx.clone(), outcome) {
        decide(plugin, &Cx { request: req, ..cx }, verdict::Start::Decide);
    }
}

/// Runs a held request's machine (in a callback: the request is resumed when allowed).
fn decide(plugin: &Plugin, cx: &Cx, start: verdict::Start) {
    let next = verdict::decide_and_apply(
        plugin,
        &cx.request,
        cx.context_id,
        &cx.allowed,
        now_ms(),
        start,
    );
    match next {
        Next::Continue => {
            let _ = hostcalls::resume_http_request();
        }
        Next::Wait => plugin.wake_root(cx.context_id),
        Next::Stop => {}
        // Renewal never runs on the magic-link path (the core says so): fail closed.
        Next::ReadForm(_) => verdict::send(&verdict::internal_error(), Some(plugin)),
    }
}

/// Sends a login reply (every `set-cookie` its own header), logged as the core says.
pub fn send_reply(plugin: &Plugin, r: &LoginReply) {
    if let Some(line) = &r.log {
        log(line);
    }
    plugin.count(|m| edgegate_envoy_glue::metrics::count_login_reply(m, r.status));
    verdict::send_local(r.status, &r.headers, &r.body);
}

/// Keeps the discovery document the provider's key set fetched, when it follows the login's
/// discovery URL: one fetch per VM serves both (the root calls this after its key-set work).
pub fn adopt_discovery(
    plugin: &Plugin,
    provider: &str,
    state: Option<&edgegate::jwks::JwksState>,
    now: UnixTime,
) {
    let Some(login) = plugin.engine.login() else {
        return;
    };
    if login.provider_name() != provider || cached_discovery(plugin, now).is_some() {
        return;
    }
    if let Ok(edgegate::login::DiscoveryStep::Ready(d)) = login.discovery(state, now) {
        if let Ok(mut cache) = plugin.login.discovery.try_borrow_mut() {
            *cache = Some((d, now));
        }
    }
}

fn cached_discovery(plugin: &Plugin, now: UnixTime) -> Option<Discovery> {
    let d = plugin.login.discovery.try_borrow().ok()?;
    d.as_ref()
        .filter(|(_, at)| now < at.saturating_add(DISCOVERY_TTL_SECONDS))
        .map(|(d, _)| d.clone())
}

/// Sends a request to the provider through Envoy; the call's token.
fn dispatch(
    plugin: &Plugin,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> Result<u32, String> {
    let mut call = edgegate_envoy_glue::login::IdpCall::new(&plugin.engine, method, url, headers);
    let busy = plugin
        .login
        .calls
        .try_borrow()
        .map_or(true, |c| c.len() >= MAX_CALLS);
    if busy {
        return Err("too many login calls in flight".into());
    }
    hostcalls::dispatch_http_call(
        &call.cluster,
        std::mem::take(&mut call.headers),
        body.map(str::as_bytes),
        vec![],
        IDP_TIMEOUT,
    )
    .map_err(|status| call.refused(&format!("{status:?}")))
}

fn park(plugin: &Plugin, token: u32, cx: Cx, pending: Pending) {
    let call = Call { token, cx, pending };
    match plugin.login.calls.try_borrow_mut() {
        Ok(mut c) => c.push(call),
        Err(_) => verdict::send(&verdict::internal_error(), Some(plugin)),
    }
}

/// The response (or failure: no `:status`) of a login call; false when `token` is not one.
pub fn on_call_response(plugin: &Plugin, token: u32, num_headers: usize, body_size: usize) -> bool {
    let call = {
        let Ok(mut calls) = plugin.login.calls.try_borrow_mut() else {
            return false;
        };
        let Some(i) = calls.iter().position(|c| c.token == token) else {
            return false;
        };
        calls.swap_remove(i)
    };
    // Read the response before switching to the request's context. A failed call (reset,
    // timeout) has no header map at all: reading a value of it would make the SDK trap.
    let status = if num_headers == 0 {
        None
    } else {
        crate::request::read_map(MapType::HttpCallResponseHeaders)
            .unwrap_or_default()
            .into_iter()
            .find(|(n, _)| n == ":status")
            .and_then(|(_, v)| String::from_utf8(v).ok())
            .and_then(|s| s.parse::<u16>().ok())
    };
    let want = body_size.min(MAX_RESPONSE_BYTES.saturating_add(1));
    let body = match status {
        Some(_) if want > 0 => hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, want)
            .ok()
            .flatten()
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if hostcalls::set_effective_context(call.cx.context_id).is_err() {
        return true; // the client went away
    }
    let engine = &plugin.engine;
    let now = crate::now();
    let answer = glue_login::answer(status, &body);
    let step = match call.pending {
        Pending::Discovery(p) => {
            let d = glue_login::discovery(engine, answer);
            if let (Ok(d), Ok(mut cache)) = (&d, plugin.login.discovery.try_borrow_mut()) {
                *cache = Some((d.clone(), now));
            }
            p.resume(engine, d, now)
        }
        Pending::Tokens(p) => p.resume(engine, answer, now),
    };
    drive(plugin, call.cx, step);
    true
}

/// Whether the engine's login section can run here: it needs random bytes.
pub fn check_random_source(engine: &Engine) -> Result<(), String> {
    if engine.login().is_none() {
        return Ok(());
    }
    let probe = crate::wasi::random_bytes();
    if probe.iter().all(|b| *b == 0) {
        return Err(
            "login needs random bytes, and this host's WASI random_get gave none; \
                    the config is refused (run Envoy with a wasm runtime that provides \
                    wasi_snapshot_preview1.random_get, e.g. V8)"
                .into(),
        );
    }
    Ok(())
}
