//! edgegate as a Cloudflare-style worker: the core guards an origin inside workerd.
//!
//! The JS entry (`worker.mjs`) only hands `(request, env, ctx)` to [`handle`]; everything else
//! is here. Per isolate the worker keeps one compiled [`Engine`] and one [`TokenCache`] (built on
//! the first request from the `EDGEGATE_CONFIG` binding), and per request it:
//!
//! 1. asks [`Engine::decide`] with `now` from `Date.now()`;
//! 2. on Allow removes every client-sent copy of the identity headers (in any spelling), the
//!    credential it checked (unless its provider forwards it) and edgegate's own cookies, adds
//!    the identity headers and forwards the request to the origin (`ORIGIN` service binding, else the `ORIGIN_URL`
//!    text binding through the global `fetch`), without following redirects;
//! 3. on Reply answers the core's status, headers and body;
//! 4. on a magic-link POST reads the form (bounded), lets the core verify it, and enforces single
//!    use: globally through the `USED_LINKS` Durable Object when it is bound, else **per isolate**
//!    only (see [`UsedLinks`]).
//!
//! Remote key sets (`remote_jwks`) are fetched by the isolate, driven by the core's
//! [`JwksState`]: due fetches (first load, TTL refresh, early refetch on an unknown `kid`,
//! rate-limited by the core) run inline before the decision; a request whose keys are being
//! fetched by another request waits up to `wait_for_keys_ms`. The API-key list
//! (`api_keys.remote`) is fetched the same way, per isolate, by its [`KeyListState`]: a fetch
//! before the isolate's first decision and whenever one is due (conditional, `If-None-Match`);
//! nothing crosses isolates, so each isolate refuses a revoked key from its own next refresh
//! on, at most `refresh_interval_seconds` after the list changed.
//!
//! Fail closed: no config, a config the core refuses (logged with every field path), no origin
//! binding, key sets that cannot be fetched — the request is refused.
//!
//! RSA, ECDSA and Ed25519 signatures are verified with WebCrypto when the core's decision machine
//! asks (`webcrypto.rs`, `drive.rs`, `edgegate::step`), and most requests are decided by the synchronous
//! fast path (`fast.rs`) that `worker.mjs` calls before this async [`handle`].

mod device;
mod login;

use std::cell::RefCell;
use std::collections::HashMap;

mod drive;
mod fast;
mod webcrypto;
use webcrypto::Crypto;

use edgegate::cache::TokenCache;
use edgegate::engine::MAX_FORM_BODY;
use edgegate::jwk::KeySet;
use edgegate::jwks::{FetchRequest, JwksState};
use edgegate::keylist::{KeyListState, ListUpdate};
use edgegate::limits::{self, HeaderBudget};
use edgegate::login::Route;
use edgegate::refresh::Response as Fetched;
use edgegate::step::{NeedForm, Step};
use edgegate::verifier::KeyLookup;
use edgegate::{Engine, Error, LocalReply, Reason, UnixTime, Verdict};
use js_sys::{Array, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortSignal, Headers, Request, RequestInit, RequestRedirect, Response, ResponseInit,
};

// ring's getrandom dependency needs a source on wasm32-unknown-unknown; verification needs none.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
edgegate::register_no_random!();

/// The binding holding the config JSON (a secret or text binding; a JSON binding also works).
pub const CONFIG_BINDING: &str = "EDGEGATE_CONFIG";
/// A service binding to the origin (an object with `fetch`).
pub const ORIGIN_BINDING: &str = "ORIGIN";
/// Or the origin's base URL (`https://app.internal`), fetched through the global `fetch`.
pub const ORIGIN_URL_BINDING: &str = "ORIGIN_URL";
/// The Durable Object namespace that makes magic links single-use globally (optional: without
/// it, single use holds per isolate only).
pub const USED_LINKS_BINDING: &str = "USED_LINKS";
/// Most magic-link `jti`s one isolate remembers; beyond that (after dropping expired ones) new
/// logins are refused rather than forgetting a used link.
const MAX_USED_LINKS: usize = 100_000;

#[wasm_bindgen]
extern "C" {
    /// The global `fetch` (used with `ORIGIN_URL`).
    #[wasm_bindgen(js_name = fetch)]
    pub(crate) fn global_fetch(req: &Request) -> Promise;

    /// A service binding (`env.ORIGIN`) or a Durable Object stub.
    type Fetcher;
    #[wasm_bindgen(method, catch)]
    fn fetch(this: &Fetcher, req: &Request) -> Result<Promise, JsValue>;

    /// The `USED_LINKS` Durable Object namespace (class `UsedLinks` in worker.mjs).
    type DurableObjectNamespace;
    #[wasm_bindgen(method, catch, js_name = idFromName)]
    fn id_from_name(this: &DurableObjectNamespace, name: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn get(this: &DurableObjectNamespace, id: &JsValue) -> Result<Fetcher, JsValue>;

    #[wasm_bindgen(js_namespace = AbortSignal, js_name = timeout)]
    pub(crate) fn abort_after(ms: f64) -> AbortSignal;

    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, ms: i32) -> JsValue;
}

/// Magic-link `jti`s already consumed, until they expire, when no `USED_LINKS` Durable Object is
/// bound. Per isolate: a link can be used once per isolate, not once globally.
#[derive(Default)]
struct UsedLinks {
    until: HashMap<String, UnixTime>,
}

impl UsedLinks {
    /// Records `jti`; false if it was already used (or the table is full: fail closed).
    fn claim(&mut self, jti: &str, expires_at: UnixTime, now: UnixTime) -> bool {
        if self.until.get(jti).is_some_and(|exp| *exp >= now) {
            return false;
        }
        if self.until.len() >= MAX_USED_LINKS {
            self.until.retain(|_, exp| *exp >= now);
            if self.until.len() >= MAX_USED_LINKS {
                return false;
            }
        }
        self.until.insert(jti.to_string(), expires_at);
        true
    }
}

pub(crate) struct Gate {
    pub(crate) engine: Engine,
    pub(crate) cache: TokenCache,
    used: UsedLinks,
    pub(crate) remote: RemoteKeySets,
    pub(crate) crypto: Crypto,
}

/// One provider's remote key set and its refresh state.
pub(crate) struct Remote {
    provider: String,
    pub(crate) state: JwksState,
    fetch_timeout_ms: u64,
    pub(crate) wait_for_keys_ms: u64,
}

/// The isolate's remote key sets and API-key list (`api_keys.remote`), as the core looks them
/// up.
#[derive(Default)]
pub(crate) struct RemoteKeySets(Vec<Remote>, Option<KeyListState>);

impl RemoteKeySets {
    /// Whether a key set or the API-key list is due for a fetch at `now`.
    pub(crate) fn fetch_due(&self, now: UnixTime) -> bool {
        let due = |t: Option<UnixTime>| t.is_some_and(|t| now >= t);
        self.0.iter().any(|r| due(r.state.next_wakeup()))
            || self.1.as_ref().is_some_and(|l| due(l.next_wakeup()))
    }

    pub(crate) fn get_mut(&mut self, provider: &str) -> Option<&mut Remote> {
        self.0.iter_mut().find(|r| r.provider == provider)
    }
}

impl KeyLookup for RemoteKeySets {
    fn keys(&self, provider: &str) -> Option<&KeySet> {
        self.0
            .iter()
            .find(|r| r.provider == provider)
            .and_then(|r| r.state.keys())
    }

    /// An unknown `kid` pauses the request when the key set's state machine would refetch now,
    /// or a fetch is under way (likely the refetch for that very key): [`drive`] does which.
    fn may_refetch(&self, provider: &str, now: UnixTime) -> bool {
        self.0.iter().any(|r| {
            r.provider == provider
                && (r.state.fetching()
                    || r.state.unknown_kid_refetch_from().is_some_and(|f| now >= f))
        })
    }

    fn api_key_list(&self) -> Option<&KeyListState> {
        self.1.as_ref()
    }
}

pub(crate) enum State {
    Ready(Box<Gate>),
    /// The config was missing or refused: every request is a 500; the text names every field.
    Broken(String),
}

thread_local! {
    pub(crate) static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

pub(crate) fn log_error(msg: &str) {
    web_sys::console::error_1(&JsValue::from_str(msg));
}

pub(crate) fn now() -> UnixTime {
    // Date.now() is milliseconds; the core wants whole seconds.
    (js_sys::Date::now() / 1000.0) as UnixTime
}

fn load(env: &JsValue) -> State {
    let raw = match Reflect::get(env, &JsValue::from_str(CONFIG_BINDING)) {
        Ok(v) if v.is_string() => v.as_string().unwrap_or_default(),
        Ok(v) if v.is_object() => js_sys::JSON::stringify(&v)
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default(),
        _ => {
            return State::Broken(format!(
                "{CONFIG_BINDING}: the binding is missing; set it to the config JSON (a secret or text binding)"
            ))
        }
    };
    let crypto = match crypto_backend(env) {
        Ok(c) => c,
        Err(why) => return State::Broken(why),
    };
    match Engine::from_json(raw.as_bytes()) {
        Ok(engine) => {
            for w in engine.warnings() {
                log_error(&format!("edgegate: WARNING: {w}"));
            }
            let remote = RemoteKeySets(
                engine
                    .remote_key_sources()
                    .into_iter()
                    .map(|r| Remote {
                        fetch_timeout_ms: r.source.fetch_timeout_ms(),
                        wait_for_keys_ms: r.source.wait_for_keys_ms(),
                        state: JwksState::new(r.source),
                        provider: r.provider,
                    })
                    .collect(),
                engine.api_key_list(),
            );
            let cache = engine.new_cache();
            State::Ready(Box::new(Gate {
                engine,
                cache,
                used: UsedLinks::default(),
                remote,
                crypto,
            }))
        }
        Err(errors) => State::Broken(errors.to_string()),
    }
}

/// The signature backend the `EDGEGATE_CRYPTO` binding asks for (default: WebCrypto).
fn crypto_backend(env: &JsValue) -> Result<Crypto, String> {
    let v = Reflect::get(env, &JsValue::from_str(webcrypto::CRYPTO_BINDING))
        .ok()
        .and_then(|v| v.as_string());
    Crypto::from_binding(v.as_deref())
}

/// What the worker does with a verdict once the state is no longer borrowed.
pub(crate) enum Action {
    Reply(LocalReply),
    Forward { headers: Upstream, dev: bool },
    Broken,
}

/// The worker's fetch handler: `export default { fetch: (req, env, ctx) => handle(req, env, ctx) }`.
/// `paused`: the id under which the synchronous fast path ([`fast::decide_sync`]) left a paused
/// step for this request (it is resumed here, not decided again).
#[wasm_bindgen]
pub async fn handle(
    req: Request,
    env: JsValue,
    _ctx: JsValue,
    paused: Option<u32>,
) -> Result<Response, JsValue> {
    if let Some(handed) = paused.and_then(fast::take_paused) {
        let head = drive::Head {
            method: &handed.method,
            path: path_and_query(&handed.url),
            incoming: &handed.incoming,
        };
        return guard(&req, &env, &head, Some(handed.step)).await;
    }
    let method = req.method();
    let url = req.url();
    let path = path_and_query(&url);
    // Bounded before anything is copied (worker.mjs checked already; the login routes below
    // never reach the core's own check): over the bounds 431, CONNECT 405.
    let Some(incoming) = request_headers(&req.headers())? else {
        return denial_response(&limits::headers_too_large_denial());
    };
    if limits::is_refused_method(&method) {
        return denial_response(&limits::method_not_allowed_denial());
    }
    let incoming = with_authority(&url, incoming);

    // Lazily load the config on the first request of the isolate.
    STATE.with(|cell| {
        cell.borrow_mut().get_or_insert_with(|| load(&env));
    });
    // OIDC login routes (src/login.rs; `/auth/me` after renewal), then session renewal, then
    // the guard.
    // Device authorization (src/device.rs), before the login routes it shares a prefix with.
    if device::is_route(path) {
        let head = drive::Head {
            method: &method,
            path,
            incoming: &incoming,
        };
        return device::serve(&req, &env, &head).await;
    }
    let route = login::route(path);
    let mut incoming = incoming;
    if route.is_some() && route != Some(Route::Me) {
        let head = drive::Head {
            method: &method,
            path,
            incoming: &incoming,
        };
        return login::serve(&env, &head).await;
    }
    let set_cookies = login::renew(&env, path, &mut incoming).await;
    let head = drive::Head {
        method: &method,
        path,
        incoming: &incoming,
    };
    let resp = if route == Some(Route::Me) {
        login::serve(&env, &head).await?
    } else {
        guard(&req, &env, &head, None).await?
    };
    login::with_cookies(resp, &set_cookies)
}

/// How many decisions the engine of this isolate started: one per request, whichever path it
/// took (the WebCrypto probe of the tests reads it).
#[wasm_bindgen(js_name = decisionsStarted)]
pub fn decisions_started() -> f64 {
    STATE.with(|cell| match &*cell.borrow() {
        Some(State::Ready(g)) => g.engine.decisions_started() as f64,
        _ => 0.0,
    })
}

/// Decides the request with the core (from `paused`, when the fast path began it) and carries
/// out the verdict.
async fn guard(
    req: &Request,
    env: &JsValue,
    head: &drive::Head<'_>,
    paused: Option<Step>,
) -> Result<Response, JsValue> {
    let ended = drive::run(
        head,
        paused,
        |e, r, k, c, now| e.start(r, k, c, now),
        |gate, v, _| act(gate, v, head.incoming),
    )
    .await?;
    match ended {
        drive::Ended::Done(Action::Reply(d)) => denial_response(&d),
        drive::Ended::Done(Action::Forward { headers, dev }) => {
            forward(req, env, head.path, headers, dev).await
        }
        drive::Ended::Done(Action::Broken) | drive::Ended::Broken => internal_error(),
        drive::Ended::Form(form) => magic_link_post(req, env, form).await,
    }
}

/// The state of the isolate for one decision, or the action for a broken config.
pub(crate) fn ready(slot: &mut Option<State>) -> Result<&mut Gate, Action> {
    match slot.as_mut() {
        Some(State::Ready(g)) => Ok(&mut **g),
        Some(State::Broken(why)) => {
            log_error(&format!(
                "edgegate: refusing every request: the config was refused:\n{why}"
            ));
            Err(Action::Broken)
        }
        None => Err(Action::Broken),
    }
}

/// What the worker does with the core's verdict.
pub(crate) fn act(gate: &mut Gate, verdict: Verdict, incoming: &[(String, String)]) -> Action {
    let engine = &gate.engine;
    match verdict {
        Verdict::Allow {
            headers, consumed, ..
        } => {
            // Identity headers in any spelling never go upstream, nor pseudo-headers; the
            // credential edgegate checked and edgegate's own cookies stay here (the core's
            // edits). Workers have no request-trailer API: there are no trailers to clean.
            let pairs: Vec<(&str, &str)> = incoming
                .iter()
                .filter(|(n, _)| !n.starts_with(':') && !engine.is_identity_header(n))
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let keep = engine
                .upstream_edits(&pairs, consumed.as_ref())
                .apply(&pairs);
            Action::Forward {
                headers: Upstream { keep, set: headers },
                dev: engine.dev_mode_response_header().is_some(),
            }
        }
        Verdict::Reply(d) => Action::Reply(d),
    }
}

/// The headers the origin gets: the client's, minus every identity header it sent (`keep`),
/// then the core's identity headers (`set`).
pub(crate) struct Upstream {
    keep: Vec<(String, String)>,
    set: edgegate::engine::UpstreamHeaders,
}

impl Upstream {
    pub(crate) fn to_headers(&self) -> Result<Headers, JsValue> {
        let out = Headers::new()?;
        for (n, v) in &self.keep {
            out.append(n, v)?;
        }
        for (n, v) in self.set.iter() {
            // `set`, not `append`: the core's value is the only one upstream sees.
            out.set(n, v)?;
        }
        Ok(out)
    }

    /// The same as one string for `worker.mjs` (one crossing instead of one per header):
    /// `count\nname\nvalue\n...` — `count` pairs to append, then pairs to set. `None` if a
    /// name or value holds a line feed (Headers refuses those; the core never makes one), so
    /// that no value can smuggle a header in.
    pub(crate) fn to_text(&self) -> Option<String> {
        let mut out = String::with_capacity(256);
        out.push_str(&self.keep.len().to_string());
        for (n, v) in self.keep.iter().chain(self.set.iter()) {
            if n.contains('\n') || v.contains('\n') {
                return None;
            }
            out.push('\n');
            out.push_str(n);
            out.push('\n');
            out.push_str(v);
        }
        Some(out)
    }
}

/// Runs the key-set fetches that are due (a first load, a refresh, an early refetch; a
/// discovery document is followed by its JWKS in the next round). Failures are logged and
/// reported to the state machine, which backs off; the decision then fails closed.
pub(crate) async fn refresh_keys() {
    for _round in 0..3 {
        // `None`: the API-key list.
        let due: Vec<(Option<String>, FetchRequest, u64)> = STATE.with(|cell| {
            let mut slot = cell.borrow_mut();
            let Some(State::Ready(gate)) = slot.as_mut() else {
                return Vec::new();
            };
            let now = now();
            let mut due: Vec<_> = gate
                .remote
                .0
                .iter_mut()
                .filter_map(|r| {
                    r.state
                        .poll(now)
                        .map(|f| (Some(r.provider.clone()), f, r.fetch_timeout_ms))
                })
                .collect();
            if let Some(l) = &mut gate.remote.1 {
                let timeout = l.source().fetch_timeout_ms();
                due.extend(l.poll(now).map(|f| (None, f, timeout)));
            }
            due
        });
        if due.is_empty() {
            return;
        }
        for (provider, fetch, timeout_ms) in due {
            let outcome = fetch_document(&fetch, timeout_ms).await;
            STATE.with(|cell| {
                let mut slot = cell.borrow_mut();
                let Some(State::Ready(gate)) = slot.as_mut() else {
                    return;
                };
                let now = now();
                match provider {
                    Some(p) => {
                        if let Some(r) = gate.remote.get_mut(&p) {
                            key_set_fetched(r, &p, &fetch, outcome, now);
                        }
                    }
                    None => {
                        if let Some(l) = &mut gate.remote.1 {
                            list_fetched(l, &fetch, outcome, now);
                        }
                    }
                }
            });
        }
    }
}

/// A fetch's response: status, `Cache-Control`, `ETag`, body.
type Document = (u16, Option<String>, Option<String>, String);

fn answer_of(d: &Document) -> Fetched<'_> {
    Fetched {
        status: d.0,
        cache_control: d.1.as_deref(),
        etag: d.2.as_deref(),
        body: d.3.as_bytes(),
    }
}

/// Reports a key set's fetch to its state machine; failures are logged.
fn key_set_fetched(
    r: &mut Remote,
    provider: &str,
    fetch: &FetchRequest,
    outcome: Result<Document, String>,
    now: UnixTime,
) {
    match outcome {
        Ok(d) => {
            if let Err(e) = r.state.respond(fetch, &answer_of(&d), now) {
                log_error(&format!(
                    "edgegate: jwt.providers {provider:?}: refused the key set from {}: {e}",
                    fetch.url
                ));
            }
        }
        Err(why) => {
            r.state.on_failure(now);
            log_error(&format!(
                "edgegate: jwt.providers {provider:?}: could not fetch {}: {why}",
                fetch.url
            ));
        }
    }
}

/// Reports the API-key list's fetch to its state machine; a new list and failures are logged.
fn list_fetched(
    l: &mut KeyListState,
    fetch: &FetchRequest,
    outcome: Result<Document, String>,
    now: UnixTime,
) {
    let why = match outcome {
        Ok(d) => match l.on_response(fetch, &answer_of(&d), now) {
            Ok(ListUpdate::Replaced { keys }) => {
                web_sys::console::log_1(&JsValue::from_str(&format!(
                    "edgegate: api_keys.remote: fetched a list of {keys} key(s) from {}",
                    fetch.url
                )));
                return;
            }
            Ok(ListUpdate::Unchanged) => return,
            Err(e) => format!("{e}; keeping the last good list"),
        },
        Err(why) => {
            l.on_failure(now);
            format!("could not fetch it: {why}; keeping the last good list")
        }
    };
    log_error(&format!("edgegate: api_keys.remote: {}: {why}", fetch.url));
}

/// GETs a discovery or JWKS document, or the API-key list, with a timeout and a size bound.
async fn fetch_document(fetch: &FetchRequest, timeout_ms: u64) -> Result<Document, String> {
    let describe = |e: JsValue| {
        e.as_string()
            .or_else(|| js_sys::Error::from(e).message().as_string())
            .unwrap_or_else(|| "fetch failed".into())
    };
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_redirect(RequestRedirect::Manual);
    init.set_signal(Some(&abort_after(timeout_ms as f64)));
    let req = Request::new_with_str_and_init(&fetch.url, &init).map_err(describe)?;
    req.headers()
        .set("accept", "application/json")
        .map_err(describe)?;
    if let Some(tag) = &fetch.if_none_match {
        req.headers().set("if-none-match", tag).map_err(describe)?;
    }
    let resp: Response = JsFuture::from(global_fetch(&req))
        .await
        .map_err(describe)?
        .unchecked_into();
    let headers = resp.headers();
    let too_large = headers
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|l| l.trim().parse::<usize>().ok())
        .is_some_and(|l| l > fetch.max_body_bytes);
    if too_large {
        return Err(format!(
            "the document is over {} bytes",
            fetch.max_body_bytes
        ));
    }
    let cache_control = headers.get("cache-control").ok().flatten();
    let etag = headers.get("etag").ok().flatten();
    let body = JsFuture::from(resp.text().map_err(describe)?)
        .await
        .map_err(describe)?
        .as_string()
        .unwrap_or_default();
    if body.len() > fetch.max_body_bytes {
        return Err(format!(
            "the document is over {} bytes",
            fetch.max_body_bytes
        ));
    }
    Ok((resp.status(), cache_control, etag, body))
}

pub(crate) async fn sleep_ms(ms: i32) -> Result<(), JsValue> {
    let p = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    JsFuture::from(p).await.map(|_| ())
}

/// `https://host/p?q` -> `/p?q` (workerd hands the worker an absolute, already parsed URL).
fn path_and_query(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(i) => after_scheme.get(i..).unwrap_or("/"),
        None => "/",
    }
}

/// The request's headers, copied only while they are within the core's bounds
/// ([`edgegate::limits`]): `None` as soon as one field takes the request over (the caller
/// refuses 431; nothing past the bound is copied).
pub(crate) fn request_headers(h: &Headers) -> Result<Option<Vec<(String, String)>>, JsValue> {
    let mut out = Vec::new();
    let Some(iter) = js_sys::try_iter(h)? else {
        return Ok(Some(out));
    };
    let mut budget = HeaderBudget::new();
    for entry in iter {
        let pair: Array = entry?.unchecked_into();
        let (name, value) = (pair.get(0), pair.get(1));
        // Lengths first (UTF-16 units: a header is a byte string, one unit per byte), then the copy.
        let len = |v: &JsValue| {
            v.dyn_ref::<js_sys::JsString>()
                .map_or(0, |s| s.length() as usize)
        };
        if budget.take(len(&name), len(&value)).is_err() {
            return Ok(None);
        }
        if let (Some(n), Some(v)) = (name.as_string(), value.as_string()) {
            out.push((n, v));
        }
    }
    Ok(Some(out))
}

/// `worker.mjs` calls this when a request is over the header bounds, before copying anything:
/// the core's 431 refusal.
#[wasm_bindgen(js_name = headersTooLarge)]
pub fn headers_too_large() -> Result<Response, JsValue> {
    denial_response(&limits::headers_too_large_denial())
}

/// The core's 405 for a `CONNECT`, as raw HTTP/1.1 bytes for `worker.mjs`'s `connect` handler:
/// workerd has already answered the client's CONNECT with `200` when the handler runs, so the
/// refusal can only be written into the tunnel (then closed). Nothing reaches the origin.
#[wasm_bindgen(js_name = connectRefusal)]
pub fn connect_refusal() -> String {
    limits::raw_http1(&limits::method_not_allowed_denial())
}

/// The request's headers as the core reads them: the URL's authority first, as `:authority`
/// (what Envoy hands the core; dev mode is honoured for loopback authorities only). Pseudo-headers
/// are the core's view only: [`act`] never forwards a `:`-name.
pub(crate) fn with_authority(
    url: &str,
    mut headers: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    headers.retain(|(n, _)| !n.starts_with(':'));
    headers.insert(0, (":authority".to_string(), authority.to_string()));
    headers
}

pub(crate) fn internal_error() -> Result<Response, JsValue> {
    let headers = Headers::new()?;
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    let init = ResponseInit::new();
    init.set_status(500);
    init.set_headers(&headers);
    Response::new_with_opt_str_and_init(
        Some(
            r#"{"error":"error","reason":"invalid_config","message":"the gateway is misconfigured; see its logs"}"#,
        ),
        &init,
    )
}

pub(crate) fn denial_response(d: &LocalReply) -> Result<Response, JsValue> {
    local_response(d.status, &d.headers, &d.body)
}

/// A response the core wrote: status, headers (repeated names appended), body (none when empty).
pub(crate) fn local_response(
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<Response, JsValue> {
    let h = Headers::new()?;
    for (n, v) in headers {
        h.append(n, v)?;
    }
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(&h);
    let body = (!body.is_empty()).then_some(body);
    Response::new_with_opt_str_and_init(body, &init)
}

async fn forward(
    req: &Request,
    env: &JsValue,
    path: &str,
    headers: Upstream,
    dev: bool,
) -> Result<Response, JsValue> {
    let (upstream, binding) =
        match upstream_request(req, env, &req.method(), &req.url(), path, &headers)? {
            Ok(u) => u,
            Err(no_origin) => return Ok(no_origin),
        };
    let promise = if binding.is_object() {
        binding.unchecked_into::<Fetcher>().fetch(&upstream)?
    } else {
        global_fetch(&upstream)
    };
    let resp: Response = JsFuture::from(promise).await?.unchecked_into();
    if !dev {
        return Ok(resp);
    }
    // A fetched response's headers are immutable: copy it to add the dev-mode marker.
    let copy = Response::new_with_opt_readable_stream_and_init(resp.body().as_ref(), &{
        let i = ResponseInit::new();
        i.set_status(resp.status());
        i.set_status_text(&resp.status_text());
        let h = Headers::new_with_headers(&resp.headers())?;
        h.set("x-edgegate-dev-mode", "true")?;
        i.set_headers(&h);
        i
    })?;
    Ok(copy)
}

/// The request to send to the origin, and the `ORIGIN` binding (an object: fetch through it;
/// else through the global `fetch`); `Err` is the 500 when no origin is configured.
type UpstreamRequest = Result<(Request, JsValue), Response>;

fn upstream_request(
    req: &Request,
    env: &JsValue,
    method: &str,
    url: &str,
    path: &str,
    headers: &Upstream,
) -> Result<UpstreamRequest, JsValue> {
    let init = RequestInit::new();
    init.set_method(method);
    let headers = headers.to_headers()?;
    init.set_headers(&headers);
    init.set_redirect(RequestRedirect::Manual);
    if let Some(body) = req.body() {
        init.set_body(&body);
    }
    let binding = Reflect::get(env, &JsValue::from_str(ORIGIN_BINDING))?;
    if binding.is_object() {
        let upstream = Request::new_with_str_and_init(url, &init)?;
        return Ok(Ok((upstream, binding)));
    }
    let Some(base) = Reflect::get(env, &JsValue::from_str(ORIGIN_URL_BINDING))?.as_string() else {
        log_error(&format!(
            "edgegate: no origin: bind the origin as the service `{ORIGIN_BINDING}` or set `{ORIGIN_URL_BINDING}`"
        ));
        return Ok(Err(internal_error()?));
    };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    Ok(Ok((Request::new_with_str_and_init(&url, &init)?, binding)))
}

/// The magic-link form's token verified by the core, claimed in this isolate when there is no
/// Durable Object; with the reply to a replay. `Err(None)`: no usable config.
fn verify_link(
    form: NeedForm,
    body: Option<String>,
    global: bool,
    now: UnixTime,
) -> Result<(edgegate::engine::MagicLinkLogin, LocalReply), Option<LocalReply>> {
    STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let Some(State::Ready(gate)) = slot.as_mut() else {
            return Err(None);
        };
        let engine = &gate.engine;
        let Some(body) = body.filter(|b| b.len() <= MAX_FORM_BODY) else {
            return Err(Some(engine.deny_json(&Error::new(
                Reason::TokenTooLarge,
                "the form is too large",
            ))));
        };
        let login = form.resume(engine, body.as_bytes(), now).map_err(Some)?;
        if !global && !gate.used.claim(&login.jti, login.expires_at, now) {
            return Err(Some(engine.replayed()));
        }
        Ok((login, engine.replayed()))
    })
}

/// Claims a magic link's `jti` in its Durable Object (`USED_LINKS`): 204 first use, 409 used.
async fn claim_link(namespace: &JsValue, jti: &str, expires_at: UnixTime) -> Result<u16, JsValue> {
    let ns: DurableObjectNamespace = namespace.clone().unchecked_into();
    let stub = ns.get(&ns.id_from_name(jti)?)?;
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&expires_at.to_string()));
    let claim = Request::new_with_str_and_init("https://used-links/claim", &init)?;
    let resp: Response = JsFuture::from(stub.fetch(&claim)?).await?.unchecked_into();
    Ok(resp.status())
}

async fn magic_link_post(
    req: &Request,
    env: &JsValue,
    form: NeedForm,
) -> Result<Response, JsValue> {
    let too_large = req
        .headers()
        .get("content-length")?
        .and_then(|l| l.trim().parse::<usize>().ok())
        .is_some_and(|l| l > MAX_FORM_BODY);
    let body = if too_large {
        None
    } else {
        JsFuture::from(req.text()?).await?.as_string()
    };
    let now = now();
    let namespace = Reflect::get(env, &JsValue::from_str(USED_LINKS_BINDING))?;
    let global = namespace.is_object();
    // Verify (and, without a Durable Object, claim the jti per isolate) under the borrow...
    let verified = verify_link(form, body, global, now);
    let (login, replayed) = match verified {
        Ok(v) => v,
        Err(Some(d)) => return denial_response(&d),
        Err(None) => return internal_error(),
    };
    // ...and with one, claim it there (no borrow is held across the await).
    if global {
        match claim_link(&namespace, &login.jti, login.expires_at).await? {
            204 => {}
            409 => return denial_response(&replayed),
            other => {
                log_error(&format!(
                    "edgegate: the {USED_LINKS_BINDING} Durable Object answered {other}; refusing the magic link"
                ));
                return internal_error();
            }
        }
    }
    denial_response(&LocalReply {
        status: 302,
        reason: Reason::CredentialMissing,
        headers: vec![
            ("location".into(), login.location),
            ("set-cookie".into(), login.set_cookie),
            ("cache-control".into(), "no-store".into()),
        ],
        body: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query_keeps_the_query() {
        assert_eq!(path_and_query("https://h.example/a/b?x=1"), "/a/b?x=1");
        assert_eq!(path_and_query("http://127.0.0.1:8080"), "/");
        assert_eq!(path_and_query("http://h/"), "/");
    }

    #[test]
    fn a_link_is_used_once_until_it_expires() {
        let mut u = UsedLinks::default();
        assert!(u.claim("j1", 100, 10));
        assert!(!u.claim("j1", 100, 50));
        assert!(u.claim("j2", 100, 50));
        // after its expiry the core refuses the link anyway; the entry may be reused
        assert!(u.claim("j1", 300, 101));
    }
}
