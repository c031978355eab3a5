//! The counters both Envoy packagings report, by name and label, and which of them a verdict
//! counts. Each packaging implements [`Counters`] with its own metrics ABI:
//!
//! - proxy-wasm has no labels: a label is written into the name
//!   (`edgegate_denied.reason.bad_signature`) and Envoy's `stats_config.stats_tags` turns it back
//!   into one (`wasmcustom.` prefix);
//! - a dynamic module defines counters with label names and Envoy keeps the tags
//!   (`dynamicmodulescustom.` prefix).
//!
//! Either way `/stats/prometheus` shows `edgegate_denied{reason="bad_signature"}`.

use edgegate::{CredentialKind, Identity, LocalReply};

pub const ALLOWED: &str = "edgegate_allowed";
pub const DENIED: &str = "edgegate_denied";
pub const JWKS_FETCH_OK: &str = "edgegate_jwks_fetch_ok";
pub const JWKS_FETCH_FAILED: &str = "edgegate_jwks_fetch_failed";
/// Fetches of the API-key list (`api_keys.remote`) that brought or confirmed a list, and those
/// that failed or were refused (the last good list stays; see `edgegate_denied{reason="api_keys_unavailable"}`).
pub const API_KEYS_FETCH_OK: &str = "edgegate_api_keys_fetch_ok";
pub const API_KEYS_FETCH_FAILED: &str = "edgegate_api_keys_fetch_failed";
pub const CACHE_HIT: &str = "edgegate_cache_hit";
pub const CACHE_MISS: &str = "edgegate_cache_miss";
/// Answers of the OIDC login routes, by outcome (`ok`, `redirect`, `refused`, `error`).
pub const LOGIN: &str = "edgegate_login";
/// The label of [`LOGIN`].
pub const OUTCOME: &str = "outcome";

/// The label of [`ALLOWED`]: the credential kind's code (`none` on a public route without one).
pub const CREDENTIAL: &str = "credential";
/// The label of [`DENIED`]: the refusal's reason code.
pub const REASON: &str = "reason";

/// A packaging's counters.
pub trait Counters {
    /// Adds one to `name`.
    fn inc(&mut self, name: &'static str);
    /// Adds one to `name` with the label `label=value` (value already a code; see
    /// [`label_value`] for names that come from config).
    fn inc_labeled(&mut self, name: &'static str, label: &'static str, value: &str);
}

/// Counts an allowed request: [`ALLOWED`] by credential, and for the credentials the
/// verified-token cache holds (JWTs, session cookies) whether it answered.
pub fn count_allow(m: &mut impl Counters, identity: Option<&Identity>, cached: bool) {
    let credential = identity.map_or("none", |i| i.credential.code());
    m.inc_labeled(ALLOWED, CREDENTIAL, credential);
    if cached {
        m.inc(CACHE_HIT);
    } else if identity.is_some_and(|i| edgegate::cache::holds(i.credential)) {
        m.inc(CACHE_MISS);
    }
}

/// Counts a local reply: a refusal (status 300 and up) in [`DENIED`] by reason; a 2xx page (the
/// magic-link confirm page) is not a refusal.
pub fn count_reply(m: &mut impl Counters, reply: &LocalReply) {
    if reply.status >= 300 {
        m.inc_labeled(DENIED, REASON, reply.reason.code());
    }
}

/// Counts an answer of a login route by its status: `ok` (2xx: `/auth/me`), `redirect` (3xx:
/// to the provider, back to the app, after logout), `refused` (4xx), `error` (5xx: the
/// provider unreachable or misbehaving, or the filter broken).
pub fn count_login_reply(m: &mut impl Counters, status: u16) {
    let outcome = match status {
        200..=299 => "ok",
        300..=399 => "redirect",
        400..=499 => "refused",
        _ => "error",
    };
    m.inc_labeled(LOGIN, OUTCOME, outcome);
}

/// Counts a magic-link login (the session it opened is an allowed request of that kind).
pub fn count_magic_login(m: &mut impl Counters) {
    m.inc_labeled(ALLOWED, CREDENTIAL, CredentialKind::MagicLink.code());
}

/// A label value safe inside an Envoy stat name and a Prometheus label: `[a-z0-9_]`, at most 64
/// characters (codes already are; this guards names that come from config).
pub fn label_value(v: &str) -> String {
    let mut out: String = v
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_safe() {
        for (value, label) in [
            ("bad_signature", "bad_signature"),
            ("Api.Key x", "api_key_x"),
            ("", "none"),
        ] {
            assert_eq!(label_value(value), label);
        }
        assert_eq!(label_value(&"a".repeat(100)).len(), 64);
    }

    #[derive(Default)]
    struct Seen(Vec<String>);

    impl Counters for Seen {
        fn inc(&mut self, name: &'static str) {
            self.0.push(name.to_string());
        }
        fn inc_labeled(&mut self, name: &'static str, label: &'static str, value: &str) {
            self.0.push(format!("{name}.{label}.{value}"));
        }
    }

    #[test]
    fn a_public_allow_and_a_confirm_page_count_no_refusal() {
        let mut m = Seen::default();
        count_allow(&mut m, None, false);
        let page = LocalReply {
            status: 200,
            reason: edgegate::Reason::Internal,
            headers: vec![],
            body: String::new(),
        };
        count_reply(&mut m, &page);
        assert_eq!(m.0, vec!["edgegate_allowed.credential.none"]);
        count_reply(&mut m, &crate::verdict::internal_error());
        assert_eq!(
            m.0.last().map(String::as_str),
            Some("edgegate_denied.reason.internal")
        );
    }

    /// The cache counters count the credentials the cache holds: JWTs and session cookies (a
    /// hit or a miss each), not API keys.
    #[test]
    fn cache_counters_count_jwts_and_sessions_not_api_keys() {
        let counted = |kind: CredentialKind, cached: bool| {
            let mut m = Seen::default();
            count_allow(&mut m, Some(&Identity::new("u", kind, "p")), cached);
            m.0
        };
        let allowed = |k: &str| format!("edgegate_allowed.credential.{k}");
        for kind in [
            CredentialKind::Jwt,
            CredentialKind::Session,
            CredentialKind::MagicLink,
        ] {
            assert_eq!(
                counted(kind, false),
                [allowed(kind.code()), CACHE_MISS.into()]
            );
            assert_eq!(
                counted(kind, true),
                [allowed(kind.code()), CACHE_HIT.into()]
            );
        }
        assert_eq!(counted(CredentialKind::ApiKey, false), [allowed("api_key")]);
    }
}
