//! What every remote document a host keeps fresh shares — a provider's JWKS
//! ([`crate::jwks::JwksState`]) and the API-key list ([`crate::keylist::KeyListState`]): the GET
//! a host performs ([`FetchRequest`]), its answer ([`Response`]), and the schedule
//! ([`Schedule`]): one request in flight at a time (taken as lost after
//! [`IN_FLIGHT_TIMEOUT_SECONDS`]), the next refresh after `Cache-Control: max-age` clamped to
//! the configured bounds, exponential backoff on failure, and conditional requests: the `ETag`
//! of the last good document goes out as `If-None-Match`, and a `304` confirms it.

use crate::error::{ConfigError, Error, Problems, Reason};
use crate::UnixTime;

/// A request that has not been answered after this long is taken as lost (the host should
/// report its own timeout sooner with `on_failure`).
pub const IN_FLIGHT_TIMEOUT_SECONDS: u64 = 60;

/// What a fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    /// The OIDC discovery document.
    Discovery,
    /// The JWKS document.
    Jwks,
    /// The API-key list (`api_keys.remote`).
    ApiKeys,
}

/// A GET the host should perform, then answer with `on_response` or `on_failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub kind: FetchKind,
    /// The absolute URL to GET.
    pub url: String,
    /// Responses longer than this are garbage anyway; the host may stop reading there.
    pub max_body_bytes: usize,
    /// The `ETag` of the document the state holds: the host sends it as `If-None-Match`, and
    /// a `304 Not Modified` answer keeps that document.
    pub if_none_match: Option<String>,
    id: u64,
}

/// The `host[:port]` and the path with query (`/` when empty) of an absolute URL: the
/// `:authority` and `:path` of a request to it (and the name of the Envoy cluster a host
/// sends it to by default).
pub fn authority_and_path(url: &str) -> (&str, &str) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = authority_of(rest);
    let path = rest.get(authority.len()..).unwrap_or("");
    (authority, if path.is_empty() { "/" } else { path })
}

pub(crate) fn authority_of(after_scheme: &str) -> &str {
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    after_scheme.get(..end).unwrap_or(after_scheme)
}

impl FetchRequest {
    /// `host[:port]` of the URL (for the `:authority` header / an Envoy cluster).
    pub fn authority(&self) -> &str {
        authority_and_path(&self.url).0
    }

    /// The path and query of the URL (`/` when empty), for the `:path` header.
    pub fn path(&self) -> &str {
        authority_and_path(&self.url).1
    }

    /// Whether the URL is `https://`.
    pub fn is_https(&self) -> bool {
        self.url.starts_with("https://")
    }
}

/// A host's answer to a [`FetchRequest`]: what the state machines read of an HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    /// The `Cache-Control` header, if any.
    pub cache_control: Option<&'a str>,
    /// The `ETag` header, if any.
    pub etag: Option<&'a str>,
    /// At most `max_body_bytes + 1` bytes of the body.
    pub body: &'a [u8],
}

impl<'a> Response<'a> {
    /// A `200`-style answer without `ETag`.
    pub fn new(status: u16, cache_control: Option<&'a str>, body: &'a [u8]) -> Self {
        Response {
            status,
            cache_control,
            etag: None,
            body,
        }
    }
}

/// Refresh and retry bounds, in seconds, as a source's config gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// A lower `max-age` is raised to this.
    pub min: u64,
    /// A higher `max-age` is lowered to this.
    pub max: u64,
    /// Without a usable `max-age`.
    pub default: u64,
    /// First retry delay after a failure; doubled on each further failure...
    pub retry_initial: u64,
    /// ...up to this.
    pub retry_max: u64,
}

impl Bounds {
    /// Records every inconsistency; `default_field` names the field that holds `default`.
    pub(crate) fn check(&self, errors: &mut Vec<ConfigError>, default_field: &str) {
        let (min, max) = (self.min, self.max);
        errors.refuse_if(min == 0, "refresh_min_seconds", "must be at least 1");
        errors.refuse_if(
            max < min,
            "refresh_max_seconds",
            "must not be below refresh_min_seconds",
        );
        errors.refuse_if(
            !(min..=max).contains(&self.default),
            default_field,
            "must lie between refresh_min_seconds and refresh_max_seconds",
        );
        errors.refuse_if(
            self.retry_initial == 0,
            "retry_initial_seconds",
            "must be at least 1",
        );
        errors.refuse_if(
            self.retry_max < self.retry_initial,
            "retry_max_seconds",
            "must not be below retry_initial_seconds",
        );
    }
}

/// Checks the host-facing settings of a remote source: the Envoy `cluster` name and
/// `fetch_timeout_ms`.
pub(crate) fn check_transport(
    errors: &mut Vec<ConfigError>,
    cluster: Option<&str>,
    fetch_timeout_ms: u64,
) {
    errors.refuse_if(
        cluster.is_some_and(|c| {
            c.is_empty() || c.len() > 128 || c.chars().any(|ch| ch.is_control() || ch == ' ')
        }),
        "cluster",
        "must be the name of an Envoy cluster",
    );
    errors.refuse_if(
        !(100..=60_000).contains(&fetch_timeout_ms),
        "fetch_timeout_ms",
        "must be between 100 and 60000",
    );
}

/// Accepts `https://host[:port]/...`, and `http://` for loopback hosts only. No userinfo, no
/// fragment, no whitespace or control characters.
pub(crate) fn check_url(u: &str) -> Result<(), String> {
    let rest = if let Some(r) = u.strip_prefix("https://") {
        r
    } else if let Some(r) = u.strip_prefix("http://") {
        if !crate::loopback::is_loopback_url(u) {
            return Err(format!(
                "{u:?} is plain http; use https (http is allowed for localhost only)"
            ));
        }
        r
    } else {
        return Err(format!("{u:?} is not an https:// URL"));
    };
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{u:?} contains whitespace or control characters"));
    }
    let authority = authority_of(rest);
    if authority.is_empty() || authority.starts_with(':') {
        return Err(format!("{u:?} has no host"));
    }
    if authority.contains('@') {
        return Err(format!(
            "{u:?} carries credentials (user@host); remove them"
        ));
    }
    if u.contains('#') {
        return Err(format!("{u:?} has a fragment (#...); remove it"));
    }
    Ok(())
}

/// The fetch schedule of one remote document.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    bounds: Bounds,
    in_flight: Option<(FetchRequest, UnixTime)>,
    next_fetch: UnixTime,
    failures: u32,
    last_success: Option<UnixTime>,
    /// When the last request was handed to the host (failed ones count too).
    last_attempt: Option<UnixTime>,
    /// The `ETag` of the document held, sent as `If-None-Match`.
    etag: Option<String>,
    next_id: u64,
}

impl Schedule {
    /// A schedule whose first fetch is due at once.
    pub(crate) fn new(bounds: Bounds) -> Schedule {
        Schedule {
            bounds,
            in_flight: None,
            next_fetch: 0,
            failures: 0,
            last_success: None,
            last_attempt: None,
            etag: None,
            next_id: 0,
        }
    }

    /// Whether a fetch is due now. A request outstanding since [`IN_FLIGHT_TIMEOUT_SECONDS`]
    /// counts as failed here (and the retry waits for its backoff).
    pub(crate) fn due(&mut self, now: UnixTime) -> bool {
        if let Some((_, since)) = &self.in_flight {
            if now < since.saturating_add(IN_FLIGHT_TIMEOUT_SECONDS) {
                return false;
            }
            self.in_flight = None;
            self.failed(now);
        }
        now >= self.next_fetch
    }

    /// Hands a request to the host (after [`Schedule::due`] said yes).
    pub(crate) fn start(
        &mut self,
        kind: FetchKind,
        url: String,
        max_body_bytes: usize,
        now: UnixTime,
    ) -> FetchRequest {
        self.next_id = self.next_id.wrapping_add(1);
        let req = FetchRequest {
            kind,
            url,
            max_body_bytes,
            if_none_match: if kind == FetchKind::Discovery {
                None
            } else {
                self.etag.clone()
            },
            id: self.next_id,
        };
        self.in_flight = Some((req.clone(), now));
        self.last_attempt = Some(now);
        req
    }

    /// Takes the answer to `req` off the books; a response to a request that is no longer
    /// awaited (timed out, answered before) is refused with `Reason::Internal`.
    pub(crate) fn take(&mut self, req: &FetchRequest) -> Result<(), Error> {
        match &self.in_flight {
            Some((cur, _)) if cur.id == req.id => {
                self.in_flight = None;
                Ok(())
            }
            _ => Err(Error::new(
                Reason::Internal,
                "ignored a response to a fetch that is no longer awaited",
            )),
        }
    }

    /// Whether `resp` is a `304` to a conditional `req`: the document held is current.
    pub(crate) fn not_modified(req: &FetchRequest, resp: &Response<'_>) -> bool {
        resp.status == 304 && req.if_none_match.is_some()
    }

    /// A document was accepted (or confirmed by a `304`): failures reset, the next refresh
    /// after `max-age` within bounds. `etag`: the response's (a `304` without one keeps the
    /// one held).
    pub(crate) fn succeeded(
        &mut self,
        now: UnixTime,
        cache_control: Option<&str>,
        etag: Option<&str>,
    ) {
        self.failures = 0;
        self.last_success = Some(now);
        if let Some(e) = etag.filter(|e| usable_etag(e)) {
            self.etag = Some(e.to_owned());
        }
        let b = &self.bounds;
        let ttl = refresh_after(cache_control, b.default, b.min, b.max);
        self.next_fetch = now.saturating_add(ttl);
    }

    /// A step towards the document (a discovery document named its URL): fetch on at once.
    pub(crate) fn progressed(&mut self, now: UnixTime) {
        self.failures = 0;
        self.next_fetch = now;
    }

    /// A fetch failed (no response, a refused one): retry after the backoff.
    pub(crate) fn failed(&mut self, now: UnixTime) {
        self.failures = self.failures.saturating_add(1);
        let doublings = self.failures.saturating_sub(1).min(32);
        let delay = self
            .bounds
            .retry_initial
            .saturating_mul(1u64 << doublings)
            .min(self.bounds.retry_max);
        self.next_fetch = now.saturating_add(delay);
    }

    /// The outstanding request got no response.
    pub(crate) fn lost(&mut self, now: UnixTime) {
        self.in_flight = None;
        self.failed(now);
    }

    /// Forgets the `ETag`: the document held did not come from this schedule's own fetch (it
    /// was restored from another VM's), so the next fetch is unconditional.
    pub(crate) fn forget_etag(&mut self) {
        self.etag = None;
    }

    /// Pulls the next fetch forward to `now`.
    pub(crate) fn pull_forward(&mut self, now: UnixTime) {
        self.next_fetch = self.next_fetch.min(now);
    }

    pub(crate) fn fetching(&self) -> bool {
        self.in_flight.is_some()
    }

    pub(crate) fn next_wakeup(&self) -> Option<UnixTime> {
        match &self.in_flight {
            Some((_, since)) => Some(since.saturating_add(IN_FLIGHT_TIMEOUT_SECONDS)),
            None => Some(self.next_fetch),
        }
    }

    pub(crate) fn last_attempt(&self) -> Option<UnixTime> {
        self.last_attempt
    }

    pub(crate) fn last_success(&self) -> Option<UnixTime> {
        self.last_success
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

/// An `ETag` worth sending back: visible ASCII, bounded (RFC 9110 8.8.3).
fn usable_etag(e: &str) -> bool {
    !e.is_empty() && e.len() <= 256 && e.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// The answer to a fetch as an error when its status is not `200`.
pub(crate) fn check_status(what: &str, status: u16) -> Result<(), Error> {
    if status == 200 {
        Ok(())
    } else {
        Err(Error::new(
            Reason::KeysUnavailable,
            format!("{what} answered HTTP {status}"),
        ))
    }
}

/// Seconds until the next refresh: `max-age` from `Cache-Control` clamped to `[min, max]`;
/// `default` when the header is absent, has no valid `max-age`, or says `no-store`/`no-cache`.
pub fn refresh_after(cache_control: Option<&str>, default: u64, min: u64, max: u64) -> u64 {
    let Some(cc) = cache_control else {
        return default;
    };
    let mut max_age = None;
    for directive in cc.split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return default;
        }
        if name.eq_ignore_ascii_case("max-age") && max_age.is_none() {
            let v = value.map(|v| {
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
            });
            max_age = v.and_then(parse_delta_seconds);
        }
    }
    match max_age {
        Some(age) => age.clamp(min, max),
        None => default,
    }
}

/// RFC 9111 §1.2.2 delta-seconds: digits only; too large saturates.
fn parse_delta_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_kept_sent_and_forgotten() {
        let mut s = Schedule::new(Bounds {
            min: 1,
            max: 100,
            default: 10,
            retry_initial: 1,
            retry_max: 8,
        });
        assert!(s.due(0));
        let req = s.start(FetchKind::ApiKeys, "https://k.example/l".into(), 10, 0);
        assert_eq!(req.if_none_match, None);
        s.take(&req).unwrap();
        s.succeeded(0, None, Some("\"v1\""));
        assert!(s.due(10));
        let req = s.start(FetchKind::ApiKeys, "https://k.example/l".into(), 10, 10);
        assert_eq!(req.if_none_match.as_deref(), Some("\"v1\""));
        assert!(Schedule::not_modified(&req, &Response::new(304, None, b"")));
        // a 304 without an ETag keeps the one held; garbage is not kept
        s.take(&req).unwrap();
        s.succeeded(10, None, Some("bad etag\n"));
        assert!(s.due(20));
        let req = s.start(FetchKind::Discovery, "https://k.example/d".into(), 10, 20);
        assert_eq!(req.if_none_match, None, "discovery is never conditional");
        s.lost(20);
        s.forget_etag();
        assert!(s.due(21));
        let req = s.start(FetchKind::ApiKeys, "https://k.example/l".into(), 10, 21);
        assert_eq!(req.if_none_match, None);
        assert!(!Schedule::not_modified(
            &req,
            &Response::new(304, None, b"")
        ));
        assert_eq!(s.take(&req), Ok(()));
        assert!(s.take(&req).is_err(), "answered twice");
    }
}
