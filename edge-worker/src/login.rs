//! OIDC login in the worker: the I/O of the core's login machine ([`edgegate::login::LoginStep`]):
//! discovery and token requests with `fetch`, ID-token checks and `/auth/me` on the same driver
//! as the guard ([`crate::drive`]), randomness from `crypto.getRandomValues`, cookies on
//! responses, and who waits for whose renewal ([`RenewalBoard`], per isolate). Every decision,
//! status, page and log line is the core's (`edgegate::login::flow`), so the Envoy filter
//! answers alike.
//!
//! - the login routes (`login_path`, the callback, `logout_path`, `me_path`): [`route`];
//! - every other request: [`renew`] uses the refresh token when the core says so, and the
//!   request continues with the renewed session (or without it, when the provider refused).

use std::cell::RefCell;

use edgegate::login::{
    Discovery, DiscoveryStep, Join, LogLevel, LogLine, LoginReply, LoginStep, RenewalBoard,
    RenewalOutcome, Route, DISCOVERY_TTL_SECONDS, FLOW_RANDOM_BYTES, MAX_RESPONSE_BYTES,
};
use edgegate::{Error, Identity, Reason, UnixTime, Verdict};
use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestInit, RequestRedirect, Response, ResponseInit};

use crate::{
    abort_after, global_fetch, internal_error, log_error, now, refresh_keys, sleep_ms, Gate, State,
    STATE,
};

/// The secret binding holding the client secret (overrides `login.client_secret`).
pub const CLIENT_SECRET_BINDING: &str = "OIDC_CLIENT_SECRET";
/// How long one request to the provider (discovery, token endpoint) may take.
const IDP_TIMEOUT_MS: f64 = 5_000.0;

thread_local! {
    /// The provider's discovery document, per isolate, with when it was fetched.
    static DISCOVERY: RefCell<Option<(Discovery, UnixTime)>> = const { RefCell::new(None) };
    /// Renewals in flight or just done in this isolate.
    static RENEWALS: RefCell<RenewalBoard> = RefCell::new(RenewalBoard::default());
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// Fresh bytes from the platform's CSPRNG (`crypto.getRandomValues`); zeros when it failed,
/// which the core refuses to log in with.
fn random() -> [u8; FLOW_RANDOM_BYTES] {
    let mut buf = [0u8; FLOW_RANDOM_BYTES];
    if !fill_random(&mut buf) {
        buf = [0u8; FLOW_RANDOM_BYTES];
    }
    buf
}

/// Fills `buf` from `crypto.getRandomValues`; false (logged) when it failed.
pub(crate) fn fill_random(buf: &mut [u8]) -> bool {
    let ok = get_random_values(buf).is_ok();
    if !ok {
        log_error("edgegate: crypto.getRandomValues failed");
    }
    ok
}

fn with_gate<R>(f: impl FnOnce(&mut Gate) -> Option<R>) -> Option<R> {
    STATE.with(|cell| match cell.borrow_mut().as_mut() {
        Some(State::Ready(g)) => f(g),
        _ => None,
    })
}

fn not_configured() -> Error {
    Error::new(Reason::Internal, "OIDC login is not configured")
}

/// Runs `f` with the login section, the engine and the isolate's key sets (no await inside).
fn with_login<R>(
    f: impl FnOnce(&edgegate::login::Login, &edgegate::Engine, &mut crate::RemoteKeySets) -> R,
) -> Result<R, Error> {
    with_gate(|g| {
        let Gate { engine, remote, .. } = g;
        let login = engine.login()?;
        Some(f(login, engine, remote))
    })
    .ok_or_else(not_configured)
}

/// Runs `f` with the engine (no await inside); `None` without a usable config.
fn with_engine<R>(f: impl FnOnce(&edgegate::Engine) -> R) -> Option<R> {
    with_gate(|g| Some(f(&g.engine)))
}

/// Which login route `path` is, if the config has a login section.
pub(crate) fn route(path: &str) -> Option<Route> {
    with_gate(|g| g.engine.login().and_then(|l| l.route(path)))
}

fn cookie_header(incoming: &[(String, String)]) -> String {
    incoming
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn client_secret(env: &JsValue) -> Option<String> {
    Reflect::get(env, &JsValue::from_str(CLIENT_SECRET_BINDING))
        .ok()
        .and_then(|v| v.as_string())
}

fn log(line: &LogLine) {
    let text = format!("edgegate: {}", line.text);
    match line.level {
        LogLevel::Info => web_sys::console::log_1(&JsValue::from_str(&text)),
        LogLevel::Warn => log_error(&text),
    }
}

/// How a login machine ended.
enum Ended {
    Reply(LoginReply),
    Renewed(RenewalOutcome),
}

/// Drives a login machine to its end. `head`: the request, for `/auth/me`'s identification.
async fn drive(head: &crate::drive::Head<'_>, mut step: LoginStep) -> Result<Ended, JsValue> {
    let broken = || Error::new(Reason::Internal, "the worker's config is gone");
    loop {
        step = match step {
            LoginStep::Reply(r) => return Ok(Ended::Reply(r)),
            LoginStep::Renewed(o) => return Ok(Ended::Renewed(o)),
            LoginStep::NeedDiscovery(p) => {
                let d = discovery().await;
                with_engine(|e| p.resume(e, d, now()))
                    .unwrap_or_else(|| LoginStep::Renewed(Err(broken())))
            }
            LoginStep::NeedTokens(p) => {
                let r = p.request();
                let resp = idp_request("POST", &r.url, &r.headers, Some(&r.body)).await;
                let resp = resp
                    .as_ref()
                    .map(|(s, b)| (*s, b.as_bytes()))
                    .map_err(Clone::clone);
                with_engine(|e| p.resume(e, resp, now()))
                    .unwrap_or_else(|| LoginStep::Renewed(Err(broken())))
            }
            LoginStep::NeedIdToken(p) => {
                let q = p.query();
                let outcome = check_id_token(q.id_token, q.nonce, q.access_token).await;
                with_engine(|e| p.resume(e, outcome, now()))
                    .unwrap_or_else(|| LoginStep::Renewed(Err(broken())))
            }
            LoginStep::NeedIdentity(p) => {
                let ended = crate::drive::run(
                    head,
                    None,
                    |e, r, k, c, now| e.identify(r, k, c, now),
                    |_, v, _| v,
                )
                .await?;
                let verdict = match ended {
                    crate::drive::Ended::Done(v) => v,
                    _ => Verdict::Reply(edgegate_internal()),
                };
                with_engine(|e| p.resume(e, verdict))
                    .unwrap_or_else(|| LoginStep::Renewed(Err(broken())))
            }
        };
    }
}

fn edgegate_internal() -> edgegate::LocalReply {
    edgegate::LocalReply {
        status: 500,
        reason: Reason::Internal,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: r#"{"error":"error","reason":"internal"}"#.into(),
    }
}

/// A login route (`route` of the request's path): the core's machine, driven to its reply.
pub(crate) async fn serve(
    env: &JsValue,
    head: &crate::drive::Head<'_>,
) -> Result<Response, JsValue> {
    let secret = client_secret(env);
    let rnd = random();
    let start = |e: &edgegate::Engine| head.with(|r| e.login_route(r, &rnd, secret.as_deref()));
    let Some(Some(step)) = with_engine(start) else {
        return internal_error();
    };
    match drive(head, step).await? {
        Ended::Reply(r) => reply(&r),
        Ended::Renewed(_) => internal_error(),
    }
}

/// The response of a login reply (logged as the core says).
pub(crate) fn reply(r: &LoginReply) -> Result<Response, JsValue> {
    if let Some(line) = &r.log {
        log(line);
    }
    crate::local_response(r.status, &r.headers, &r.body)
}

/// A request to the provider, bounded in time and size. Returns status and body.
async fn idp_request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let describe = |e: JsValue| {
        e.as_string()
            .or_else(|| js_sys::Error::from(e).message().as_string())
            .unwrap_or_else(|| "fetch failed".into())
    };
    let init = RequestInit::new();
    init.set_method(method);
    init.set_redirect(RequestRedirect::Manual);
    init.set_signal(Some(&abort_after(IDP_TIMEOUT_MS)));
    if let Some(b) = body {
        init.set_body(&JsValue::from_str(b));
    }
    let req = Request::new_with_str_and_init(url, &init).map_err(describe)?;
    for (n, v) in headers {
        req.headers().set(n, v).map_err(describe)?;
    }
    let resp: Response = JsFuture::from(global_fetch(&req))
        .await
        .map_err(describe)?
        .unchecked_into();
    let too_large = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|l| l.trim().parse::<usize>().ok())
        .is_some_and(|l| l > MAX_RESPONSE_BYTES);
    if too_large {
        return Err("the response is too large".into());
    }
    let text = JsFuture::from(resp.text().map_err(describe)?)
        .await
        .map_err(describe)?
        .as_string()
        .unwrap_or_default();
    if text.len() > MAX_RESPONSE_BYTES {
        return Err("the response is too large".into());
    }
    Ok((resp.status(), text))
}

/// The provider's discovery document, one per isolate: the provider's key set follows the same
/// discovery URL, the document it fetched (fetched now through the key set if it has none yet,
/// so it is fetched once for both); else this module's own, cached.
async fn discovery() -> Result<Discovery, Error> {
    let started = js_sys::Date::now();
    let mut drove = false;
    loop {
        let step = with_login(|l, _, remote| {
            let keys = remote.get_mut(l.provider_name()).map(|r| &r.state);
            l.discovery(keys, now())
        })??;
        match step {
            DiscoveryStep::Ready(d) => return Ok(d),
            DiscoveryStep::Own => return own_discovery().await,
            DiscoveryStep::FetchKeys if !drove => {
                drove = true;
                refresh_keys().await;
            }
            DiscoveryStep::FetchKeys | DiscoveryStep::Wait => {
                // Another request is fetching it through the key set: wait, bounded.
                if js_sys::Date::now() - started >= IDP_TIMEOUT_MS {
                    return Err(Error::new(
                        Reason::KeysUnavailable,
                        "the provider's discovery document did not arrive in time",
                    ));
                }
                sleep_ms(50)
                    .await
                    .map_err(|_| Error::new(Reason::Internal, "timer failed"))?;
            }
        }
    }
}

/// The discovery document fetched by the login flow itself (the key set does not follow it),
/// cached per isolate for `DISCOVERY_TTL_SECONDS`.
async fn own_discovery() -> Result<Discovery, Error> {
    let now = now();
    let cached = DISCOVERY.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(_, at)| now < at.saturating_add(DISCOVERY_TTL_SECONDS))
            .map(|(d, _)| d.clone())
    });
    if let Some(d) = cached {
        return Ok(d);
    }
    let url = with_login(|l, _, _| l.discovery_url())?;
    let accept = [("accept".to_string(), "application/json".to_string())];
    let (status, body) = match idp_request("GET", &url, &accept, None).await {
        Ok(answer) => answer,
        Err(why) => return Err(with_login(|l, _, _| l.discovery_unreachable(&why))?),
    };
    let d = with_login(|l, _, _| l.parse_discovery(status, body.as_bytes()))??;
    DISCOVERY.with(|c| *c.borrow_mut() = Some((d.clone(), now)));
    Ok(d)
}

/// Checks an ID token with the core's machine ([`edgegate::Engine::check_id_token`]): the
/// provider's keys fetched first if needed, once more on an unknown `kid` (rate-limited by the
/// key set's state), the signature on WebCrypto — the same driver as a request's.
async fn check_id_token(
    id_token: &str,
    nonce: Option<&str>,
    access_token: Option<&str>,
) -> Result<Identity, Error> {
    let head = crate::drive::Head {
        method: "GET",
        path: "/",
        incoming: &[],
    };
    let start = |e: &edgegate::Engine,
                 _: &edgegate::Request<'_>,
                 k: &crate::RemoteKeySets,
                 _: &mut edgegate::cache::TokenCache,
                 now| { e.check_id_token(id_token, nonce, access_token, k, now) };
    let ended = crate::drive::run(&head, None, start, |_, outcome, _| outcome)
        .await
        .map_err(|_| Error::new(Reason::Internal, "the ID token's check failed"))?;
    match ended {
        crate::drive::Ended::Done(outcome) => outcome,
        _ => Err(not_configured()),
    }
}

/// Whether the synchronous fast path must leave this request to the async `handle`: it is for
/// one of the login routes or the magic-link endpoint (paths are configurable, so asked of the
/// core), or it carries a session the core says is due for renewal (a token request first).
pub(crate) fn needs_async(path: &str, incoming: &[(String, String)]) -> bool {
    let bare = path.split_once('?').map_or(path, |(p, _)| p);
    let cookies = cookie_header(incoming);
    with_gate(|g| {
        let e = &g.engine;
        Some(
            e.login().and_then(|l| l.route(bare)).is_some()
                || e.device_route(bare).is_some()
                || e.magic_link_path() == Some(bare)
                || e.renewal_due(path, &cookies, now(), &mut g.cache).is_some(),
        )
    })
    .unwrap_or(false)
}

/// Before deciding a request: renews the session with the refresh token when the core says
/// it is time (one renewal per refresh cookie in the isolate: parallel requests wait for it
/// and share its outcome). Rewrites the request's `Cookie` header as the core says, and
/// returns the `Set-Cookie` values for the response.
pub(crate) async fn renew(
    env: &JsValue,
    path: &str,
    incoming: &mut Vec<(String, String)>,
) -> Vec<String> {
    let cookies = cookie_header(incoming);
    let due = with_gate(|g| g.engine.renewal_due(path, &cookies, now(), &mut g.cache));
    let Some(due) = due else {
        return Vec::new();
    };
    let (key, still_valid) = (due.key.clone(), due.still_valid);
    let mut due = Some(due);
    let since = js_sys::Date::now() as u64;
    let outcome = loop {
        let now_ms = js_sys::Date::now() as u64;
        match RENEWALS.with(|b| b.borrow_mut().join(&key, now_ms, since)) {
            Join::Shared(o) => break o,
            Join::Wait => {
                if sleep_ms(50).await.is_err() {
                    break Err(Error::new(Reason::Internal, "timer failed"));
                }
            }
            Join::Lead => {
                let Some(d) = due.take() else {
                    break Err(Error::new(Reason::Internal, "renewal lost"));
                };
                let o = lead_renewal(env, d).await;
                RENEWALS.with(|b| b.borrow_mut().finish(&key, &o, js_sys::Date::now() as u64));
                break o;
            }
        }
    };
    let Some(r) = with_engine(|e| e.apply_renewal(&cookies, &outcome, still_valid)) else {
        return Vec::new();
    };
    if let Some(line) = &r.log {
        log(line);
    }
    if let Some(c) = r.cookie_header {
        incoming.retain(|(n, _)| !n.eq_ignore_ascii_case("cookie"));
        if !c.is_empty() {
            incoming.push(("cookie".into(), c));
        }
    }
    r.set_cookies
}

/// This request renews: the core's renewal flow, driven to its outcome.
async fn lead_renewal(env: &JsValue, due: edgegate::login::DueRenewal) -> RenewalOutcome {
    let secret = client_secret(env);
    let rnd = random();
    let Some(step) = with_engine(|e| due.begin(e, &rnd, secret.as_deref())) else {
        return Err(not_configured());
    };
    let head = crate::drive::Head {
        method: "GET",
        path: "/",
        incoming: &[],
    };
    match drive(&head, step).await {
        Ok(Ended::Renewed(o)) => o,
        _ => Err(Error::new(
            Reason::Internal,
            "the renewal ended without an outcome",
        )),
    }
}

/// Adds `Set-Cookie` values to a response (a copy: fetched responses are immutable).
pub(crate) fn with_cookies(resp: Response, set_cookies: &[String]) -> Result<Response, JsValue> {
    if set_cookies.is_empty() {
        return Ok(resp);
    }
    let h = Headers::new_with_headers(&resp.headers())?;
    for c in set_cookies {
        h.append("set-cookie", c)?;
    }
    let init = ResponseInit::new();
    init.set_status(resp.status());
    init.set_status_text(&resp.status_text());
    init.set_headers(&h);
    Response::new_with_opt_readable_stream_and_init(resp.body().as_ref(), &init)
}
