//! Carrying out the engine's verdict on the current (effective) HTTP context.
//!
//! These functions use the free `hostcalls` so they work both from the HTTP context itself and
//! from the root context after `set_effective_context` (a request that waited for keys).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use edgegate::engine::{LocalReply, Verdict};
use edgegate::login::{AwaitIdentity, LoginStep};
use edgegate::step::{NeedForm, NeedKeys, Step};
use edgegate::upstream::HeaderEdits;
use edgegate_envoy_glue::metrics;
use edgegate_envoy_glue::verdict::{self as glue, denial_log_line, secs};

pub use edgegate_envoy_glue::verdict::internal_error;

use crate::request::{self, OwnedRequest};
use crate::shared::{self, Claim};
use crate::{Job, Plugin, Waiter};

/// Where a request's machine starts.
pub enum Start {
    /// Decide it by the rules.
    Decide,
    /// `/auth/me`: identify its credential and answer with the identity.
    Identify(AwaitIdentity),
    /// Resume the step that waited for keys (with `/auth/me`'s answer still to give).
    Waited(NeedKeys, Option<AwaitIdentity>),
}

impl Start {
    /// The paused decision to resume (if the request waited for keys) and `/auth/me`'s
    /// continuation (if it is one).
    fn split(self) -> (Option<NeedKeys>, Option<AwaitIdentity>) {
        match self {
            Start::Decide => (None, None),
            Start::Identify(me) => (None, Some(me)),
            Start::Waited(paused, me) => (Some(paused), me),
        }
    }
}

/// What the HTTP context does next.
#[derive(Debug)]
pub enum Next {
    /// Allowed: headers set, continue upstream.
    Continue,
    /// A local reply was sent.
    Stop,
    /// Paused until keys arrive (a waiter was registered).
    Wait,
    /// A magic-link POST: read the form body, then [`finish_magic_form`] with this step.
    ReadForm(NeedForm),
}

/// Runs the engine's machine for a request and carries out where it ends, on the effective
/// context: signatures are answered in place (Envoy's `verify_signature` or the core's own
/// backend), a key set is waited for. `start`: [`Start::Waited`] for a request whose wait is
/// over (resumed by the root context).
pub fn decide_and_apply(
    plugin: &Plugin,
    req: &OwnedRequest,
    context_id: u32,
    allowed: &std::rc::Rc<std::cell::Cell<bool>>,
    now_ms: u128,
    start: Start,
) -> Next {
    let (waited, me) = start.split();
    let resumed = waited.is_some();
    let Some((step, edits)) = run(plugin, req, now_ms, waited, me.is_some()) else {
        return stop(plugin, &internal_error());
    };
    match (step, me) {
        (Step::Done(verdict), Some(me)) => {
            match me.resume(&plugin.engine, verdict) {
                LoginStep::Reply(r) => crate::login::send_reply(plugin, &r),
                _ => send(&internal_error(), Some(plugin)),
            }
            Next::Stop
        }
        (
            Step::Done(Verdict::Allow {
                identity,
                headers,
                cached,
                ..
            }),
            None,
        ) => {
            allow(plugin, identity.as_deref(), &headers, cached, &edits);
            allowed.set(true);
            if resumed {
                let _ = hostcalls::resume_http_request();
            }
            Next::Continue
        }
        (Step::Done(Verdict::Reply(d)), None) => {
            log_denial(&d, req);
            stop(plugin, &d)
        }
        (Step::NeedKeys(paused), me) if !resumed => {
            let provider = paused.provider().to_string();
            let job = Job::Decide {
                request: req.clone(),
                paused,
                me,
            };
            wait_for_keys(plugin, context_id, allowed, now_ms, &provider, job)
        }
        (Step::NeedForm(form), None) if !resumed => Next::ReadForm(form),
        // A resumed request never pauses again (the core answers after one wait), and never
        // reads a body from the root context: fail closed.
        _ => stop(plugin, &internal_error()),
    }
}

/// Sends `reply` and stops the request there.
fn stop(plugin: &Plugin, reply: &LocalReply) -> Next {
    send(reply, Some(plugin));
    Next::Stop
}

/// The engine's machine for one request, from its start or from the step that waited for
/// keys, to where the host must act; with the core's edits for an allow. `None`: the plugin's
/// state is borrowed (a re-entrant callback): fail closed.
fn run(
    plugin: &Plugin,
    req: &OwnedRequest,
    now_ms: u128,
    waited: Option<NeedKeys>,
    identify: bool,
) -> Option<(Step, HeaderEdits)> {
    let now = secs(now_ms);
    let (Ok(mut keys), Ok(mut cache)) =
        (plugin.keys.try_borrow_mut(), plugin.cache.try_borrow_mut())
    else {
        return None;
    };
    if keys.refresh_if_due(now_ms) {
        cache.clear();
    }
    let engine = &plugin.engine;
    if identify {
        let keys = &*keys;
        let start = |r: &edgegate::Request<'_>, c: &mut edgegate::cache::TokenCache| {
            engine.identify(r, keys, c, now)
        };
        let step = glue::run_from(engine, req, keys, &mut cache, now, start, waited);
        return Some((step, HeaderEdits::default()));
    }
    // One borrowed view of the request for the decision and, on allow, the core's edits
    // (the consumed credential and edgegate's cookies stay here).
    Some(glue::run(engine, req, &*keys, &mut cache, now, waited))
}

/// Carries out an allow: metrics, the core's edits, the identity headers.
fn allow(
    plugin: &Plugin,
    identity: Option<&edgegate::Identity>,
    headers: &edgegate::engine::UpstreamHeaders,
    cached: bool,
    edits: &HeaderEdits,
) {
    plugin.count(|m| metrics::count_allow(m, identity, cached));
    // No host call when the request has neither a consumed credential nor our cookies.
    request::apply_edits(edits);
    for (name, value) in headers.iter() {
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            name,
            Some(value.as_bytes()),
        );
    }
}

/// Pauses a request until `provider`'s keys arrive (or an early refetch for an unknown kid
/// settles), bounded by the provider's wait; 503 when it cannot wait. `job`: what resumes.
pub fn wait_for_keys(
    plugin: &Plugin,
    context_id: u32,
    allowed: &std::rc::Rc<std::cell::Cell<bool>>,
    now_ms: u128,
    provider: &str,
    job: Job,
) -> Next {
    let deadline_ms = now_ms.saturating_add(plugin.key_wait(provider).as_millis());
    // The provider has keys: the token's kid is unknown and the root may refetch.
    let settled = plugin
        .keys
        .try_borrow()
        .ok()
        .filter(|k| k.has(provider))
        .map(|k| k.settled(provider));
    if settled.is_some() {
        plugin.request_refetch(provider.to_string());
    }
    let waiter = Waiter {
        context_id,
        allowed: allowed.clone(),
        provider: provider.to_string(),
        deadline_ms,
        job,
        settled,
    };
    if plugin.add_waiter(waiter).is_none() {
        return Next::Wait;
    }
    let d = plugin.engine.keys_unavailable();
    log::warn!("keys of provider {provider} are not available (too many requests waiting): 503");
    send(&d, Some(plugin));
    Next::Stop
}

/// Runs in the root context: answers the requests whose keys arrived or whose wait is over.
pub fn resolve_waiters(plugin: &Plugin, now_ms: u128, root_id: u32) {
    let waiting = plugin.take_waiters();
    if waiting.is_empty() {
        return;
    }
    let mut keep = Vec::new();
    for w in waiting {
        let ready = plugin.keys.try_borrow_mut().map(|mut k| {
            if k.refresh() {
                if let Ok(mut c) = plugin.cache.try_borrow_mut() {
                    c.clear();
                }
            }
            match w.settled {
                Some(at) => k.settled(&w.provider) != at,
                None => k.has(&w.provider),
            }
        });
        let ready = ready.unwrap_or(false);
        if !ready && now_ms < w.deadline_ms {
            keep.push(w);
            continue;
        }
        if hostcalls::set_effective_context(w.context_id).is_err() {
            continue; // the client went away
        }
        // Resumes the paused step (keys still missing past the deadline: a 503 there).
        match w.job {
            Job::Decide {
                request,
                paused,
                me,
            } => {
                let start = Start::Waited(paused, me);
                let _ = decide_and_apply(plugin, &request, w.context_id, &w.allowed, now_ms, start);
            }
            Job::IdToken(wait) => crate::login::resume_id_token(plugin, *wait),
        }
    }
    for w in keep {
        if let Some(w) = plugin.add_waiter(w) {
            // Cannot happen (the list was just emptied); answer rather than leave it hanging.
            if hostcalls::set_effective_context(w.context_id).is_ok() {
                send(&plugin.engine.keys_unavailable(), Some(plugin));
            }
        }
    }
    let _ = hostcalls::set_effective_context(root_id);
}

/// The end of a magic-link POST: the core verifies the form's token; this host enforces single
/// use across all VMs, then redirects with the session cookie.
pub fn finish_magic_form(plugin: &Plugin, req: &OwnedRequest, form: NeedForm, body: &[u8]) {
    let now = crate::now();
    let login = match form.resume(&plugin.engine, body, now) {
        Ok(l) => l,
        Err(d) => {
            log_denial(&d, req);
            send(&d, Some(plugin));
            return;
        }
    };
    match shared::claim_magic_link(&login.jti, login.expires_at, now) {
        Claim::Fresh => {
            plugin.count(metrics::count_magic_login);
            log::info!("{}", glue::magic_login_log_line(&login));
            let headers = glue::magic_login_headers(&login);
            let _ = hostcalls::send_http_response(302, headers.to_vec(), None);
        }
        Claim::Replayed => {
            let d = plugin.engine.replayed();
            log_denial(&d, req);
            send(&d, Some(plugin));
        }
        Claim::Unavailable => {
            let d = glue::single_use_unavailable(&plugin.engine);
            log::error!("magic link refused: the single-use store is full or contended");
            send(&d, Some(plugin));
        }
    }
}

/// Sends a local reply and counts a refusal (a 2xx page, e.g. the magic-link confirm page, is
/// not a refusal).
pub fn send(d: &LocalReply, plugin: Option<&Plugin>) {
    if let Some(p) = plugin {
        p.count(|m| metrics::count_reply(m, d));
    }
    send_local(d.status, &d.headers, &d.body);
}

/// Sends a response the core wrote (repeated header names each their own header).
pub fn send_local(status: u16, headers: &[(String, String)], body: &str) {
    let headers = edgegate::extractor::header_refs(headers);
    let body = (!body.is_empty()).then_some(body.as_bytes());
    let _ = hostcalls::send_http_response(u32::from(status), headers, body);
}

fn log_denial(d: &LocalReply, req: &OwnedRequest) {
    if let Some(line) = denial_log_line(d, req) {
        log::info!("{line}");
    }
}
