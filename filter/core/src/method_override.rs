//! Method override: the methods a request asks the app to run instead of its own.
//!
//! Many frameworks (Rails, Laravel, Express's `method-override`, Spring's
//! `HiddenHttpMethodFilter`, Symfony, ASP.NET) let a header or a `_method` field change the method
//! the app dispatches. A gateway that decides on the request line alone is bypassed: a caller
//! allowed to `POST` sends `X-HTTP-Method-Override: DELETE` past a rule that keeps `DELETE` for
//! admins. So the engine reads every carrier it can see (headers and the query string; not a form
//! body, which the filter does not read) and, by default, makes the request satisfy the rule of
//! the real method AND the rule of every method named; `method_override: "reject"` refuses any
//! request that carries one.

use crate::error::{Error, Reason};
use crate::extractor::Request;
use crate::upstream::same_normalized;

/// What the engine does with a request that carries a method override.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum MethodOverride {
    /// The request must satisfy the rule of its real method and the rule of every method an
    /// override names (the strictest outcome wins). The override is forwarded unchanged.
    #[default]
    Enforce,
    /// Any request carrying an override is refused with 400 `method_override_refused`.
    Reject,
}

/// The header names (after lower-casing and mapping `_` to `-`) that carry an override.
pub const OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The query (and form) field that carries an override.
pub const OVERRIDE_PARAM: &str = "_method";

/// Most methods one request may name across all its carriers.
pub const MAX_OVERRIDE_METHODS: usize = 8;

/// Every method the request's override carriers name, upper-cased, without duplicates, in the
/// order seen. Empty when the request carries none. A value that is not an HTTP method token,
/// or more than [`MAX_OVERRIDE_METHODS`] of them, is refused (frameworks disagree on how they
/// parse odd values, so the gateway accepts only what every one of them reads the same way).
pub fn override_methods(req: &Request<'_>) -> Result<Vec<String>, Error> {
    let mut methods: Vec<String> = Vec::new();
    let from_headers = req
        .headers
        .iter()
        .filter(|(n, _)| OVERRIDE_HEADERS.iter().any(|h| same_normalized(n, h)))
        .map(|(_, v)| std::borrow::Cow::Borrowed(*v));
    let query = req.path.split_once('?').map_or("", |(_, q)| q);
    let from_query = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case(OVERRIDE_PARAM))
        .map(|(_, v)| v);
    for value in from_headers.chain(from_query) {
        for m in value.split(',') {
            let m = m.trim_matches(|c| c == ' ' || c == '\t');
            if m.is_empty() || !m.bytes().all(crate::syntax::is_tchar) {
                return Err(refused(
                    "a method override names something that is not an HTTP method",
                ));
            }
            let m = m.to_ascii_uppercase();
            if !methods.contains(&m) {
                methods.push(m);
            }
            if methods.len() > MAX_OVERRIDE_METHODS {
                return Err(refused("a method override names too many methods"));
            }
        }
    }
    Ok(methods)
}

/// The refusal for `method_override: "reject"`.
pub fn rejected() -> Error {
    refused("method overrides are refused here (method_override: reject); send the real method")
}

fn refused(message: &str) -> Error {
    Error::new(Reason::MethodOverrideRefused, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods(path: &str, headers: &[(&str, &str)]) -> Result<Vec<String>, Error> {
        override_methods(&Request {
            method: "POST",
            path,
            headers,
        })
    }

    #[test]
    fn no_carrier_means_no_override() {
        assert!(methods("/a?method=DELETE", &[("x-http-methods", "DELETE")])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn every_header_spelling_is_read() {
        for name in [
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "x_http_method_override",
            "X_HTTP-METHOD",
        ] {
            assert_eq!(
                methods("/a", &[(name, "delete")]).unwrap(),
                ["DELETE"],
                "{name}"
            );
        }
    }

    #[test]
    fn lists_repeats_and_query_are_all_read() {
        let got = methods(
            "/a?x=1&_method=PATCH&_METHOD=put",
            &[
                ("x-http-method-override", "DELETE, put"),
                ("x-http-method-override", "GET"),
            ],
        )
        .unwrap();
        assert_eq!(got, ["DELETE", "PUT", "GET", "PATCH"]);
        assert_eq!(methods("/a?_method=DEL%45TE", &[]).unwrap(), ["DELETE"]);
    }

    #[test]
    fn odd_values_and_floods_are_refused() {
        for v in [
            "",
            "DELETE,",
            "DE LETE",
            "DELETE;x",
            "\"DELETE\"",
            "DEL\u{0}ETE",
        ] {
            let e = methods("/a", &[("x-http-method", v)]).unwrap_err();
            assert_eq!(e.reason(), Reason::MethodOverrideRefused, "{v:?}");
            assert_eq!(e.http_status(), 400);
        }
        let many = (0..9)
            .map(|i| format!("M{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(methods("/a", &[("x-http-method", &many)]).is_err());
        let eight = (0..8)
            .map(|i| format!("M{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            methods("/a", &[("x-http-method", &eight)]).unwrap().len(),
            8
        );
    }
}
