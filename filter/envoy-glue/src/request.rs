//! The request as the core sees it, built from Envoy's header pairs without trusting their
//! bytes, and what a host does with a header map before anything else: refuse it whole when it
//! is over the core's bounds, and remove every identity header a client sent.

use std::borrow::Cow;
use std::ops::Range;

use edgegate::extractor::Request;
use edgegate::upstream::HeaderEdits;
use edgegate::Engine;

use edgegate::limits::{check_header_sizes, MAX_HEADERS};

/// The header map as the host hands it: names and raw value bytes.
pub type Pairs = Vec<(String, Vec<u8>)>;

/// Over the core's header bounds ([`edgegate::limits`]): the caller refuses 431.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBounds;

/// Refuses a header map with more fields than the core's bound before it is read (`num_headers`
/// is the count the host reports).
pub fn check_count(num_headers: usize) -> Result<(), OverBounds> {
    if num_headers > MAX_HEADERS {
        return Err(OverBounds);
    }
    Ok(())
}

/// Checks a header map that was read against the core's size bounds (the caller refuses it
/// whole, never cuts it: a cut map would hide identity headers or a credential from the core
/// while the upstream still got them).
pub fn check_sizes<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Result<(), OverBounds> {
    check_header_sizes(
        pairs
            .iter()
            .map(|(n, v)| (n.as_ref().len(), v.as_ref().len())),
    )
    .map_err(|_| OverBounds)
}

/// Header bytes as text: borrowed when they are UTF-8 (names always are: ASCII tokens once Envoy
/// has parsed them), else decoded lossily rather than trusted. (`from_utf8` first: the lossy
/// decoder walks byte by byte, ~5x the instructions on a valid value.)
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The distinct identity header names a header map holds, in any spelling (`x_edgegate_roles`
/// as well as `X-Edgegate-Roles`), which the host removes from its map: one removal per
/// distinct name, none (and no allocation) when the client sent none.
pub fn identity_names<N: AsRef<[u8]>, V>(engine: &Engine, pairs: &[(N, V)]) -> Vec<String> {
    let mut removed: Vec<String> = Vec::new();
    for (name, _) in pairs {
        note_identity(engine, &mut removed, &text(name.as_ref()));
    }
    removed
}

/// True when `name` is an identity header; its first spelling is noted in `removed`.
fn note_identity(engine: &Engine, removed: &mut Vec<String>, name: &str) -> bool {
    if !engine.is_identity_header(name) {
        return false;
    }
    if !removed.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        removed.push(name.to_owned());
    }
    true
}

/// What a host does to the request headers to carry out the core's edits of an allowed request
/// (the consumed credential, edgegate's cookies), in order: `Some(value)` sets the header (one
/// value), `None` removes every value of it.
pub fn edit_ops(edits: &HeaderEdits) -> Vec<(&str, Option<&str>)> {
    let mut ops: Vec<(&str, Option<&str>)> =
        edits.remove.iter().map(|n| (n.as_str(), None)).collect();
    if let Some(cookie) = &edits.cookie {
        // Every `cookie` header goes, then the kept cookies come back as one.
        ops.push(("cookie", None));
        if !cookie.is_empty() {
            ops.push(("cookie", Some(cookie.as_str())));
        }
    }
    ops
}

/// An owned copy of the request line and headers, kept while a request waits for keys.
///
/// Every byte of it is in one string (`text`), the method, the path and each header a range of
/// it: building one is two allocations whatever the number of headers (the native module copies
/// Envoy's map into it on every request, and each allocation there is a call into Envoy's
/// allocator).
#[derive(Debug, Clone, Default)]
pub struct OwnedRequest {
    text: String,
    method: Range<usize>,
    path: Range<usize>,
    /// Names (lower-cased) and values, in the map's order.
    headers: Vec<(Range<usize>, Range<usize>)>,
}

impl OwnedRequest {
    /// Builds the request from a header map's pairs (already checked against the core's bounds
    /// by [`check_sizes`]; nothing is cut here). Values that are not UTF-8 are kept, lossily
    /// decoded, so a broken credential is refused rather than mistaken for none.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> OwnedRequest {
        OwnedRequest::build(pairs, |_| false)
    }

    /// [`OwnedRequest::from_pairs`] without the client's identity headers, and their distinct
    /// names as [`identity_names`] gives them (the host removes those from its map).
    pub fn from_map<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        engine: &Engine,
        pairs: &[(N, V)],
    ) -> (OwnedRequest, Vec<String>) {
        let mut removed: Vec<String> = Vec::new();
        let req = OwnedRequest::build(pairs, |name| note_identity(engine, &mut removed, name));
        (req, removed)
    }

    fn build<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: &[(N, V)],
        mut leave_out: impl FnMut(&str) -> bool,
    ) -> OwnedRequest {
        let size = pairs
            .iter()
            .map(|(n, v)| n.as_ref().len() + v.as_ref().len())
            .sum();
        let mut req = OwnedRequest {
            text: String::with_capacity(size),
            headers: Vec::with_capacity(pairs.len()),
            ..OwnedRequest::default()
        };
        for (name, value) in pairs {
            let name = text(name.as_ref());
            if leave_out(&name) {
                continue;
            }
            let value = text(value.as_ref());
            match &*name {
                ":method" => req.method = req.push(&value),
                ":path" => req.path = req.push(&value),
                _ => {
                    let n = req.push(&name);
                    if let Some(n) = req.text.get_mut(n.clone()) {
                        n.make_ascii_lowercase();
                    }
                    let v = req.push(&value);
                    req.headers.push((n, v));
                }
            }
        }
        req
    }

    fn push(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }

    fn at(&self, r: &Range<usize>) -> &str {
        self.text.get(r.clone()).unwrap_or("")
    }

    /// The request's method (`:method`).
    pub fn method(&self) -> &str {
        self.at(&self.method)
    }

    /// The request's path and query (`:path`).
    pub fn path(&self) -> &str {
        self.at(&self.path)
    }

    /// The headers but the pseudo-headers `:method` and `:path`, names lower-cased, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (self.at(n), self.at(v)))
    }

    /// Every `Cookie` header, joined with `; ` (as browsers send one).
    pub fn cookie_header(&self) -> String {
        self.headers()
            .filter(|(n, _)| *n == "cookie")
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Replaces every `Cookie` header with `value` (none when empty).
    pub fn replace_cookie_header(&mut self, value: &str) {
        let mut pairs: Vec<(&str, &str)> = vec![(":method", self.method()), (":path", self.path())];
        pairs.extend(self.headers().filter(|(n, _)| *n != "cookie"));
        if !value.is_empty() {
            pairs.push(("cookie", value));
        }
        *self = OwnedRequest::from_pairs(&pairs);
    }

    /// Runs `f` with a borrowed [`Request`].
    pub fn with<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let headers: Vec<(&str, &str)> = self.headers().collect();
        f(&Request {
            method: self.method(),
            path: self.path(),
            headers: &headers,
        })
    }

    /// The path without its query, shortened, for logs (the query may hold a token).
    pub fn log_path(&self) -> String {
        let p = self.path().split(['?', '#']).next().unwrap_or("");
        p.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_path_drops_the_query() {
        let r =
            OwnedRequest::from_pairs(&[(":method", "GET"), (":path", "/auth/magic?token=secret")]);
        assert_eq!(r.log_path(), "/auth/magic");
        let long = OwnedRequest::from_pairs(&[(":path", "/".repeat(1000))]);
        assert_eq!(long.log_path().len(), 200);
    }

    #[test]
    fn the_request_keeps_its_headers_in_order_lower_cased() {
        let pairs: Pairs = vec![
            (":method".into(), b"GET".to_vec()),
            ("Accept".into(), b"*/*".to_vec()),
            (":path".into(), b"/".to_vec()),
            ("cookie".into(), b"a=1".to_vec()),
            ("X-Bytes".into(), b"a\xffb".to_vec()),
        ];
        let r = OwnedRequest::from_pairs(&pairs);
        assert_eq!((r.method(), r.path()), ("GET", "/"));
        assert_eq!(
            r.headers().collect::<Vec<_>>(),
            vec![
                ("accept", "*/*"),
                ("cookie", "a=1"),
                ("x-bytes", "a\u{fffd}b")
            ]
        );
        r.with(|req| {
            assert_eq!((req.method, req.path), ("GET", "/"));
            assert_eq!(req.header("accept"), Some("*/*"));
        });
        // Envoy's borrowed views build the same request.
        let views: Vec<(&[u8], &[u8])> =
            pairs.iter().map(|(n, v)| (n.as_bytes(), &v[..])).collect();
        let same = OwnedRequest::from_pairs(&views);
        assert_eq!(
            same.headers().collect::<Vec<_>>(),
            r.headers().collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_cookie_header_is_replaced_and_the_rest_kept() {
        let mut r = OwnedRequest::from_pairs(&[
            (":method", "POST"),
            (":path", "/x"),
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("cookie", "b=2"),
        ]);
        assert_eq!(r.cookie_header(), "a=1; b=2");
        r.replace_cookie_header("c=3");
        assert_eq!((r.method(), r.path()), ("POST", "/x"));
        assert_eq!(
            r.headers().collect::<Vec<_>>(),
            vec![("accept", "*/*"), ("cookie", "c=3")]
        );
        r.replace_cookie_header("");
        assert_eq!(r.headers().collect::<Vec<_>>(), vec![("accept", "*/*")]);
    }

    #[test]
    fn identity_headers_are_split_off_once_per_name_in_any_spelling() {
        let engine = Engine::from_json(br#"{"rules":[{"name":"p","match":{"path":{"prefix":"/"}},"require":{"public":true}}]}"#).unwrap();
        let pairs = [
            ("x-edgegate-subject", "a"),
            ("accept", "*/*"),
            ("X-Edgegate-Subject", "b"),
            ("x_edgegate_roles", "admin"),
        ];
        let (kept, removed) = OwnedRequest::from_map(&engine, &pairs);
        assert_eq!(kept.headers().collect::<Vec<_>>(), vec![("accept", "*/*")]);
        let want = vec![
            "x-edgegate-subject".to_string(),
            "x_edgegate_roles".to_string(),
        ];
        assert_eq!(removed, want);
        assert_eq!(identity_names(&engine, &pairs), want);
        assert!(identity_names(&engine, &[("accept", "*/*")]).is_empty());
    }

    #[test]
    fn edits_remove_then_set_one_cookie_header() {
        let edits = HeaderEdits {
            remove: vec!["authorization".into()],
            cookie: Some("a=1".into()),
        };
        assert_eq!(
            edit_ops(&edits),
            vec![
                ("authorization", None),
                ("cookie", None),
                ("cookie", Some("a=1"))
            ]
        );
        let only_ours = HeaderEdits {
            remove: vec![],
            cookie: Some(String::new()),
        };
        assert_eq!(edit_ops(&only_ours), vec![("cookie", None)]);
        assert!(edit_ops(&HeaderEdits::default()).is_empty());
    }

    #[test]
    fn bounds_refuse_too_many_or_too_large() {
        assert!(check_count(MAX_HEADERS).is_ok());
        assert_eq!(check_count(MAX_HEADERS + 1), Err(OverBounds));
        let small: Pairs = vec![("a".into(), b"b".to_vec())];
        assert!(check_sizes(&small).is_ok());
        let huge: Pairs = vec![("a".into(), vec![b'x'; 200 * 1024])];
        assert_eq!(check_sizes(&huge), Err(OverBounds));
    }
}
