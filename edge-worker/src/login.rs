//! OIDC login in the worker: the routes of the core's `login` section, and session renewal
//! with the refresh token. Only I/O lives here (discovery and token requests with `fetch`,
//! randomness from `crypto.getRandomValues`, cookies on responses); every decision is the
//! core's (`edgegate::login`, `edgegate::oidc`).
//!
//! - `GET login_path?rd=…`: discovery (one document per isolate: the one the provider's key set
//!   fetched when it follows the same discovery URL, else fetched here and cached for
//!   `DISCOVERY_TTL_SECONDS`), 302 to the authorization endpoint with the per-attempt cookie;
//! - `GET` the redirect URI's path: code exchange, ID-token check (keys from the isolate's key
//!   set of the provider, refetched early on an unknown `kid`), session (+ refresh) cookie,
//!   302 to the return URL; any failure is a refused login without a session;
//! - every other request: [`renew`] uses the refresh token when the core says so, and the
//!   request continues with the renewed session; a refused renewal ends the session (a
//!   provider outage leaves a still-valid session alone);
//! - `logout_path` (GET or POST): cookies cleared, 302 to the provider's end-session endpoint;
//! - `me_path`: the identity of any accepted credential as JSON, else 401 JSON.

use std::cell::RefCell;
use std::collections::HashMap;

use edgegate::login::{
    whoami_json, AfterFailure, Discovery, DiscoveryStep, Grant, Login, RefreshState, Renewal,
    Route, TokenResponse, DISCOVERY_TTL_SECONDS, MAX_RESPONSE_BYTES, REFRESH_NONCE_BYTES,
};
use edgegate::oidc::LOGIN_RANDOM_BYTES;
use edgegate::session::Session;
use edgegate::{Error, Identity, Reason, UnixTime, Verdict};
use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestInit, RequestRedirect, Response, ResponseInit};

use crate::{
    abort_after, denial_response, global_fetch, internal_error, log_error, now, refresh_keys,
    sleep_ms, Gate, State, STATE,
};

/// The secret binding holding the client secret (overrides `login.client_secret`).
pub const CLIENT_SECRET_BINDING: &str = "OIDC_CLIENT_SECRET";
/// How long one request to the provider (discovery, token endpoint) may take.
const IDP_TIMEOUT_MS: f64 = 5_000.0;

thread_local! {
    /// The provider's discovery document, per isolate, with when it was fetched.
    static DISCOVERY: RefCell<Option<(Discovery, UnixTime)>> = const { RefCell::new(None) };
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// `N` bytes from the platform's CSPRNG (`crypto.getRandomValues`).
fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut buf = [0u8; N];
    get_random_values(&mut buf)
        .map_err(|_| Error::new(Reason::Internal, "crypto.getRandomValues failed"))?;
    if buf.iter().all(|b| *b == 0) {
        return Err(Error::new(
            Reason::Internal,
            "crypto.getRandomValues gave zeros",
        ));
    }
    Ok(buf)
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
    f: impl FnOnce(&Login, &edgegate::Engine, &mut crate::RemoteKeySets) -> R,
) -> Result<R, Error> {
    with_gate(|g| {
        let Gate { engine, remote, .. } = g;
        let login = engine.login()?;
        Some(f(login, engine, remote))
    })
    .ok_or_else(not_configured)
}

/// Which login route `path` is, if the config has a login section.
pub(crate) fn route(path: &str) -> Option<Route> {
    with_gate(|g| g.engine.login().and_then(|l| l.route(path)))
}

fn header<'a>(incoming: &'a [(String, String)], name: &str) -> Option<&'a str> {
    incoming
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn cookie_header(incoming: &[(String, String)]) -> String {
    incoming
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn wants_html(incoming: &[(String, String)]) -> bool {
    header(incoming, "accept").is_some_and(|a| a.contains("text/html"))
}

fn query_of(path: &str) -> &str {
    path.split_once('?').map_or("", |(_, q)| q)
}

fn client_secret(env: &JsValue) -> Option<String> {
    Reflect::get(env, &JsValue::from_str(CLIENT_SECRET_BINDING))
        .ok()
        .and_then(|v| v.as_string())
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
    let (status, body) = idp_request("GET", &url, &accept, None)
        .await
        .map_err(|why| {
            Error::new(
                Reason::KeysUnavailable,
                format!("could not fetch the provider's discovery document {url}: {why}"),
            )
        })?;
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

fn response(
    status: u16,
    headers: &[(&str, &str)],
    set_cookies: &[String],
    body: Option<&str>,
) -> Result<Response, JsValue> {
    let h = Headers::new()?;
    for (n, v) in headers {
        h.append(n, v)?;
    }
    for c in set_cookies {
        h.append("set-cookie", c)?;
    }
    h.set("cache-control", "no-store")?;
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(&h);
    Response::new_with_opt_str_and_init(body, &init)
}

fn redirect(location: &str, set_cookies: &[String]) -> Result<Response, JsValue> {
    response(302, &[("location", location)], set_cookies, None)
}

fn html_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// A refused login: logged with its reason (never a token), an error page for browsers or
/// JSON, no session cookie; `set_cookies` only delete cookies.
fn refuse(html: bool, e: &Error, set_cookies: &[String]) -> Result<Response, JsValue> {
    log_error(&format!(
        "edgegate: login refused: {}: {}",
        e.reason().code(),
        e.message()
    ));
    let status = e.http_status();
    if html {
        let body = format!(
            "<!doctype html><meta charset=utf-8><title>Login failed</title>\
             <h1>Login failed</h1><p>{}</p><p>Reason: <code>{}</code></p><p><a href=\"/\">Start again</a></p>",
            html_escape(e.message()),
            e.reason().code()
        );
        return response(
            status,
            &[
                ("content-type", "text/html; charset=utf-8"),
                ("x-frame-options", "DENY"),
                ("content-security-policy", "default-src 'none'"),
            ],
            set_cookies,
            Some(&body),
        );
    }
    let body = serde_json::json!({
        "error": "login_failed",
        "reason": e.reason().code(),
        "message": e.message(),
    })
    .to_string();
    response(
        status,
        &[("content-type", "application/json")],
        set_cookies,
        Some(&body),
    )
}

fn method_not_allowed(allow: &str) -> Result<Response, JsValue> {
    response(405, &[("allow", allow)], &[], None)
}

/// `GET login_path?rd=…`
pub(crate) async fn start(
    method: &str,
    path: &str,
    incoming: &[(String, String)],
) -> Result<Response, JsValue> {
    if method != "GET" && method != "HEAD" {
        return method_not_allowed("GET, HEAD");
    }
    let html = wants_html(incoming);
    let result = async {
        let disco = discovery().await?;
        let rnd = random::<LOGIN_RANDOM_BYTES>()?;
        with_login(|l, engine, _| l.start(&disco, engine.redirects(), query_of(path), &rnd, now()))?
    }
    .await;
    match result {
        Ok(s) => redirect(&s.location, &[s.set_cookie]),
        Err(e) => refuse(html, &e, &[]),
    }
}

/// `GET` the callback path.
pub(crate) async fn callback(
    env: &JsValue,
    method: &str,
    path: &str,
    incoming: &[(String, String)],
) -> Result<Response, JsValue> {
    if method != "GET" {
        return method_not_allowed("GET");
    }
    let html = wants_html(incoming);
    let query = query_of(path);
    let cookies = cookie_header(incoming);
    // Whatever happens, the attempt named by the callback's state is over.
    let clear: Vec<String> = edgegate::oidc::parse_callback(query)
        .ok()
        .and_then(|cb| with_login(|l, _, _| l.clear_attempt_cookie(&cb.state)).ok())
        .into_iter()
        .collect();
    let result = async {
        // The discovery document first: RFC 9207 `iss` is required when it advertises it.
        let disco = discovery().await?;
        let (cb, attempt) = with_login(|l, _, _| l.open_callback(query, &cookies, &disco, now()))??;
        let tokens = token_exchange(env, Grant::callback(&cb, &attempt)).await?;
        let id_token = tokens.id_token.as_deref().ok_or_else(|| {
            Error::new(
                Reason::LoginMismatch,
                "the token response has no id_token (is `openid` among the scopes?)",
            )
        })?;
        let identity = check_id_token(
            id_token,
            Some(&attempt.nonce),
            tokens.access_token.as_deref(),
        )
        .await?;
        let mut set = establish(&identity, tokens.refresh_token.as_deref(), Some(id_token))?;
        web_sys::console::log_1(&JsValue::from_str(&format!(
            "edgegate: login of {:?} through {:?}",
            identity.subject, identity.provider
        )));
        set.extend(clear.iter().cloned());
        Ok::<_, Error>((attempt.return_to, set))
    }
    .await;
    match result {
        Ok((location, set)) => redirect(&location, &set),
        Err(e) => refuse(html, &e, &clear),
    }
}

/// `GET`/`POST` logout path.
pub(crate) async fn logout(
    method: &str,
    incoming: &[(String, String)],
) -> Result<Response, JsValue> {
    if method != "GET" && method != "POST" {
        return method_not_allowed("GET, POST");
    }
    let cookies = cookie_header(incoming);
    // Without discovery (provider down), log out locally.
    let disco = match discovery().await {
        Ok(d) => Some(d),
        Err(e) => {
            log_error(&format!(
                "edgegate: logout without the provider's end_session_endpoint: {}",
                e.message()
            ));
            None
        }
    };
    let reply = with_login(|l, engine, _| {
        engine
            .sessions()
            .map(|s| l.logout(s, disco.as_ref(), &cookies, now()))
    });
    match reply {
        Ok(Some(r)) => redirect(&r.location, &r.set_cookies),
        _ => internal_error(),
    }
}

/// `GET` me path: the identity of any accepted credential, else 401. The same machine as the
/// guard ([`crate::drive`]), started with [`edgegate::Engine::identify`].
pub(crate) async fn me(head: &crate::drive::Head<'_>) -> Result<Response, JsValue> {
    if head.method != "GET" && head.method != "HEAD" {
        return method_not_allowed("GET, HEAD");
    }
    let ended = crate::drive::run(
        head,
        None,
        |e, r, k, c, now| e.identify(r, k, c, now),
        |_, v, _| v,
    )
    .await?;
    match ended {
        crate::drive::Ended::Done(Verdict::Allow {
            identity: Some(id), ..
        }) => response(
            200,
            &[("content-type", "application/json")],
            &[],
            Some(&whoami_json(&id)),
        ),
        crate::drive::Ended::Done(Verdict::Reply(d)) => denial_response(&d),
        _ => internal_error(),
    }
}

/// The name=value of a `Set-Cookie` header value.
fn cookie_pair(set_cookie: &str) -> Option<(&str, &str)> {
    set_cookie.split(';').next()?.split_once('=')
}

/// Replaces (or removes, with `None`) cookies in the request's `Cookie` header, so the
/// decision sees the renewed session.
fn rewrite_cookies(incoming: &mut Vec<(String, String)>, replace: &[(&str, Option<&str>)]) {
    let old = cookie_header(incoming);
    let mut kept: Vec<String> = old
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
    incoming.retain(|(n, _)| !n.eq_ignore_ascii_case("cookie"));
    if !kept.is_empty() {
        incoming.push(("cookie".into(), kept.join("; ")));
    }
}

/// Whether the synchronous fast path must leave this request to the async `handle`: it is for
/// one of the login routes or the magic-link endpoint (paths are configurable, so asked of the
/// core), or it carries a session the core says is due for renewal (a token request first).
pub(crate) fn needs_async(path: &str, incoming: &[(String, String)]) -> bool {
    let bare = path.split_once('?').map_or(path, |(p, _)| p);
    let own_route = with_gate(|g| {
        Some(
            g.engine.login().and_then(|l| l.route(bare)).is_some()
                || g.engine.magic_link_path() == Some(bare),
        )
    });
    if own_route == Some(true) {
        return true;
    }
    let cookies = cookie_header(incoming);
    if cookies.is_empty() {
        return false;
    }
    with_gate(|g| {
        let sessions = g.engine.sessions()?;
        let login = g.engine.login()?;
        Some(matches!(
            login.renewal(sessions, &cookies, now()),
            Renewal::Renew { .. }
        ))
    })
    .unwrap_or(false)
}

/// Before deciding a request: renews the session with the refresh token when the core says
/// it is time. Returns the `Set-Cookie` values for the response (the renewed session and
/// refresh cookies, or their deletion when the renewal failed: the session ends).
pub(crate) async fn renew(env: &JsValue, incoming: &mut Vec<(String, String)>) -> Vec<String> {
    let cookies = cookie_header(incoming);
    if cookies.is_empty() {
        return Vec::new();
    }
    let renewal = with_gate(|g| {
        let sessions = g.engine.sessions()?;
        let login = g.engine.login()?;
        Some(login.renewal(sessions, &cookies, now()))
    });
    let Some(Renewal::Renew { refresh, current }) = renewal else {
        return Vec::new();
    };
    let names = with_gate(|g| {
        Some((
            g.engine.sessions()?.cookie_name().to_string(),
            g.engine.login()?.refresh_cookie_name().to_string(),
        ))
    });
    let Some((session_name, refresh_name)) = names else {
        return Vec::new();
    };
    // A page's parallel requests all find the session due: within the isolate, one of them
    // refreshes and the others wait for its outcome (a rotated refresh token can be used once).
    let key = edgegate::session::find_cookie(&cookies, &refresh_name)
        .unwrap_or_default()
        .to_string();
    let still_valid = current.is_some();
    let result = match join_renewal(&key).await {
        Some(shared) => shared,
        None => {
            let r = refresh_session(env, &refresh, current.as_ref()).await;
            finish_renewal(&key, &r);
            r
        }
    };
    if let Err(e) = &result {
        let keep = with_login(|l, _, _| l.after_failed_renewal(e, still_valid))
            .is_ok_and(|a| a == AfterFailure::KeepSession);
        if keep {
            log_error(&format!(
                "edgegate: session renewal failed, the session continues until it expires: {}: {}",
                e.reason().code(),
                e.message()
            ));
            return Vec::new();
        }
    }
    renewed(incoming, result, &session_name, &refresh_name)
}

/// The request's cookies and the `Set-Cookie`s after a renewal: the new session, or (failed)
/// both cookies cleared.
fn renewed(
    incoming: &mut Vec<(String, String)>,
    result: Result<Vec<String>, Error>,
    session_name: &str,
    refresh_name: &str,
) -> Vec<String> {
    match result {
        Ok(set) => {
            let session_value = set
                .iter()
                .filter_map(|c| cookie_pair(c))
                .find(|(n, _)| *n == session_name)
                .map(|(_, v)| v.to_string());
            rewrite_cookies(incoming, &[(session_name, session_value.as_deref())]);
            set
        }
        Err(e) => {
            log_error(&format!(
                "edgegate: session renewal failed, the session ends: {}: {}",
                e.reason().code(),
                e.message()
            ));
            rewrite_cookies(incoming, &[(session_name, None), (refresh_name, None)]);
            with_gate(|g| {
                Some(vec![
                    g.engine.sessions()?.clear_cookie_header(),
                    g.engine.login()?.clear_refresh_cookie(),
                ])
            })
            .unwrap_or_default()
        }
    }
}

/// Renewals per refresh cookie in this isolate: in flight since (ms), or done with an outcome.
enum Renewing {
    InFlight(f64),
    Done(f64, Result<Vec<String>, Error>),
}

thread_local! {
    static RENEWALS: RefCell<HashMap<String, Renewing>> = RefCell::new(HashMap::new());
}

/// How long a finished renewal's outcome is reused, and how long another request waits for
/// one in flight, in milliseconds.
const RENEWAL_SHARE_MS: f64 = 30_000.0;
const RENEWAL_WAIT_MS: f64 = 10_000.0;
const MAX_RENEWALS: usize = 10_000;

/// The outcome of a renewal of the same refresh cookie that finished recently or is in flight
/// (waited for, bounded); None when this request must renew (it is then marked in flight).
async fn join_renewal(key: &str) -> Option<Result<Vec<String>, Error>> {
    let started = js_sys::Date::now();
    loop {
        let now_ms = js_sys::Date::now();
        let state = RENEWALS.with(|m| {
            let mut m = m.borrow_mut();
            match m.get(key) {
                Some(Renewing::Done(at, r)) if now_ms - at < RENEWAL_SHARE_MS => {
                    Some(Some(r.clone()))
                }
                Some(Renewing::InFlight(at)) if now_ms - at < RENEWAL_WAIT_MS => None,
                _ => {
                    if m.len() >= MAX_RENEWALS {
                        m.retain(|_, r| match r {
                            Renewing::InFlight(at) | Renewing::Done(at, _) => {
                                now_ms - *at < RENEWAL_SHARE_MS
                            }
                        });
                    }
                    m.insert(key.to_string(), Renewing::InFlight(now_ms));
                    Some(None)
                }
            }
        });
        match state {
            Some(outcome) => return outcome,
            None if now_ms - started >= RENEWAL_WAIT_MS => return None,
            None => {
                if sleep_ms(50).await.is_err() {
                    return None;
                }
            }
        }
    }
}

fn finish_renewal(key: &str, outcome: &Result<Vec<String>, Error>) {
    let now_ms = js_sys::Date::now();
    RENEWALS.with(|m| {
        m.borrow_mut()
            .insert(key.to_string(), Renewing::Done(now_ms, outcome.clone()));
    });
}

/// One renewal at the token endpoint; the `Set-Cookie` values of the renewed session.
async fn refresh_session(
    env: &JsValue,
    refresh: &RefreshState,
    current: Option<&Session>,
) -> Result<Vec<String>, Error> {
    {
        let grant = Grant::Refresh {
            refresh_token: &refresh.refresh_token,
        };
        let tokens = token_exchange(env, grant).await?;
        let verified = match tokens.id_token.as_deref() {
            Some(t) => Some(check_id_token(t, None, tokens.access_token.as_deref()).await?),
            None => None,
        };
        let identity = with_login(|l, _, _| l.renewed_identity(refresh, current, verified))??;
        let refresh_token = tokens
            .refresh_token
            .as_deref()
            .unwrap_or(&refresh.refresh_token);
        let id_token = tokens.id_token.as_deref().or(refresh.id_token.as_deref());
        establish(&identity, Some(refresh_token), id_token)
    }
}

/// A code or refresh grant at the provider's token endpoint, its response parsed by the core.
async fn token_exchange(env: &JsValue, grant: Grant<'_>) -> Result<TokenResponse, Error> {
    let disco = discovery().await?;
    let secret = client_secret(env);
    let treq = with_login(|l, _, _| l.token_request(&disco, grant, secret.as_deref()))??;
    let (status, body) = idp_request("POST", &treq.url, &treq.headers, Some(&treq.body))
        .await
        .map_err(|why| {
            Error::new(
                Reason::KeysUnavailable,
                format!("the token endpoint could not be reached: {why}"),
            )
        })?;
    Login::parse_token_response(status, body.as_bytes())
}

/// The session (and, with a refresh token, the encrypted refresh cookie) for `identity`: the
/// `Set-Cookie` values.
fn establish(
    identity: &Identity,
    refresh_token: Option<&str>,
    id_token: Option<&str>,
) -> Result<Vec<String>, Error> {
    let nonce = random::<REFRESH_NONCE_BYTES>()?;
    with_login(|l, engine, _| {
        let sessions = engine.sessions().ok_or_else(not_configured)?;
        l.establish(sessions, identity, refresh_token, id_token, &nonce, now())
    })?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_rewritten_for_the_decision() {
        let mut h = vec![
            ("accept".to_string(), "*/*".to_string()),
            ("cookie".to_string(), "a=1; s=old; r=x".to_string()),
        ];
        rewrite_cookies(&mut h, &[("s", Some("new"))]);
        assert_eq!(cookie_header(&h), "a=1; r=x; s=new");
        rewrite_cookies(&mut h, &[("s", None), ("r", None)]);
        assert_eq!(cookie_header(&h), "a=1");
        assert_eq!(cookie_pair("s=v; Path=/"), Some(("s", "v")));
    }
}
