//! The one definition of "this machine": `localhost`, `127.0.0.0/8` and `::1`.
//!
//! Used wherever a rule depends on it: plain `http://` is allowed for loopback key-set, discovery
//! and login endpoints only; dev mode needs loopback issuers and answers loopback requests only.
//! (These checks used to disagree: one allowed only `127.0.0.1`, others all of 127/8.)

use std::net::{Ipv4Addr, Ipv6Addr};

/// True for `localhost` (any case), an IPv4 address in 127/8 and `::1`.
pub fn is_loopback_host(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// True for an `http://` or `https://` URL whose host is loopback, as the `url` crate parses it
/// (so `http://localhost@evil.example` is evil.example, and not loopback).
pub fn is_loopback_url(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https") && url.host().is_some_and(is_loopback_host)
    })
}

/// True for a loopback `:authority`/`Host` value: `localhost`, `127.x.x.x` or `[::1]`, with an
/// optional port. Stricter than URL parsing on purpose: no userinfo, no trailing dot, no
/// hexadecimal or shortened IPv4 forms, nothing else.
pub fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => {
            return match rest.split_once(']') {
                Some((ip, port)) if is_port_suffix(port) => ip
                    .parse::<Ipv6Addr>()
                    .is_ok_and(|ip| is_loopback_host(url::Host::Ipv6(ip))),
                _ => false,
            }
        }
        None => match authority.split_once(':') {
            Some((h, port)) if is_port_suffix(&format!(":{port}")) => h,
            Some(_) => return false,
            None => authority,
        },
    };
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        host.parse::<Ipv4Addr>()
            .is_ok_and(|ip| is_loopback_host(url::Host::Ipv4(ip)))
    } else {
        is_loopback_host(url::Host::Domain(host))
    }
}

/// Empty, or `:` and 1 to 5 digits.
fn is_port_suffix(s: &str) -> bool {
    s.is_empty()
        || s.strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        for ok in [
            "http://localhost:8080/realms/x",
            "https://127.0.0.1",
            "http://127.9.9.9:1/k",
            "http://[::1]:9000/",
            "http://LOCALHOST",
        ] {
            assert!(is_loopback_url(ok), "{ok}");
        }
        for bad in [
            "https://localhost.evil.com",
            "https://evil.com/localhost",
            "http://localhost@evil.com",
            "https://127.0.0.1.evil.com",
            "ftp://localhost",
            "https://accounts.google.com",
            "http://10.0.0.1",
            "not a url",
        ] {
            assert!(!is_loopback_url(bad), "{bad}");
        }
    }

    #[test]
    fn loopback_authorities() {
        for ok in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.1.2.3:10000",
            "[::1]",
            "[::1]:443",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "localhost.",
            "localhost.evil.com",
            "evil.com",
            "user@localhost",
            "localhost:",
            "localhost:8080:1",
            "localhost:80x",
            "127.0.0.1.evil.com",
            "128.0.0.1",
            "0x7f.0.0.1",
            "127.1",
            "[::2]",
            "[::1",
            "[::1]x",
            "::1",
            "10.0.0.1",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }
}
