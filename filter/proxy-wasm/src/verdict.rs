//! Carrying out the engine's verdict on the current (effective) HTTP context.
//!
//! These functions use the free `hostcalls` so they work both from the HTTP context itself and
//! from the root context after `set_effective_context` (a request that waited for keys).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use edgegate::engine::{LocalReply, Verdict};
use edgegate::verifier::KeyLookup;
use edgegate_envoy_glue::fetch::NoRefetch;
use edgegate_envoy_glue::metrics;
use edgegate_envoy_glue::verdict::{decide, denial_log_line, secs};

pub use edgegate_envoy_glue::verdict::internal_error;

use crate::request::{self, OwnedRequest};
use crate::shared::{self, Claim};
use crate::{Plugin, Waiter};

/// What the HTTP context does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Allowed: headers set, continue upstream.
    Continue,
    /// A local reply was sent.
    Stop,
    /// Paused until keys arrive (a waiter was registered).
    Wait,
    /// A magic-link POST: read the form body, then [`finish_magic_form`].
    ReadForm,
    /// A local reply was sent and the root should refetch a provider's keys early.
    Refetch,
}

/// Asks the engine and carries out its verdict on the effective context. `wait_deadline_ms` is
/// `Some` for a request that already waited (resumed by the root context).
pub fn decide_and_apply(
    plugin: &Plugin,
    req: &OwnedRequest,
    context_id: u32,
    allowed: &std::rc::Rc<std::cell::Cell<bool>>,
    now_ms: u128,
    wait_deadline_ms: Option<u128>,
) -> Next {
    let now = secs(now_ms);
    let (verdict, edits) = {
        let (Ok(mut keys), Ok(mut cache)) =
            (plugin.keys.try_borrow_mut(), plugin.cache.try_borrow_mut())
        else {
            send(&internal_error(), Some(plugin));
            return Next::Stop;
        };
        if keys.refresh_if_due(now_ms) {
            cache.clear();
        }
        // A request that waited once is now accepted or refused (an unknown kid never waits
        // twice).
        let no_refetch;
        let lookup: &dyn KeyLookup = if wait_deadline_ms.is_some() {
            no_refetch = NoRefetch(&*keys);
            &no_refetch
        } else {
            &*keys
        };
        // One borrowed view of the request for the decision and, on allow, the core's edits
        // (the consumed credential and edgegate's cookies stay here).
        decide(&plugin.engine, req, lookup, &mut cache, now)
    };
    let resumed = wait_deadline_ms.is_some();
    match verdict {
        Verdict::Allow {
            identity,
            headers,
            cached,
            ..
        } => {
            plugin.count(|m| metrics::count_allow(m, identity.as_deref(), cached));
            // No host call when the request has neither a consumed credential nor our cookies.
            request::apply_edits(&edits);
            for (name, value) in headers.iter() {
                let _ = hostcalls::set_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    name,
                    Some(value.as_bytes()),
                );
            }
            allowed.set(true);
            if resumed {
                let _ = hostcalls::resume_http_request();
            }
            Next::Continue
        }
        Verdict::Reply(d) => {
            log_denial(&d, req);
            send(&d, Some(plugin));
            match d.refetch_keys {
                Some(p) => {
                    plugin.request_refetch(p);
                    Next::Refetch
                }
                None => Next::Stop,
            }
        }
        Verdict::WaitForKeys { provider } => {
            let deadline_ms = wait_deadline_ms
                .unwrap_or(now_ms.saturating_add(plugin.key_wait(&provider).as_millis()));
            // The provider has keys: the token's kid is unknown and the root may refetch.
            let settled = plugin
                .keys
                .try_borrow()
                .ok()
                .filter(|k| k.has(&provider))
                .map(|k| k.settled(&provider));
            if settled.is_some() {
                plugin.request_refetch(provider.clone());
            }
            let waiting = now_ms < deadline_ms
                && plugin
                    .add_waiter(Waiter {
                        context_id,
                        allowed: allowed.clone(),
                        provider: provider.clone(),
                        deadline_ms,
                        request: req.clone(),
                        settled,
                    })
                    .is_none();
            if waiting {
                return Next::Wait;
            }
            let d = plugin.engine.keys_unavailable();
            log::warn!("keys of provider {provider} are not available (timed out or too many waiting): 503");
            log_denial(&d, req);
            send(&d, Some(plugin));
            Next::Stop
        }
        Verdict::MagicLinkForm => {
            if resumed {
                // Cannot happen (the form path needs no keys); never read a body from the root.
                send(&internal_error(), Some(plugin));
                return Next::Stop;
            }
            Next::ReadForm
        }
    }
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
        // Re-decides (a still-missing key set past the deadline becomes a 503 there).
        let _ = decide_and_apply(
            plugin,
            &w.request,
            w.context_id,
            &w.allowed,
            now_ms,
            Some(w.deadline_ms),
        );
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
pub fn finish_magic_form(plugin: &Plugin, req: &OwnedRequest, body: &[u8]) {
    let now = crate::now();
    let login = match plugin.engine.magic_link_consume(body, now) {
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
            log::info!(
                "{}",
                edgegate_envoy_glue::verdict::magic_login_log_line(&login)
            );
            let headers = edgegate_envoy_glue::verdict::magic_login_headers(&login);
            let _ = hostcalls::send_http_response(302, headers.to_vec(), None);
        }
        Claim::Replayed => {
            let d = plugin.engine.replayed();
            log_denial(&d, req);
            send(&d, Some(plugin));
        }
        Claim::Unavailable => {
            let d = edgegate_envoy_glue::verdict::single_use_unavailable(&plugin.engine);
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
    let headers: Vec<(&str, &str)> = d
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = (!d.body.is_empty()).then_some(d.body.as_bytes());
    let _ = hostcalls::send_http_response(u32::from(d.status), headers, body);
}

fn log_denial(d: &LocalReply, req: &OwnedRequest) {
    if let Some(line) = denial_log_line(d, req) {
        log::info!("{line}");
    }
}
