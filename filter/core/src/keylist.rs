//! A remote API-key list (`api_keys.remote`): the list file `edgegate keys new --list` and
//! `edgegate keys revoke --list` write (`{"keys": [...]}`, [`crate::apikey::KeyList`]), served
//! at a URL and kept fresh by the host like a JWKS, so that a revoked key stops working
//! everywhere within one refresh interval, without a config push.
//!
//! The host drives a [`KeyListState`] as it drives a [`crate::jwks::JwksState`] (the same
//! [`crate::refresh`] schedule: a fetch at start, refreshes after `refresh_interval_seconds` or
//! the response's `Cache-Control: max-age` within `[refresh_min_seconds, refresh_max_seconds]`,
//! `If-None-Match` with the last `ETag` and `304` keeping the list, backoff on failure), and
//! hands it to the engine through [`crate::verifier::KeyLookup::api_key_list`].
//!
//! Rules:
//! - A list is checked exactly as the inline `api_keys.keys` are (hash kind against the pepper,
//!   unique names and hashes) **together with** the inline keys: the keys accepted are the
//!   union, and a list that names a key the inline `keys` already name (or repeats a hash) is
//!   refused whole. A refused list (bad status, garbage, a bad entry) keeps the last good one;
//!   the error says why without a secret.
//! - Until a first list arrives, and once `max_stale_seconds` have passed since the last
//!   successful fetch (a `200` or a `304`), a key the inline `keys` do not hold is refused with
//!   `503 api_keys_unavailable` (fail closed). Inline keys keep working: they need no list.
//!   Requests with other credentials are unaffected.
//! - A key removed from the served list is refused (`401 api_key_unknown`) as soon as a fetch
//!   brings the new list.
//!
//! ```yaml
//! api_keys:
//!   pepper: ...                 # as for inline keys
//!   keys: []                    # optional inline keys (break-glass), still allowed
//!   remote:
//!     url: https://keys.internal/edgegate/keys.json
//!     cluster: keys_cluster     # Envoy only, as remote_jwks.cluster
//!     refresh_interval_seconds: 30
//!     max_stale_seconds: 600
//! ```

use std::sync::Arc;

use crate::apikey::{ApiKeyStore, KeyList};
use crate::error::{ConfigError, Error, Problems, Reason};
use crate::refresh::{
    check_transport, check_url, Bounds, FetchKind, FetchRequest, Response, Schedule,
};
use crate::UnixTime;

/// Upper bound on a key list's size (about 5,000 entries).
pub const MAX_KEY_LIST_BYTES: usize = 1024 * 1024;

fn default_refresh_interval() -> u64 {
    30
}
fn default_refresh_min() -> u64 {
    5
}
fn default_refresh_max() -> u64 {
    300
}
fn default_max_stale() -> u64 {
    600
}
fn default_retry_initial() -> u64 {
    2
}
fn default_retry_max() -> u64 {
    30
}
fn default_fetch_timeout_ms() -> u64 {
    5_000
}

/// `api_keys.remote`: where the API-key list is fetched from, and how often.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RemoteKeyList {
    /// URL serving the key list in edgegate's format, `{"keys": [...]}` (what
    /// `edgegate keys new --list` writes). `https://`; `http://` only for localhost.
    pub url: String,
    /// Envoy only: the cluster that reaches the URL (`dispatch_http_call` needs one); without
    /// it, the cluster named after the URL's authority as written. Other hosts ignore it.
    pub cluster: Option<String>,
    /// Time between refreshes when the response has no usable `Cache-Control: max-age`, in
    /// seconds: a revoked key stops working at most this long after the list changed. Default 30.
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval_seconds: u64,
    /// A lower `max-age` is raised to this, in seconds. Default 5.
    #[serde(default = "default_refresh_min")]
    pub refresh_min_seconds: u64,
    /// A higher `max-age` is lowered to this, in seconds. Default 300.
    #[serde(default = "default_refresh_max")]
    pub refresh_max_seconds: u64,
    /// How long the last good list is used while refreshes fail, in seconds (counted from the
    /// last successful fetch, `200` or `304`); after it, keys not in the inline `keys` get
    /// `503 api_keys_unavailable` until a fetch succeeds. Must exceed `refresh_max_seconds`.
    /// Default 600.
    #[serde(default = "default_max_stale")]
    pub max_stale_seconds: u64,
    /// First retry delay after a failed fetch, in seconds; doubled on each further failure.
    /// Default 2.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_seconds: u64,
    /// Cap on the retry delay, in seconds. Default 30.
    #[serde(default = "default_retry_max")]
    pub retry_max_seconds: u64,
    /// How long one fetch may take, in milliseconds. Default 5000.
    #[serde(default = "default_fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
}

impl RemoteKeyList {
    /// A source for `url` with every default.
    pub fn at(url: &str) -> RemoteKeyList {
        RemoteKeyList {
            url: url.to_owned(),
            cluster: None,
            refresh_interval_seconds: default_refresh_interval(),
            refresh_min_seconds: default_refresh_min(),
            refresh_max_seconds: default_refresh_max(),
            max_stale_seconds: default_max_stale(),
            retry_initial_seconds: default_retry_initial(),
            retry_max_seconds: default_retry_max(),
            fetch_timeout_ms: default_fetch_timeout_ms(),
        }
    }

    /// Checks the source; every problem is reported (paths relative to `remote`).
    pub fn compile(&self) -> Result<CompiledKeyList, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if let Err(m) = check_url(&self.url) {
            errors.push(ConfigError::new("url", m));
        }
        let bounds = Bounds {
            min: self.refresh_min_seconds,
            max: self.refresh_max_seconds,
            default: self.refresh_interval_seconds,
            retry_initial: self.retry_initial_seconds,
            retry_max: self.retry_max_seconds,
        };
        bounds.check(&mut errors, "refresh_interval_seconds");
        check_transport(&mut errors, self.cluster.as_deref(), self.fetch_timeout_ms);
        errors.refuse_if(
            self.max_stale_seconds <= self.refresh_max_seconds.max(self.refresh_interval_seconds),
            "max_stale_seconds",
            "must exceed refresh_max_seconds (and refresh_interval_seconds), or the list would go stale between two regular refreshes",
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CompiledKeyList {
            url: self.url.clone(),
            cluster: self.cluster.clone(),
            bounds,
            max_stale: self.max_stale_seconds,
            fetch_timeout_ms: self.fetch_timeout_ms,
        })
    }
}

/// A checked [`RemoteKeyList`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledKeyList {
    url: String,
    cluster: Option<String>,
    bounds: Bounds,
    max_stale: u64,
    fetch_timeout_ms: u64,
}

impl CompiledKeyList {
    /// The list's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The Envoy cluster that reaches the URL, if configured.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// How long one fetch may take, in milliseconds.
    pub fn fetch_timeout_ms(&self) -> u64 {
        self.fetch_timeout_ms
    }

    /// How long the last good list is used without a successful fetch, in seconds.
    pub fn max_stale_seconds(&self) -> u64 {
        self.max_stale
    }

    /// Names this source (URL and settings), so that hosts sharing lists between VMs never
    /// adopt another config's list.
    pub fn id(&self) -> String {
        format!("{self:?}")
    }
}

/// What an accepted response did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListUpdate {
    /// A new list is in use (`keys`: how many entries it holds).
    Replaced { keys: usize },
    /// The list is the same (a `304`, or the same bytes again); its freshness was renewed.
    Unchanged,
}

/// The refresh state of the remote API-key list, and the key store it makes with the inline
/// keys.
#[derive(Debug, Clone)]
pub struct KeyListState {
    source: Arc<CompiledKeyList>,
    /// The inline keys and the pepper: every list is checked and merged against them.
    base: ApiKeyStore,
    schedule: Schedule,
    /// The inline keys plus the last good list.
    store: Option<ApiKeyStore>,
    /// The list document `store` was built from (to share with other VMs).
    raw: Option<Vec<u8>>,
    /// How many entries the list held.
    listed: usize,
    /// The last successful fetch (`200` or `304`), here or in another VM whose list was restored.
    confirmed_at: Option<UnixTime>,
    generation: u64,
}

impl KeyListState {
    /// A state with no list yet; the first `poll` asks for a fetch at once. `base`: the
    /// compiled `api_keys` section (inline keys, pepper).
    pub(crate) fn new(source: Arc<CompiledKeyList>, base: ApiKeyStore) -> KeyListState {
        KeyListState {
            schedule: Schedule::new(source.bounds),
            source,
            base,
            store: None,
            raw: None,
            listed: 0,
            confirmed_at: None,
            generation: 0,
        }
    }

    /// The configured source.
    pub fn source(&self) -> &CompiledKeyList {
        &self.source
    }

    /// What to GET now, if anything (one request at a time).
    pub fn poll(&mut self, now: UnixTime) -> Option<FetchRequest> {
        if !self.schedule.due(now) {
            return None;
        }
        let url = self.source.url.clone();
        Some(
            self.schedule
                .start(FetchKind::ApiKeys, url, MAX_KEY_LIST_BYTES, now),
        )
    }

    /// Reports the response to `req`. A refused response (status other than 200, or 304 to a
    /// conditional request; a body that is not a valid list) keeps the last good list,
    /// schedules a retry with backoff, and is returned for the host to log (it names no
    /// secret).
    pub fn on_response(
        &mut self,
        req: &FetchRequest,
        resp: &Response<'_>,
        now: UnixTime,
    ) -> Result<ListUpdate, Error> {
        self.schedule.take(req)?;
        let result = if Schedule::not_modified(req, resp) && self.store.is_some() {
            Ok(ListUpdate::Unchanged)
        } else {
            self.accept(resp)
        };
        match result {
            Ok(_) => {
                self.schedule.succeeded(now, resp.cache_control, resp.etag);
                self.confirmed_at = self.confirmed_at.max(Some(now));
            }
            Err(_) => self.schedule.failed(now),
        }
        result
    }

    /// Reports that the outstanding request got no response (connection error, timeout).
    pub fn on_failure(&mut self, now: UnixTime) {
        self.schedule.lost(now);
    }

    /// Installs a list another VM (or isolate) fetched, `confirmed_at`: when that fetch
    /// succeeded. The freshness only moves forward; the fetch schedule is not changed. Ok(true)
    /// when the keys changed.
    pub fn restore(&mut self, raw: &[u8], confirmed_at: UnixTime) -> Result<bool, Error> {
        let changed = if self.raw.as_deref() == Some(raw) {
            false
        } else {
            self.accept(&Response::new(200, None, raw))?;
            // Not the document our ETag names: the next fetch asks for the whole list.
            self.schedule.forget_etag();
            true
        };
        self.confirmed_at = self.confirmed_at.max(Some(confirmed_at));
        Ok(changed)
    }

    /// The key store to verify with at `now`: the inline keys plus the last good list, unless
    /// no list arrived yet or the last successful fetch is `max_stale_seconds` old
    /// (`503 api_keys_unavailable`).
    pub fn usable(&self, now: UnixTime) -> Result<&ApiKeyStore, Error> {
        let (Some(store), Some(at)) = (&self.store, self.confirmed_at) else {
            return Err(Error::new(
                Reason::ApiKeysUnavailable,
                "the API-key list has not been fetched yet; retry shortly",
            ));
        };
        if now >= at.saturating_add(self.source.max_stale) {
            return Err(Error::new(
                Reason::ApiKeysUnavailable,
                format!(
                    "the API-key list could not be refreshed for {} s (max_stale_seconds); retry later",
                    now.saturating_sub(at)
                ),
            ));
        }
        Ok(store)
    }

    /// The inline keys plus the last good list, however old, if a list ever arrived.
    pub fn keys(&self) -> Option<&ApiKeyStore> {
        self.store.as_ref()
    }

    /// How many entries the last good list held.
    pub fn listed(&self) -> usize {
        self.listed
    }

    /// The list document in use (to share with other VMs).
    pub fn raw(&self) -> Option<&[u8]> {
        self.raw.as_deref()
    }

    /// The last successful fetch (`200` or `304`), here or where a restored list came from.
    pub fn confirmed_at(&self) -> Option<UnixTime> {
        self.confirmed_at
    }

    /// Bumped each time a new list is installed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the host should call `poll` next.
    pub fn next_wakeup(&self) -> Option<UnixTime> {
        self.schedule.next_wakeup()
    }

    /// True while a fetch is outstanding.
    pub fn fetching(&self) -> bool {
        self.schedule.fetching()
    }

    /// Failed fetches since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.schedule.failures()
    }

    /// Checks a `200` body and installs it.
    fn accept(&mut self, resp: &Response<'_>) -> Result<ListUpdate, Error> {
        if resp.status != 200 {
            return Err(unavailable(format!(
                "the key list's URL answered HTTP {}",
                resp.status
            )));
        }
        if resp.body.len() > MAX_KEY_LIST_BYTES {
            return Err(unavailable(format!(
                "the key list is larger than {MAX_KEY_LIST_BYTES} bytes"
            )));
        }
        if self.raw.as_deref() == Some(resp.body) {
            return Ok(ListUpdate::Unchanged);
        }
        let list: KeyList = serde_json::from_slice(resp.body).map_err(|e| {
            // serde's message names the field and position, never a value.
            unavailable(format!(
                "the key list is not {{\"keys\": [...]}} in edgegate's format (line {}, column {}: {})",
                e.line(),
                e.column(),
                serde_kind(&e)
            ))
        })?;
        let store = self.base.with_listed(&list.keys).map_err(|errs| {
            let more = errs.len().saturating_sub(1);
            let first = errs.first().map_or_else(String::new, ToString::to_string);
            let more = if more > 0 {
                format!(" (and {more} more problems)")
            } else {
                String::new()
            };
            unavailable(format!("the key list is refused: {first}{more}"))
        })?;
        self.store = Some(store);
        self.raw = Some(resp.body.to_vec());
        self.listed = list.keys.len();
        self.generation = self.generation.wrapping_add(1);
        Ok(ListUpdate::Replaced {
            keys: list.keys.len(),
        })
    }
}

/// A refused fetch (hosts add that the last good list is kept).
fn unavailable(message: String) -> Error {
    Error::new(Reason::ApiKeysUnavailable, message)
}

/// serde_json's category, without the message (which may quote a value from the document).
fn serde_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "a field is missing, unknown or of the wrong type",
        serde_json::error::Category::Eof => "cut short",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::{hash, mint, ApiKeysConfig};
    use crate::refresh::IN_FLIGHT_TIMEOUT_SECONDS;

    const URL: &str = "https://keys.example/edgegate/keys.json";

    fn key(n: u8) -> String {
        mint("egk_", &[n; 32])
    }

    fn list(names: &[(&str, u8)]) -> Vec<u8> {
        let entries: Vec<String> = names
            .iter()
            .map(|(name, n)| {
                format!(
                    r#"{{"name":"{name}","hash":"{}","roles":["r"]}}"#,
                    hash(&key(*n), None)
                )
            })
            .collect();
        format!(r#"{{"keys":[{}]}}"#, entries.join(",")).into_bytes()
    }

    fn config(inline: &[(&str, u8)]) -> ApiKeysConfig {
        let keys = serde_json::from_slice::<KeyList>(&list(inline))
            .unwrap()
            .keys;
        ApiKeysConfig {
            keys,
            remote: Some(RemoteKeyList {
                refresh_interval_seconds: 30,
                refresh_min_seconds: 5,
                refresh_max_seconds: 300,
                max_stale_seconds: 600,
                ..RemoteKeyList::at(URL)
            }),
            ..ApiKeysConfig::default()
        }
    }

    fn state() -> KeyListState {
        config(&[]).compile().unwrap().remote_list().unwrap()
    }

    fn ok<'a>(body: &'a [u8], cc: Option<&'a str>, etag: Option<&'a str>) -> Response<'a> {
        Response {
            status: 200,
            cache_control: cc,
            etag,
            body,
        }
    }

    /// Polls at `now` (a fetch must be due) and answers `resp`.
    fn fetch(
        s: &mut KeyListState,
        now: UnixTime,
        resp: &Response<'_>,
    ) -> Result<ListUpdate, Error> {
        let req = s.poll(now).expect("a fetch is due");
        assert_eq!(req.kind, FetchKind::ApiKeys);
        assert_eq!(req.url, URL);
        s.on_response(&req, resp, now)
    }

    fn verdict(s: &KeyListState, n: u8, now: UnixTime) -> Result<String, Reason> {
        s.usable(now)
            .and_then(|store| store.verify(&key(n), now))
            .map(|id| id.subject)
            .map_err(|e| e.reason())
    }

    #[test]
    fn first_fetch_then_refresh_after_the_interval() {
        let mut s = state();
        assert_eq!(s.next_wakeup(), Some(0), "a fetch at start");
        assert_eq!(verdict(&s, 1, 0), Err(Reason::ApiKeysUnavailable));
        let req = s.poll(1000).unwrap();
        assert_eq!(req.authority(), "keys.example");
        assert_eq!(req.path(), "/edgegate/keys.json");
        assert_eq!(req.if_none_match, None);
        assert!(s.poll(1001).is_none(), "one fetch at a time");
        assert_eq!(verdict(&s, 1, 1001), Err(Reason::ApiKeysUnavailable));
        let body = list(&[("ci", 1), ("ops", 2)]);
        let up = s.on_response(&req, &ok(&body, None, None), 1002).unwrap();
        assert_eq!(up, ListUpdate::Replaced { keys: 2 });
        assert_eq!(verdict(&s, 1, 1002), Ok("ci".into()));
        assert_eq!(verdict(&s, 2, 1002), Ok("ops".into()));
        assert_eq!(verdict(&s, 3, 1002), Err(Reason::ApiKeyUnknown));
        assert_eq!(s.confirmed_at(), Some(1002));
        assert_eq!(s.raw(), Some(body.as_slice()));
        // refresh_interval_seconds (30) without max-age; max-age is clamped to [5, 300]
        assert_eq!(s.next_wakeup(), Some(1032));
        assert!(s.poll(1031).is_none());
        fetch(&mut s, 1032, &ok(&body, Some("max-age=1"), None)).unwrap();
        assert_eq!(s.next_wakeup(), Some(1037));
        fetch(&mut s, 1037, &ok(&body, Some("max-age=99999"), None)).unwrap();
        assert_eq!(s.next_wakeup(), Some(1337));
        fetch(
            &mut s,
            1337,
            &ok(&body, Some("no-store, max-age=100"), None),
        )
        .unwrap();
        assert_eq!(s.next_wakeup(), Some(1367));
    }

    #[test]
    fn a_revoked_key_is_refused_after_the_next_refresh() {
        let mut s = state();
        fetch(&mut s, 0, &ok(&list(&[("ci", 1), ("ops", 2)]), None, None)).unwrap();
        assert_eq!(verdict(&s, 1, 29), Ok("ci".into()));
        let up = fetch(&mut s, 30, &ok(&list(&[("ops", 2)]), None, None)).unwrap();
        assert_eq!(up, ListUpdate::Replaced { keys: 1 });
        assert_eq!(verdict(&s, 1, 30), Err(Reason::ApiKeyUnknown));
        assert_eq!(verdict(&s, 2, 30), Ok("ops".into()));
        assert_eq!(s.generation(), 2);
    }

    #[test]
    fn etag_and_304_keep_the_list_and_renew_its_freshness() {
        let mut s = state();
        let body = list(&[("ci", 1)]);
        fetch(&mut s, 0, &ok(&body, None, Some("\"v1\""))).unwrap();
        let req = s.poll(30).unwrap();
        assert_eq!(req.if_none_match.as_deref(), Some("\"v1\""));
        let not_modified = Response {
            status: 304,
            cache_control: None,
            etag: Some("\"v1\""),
            body: b"",
        };
        assert_eq!(
            s.on_response(&req, &not_modified, 30),
            Ok(ListUpdate::Unchanged)
        );
        assert_eq!(s.confirmed_at(), Some(30));
        assert_eq!(s.generation(), 1);
        assert_eq!(verdict(&s, 1, 629), Ok("ci".into()), "fresh until 30 + 600");
        assert_eq!(verdict(&s, 1, 630), Err(Reason::ApiKeysUnavailable));
        // the same bytes again are unchanged too
        assert_eq!(
            fetch(&mut s, 60, &ok(&body, None, None)),
            Ok(ListUpdate::Unchanged)
        );
        // a 304 to an unconditional request (no list yet) is a failure
        let mut fresh = state();
        let req = fresh.poll(0).unwrap();
        assert!(fresh.on_response(&req, &not_modified, 0).is_err());
        assert!(fresh.keys().is_none());
    }

    #[test]
    fn a_bad_list_keeps_the_last_good_one() {
        let mut s = state();
        fetch(&mut s, 0, &ok(&list(&[("ci", 1)]), None, None)).unwrap();
        let dup = list(&[("ci", 1), ("ci", 2)]);
        let peppered = format!(
            r#"{{"keys":[{{"name":"x","hash":"{}"}}]}}"#,
            hash(&key(5), Some(&[7u8; 32]))
        );
        let mut now = 30;
        for (status, body, why) in [
            (200, &b"<html>oops</html>"[..], "not JSON"),
            (200, &br#"{"keys":[{"name":"x"}]}"#[..], "field is missing"),
            (200, &br#"{"keys":[],"extra":1}"#[..], "unknown"),
            (200, dup.as_slice(), "appears twice"),
            (200, peppered.as_bytes(), "no pepper is set"),
            (503, &b"down"[..], "HTTP 503"),
            (404, &b""[..], "HTTP 404"),
        ] {
            let resp = Response::new(status, None, body);
            let e = fetch(&mut s, now, &resp).unwrap_err();
            assert_eq!(e.reason(), Reason::ApiKeysUnavailable);
            assert!(e.message().contains(why), "{why}: {}", e.message());
            let listed = hash(&key(5), Some(&[7u8; 32]));
            let hex = listed.trim_start_matches("hmac-sha256:");
            assert!(!e.message().contains(hex), "no hash in {}", e.message());
            assert_eq!(verdict(&s, 1, now), Ok("ci".into()));
            assert_eq!(s.generation(), 1);
            now = s.next_wakeup().unwrap();
        }
        assert_eq!(s.consecutive_failures(), 7);
        // an empty list is a valid list: every listed key is revoked
        fetch(&mut s, now, &ok(br#"{"keys":[]}"#, None, None)).unwrap();
        assert_eq!(verdict(&s, 1, now), Err(Reason::ApiKeyUnknown));
        assert_eq!(s.consecutive_failures(), 0);
        // oversized
        let mut s = state();
        let big = vec![b' '; MAX_KEY_LIST_BYTES + 1];
        assert!(fetch(&mut s, 0, &ok(&big, None, None)).is_err());
        assert!(s.keys().is_none());
    }

    #[test]
    fn an_outage_keeps_the_list_until_max_stale_then_503_then_recovers() {
        let mut s = state();
        fetch(&mut s, 0, &ok(&list(&[("ci", 1)]), None, None)).unwrap();
        // the refreshes from 30 on fail; retries back off 2, 4, 8, 16, 30, 30 ...
        let mut now = 30;
        let mut delays = Vec::new();
        while now < 700 {
            assert!(s.poll(now).is_some());
            s.on_failure(now);
            let next = s.next_wakeup().unwrap();
            delays.push(next - now);
            now = next;
        }
        assert_eq!(delays.get(..6), Some(&[2, 4, 8, 16, 30, 30][..]));
        assert_eq!(verdict(&s, 1, 599), Ok("ci".into()), "the last good list");
        assert_eq!(verdict(&s, 1, 600), Err(Reason::ApiKeysUnavailable));
        let e = s.usable(600).unwrap_err();
        assert!(e.message().contains("600 s"), "{}", e.message());
        // a lost request counts as a failure too
        let req = s.poll(now).unwrap();
        assert!(s.poll(now + IN_FLIGHT_TIMEOUT_SECONDS).is_none());
        assert!(s
            .on_response(
                &req,
                &ok(b"{}", None, None),
                now + IN_FLIGHT_TIMEOUT_SECONDS
            )
            .is_err());
        now = s.next_wakeup().unwrap();
        // back: the next fetch recovers, the backoff resets
        fetch(&mut s, now, &ok(&list(&[("ci", 1)]), None, None)).unwrap();
        assert_eq!(verdict(&s, 1, now), Ok("ci".into()));
        assert_eq!(s.consecutive_failures(), 0);
        assert_eq!(s.next_wakeup(), Some(now + 30));
    }

    #[test]
    fn restored_lists_are_shared_and_only_move_freshness_forward() {
        let mut fetcher = state();
        fetch(
            &mut fetcher,
            100,
            &ok(&list(&[("ci", 1)]), None, Some("\"a\"")),
        )
        .unwrap();
        let mut other = state();
        let raw = fetcher.raw().unwrap().to_vec();
        assert_eq!(other.restore(&raw, 100), Ok(true));
        assert_eq!(verdict(&other, 1, 100), Ok("ci".into()));
        assert_eq!(
            other.restore(&raw, 130),
            Ok(false),
            "same list, newer confirmation"
        );
        assert_eq!(other.confirmed_at(), Some(130));
        assert_eq!(other.restore(&raw, 50), Ok(false));
        assert_eq!(other.confirmed_at(), Some(130));
        assert!(other.restore(b"garbage", 200).is_err());
        assert_eq!(other.confirmed_at(), Some(130));
        assert_eq!(verdict(&other, 1, 729), Ok("ci".into()));
        assert_eq!(verdict(&other, 1, 730), Err(Reason::ApiKeysUnavailable));
        // the schedule is its own: a restored list is no reason not to fetch
        assert_eq!(other.poll(0).unwrap().if_none_match, None);
    }

    #[test]
    fn lists_are_checked_with_the_inline_keys_and_the_pepper() {
        // a name or hash the inline keys hold is refused (the whole list)
        let mut s = config(&[("break-glass", 9)])
            .compile()
            .unwrap()
            .remote_list()
            .unwrap();
        let e = fetch(
            &mut s,
            0,
            &ok(&list(&[("ci", 1), ("break-glass", 2)]), None, None),
        )
        .unwrap_err();
        assert!(e.message().contains("keys[1].name"), "{}", e.message());
        let now = s.next_wakeup().unwrap();
        let e = fetch(&mut s, now, &ok(&list(&[("other", 9)]), None, None)).unwrap_err();
        assert!(e.message().contains("already used by key \"break-glass\""));
        let now = s.next_wakeup().unwrap();
        fetch(&mut s, now, &ok(&list(&[("ci", 1)]), None, None)).unwrap();
        assert_eq!(verdict(&s, 9, now), Ok("break-glass".into()), "the union");
        assert_eq!(verdict(&s, 1, now), Ok("ci".into()));
        assert_eq!(s.listed(), 1);
        // with a pepper, hmac hashes only
        let pepper = crate::b64::encode([7u8; 32]);
        let cfg = ApiKeysConfig {
            pepper: Some(crate::keyring::Secret::new(pepper)),
            keys: Vec::new(),
            ..config(&[])
        };
        let mut s = cfg.compile().unwrap().remote_list().unwrap();
        assert!(fetch(&mut s, 0, &ok(&list(&[("ci", 1)]), None, None)).is_err());
        let now = s.next_wakeup().unwrap();
        let good = format!(
            r#"{{"keys":[{{"name":"ci","hash":"{}"}}]}}"#,
            hash(&key(1), Some(&[7u8; 32]))
        );
        fetch(&mut s, now, &ok(good.as_bytes(), None, None)).unwrap();
        assert_eq!(verdict(&s, 1, now), Ok("ci".into()));
    }

    #[test]
    fn config_is_checked_with_paths() {
        let paths = |r: RemoteKeyList| -> Vec<String> {
            let cfg = ApiKeysConfig {
                remote: Some(r),
                ..ApiKeysConfig::default()
            };
            cfg.compile()
                .unwrap_err()
                .into_iter()
                .map(|e| e.path().to_string())
                .collect()
        };
        assert_eq!(
            paths(RemoteKeyList::at("http://keys.example/k")),
            ["remote.url"]
        );
        assert_eq!(
            paths(RemoteKeyList {
                refresh_interval_seconds: 1000,
                max_stale_seconds: 300,
                cluster: Some(String::new()),
                fetch_timeout_ms: 1,
                ..RemoteKeyList::at(URL)
            }),
            [
                "remote.refresh_interval_seconds",
                "remote.cluster",
                "remote.fetch_timeout_ms",
                "remote.max_stale_seconds"
            ]
        );
        assert_eq!(
            paths(RemoteKeyList {
                max_stale_seconds: 300,
                ..RemoteKeyList::at(URL)
            }),
            ["remote.max_stale_seconds"]
        );
        let parsed: RemoteKeyList =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:9/keys.json"}"#).unwrap();
        assert_eq!(parsed, RemoteKeyList::at("http://127.0.0.1:9/keys.json"));
        assert_eq!(parsed.refresh_interval_seconds, 30);
        assert!(serde_json::from_str::<RemoteKeyList>(r#"{"uri":"https://a.example/k"}"#).is_err());
    }
}
