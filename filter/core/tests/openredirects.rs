//! Every open-redirect attack string of the shared list (oauth2-proxy's
//! `testdata/openredirects.txt`) is refused, as written and once query-unescaped, under the
//! allow-list oauth2-proxy's own test uses (see ../shared/testdata/README.md).
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used)]

use edgegate::redirect::{RedirectConfig, RedirectPolicy};
use edgegate::Reason;

const LIST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/openredirects.txt"
);

fn policy() -> RedirectPolicy {
    RedirectConfig {
        allowed_hosts: [
            "foo.bar",
            ".bar.foo",
            "port.bar:8080",
            ".sub.port.bar:8080",
            "anyport.bar:*",
            ".sub.anyport.bar:*",
            "www.whitelisteddomain.tld",
            "*.wildcard.sub.port.bar:8080",
            "*.wildcard.sub.anyport.bar:*",
            "*.wildcard.bar",
            "*.wildcard.proxy.foo.bar",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
    .compile()
    .unwrap()
}

/// Query unescaping, as Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte.
fn query_unescape(s: &str) -> String {
    let plus = s.replace('+', " ");
    String::from_utf8_lossy(&percent_encoding::percent_decode_str(&plus).collect::<Vec<u8>>())
        .into_owned()
}

#[test]
fn every_attack_string_is_refused() {
    let text = std::fs::read_to_string(LIST)
        .unwrap_or_else(|e| panic!("cannot read {LIST}: {e} (is ../shared linked?)"));
    let policy = policy();
    let mut checked = 0;
    let mut accepted = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        for candidate in [line.to_string(), query_unescape(line)] {
            checked += 1;
            match policy.check(&candidate) {
                Ok(normalized) => accepted.push(format!("{candidate:?} -> {normalized:?}")),
                Err(e) => assert_eq!(e.reason(), Reason::UnsafeRedirect),
            }
        }
    }
    assert!(
        checked > 1000,
        "only {checked} candidates: is the list complete?"
    );
    assert!(
        accepted.is_empty(),
        "{} open redirects accepted:\n{}",
        accepted.len(),
        accepted.join("\n")
    );
}

#[test]
fn legitimate_return_urls_are_accepted() {
    let policy = policy();
    for (candidate, normalized) in [
        ("/dashboard", "/dashboard"),
        ("/tickets/TRK-1?x=1#y", "/tickets/TRK-1?x=1#y"),
        ("https://foo.bar/x", "https://foo.bar/x"),
        (
            "https://a.sub.anyport.bar:1234/",
            "https://a.sub.anyport.bar:1234/",
        ),
        ("https://bar.foo/", "https://bar.foo/"),
        ("https://x.bar.foo/", "https://x.bar.foo/"),
        ("https://port.bar:8080/", "https://port.bar:8080/"),
        ("https://anyport.bar:1/", "https://anyport.bar:1/"),
        (
            "https://www.whitelisteddomain.tld/",
            "https://www.whitelisteddomain.tld/",
        ),
        ("https://a.wildcard.bar/p", "https://a.wildcard.bar/p"),
        (
            "https://a.wildcard.sub.port.bar:8080/",
            "https://a.wildcard.sub.port.bar:8080/",
        ),
    ] {
        assert_eq!(
            policy
                .check(candidate)
                .unwrap_or_else(|e| panic!("{candidate}: {e}")),
            normalized
        );
    }
    // and the near misses of those
    for candidate in [
        "https://foo.bar:8080/",
        "https://port.bar/",
        "https://wildcard.bar/",
        "https://a.foo.bar/",
        "http://foo.bar/x",
    ] {
        assert!(policy.check(candidate).is_err(), "{candidate}");
    }
}
