//! What a host may copy out of a request, and the methods the gateway never forwards.
//!
//! Both hosts apply the same bounds, with the same refusal, BEFORE they copy a request's headers
//! into memory they own: the proxy-wasm filter on Envoy's header map, the edge worker on the
//! Fetch `Headers` (and again in Rust on what JS handed over). A request over a bound is refused
//! whole with `431 headers_too_large`; it is never cut, because a cut request is one whose
//! identity headers or credential the core did not see while the upstream still gets them.
//!
//! `CONNECT` asks the gateway for a raw tunnel: no rule can judge what flows through it, so it
//! is refused (`405 method_not_allowed`) before any rule is looked at.

use crate::engine::{json_denial, LocalReply};
use crate::error::{Error, Reason};
use crate::extractor::Request;

/// Most bytes of header names and values (summed, pseudo-headers included) a request may carry.
/// Envoy's own `max_request_headers_kb` defaults to 60 KiB and is normally hit first.
pub const MAX_HEADER_BYTES: usize = 96 * 1024;

/// Most header fields a request may carry (Envoy's `max_request_headers_count` defaults to 100).
pub const MAX_HEADERS: usize = 200;

/// Counts a request's header fields as a host reads them, so it stops before copying past a
/// bound instead of copying everything and checking afterwards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBudget {
    count: usize,
    bytes: usize,
}

impl HeaderBudget {
    pub fn new() -> Self {
        HeaderBudget::default()
    }

    /// Accounts for one more field of `name_len` + `value_len` bytes; `Err` (431) once the
    /// request is over either bound. The host stops copying at the first `Err` and refuses.
    pub fn take(&mut self, name_len: usize, value_len: usize) -> Result<(), Error> {
        self.count = self.count.saturating_add(1);
        self.bytes = self
            .bytes
            .saturating_add(name_len)
            .saturating_add(value_len);
        if self.count > MAX_HEADERS || self.bytes > MAX_HEADER_BYTES {
            return Err(headers_too_large());
        }
        Ok(())
    }
}

/// Checks a whole list of `(name length, value length)` against the bounds.
pub fn check_header_sizes(fields: impl IntoIterator<Item = (usize, usize)>) -> Result<(), Error> {
    let mut budget = HeaderBudget::new();
    fields.into_iter().try_for_each(|(n, v)| budget.take(n, v))
}

/// The refusal for a request over the header bounds.
pub fn headers_too_large() -> Error {
    Error::new(
        Reason::HeadersTooLarge,
        format!(
            "the request headers are over {MAX_HEADERS} fields or {} KiB",
            MAX_HEADER_BYTES / 1024
        ),
    )
}

/// True for a method the gateway never forwards (`CONNECT`, in any case).
pub fn is_refused_method(method: &str) -> bool {
    method.eq_ignore_ascii_case("CONNECT")
}

/// The refusal for a `CONNECT`.
pub fn method_not_allowed() -> Error {
    Error::new(
        Reason::MethodNotAllowed,
        "CONNECT (a tunnel) is not forwarded by the gateway",
    )
}

/// What the core refuses before looking at rules: a refused method, then the header bounds
/// (hosts already refused an oversized request before copying it; this holds for any host).
pub fn check_request(req: &Request<'_>) -> Result<(), Error> {
    if is_refused_method(req.method) {
        return Err(method_not_allowed());
    }
    check_header_sizes(req.headers.iter().map(|(n, v)| (n.len(), v.len())))
}

/// The JSON refusal for a request over the header bounds, for hosts that refuse before an
/// engine is at hand (the worker's JS entry, a VM whose engine is busy). No realm is needed:
/// a 431 carries no `WWW-Authenticate` challenge.
pub fn headers_too_large_denial() -> LocalReply {
    json_denial("", &headers_too_large())
}

/// The JSON refusal for a `CONNECT`, for hosts that refuse before an engine is at hand.
pub fn method_not_allowed_denial() -> LocalReply {
    json_denial("", &method_not_allowed())
}

/// A denial as a raw HTTP/1.1 response, for a host that can only write bytes (the worker's
/// `connect` handler, whose socket workerd has already answered `200` for).
pub fn raw_http1(d: &LocalReply) -> String {
    let mut out = format!("HTTP/1.1 {} {}\r\n", d.status, status_text(d.status));
    for (n, v) in &d.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{}",
        d.body.len(),
        d.body
    ));
    out
}

fn status_text(status: u16) -> &'static str {
    match status {
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(method: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method,
            path: "/",
            headers,
        }
    }

    #[test]
    fn the_budget_refuses_one_field_or_one_byte_past_a_bound() {
        let mut b = HeaderBudget::new();
        for _ in 0..MAX_HEADERS {
            b.take(1, 1).unwrap();
        }
        assert_eq!(b.take(1, 1).unwrap_err().reason(), Reason::HeadersTooLarge);
        let mut b = HeaderBudget::new();
        b.take(10, MAX_HEADER_BYTES - 10).unwrap();
        assert_eq!(b.take(0, 1).unwrap_err().reason(), Reason::HeadersTooLarge);
        // overflowing lengths saturate rather than wrap
        assert!(HeaderBudget::new().take(usize::MAX, usize::MAX).is_err());
        assert!(check_header_sizes([(4, 5); MAX_HEADERS]).is_ok());
        assert!(check_header_sizes([(4, 5); MAX_HEADERS + 1]).is_err());
    }

    #[test]
    fn connect_is_refused_in_any_case_and_other_methods_pass() {
        for m in ["CONNECT", "connect", "Connect"] {
            let e = check_request(&req(m, &[])).unwrap_err();
            assert_eq!(e.reason(), Reason::MethodNotAllowed);
            assert_eq!(e.http_status(), 405);
        }
        for m in ["GET", "POST", "OPTIONS", "PROPFIND", "CONNECTX"] {
            assert!(check_request(&req(m, &[])).is_ok(), "{m}");
        }
    }

    #[test]
    fn oversized_headers_get_the_431_json_denial() {
        let big = "a".repeat(MAX_HEADER_BYTES);
        let headers = [("x-big", big.as_str())];
        let e = check_request(&req("GET", &headers)).unwrap_err();
        assert_eq!(e.http_status(), 431);
        let d = headers_too_large_denial();
        assert_eq!(d.status, 431);
        assert_eq!(d.reason, Reason::HeadersTooLarge);
        assert!(
            d.body.contains("\"reason\":\"headers_too_large\""),
            "{}",
            d.body
        );
        assert!(!d.headers.iter().any(|(n, _)| n == "www-authenticate"));
    }

    #[test]
    fn the_connect_refusal_is_a_whole_http1_response() {
        let d = method_not_allowed_denial();
        assert_eq!(d.status, 405);
        assert!(d.headers.iter().any(|(n, _)| n == "allow"));
        let raw = raw_http1(&d);
        assert!(
            raw.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{raw}"
        );
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.contains("\"reason\":\"method_not_allowed\""));
    }
}
