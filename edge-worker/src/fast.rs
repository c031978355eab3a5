//! The synchronous fast path: most requests need no I/O before the verdict, and an async export
//! costs about 60 µs of CPU per request in workerd (wasm-bindgen's future/promise machinery,
//! measured), more than the rest of the decision. `worker.mjs` calls [`decide_sync`] first:
//!
//! - a verdict: a `Response` (refusal) or the `Request` to send to the origin (JS fetches it
//!   through the `ORIGIN` binding when that is an object, else through the global `fetch`);
//! - `{id, checks}`: signatures to verify (WebCrypto, in JS); JS calls again with
//!   `{id, valid: [bool]}`. The answers are bound to the checks stored under `id` here, so the
//!   core gets exactly what was verified ([`edgegate::precheck`] matches them again);
//! - `undefined`: the request needs I/O first (a key-set fetch or wait, an early refetch, the
//!   magic-link POST, dev mode), or is for the worker's own endpoints under [`ASYNC_PREFIX`]
//!   (login, callback, logout, ...): JS calls the async [`crate::handle`], which does everything.

use std::cell::RefCell;
use std::collections::HashMap;

use edgegate::precheck::{Answer, SignatureCheck};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use web_sys::Request;

use crate::{
    decide, denial_response, internal_error, load, now, path_and_query, request_headers,
    upstream_request, webcrypto, Action, State, STATE,
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

/// A request waiting for its checks: what was read from it, so the next step need not read the
/// request again (each read of a JS object costs glue), and the checks handed to JS.
struct Waiting {
    method: String,
    url: String,
    incoming: Vec<(String, String)>,
    checks: Vec<SignatureCheck>,
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

/// One synchronous step of a request; see the module docs.
#[wasm_bindgen(js_name = decideSync)]
pub fn decide_sync(req: &Request, env: &JsValue, answered: &JsValue) -> Result<JsValue, JsValue> {
    STATE.with(|cell| {
        cell.borrow_mut().get_or_insert_with(|| load(env));
    });
    let fetch_due = STATE.with(|cell| match &*cell.borrow() {
        Some(State::Ready(g)) => {
            let now = now();
            g.remote
                .0
                .iter()
                .any(|r| r.state.next_wakeup().is_some_and(|t| now >= t))
        }
        _ => false,
    });
    if fetch_due {
        return Ok(JsValue::UNDEFINED);
    }
    let (method, url, incoming, answers) = match take_answers(answered) {
        Some(w) => w,
        None => {
            let url = req.url();
            if takes_async_path(path_and_query(&url)) {
                return Ok(JsValue::UNDEFINED);
            }
            let incoming = request_headers(&req.headers())?;
            if crate::login::needs_async(path_and_query(&url), &incoming) {
                return Ok(JsValue::UNDEFINED);
            }
            (req.method(), url, incoming, Vec::new())
        }
    };
    let path = path_and_query(&url);
    let action =
        STATE.with(|cell| decide(cell, &method, path, &incoming, false, (&answers, false)))?;
    Ok(match action {
        Action::Broken => internal_error()?.into(),
        Action::Reply(d) => denial_response(&d)?.into(),
        Action::Forward {
            headers,
            dev: false,
        } => match upstream_request(req, env, path, headers)? {
            Ok((upstream, _binding)) => upstream.into(),
            Err(no_origin) => no_origin.into(),
        },
        Action::Verify(checks) => to_js(Waiting {
            method,
            url,
            incoming,
            checks,
        })?,
        Action::Forward { dev: true, .. }
        | Action::Refetch
        | Action::Wait { .. }
        | Action::MagicLinkForm => JsValue::UNDEFINED,
    })
}

/// `{id, checks: [{imp, ver, jwk, signature, data}]}`: WebCrypto's importKey and verify
/// parameters, the key as a JWK (JSON), the signature and the signed bytes.
fn to_js(waiting: Waiting) -> Result<JsValue, JsValue> {
    let list = Array::new();
    for c in &waiting.checks {
        let (imp, ver) = webcrypto::params(c.alg())?;
        let Some(jwk) = c.key_jwk() else {
            // not a WebCrypto key (cannot happen: HMAC stays in the core): the async path
            return Ok(JsValue::UNDEFINED);
        };
        let o = Object::new();
        Reflect::set(&o, &"imp".into(), &imp)?;
        Reflect::set(&o, &"ver".into(), &ver)?;
        Reflect::set(&o, &"jwk".into(), &format!("{}:{jwk}", c.alg()).into())?;
        Reflect::set(&o, &"signature".into(), &Uint8Array::from(c.signature()))?;
        Reflect::set(&o, &"data".into(), &Uint8Array::from(c.signing_input()))?;
        list.push(&o);
    }
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
    let out = Object::new();
    Reflect::set(&out, &"id".into(), &JsValue::from(id))?;
    Reflect::set(&out, &"checks".into(), &list)?;
    Ok(out.into())
}

/// The request read at the first step and the answers JS sends back, bound to the checks stored
/// under their id. `None` for a first step, or an id that is unknown (then the request is read
/// again and the checks are asked for again).
type Answered = (String, String, Vec<(String, String)>, Vec<Answer>);

fn take_answers(answered: &JsValue) -> Option<Answered> {
    if !answered.is_object() {
        return None;
    }
    let id = Reflect::get(answered, &"id".into())
        .ok()
        .and_then(|v| v.as_f64())
        .filter(|v| v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(v))
        .map(|v| v as u32)?;
    let w = PENDING.with(|p| p.borrow_mut().waiting.remove(&id))?;
    let valid: Array = Reflect::get(answered, &"valid".into())
        .ok()
        .filter(Array::is_array)
        .map(Into::into)
        .unwrap_or_default();
    let answers = w
        .checks
        .into_iter()
        .zip(valid.iter())
        .map(|(check, v)| Answer {
            check,
            valid: v.as_bool() == Some(true),
        })
        .collect();
    Some((w.method, w.url, w.incoming, answers))
}

#[cfg(test)]
mod tests {
    use super::*;

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
