//! Return-URL safety: where edgegate may send a browser after login (`rd`), a magic link's
//! `target`, or logout.
//!
//! [`RedirectPolicy::check`] accepts exactly two shapes and refuses everything else with
//! `UnsafeRedirect`:
//!
//! 1. **A same-site path**: starts with a single `/`.
//! 2. **An absolute URL** `https://host[:port]/...` (or `http://` for `localhost`, `127.0.0.1`
//!    and `[::1]` only) whose host and port are on the allow-list, without user info (`@`),
//!    and whose host is written exactly as a strict URL parser (WHATWG, the `url` crate) reads
//!    it: no percent-encoded, numeric-shorthand (`0x7f.1`), or otherwise normalised spellings.
//!
//! For both, the candidate must be printable ASCII without spaces or backslashes (hosts with
//! non-ASCII names are allowed in their punycode `xn--` form), and the part after the host —
//! as written and after each of up to 3 rounds of percent-decoding — must contain no control
//! characters, no backslash, no non-alphanumeric non-ASCII characters (look-alike slashes,
//! invisible formatting), and no `//`, `/./`, `/../` (also with spaces between), so that no
//! decoding or path normalisation along the way can turn it into `//evil.example`.
//! A query that carries a URL (`?next=https://...`) is therefore refused too.
//!
//! # Allow-list entries
//!
//! | entry                | matches |
//! |----------------------|---------|
//! | `desk.example.com`   | exactly that host, on the scheme's default port |
//! | `desk.example.com:8443` | that host on port 8443 |
//! | `desk.example.com:*` | that host on any port |
//! | `.example.com`       | `example.com` and every subdomain (default port) |
//! | `*.example.com`      | every subdomain of `example.com`, not `example.com` itself |
//! | `localhost:*`, `127.0.0.1:3000`, `[::1]:8080` | IP literals and `localhost` as written |
//!
//! Port suffixes combine with every form (`.sub.example.com:*`). Entries are case-insensitive.
//!
//! ```yaml
//! redirects:
//!   allowed_hosts: [desk.example.com, ".example.org", "localhost:*"]
//! ```

use url::{Host, Position, Url};

use crate::error::{ConfigError, Error, Reason};

const MAX_CANDIDATE_BYTES: usize = 4096;
const DECODE_ROUNDS: usize = 3;
const LOCAL_BASE: &str = "https://edgegate.invalid/";

/// The `redirects` config section.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Hosts absolute return URLs may point at: `host`, `host:port`, `host:*`,
    /// `.domain` (domain and subdomains), `*.domain` (subdomains only). Relative paths are
    /// always allowed. Default: none.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Exact(String),
    /// `.domain`: stored as `.domain`.
    DomainAndSubdomains(String),
    /// `*.domain`: stored as `.domain`.
    Subdomains(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    Default,
    Exact(u16),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    host: HostRule,
    port: PortRule,
}

/// The compiled redirect policy.
#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    allowed: Vec<Allowed>,
}

fn unsafe_redirect() -> Error {
    Error::new(
        Reason::UnsafeRedirect,
        "the return URL must be a path starting with a single `/` or an https URL on an allowed host",
    )
}

fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
        // a numeric last label makes WHATWG parse the host as IPv4
        && !d
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_entry(entry: &str) -> Option<Allowed> {
    let e = entry.trim().to_ascii_lowercase();
    // split a port suffix, minding IPv6 brackets
    let (host, port) = match e.rfind(':') {
        Some(i) if !e.ends_with(']') => (e.get(..i)?, Some(e.get(i + 1..)?)),
        _ => (e.as_str(), None),
    };
    let port = match port {
        None => PortRule::Default,
        Some("*") => PortRule::Any,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return None,
                Ok(n) => PortRule::Exact(n),
            }
        }
        Some(_) => return None,
    };
    let host = if let Some(d) = host.strip_prefix("*.") {
        is_domain(d).then(|| HostRule::Subdomains(format!(".{d}")))?
    } else if let Some(d) = host.strip_prefix('.') {
        is_domain(d).then(|| HostRule::DomainAndSubdomains(format!(".{d}")))?
    } else {
        // an exact host must be written the way the URL parser normalises it
        let parsed = Host::parse(host).ok()?.to_string();
        if parsed != host {
            return None;
        }
        if !(is_domain(host) || host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok())
        {
            return None;
        }
        HostRule::Exact(parsed)
    };
    Some(Allowed { host, port })
}

/// Whether every byte is printable ASCII other than space and backslash.
fn plain_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\')
}

/// Whether `s` has `/` followed by optional spaces and `/`, or `/./`, or `/../`.
fn has_slash_trick(s: &[u8]) -> bool {
    s.iter().enumerate().any(|(i, &b)| {
        if b != b'/' {
            return false;
        }
        let rest = s.get(i + 1..).unwrap_or_default();
        let after_spaces = rest.iter().position(|c| *c != b' ');
        if after_spaces.and_then(|j| rest.get(j)) == Some(&b'/') {
            return true;
        }
        rest.starts_with(b"./") || rest.starts_with(b"../")
    })
}

/// One layer of the tail: no controls, no backslash, only alphanumeric non-ASCII, valid UTF-8,
/// no slash tricks.
fn layer_ok(bytes: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return false;
    };
    s.chars().all(|c| {
        if c.is_ascii() {
            !c.is_ascii_control() && c != '\\'
        } else {
            c.is_alphanumeric()
        }
    }) && !has_slash_trick(bytes)
}

/// Checks what follows the host (or a whole relative path) as written and after each round of
/// percent-decoding; refuses if it still decodes further after the last round.
fn tail_ok(tail: &str) -> bool {
    let mut layer: Vec<u8> = tail.as_bytes().to_vec();
    for _ in 0..=DECODE_ROUNDS {
        if !layer_ok(&layer) {
            return false;
        }
        let next: Vec<u8> = percent_encoding::percent_decode(&layer).collect();
        if next == layer {
            return true;
        }
        layer = next;
    }
    false
}

fn is_local(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => *d == "localhost",
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

impl RedirectConfig {
    /// Validates the allow-list (errors at `allowed_hosts[i]`).
    pub fn compile(&self) -> Result<RedirectPolicy, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut allowed = Vec::with_capacity(self.allowed_hosts.len());
        for (i, e) in self.allowed_hosts.iter().enumerate() {
            // `*.com` or `.com`: every site under a top-level domain is an open redirect.
            let domain = e.strip_prefix("*.").or_else(|| e.strip_prefix('.'));
            if let Some(d) = domain.map(|d| d.split(':').next().unwrap_or(d)) {
                if !d.is_empty() && !d.contains('.') {
                    errors.push(ConfigError::new(
                        format!("allowed_hosts[{i}]"),
                        format!(
                            "{e:?} allows every site under the top-level domain .{d}; name your \
                             own domain (e.g. *.example.{d})"
                        ),
                    ));
                    continue;
                }
            }
            match parse_entry(e) {
                Some(a) => allowed.push(a),
                None => errors.push(ConfigError::new(
                    format!("allowed_hosts[{i}]"),
                    "expected `host`, `host:port`, `host:*`, `.domain` or `*.domain` (lowercase ASCII; punycode for international names)",
                )),
            }
        }
        if errors.is_empty() {
            Ok(RedirectPolicy { allowed })
        } else {
            Err(errors)
        }
    }
}

impl RedirectPolicy {
    /// A policy that only accepts relative paths.
    pub fn relative_only() -> Self {
        RedirectPolicy {
            allowed: Vec::new(),
        }
    }

    fn host_allowed(&self, url: &Url) -> bool {
        let Some(host) = url.host() else {
            return false;
        };
        let Some(host_str) = url.host_str() else {
            return false;
        };
        self.allowed.iter().any(|a| {
            let host_ok = match (&a.host, &host) {
                (HostRule::Exact(h), _) => h == host_str,
                (HostRule::DomainAndSubdomains(d), Host::Domain(_)) => {
                    host_str.ends_with(d.as_str()) || d.get(1..) == Some(host_str)
                }
                (HostRule::Subdomains(d), Host::Domain(_)) => {
                    host_str.ends_with(d.as_str()) && host_str.len() > d.len()
                }
                _ => false,
            };
            let port_ok = match a.port {
                PortRule::Default => url.port().is_none(),
                PortRule::Exact(p) => url.port_or_known_default() == Some(p),
                PortRule::Any => true,
            };
            host_ok && port_ok
        })
    }

    /// Checks a return URL and returns its normalised form, or `UnsafeRedirect`.
    pub fn check(&self, candidate: &str) -> Result<String, Error> {
        if candidate.is_empty() || candidate.len() > MAX_CANDIDATE_BYTES || !plain_ascii(candidate)
        {
            return Err(unsafe_redirect());
        }
        if candidate.starts_with('/') {
            return self.check_relative(candidate);
        }
        self.check_absolute(candidate)
    }

    fn check_relative(&self, candidate: &str) -> Result<String, Error> {
        if !tail_ok(candidate) {
            return Err(unsafe_redirect());
        }
        let base = Url::parse(LOCAL_BASE).map_err(|_| unsafe_redirect())?;
        let joined = base.join(candidate).map_err(|_| unsafe_redirect())?;
        if joined.host_str() != base.host_str() || joined.port().is_some() {
            return Err(unsafe_redirect());
        }
        let path = &joined[Position::BeforePath..];
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(unsafe_redirect());
        }
        Ok(path.to_string())
    }

    fn check_absolute(&self, candidate: &str) -> Result<String, Error> {
        let lower_scheme = |s: &str| {
            candidate
                .get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
        };
        let rest = if lower_scheme("https://") {
            candidate.get(8..)
        } else if lower_scheme("http://") {
            candidate.get(7..)
        } else {
            None
        }
        .ok_or_else(unsafe_redirect)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at_checked(end).ok_or_else(unsafe_redirect)?;
        if authority.is_empty() || authority.contains('@') || !tail_ok(tail) {
            return Err(unsafe_redirect());
        }
        let url = Url::parse(candidate).map_err(|_| unsafe_redirect())?;
        let host = url.host().ok_or_else(unsafe_redirect)?;
        match url.scheme() {
            "https" => {}
            "http" if is_local(&host) => {}
            _ => return Err(unsafe_redirect()),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(unsafe_redirect());
        }
        // the host must be written exactly as the parser reads it
        let host_str = url.host_str().ok_or_else(unsafe_redirect)?;
        let written = authority.to_ascii_lowercase();
        let explicit_default = url
            .port_or_known_default()
            .map(|p| format!("{host_str}:{p}"));
        let as_parsed = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_string(),
        };
        if written != as_parsed && Some(&written) != explicit_default.as_ref() {
            return Err(unsafe_redirect());
        }
        if !self.host_allowed(&url) {
            return Err(unsafe_redirect());
        }
        Ok(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::error_paths;

    fn policy(hosts: &[&str]) -> RedirectPolicy {
        RedirectConfig {
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
        }
        .compile()
        .unwrap()
    }

    fn p() -> RedirectPolicy {
        policy(&[
            "desk.example.com",
            ".corp.example",
            "*.apps.example",
            "api.example.com:8443",
            "dev.example.com:*",
            "localhost:*",
            "127.0.0.1:3000",
        ])
    }

    fn ok(c: &str) -> String {
        p().check(c)
            .unwrap_or_else(|e| panic!("{c:?} refused: {e}"))
    }

    fn refused(c: &str) {
        let e = p().check(c).expect_err(c);
        assert_eq!(e.reason(), Reason::UnsafeRedirect, "{c}");
        assert_eq!(e.http_status(), 400);
        assert!(!e.message().contains(c) || c.is_empty());
    }

    #[test]
    fn relative_paths() {
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/dashboard"), "/dashboard");
        assert_eq!(ok("/tickets/TRK-1?x=1#y"), "/tickets/TRK-1?x=1#y");
        assert_eq!(ok("/search?q=a%20b&page=2"), "/search?q=a%20b&page=2");
        assert_eq!(ok("/wiki/Caf%C3%A9"), "/wiki/Caf%C3%A9");
        assert_eq!(ok("/files/a%2Fb"), "/files/a%2Fb");
        assert_eq!(ok("/a/.."), "/");
        for c in [
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "/\\/evil.com",
            "/a\\b",
            "/ /evil.com",
            "/\t/evil.com",
            "/%09/evil.com",
            "/%2f%2fevil.com",
            "/%2F/evil.com",
            "/%5cevil.com",
            "/%252f%252fevil.com",
            "/%25252f%25252fevil.com",
            "/%2525252f%2525252fevil.com",
            "/./evil.com",
            "/.//evil.com",
            "/../evil.com",
            "/%2e%2e/evil.com",
            "/a/%2e/b",
            "/%20/evil.com",
            "/%0d%0aSet-Cookie:x",
            "/%00",
            "/%e2%88%95evil.com",          // U+2215 division slash
            "/%ef%bc%8f%ef%bc%8fevil.com", // fullwidth solidus
            "/%e2%80%aeevil",              // RTL override
            "/%ff",                        // not UTF-8
            "/x?next=https://evil.com",
            "/dashboard ",
            "/dash\u{7f}",
        ] {
            refused(c);
        }
    }

    #[test]
    fn absolute_urls() {
        assert_eq!(ok("https://desk.example.com"), "https://desk.example.com/");
        assert_eq!(
            ok("HTTPS://DESK.example.com/x"),
            "https://desk.example.com/x"
        );
        assert_eq!(
            ok("https://desk.example.com:443/x"),
            "https://desk.example.com/x"
        );
        // already in canonical form: returned as given
        for url in [
            "https://desk.example.com/x?y=1#z",
            "https://corp.example/",
            "https://a.b.corp.example/",
            "https://x.apps.example/",
            "https://api.example.com:8443/v1",
            "https://dev.example.com:9999/",
            "https://dev.example.com/",
            "http://localhost:5173/cb",
            "http://127.0.0.1:3000/",
        ] {
            assert_eq!(ok(url), url);
        }
        for c in [
            "https://evil.com/",
            "https://desk.example.com.evil.com/",
            "https://evildesk.example.com/",
            "https://desk.example.com:8443/",
            "https://apps.example/", // *. excludes the apex
            "https://xcorp.example/",
            "https://api.example.com/", // port 8443 only
            "http://desk.example.com/", // http only for localhost
            "http://127.0.0.1:3001/",
            "https://desk.example.com@evil.com/",
            "https://evil.com@desk.example.com/",
            "https://user:pw@desk.example.com/",
            "https://@desk.example.com/",
            "https:desk.example.com",
            "https:/desk.example.com",
            "https:///desk.example.com",
            "https:\\\\desk.example.com",
            "https://desk%2eexample.com/",
            "https://desk.example.com%2f@evil.com/",
            "https://desk.example.com./",
            "https://DESK.example.com:0443/",
            "https://desk.example.com//evil.com",
            "https://desk.example.com/%2f%2fevil.com",
            "https://desk.example.com/a\\b",
            "https://d\u{0435}sk.example.com/", // Cyrillic e
            "https://ｄｅｓｋ.example.com/",    // fullwidth, NFKC-folds to desk
            "https://xn--dsk-hdd.example.com/",
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://desk.example.com/",
            "//desk.example.com/",
            "desk.example.com",
            "",
            " /dashboard",
        ] {
            refused(c);
        }
        // http on localhost still needs the allow-list
        assert!(policy(&[]).check("http://localhost/").is_err());
        assert!(RedirectPolicy::relative_only()
            .check("https://desk.example.com/")
            .is_err());
        assert_eq!(RedirectPolicy::relative_only().check("/x").unwrap(), "/x");
        // IP hosts must be written canonically
        let ip = policy(&["127.0.0.1:*", "[::1]:*"]);
        assert!(ip.check("http://127.0.0.1:8080/").is_ok());
        assert!(ip.check("http://[::1]:8080/").is_ok());
        assert!(ip.check("http://0x7f.0.0.1:8080/").is_err());
        assert!(ip.check("http://2130706433:8080/").is_err());
        assert!(ip.check("http://127.1:8080/").is_err());
    }

    #[test]
    fn allow_list_validation() {
        let errs = RedirectConfig {
            allowed_hosts: vec![
                "ok.example.com".into(),
                "bad host".into(),
                "*.".into(),
                "host:99999".into(),
                "host:0".into(),
                "host:x".into(),
                "https://host".into(),
                "é.example".into(),
                "*.1.2".into(),
                "0x7f.1".into(),
                "a/b".into(),
                "".into(),
            ],
        }
        .compile()
        .unwrap_err();
        assert_eq!(
            error_paths(&errs),
            (1..12)
                .map(|i| format!("allowed_hosts[{i}]"))
                .collect::<Vec<_>>()
        );
        // a wildcard over a whole top-level domain is an open redirect
        for tld in ["*.com", ".com", "*.com:443", ".io:*"] {
            let errs = RedirectConfig {
                allowed_hosts: vec!["desk.example.com".into(), tld.into()],
            }
            .compile()
            .unwrap_err();
            assert_eq!(error_paths(&errs), ["allowed_hosts[1]"], "{tld}");
            assert!(
                errs[0].to_string().contains("top-level domain"),
                "{tld}: {errs:?}"
            );
        }
        assert!(RedirectConfig {
            allowed_hosts: vec!["*.example.com".into(), ".example.com:8443".into()],
        }
        .compile()
        .is_ok());
        let p = policy(&["Desk.Example.COM", "xn--bcher-kva.example"]);
        assert!(p.check("https://desk.example.com/").is_ok());
        assert!(p.check("https://xn--bcher-kva.example/").is_ok());
        assert!(p.check("https://bücher.example/").is_err()); // unicode must be sent as punycode
    }
}
