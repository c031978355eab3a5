//! The synchronous fast path: most requests need no I/O before the verdict, and an async export
//! costs about 60 µs of CPU per request in workerd (wasm-bindgen's future/promise machinery,
//! measured), more than the rest of the decision. `worker.mjs` calls [`decide_sync`] first:
//!
//! - a verdict: a `Response` (refusal) or the `Request` to send to the origin (JS fetches it
//!   through the `ORIGIN` binding when that is an object, else through the global `fetch`);
//! - `[id, promise]`: the core needs signatures verified. They are already started here on
//!   WebCrypto (`crypto.subtle.verify`, with the key imported earlier in this isolate and cached
//!   under its algorithm and key material); JS awaits the promise and calls again with `id` and
//!   what it resolved to. The results are bound to the checks stored under `id` here, so the core
//!   gets exactly what was verified. With the token cache off, the first step already computed
//!   the verdict for all-valid results ([`edgegate::precheck::decide_provisional`]); the second
//!   step uses it when every check verified in the same second under the same key set, and
//!   otherwise runs the engine again with the results ([`edgegate::precheck`] matches them
//!   exactly). A key not imported yet sends the request the async way, which imports it;
//! - `undefined`: the request needs I/O first (a key-set fetch or wait, an early refetch, the
//!   magic-link POST, dev mode), or is for the worker's own endpoints under [`ASYNC_PREFIX`]
//!   (login, callback, logout, ...): JS calls the async [`crate::handle`], which does everything.

use std::cell::RefCell;
use std::collections::HashMap;

use edgegate::precheck::{
    self, Answer, Pending as Provisional, Provisional as Step, SignatureCheck,
};
use edgegate::Request as CoreRequest;
use js_sys::{Array, Promise, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::Request;

use crate::webcrypto::{self, Crypto};
use crate::{
    act, denial_response, internal_error, load, now, path_and_query, ready, request_headers,
    upstream_request, Action, State, STATE,
};

/// Paths always left to the async [`crate::handle`]: the worker's own endpoints (OIDC login,
/// callback, logout, `/auth/me`, magic links) live there, and the fast path must not decide them
/// as ordinary requests.
pub const ASYNC_PREFIX: &str = "/auth/";

fn takes_async_path(path: &str) -> bool {
    path.starts_with(ASYNC_PREFIX)
}

/// Checks handed to JS and not answered yet (a request whose JS side failed never answers: when
/// the table is full it is emptied, and those requests are asked again or go the async way).
const MAX_PENDING: usize = 1024;

#[derive(Default)]
struct Pending {
    next: u32,
    waiting: HashMap<u32, Waiting>,
}

/// What the core asked for: a first step that kept its verdict for all-valid answers
/// ([`precheck::decide_provisional`]), or the checks of a later step (decided exactly again).
enum Asked {
    Provisional {
        pending: Box<Provisional>,
        keys_gen: u64,
    },
    Exact(Vec<SignatureCheck>),
}

impl Asked {
    fn checks(&self) -> &[SignatureCheck] {
        match self {
            Asked::Provisional { pending, .. } => pending.checks(),
            Asked::Exact(c) => c,
        }
    }
}

/// A request waiting for its checks: what was read from it, so the next step need not read the
/// request again (each read of a JS object costs glue), and what the core asked for.
struct Waiting {
    method: String,
    url: String,
    incoming: Vec<(String, String)>,
    asked: Asked,
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

/// One step's outcome under the state's borrow.
enum Fast {
    Act(Action),
    Verify(Asked),
}

/// One synchronous step of a request; see the module docs. `id` and `valid` are absent on the
/// first step; then `valid` is what the verify promise resolved to (a boolean for one check, an
/// array of booleans for several).
#[wasm_bindgen(js_name = decideSync)]
pub fn decide_sync(
    req: &Request,
    env: &JsValue,
    id: Option<u32>,
    valid: &JsValue,
    head: Option<String>,
) -> Result<JsValue, JsValue> {
    let fetch_due = STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.get_or_insert_with(|| load(env)) {
            State::Ready(g) => {
                let now = now();
                g.remote
                    .0
                    .iter()
                    .any(|r| r.state.next_wakeup().is_some_and(|t| now >= t))
            }
            State::Broken(_) => false,
        }
    });
    if fetch_due {
        return Ok(JsValue::UNDEFINED);
    }
    let answered = id.and_then(|id| PENDING.with(|p| p.borrow_mut().waiting.remove(&id)));
    let (method, url, incoming, asked) = match answered {
        Some(w) => (w.method, w.url, w.incoming, Some(w.asked)),
        None => {
            let (method, url, incoming) = match head.as_deref().and_then(parse_head) {
                Some(h) => h,
                None => match request_headers(&req.headers())? {
                    Some(incoming) => (req.method(), req.url(), incoming),
                    None => {
                        let d = edgegate::limits::headers_too_large_denial();
                        return Ok(denial_response(&d)?.into());
                    }
                },
            };
            if takes_async_path(path_and_query(&url))
                || crate::login::needs_async(path_and_query(&url), &incoming)
            {
                return Ok(JsValue::UNDEFINED);
            }
            (method, url, incoming, None)
        }
    };
    let path = path_and_query(&url);
    let valid = asked.as_ref().map(|a| results(a.checks().len(), valid));
    let step = STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let gate = match ready(&mut slot) {
            Ok(g) => g,
            Err(a) => return Ok(Fast::Act(a)),
        };
        let pairs: Vec<(&str, &str)> = incoming
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let core_req = CoreRequest {
            method: &method,
            path,
            headers: &pairs,
        };
        let now = now();
        let keys_gen = gate.keys_gen;
        let (engine, remote, cache) = (&gate.engine, &gate.remote, &mut gate.cache);
        let verdict = match (asked, gate.crypto) {
            (_, Crypto::Wasm) => engine.decide(&core_req, remote, cache, now),
            (None, Crypto::WebCrypto) => {
                match precheck::decide_provisional(engine, &core_req, remote, cache, now) {
                    Step::Done(v) => v,
                    Step::Verify(pending) => {
                        return Ok(Fast::Verify(Asked::Provisional {
                            pending: Box::new(pending),
                            keys_gen,
                        }))
                    }
                }
            }
            (Some(asked), Crypto::WebCrypto) => {
                let valid = valid.unwrap_or_default();
                let answers = match asked {
                    Asked::Provisional {
                        pending,
                        keys_gen: then,
                    } => pending.resume(&valid, now, then == keys_gen),
                    Asked::Exact(checks) => Err(checks
                        .into_iter()
                        .zip(valid.iter().chain(std::iter::repeat(&false)))
                        .map(|(check, v)| Answer { check, valid: *v })
                        .collect()),
                };
                match answers {
                    Ok(v) => v,
                    Err(answers) => {
                        match precheck::decide(engine, &core_req, remote, cache, now, &answers) {
                            precheck::Step::Done(v) => v,
                            precheck::Step::Verify(c) => return Ok(Fast::Verify(Asked::Exact(c))),
                        }
                    }
                }
            }
        };
        act(gate, verdict, &incoming, false, now).map(Fast::Act)
    })?;
    Ok(match step {
        Fast::Verify(asked) => to_js(Waiting {
            method,
            url,
            incoming,
            asked,
        })?,
        Fast::Act(Action::Broken) => internal_error()?.into(),
        Fast::Act(Action::Reply(d)) => denial_response(&d)?.into(),
        Fast::Act(Action::Forward {
            headers,
            dev: false,
        }) => {
            // Through the ORIGIN service binding: the headers as one string, and worker.mjs
            // builds the same Request (method, headers, body, redirect: manual) in JS.
            let binding = Reflect::get(env, &JsValue::from_str(crate::ORIGIN_BINDING))?;
            match headers.to_text().filter(|_| binding.is_object()) {
                Some(text) => JsValue::from_str(&text),
                None => match upstream_request(req, env, &method, &url, path, &headers)? {
                    Ok((upstream, _binding)) => upstream.into(),
                    Err(no_origin) => no_origin.into(),
                },
            }
        }
        Fast::Act(
            Action::Verify(_)
            | Action::Forward { dev: true, .. }
            | Action::Refetch
            | Action::Wait { .. }
            | Action::MagicLinkForm,
        ) => JsValue::UNDEFINED,
    })
}

/// `method\nurl\nname\nvalue...` as worker.mjs reads the request (one crossing instead of
/// several per header; names, values, the method and a parsed URL never hold a line feed).
/// `None` if malformed: the request is then read through its JS object.
type Head = (String, String, Vec<(String, String)>);

fn parse_head(head: &str) -> Option<Head> {
    let mut lines = head.split('\n');
    let method = lines.next()?.to_string();
    let url = lines.next()?.to_string();
    let mut incoming = Vec::new();
    while let Some(name) = lines.next() {
        incoming.push((name.to_string(), lines.next()?.to_string()));
    }
    let incoming = crate::with_authority(&url, incoming);
    Some((method, url, incoming))
}

/// The host's results, one per check (a missing or non-boolean result is `false`).
fn results(n: usize, valid: &JsValue) -> Vec<bool> {
    if n == 1 {
        return vec![valid.as_bool() == Some(true)];
    }
    let list: Array = if Array::is_array(valid) {
        valid.clone().unchecked_into()
    } else {
        Array::new()
    };
    (0..n)
        .map(|i| list.get(i as u32).as_bool() == Some(true))
        .collect()
}

/// `[id, promise]`: the verification already started here on WebCrypto with the key imported
/// earlier in this isolate (the promise resolves to a boolean; for several checks to an array
/// of booleans). A key not imported yet sends the request the async way, which imports it.
fn to_js(waiting: Waiting) -> Result<JsValue, JsValue> {
    let checks = waiting.asked.checks();
    let mut promises = Vec::with_capacity(checks.len());
    for c in checks {
        let Some(key) = webcrypto::cached_key(c) else {
            return Ok(JsValue::UNDEFINED);
        };
        promises.push(webcrypto::start_verify(c, &key)?);
    }
    let promise: Promise = match promises.as_slice() {
        [one] => one.clone(),
        many => Promise::all(&many.iter().collect::<Array>()),
    };
    let id = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.waiting.len() >= MAX_PENDING {
            p.waiting.clear();
        }
        p.next = p.next.wrapping_add(1);
        let id = p.next;
        p.waiting.insert(id, waiting);
        id
    });
    Ok(Array::of2(&JsValue::from(id), &promise).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_head_parses_and_refuses_a_half_pair() {
        let (m, u, h) =
            parse_head("GET\nhttps://h:8443/x?y\nauthorization\nBearer t\nx-a\n").unwrap();
        assert_eq!((m.as_str(), u.as_str()), ("GET", "https://h:8443/x?y"));
        // The URL's authority comes first, as `:authority` (the core's view; never forwarded).
        assert_eq!(
            h,
            vec![
                (":authority".to_string(), "h:8443".to_string()),
                ("authorization".to_string(), "Bearer t".to_string()),
                ("x-a".to_string(), String::new())
            ]
        );
        assert_eq!(
            parse_head("GET\nhttps://h/").unwrap().2,
            vec![(":authority".to_string(), "h".to_string())]
        );
        // A client cannot smuggle its own pseudo-header past the URL's.
        let (_, _, h) = parse_head("GET\nhttp://127.0.0.1/\n:authority\nevil.test").unwrap();
        assert_eq!(h, vec![(":authority".to_string(), "127.0.0.1".to_string())]);
        assert!(parse_head("GET\nhttps://h/\nx-a").is_none());
        assert!(parse_head("GET").is_none());
    }

    #[test]
    fn the_workers_own_endpoints_take_the_async_path() {
        for p in [
            "/auth/login?rd=/x",
            "/auth/callback",
            "/auth/me",
            "/auth/magic?token=t",
        ] {
            assert!(takes_async_path(p), "{p}");
        }
        for p in ["/", "/api/x", "/authx", "/public/auth/login"] {
            assert!(!takes_async_path(p), "{p}");
        }
    }
}
