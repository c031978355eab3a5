//! Remote key sets over Envoy: the GET a [`JwksState`] (or the API-key list's [`KeyListState`])
//! asks for (which cluster, which headers), and what its response means. Both packagings drive
//! one state machine per provider, and one for `api_keys.remote`, with these;
//! they differ in how the call is made (`dispatch_http_call`, a dynamic module's HTTP callout)
//! and in how the keys reach the threads that verify (shared data, a process-wide snapshot).
//!
//! The Envoy cluster a fetch goes to is the source's `cluster`; when it is not set, a cluster
//! named after the URL's authority as the URL writes it (e.g. `idp.example.com` or
//! `127.0.0.1:10002`), so that the OIDC discovery document and the JWKS, which may live on
//! different hosts, each reach theirs.

use edgegate::engine::RemoteKeys;
use edgegate::jwk::KeySet;
use edgegate::jwks::{FetchKind, FetchRequest, JwksState};
use edgegate::keylist::{KeyListState, ListUpdate};
use edgegate::refresh::Response;
use edgegate::UnixTime;

/// Names a configured source, so that a renamed provider or a moved URL never adopts another
/// source's keys. `CompiledJwksSource` has no public accessor for its URL; its Debug form names
/// the URL and the refresh settings, which identifies the source well enough (a differently
/// configured twin merely fetches for itself).
pub fn source_id(rk: &RemoteKeys) -> String {
    format!("{}|{:?}", rk.provider, rk.source)
}

/// The cluster a fetch goes to: the configured one, else the URL's authority.
pub fn cluster_for(configured: Option<&str>, req: &FetchRequest) -> String {
    configured.map_or_else(|| req.authority().to_string(), str::to_string)
}

/// The request headers of a fetch (`if-none-match` when the state holds an `ETag`).
pub fn fetch_headers(req: &FetchRequest) -> Vec<(&str, &str)> {
    let mut h = vec![
        (":method", "GET"),
        (":path", req.path()),
        (":authority", req.authority()),
        ("accept", "application/json"),
        ("user-agent", "edgegate"),
    ];
    if let Some(tag) = &req.if_none_match {
        h.push(("if-none-match", tag.as_str()));
    }
    h
}

/// What a fetch's response says, as both packagings read it: `status` is `None` when there
/// was no response (connection failed, timed out); `body` is at most [`body_limit`] bytes.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: Option<u16>,
    pub cache_control: Option<&'a str>,
    pub etag: Option<&'a str>,
    pub body: &'a [u8],
}

impl<'a> Answer<'a> {
    fn response(&self) -> Option<Response<'a>> {
        Some(Response {
            status: self.status?,
            cache_control: self.cache_control,
            etag: self.etag,
            body: self.body,
        })
    }
}

/// A state machine both packagings drive over Envoy: a provider's key set or the API-key list.
pub trait Source {
    /// The config field naming the cluster (for the log when Envoy refuses a call).
    const CLUSTER_FIELD: &'static str;
    /// What to GET now, if anything.
    fn poll(&mut self, now: UnixTime) -> Option<FetchRequest>;
    /// The outstanding request got no response, or could not be made.
    fn on_failure(&mut self, now: UnixTime);
    /// What a response means (the state is updated).
    fn answered(&mut self, req: &FetchRequest, resp: &Response<'_>, now: UnixTime) -> Outcome;
}

impl Source for JwksState {
    const CLUSTER_FIELD: &'static str = "remote_jwks.cluster";

    fn poll(&mut self, now: UnixTime) -> Option<FetchRequest> {
        JwksState::poll(self, now)
    }

    fn on_failure(&mut self, now: UnixTime) {
        JwksState::on_failure(self, now);
    }

    fn answered(&mut self, req: &FetchRequest, resp: &Response<'_>, now: UnixTime) -> Outcome {
        match self.respond(req, resp, now) {
            Err(e) => Outcome::Failed(e.to_string()),
            Ok(()) if req.kind == FetchKind::Discovery => Outcome::Progress,
            Ok(()) => Outcome::KeysUpdated {
                keys: self.keys().map_or(0, KeySet::len),
            },
        }
    }
}

/// `KeysUpdated` for a new list (`keys`: its entries), `Progress` for the same list confirmed
/// (a `304`: its freshness renewed, the caller republishes it), `Failed` otherwise (the last
/// good list stays).
impl Source for KeyListState {
    const CLUSTER_FIELD: &'static str = "api_keys.remote.cluster";

    fn poll(&mut self, now: UnixTime) -> Option<FetchRequest> {
        KeyListState::poll(self, now)
    }

    fn on_failure(&mut self, now: UnixTime) {
        KeyListState::on_failure(self, now);
    }

    fn answered(&mut self, req: &FetchRequest, resp: &Response<'_>, now: UnixTime) -> Outcome {
        match self.on_response(req, resp, now) {
            Ok(ListUpdate::Replaced { keys }) => Outcome::KeysUpdated { keys },
            Ok(ListUpdate::Unchanged) => Outcome::Progress,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// Starts the fetch `state` says is due, unless one is `in_flight`: `call` makes the packaging's
/// call to a cluster with the fetch's headers (Err: the host's refusal). A refused call backs
/// the state off and is returned, saying which cluster to define, for the log.
pub fn start_due<S: Source, T>(
    state: &mut S,
    in_flight: &mut Option<(T, FetchRequest)>,
    cluster: Option<&str>,
    now: UnixTime,
    call: impl FnOnce(&str, &[(&str, &str)]) -> Result<T, String>,
) -> Result<(), String> {
    if in_flight.is_some() {
        return Ok(());
    }
    let Some(req) = state.poll(now) else {
        return Ok(());
    };
    let cluster = cluster_for(cluster, &req);
    match call(&cluster, &fetch_headers(&req)) {
        Ok(token) => {
            *in_flight = Some((token, req));
            Ok(())
        }
        Err(detail) => {
            state.on_failure(now);
            Err(refused(&cluster, &detail, S::CLUSTER_FIELD))
        }
    }
}

pub(crate) fn refused(cluster: &str, detail: &str, field: &str) -> String {
    format!(
        "Envoy refused the call to cluster {cluster:?} ({detail}); define a cluster named exactly {cluster:?} or set {field}"
    )
}

/// How many body bytes to read of a response of `body_size`: at most one past the limit (the
/// state machine refuses an oversized body).
pub fn body_limit(req: &FetchRequest, body_size: usize) -> usize {
    body_size.min(req.max_body_bytes.saturating_add(1))
}

/// How a fetch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New keys installed (the caller publishes them).
    KeysUpdated { keys: usize },
    /// A step towards keys (the discovery document named the JWKS URL), or an unchanged set.
    Progress,
    /// Refused or no response; the last good keys stay. The text is safe to log.
    Failed(String),
}

/// Counts and logs how a fetch of the API-key list ended (both packagings).
pub fn report_list_fetch(m: &mut impl crate::metrics::Counters, outcome: &Outcome) {
    use crate::metrics::{API_KEYS_FETCH_FAILED, API_KEYS_FETCH_OK};
    match outcome {
        Outcome::KeysUpdated { keys } => {
            m.inc(API_KEYS_FETCH_OK);
            log::info!("api_keys.remote: fetched a list of {keys} key(s)");
        }
        Outcome::Progress => m.inc(API_KEYS_FETCH_OK),
        Outcome::Failed(why) => {
            m.inc(API_KEYS_FETCH_FAILED);
            log::warn!("api_keys.remote: fetch failed: {why}; keeping the last good list");
        }
    }
}

/// The outstanding fetch, when `token` is its call's (it is no longer outstanding then).
pub fn take_answered<T: PartialEq>(
    in_flight: &mut Option<(T, FetchRequest)>,
    token: &T,
) -> Option<FetchRequest> {
    match in_flight {
        Some((t, _)) if t == token => in_flight.take().map(|(_, req)| req),
        _ => None,
    }
}

/// Reports a fetch's response (or that there was none) to its state machine.
pub fn finish<S: Source>(
    state: &mut S,
    req: &FetchRequest,
    answer: &Answer<'_>,
    now: UnixTime,
) -> Outcome {
    match answer.response() {
        Some(resp) => state.answered(req, &resp, now),
        None => {
            state.on_failure(now);
            Outcome::Failed(format!(
                "no response from {} (connection failed or timed out)",
                req.url
            ))
        }
    }
}

/// Reads `:status` from response headers (`None` when absent or not a number).
pub fn status_of<'a>(mut header: impl FnMut(&str) -> Option<&'a str>) -> Option<u16> {
    header(":status").and_then(|s| s.trim().parse::<u16>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgegate::Engine;

    fn remote() -> RemoteKeys {
        let engine = Engine::from_json(
            br#"{"jwt":{"providers":[{"name":"idp","issuer":"http://127.0.0.1:9/","audiences":["a"],
                "algorithms":["RS256"],"remote_jwks":{"jwks_uri":"http://127.0.0.1:9/keys?x=1"}}]}}"#,
        )
        .unwrap();
        engine.remote_key_sources().remove(0)
    }

    #[test]
    fn a_fetch_goes_to_the_authority_cluster_unless_one_is_configured() {
        let rk = remote();
        let mut state = JwksState::new(rk.source.clone());
        let req = state.poll(1).unwrap();
        assert_eq!(cluster_for(None, &req), "127.0.0.1:9");
        assert_eq!(cluster_for(Some("idp"), &req), "idp");
        let h = fetch_headers(&req);
        assert!(h.contains(&(":path", "/keys?x=1")) && h.contains(&(":authority", "127.0.0.1:9")));
        assert!(source_id(&rk).starts_with("idp|"));
        assert_eq!(body_limit(&req, usize::MAX), req.max_body_bytes + 1);
    }

    #[test]
    fn no_response_and_garbage_fail_and_keep_nothing() {
        let rk = remote();
        let mut state = JwksState::new(rk.source);
        let req = state.poll(1).unwrap();
        let answer = |status, body| Answer {
            status,
            cache_control: None,
            etag: None,
            body,
        };
        assert!(matches!(
            finish(&mut state, &req, &answer(None, b""), 1),
            Outcome::Failed(_)
        ));
        let req = state.poll(1000).unwrap();
        let out = finish(&mut state, &req, &answer(Some(200), b"not json"), 1000);
        assert!(matches!(out, Outcome::Failed(_)), "{out:?}");
        assert!(state.keys().is_none());
        assert_eq!(status_of(|_| Some("503")), Some(503));
        assert_eq!(status_of(|_| None), None);
    }
}
