//! The synchronous fast path: most requests need no I/O before the verdict, and an async export
//! costs about 60 µs of CPU per request in workerd (wasm-bindgen's future/promise machinery,
//! measured), more than the rest of the decision. `worker.mjs` calls [`decide_sync`] first, which
//! starts the core's decision machine ([`edgegate::step`]) and answers:
//!
//! - a verdict: a `Response` (refusal) or the `Request` to send to the origin (JS fetches it
//!   through the `ORIGIN` binding when that is an object, else through the global `fetch`);
//! - `[id, promise]`: the machine needs a signature verified. It is already started here on
//!   WebCrypto (`crypto.subtle.verify`, with the key imported earlier in this isolate and cached
//!   under its algorithm and key material); JS awaits the promise and calls again with `id` and
//!   what it resolved to, which resumes the paused step stored under `id` (the result is bound
//!   to exactly that check);
//! - `id` alone: the machine needs I/O first (a key not imported yet, a key-set fetch or wait,
//!   the magic-link form): JS calls the async [`crate::handle`] with `id`, which resumes the
//!   paused step there — the engine starts once per request;
//! - `undefined`: a key set (or the API-key list) is due for a refresh, or the request is for the worker's own
//!   endpoints under [`ASYNC_PREFIX`] (login, callback, logout, ...): JS calls the async
//!   [`crate::handle`], which does everything.

use std::cell::RefCell;
use std::collections::HashMap;

use edgegate::step::Step;
use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::Request;

use crate::drive::{self, Head as CoreHead};
use crate::webcrypto;
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

/// Paused steps handed to JS and not resumed yet (a request whose JS side failed never
/// resumes: when the table is full it is emptied, and those requests then fail closed).
const MAX_PENDING: usize = 1024;

#[derive(Default)]
struct Pending {
    next: u32,
    waiting: HashMap<u32, Paused>,
}

/// A request whose decision is paused: what was read from it (so the next step need not read
/// the request again: each read of a JS object costs glue), and the paused step.
pub(crate) struct Paused {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) incoming: Vec<(String, String)>,
    pub(crate) step: Step,
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

/// The paused step stored under `id`, for the async path to resume.
pub(crate) fn take_paused(id: u32) -> Option<Paused> {
    PENDING.with(|p| p.borrow_mut().waiting.remove(&id))
}

/// One step's outcome under the state's borrow.
enum Fast {
    Act(Action),
    Paused(Step),
}

/// One synchronous step of a request; see the module docs. `id` and `valid` are absent on the
/// first step; then `valid` is what the verify promise resolved to.
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
            State::Ready(g) => g.remote.fetch_due(now()),
            State::Broken(_) => false,
        }
    });
    let answered = id.and_then(take_paused);
    if fetch_due && answered.is_none() {
        return Ok(JsValue::UNDEFINED);
    }
    let (method, url, incoming, paused) = match answered {
        Some(p) => (p.method, p.url, p.incoming, Some(p.step)),
        None => match read_request(req, head.as_deref())? {
            Read::Head(method, url, incoming) => (method, url, incoming, None),
            Read::Answer(v) => return Ok(v),
        },
    };
    let path = path_and_query(&url);
    let core_head = CoreHead {
        method: &method,
        path,
        incoming: &incoming,
    };
    let step = match paused {
        Some(Step::NeedSignature(s)) => {
            let valid = valid.as_bool() == Some(true);
            step_now(&core_head, |gate, req, now| {
                s.resume(&gate.engine, valid, req, &gate.remote, &mut gate.cache, now)
            })
        }
        Some(other) => Fast::Paused(other),
        None => step_now(&core_head, |gate, req, now| {
            gate.engine.start(req, &gate.remote, &mut gate.cache, now)
        }),
    };
    match step {
        Fast::Paused(step) => hand_over(Paused {
            method,
            url,
            incoming,
            step,
        }),
        Fast::Act(a) => respond(a, req, env, &method, &url),
    }
}

/// A request read on its first step: its head, or the answer already (431, or `undefined` for
/// the async path).
enum Read {
    Head(String, String, Vec<(String, String)>),
    Answer(JsValue),
}

fn read_request(req: &Request, head: Option<&str>) -> Result<Read, JsValue> {
    let (method, url, incoming) = match head.and_then(parse_head) {
        Some(h) => h,
        None => match request_headers(&req.headers())? {
            Some(incoming) => (req.method(), req.url(), incoming),
            None => {
                let d = edgegate::limits::headers_too_large_denial();
                return Ok(Read::Answer(denial_response(&d)?.into()));
            }
        },
    };
    if takes_async_path(path_and_query(&url))
        || crate::login::needs_async(path_and_query(&url), &incoming)
    {
        return Ok(Read::Answer(JsValue::UNDEFINED));
    }
    Ok(Read::Head(method, url, incoming))
}

/// What JS gets for a verdict: a `Response`, the headers for the `ORIGIN` binding as one
/// string, or the upstream `Request`.
fn respond(
    action: Action,
    req: &Request,
    env: &JsValue,
    method: &str,
    url: &str,
) -> Result<JsValue, JsValue> {
    Ok(match action {
        Action::Broken => internal_error()?.into(),
        Action::Reply(d) => denial_response(&d)?.into(),
        Action::Forward {
            headers,
            dev: false,
        } => {
            // Through the ORIGIN service binding: the headers as one string, and worker.mjs
            // builds the same Request (method, headers, body, redirect: manual) in JS.
            let binding = Reflect::get(env, &JsValue::from_str(crate::ORIGIN_BINDING))?;
            match headers.to_text().filter(|_| binding.is_object()) {
                Some(text) => JsValue::from_str(&text),
                None => {
                    let path = path_and_query(url);
                    match upstream_request(req, env, method, url, path, &headers)? {
                        Ok((upstream, _binding)) => upstream.into(),
                        Err(no_origin) => no_origin.into(),
                    }
                }
            }
        }
        // Not reached: dev mode's verdicts are handed over above.
        Action::Forward { dev: true, .. } => internal_error()?.into(),
    })
}

/// One step of the machine under the state's borrow (the first, or a resume), carried out there
/// when it is the verdict.
fn step_now(
    head: &CoreHead<'_>,
    f: impl FnOnce(&mut crate::Gate, &edgegate::Request<'_>, edgegate::UnixTime) -> Step,
) -> Fast {
    STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let gate = match ready(&mut slot) {
            Ok(g) => g,
            Err(a) => return Fast::Act(a),
        };
        head.with(|req| {
            let now = now();
            let step = f(gate, req, now);
            match drive::in_place(gate, step, req, now) {
                // Dev mode's forward adds a response header: the async path carries it out.
                Step::Done(v) if gate.engine.dev_mode_response_header().is_some() => {
                    Fast::Paused(Step::Done(v))
                }
                Step::Done(v) => Fast::Act(act(gate, v, head.incoming)),
                other => Fast::Paused(other),
            }
        })
    })
}

/// Stores a paused step: `[id, promise]` for a signature whose key this isolate has imported
/// (the verification already started), else `id` for the async path.
fn hand_over(paused: Paused) -> Result<JsValue, JsValue> {
    let promise = match &paused.step {
        Step::NeedSignature(s) => match webcrypto::cached_key(s.check()) {
            Some(key) => Some(webcrypto::start_verify(s.check(), &key)?),
            None => None,
        },
        _ => None,
    };
    let id = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.waiting.len() >= MAX_PENDING {
            p.waiting.clear();
        }
        p.next = p.next.wrapping_add(1);
        let id = p.next;
        p.waiting.insert(id, paused);
        id
    });
    Ok(match promise {
        Some(promise) => Array::of2(&JsValue::from(id), &promise).into(),
        None => JsValue::from(id),
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
