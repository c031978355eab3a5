//! What an allowed request carries upstream, beyond the identity headers edgegate sets.
//!
//! Apps behind edgegate trust its identity headers because edgegate removes every client copy
//! first, in any spelling a server or framework could read as the same name: CGI-style stacks
//! (WSGI, Rack, PHP) turn both `x-edgegate-roles` and `x_edgegate_roles` into
//! `HTTP_X_EDGEGATE_ROLES`, so a header is an identity header when its name, lower-cased with
//! `_` read as `-`, is one of ours ([`normalize_header_name`]).
//!
//! The credential edgegate checked stays at the edge by default (as Envoy `jwt_authn`'s
//! `forward: false`): the `Authorization` header, the configured JWT or API-key header, or the
//! JWT cookie that carried it ([`Consumed`]). edgegate's own cookies (the session cookie, its
//! `_refresh` companion and the login-attempt cookies) never go upstream, nor does a device
//! credential (`Authorization: Bearer egs_…`, a session of the user: `login.device`), whether or
//! not the rule took it. A provider or the API keys may opt in to forwarding (`forward: true`);
//! the cookies are still removed. A JWT read from a query parameter is not removed: the filter
//! does not rewrite URLs (the query-parameter source is off by default and logged as risky when
//! on).

use crate::extractor::{bearer_token, Found, Source};
use crate::identity::{CredentialKind, Identity};
use crate::oidc::ATTEMPT_COOKIE_PREFIX;

/// A header name as the identity-header rule compares it: ASCII lower-case, `_` read as `-`.
pub fn normalize_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            b => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

/// Compares `name` with an already normalized name (lower-case, `_` read as `-`: the way
/// CGI-style apps such as WSGI, Rack and PHP read header names), without allocating.
pub(crate) fn same_normalized(name: &str, normalized: &str) -> bool {
    name.len() == normalized.len()
        && name.bytes().zip(normalized.bytes()).all(|(a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == b
        })
}

/// Where the credential edgegate checked came from, when it must not go upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// `Authorization: Bearer` (a JWT or an API key).
    Authorization,
    /// The configured JWT header (`jwt.from.header`).
    JwtHeader,
    /// The configured JWT cookie (`jwt.from.cookie`).
    JwtCookie,
    /// The configured API-key header (`api_keys.header`).
    ApiKeyHeader,
    /// edgegate's session cookie (removed in any case, as all of edgegate's cookies).
    SessionCookie,
}

/// What the host changes in an allowed request before it goes upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Header names to remove (every value), spelled as received.
    pub remove: Vec<String>,
    /// `Some(v)`: replace every `cookie` header by one `cookie: v`; `Some("")`: remove them all.
    /// `None`: leave the cookies as they are.
    pub cookie: Option<String>,
}

impl HeaderEdits {
    /// `headers` with the edits carried out, for a host that builds the upstream request anew
    /// (the edge worker): removed names dropped, every `cookie` header replaced by the kept
    /// cookies (last, and only when some are left).
    pub fn apply(&self, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| {
                let removed = self.remove.iter().any(|r| r.eq_ignore_ascii_case(n));
                let cookie_replaced = self.cookie.is_some() && n.eq_ignore_ascii_case("cookie");
                !removed && !cookie_replaced
            })
            .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
            .collect();
        if let Some(cookie) = self.cookie.as_ref().filter(|c| !c.is_empty()) {
            out.push(("cookie".to_string(), cookie.clone()));
        }
        out
    }
}

/// The forwarding rules compiled from the config.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    /// The identity header names, normalized.
    identity: Vec<String>,
    jwt_header: Option<String>,
    jwt_cookie: Option<String>,
    api_key_header: Option<String>,
    /// The session cookie's name (configured, else `edgegate_session`).
    session_cookie: String,
    /// `<session cookie>_refresh`.
    refresh_cookie: String,
    /// Names of the JWT providers whose tokens are forwarded (`forward: true`).
    forward_providers: Vec<String>,
    /// `api_keys.forward`.
    forward_api_keys: bool,
    /// With `login.device`: the prefix of a device credential in `Authorization: Bearer`
    /// (a session of the user, edgegate's own like the session cookie).
    session_bearer: Option<String>,
}

impl Forwarding {
    pub fn new(
        identity_headers: &[&str],
        jwt_header: Option<&str>,
        jwt_cookie: Option<&str>,
        api_key_header: Option<&str>,
        session_cookie: &str,
    ) -> Forwarding {
        Forwarding {
            identity: identity_headers
                .iter()
                .map(|n| normalize_header_name(n))
                .collect(),
            jwt_header: jwt_header.map(str::to_string),
            jwt_cookie: jwt_cookie.map(str::to_string),
            api_key_header: api_key_header.map(str::to_string),
            session_cookie: session_cookie.to_string(),
            refresh_cookie: format!("{session_cookie}_refresh"),
            forward_providers: Vec::new(),
            forward_api_keys: false,
            session_bearer: None,
        }
    }

    /// With `login.device`: `Authorization: Bearer <prefix>…` is a device credential, a session
    /// of edgegate's, removed from every allowed request like the session cookie.
    pub fn with_session_bearer(mut self, prefix: Option<String>) -> Forwarding {
        self.session_bearer = prefix;
        self
    }

    /// True for an `Authorization` value that is a device credential (`Bearer <prefix>…`).
    fn is_session_bearer(&self, value: &str) -> bool {
        let Some(prefix) = self.session_bearer.as_deref() else {
            return false;
        };
        bearer_token(value).is_some_and(|token| token.starts_with(prefix))
    }

    /// Opts in to forwarding: the tokens of these JWT providers, and API keys when `api_keys`
    /// (`forward: true` in the config).
    pub fn forwarding_tokens_of(mut self, providers: Vec<String>, api_keys: bool) -> Forwarding {
        self.forward_providers = providers;
        self.forward_api_keys = api_keys;
        self
    }

    /// True when a client header of this name must never reach the upstream (nor the core).
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.identity.iter().any(|n| same_normalized(name, n))
    }

    /// Where a verified credential came from, when it stays at the edge.
    pub(crate) fn consumed(&self, found: &Found<'_>, identity: &Identity) -> Option<Consumed> {
        match found.kind {
            CredentialKind::Jwt => {
                if self.forward_providers.contains(&identity.provider) {
                    return None;
                }
                match found.source {
                    Source::AuthorizationBearer => Some(Consumed::Authorization),
                    Source::Header => Some(Consumed::JwtHeader),
                    Source::Cookie => Some(Consumed::JwtCookie),
                    // The filter does not rewrite URLs.
                    Source::QueryParam => None,
                }
            }
            CredentialKind::ApiKey => {
                if self.forward_api_keys {
                    return None;
                }
                match found.source {
                    Source::AuthorizationBearer => Some(Consumed::Authorization),
                    Source::Header => Some(Consumed::ApiKeyHeader),
                    Source::Cookie | Source::QueryParam => None,
                }
            }
            CredentialKind::Session if found.source == Source::AuthorizationBearer => {
                Some(Consumed::Authorization)
            }
            CredentialKind::Session | CredentialKind::MagicLink => Some(Consumed::SessionCookie),
            CredentialKind::Dev => None,
        }
    }

    /// True for edgegate's own cookies, and the JWT cookie when it was the credential used.
    fn is_removed_cookie(&self, name: &str, consumed: Option<&Consumed>) -> bool {
        name == self.session_cookie
            || name == self.refresh_cookie
            || name.starts_with(ATTEMPT_COOKIE_PREFIX)
            || (consumed == Some(&Consumed::JwtCookie) && self.jwt_cookie.as_deref() == Some(name))
    }

    /// The edits for an allowed request whose credential was `consumed` (`None`: nothing to
    /// remove but edgegate's cookies). `headers` are the request's headers as received.
    pub fn edits(&self, headers: &[(&str, &str)], consumed: Option<&Consumed>) -> HeaderEdits {
        let header = match consumed {
            Some(Consumed::Authorization) => Some("authorization"),
            Some(Consumed::JwtHeader) => self.jwt_header.as_deref(),
            Some(Consumed::ApiKeyHeader) => self.api_key_header.as_deref(),
            _ => None,
        };
        // A device credential is a session: it stays here whether or not this rule took it
        // (a public route, a rule of other kinds, an expired one), as the session cookie does.
        let session_bearer = self.session_bearer.is_some()
            && headers.iter().any(|(name, value)| {
                name.eq_ignore_ascii_case("authorization") && self.is_session_bearer(value)
            });
        let mut remove: Vec<String> = Vec::new();
        for h in header
            .into_iter()
            .chain(session_bearer.then_some("authorization"))
        {
            for (name, _) in headers {
                if name.eq_ignore_ascii_case(h) && !remove.iter().any(|r| r == name) {
                    remove.push((*name).to_string());
                }
            }
        }
        let mut kept: Vec<&str> = Vec::new();
        let mut dropped = false;
        for (_, value) in headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        {
            for pair in value.split(';') {
                let pair = pair.trim_matches([' ', '\t']);
                if pair.is_empty() {
                    continue;
                }
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                if self.is_removed_cookie(name.trim_matches([' ', '\t']), consumed) {
                    dropped = true;
                } else {
                    kept.push(pair);
                }
            }
        }
        HeaderEdits {
            remove,
            cookie: dropped.then(|| kept.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_applied_to_a_header_list() {
        let headers = [
            ("Authorization", "Bearer t"),
            ("cookie", "a=1; edgegate_session=s"),
            ("accept", "*/*"),
            ("Cookie", "b=2"),
        ];
        let edits = fw().edits(&headers, Some(&Consumed::Authorization));
        let own = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            edits.apply(&headers),
            own(&[("accept", "*/*"), ("cookie", "a=1; b=2")])
        );
        // Nothing to remove: the list is unchanged.
        let plain = [("accept", "*/*"), ("cookie", "a=1")];
        assert_eq!(fw().edits(&plain, None).apply(&plain), own(&plain));
        // Only edgegate's cookies: no cookie header at all.
        let ours = [("cookie", "edgegate_session=s")];
        assert!(fw().edits(&ours, None).apply(&ours).is_empty());
    }

    fn fw() -> Forwarding {
        Forwarding::new(
            &[
                "x-edgegate-roles",
                "x-edgegate-credential",
                "x-edgegate-subject",
            ],
            Some("x-jwt-assertion"),
            Some("id_token"),
            Some("x-api-key"),
            "edgegate_session",
        )
    }

    #[test]
    fn identity_headers_match_in_any_spelling() {
        let f = fw();
        for name in [
            "x-edgegate-roles",
            "x_edgegate_roles",
            "X_EDGEGATE_ROLES",
            "X-Edgegate-Roles",
            "x-edgegate_credential",
            "X_Edgegate-Subject",
        ] {
            assert!(f.is_identity_header(name), "{name}");
        }
        for name in [
            "x-edgegate-role",
            "x-edgegate-roles2",
            "xx-edgegate-roles",
            "x.edgegate.roles",
            "accept",
            "",
        ] {
            assert!(!f.is_identity_header(name), "{name}");
        }
        assert_eq!(
            normalize_header_name("X_EdgeGate-Roles"),
            "x-edgegate-roles"
        );
    }

    #[test]
    fn configured_names_with_underscores_match_too() {
        let f = Forwarding::new(&["x_user_id"], None, None, None, "edgegate_session");
        assert!(f.is_identity_header("X-User-Id"));
        assert!(f.is_identity_header("x_user_id"));
    }

    #[test]
    fn the_consumed_credential_is_removed_and_only_it() {
        let headers = [
            ("Authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
            ("x-api-key", "egk_x"),
            ("x-jwt-assertion", "g.h.i"),
        ];
        let edits = |consumed: Option<Consumed>| fw().edits(&headers, consumed.as_ref());
        let e = edits(Some(Consumed::Authorization));
        assert_eq!(e.remove, vec!["Authorization", "authorization"]);
        assert_eq!(e.cookie, None);
        assert_eq!(
            edits(Some(Consumed::ApiKeyHeader)).remove,
            vec!["x-api-key"]
        );
        assert_eq!(
            edits(Some(Consumed::JwtHeader)).remove,
            vec!["x-jwt-assertion"]
        );
        // forwarded (forward: true) or no credential: nothing removed
        assert_eq!(edits(None), HeaderEdits::default());
        assert_eq!(edits(Some(Consumed::SessionCookie)), HeaderEdits::default());
    }

    #[test]
    fn edgegate_cookies_are_removed_others_kept_in_one_header_in_order() {
        let f = fw();
        let headers = [
            ("cookie", "a=1; edgegate_session=S;b=2"),
            ("accept", "*/*"),
            (
                "Cookie",
                "edgegate_session_refresh=R; edgegate_login_abc=L; id_token=T; c=3",
            ),
        ];
        let e = f.edits(&headers, None);
        assert!(e.remove.is_empty());
        assert_eq!(e.cookie.as_deref(), Some("a=1; b=2; id_token=T; c=3"));
        // the JWT cookie goes when it was the credential used
        let e = f.edits(&headers, Some(&Consumed::JwtCookie));
        assert_eq!(e.cookie.as_deref(), Some("a=1; b=2; c=3"));
        // only edgegate's cookies: the cookie header goes
        let e = f.edits(
            &[("cookie", "edgegate_session=S")],
            Some(&Consumed::SessionCookie),
        );
        assert_eq!(e.cookie.as_deref(), Some(""));
        // nothing of ours: no edit at all
        let e = f.edits(&[("cookie", "a=1;  b=2")], None);
        assert_eq!(e.cookie, None);
        // names that only look like ours are kept
        let e = f.edits(
            &[(
                "cookie",
                "xedgegate_session=1; edgegate_session=2; edgegate_sessionx=3",
            )],
            None,
        );
        assert_eq!(
            e.cookie.as_deref(),
            Some("xedgegate_session=1; edgegate_sessionx=3")
        );
    }

    #[test]
    fn a_custom_session_cookie_and_its_refresh_cookie_are_ours() {
        let f = Forwarding::new(&["x-edgegate-subject"], None, None, None, "__Host-sid");
        let e = f.edits(
            &[("cookie", "__Host-sid=S; __Host-sid_refresh=R; theme=dark")],
            None,
        );
        assert_eq!(e.cookie.as_deref(), Some("theme=dark"));
    }
}
