//! Where a credential comes from: headers, cookies and the query string.
//!
//! The rule's `credentials` list decides the order in which kinds are looked for; the first kind
//! present wins. A credential that is present but malformed is a 401 for that credential, never
//! "no credential" (so a broken token cannot fall through to a weaker kind).

use crate::identity::CredentialKind;

/// A request as the core sees it: method, raw `:path` (query included) and headers with
/// lower-case names, in the order the host has them.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
}

/// Headers a host owns, borrowed as the core takes them.
pub fn header_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

impl Request<'_> {
    /// Runs `f` with the request of `method`, `path` and the host's own `headers`.
    pub fn with_owned<R>(
        method: &str,
        path: &str,
        headers: &[(String, String)],
        f: impl FnOnce(&Request<'_>) -> R,
    ) -> R {
        let headers = header_refs(headers);
        f(&Request {
            method,
            path,
            headers: &headers,
        })
    }
}

impl<'a> Request<'a> {
    /// The first value of a header (names are compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Every value of a header, for headers that may repeat (`cookie`).
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The host the request is addressed to: `:authority` (HTTP/2, Envoy's map for every
    /// protocol), else `Host`.
    pub fn authority(&self) -> Option<&'a str> {
        self.header(":authority").or_else(|| self.header("host"))
    }

    /// The value of a cookie, looked up in every `cookie` header.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.header_values("cookie")
            .find_map(|h| crate::session::find_cookie(h, name))
    }

    /// Every `cookie` header, joined with `; ` (as one header would carry them).
    pub fn cookie_header(&self) -> String {
        self.header_values("cookie").collect::<Vec<_>>().join("; ")
    }

    /// The raw (still percent-encoded) value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query_params(name).next()
    }

    /// Every raw value of a query parameter, in order.
    pub fn query_params<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        let query = self.path.split_once('?').map_or("", |(_, q)| q);
        let query = query.split('#').next().unwrap_or("");
        query.split('&').filter_map(move |pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// True when the client prefers HTML (a browser): such requests may be redirected to login.
    pub fn wants_html(&self) -> bool {
        self.header("accept")
            .is_some_and(|a| a.contains("text/html"))
    }

    /// The bearer credential from `Authorization`, if the scheme is Bearer (case-insensitive).
    pub fn bearer(&self) -> Option<&'a str> {
        self.header("authorization").and_then(bearer_token)
    }
}

/// The token of an `Authorization` value `Bearer <token>` (the scheme in any case, spaces around
/// the token trimmed); `None` for another scheme.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_matches(' '))
}

/// A credential found in a request, with its kind and where it was found (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found<'a> {
    pub kind: CredentialKind,
    pub value: &'a str,
    pub source: Source,
}

/// Where a credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    AuthorizationBearer,
    Header,
    Cookie,
    QueryParam,
}

/// Every kind a request can carry, in the order [`Extractor::find_any`] looks for them.
pub const ANY_KIND: [CredentialKind; 4] = [
    CredentialKind::Session,
    CredentialKind::Jwt,
    CredentialKind::ApiKey,
    CredentialKind::MagicLink,
];

/// Where each credential kind is read from, compiled from the config.
#[derive(Debug, Clone, Default)]
pub struct Extractor {
    pub jwt_header: Option<String>,
    pub jwt_cookie: Option<String>,
    pub jwt_query: Option<String>,
    pub api_key_header: Option<String>,
    /// The session cookie; sessions opened by a magic link count as `magic_link` credentials.
    pub session_cookie: Option<String>,
    /// With `login.device`: a session also arrives as `Authorization: Bearer <prefix><value>`
    /// (a device credential, [`crate::login::DEVICE_BEARER_PREFIX`]); such a bearer value is
    /// never read as a JWT.
    pub session_bearer: Option<String>,
}

impl Extractor {
    /// The session value of a device credential in `Authorization: Bearer`, if `bearer` is one.
    fn session_bearer<'a>(&self, bearer: &'a str) -> Option<&'a str> {
        bearer.strip_prefix(self.session_bearer.as_deref()?)
    }

    /// Finds the credential for a rule: kinds are tried in the rule's order. `is_api_key` tells an
    /// API key from a JWT in `Authorization: Bearer` (by the API key prefix).
    pub fn find<'a>(
        &self,
        req: &Request<'a>,
        order: &[CredentialKind],
        is_api_key: &dyn Fn(&str) -> bool,
    ) -> Option<Found<'a>> {
        order
            .iter()
            .find_map(|kind| self.find_kind(req, *kind, is_api_key))
    }

    /// The carrier of one of `kinds` that the request sends more than once, described (`the
    /// authorization header`, `the access_token query parameter`): one would be checked while an
    /// upstream might read the other. A header counts as sent twice also when a comma joins two
    /// values in one (hosts fold repeated fields so: Envoy for `Authorization`, workers for
    /// every header; no bearer token, JWT or API key contains a comma). Cookies are not counted:
    /// browsers send a name twice when it is set for two paths or domains, and edgegate's own
    /// cookies never go upstream.
    pub fn repeated(&self, req: &Request<'_>, kinds: &[CredentialKind]) -> Option<String> {
        let twice = |name: &str| {
            let mut values = req.header_values(name);
            let first = values.next();
            let folded = match first {
                Some(v) if name == "authorization" => {
                    bearer_token(v).is_some_and(|t| t.contains(','))
                }
                Some(v) => v.contains(','),
                None => false,
            };
            folded || values.next().is_some()
        };
        let has = |k: CredentialKind| kinds.contains(&k);
        let header = |h: &str| Some(format!("the {h} header"));
        if (has(CredentialKind::Jwt) || has(CredentialKind::ApiKey) || has(CredentialKind::Session))
            && twice("authorization")
        {
            return header("authorization");
        }
        if has(CredentialKind::Jwt) {
            if let Some(h) = self.jwt_header.as_deref().filter(|h| twice(h)) {
                return header(h);
            }
            let query = self.jwt_query.as_deref();
            if let Some(q) = query.filter(|q| req.query_params(q).nth(1).is_some()) {
                return Some(format!("the {q} query parameter"));
            }
        }
        if has(CredentialKind::ApiKey) {
            if let Some(h) = self.api_key_header.as_deref().filter(|h| twice(h)) {
                return header(h);
            }
        }
        None
    }

    /// Any credential of any kind, for telling "none" from "a kind this rule doesn't take".
    pub fn find_any<'a>(
        &self,
        req: &Request<'a>,
        is_api_key: &dyn Fn(&str) -> bool,
    ) -> Option<Found<'a>> {
        self.find(req, &ANY_KIND, is_api_key)
    }

    fn find_kind<'a>(
        &self,
        req: &Request<'a>,
        kind: CredentialKind,
        is_api_key: &dyn Fn(&str) -> bool,
    ) -> Option<Found<'a>> {
        let found = |value: &'a str, source| {
            Some(Found {
                kind,
                value,
                source,
            })
        };
        match kind {
            CredentialKind::Jwt => {
                if let Some(b) = req
                    .bearer()
                    .filter(|b| !is_api_key(b) && self.session_bearer(b).is_none())
                {
                    return found(b, Source::AuthorizationBearer);
                }
                if let Some(v) = self.jwt_header.as_deref().and_then(|h| req.header(h)) {
                    return found(v.trim_matches(' '), Source::Header);
                }
                if let Some(v) = self.jwt_cookie.as_deref().and_then(|c| req.cookie(c)) {
                    return found(v, Source::Cookie);
                }
                self.jwt_query
                    .as_deref()
                    .and_then(|q| req.query_param(q))
                    .and_then(|v| found(v, Source::QueryParam))
            }
            CredentialKind::ApiKey => {
                if let Some(b) = req.bearer().filter(|b| is_api_key(b)) {
                    return found(b, Source::AuthorizationBearer);
                }
                self.api_key_header
                    .as_deref()
                    .and_then(|h| req.header(h))
                    .and_then(|v| found(v.trim_matches(' '), Source::Header))
            }
            // A device credential (a session as a bearer value) before the cookie: it is the
            // one the client chose to send.
            CredentialKind::Session
                if req.bearer().and_then(|b| self.session_bearer(b)).is_some() =>
            {
                req.bearer()
                    .and_then(|b| self.session_bearer(b))
                    .and_then(|v| found(v, Source::AuthorizationBearer))
            }
            // Magic links are consumed once at the magic-link path and become a session; a rule
            // that accepts `magic_link` accepts sessions that a magic link opened.
            CredentialKind::Session | CredentialKind::MagicLink => self
                .session_cookie
                .as_deref()
                .and_then(|c| req.cookie(c))
                .and_then(|v| found(v, Source::Cookie)),
            CredentialKind::Dev => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex() -> Extractor {
        Extractor {
            jwt_header: Some("x-jwt".into()),
            jwt_cookie: Some("id_token".into()),
            jwt_query: None,
            api_key_header: Some("x-api-key".into()),
            session_cookie: Some("edgegate_session".into()),
            session_bearer: Some("egs_".into()),
        }
    }

    fn is_key(s: &str) -> bool {
        s.starts_with("egk_")
    }

    fn get<'a>(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            path,
            headers,
        }
    }

    /// The kind and value of the credential `kinds` find in `req`, with the test extractor.
    fn first<'a>(req: &Request<'a>, kinds: &[CredentialKind]) -> Option<(CredentialKind, &'a str)> {
        ex().find(req, kinds, &is_key).map(|f| (f.kind, f.value))
    }

    #[test]
    fn rule_order_decides() {
        let headers = [
            ("authorization", "Bearer eyJ.a.b"),
            ("cookie", "a=1; edgegate_session=S; b=2"),
        ];
        let req = get("/x", &headers);
        use CredentialKind::{ApiKey, Jwt, Session};
        assert_eq!(first(&req, &[Jwt, Session]), Some((Jwt, "eyJ.a.b")));
        assert_eq!(first(&req, &[Session, Jwt]), Some((Session, "S")));
        assert_eq!(first(&req, &[ApiKey]), None);
    }

    #[test]
    fn bearer_is_routed_by_api_key_prefix() {
        let headers = [("authorization", "bearer egk_abc")];
        let req = get("/", &headers);
        use CredentialKind::{ApiKey, Jwt};
        assert_eq!(first(&req, &[Jwt]), None);
        assert_eq!(first(&req, &[Jwt, ApiKey]), Some((ApiKey, "egk_abc")));
    }

    #[test]
    fn query_and_header_sources() {
        let headers = [
            ("x-api-key", " egk_k "),
            ("accept", "text/html,application/xhtml+xml"),
        ];
        let req = get("/t/1?a=b&token=abc.def.ghi#frag", &headers);
        assert_eq!(req.query_param("token"), Some("abc.def.ghi"));
        assert_eq!(req.query_param("tok"), None);
        assert!(req.wants_html());
        assert_eq!(first(&req, &[CredentialKind::MagicLink]), None);
        let key = first(&req, &[CredentialKind::ApiKey]);
        assert_eq!(key.map(|(_, v)| v), Some("egk_k"));
        // the JWT query parameter is off unless configured
        let req = get("/?access_token=x.y.z", &[]);
        assert_eq!(first(&req, &[CredentialKind::Jwt]), None);
    }

    #[test]
    fn a_device_credential_is_a_session_never_a_jwt() {
        let headers = [
            ("authorization", "Bearer egs_aa.bb.cc"),
            ("cookie", "edgegate_session=S"),
        ];
        let req = get("/", &headers);
        use CredentialKind::{Jwt, MagicLink, Session};
        assert_eq!(first(&req, &[Jwt]), None);
        let f = ex().find(&req, &[Jwt, Session], &is_key).unwrap();
        assert_eq!(
            (f.kind, f.value, f.source),
            (Session, "aa.bb.cc", Source::AuthorizationBearer)
        );
        // a magic-link rule takes the cookie only
        assert_eq!(first(&req, &[MagicLink]), Some((MagicLink, "S")));
        // without login.device the prefix means nothing: it is a (malformed) JWT
        let mut plain = ex();
        plain.session_bearer = None;
        let f = plain.find(&req, &[Jwt, Session], &is_key).unwrap();
        assert_eq!((f.kind, f.value), (Jwt, "egs_aa.bb.cc"));
        assert_eq!(
            plain.find(&req, &[Session], &is_key).map(|f| f.value),
            Some("S")
        );
    }

    #[test]
    fn non_bearer_schemes_are_not_bearer() {
        let headers = [("authorization", "Basic dXNlcjpwYXNz")];
        let req = get("/", &headers);
        assert_eq!(req.bearer(), None);
    }
}
