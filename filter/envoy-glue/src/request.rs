//! The request as the core sees it, built from Envoy's header pairs without trusting their
//! bytes, and what a host does with a header map before anything else: refuse it whole when it
//! is over the core's bounds, and remove every identity header a client sent.

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
pub fn check_sizes<'a, V: AsRef<[u8]> + 'a>(
    pairs: impl IntoIterator<Item = &'a (String, V)>,
) -> Result<(), OverBounds> {
    check_header_sizes(pairs.into_iter().map(|(n, v)| (n.len(), v.as_ref().len())))
        .map_err(|_| OverBounds)
}

/// Splits a header map into the pairs that are not identity headers (in order) and the distinct
/// identity header names the client sent, in any spelling (`x_edgegate_roles` as well as
/// `X-Edgegate-Roles`), which the host removes from its map: one removal per distinct name,
/// none when the client sent none.
pub fn split_identity(engine: &Engine, pairs: Pairs) -> (Pairs, Vec<String>) {
    let mut removed: Vec<String> = Vec::new();
    let mut kept = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        if engine.is_identity_header(&name) {
            if !removed.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
                removed.push(name);
            }
        } else {
            kept.push((name, value));
        }
    }
    (kept, removed)
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
#[derive(Debug, Clone, Default)]
pub struct OwnedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl OwnedRequest {
    /// Builds the request from the header map's pairs (already checked against the core's
    /// bounds by [`check_sizes`]; nothing is cut here). Values that are not UTF-8 are kept,
    /// lossily decoded, so a broken credential is refused rather than mistaken for none.
    pub fn from_pairs(pairs: Vec<(String, Vec<u8>)>) -> OwnedRequest {
        let mut req = OwnedRequest {
            headers: Vec::with_capacity(pairs.len()),
            ..OwnedRequest::default()
        };
        for (mut name, value) in pairs {
            // No copy for the (usual) valid UTF-8 value.
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            match name.as_str() {
                ":method" => req.method = value,
                ":path" => req.path = value,
                _ => {
                    name.make_ascii_lowercase();
                    req.headers.push((name, value));
                }
            }
        }
        req
    }

    /// Every `Cookie` header, joined with `; ` (as browsers send one).
    pub fn cookie_header(&self) -> String {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Replaces every `Cookie` header with `value` (none when empty).
    pub fn replace_cookie_header(&mut self, value: &str) {
        self.headers.retain(|(n, _)| n != "cookie");
        if !value.is_empty() {
            self.headers.push(("cookie".into(), value.into()));
        }
    }

    /// Runs `f` with a borrowed [`Request`].
    pub fn with<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        Request::with_owned(&self.method, &self.path, &self.headers, f)
    }

    /// The path without its query, shortened, for logs (the query may hold a token).
    pub fn log_path(&self) -> String {
        let p = self.path.split(['?', '#']).next().unwrap_or("");
        p.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_path_drops_the_query() {
        let r = OwnedRequest {
            method: "GET".into(),
            path: "/auth/magic?token=secret".into(),
            headers: vec![],
        };
        assert_eq!(r.log_path(), "/auth/magic");
        let long = OwnedRequest {
            path: "/".repeat(1000),
            ..Default::default()
        };
        assert_eq!(long.log_path().len(), 200);
    }

    #[test]
    fn the_request_keeps_its_headers_in_order_lower_cased() {
        let r = OwnedRequest::from_pairs(vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), b"/".to_vec()),
            ("Accept".into(), b"*/*".to_vec()),
            ("cookie".into(), b"a=1".to_vec()),
        ]);
        assert_eq!(
            r.headers,
            vec![
                ("accept".to_string(), "*/*".to_string()),
                ("cookie".to_string(), "a=1".to_string())
            ]
        );
        r.with(|req| assert_eq!(req.header("accept"), Some("*/*")));
    }

    #[test]
    fn identity_headers_are_split_off_once_per_name_in_any_spelling() {
        let engine = Engine::from_json(br#"{"rules":[{"name":"p","match":{"path":{"prefix":"/"}},"require":{"public":true}}]}"#).unwrap();
        let (kept, removed) = split_identity(
            &engine,
            vec![
                ("x-edgegate-subject".into(), b"a".to_vec()),
                ("accept".into(), b"*/*".to_vec()),
                ("X-Edgegate-Subject".into(), b"b".to_vec()),
                ("x_edgegate_roles".into(), b"admin".to_vec()),
            ],
        );
        assert_eq!(kept, vec![("accept".to_string(), b"*/*".to_vec())]);
        assert_eq!(
            removed,
            vec![
                "x-edgegate-subject".to_string(),
                "x_edgegate_roles".to_string()
            ]
        );
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
