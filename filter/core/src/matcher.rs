//! Which requests a rule's `match` covers: path normalization, path patterns and methods. The
//! rules themselves (order, default rule, credentials, requirements) are in [`crate::rules`].
//!
//! # `match`
//!
//! `match.path` is one of (absent: every path):
//! - `{"exact": "/healthz"}` — exactly this path (`/healthz/` is another path);
//! - `{"prefix": "/api"}` — this path and everything below it, **on segment boundaries**:
//!   `/api`, `/api/` and `/api/v1/x`, but not `/apix`. `{"prefix": "/api/"}` means the same;
//!   `{"prefix": "/"}` is every path;
//! - `{"glob": "/tickets/*/comments/**"}` — `*` is any run of characters inside one segment
//!   (never `/`; it may be empty, so `/tickets/*` also fits `/tickets/`), several `*` may share a
//!   segment (`/files/*.pdf`); `**` is allowed only as the whole last segment and fits any
//!   remainder including none (`/a/**` fits `/a`, `/a/` and `/a/b/c`).
//!
//! Patterns are written in the normalized form described below (a pattern that normalization
//! would change, such as `/a/../b` or `/caf%c3%a9`, is a config error that shows the fixed form).
//!
//! `match.methods` lists HTTP methods (empty: any method). Request methods are compared without
//! regard to ASCII case (`get` is `GET`: some servers route it so, and a rule must not be skipped
//! by a lowercase method), and a rule that lists `GET` also covers `HEAD`, which servers answer
//! with the `GET` handler.
//!
//! # Path normalization
//!
//! Rules are matched against [`normalize_path`]'s result, never the raw request target, because
//! every difference between how the gateway and the upstream read a path is a way around the
//! gateway. Normalization:
//!
//! 1. drops the query (`?…`) and fragment (`#…`); the rest must start with `/` and be at most
//!    [`MAX_REQUEST_PATH_BYTES`] bytes;
//! 2. puts every byte into one canonical spelling: percent-escapes of characters that may stand
//!    unescaped in a path segment (letters, digits, `-._~!$&'()*+,=:@`) are decoded (`%2e` is
//!    `.`, `%41` is `A`); every other byte is percent-escaped with upper-case hex (`%c3%a9`, a raw
//!    `é` and `%C3%A9` all become `%C3%A9`; a space becomes `%20`);
//!    (decoding the sub-delimiters too, not only RFC 3986's unreserved set, because upstream
//!    routers decode them before routing: a rule for `/a:b` must also catch `/a%3Ab`);
//! 3. resolves `.` and `..` segments (RFC 3986 §5.2.4): `/admin/../public` is `/public`,
//!    `/%2e%2e/x` is `/../x`, which is refused;
//!
//! and **refuses** (reason `malformed_path`, status 400), because upstreams disagree on them:
//! - an escaped `/` (`%2F`), an escaped or raw `\` (`%5C`), an escaped `%` (`%25`, double
//!   encoding), a raw or escaped `;` (path parameters: Tomcat reads `/public/..;/admin` as
//!   `/admin`), and raw or escaped control characters including NUL;
//! - malformed escapes (`%4`, `%zz`);
//! - `..` that climbs above the root (`/..`, `/a/../../b`);
//! - empty segments, i.e. `//`. Merging them would be unsafe: with `/admin//../public` the gateway
//!   would see `/public` while an upstream that keeps empty segments serves `/admin/public`.
//!   Refusing costs only clients that build URLs carelessly, and they get a clear 400.
//!
//! Matching is case-sensitive: `/ADMIN` is not `/admin`. If your upstream treats paths
//! case-insensitively, give it a rule for each spelling or make the default rule strict.
//! Behind Envoy, also let Envoy normalize the path it forwards (`normalize_path: true`,
//! `path_with_escaped_slashes_action: REJECT_REQUEST`), so the upstream receives the path the
//! rules were matched on.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Error, Reason};

/// Request paths longer than this (in bytes, without the query) are refused.
pub const MAX_REQUEST_PATH_BYTES: usize = 8192;
/// HTTP methods a rule may name.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn bad_path(message: &'static str) -> Error {
    Error::new(Reason::MalformedPath, message)
}

/// Characters that stand unescaped in a normalized path segment (RFC 3986 `pchar` less `;`).
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    for nibble in [b >> 4, b & 0x0f] {
        if let Some(h) = HEX.get(usize::from(nibble)) {
            out.push(char::from(*h));
        }
    }
}

/// Puts a request path into the one form rules are matched against, or refuses it; see the
/// module documentation for every step and why. A path already in that form (the usual case)
/// comes back borrowed, without a copy.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, Error> {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let path = raw.get(..end).unwrap_or_default();
    if path.len() > MAX_REQUEST_PATH_BYTES {
        return Err(bad_path("the request path is too long"));
    }
    if !path.starts_with('/') {
        return Err(bad_path("the request path must start with '/'"));
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    resolve_dots(&canonical_bytes(path)?).map(Cow::Owned)
}

/// True when the two passes below would give `path` back unchanged: every byte plain or `/`
/// (nothing to decode, escape or refuse), and no empty, `.` or `..` segment but a trailing
/// `/`. (`the_normal_form_shortcut_agrees_with_the_two_passes` checks it against them.)
fn is_normal(path: &str) -> bool {
    let Some(body) = path.strip_prefix('/') else {
        return false;
    };
    if !body.bytes().all(|b| b == b'/' || is_plain(b)) {
        return false;
    }
    let mut segments = body.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" if last => {}
            "" | "." | ".." => return false,
            _ => {}
        }
    }
    true
}

/// Pass 1: one spelling per byte, refusing what upstreams read differently.
fn canonical_bytes(path: &str) -> Result<String, Error> {
    let mut canon = String::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        let (b, escaped) = if b == b'%' {
            let hi = bytes.next().and_then(crate::syntax::hex_value);
            let lo = bytes.next().and_then(crate::syntax::hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => ((hi << 4) | lo, true),
                _ => return Err(bad_path("the request path has a malformed percent-escape")),
            }
        } else {
            (b, false)
        };
        match b {
            b'/' if escaped => {
                return Err(bad_path("the request path has an escaped '/' (%2F)"));
            }
            b'/' => canon.push('/'),
            b'\\' => return Err(bad_path("the request path has a '\\' (raw or %5C)")),
            b'%' => return Err(bad_path("the request path has an escaped '%' (%25)")),
            b';' => return Err(bad_path("the request path has a ';' (raw or %3B)")),
            0x00..=0x1f | 0x7f => {
                return Err(bad_path("the request path has a control character"));
            }
            b if is_plain(b) => canon.push(char::from(b)),
            b => push_escaped(&mut canon, b),
        }
    }
    Ok(canon)
}

/// Pass 2: dot segments; empty segments only at the very end (a trailing '/').
fn resolve_dots(canon: &str) -> Result<String, Error> {
    let body = canon.get(1..).unwrap_or_default();
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut it = body.split('/').peekable();
    while let Some(seg) = it.next() {
        let last = it.peek().is_none();
        match seg {
            "." => trailing_slash = last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(bad_path("the request path climbs above the root with '..'"));
                }
                trailing_slash = last;
            }
            "" if last => trailing_slash = true,
            "" => return Err(bad_path("the request path has an empty segment ('//')")),
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(canon.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Which paths a rule covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PathPattern {
    /// Exactly this normalized path.
    Exact(String),
    /// This path and every path below it, on segment boundaries (`/api` covers `/api/x`, not `/apix`).
    Prefix(String),
    /// Segments with `*` (any characters within one segment) and a final `**` (any remainder).
    Glob(String),
}

/// What requests a rule applies to.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `{"exact": "/p"}`, `{"prefix": "/api"}` or `{"glob": "/tickets/*/comments/**"}`; absent
    /// means every path.
    pub path: Option<PathPattern>,
    /// HTTP methods, e.g. `["GET", "POST"]`; empty means any. `GET` also covers `HEAD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// One segment of a glob: literal, or literal parts around `*`s.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SegPat {
    Lit(String),
    /// The parts between `*`s: `a*b*c` is `["a", "b", "c"]`, `*` is `["", ""]`.
    Wild(Vec<String>),
}

impl SegPat {
    fn matches(&self, seg: &str) -> bool {
        match self {
            SegPat::Lit(l) => l == seg,
            SegPat::Wild(parts) => wild_match(parts, seg),
        }
    }
}

/// `parts` came from splitting on `*`, so it has at least two elements: the first is anchored at
/// the start, the last at the end, the middle ones are found left to right (greedy leftmost is
/// exact for `*`-only patterns).
fn wild_match(parts: &[String], seg: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return first == seg;
    };
    if seg.len() < first.len().saturating_add(last.len())
        || !seg.starts_with(first.as_str())
        || !seg.ends_with(last.as_str())
    {
        return false;
    }
    let mut inner = seg
        .get(first.len()..seg.len().saturating_sub(last.len()))
        .unwrap_or_default();
    for part in middle {
        match inner.find(part.as_str()) {
            Some(at) => {
                inner = inner
                    .get(at.saturating_add(part.len())..)
                    .unwrap_or_default()
            }
            None => return false,
        }
    }
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatch {
    Any,
    Exact(String),
    /// Without the trailing `/`; empty for the root.
    Prefix(String),
    Glob {
        segments: Vec<SegPat>,
        tail: bool,
    },
}

impl PathMatch {
    /// True when every path `later` matches, this matches too (conservative: false when unsure).
    fn covers(&self, later: &PathMatch) -> bool {
        match (self, later) {
            (PathMatch::Any, _) => true,
            (PathMatch::Prefix(p), PathMatch::Any) => p.is_empty(),
            (PathMatch::Prefix(p), PathMatch::Exact(e)) => covers_prefix(p, e),
            (PathMatch::Prefix(p), PathMatch::Prefix(q)) => covers_prefix(p, q),
            (PathMatch::Prefix(p), PathMatch::Glob { segments, .. }) => {
                // Every path the glob fits starts with its leading literal segments.
                let mut lead = String::new();
                for seg in segments {
                    match seg {
                        SegPat::Lit(l) => {
                            lead.push('/');
                            lead.push_str(l);
                        }
                        SegPat::Wild(_) => break,
                    }
                }
                covers_prefix(p, &lead)
            }
            (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            (a @ PathMatch::Glob { .. }, b @ PathMatch::Glob { .. }) => a == b,
            _ => false,
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => covers_prefix(p, path),
            PathMatch::Glob { segments, tail } => {
                let Some(body) = path.strip_prefix('/') else {
                    return false;
                };
                let mut parts = body.split('/');
                for pat in segments {
                    match parts.next() {
                        Some(seg) if pat.matches(seg) => {}
                        _ => return false,
                    }
                }
                *tail || parts.next().is_none()
            }
        }
    }
}

/// Whether `path` is `prefix` or below it; `prefix` has no trailing `/` (empty = root).
pub(crate) fn covers_prefix(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A compiled `match`: path pattern and methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    path: PathMatch,
    /// Upper-case names; empty = any.
    methods: Vec<&'static str>,
}

impl Route {
    /// Every method, every path (the default rule's route).
    pub(crate) fn any() -> Route {
        Route {
            path: PathMatch::Any,
            methods: Vec::new(),
        }
    }

    /// True when every request `later` fits, this route fits too: a rule after this one with
    /// that route would never be used. Conservative (false when unsure).
    pub fn shadows(&self, later: &Route) -> bool {
        let methods = self.methods.is_empty()
            || (!later.methods.is_empty()
                && later.methods.iter().all(|m| self.methods.contains(m)));
        methods && self.path.covers(&later.path)
    }

    /// Whether a request with this method and normalized path falls under the route.
    pub fn matches(&self, method: &str, normalized_path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.path.matches(normalized_path)
    }

    /// Compiles a `match` section; error paths are relative to it (`path`, `methods[1]`).
    pub fn compile(config: &MatchConfig) -> Result<Route, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let path = match &config.path {
            None => Some(PathMatch::Any),
            Some(p) => match compile_path(p) {
                Ok(m) => Some(m),
                Err(msg) => {
                    errors.push(ConfigError::new("path", msg));
                    None
                }
            },
        };
        let mut methods: Vec<&'static str> = Vec::new();
        for (i, m) in config.methods.iter().enumerate() {
            match METHODS.iter().find(|k| k.eq_ignore_ascii_case(m)) {
                None => errors.push(ConfigError::new(
                    format!("methods[{i}]"),
                    format!("unknown HTTP method; use one of {}", METHODS.join(", ")),
                )),
                Some(k) if methods.contains(k) => errors.push(ConfigError::new(
                    format!("methods[{i}]"),
                    format!("{k} is listed twice"),
                )),
                Some(k) => methods.push(k),
            }
        }
        if methods.contains(&"GET") && !methods.contains(&"HEAD") {
            methods.push("HEAD");
        }
        match path {
            Some(path) if errors.is_empty() => Ok(Route { path, methods }),
            _ => Err(errors),
        }
    }
}

fn check_normalized(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err("a path pattern must start with '/'".into());
    }
    if pattern.contains(['?', '#']) {
        return Err("a path pattern cannot contain '?' or '#' (queries are not matched)".into());
    }
    match normalize_path(pattern) {
        Err(e) => Err(format!(
            "requests with this path are always refused ({}); fix the pattern",
            e.message()
        )),
        Ok(n) if n != pattern => Err(format!(
            "the pattern is not in normalized form; write it as \"{n}\""
        )),
        Ok(_) => Ok(()),
    }
}

fn compile_path(p: &PathPattern) -> Result<PathMatch, String> {
    match p {
        PathPattern::Exact(s) => {
            check_normalized(s)?;
            Ok(PathMatch::Exact(s.clone()))
        }
        PathPattern::Prefix(s) => {
            check_normalized(s)?;
            Ok(PathMatch::Prefix(s.trim_end_matches('/').to_owned()))
        }
        PathPattern::Glob(s) => {
            check_normalized(s)?;
            let body = s.get(1..).unwrap_or_default();
            let mut segments = Vec::new();
            let mut tail = false;
            let mut it = body.split('/').peekable();
            while let Some(seg) = it.next() {
                let last = it.peek().is_none();
                if seg == "**" {
                    if !last {
                        return Err("'**' is allowed only as the last segment".into());
                    }
                    tail = true;
                } else if seg.contains("**") {
                    return Err(
                        "'**' must be a whole segment (e.g. /a/**); use '*' within a segment"
                            .into(),
                    );
                } else if seg.contains('*') {
                    segments.push(SegPat::Wild(seg.split('*').map(str::to_owned).collect()));
                } else {
                    segments.push(SegPat::Lit(seg.to_owned()));
                }
            }
            Ok(PathMatch::Glob { segments, tail })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(p: &str) -> String {
        normalize_path(p)
            .unwrap_or_else(|e| panic!("{p:?} refused: {e}"))
            .into_owned()
    }

    /// Every path of up to 6 bytes over an alphabet with each kind of byte the two passes treat
    /// apart: the shortcut answers only for paths they give back unchanged (it may leave a path
    /// such as `/%22`, already escaped, to them), and for plain paths it answers.
    #[test]
    fn the_normal_form_shortcut_agrees_with_the_two_passes() {
        const ALPHABET: &[u8] = b"/.a%2e;~";
        let (mut shortcut, mut unchanged_plain) = (0, 0);
        for len in 1..=6u32 {
            for n in 0..ALPHABET.len().pow(len - 1) {
                let mut k = n;
                let mut path = String::from("/");
                for _ in 1..len {
                    path.push(char::from(ALPHABET[k % ALPHABET.len()]));
                    k /= ALPHABET.len();
                }
                let slow = canonical_bytes(&path).and_then(|c| resolve_dots(&c));
                let unchanged = slow.as_deref().is_ok_and(|s| s == path);
                if is_normal(&path) {
                    assert!(unchanged, "{path:?} -> {slow:?}");
                    assert!(
                        matches!(normalize_path(&path), Ok(Cow::Borrowed(_))),
                        "{path:?}"
                    );
                    shortcut += 1;
                }
                if unchanged && !path.contains('%') {
                    assert!(
                        is_normal(&path),
                        "{path:?} is plain and normal: no copy needed"
                    );
                    unchanged_plain += 1;
                }
            }
        }
        assert_eq!(shortcut, unchanged_plain);
        assert!(shortcut > 100, "{shortcut}");
    }

    fn refused(p: &str) {
        match normalize_path(p) {
            Ok(n) => panic!("{p:?} should be refused, got {n:?}"),
            Err(e) => {
                assert_eq!(e.reason(), Reason::MalformedPath, "{p:?}");
                assert_eq!(e.http_status(), 400);
            }
        }
    }

    #[test]
    fn normalization_resolves_and_canonicalizes() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b?x=1&y=/../..", "/a/b"),
            ("/a/b#frag/../x", "/a/b"),
            ("/a?", "/a"),
            ("/admin/../public", "/public"),
            ("/admin/./../public/", "/public/"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/.%2E/b", "/b"),
            ("/a/%2e/b", "/a/b"),
            ("/%41dmin", "/Admin"),
            ("/%7euser/%2d", "/~user/-"),
            ("/a%3Ab%40c%21", "/a:b@c!"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/café", "/caf%C3%A9"),
            ("/a b", "/a%20b"),
            ("/a%20b", "/a%20b"),
            ("/q%3fx", "/q%3Fx"),
            ("/h%23x", "/h%23x"),
            ("/{x}|^`", "/%7Bx%7D%7C%5E%60"),
            ("/ADMIN", "/ADMIN"),
            ("/...", "/..."),
            ("/a/..b/c.", "/a/..b/c."),
        ] {
            assert_eq!(norm(raw), want, "{raw:?}");
            assert_eq!(
                norm(want),
                want,
                "normalization must be idempotent for {want:?}"
            );
        }
    }

    #[test]
    fn path_confusion_is_refused() {
        let long = format!("/{}", "a".repeat(MAX_REQUEST_PATH_BYTES));
        for p in [
            "",
            "a/b",
            "*",
            "http://evil/admin",
            "?x",
            "/%2e%2e/",
            "/%2E%2E/admin",
            "/..",
            "/../admin",
            "/a/../../admin",
            "/public/..%2fadmin",
            "/public/..%2Fadmin",
            "/admin%2f",
            "/admin%2F",
            "//admin",
            "/admin//x",
            "/admin//../public",
            "/a\\b",
            "/..\\admin",
            "/a%5cb",
            "/a%5Cb",
            "/a%00",
            "/a\0b",
            "/a\r\nb",
            "/a%0d%0a",
            "/a%7f",
            "/a%252f",
            "/a%25",
            "/public/..;/admin",
            "/admin;jsessionid=x",
            "/admin%3b",
            "/a%",
            "/a%4",
            "/a%zz",
            "/a%%41",
            "/a%c",
            long.as_str(),
        ] {
            refused(p);
        }
        assert_eq!(norm("/admin/"), "/admin/");
    }

    fn route(v: serde_json::Value) -> Route {
        Route::compile(&serde_json::from_value(v).unwrap()).unwrap()
    }

    #[test]
    fn exact_and_prefix() {
        let r = route(json!({"path": {"exact": "/healthz"}}));
        assert!(r.matches("GET", "/healthz"));
        assert!(!r.matches("GET", "/healthz/"));
        assert!(!r.matches("GET", "/healthz/x"));
        assert!(!r.matches("GET", "/HEALTHZ"));
        for pat in ["/api", "/api/"] {
            let r = route(json!({"path": {"prefix": pat}}));
            for ok in ["/api", "/api/", "/api/v1/x"] {
                assert!(r.matches("GET", ok), "{pat} {ok}");
            }
            for no in ["/apix", "/ap", "/", "/API/x", "/x/api"] {
                assert!(!r.matches("GET", no), "{pat} {no}");
            }
        }
        let r = route(json!({"path": {"prefix": "/"}}));
        assert!(r.matches("GET", "/") && r.matches("GET", "/anything/at/all"));
        let r = route(json!({}));
        assert!(r.matches("PROPFIND", "/x"));
    }

    #[test]
    fn globs() {
        let r = route(json!({"path": {"glob": "/tickets/*/comments/**"}}));
        for ok in [
            "/tickets/TRK-1/comments",
            "/tickets/TRK-1/comments/",
            "/tickets/TRK-1/comments/9/likes",
        ] {
            assert!(r.matches("GET", ok), "{ok}");
        }
        for no in [
            "/tickets/TRK-1/x/comments",
            "/tickets/comments",
            "/tickets/TRK-1/commentsx",
            "/tickets/a/b/comments",
        ] {
            assert!(!r.matches("GET", no), "{no}");
        }
        let r = route(json!({"path": {"glob": "/tickets/*"}}));
        assert!(r.matches("GET", "/tickets/TRK-1"));
        assert!(r.matches("GET", "/tickets/"));
        assert!(!r.matches("GET", "/tickets"));
        assert!(!r.matches("GET", "/tickets/TRK-1/x"));
        let r = route(json!({"path": {"glob": "/files/*.pdf"}}));
        assert!(r.matches("GET", "/files/a.pdf"));
        assert!(r.matches("GET", "/files/.pdf"));
        assert!(!r.matches("GET", "/files/a.pdfx"));
        assert!(!r.matches("GET", "/files/x/a.pdf"));
        let r = route(json!({"path": {"glob": "/x/a*b*c"}}));
        for ok in ["/x/abc", "/x/a-b-c", "/x/abbc", "/x/abcbc", "/x/aXbYbZc"] {
            assert!(r.matches("GET", ok), "{ok}");
        }
        for no in ["/x/ab", "/x/ac", "/x/acb", "/x/bac"] {
            assert!(!r.matches("GET", no), "{no}");
        }
        let r = route(json!({"path": {"glob": "/x/a*a"}}));
        assert!(!r.matches("GET", "/x/a"));
        assert!(r.matches("GET", "/x/aa"));
        let r = route(json!({"path": {"glob": "/**"}}));
        assert!(r.matches("GET", "/") && r.matches("GET", "/a/b"));
        let r = route(json!({"path": {"glob": "/a/**"}}));
        assert!(r.matches("GET", "/a") && r.matches("GET", "/a/") && r.matches("GET", "/a/b"));
        assert!(!r.matches("GET", "/ab"));
        let r = route(json!({"path": {"glob": "/a/b"}}));
        assert!(r.matches("GET", "/a/b") && !r.matches("GET", "/a/b/"));
    }

    #[test]
    fn methods() {
        let r = route(json!({"methods": ["get", "POST"]}));
        assert!(r.matches("GET", "/"));
        assert!(r.matches("get", "/"));
        assert!(r.matches("post", "/"));
        assert!(r.matches("HEAD", "/"), "GET covers HEAD");
        assert!(!r.matches("DELETE", "/"));
        assert!(!r.matches("GETX", "/"));
        let r = route(json!({"methods": ["POST"]}));
        assert!(!r.matches("HEAD", "/"));
        assert!(!r.matches("GET", "/"));
    }

    #[test]
    fn bad_match_configs() {
        for (m, path, needle) in [
            (
                json!({"path": {"glob": "tickets/*"}}),
                "path",
                "start with '/'",
            ),
            (json!({"path": {"exact": ""}}), "path", "start with '/'"),
            (json!({"path": {"prefix": "/a/../b"}}), "path", "\"/b\""),
            (
                json!({"path": {"exact": "/caf%c3%a9"}}),
                "path",
                "/caf%C3%A9",
            ),
            (json!({"path": {"exact": "/a?b"}}), "path", "'?'"),
            (
                json!({"path": {"exact": "/a%2fb"}}),
                "path",
                "always refused",
            ),
            (json!({"path": {"prefix": "//a"}}), "path", "always refused"),
            (json!({"path": {"glob": "/a/**/b"}}), "path", "last segment"),
            (json!({"path": {"glob": "/a/b**"}}), "path", "whole segment"),
            (
                json!({"methods": ["GET", "FETCH"]}),
                "methods[1]",
                "unknown",
            ),
            (json!({"methods": ["GET", "get"]}), "methods[1]", "twice"),
        ] {
            let cfg: MatchConfig = serde_json::from_value(m.clone()).unwrap();
            let errs = Route::compile(&cfg).unwrap_err();
            assert_eq!(errs.len(), 1, "{m}");
            assert_eq!(errs[0].path(), path, "{m}");
            assert!(
                errs[0].message().contains(needle),
                "{m}: {}",
                errs[0].message()
            );
        }
        assert!(serde_json::from_value::<MatchConfig>(json!({"path": {"regex": "/a"}})).is_err());
        assert!(serde_json::from_value::<MatchConfig>(json!({"paths": []})).is_err());
    }
}
