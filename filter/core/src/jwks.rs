//! Remote key sets and their refresh, as a sans-IO state machine the host drives.
//!
//! The host (the Envoy filter's root context, the edge worker) loops:
//! 1. [`JwksState::poll`] says what to GET now, if anything (the OIDC discovery document first
//!    when the source is an issuer, then the JWKS);
//! 2. the host performs the request and reports [`JwksState::on_response`] (any HTTP status) or
//!    [`JwksState::on_failure`] (no response: connect error, timeout);
//! 3. the host sleeps until [`JwksState::next_wakeup`] and polls again.
//!
//! The last good key set is kept through outages, error statuses, garbage and empty sets.
//! Refresh follows `Cache-Control: max-age`, clamped to the configured bounds; failures back
//! off exponentially up to a cap. A token naming an unknown `kid` may pull a refetch forward
//! ([`JwksState::on_unknown_kid`]), rate-limited so forged kids cannot hammer the IdP.
//!
//! Sharing across VMs: the state keeps the raw bytes of the last good JWKS
//! ([`JwksState::raw_keys`], bumped [`JwksState::generation`]); other VMs rebuild the same
//! [`KeySet`] with [`KeySet::parse_jwks`], and a host with a persistent cache can seed a fresh
//! state with [`JwksState::restore`].

use serde_json::Value;

use crate::error::{ConfigError, Error, Problems, Reason};
use crate::json;
use crate::jwk::{KeySet, MAX_JWKS_BYTES};
pub use crate::refresh::{
    authority_and_path, refresh_after, FetchKind, FetchRequest, IN_FLIGHT_TIMEOUT_SECONDS,
};
use crate::refresh::{check_status, check_transport, check_url, Bounds, Response, Schedule};
use crate::UnixTime;

/// After this many consecutive failures of a discovered `jwks_uri`, discovery is redone.
pub const REDISCOVER_AFTER_FAILURES: u32 = 3;
/// Upper bound on a discovery document's size.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

fn default_refresh_min() -> u64 {
    60
}
fn default_refresh_max() -> u64 {
    86_400
}
fn default_refresh_default() -> u64 {
    600
}
/// jose's `cooldownDuration`: an IdP that rotates right after a fetch is followed within 30 s.
pub const DEFAULT_UNKNOWN_KID_INTERVAL_SECONDS: u64 = 30;

fn default_unknown_kid_interval() -> u64 {
    DEFAULT_UNKNOWN_KID_INTERVAL_SECONDS
}
fn default_retry_initial() -> u64 {
    5
}
fn default_retry_max() -> u64 {
    300
}

/// Where a provider's signing keys are fetched from, and how often.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JwksSource {
    /// URL of the provider's JWKS document (`https://`; `http://` only for localhost).
    /// Give this or `oidc_issuer`, not both.
    pub jwks_uri: Option<String>,
    /// OIDC issuer URL: its discovery document `{issuer}/.well-known/openid-configuration`
    /// names the JWKS. The document's `issuer` must equal this value exactly.
    pub oidc_issuer: Option<String>,
    /// Shortest time between two refreshes, in seconds (a lower `Cache-Control: max-age` is raised to it).
    #[serde(default = "default_refresh_min")]
    pub refresh_min_seconds: u64,
    /// Longest time between two refreshes, in seconds (a higher `max-age` is lowered to it).
    #[serde(default = "default_refresh_max")]
    pub refresh_max_seconds: u64,
    /// Time between refreshes when the response has no usable `max-age` (or says `no-store`/`no-cache`).
    #[serde(default = "default_refresh_default")]
    pub refresh_default_seconds: u64,
    /// A token with an unknown `kid` triggers a refetch when the last fetch attempt (of any
    /// kind, failed ones included) is at least this many seconds old. Default 30 (jose's
    /// cooldown): a key the IdP rotates in is accepted at most 30 s after it is published.
    #[serde(default = "default_unknown_kid_interval")]
    pub unknown_kid_min_interval_seconds: u64,
    /// First retry delay after a failed fetch, in seconds; doubled on each further failure.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_seconds: u64,
    /// Cap on the retry delay, in seconds.
    #[serde(default = "default_retry_max")]
    pub retry_max_seconds: u64,
    /// Envoy only: the cluster that reaches the IdP (`dispatch_http_call` needs one). Other
    /// hosts fetch the URL directly and ignore it.
    pub cluster: Option<String>,
    /// How long one fetch may take, in milliseconds.
    #[serde(default = "default_fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
    /// How long a request that needs this key set waits for its first fetch before it is
    /// refused with 503 `keys_unavailable` (fail closed), in milliseconds.
    #[serde(default = "default_wait_for_keys_ms")]
    pub wait_for_keys_ms: u64,
}

fn default_fetch_timeout_ms() -> u64 {
    5_000
}

fn default_wait_for_keys_ms() -> u64 {
    3_000
}

impl Default for JwksSource {
    fn default() -> Self {
        JwksSource {
            jwks_uri: None,
            oidc_issuer: None,
            refresh_min_seconds: default_refresh_min(),
            refresh_max_seconds: default_refresh_max(),
            refresh_default_seconds: default_refresh_default(),
            unknown_kid_min_interval_seconds: default_unknown_kid_interval(),
            retry_initial_seconds: default_retry_initial(),
            retry_max_seconds: default_retry_max(),
            cluster: None,
            fetch_timeout_ms: default_fetch_timeout_ms(),
            wait_for_keys_ms: default_wait_for_keys_ms(),
        }
    }
}

/// A checked [`JwksSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledJwksSource {
    origin: Origin,
    bounds: Bounds,
    unknown_kid_interval: u64,
    cluster: Option<String>,
    fetch_timeout_ms: u64,
    wait_for_keys_ms: u64,
}

impl CompiledJwksSource {
    /// The Envoy cluster that reaches the IdP, if configured.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// How long one fetch may take, in milliseconds.
    pub fn fetch_timeout_ms(&self) -> u64 {
        self.fetch_timeout_ms
    }

    /// How long a request waits for the first key set, in milliseconds.
    pub fn wait_for_keys_ms(&self) -> u64 {
        self.wait_for_keys_ms
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Jwks(String),
    Discovery { issuer: String, url: String },
}

impl JwksSource {
    /// Checks the source: exactly one of `jwks_uri` / `oidc_issuer`, well-formed URLs, and
    /// consistent bounds. Every problem is reported.
    pub fn compile(&self) -> Result<CompiledJwksSource, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let origin = match (&self.jwks_uri, &self.oidc_issuer) {
            (Some(u), None) => match check_url(u) {
                Ok(()) => Some(Origin::Jwks(u.clone())),
                Err(m) => {
                    errors.push(ConfigError::new("jwks_uri", m));
                    None
                }
            },
            (None, Some(iss)) => match check_url(iss) {
                Ok(()) if iss.contains('?') => {
                    errors.push(ConfigError::new(
                        "oidc_issuer",
                        "an issuer URL has no query part; remove everything from '?'",
                    ));
                    None
                }
                Ok(()) => Some(Origin::Discovery {
                    issuer: iss.clone(),
                    url: format!(
                        "{}/.well-known/openid-configuration",
                        iss.trim_end_matches('/')
                    ),
                }),
                Err(m) => {
                    errors.push(ConfigError::new("oidc_issuer", m));
                    None
                }
            },
            (Some(_), Some(_)) => {
                errors.push(ConfigError::new(
                    "jwks_uri",
                    "give either jwks_uri or oidc_issuer, not both",
                ));
                None
            }
            (None, None) => {
                errors.push(ConfigError::new(
                    "jwks_uri",
                    "missing: give jwks_uri (the JWKS URL) or oidc_issuer (to use OIDC discovery)",
                ));
                None
            }
        };
        let bounds = Bounds {
            min: self.refresh_min_seconds,
            max: self.refresh_max_seconds,
            default: self.refresh_default_seconds,
            retry_initial: self.retry_initial_seconds,
            retry_max: self.retry_max_seconds,
        };
        bounds.check(&mut errors, "refresh_default_seconds");
        errors.refuse_if(
            self.unknown_kid_min_interval_seconds == 0,
            "unknown_kid_min_interval_seconds",
            "must be at least 1, or any token with a made-up kid makes the gateway fetch",
        );
        check_transport(&mut errors, self.cluster.as_deref(), self.fetch_timeout_ms);
        errors.refuse_if(
            self.wait_for_keys_ms > 30_000,
            "wait_for_keys_ms",
            "at most 30000: requests should not hang for long before a 503",
        );
        match origin {
            Some(origin) if errors.is_empty() => Ok(CompiledJwksSource {
                origin,
                bounds,
                unknown_kid_interval: self.unknown_kid_min_interval_seconds,
                cluster: self.cluster.clone(),
                fetch_timeout_ms: self.fetch_timeout_ms,
                wait_for_keys_ms: self.wait_for_keys_ms,
            }),
            _ => Err(errors),
        }
    }
}

/// The refresh state of one remote key set.
#[derive(Debug, Clone)]
pub struct JwksState {
    src: CompiledJwksSource,
    /// Configured, or learnt from discovery.
    jwks_uri: Option<String>,
    keys: Option<KeySet>,
    raw: Option<Vec<u8>>,
    generation: u64,
    schedule: Schedule,
    last_unknown_kid_fetch: Option<UnixTime>,
    /// The discovery document last accepted (raw), for a login flow that shares it.
    discovery: Option<Vec<u8>>,
}

impl JwksState {
    /// A state with no keys yet; the first `poll` asks for a fetch at once.
    pub fn new(src: CompiledJwksSource) -> JwksState {
        let jwks_uri = match &src.origin {
            Origin::Jwks(u) => Some(u.clone()),
            Origin::Discovery { .. } => None,
        };
        JwksState {
            schedule: Schedule::new(src.bounds),
            src,
            jwks_uri,
            keys: None,
            raw: None,
            generation: 0,
            last_unknown_kid_fetch: None,
            discovery: None,
        }
    }

    /// What to GET now, if anything. While a request is outstanding nothing new is asked for
    /// (until [`IN_FLIGHT_TIMEOUT_SECONDS`], after which the request counts as failed).
    pub fn poll(&mut self, now: UnixTime) -> Option<FetchRequest> {
        let due = self.schedule.due(now);
        self.rediscover_if_failing();
        if !due {
            return None;
        }
        let (kind, url, max_body_bytes) = match (&self.jwks_uri, &self.src.origin) {
            (Some(u), _) => (FetchKind::Jwks, u.clone(), MAX_JWKS_BYTES),
            (None, Origin::Discovery { url, .. }) => {
                (FetchKind::Discovery, url.clone(), MAX_DISCOVERY_BYTES)
            }
            // Not reachable: a Jwks origin always has its jwks_uri.
            (None, Origin::Jwks(u)) => (FetchKind::Jwks, u.clone(), MAX_JWKS_BYTES),
        };
        Some(self.schedule.start(kind, url, max_body_bytes, now))
    }

    /// Reports the response to `req`. A refused response (bad status, garbage, empty set,
    /// issuer mismatch) keeps the last good keys, schedules a retry with backoff, and is
    /// returned as the error for the host to log. A response to a request that is no longer
    /// awaited is ignored (`Reason::Internal`).
    pub fn on_response(
        &mut self,
        req: &FetchRequest,
        status: u16,
        cache_control: Option<&str>,
        body: &[u8],
        now: UnixTime,
    ) -> Result<(), Error> {
        self.respond(req, &Response::new(status, cache_control, body), now)
    }

    /// [`JwksState::on_response`] with the whole [`Response`]: its `ETag` is kept and sent back
    /// as `If-None-Match`, and a `304` keeps the key set.
    pub fn respond(
        &mut self,
        req: &FetchRequest,
        resp: &Response<'_>,
        now: UnixTime,
    ) -> Result<(), Error> {
        self.schedule.take(req)?;
        let result = match req.kind {
            FetchKind::Discovery => self.accept_discovery(resp.status, resp.body, now),
            _ if Schedule::not_modified(req, resp) && self.keys.is_some() => {
                self.schedule.succeeded(now, resp.cache_control, resp.etag);
                Ok(())
            }
            _ => self.accept_jwks(resp, now),
        };
        if result.is_err() {
            self.schedule.failed(now);
            self.rediscover_if_failing();
        }
        result
    }

    /// Reports that the outstanding request got no response (connection error, timeout).
    pub fn on_failure(&mut self, now: UnixTime) {
        self.schedule.lost(now);
        self.rediscover_if_failing();
    }

    /// From when [`JwksState::on_unknown_kid`] pulls a refetch forward: `None` while keys were
    /// never loaded (the first fetch, and its wait, rule), else the end of
    /// `unknown_kid_min_interval_seconds` after the last fetch attempt of any kind (failed ones
    /// included) or the last early refetch scheduled. (A fetch in flight refuses the early one
    /// but is itself the refetch a host can wait for.)
    ///
    /// A failing IdP: its retries back off as usual, but an unknown `kid` may still pull one
    /// attempt forward once the interval has passed since the last attempt, so the IdP is asked
    /// at most once per interval on account of unknown kids, and a rotation that coincides with
    /// an outage is followed as soon as the IdP answers again, not after the full backoff.
    pub fn unknown_kid_refetch_from(&self) -> Option<UnixTime> {
        self.keys.as_ref()?;
        let last = self
            .schedule
            .last_attempt()
            .max(self.last_unknown_kid_fetch);
        Some(last.map_or(0, |l| l.saturating_add(self.src.unknown_kid_interval)))
    }

    /// A token named a `kid` the current set lacks: pulls the next fetch forward to now if
    /// allowed. True when a refetch is scheduled. Refused (false) while keys were never
    /// loaded or a fetch is outstanding, and within `unknown_kid_min_interval_seconds` of the
    /// last fetch attempt (failed ones included) or the last such refetch.
    pub fn on_unknown_kid(&mut self, now: UnixTime) -> bool {
        if self.schedule.fetching() {
            return false;
        }
        match self.unknown_kid_refetch_from() {
            Some(from) if now >= from => {}
            _ => return false,
        }
        self.last_unknown_kid_fetch = Some(now);
        self.schedule.pull_forward(now);
        true
    }

    /// True while a fetch is outstanding (a request that met an unknown `kid` meanwhile may
    /// wait for it instead of being refused: it is likely the refetch for that very key).
    pub fn fetching(&self) -> bool {
        self.schedule.fetching()
    }

    /// The last good key set, if one was ever loaded.
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    /// The raw JWKS bytes the current key set was parsed from (to share with other VMs).
    pub fn raw_keys(&self) -> Option<&[u8]> {
        self.raw.as_deref()
    }

    /// Bumped each time a new key set is installed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the host should call `poll` next.
    pub fn next_wakeup(&self) -> Option<UnixTime> {
        self.schedule.next_wakeup()
    }

    /// When the last fetch was handed to the host (failed ones included).
    pub fn last_attempt(&self) -> Option<UnixTime> {
        self.schedule.last_attempt()
    }

    /// The URL of the OIDC discovery document this key set follows (`oidc_issuer`), if any.
    pub fn discovery_url(&self) -> Option<&str> {
        match &self.src.origin {
            Origin::Discovery { url, .. } => Some(url),
            Origin::Jwks(_) => None,
        }
    }

    /// The discovery document last accepted (its issuer checked, its `jwks_uri` usable), raw,
    /// so the login flow uses the same document instead of fetching its own.
    pub fn discovery_document(&self) -> Option<&[u8]> {
        self.discovery.as_deref()
    }

    /// When the current key set was fetched (or confirmed unchanged).
    pub fn last_success(&self) -> Option<UnixTime> {
        self.schedule.last_success()
    }

    /// Failed fetches since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.schedule.failures()
    }

    /// The JWKS URL in use (configured, or learnt from discovery).
    pub fn jwks_uri(&self) -> Option<&str> {
        self.jwks_uri.as_deref()
    }

    /// Installs keys from a cache (e.g. raw bytes another VM or a previous run stored) without
    /// changing the fetch schedule. An empty set is refused.
    pub fn restore(&mut self, raw: &[u8]) -> Result<(), Vec<Error>> {
        let set = KeySet::parse_jwks(raw)?;
        if set.is_empty() {
            return Err(vec![empty_set()]);
        }
        self.install(set, raw);
        // Not the document our ETag names: the next fetch asks for the whole set.
        self.schedule.forget_etag();
        Ok(())
    }

    fn install(&mut self, set: KeySet, raw: &[u8]) {
        self.keys = Some(set);
        self.raw = Some(raw.to_vec());
        self.generation = self.generation.wrapping_add(1);
    }

    /// After [`REDISCOVER_AFTER_FAILURES`] failures, a discovered URL may have moved: look it
    /// up again on the next attempt.
    fn rediscover_if_failing(&mut self) {
        if matches!(self.src.origin, Origin::Discovery { .. })
            && self.schedule.failures() >= REDISCOVER_AFTER_FAILURES
        {
            self.jwks_uri = None;
        }
    }

    fn accept_discovery(&mut self, status: u16, body: &[u8], now: UnixTime) -> Result<(), Error> {
        let Origin::Discovery { issuer, .. } = &self.src.origin else {
            return Err(Error::new(
                Reason::Internal,
                "discovery response without discovery",
            ));
        };
        check_status("the OIDC discovery endpoint", status)?;
        if body.len() > MAX_DISCOVERY_BYTES {
            return Err(Error::new(
                Reason::KeysUnavailable,
                format!("the discovery document is larger than {MAX_DISCOVERY_BYTES} bytes"),
            ));
        }
        let doc = json::parse_object(
            body,
            json::DOCUMENT_MAX_DEPTH,
            Reason::KeysUnavailable,
            "discovery document",
        )?;
        match doc.get("issuer") {
            Some(Value::String(s)) if s == issuer => {}
            _ => {
                return Err(Error::new(
                    Reason::ProviderMismatch,
                    format!(
                        "the discovery document's issuer is not exactly {issuer:?}; \
                         configure oidc_issuer as the IdP spells it (mind the trailing slash)"
                    ),
                ))
            }
        }
        let uri = match doc.get("jwks_uri") {
            Some(Value::String(u)) => u,
            _ => {
                return Err(Error::new(
                    Reason::KeysUnavailable,
                    "the discovery document has no jwks_uri",
                ))
            }
        };
        check_url(uri).map_err(|m| {
            Error::new(
                Reason::KeysUnavailable,
                format!("the discovered jwks_uri: {m}"),
            )
        })?;
        self.jwks_uri = Some(uri.clone());
        self.discovery = Some(body.to_vec());
        self.schedule.progressed(now);
        Ok(())
    }

    fn accept_jwks(&mut self, resp: &Response<'_>, now: UnixTime) -> Result<(), Error> {
        check_status("the JWKS endpoint", resp.status)?;
        let set = KeySet::parse_jwks(resp.body).map_err(|errs| {
            let more = errs.len().saturating_sub(1);
            match errs.into_iter().next() {
                Some(first) if more > 0 => Error::new(
                    first.reason(),
                    format!("{} (and {more} more problems)", first.message()),
                ),
                Some(first) => first,
                None => Error::new(Reason::MalformedKey, "the JWKS could not be parsed"),
            }
        })?;
        if set.is_empty() {
            return Err(empty_set());
        }
        self.install(set, resp.body);
        self.schedule.succeeded(now, resp.cache_control, resp.etag);
        Ok(())
    }
}

fn empty_set() -> Error {
    Error::new(
        Reason::KeysUnavailable,
        "the JWKS holds no usable signing key; keeping the previous set",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_keys;

    const URI: &str = "https://idp.example/keys";
    const ISS: &str = "https://idp.example/tenant/";

    fn src() -> JwksSource {
        JwksSource {
            jwks_uri: Some(URI.into()),
            ..JwksSource::default()
        }
    }

    fn state() -> JwksState {
        JwksState::new(src().compile().unwrap())
    }

    fn jwks(kids: &[&str]) -> Vec<u8> {
        let keys: Vec<String> = kids.iter().map(|k| test_keys::p256_jwk(k)).collect();
        format!(r#"{{"keys":[{}]}}"#, keys.join(",")).into_bytes()
    }

    fn kids(s: &JwksState) -> Vec<String> {
        s.keys().unwrap().kids().map(str::to_owned).collect()
    }

    /// Polls at `now`, answers 200 with `body`.
    fn fetch(s: &mut JwksState, now: u64, cc: Option<&str>, body: &[u8]) -> Result<(), Error> {
        let req = s.poll(now).expect("a fetch is due");
        assert_eq!(req.kind, FetchKind::Jwks);
        s.on_response(&req, 200, cc, body, now)
    }

    #[test]
    fn first_fetch_then_refresh_per_default() {
        let mut s = state();
        assert!(s.keys().is_none());
        assert_eq!(s.next_wakeup(), Some(0));
        let req = s.poll(1000).unwrap();
        assert_eq!(req.url, URI);
        assert_eq!(req.authority(), "idp.example");
        assert_eq!(req.path(), "/keys");
        assert!(req.is_https());
        // nothing new while in flight
        assert!(s.poll(1001).is_none());
        assert_eq!(s.next_wakeup(), Some(1000 + IN_FLIGHT_TIMEOUT_SECONDS));
        s.on_response(&req, 200, None, &jwks(&["a"]), 1002).unwrap();
        assert_eq!(kids(&s), ["a"]);
        assert_eq!(s.generation(), 1);
        assert_eq!(s.raw_keys().unwrap(), jwks(&["a"]).as_slice());
        assert_eq!(s.last_success(), Some(1002));
        assert_eq!(s.next_wakeup(), Some(1002 + 600));
        assert!(s.poll(1601).is_none());
        assert!(s.poll(1602).is_some());
    }

    #[test]
    fn max_age_is_clamped() {
        for (cc, ttl) in [
            (Some("max-age=3600"), 3600),
            (Some("public, max-age=7200, must-revalidate"), 7200),
            (Some("MAX-AGE = 120"), 120),
            (Some("max-age=\"300\""), 300),
            (Some("max-age=5"), 60),
            (Some("max-age=0"), 60),
            (Some("max-age=999999999"), 86_400),
            (Some("max-age=99999999999999999999999999"), 86_400),
            (Some("max-age=-5"), 600),
            (Some("max-age=abc"), 600),
            (Some("max-age="), 600),
            (Some("no-store"), 600),
            (Some("max-age=3600, no-store"), 600),
            (Some("no-cache, max-age=3600"), 600),
            (Some("private"), 600),
            (None, 600),
        ] {
            assert_eq!(refresh_after(cc, 600, 60, 86_400), ttl, "{cc:?}");
            let mut s = state();
            fetch(&mut s, 10, cc, &jwks(&["a"])).unwrap();
            assert_eq!(s.next_wakeup(), Some(10 + ttl), "{cc:?}");
        }
    }

    #[test]
    fn outage_keeps_last_good_and_backs_off() {
        let mut s = state();
        fetch(&mut s, 0, Some("max-age=100"), &jwks(&["a"])).unwrap();
        // transport failures: 5, 10, 20, 40 ... capped at 300
        let mut now = 100;
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert!(s.poll(now).is_some());
            s.on_failure(now);
            let next = s.next_wakeup().unwrap();
            delays.push(next - now);
            assert!(s.poll(next - 1).is_none());
            now = next;
        }
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(s.consecutive_failures(), 8);
        assert_eq!(kids(&s), ["a"]);
        // HTTP errors count as failures too
        let req = s.poll(now).unwrap();
        let e = s.on_response(&req, 503, None, b"down", now).unwrap_err();
        assert_eq!(e.reason(), Reason::KeysUnavailable);
        assert!(e.message().contains("503"));
        assert_eq!(kids(&s), ["a"]);
        // recovery resets the backoff
        now += 300;
        fetch(&mut s, now, None, &jwks(&["a"])).unwrap();
        assert_eq!(s.consecutive_failures(), 0);
        assert_eq!(s.next_wakeup(), Some(now + 600));
    }

    #[test]
    fn garbage_and_empty_sets_keep_last_good() {
        let mut s = state();
        fetch(&mut s, 0, None, &jwks(&["a"])).unwrap();
        let mut now = 600;
        for (body, reason) in [
            (&b"<html>oops</html>"[..], Reason::MalformedKey),
            (&br#"{"keys":[]}"#[..], Reason::KeysUnavailable),
            (
                &br#"{"keys":[{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}]}"#[..],
                Reason::KeysUnavailable,
            ),
            (
                &br#"{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}"#[..],
                Reason::WeakKey,
            ),
            (&br#"{"keys":[1,2]}"#[..], Reason::MalformedKey),
        ] {
            let e = fetch(&mut s, now, None, body).unwrap_err();
            assert_eq!(e.reason(), reason, "{}", String::from_utf8_lossy(body));
            assert_eq!(kids(&s), ["a"]);
            assert_eq!(s.generation(), 1);
            assert_eq!(s.raw_keys().unwrap(), jwks(&["a"]).as_slice());
            now = s.next_wakeup().unwrap();
        }
        let e = fetch(&mut s, now, None, br#"{"keys":[1,2]}"#).unwrap_err();
        assert!(e.message().contains("and 1 more"), "{}", e.message());
        // never loaded: still no keys after garbage
        let mut s = state();
        assert!(fetch(&mut s, 0, None, b"{}").is_err());
        assert!(s.keys().is_none());
    }

    #[test]
    fn rotation_shows_up_after_refetch() {
        let mut s = state();
        fetch(&mut s, 0, Some("max-age=300"), &jwks(&["old"])).unwrap();
        assert!(s.poll(299).is_none());
        fetch(&mut s, 300, None, &jwks(&["old", "new"])).unwrap();
        assert_eq!(kids(&s), ["old", "new"]);
        fetch(&mut s, 900, None, &jwks(&["new"])).unwrap();
        assert_eq!(kids(&s), ["new"]);
        assert_eq!(s.generation(), 3);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let mut s = state();
        assert!(
            !s.on_unknown_kid(0),
            "no keys yet: the first fetch is pending anyway"
        );
        assert_eq!(s.unknown_kid_refetch_from(), None);
        fetch(&mut s, 0, Some("max-age=3600"), &jwks(&["a"])).unwrap();
        // what a host may ask before it asks: the interval (default 30 s) after the last fetch
        assert_eq!(s.unknown_kid_refetch_from(), Some(30));
        // within the interval of the last fetch
        assert!(!s.on_unknown_kid(29));
        assert!(s.poll(29).is_none());
        // allowed: pulls the fetch forward to now
        assert!(s.on_unknown_kid(30));
        assert_eq!(s.next_wakeup(), Some(30));
        assert!(!s.fetching());
        // a refetch that was scheduled but not polled yet still blocks a second one
        assert!(!s.on_unknown_kid(30));
        let req = s.poll(31).unwrap();
        // while in flight: no, but the host can see a fetch is outstanding and wait for it
        assert!(!s.on_unknown_kid(61));
        assert!(s.fetching());
        s.on_response(&req, 200, Some("max-age=3600"), &jwks(&["a", "b"]), 33)
            .unwrap();
        assert!(!s.fetching());
        assert_eq!(kids(&s), ["a", "b"]);
        // a forged kid right after: refused until the interval after the last attempt passes
        assert_eq!(s.last_attempt(), Some(31));
        assert!(!s.on_unknown_kid(34));
        assert!(!s.on_unknown_kid(60));
        assert_eq!(s.unknown_kid_refetch_from(), Some(61));
        assert!(s.on_unknown_kid(61));
        assert_eq!(s.unknown_kid_refetch_from(), Some(91));
    }

    #[test]
    fn a_rotation_right_after_the_first_fetch_is_followed_within_30_s() {
        // The default, with nothing configured: jose's 30 s cooldown, not 60.
        assert_eq!(JwksSource::default().unknown_kid_min_interval_seconds, 30);
        let mut s = state();
        fetch(&mut s, 1000, None, &jwks(&["old"])).unwrap();
        // The IdP rotates 5 s after the first fetch; tokens with the new kid arrive at once.
        let mut now = 1005;
        while !s.on_unknown_kid(now) {
            now += 1;
        }
        assert_eq!(
            now, 1030,
            "the refetch is allowed 30 s after the first fetch"
        );
        fetch(&mut s, now, None, &jwks(&["old", "new"])).unwrap();
        assert_eq!(kids(&s), ["old", "new"]);
    }

    #[test]
    fn failed_attempts_count_and_a_failing_idp_is_asked_once_per_interval() {
        let mut s = state();
        fetch(&mut s, 0, Some("max-age=60"), &jwks(&["a"])).unwrap();
        // the regular refresh at 60 fails: that attempt starts the interval
        let req = s.poll(60).unwrap();
        s.on_response(&req, 503, None, b"down", 60).unwrap_err();
        assert_eq!(s.last_attempt(), Some(60));
        assert_eq!(s.unknown_kid_refetch_from(), Some(90));
        // backoff retries (5, 10, 20 s) are attempts too
        let mut now = 60;
        for _ in 0..3 {
            now = s.next_wakeup().unwrap();
            let req = s.poll(now).unwrap();
            s.on_response(&req, 503, None, b"down", now).unwrap_err();
        }
        assert_eq!(now, 95);
        assert_eq!(s.unknown_kid_refetch_from(), Some(125));
        assert_eq!(s.next_wakeup(), Some(95 + 40), "the backoff continues");
        // an unknown kid: refused within 30 s of the last (failed) attempt
        assert!(!s.on_unknown_kid(124));
        assert!(s.poll(124).is_none());
        // then it pulls one attempt forward of the 40 s backoff (the IdP may be back, with
        // the new key), and only one per interval
        assert!(s.on_unknown_kid(125));
        let req = s.poll(125).unwrap();
        s.on_failure(126);
        assert_eq!(kids(&s), ["a"], "the last good keys stay");
        assert!(!s.on_unknown_kid(154));
        assert!(s.on_unknown_kid(155));
        let req2 = s.poll(155).unwrap();
        assert_ne!(req, req2);
        s.on_response(&req2, 200, None, &jwks(&["a", "b"]), 155)
            .unwrap();
        assert_eq!(kids(&s), ["a", "b"]);
        assert_eq!(s.consecutive_failures(), 0);
    }

    #[test]
    fn stale_and_timed_out_requests() {
        let mut s = state();
        let r1 = s.poll(0).unwrap();
        // lost: after the in-flight timeout it counts as a failure and is retried after backoff
        assert!(s.poll(IN_FLIGHT_TIMEOUT_SECONDS - 1).is_none());
        assert!(s.poll(IN_FLIGHT_TIMEOUT_SECONDS).is_none());
        assert_eq!(s.consecutive_failures(), 1);
        let r2 = s.poll(IN_FLIGHT_TIMEOUT_SECONDS + 5).unwrap();
        assert_ne!(r1, r2);
        // the late answer to r1 is ignored
        let e = s
            .on_response(&r1, 200, None, &jwks(&["a"]), 70)
            .unwrap_err();
        assert_eq!(e.reason(), Reason::Internal);
        assert!(s.keys().is_none());
        s.on_response(&r2, 200, None, &jwks(&["b"]), 70).unwrap();
        assert_eq!(kids(&s), ["b"]);
        // answering twice is ignored too
        assert!(s.on_response(&r2, 200, None, &jwks(&["c"]), 71).is_err());
        assert_eq!(kids(&s), ["b"]);
    }

    fn discovery_state() -> JwksState {
        let src = JwksSource {
            oidc_issuer: Some(ISS.into()),
            ..JwksSource::default()
        };
        JwksState::new(src.compile().unwrap())
    }

    fn discovery_doc(issuer: &str, jwks_uri: &str) -> Vec<u8> {
        format!(r#"{{"issuer":"{issuer}","jwks_uri":"{jwks_uri}","id_token_signing_alg_values_supported":["RS256"]}}"#)
            .into_bytes()
    }

    #[test]
    fn discovery_then_jwks() {
        let mut s = discovery_state();
        let req = s.poll(0).unwrap();
        assert_eq!(req.kind, FetchKind::Discovery);
        assert_eq!(
            req.url,
            "https://idp.example/tenant/.well-known/openid-configuration"
        );
        assert_eq!(req.path(), "/tenant/.well-known/openid-configuration");
        s.on_response(
            &req,
            200,
            None,
            &discovery_doc(ISS, "https://keys.example:8443/k?v=2"),
            1,
        )
        .unwrap();
        assert_eq!(s.jwks_uri(), Some("https://keys.example:8443/k?v=2"));
        let req = s.poll(1).unwrap();
        assert_eq!(req.kind, FetchKind::Jwks);
        assert_eq!(req.authority(), "keys.example:8443");
        assert_eq!(req.path(), "/k?v=2");
        s.on_response(&req, 200, None, &jwks(&["a"]), 2).unwrap();
        assert_eq!(kids(&s), ["a"]);
        // refreshes go straight to the JWKS
        assert_eq!(s.poll(602).unwrap().kind, FetchKind::Jwks);
    }

    #[test]
    fn discovery_issuer_mismatch_is_refused() {
        for (issuer, jwks_uri, reason) in [
            (
                "https://idp.example/tenant",
                "https://idp.example/keys",
                Reason::ProviderMismatch,
            ),
            (
                "https://evil.example/tenant/",
                "https://idp.example/keys",
                Reason::ProviderMismatch,
            ),
            (ISS, "http://keys.example/k", Reason::KeysUnavailable),
            (ISS, "not a url", Reason::KeysUnavailable),
        ] {
            let mut s = discovery_state();
            let req = s.poll(0).unwrap();
            let e = s
                .on_response(&req, 200, None, &discovery_doc(issuer, jwks_uri), 0)
                .unwrap_err();
            assert_eq!(e.reason(), reason, "{issuer} {jwks_uri}");
            assert!(s.jwks_uri().is_none());
            assert_eq!(s.poll(5).unwrap().kind, FetchKind::Discovery);
        }
        let mut s = discovery_state();
        let req = s.poll(0).unwrap();
        let e = s.on_response(
            &req,
            200,
            None,
            br#"{"issuer":"https://idp.example/tenant/"}"#,
            0,
        );
        assert_eq!(e.unwrap_err().reason(), Reason::KeysUnavailable);
        let req = s.poll(5).unwrap();
        let e = s.on_response(&req, 200, None, b"[]", 5);
        assert_eq!(e.unwrap_err().reason(), Reason::KeysUnavailable);
        let req = s.poll(15).unwrap();
        let e = s.on_response(&req, 404, None, b"", 15);
        assert_eq!(e.unwrap_err().reason(), Reason::KeysUnavailable);
    }

    #[test]
    fn repeated_jwks_failures_redo_discovery() {
        let mut s = discovery_state();
        let req = s.poll(0).unwrap();
        s.on_response(
            &req,
            200,
            None,
            &discovery_doc(ISS, "https://idp.example/keys"),
            0,
        )
        .unwrap();
        let mut now = 0;
        for _ in 0..REDISCOVER_AFTER_FAILURES {
            let req = s.poll(now).unwrap();
            assert_eq!(req.kind, FetchKind::Jwks);
            s.on_failure(now);
            now = s.next_wakeup().unwrap();
        }
        assert_eq!(s.poll(now).unwrap().kind, FetchKind::Discovery);
    }

    #[test]
    fn restore_installs_shared_bytes() {
        let mut s = state();
        s.restore(&jwks(&["x"])).unwrap();
        assert_eq!(kids(&s), ["x"]);
        assert_eq!(s.generation(), 1);
        assert_eq!(
            s.next_wakeup(),
            Some(0),
            "restoring does not postpone the fetch"
        );
        assert!(s.restore(br#"{"keys":[]}"#).is_err());
        assert!(s.restore(b"nope").is_err());
        assert_eq!(kids(&s), ["x"]);
        // the bytes a state shares rebuild the same set elsewhere
        let other = KeySet::parse_jwks(s.raw_keys().unwrap()).unwrap();
        assert_eq!(other.kids().collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn config_is_checked() {
        let paths = |src: JwksSource| -> Vec<String> {
            src.compile()
                .unwrap_err()
                .into_iter()
                .map(|e| e.path().to_string())
                .collect()
        };
        assert_eq!(paths(JwksSource::default()), ["jwks_uri"]);
        assert_eq!(
            paths(JwksSource {
                oidc_issuer: Some(ISS.into()),
                ..src()
            }),
            ["jwks_uri"]
        );
        for bad in [
            "http://idp.example/k",
            "http://localhost@idp.example/k",
            "http://127.0.0.1.nip.io/k",
            "ftp://idp.example/k",
            "https:///k",
            "https://user:pw@idp.example/k",
            "https://idp.example/k#frag",
            "https://idp.example/ k",
            "idp.example/k",
        ] {
            let e = paths(JwksSource {
                jwks_uri: Some(bad.into()),
                ..JwksSource::default()
            });
            assert_eq!(e, ["jwks_uri"], "{bad}");
        }
        // plain http for loopback hosts only, the same loopback as login and dev mode (127/8)
        for ok in [
            "http://localhost:8080/k",
            "http://127.0.0.1/k",
            "http://127.0.0.2:9000/k",
            "http://[::1]/k",
            "https://idp.example",
        ] {
            JwksSource {
                jwks_uri: Some(ok.into()),
                ..JwksSource::default()
            }
            .compile()
            .unwrap();
        }
        assert_eq!(
            paths(JwksSource {
                oidc_issuer: Some("https://idp.example/?x=1".into()),
                ..JwksSource::default()
            }),
            ["oidc_issuer"]
        );
        let e = paths(JwksSource {
            refresh_min_seconds: 0,
            refresh_max_seconds: 10,
            refresh_default_seconds: 20,
            unknown_kid_min_interval_seconds: 0,
            retry_initial_seconds: 0,
            retry_max_seconds: 0,
            ..src()
        });
        assert_eq!(
            e,
            [
                "refresh_min_seconds",
                "refresh_default_seconds",
                "retry_initial_seconds",
                "unknown_kid_min_interval_seconds"
            ]
        );
        let e = paths(JwksSource {
            refresh_min_seconds: 100,
            refresh_max_seconds: 50,
            retry_initial_seconds: 10,
            retry_max_seconds: 5,
            ..src()
        });
        assert_eq!(
            e,
            [
                "refresh_max_seconds",
                "refresh_default_seconds",
                "retry_max_seconds"
            ]
        );
        // serde: defaults and unknown fields
        let parsed: JwksSource =
            serde_json::from_str(r#"{"jwks_uri":"https://a.example/k"}"#).unwrap();
        assert_eq!(parsed, src().clone_with_uri("https://a.example/k"));
        assert!(
            serde_json::from_str::<JwksSource>(r#"{"jwks_url":"https://a.example/k"}"#).is_err()
        );
    }

    impl JwksSource {
        fn clone_with_uri(&self, u: &str) -> JwksSource {
            JwksSource {
                jwks_uri: Some(u.into()),
                ..self.clone()
            }
        }
    }
}
