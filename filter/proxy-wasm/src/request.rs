//! The request as the core sees it, read from Envoy without trusting its bytes.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use edgegate::extractor::Request;
use edgegate::upstream::HeaderEdits;
use edgegate::Engine;

use edgegate::limits::{check_header_sizes, MAX_HEADERS};

/// The request header map, whole (the bytes variant: the string variant of the SDK traps on a
/// non-UTF-8 value). `None` when the host refused the read.
pub fn read_pairs() -> Option<Vec<(String, Vec<u8>)>> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders).ok()
}

/// The header map as the host hands it: names and raw value bytes.
pub type Pairs = Vec<(String, Vec<u8>)>;

/// Over the core's header bounds ([`edgegate::limits`]): the caller refuses 431.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBounds;

/// The request header map, checked against the core's bounds before anything is copied out of
/// it: `Err` when it is over them, `Ok(None)` when the host refused the read. `num_headers` is
/// the count Envoy passed to `on_http_request_headers`: a map with too many fields is refused
/// without being read.
pub fn read_bounded(num_headers: usize) -> Result<Option<Pairs>, OverBounds> {
    if num_headers > MAX_HEADERS {
        return Err(OverBounds);
    }
    let pairs = read_pairs();
    if let Some(p) = &pairs {
        check_header_sizes(p.iter().map(|(n, v)| (n.len(), v.len()))).map_err(|_| OverBounds)?;
    }
    Ok(pairs)
}

/// Removes from Envoy's `map` every entry whose name the core calls an identity header
/// (`x_edgegate_roles` as well as `X-Edgegate-Roles`): one host call per distinct name present,
/// none when the client sent none. Returns the other pairs, in order.
pub fn drop_identity(
    engine: &Engine,
    map: MapType,
    pairs: Vec<(String, Vec<u8>)>,
) -> Vec<(String, Vec<u8>)> {
    let mut removed: Vec<String> = Vec::new();
    let mut kept = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        if engine.is_identity_header(&name) {
            if !removed.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
                let _ = hostcalls::set_map_value_bytes(map, &name, None);
                removed.push(name);
            }
        } else {
            kept.push((name, value));
        }
    }
    kept
}

/// Carries out the core's edits of an allowed request (the consumed credential, edgegate's
/// cookies) on the current request's headers.
pub fn apply_edits(edits: &HeaderEdits) {
    for name in &edits.remove {
        let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None);
    }
    if let Some(cookie) = &edits.cookie {
        // Every `cookie` header goes, then the kept cookies come back as one.
        let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, "cookie", None);
        if !cookie.is_empty() {
            let _ = hostcalls::set_map_value_bytes(
                MapType::HttpRequestHeaders,
                "cookie",
                Some(cookie.as_bytes()),
            );
        }
    }
}

/// An owned copy of the request line and headers, kept while a request waits for keys.
#[derive(Debug, Clone, Default)]
pub struct OwnedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl OwnedRequest {
    /// Reads the current (effective) request's headers (one host call). Values that are not
    /// UTF-8 are kept, lossily decoded, so a broken credential is refused rather than mistaken
    /// for none.
    pub fn read() -> OwnedRequest {
        OwnedRequest::from_pairs(read_pairs().unwrap_or_default())
    }

    /// Builds the request from the header map's pairs (already checked against the core's
    /// bounds by [`read_bounded`]; nothing is cut here).
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

    /// Runs `f` with a borrowed [`Request`].
    pub fn with<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        f(&Request {
            method: &self.method,
            path: &self.path,
            headers: &headers,
        })
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
}
