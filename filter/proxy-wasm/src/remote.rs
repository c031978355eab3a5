//! Remote key sets: the root context drives one `JwksState` per provider over Envoy's
//! `dispatch_http_call`, and every context reads the published keys from shared data. Which
//! cluster and headers a fetch uses, and what its response means, is shared with the native
//! module (`edgegate_envoy_glue::fetch`).

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use edgegate::engine::RemoteKeys;
use edgegate::jwk::KeySet;
use edgegate::jwks::{FetchRequest, JwksState};
use edgegate::keylist::KeyListState;
use edgegate::verifier::KeyLookup;
use edgegate::UnixTime;
use edgegate_envoy_glue::fetch as glue;
pub use edgegate_envoy_glue::fetch::Outcome;

use crate::shared::{self, Published};

/// One provider's remote key set, as this VM's root context drives it.
pub struct Remote {
    pub provider: String,
    /// Names the configured source, so a renamed provider or moved URL never adopts old keys.
    pub source_id: String,
    /// Where this source's keys are published in shared data.
    pub key: String,
    /// The configured cluster (else the URL's authority is used).
    cluster: Option<String>,
    /// Envoy gives up on a fetch after this long (the state machine then backs off).
    timeout: Duration,
    /// How long a request waits for this provider's first keys.
    pub wait: Duration,
    state: Option<JwksState>,
    in_flight: Option<(u32, FetchRequest)>,
    adopted: Option<u32>,
}

impl Remote {
    pub fn new(rk: RemoteKeys) -> Remote {
        let source_id = glue::source_id(&rk);
        Remote {
            key: shared::jwks_key(&rk.provider, &source_id),
            cluster: rk.source.cluster().map(str::to_string),
            timeout: Duration::from_millis(rk.source.fetch_timeout_ms()),
            wait: Duration::from_millis(rk.source.wait_for_keys_ms()),
            provider: rk.provider,
            source_id,
            state: Some(JwksState::new(rk.source)),
            in_flight: None,
            adopted: None,
        }
    }

    /// The provider's key-set state machine (its discovery document, for login).
    pub fn state(&self) -> Option<&JwksState> {
        self.state.as_ref()
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|(t, _)| *t == token)
    }

    /// A token named a kid this set lacks: refetch now if the state machine allows it. False
    /// when it did not (then no refetch will come of it, unless a fetch is already in flight).
    pub fn on_unknown_kid(&mut self, now: UnixTime) -> bool {
        let Some(s) = &mut self.state else {
            return false;
        };
        let early = s.on_unknown_kid(now);
        if early {
            log::info!("jwks {}: unknown kid seen, refetching early", self.provider);
        }
        early
    }

    /// A fetch is outstanding.
    pub fn fetching(&self) -> bool {
        self.in_flight.is_some()
    }

    /// See [`JwksState::unknown_kid_refetch_from`].
    pub fn unknown_kid_refetch_from(&self) -> Option<UnixTime> {
        self.state
            .as_ref()
            .and_then(JwksState::unknown_kid_refetch_from)
    }

    /// Installs keys another VM published (newer than ours), without changing our schedule.
    pub fn adopt_shared(&mut self, _now: UnixTime) {
        let Some(state) = &mut self.state else { return };
        let (published, cas) = shared::read_jwks(&self.key);
        if cas.is_none() || cas == self.adopted {
            return;
        }
        self.adopted = cas;
        let Some(p) = published else { return };
        if p.source != self.source_id || state.raw_keys() == Some(p.raw.as_slice()) {
            return;
        }
        if let Err(errors) = state.restore(&p.raw) {
            if let Some(e) = errors.first() {
                log::warn!("jwks {}: ignoring published keys: {e}", self.provider);
            }
        }
    }

    /// Asks the state machine whether a fetch is due and, if so, dispatches it.
    pub fn start_fetch_if_due(&mut self, now: UnixTime) -> Result<(), String> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let Some(state) = &mut self.state else {
            return Ok(());
        };
        let call = dispatch(self.timeout);
        glue::start_due(
            state,
            &mut self.in_flight,
            self.cluster.as_deref(),
            now,
            call,
        )
    }

    /// The response (or failure) of the outstanding fetch `token`.
    pub fn on_response(&mut self, token: u32, body_size: usize, now: UnixTime) -> Outcome {
        let Some(req) = glue::take_answered(&mut self.in_flight, &token) else {
            return Outcome::Progress;
        };
        let Some(state) = &mut self.state else {
            return Outcome::Progress;
        };
        let r = CallResponse::read(&req, body_size);
        let outcome = glue::finish(state, &req, &r.answer(), now);
        if let Outcome::KeysUpdated { .. } = outcome {
            if let Some(raw) = state.raw_keys() {
                let p = Published {
                    source: self.source_id.clone(),
                    fetched_at: now,
                    raw: raw.to_vec(),
                };
                shared::publish_jwks(&self.key, &p);
            }
        }
        outcome
    }
}

/// A fetch's response as Envoy hands it to the root context.
struct CallResponse {
    status: Option<u16>,
    cache_control: Option<String>,
    etag: Option<String>,
    body: Vec<u8>,
}

impl CallResponse {
    fn read(req: &FetchRequest, body_size: usize) -> CallResponse {
        let headers =
            crate::request::read_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let status = header(":status").and_then(|s| s.parse::<u16>().ok());
        // Read at most one byte past the limit: the state machine refuses an oversized body.
        let want = glue::body_limit(req, body_size);
        let body = if status.is_none() || want == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, want)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        CallResponse {
            status,
            cache_control: header("cache-control"),
            etag: header("etag"),
            body,
        }
    }

    fn answer(&self) -> glue::Answer<'_> {
        glue::Answer {
            status: self.status,
            cache_control: self.cache_control.as_deref(),
            etag: self.etag.as_deref(),
            body: &self.body,
        }
    }
}

/// A fetch's call for [`glue::start_due`]: `dispatch_http_call` to a cluster with headers.
/// Err: why Envoy refused the call.
fn dispatch(timeout: Duration) -> impl FnOnce(&str, &[(&str, &str)]) -> Result<u32, String> {
    move |cluster, headers| {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, vec![], timeout)
            .map_err(|status| format!("{status:?}"))
    }
}

/// The API-key list (`api_keys.remote`), as this VM's root context drives it: fetched on its
/// own schedule, and published in shared data with the time of its last successful fetch
/// (`200` or `304`) whenever that is newer than what is there, so every VM's requests use the
/// newest list any VM fetched.
pub struct ListRemote {
    /// Where the list is published in shared data.
    pub key: String,
    source_id: String,
    cluster: Option<String>,
    timeout: Duration,
    state: KeyListState,
    in_flight: Option<(u32, FetchRequest)>,
}

impl ListRemote {
    pub fn new(state: KeyListState) -> ListRemote {
        let source_id = state.source().id();
        ListRemote {
            key: shared::list_key(&source_id),
            cluster: state.source().cluster().map(str::to_string),
            timeout: Duration::from_millis(state.source().fetch_timeout_ms()),
            source_id,
            state,
            in_flight: None,
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|(t, _)| *t == token)
    }

    /// Asks the state machine whether a fetch is due and, if so, dispatches it.
    pub fn start_fetch_if_due(&mut self, now: UnixTime) -> Result<(), String> {
        let call = dispatch(self.timeout);
        glue::start_due(
            &mut self.state,
            &mut self.in_flight,
            self.cluster.as_deref(),
            now,
            call,
        )
    }

    /// The response (or failure) of the outstanding fetch `token`; a list fetched or
    /// confirmed is published.
    pub fn on_response(&mut self, token: u32, body_size: usize, now: UnixTime) -> Outcome {
        let Some(req) = glue::take_answered(&mut self.in_flight, &token) else {
            return Outcome::Progress;
        };
        let r = CallResponse::read(&req, body_size);
        let outcome = glue::finish(&mut self.state, &req, &r.answer(), now);
        if !matches!(outcome, Outcome::Failed(_)) {
            if let (Some(raw), Some(at)) = (self.state.raw(), self.state.confirmed_at()) {
                let p = Published {
                    source: self.source_id.clone(),
                    fetched_at: at,
                    raw: raw.to_vec(),
                };
                shared::publish_list(&self.key, &p);
            }
        }
        outcome
    }
}

/// The API-key list as this VM's requests see it: the newest one published in shared data.
struct ListEntry {
    key: String,
    source_id: String,
    cas: Option<u32>,
    state: KeyListState,
}

impl ListEntry {
    /// Picks up a list (or a newer confirmation of it) published since the last look.
    fn refresh(&mut self) {
        let (published, cas) = shared::read_jwks(&self.key);
        if cas.is_none() || cas == self.cas {
            return;
        }
        self.cas = cas;
        let Some(p) = published.filter(|p| p.source == self.source_id) else {
            return;
        };
        if let Err(e) = self.state.restore(&p.raw, p.fetched_at) {
            log::warn!("api_keys.remote: published list unusable, keeping the previous one: {e}");
        }
    }
}

/// The key sets this VM verifies with: parsed from shared data, re-parsed only when an entry's
/// CAS version changed.
#[derive(Default)]
pub struct KeyCache {
    entries: Vec<Entry>,
    /// `api_keys.remote`, when configured.
    list: Option<ListEntry>,
    /// When the published key sets were last compared (ms since the epoch).
    checked_ms: u128,
}

/// How often the request path looks at the published key sets once every provider has keys:
/// reading shared data copies the whole JWKS across the ABI, so not on every request. A rotation
/// reaches this VM at most this much later.
const RECHECK_MS: u128 = 500;

struct Entry {
    /// From when the root would refetch early for an unknown kid (its `JwksState`, mirrored).
    refetch_from: Option<UnixTime>,
    /// Counts the fetches of this provider that ended (or early refetches refused): a request
    /// waiting on an unknown kid resumes when it moves.
    settled: u64,
    provider: String,
    source_id: String,
    key: String,
    cas: Option<u32>,
    keys: Option<KeySet>,
    /// The JWKS document `keys` was parsed from: republishing the same document changes the
    /// CAS but not the keys.
    raw: Vec<u8>,
}

impl KeyCache {
    /// Registers a remote provider this config uses.
    pub fn expect(&mut self, provider: &str, source_id: &str) {
        self.entries.push(Entry {
            provider: provider.to_string(),
            source_id: source_id.to_string(),
            key: shared::jwks_key(provider, source_id),
            cas: None,
            keys: None,
            raw: Vec::new(),
            refetch_from: None,
            settled: 0,
        });
    }

    /// Registers the API-key list this config uses (a state that is only ever restored from
    /// shared data, never fetched with).
    pub fn expect_list(&mut self, state: KeyListState) {
        let source_id = state.source().id();
        self.list = Some(ListEntry {
            key: shared::list_key(&source_id),
            source_id,
            cas: None,
            state,
        });
    }

    /// Mirrors the root's rate limit for early refetches (see [`KeyLookup::may_refetch`]).
    pub fn set_refetch_from(&mut self, provider: &str, from: Option<UnixTime>) {
        for e in self.entries.iter_mut().filter(|e| e.provider == provider) {
            e.refetch_from = from;
        }
    }

    /// A fetch of `provider`'s keys ended, or an early refetch was refused.
    pub fn settle(&mut self, provider: &str) {
        for e in self.entries.iter_mut().filter(|e| e.provider == provider) {
            e.settled = e.settled.wrapping_add(1);
        }
    }

    /// See [`KeyCache::settle`].
    pub fn settled(&self, provider: &str) -> u64 {
        self.entries
            .iter()
            .find(|e| e.provider == provider)
            .map_or(0, |e| e.settled)
    }

    /// Picks up key sets published since the last look.
    /// [`KeyCache::refresh`] at most every [`RECHECK_MS`] while every provider has keys; at once
    /// while one still has none (a request may be waiting for it).
    /// Returns what [`KeyCache::refresh`] returns (false when it did not look).
    pub fn refresh_if_due(&mut self, now_ms: u128) -> bool {
        let all_present = self.entries.iter().all(|e| e.keys.is_some())
            && !self.list.as_ref().is_some_and(|l| l.state.keys().is_none());
        if all_present && now_ms < self.checked_ms.saturating_add(RECHECK_MS) {
            return false;
        }
        self.checked_ms = now_ms;
        self.refresh()
    }

    /// Returns true when a provider's keys changed (a key may have been withdrawn): the caller
    /// then empties the verified-token cache, so a withdrawn key stops working at once.
    pub fn refresh(&mut self) -> bool {
        if let Some(list) = &mut self.list {
            list.refresh();
        }
        let mut changed = false;
        for e in &mut self.entries {
            let (bytes, cas) = match hostcalls::get_shared_data(&e.key) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if cas.is_none() || cas == e.cas {
                continue;
            }
            e.cas = cas;
            let Some(p) = bytes.as_deref().and_then(Published::decode) else {
                continue;
            };
            if p.source != e.source_id || (e.keys.is_some() && p.raw == e.raw) {
                continue;
            }
            match KeySet::parse_jwks(&p.raw) {
                Ok(set) if !set.is_empty() => {
                    changed |= e.keys.is_some();
                    e.keys = Some(set);
                    e.raw = p.raw;
                }
                Ok(_) => {}
                Err(errors) => {
                    if let Some(err) = errors.first() {
                        log::warn!(
                            "jwks {}: published keys unusable, keeping the previous ones: {err}",
                            e.provider
                        );
                    }
                }
            }
        }
        changed
    }

    pub fn has(&self, provider: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.provider == provider && e.keys.is_some())
    }
}

impl KeyLookup for KeyCache {
    fn keys(&self, provider: &str) -> Option<&KeySet> {
        self.entries
            .iter()
            .find(|e| e.provider == provider)
            .and_then(|e| e.keys.as_ref())
    }

    fn may_refetch(&self, provider: &str, now: UnixTime) -> bool {
        self.entries.iter().any(|e| {
            e.provider == provider && e.keys.is_some() && e.refetch_from.is_some_and(|f| now >= f)
        })
    }

    fn api_key_list(&self) -> Option<&KeyListState> {
        self.list.as_ref().map(|l| &l.state)
    }
}
