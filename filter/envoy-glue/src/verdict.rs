//! One decision per request, and the replies both Envoy packagings send the same way.

use edgegate::cache::TokenCache;
use edgegate::engine::{LocalReply, MagicLinkLogin, Verdict};
use edgegate::step::{Goal, NeedKeys, Step};
use edgegate::upstream::HeaderEdits;
use edgegate::verifier::KeyLookup;
use edgegate::{Engine, Error, Reason, UnixTime};

use crate::request::OwnedRequest;

/// Unix seconds from Unix milliseconds.
pub fn secs(ms: u128) -> UnixTime {
    UnixTime::try_from(ms / 1000).unwrap_or(UnixTime::MAX)
}

/// The engine's machine for one request, from its start or from the step that waited for keys
/// (`waited`), to where the host must act: signatures are answered in place by the engine's
/// backend, so what comes back is `Done`, `NeedKeys` or `NeedForm`. On allow, also the core's
/// edits of the request (the consumed credential and edgegate's cookies stay at the edge): one
/// borrowed view of the request for both.
pub fn run(
    engine: &Engine,
    req: &OwnedRequest,
    keys: &dyn KeyLookup,
    cache: &mut TokenCache,
    now: UnixTime,
    waited: Option<NeedKeys>,
) -> (Step, HeaderEdits) {
    req.with(|r| {
        let step = match waited {
            None => engine.decide(r, keys, cache, now),
            Some(paused) => paused
                .resume(engine, r, keys, cache, now)
                .answer_signatures(engine, r, keys, cache, now),
        };
        let edits = match &step {
            Step::Done(Verdict::Allow { consumed, .. }) => {
                engine.upstream_edits(r.headers, consumed.as_ref())
            }
            _ => HeaderEdits::default(),
        };
        (step, edits)
    })
}

/// Runs a machine other than a request's decision (`/auth/me`'s [`Engine::identify`], a login's
/// [`Engine::check_id_token`]) from `start`, or from the step that waited for keys, to where
/// the host must act: `Done` or `NeedKeys` (signatures are answered in place).
pub fn run_from<T: Goal>(
    engine: &Engine,
    req: &OwnedRequest,
    keys: &dyn KeyLookup,
    cache: &mut TokenCache,
    now: UnixTime,
    start: impl FnOnce(&edgegate::Request<'_>, &mut TokenCache) -> Step<T>,
    waited: Option<NeedKeys<T>>,
) -> Step<T> {
    req.with(|r| {
        let step = match waited {
            None => start(r, cache),
            Some(paused) => paused.resume(engine, r, keys, cache, now),
        };
        step.answer_signatures(engine, r, keys, cache, now)
    })
}

/// The reply when the filter cannot decide (no engine, a header map it cannot read or clean, a
/// failure inside the filter). Fail closed.
pub fn internal_error() -> LocalReply {
    LocalReply {
        status: 500,
        reason: Reason::Internal,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: "{\"error\":\"error\",\"reason\":\"internal\"}".into(),
    }
}

/// The log line of a refusal (none for a 2xx page): status, reason, method and the path without
/// its query (which may hold a token).
pub fn denial_log_line(d: &LocalReply, req: &OwnedRequest) -> Option<String> {
    (d.status >= 300).then(|| {
        format!(
            "denied {} {}: {} {}",
            d.status,
            d.reason.code(),
            req.method(),
            req.log_path()
        )
    })
}

/// The redirect that ends a magic-link login whose single use the host recorded: status 302 and
/// these headers.
pub fn magic_login_headers(login: &MagicLinkLogin) -> [(&str, &str); 3] {
    [
        ("location", login.location.as_str()),
        ("set-cookie", login.set_cookie.as_str()),
        ("cache-control", "no-store"),
    ]
}

/// The log line of a magic-link login (the location without its query).
pub fn magic_login_log_line(login: &MagicLinkLogin) -> String {
    format!(
        "magic link used: session started, redirect to {}",
        login.location.split('?').next().unwrap_or("")
    )
}

/// The reply when the host cannot record a magic link's single use (its store is full or
/// contended): fail closed.
pub fn single_use_unavailable(engine: &Engine) -> LocalReply {
    engine.deny_json(&Error::new(
        Reason::Internal,
        "the single-use store is unavailable; retry shortly",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internal_error_is_a_500_json_refusal() {
        let d = internal_error();
        assert_eq!(d.status, 500);
        assert_eq!(d.reason, Reason::Internal);
        let req = OwnedRequest::from_pairs(&[(":method", "GET"), (":path", "/a?token=secret")]);
        assert_eq!(
            denial_log_line(&d, &req).as_deref(),
            Some("denied 500 internal: GET /a")
        );
    }

    #[test]
    fn secs_truncates_and_saturates() {
        assert_eq!(secs(1999), 1);
        assert_eq!(secs(u128::MAX), UnixTime::MAX);
    }
}
