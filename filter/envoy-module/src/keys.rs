//! Remote key sets, one copy per process: the main thread drives one [`JwksState`] per provider
//! with config-level HTTP callouts ([`Remote`]), and publishes what the worker threads verify with
//! as an immutable [`KeySnapshot`] (swapped whole; a request clones one `Arc`). The API-key
//! list (`api_keys.remote`) is driven the same way ([`ListRemote`]): one fetch schedule and one
//! list per process, every worker thread verifies with the snapshot's copy.

use std::sync::Arc;
use std::time::Duration;

use edgegate::engine::RemoteKeys;
use edgegate::jwk::KeySet;
use edgegate::jwks::{FetchRequest, JwksState};
use edgegate::keylist::KeyListState;
use edgegate::verifier::KeyLookup;
use edgegate::UnixTime;
use edgegate_envoy_glue::fetch::{self as glue, Outcome};

use crate::abi::{CalloutResponse, ConfigCtx};

/// One provider's keys as the workers see them.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub provider: String,
    /// The last good key set (kept through failed refreshes).
    pub keys: Option<Arc<KeySet>>,
    /// From when a token with an unknown `kid` may pull a refetch forward (the state machine's
    /// rate limit, mirrored; see [`KeyLookup::may_refetch`]).
    pub refetch_from: Option<UnixTime>,
    /// A fetch is in flight: a token with an unknown `kid` waits for it (as in the worker).
    pub fetching: bool,
    /// Counts the fetches of this provider that ended (and early refetches refused): a request
    /// waiting on an unknown kid resumes when it moves.
    pub settled: u64,
}

/// Every remote provider's keys, as of one moment.
#[derive(Debug, Clone, Default)]
pub struct KeySnapshot {
    pub entries: Vec<KeyEntry>,
    /// The API-key list as of its last fetch (`api_keys.remote`).
    pub list: Option<Arc<KeyListState>>,
}

impl KeySnapshot {
    fn entry(&self, provider: &str) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| e.provider == provider)
    }

    /// The provider has keys.
    pub fn has(&self, provider: &str) -> bool {
        self.entry(provider).is_some_and(|e| e.keys.is_some())
    }

    /// See [`KeyEntry::settled`].
    pub fn settled(&self, provider: &str) -> u64 {
        self.entry(provider).map_or(0, |e| e.settled)
    }
}

impl KeyLookup for KeySnapshot {
    fn keys(&self, provider: &str) -> Option<&KeySet> {
        self.entry(provider).and_then(|e| e.keys.as_deref())
    }

    fn may_refetch(&self, provider: &str, now: UnixTime) -> bool {
        self.entry(provider).is_some_and(|e| {
            e.keys.is_some() && (e.fetching || e.refetch_from.is_some_and(|f| now >= f))
        })
    }

    fn api_key_list(&self) -> Option<&KeyListState> {
        self.list.as_deref()
    }
}

/// One provider's remote key set, as the main thread drives it.
pub struct Remote {
    pub provider: String,
    /// The configured cluster (else the URL's authority is used).
    cluster: Option<String>,
    /// Envoy gives up on a fetch after this long (the state machine then backs off).
    timeout_ms: u64,
    /// How long a request waits for this provider's first keys.
    pub wait: Duration,
    state: JwksState,
    in_flight: Option<(u64, FetchRequest)>,
    /// The key set the workers have, and the JWKS document it was parsed from (a refresh that
    /// brings the same document changes nothing).
    keys: Option<Arc<KeySet>>,
    raw: Vec<u8>,
    settled: u64,
}

impl Remote {
    pub fn new(rk: RemoteKeys) -> Remote {
        Remote {
            cluster: rk.source.cluster().map(str::to_string),
            timeout_ms: rk.source.fetch_timeout_ms(),
            wait: Duration::from_millis(rk.source.wait_for_keys_ms()),
            provider: rk.provider,
            state: JwksState::new(rk.source),
            in_flight: None,
            keys: None,
            raw: Vec::new(),
            settled: 0,
        }
    }

    /// The key-set state machine (the login reads the discovery document it fetched).
    pub fn state(&self) -> &JwksState {
        &self.state
    }

    /// What the workers see of this provider.
    pub fn entry(&self) -> KeyEntry {
        KeyEntry {
            provider: self.provider.clone(),
            keys: self.keys.clone(),
            refetch_from: self.state.unknown_kid_refetch_from(),
            fetching: self.in_flight.is_some(),
            settled: self.settled,
        }
    }

    /// A fetch of this provider ended, or an early refetch was refused.
    pub fn settle(&mut self) {
        self.settled = self.settled.wrapping_add(1);
    }

    /// A token named a kid this set lacks: refetch now if the state machine allows it. False
    /// when it did not (then no refetch will come of it, unless a fetch is already in flight).
    pub fn on_unknown_kid(&mut self, now: UnixTime) -> bool {
        let early = self.state.on_unknown_kid(now);
        if early {
            log::info!("jwks {}: unknown kid seen, refetching early", self.provider);
        }
        early
    }

    /// A fetch is outstanding.
    pub fn fetching(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Asks the state machine whether a fetch is due and, if so, starts it (main thread).
    pub fn start_fetch_if_due(&mut self, ctx: &ConfigCtx<'_>, now: UnixTime) -> Result<(), String> {
        let call = callout(ctx, self.timeout_ms);
        glue::start_due(
            &mut self.state,
            &mut self.in_flight,
            self.cluster.as_deref(),
            now,
            call,
        )
    }

    /// The answer to callout `id`, if it is this provider's. `Some(true)` in the outcome's second
    /// part when a key set the workers had was replaced (the caller empties the token cache, so a
    /// withdrawn key stops working at once).
    pub fn on_response(
        &mut self,
        id: u64,
        response: &CalloutResponse<'_>,
        now: UnixTime,
    ) -> Option<(Outcome, bool)> {
        let req = glue::take_answered(&mut self.in_flight, &id)?;
        let outcome = answered(&req, response, |a| {
            glue::finish(&mut self.state, &req, a, now)
        });
        let mut replaced = false;
        if matches!(outcome, Outcome::KeysUpdated { .. } | Outcome::Failed(_)) {
            self.settle();
        }
        if let (Some(set), Some(raw)) = (self.state.keys(), self.state.raw_keys()) {
            if self.keys.is_none() || raw != self.raw.as_slice() {
                replaced = self.keys.is_some();
                self.keys = Some(Arc::new(set.clone()));
                self.raw = raw.to_vec();
            }
        }
        Some((outcome, replaced))
    }
}

/// A fetch's call for [`glue::start_due`]: a config-level HTTP callout to a cluster with
/// headers. Err: why Envoy refused it.
fn callout<'a>(
    ctx: &'a ConfigCtx<'_>,
    timeout_ms: u64,
) -> impl FnOnce(&str, &[(&str, &str)]) -> Result<u64, String> + 'a {
    move |cluster, headers| {
        ctx.http_callout(cluster, headers, timeout_ms)
            .map_err(|refused| refused.name().to_string())
    }
}

/// Hands a callout's response to `finish` as the glue reads it.
fn answered(
    req: &FetchRequest,
    response: &CalloutResponse<'_>,
    finish: impl FnOnce(&glue::Answer<'_>) -> Outcome,
) -> Outcome {
    let body = response.body(glue::body_limit(req, response.body_len()));
    let cache_control = response.header("cache-control");
    let etag = response.header("etag");
    finish(&glue::Answer {
        status: response.status(),
        cache_control: cache_control.as_deref(),
        etag: etag.as_deref(),
        body: &body,
    })
}

/// The API-key list (`api_keys.remote`), as the main thread drives it.
pub struct ListRemote {
    cluster: Option<String>,
    timeout_ms: u64,
    state: KeyListState,
    in_flight: Option<(u64, FetchRequest)>,
    /// What the workers verify with: the state as of its last answered fetch.
    published: Option<Arc<KeyListState>>,
}

impl ListRemote {
    pub fn new(state: KeyListState) -> ListRemote {
        ListRemote {
            cluster: state.source().cluster().map(str::to_string),
            timeout_ms: state.source().fetch_timeout_ms(),
            state,
            in_flight: None,
            published: None,
        }
    }

    /// What the workers see of the list.
    pub fn published(&self) -> Option<Arc<KeyListState>> {
        self.published.clone()
    }

    /// Asks the state machine whether a fetch is due and, if so, starts it (main thread).
    pub fn start_fetch_if_due(&mut self, ctx: &ConfigCtx<'_>, now: UnixTime) -> Result<(), String> {
        let call = callout(ctx, self.timeout_ms);
        glue::start_due(
            &mut self.state,
            &mut self.in_flight,
            self.cluster.as_deref(),
            now,
            call,
        )
    }

    /// The answer to callout `id`, if it is the list's. A list fetched or confirmed is
    /// published to the workers.
    pub fn on_response(
        &mut self,
        id: u64,
        response: &CalloutResponse<'_>,
        now: UnixTime,
    ) -> Option<Outcome> {
        let req = glue::take_answered(&mut self.in_flight, &id)?;
        let outcome = answered(&req, response, |a| {
            glue::finish(&mut self.state, &req, a, now)
        });
        if !matches!(outcome, Outcome::Failed(_)) {
            self.published = Some(Arc::new(self.state.clone()));
        }
        Some(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn may_refetch_needs_keys_and_the_rate_limit_passed() {
        let mut snap = KeySnapshot {
            entries: vec![KeyEntry {
                provider: "idp".into(),
                keys: None,
                refetch_from: Some(10),
                fetching: false,
                settled: 3,
            }],
            list: None,
        };
        assert!(
            !snap.may_refetch("idp", 20),
            "no keys yet: the first fetch rules"
        );
        assert!(!snap.has("idp"));
        assert_eq!(snap.settled("idp"), 3);
        if let Some(e) = snap.entries.first_mut() {
            e.keys = Some(Arc::new(KeySet::parse_jwks(br#"{"keys":[]}"#).unwrap()));
        }
        assert!(snap.has("idp"));
        assert!(!snap.may_refetch("idp", 9));
        assert!(snap.may_refetch("idp", 10));
        assert!(!snap.may_refetch("other", 10));
        // A fetch in flight: a token with an unknown kid waits for it, whatever the rate limit.
        if let Some(e) = snap.entries.first_mut() {
            e.fetching = true;
        }
        assert!(snap.may_refetch("idp", 9));
        assert_eq!(snap.settled("other"), 0);
    }
}
