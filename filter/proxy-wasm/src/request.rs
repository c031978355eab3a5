//! The request as the core sees it, read from Envoy without trusting its bytes.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use edgegate::extractor::Request;

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

/// Removes the client's copies of `names` (the identity headers) from the request: one host call
/// per name the map holds (`pairs`, the whole map as read), none for names it lacks. When the
/// map could not be read (`pairs` is `None`) every name is removed blindly.
pub fn strip(names: &[String], pairs: Option<&[(String, Vec<u8>)]>) {
    for name in names {
        let present = pairs.map_or(true, |p| {
            p.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
        });
        if present {
            let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None);
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

    /// Drops the headers in `names` (already removed from Envoy's map by the caller).
    pub fn without(&mut self, names: &[String]) {
        self.headers
            .retain(|(n, _)| !names.iter().any(|s| s.eq_ignore_ascii_case(n)));
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
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
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
    fn stripping_is_case_insensitive() {
        let mut r = OwnedRequest {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![
                ("x-edgegate-subject".into(), "admin".into()),
                ("accept".into(), "*/*".into()),
            ],
        };
        r.without(&["X-Edgegate-Subject".to_string()]);
        assert_eq!(r.headers, vec![("accept".to_string(), "*/*".to_string())]);
        r.with(|req| assert_eq!(req.header("accept"), Some("*/*")));
    }
}
