//! The worker's driver of the core's decision machine ([`edgegate::step`]): the same loop for
//! the guard and `/auth/me`, whichever path (the synchronous fast path of [`crate::fast`], or
//! the async [`crate::handle`]) a request starts on. The engine starts once per request: a step
//! the fast path paused (a key not imported yet, keys to fetch, a form to read) is handed to the
//! async path and resumed there, never decided again.
//!
//! What the worker does for each step:
//! - `NeedSignature`: WebCrypto (`crypto.subtle.verify`, keys imported once per isolate), then
//!   resume with the result; with `EDGEGATE_CRYPTO=wasm` the core's own backend answers in place.
//! - `NeedKeys`: a key set that never arrived is waited for (fetched by [`refresh_keys`], bounded
//!   by the provider's `wait_for_keys_ms`); for an unknown `kid`, an early refetch when the key
//!   set's state machine allows one, or a wait for the fetch under way; then resume (the core
//!   answers after one wait: a 503 for keys still missing, a 401 for a kid still unknown).
//! - `NeedForm`: the magic-link POST ([`crate::magic_link_post`]).

use edgegate::cache::TokenCache;
use edgegate::step::{Goal, NeedForm, NeedKeys, NeedSignature, Step};
use edgegate::{Engine, Request as CoreRequest, UnixTime};
use wasm_bindgen::JsValue;

use crate::webcrypto::{self, Crypto};
use crate::{now, ready, refresh_keys, sleep_ms, Gate, RemoteKeySets, STATE};

/// Steps one request may take before it fails closed (one credential per rule it decides, one
/// key wait): a misbehaving loop stays finite.
const MAX_STEPS: usize = 16;

/// How the machine ended for the host.
pub(crate) enum Ended<T> {
    /// The verdict, carried out under the state's borrow by the caller's `done`.
    Done(T),
    /// The magic-link form body is needed.
    Form(NeedForm),
    /// No usable config in this isolate: 500.
    Broken,
}

/// The waiting a `NeedKeys` step asks of the worker.
enum KeyWait {
    /// Until the provider's first keys arrive, at most this long.
    FirstKeys(u64),
    /// An early refetch was scheduled: [`refresh_keys`] runs it.
    Refetch,
    /// Another request is fetching the set (likely for this very kid): wait for it, bounded.
    Fetching(u64),
    /// Nothing to wait for: resume at once (the request is refused).
    None,
}

/// What the loop does next, decided under the state's borrow.
enum Next<T, R> {
    Ended(Ended<R>),
    Verify(NeedSignature<T>),
    Keys(NeedKeys<T>, KeyWait),
}

/// The request the core sees.
pub(crate) struct Head<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) incoming: &'a [(String, String)],
}

impl Head<'_> {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&CoreRequest<'_>) -> R) -> R {
        CoreRequest::with_owned(self.method, self.path, self.incoming, f)
    }
}

/// Runs the machine to its end: from `paused` (a step the fast path handed over) or from
/// `start` ([`Engine::start`] for the guard, [`Engine::identify`] for `/auth/me`,
/// [`Engine::check_id_token`] at login). `done` carries out the end under the state's borrow.
pub(crate) async fn run<T: Goal, R>(
    head: &Head<'_>,
    mut paused: Option<Step<T>>,
    start: impl Fn(&Engine, &CoreRequest<'_>, &RemoteKeySets, &mut TokenCache, UnixTime) -> Step<T>,
    done: impl Fn(&mut Gate, T, &CoreRequest<'_>) -> R,
) -> Result<Ended<R>, JsValue> {
    let mut waited_since: Option<f64> = None;
    for _ in 0..MAX_STEPS {
        if paused.is_none() {
            refresh_keys().await;
        }
        let next = under_gate(head, paused.take(), &start, &done);
        let (step, wait) = match next {
            Next::Ended(e) => return Ok(e),
            Next::Verify(s) => {
                let valid = webcrypto::verify(s.check()).await;
                paused = resume_signature(head, s, valid);
                if paused.is_none() {
                    return Ok(Ended::Broken);
                }
                continue;
            }
            Next::Keys(k, wait) => (k, wait),
        };
        let since = *waited_since.get_or_insert_with(js_sys::Date::now);
        match wait {
            KeyWait::FirstKeys(limit) => {
                wait_until(since, limit, |g| {
                    g.remote
                        .get_mut(step.provider())
                        .is_some_and(|r| r.state.keys().is_some())
                })
                .await?
            }
            KeyWait::Fetching(limit) => {
                wait_until(since, limit, |g| {
                    g.remote
                        .get_mut(step.provider())
                        .map_or(true, |r| !r.state.fetching())
                })
                .await?
            }
            KeyWait::Refetch => refresh_keys().await,
            KeyWait::None => {}
        }
        paused = resume_keys(head, step);
        if paused.is_none() {
            return Ok(Ended::Broken);
        }
    }
    Ok(Ended::Broken)
}

/// One step under the state's borrow (no await in here).
fn under_gate<T: Goal, R>(
    head: &Head<'_>,
    paused: Option<Step<T>>,
    start: &impl Fn(&Engine, &CoreRequest<'_>, &RemoteKeySets, &mut TokenCache, UnixTime) -> Step<T>,
    done: &impl Fn(&mut Gate, T, &CoreRequest<'_>) -> R,
) -> Next<T, R> {
    STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let Ok(gate) = ready(&mut slot) else {
            return Next::Ended(Ended::Broken);
        };
        head.with(|req| {
            let now = now();
            let step = match paused {
                Some(s) => s,
                None => start(&gate.engine, req, &gate.remote, &mut gate.cache, now),
            };
            let step = in_place(gate, step, req, now);
            match step {
                Step::Done(v) => Next::Ended(Ended::Done(done(gate, v, req))),
                Step::NeedForm(f) => Next::Ended(Ended::Form(f)),
                Step::NeedSignature(s) => Next::Verify(s),
                Step::NeedKeys(k) => {
                    let wait = key_wait(&mut gate.remote, &k, now);
                    Next::Keys(k, wait)
                }
            }
        })
    })
}

/// With `EDGEGATE_CRYPTO=wasm`, signatures are answered by the core's backend in place.
pub(crate) fn in_place<T: Goal>(
    gate: &mut Gate,
    step: Step<T>,
    req: &CoreRequest<'_>,
    now: UnixTime,
) -> Step<T> {
    match gate.crypto {
        Crypto::Wasm => {
            step.answer_signatures(&gate.engine, req, &gate.remote, &mut gate.cache, now)
        }
        Crypto::WebCrypto => step,
    }
}

fn key_wait<T: Goal>(remote: &mut RemoteKeySets, k: &NeedKeys<T>, now: UnixTime) -> KeyWait {
    let Some(r) = remote.get_mut(k.provider()) else {
        return KeyWait::None;
    };
    if !k.unknown_kid() {
        KeyWait::FirstKeys(r.wait_for_keys_ms)
    } else if r.state.on_unknown_kid(now) {
        KeyWait::Refetch
    } else if r.state.fetching() {
        KeyWait::Fetching(r.wait_for_keys_ms)
    } else {
        KeyWait::None
    }
}

/// Waits (polling the key sets, fetching what is due) until `ready` or `limit_ms` since `since`.
async fn wait_until(
    since: f64,
    limit_ms: u64,
    ready: impl Fn(&mut Gate) -> bool,
) -> Result<(), JsValue> {
    loop {
        refresh_keys().await;
        let is_ready = STATE.with(|cell| {
            let mut slot = cell.borrow_mut();
            crate::ready(&mut slot).ok().map_or(true, &ready)
        });
        if is_ready || js_sys::Date::now() - since >= limit_ms as f64 {
            return Ok(());
        }
        sleep_ms(50).await?;
    }
}

/// The step after a signature the host verified (`None`: the isolate has no usable config).
fn resume_signature<T: Goal>(head: &Head<'_>, s: NeedSignature<T>, valid: bool) -> Option<Step<T>> {
    with_engine(head, |gate, req, now| {
        s.resume(&gate.engine, valid, req, &gate.remote, &mut gate.cache, now)
    })
}

fn resume_keys<T: Goal>(head: &Head<'_>, k: NeedKeys<T>) -> Option<Step<T>> {
    with_engine(head, |gate, req, now| {
        k.resume(&gate.engine, req, &gate.remote, &mut gate.cache, now)
    })
}

fn with_engine<T>(
    head: &Head<'_>,
    f: impl FnOnce(&mut Gate, &CoreRequest<'_>, UnixTime) -> Step<T>,
) -> Option<Step<T>> {
    STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let gate = ready(&mut slot).ok()?;
        Some(head.with(|req| f(gate, req, now())))
    })
}
