//! The real filter (`filter/proxy-wasm`, release .wasm) through whole request lifecycles on the
//! proxy-wasm host: every verdict path, remote key sets over callouts (first fetch, outage,
//! rotation), the token cache, header stripping, magic links, refused configs, hostile input.
//! Credentials are minted with the core's own helpers (HS256 key ring, magic-link issuer, API-key
//! minting) and the p256 crate (ES256 for the remote provider).
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod support;

use edgegate::keyring::{HmacKeyConfig, KeyRing, Secret};
use edgegate::magic::{MagicLinkRequest, Purpose};
use host_tests::{Action, Headers, Host, LocalResponse, Stream};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};
use std::time::Duration;
use support::{counted, filter_host, no_traps_or_stubs, AUD, NOW};

const LOCAL_ISS: &str = "https://local.test";
const IDP: &str = "https://idp.test";
const HS_SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0NQ";
const MAGIC_SECRET: &str = "bWFnaWMtbWFnaWMtbWFnaWMtbWFnaWMtbWFnaWMtbWFnaWMtMTIzNDU";
const SESSION_SECRET: &str = "c2Vzc2lvbi1zZXNzaW9uLXNlc3Npb24tc2Vzc2lvbi0xMjM0NTY3OA";

fn api_key(n: u8) -> String {
    edgegate::apikey::mint("egk_", &[n; 32])
}

fn config(remote: bool) -> Value {
    let mut providers = vec![json!({
        "name": "local",
        "issuer": LOCAL_ISS,
        "audiences": [AUD],
        "algorithms": ["HS256"],
        "shared_secrets": [{"kid": "hs1", "secret": HS_SECRET}],
        "claims": {"roles": ["roles"]}
    })];
    if remote {
        providers.insert(
            0,
            json!({
                "name": "idp",
                "issuer": IDP,
                "audiences": [AUD],
                "algorithms": ["ES256"],
                "remote_jwks": {"jwks_uri": format!("{IDP}/jwks.json")},
                "claims": {"roles": ["roles"]}
            }),
        );
    }
    json!({
        "realm": "edgegate-tests",
        "jwt": {"providers": providers},
        "api_keys": {
            "header": "x-api-key",
            "keys": [
                {"name": "ci", "hash": edgegate::apikey::hash(&api_key(1), None), "roles": ["deployer"]},
                {"name": "ops", "hash": edgegate::apikey::hash(&api_key(2), None), "roles": ["admin"]}
            ]
        },
        "magic_links": {"keys": [{"kid": "m1", "secret": MAGIC_SECRET}]},
        "session": {"keys": [{"kid": "s1", "secret": SESSION_SECRET}]},
        "rules": [
            {"name": "public", "match": {"path": {"prefix": "/public"}}, "require": {"public": true}},
            {"name": "admin", "match": {"path": {"prefix": "/admin"}},
             "credentials": ["session", "jwt", "api_key", "magic_link"], "require": {"roles_any": ["admin"]}},
            {"name": "app", "match": {"path": {"prefix": "/"}},
             "credentials": ["session", "jwt", "api_key", "magic_link"]}
        ]
    })
}

fn wasm() -> std::path::PathBuf {
    host_tests::filter_wasm().unwrap_or_else(|e| panic!("{e}"))
}

fn host_with(cfg: &Value) -> Host {
    // As in envoy/envoy.yaml: the magic-link POST pauses its headers and reads the form.
    filter_host(cfg, |h| h.set_allow_on_headers_stop_iteration(true))
}

fn host() -> Host {
    host_with(&config(false))
}

fn no_traps(host: &Host) {
    no_traps_or_stubs(host);
    assert!(
        host.invalid_header_writes().is_empty(),
        "bad header bytes: {:?}",
        host.invalid_header_writes()
    );
}

fn get(path: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"GET".to_vec()),
        (":path".into(), path.as_bytes().to_vec()),
        (":authority".into(), b"app.test".to_vec()),
        (":scheme".into(), b"https".to_vec()),
    ];
    for (k, v) in extra {
        h.push((k.to_string(), v.as_bytes().to_vec()));
    }
    h
}

fn hs256(claims: Value) -> String {
    let ring = KeyRing::compile(&[HmacKeyConfig {
        kid: "hs1".into(),
        secret: Secret::new(HS_SECRET),
    }])
    .unwrap();
    ring.sign(&serde_json::to_vec(&claims).unwrap()).unwrap()
}

fn local_jwt(sub: &str, extra: Value) -> String {
    let mut c =
        json!({"iss": LOCAL_ISS, "aud": AUD, "sub": sub, "iat": NOW - 10, "exp": NOW + 300});
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    hs256(c)
}

fn es_key(seed: u8) -> SigningKey {
    let mut bytes = [seed; 32];
    bytes[0] = 1;
    SigningKey::from_slice(&bytes).unwrap()
}

fn es_jwk(seed: u8, kid: &str) -> Value {
    let point = es_key(seed).verifying_key().to_encoded_point(false);
    json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": edgegate::b64::encode(point.x().unwrap()),
        "y": edgegate::b64::encode(point.y().unwrap()),
    })
}

fn es256(seed: u8, kid: &str, sub: &str) -> String {
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    let claims = json!({"iss": IDP, "aud": AUD, "sub": sub, "iat": NOW - 10, "exp": NOW + 300, "roles": ["admin"]});
    let signing_input = format!(
        "{}.{}",
        edgegate::b64::encode(serde_json::to_vec(&header).unwrap()),
        edgegate::b64::encode(serde_json::to_vec(&claims).unwrap())
    );
    let sig: Signature = es_key(seed).sign(signing_input.as_bytes());
    format!("{signing_input}.{}", edgegate::b64::encode(sig.to_bytes()))
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// `Bearer` and a valid local HS256 token for `sub` with these roles.
fn local_bearer(sub: &str, roles: &[&str]) -> String {
    bearer(&local_jwt(sub, json!({ "roles": roles })))
}

/// A GET of `path` with `token` as its bearer credential.
fn get_with_bearer(host: &mut Host, path: &str, token: &str) -> Stream {
    host.request(&get(path, &[("authorization", &bearer(token))]))
}

/// Delivers the request headers, which the filter lets through: the headers that went upstream.
/// A failure shows the local reply the filter sent instead.
fn allowed(req: &mut Stream) -> Headers {
    let a = req.headers();
    assert_eq!(a, Action::Continue, "{:?}", req.local_response());
    req.upstream_headers().unwrap()
}

/// A GET of `path` with the ES256 `token`, held while the filter waits for keys (`why`).
fn waiting_for_keys(host: &mut Host, path: &str, token: &str, why: &str) -> Stream {
    let mut req = get_with_bearer(host, path, token);
    assert_eq!(req.headers(), Action::Pause, "{why}");
    req
}

fn local(a: &Action) -> &LocalResponse {
    a.local()
        .unwrap_or_else(|| panic!("expected a local reply, got {a:?}"))
}

fn reason(r: &LocalResponse) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    v["reason"].as_str().unwrap_or_default().to_string()
}

// --- configuration -----------------------------------------------------------------------------

#[test]
fn a_bad_config_is_refused_with_its_errors_logged() {
    let mut host = Host::load(wasm()).unwrap();
    assert!(!host
        .configure(br#"{"jwt": {"providers": [{"name": ""}]}, "nonsense": 1}"#)
        .unwrap());
    assert!(host.logged("config refused"), "{:#?}", host.logs());
    assert!(!host.configure(b"not json at all").unwrap());
    assert!(!host.configure(b"").unwrap());
    // A good config afterwards is accepted on the same root.
    assert!(host
        .configure(serde_json::to_vec(&config(false)).unwrap())
        .unwrap());
    no_traps(&host);
}

#[test]
fn a_login_section_is_served_not_ignored() {
    // (tests/login.rs drives the whole login; this only checks the routes are not ordinary
    // requests any more, as they were when Envoy ignored the section.)
    let mut cfg = config(false);
    cfg["login"] = json!({
        "provider": "local",
        "client_id": "edge",
        "client_secret": "a-client-secret",
        "redirect_uri": "https://app.example.com/auth/callback"
    });
    let mut host = host_with(&cfg);
    assert!(!host.logged("Envoy ignores it"), "{:#?}", host.logs());
    // /auth/login waits for the provider's discovery document, not a 401.
    let mut req = host.request(&get("/auth/login", &[]));
    assert_eq!(req.headers(), Action::Pause, "{:?}", req.local_response());
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        calls[0].headers.get(":path").as_deref(),
        Some("/.well-known/openid-configuration")
    );
    assert_eq!(calls[0].upstream, "local.test");
    no_traps(&host);
}

// --- verdicts ----------------------------------------------------------------------------------

#[test]
fn no_credential_is_401_with_a_challenge_and_a_metric() {
    let mut host = host();
    let mut req = host.request(&get("/app", &[]));
    let a = req.headers();
    let r = local(&a);
    assert_eq!(r.status, 401);
    assert!(r
        .headers
        .get("www-authenticate")
        .unwrap_or_default()
        .contains("edgegate-tests"));
    let code = reason(r);
    assert!(!code.is_empty());
    assert_eq!(
        counted(&mut host, &format!("edgegate_denied.reason.{code}")),
        Some(1)
    );
    assert!(req.upstream_headers().is_none());
    no_traps(&host);
}

#[test]
fn public_paths_pass_and_client_identity_headers_are_stripped() {
    let mut host = host();
    let mut req = host.request(&get(
        "/public/x",
        &[
            ("x-edgegate-subject", "admin"),
            ("X-Edgegate-Roles", "admin"),
            ("accept", "*/*"),
        ],
    ));
    assert_eq!(req.headers(), Action::Continue);
    let up = req.upstream_headers().unwrap();
    assert!(!up.contains("x-edgegate-subject"));
    assert!(!up.contains("x-edgegate-roles"));
    assert_eq!(up.get("accept").as_deref(), Some("*/*"));
    no_traps(&host);
}

/// Any header whose name, lower-cased with `_` read as `-`, is an identity header name: what a
/// CGI-style app (WSGI, Rack, PHP) reads as `HTTP_X_EDGEGATE_ROLES`.
fn identity_like(up: &host_tests::Headers) -> Vec<(String, String)> {
    up.pairs()
        .into_iter()
        .filter(|(n, _)| {
            n.to_ascii_lowercase()
                .replace('_', "-")
                .starts_with("x-edgegate-")
        })
        .collect()
}

const SPELLINGS: [(&str, &str); 6] = [
    ("x_edgegate_roles", "admin"),
    ("X_EDGEGATE_ROLES", "admin"),
    ("x-edgegate_credential", "api_key"),
    ("X_Edgegate-Subject", "root"),
    ("x-edgegate-email", "boss@example.com"),
    ("x_edgegate_dev_mode", "true"),
];

#[test]
fn identity_headers_in_any_spelling_never_reach_the_upstream() {
    let mut host = host();
    let mut req = host.request(&get("/public/x", &SPELLINGS));
    assert_eq!(req.headers(), Action::Continue);
    let up = req.upstream_headers().unwrap();
    assert_eq!(identity_like(&up), vec![], "{up:?}");
    // On an authenticated route only the core's own values arrive, one each.
    let auth = local_bearer("alice", &["staff"]);
    let mut h = SPELLINGS.to_vec();
    h.push(("authorization", &auth));
    let up = allowed(&mut host.request(&get("/app", &h)));
    let mut seen = identity_like(&up);
    seen.sort();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().all(|n| !n.contains('_')),
        "only the core's spelling: {seen:?}"
    );
    assert_eq!(up.get_all("x-edgegate-roles"), vec!["staff"]);
    assert_eq!(up.get_all("x-edgegate-credential"), vec!["jwt"]);
    assert_eq!(up.get_all("x-edgegate-subject"), vec!["alice"]);
    assert!(!up.contains("x-edgegate-email") && !up.contains("x-edgegate-dev-mode"));
    // Spoofed spellings alone authenticate nobody.
    let mut req = host.request(&get("/admin/x", &SPELLINGS));
    assert_eq!(local(&req.headers()).status, 401);
    no_traps(&host);
}

#[test]
fn identity_named_request_trailers_are_removed() {
    let mut host = host();
    let auth = local_bearer("alice", &["staff"]);
    let mut req = host.request(&get("/app/upload", &[("authorization", auth.as_str())]));
    assert_eq!(
        req.send_headers(false),
        Action::Continue,
        "{:?}",
        req.local_response()
    );
    assert_eq!(req.body(b"data", false), Action::Continue);
    let a = req.trailers(&[
        ("x-edgegate-roles", "admin"),
        ("x_edgegate_roles", "admin"),
        ("X-EDGEGATE_SUBJECT", "root"),
        ("grpc-status", "0"),
        ("x-checksum", "abc"),
    ]);
    assert_eq!(a, Action::Continue);
    let t = req.upstream_trailers().expect("trailers went upstream");
    assert_eq!(identity_like(&t), vec![], "{t:?}");
    assert_eq!(t.get("grpc-status").as_deref(), Some("0"));
    assert_eq!(t.get("x-checksum").as_deref(), Some("abc"));
    // Trailers on a public route (no credential) are cleaned the same way.
    let mut req = host.request(&get("/public/x", &[]));
    assert_eq!(req.send_headers(false), Action::Continue);
    assert_eq!(
        req.trailers(&[("X_EDGEGATE_ROLES", "admin")]),
        Action::Continue
    );
    assert_eq!(identity_like(&req.upstream_trailers().unwrap()), vec![]);
    no_traps(&host);
}

#[test]
fn trailers_of_a_request_waiting_for_keys_are_cleaned_before_they_go_on() {
    let mut host = host_with(&config(true));
    let jwt = es256(1, "e1", "alice");
    let mut req = get_with_bearer(&mut host, "/app", &jwt);
    assert_eq!(req.send_headers(false), Action::Pause);
    // allow_on_headers_stop_iteration: the filter sees the trailers while it waits, holds them.
    assert_eq!(
        req.trailers(&[("x_edgegate_roles", "admin"), ("k", "v")]),
        Action::Pause
    );
    assert_eq!(req.upstream_trailers(), None);
    let call = pending_jwks_call(&host);
    answer_jwks(&mut host, call, JSON, &[es_jwk(1, "e1")]);
    assert_eq!(req.state(), Action::Continue, "{:?}", req.local_response());
    let t = req.upstream_trailers().expect("released with the request");
    assert_eq!(identity_like(&t), vec![]);
    assert_eq!(t.get("k").as_deref(), Some("v"));
    assert!(!req.upstream_headers().unwrap().contains("authorization"));
    no_traps(&host);
}

#[test]
fn the_consumed_credential_and_edgegate_cookies_stay_at_the_edge() {
    let mut host = host();
    let auth = local_bearer("alice", &["staff"]);
    let up = allowed(&mut host.request(&get(
        "/app",
        &[
            ("authorization", auth.as_str()),
            ("cookie", "a=1; edgegate_session_refresh=r"),
            ("x-other", "kept"),
            ("cookie", "edgegate_login_st4te=l;b=2 ; c=3"),
        ],
    )));
    assert!(!up.contains("authorization"), "{up:?}");
    assert_eq!(
        up.get_all("cookie"),
        vec!["a=1; b=2; c=3"],
        "one header, in order"
    );
    assert_eq!(up.get("x-other").as_deref(), Some("kept"));
    // An API key in its own header: that header goes, Authorization (another scheme) stays.
    let up = allowed(&mut host.request(&get(
        "/app",
        &[
            ("x-api-key", &api_key(1)),
            ("authorization", "Basic Zm9vOmJhcg=="),
        ],
    )));
    assert!(!up.contains("x-api-key"));
    assert_eq!(
        up.get("authorization").as_deref(),
        Some("Basic Zm9vOmJhcg==")
    );
    // Only edgegate's cookies: no cookie header at all.
    let mut req = host.request(&get("/public/p", &[("cookie", "edgegate_session=x")]));
    assert_eq!(req.headers(), Action::Continue);
    assert!(!req.upstream_headers().unwrap().contains("cookie"));
    no_traps(&host);
}

#[test]
fn forward_true_sends_the_checked_credential_upstream_but_never_edgegate_cookies() {
    let mut cfg = config(false);
    cfg["jwt"]["providers"][0]["forward"] = json!(true);
    cfg["api_keys"]["forward"] = json!(true);
    let mut host = host_with(&cfg);
    let auth = local_bearer("alice", &["staff"]);
    for _ in 0..2 {
        // the second time from the token cache
        let up = allowed(&mut host.request(&get(
            "/app",
            &[
                ("authorization", auth.as_str()),
                ("cookie", "edgegate_session_refresh=r; a=1"),
            ],
        )));
        assert_eq!(up.get("authorization").as_deref(), Some(auth.as_str()));
        assert_eq!(up.get_all("cookie"), vec!["a=1"]);
    }
    let mut req = host.request(&get("/app", &[("x-api-key", &api_key(1))]));
    assert_eq!(req.headers(), Action::Continue);
    assert_eq!(
        req.upstream_headers().unwrap().get("x-api-key"),
        Some(api_key(1))
    );
    no_traps(&host);
}

#[test]
fn headers_over_the_bounds_are_refused_431_never_cut() {
    let mut host = host();
    let token = local_jwt("alice", json!({"roles": ["admin"]}));
    // 96 KiB of filler first, then an identity header and a valid credential: the filter used to
    // copy the first 96 KiB only, so the core saw neither while the upstream got both.
    let filler = "f".repeat(8 * 1024);
    let mut big = get("/public/x", &[]);
    for i in 0..12 {
        big.push((format!("x-fill-{i}"), filler.as_bytes().to_vec()));
    }
    big.push(("x-edgegate-roles".into(), b"admin".to_vec()));
    big.push(("authorization".into(), bearer(&token).into_bytes()));
    let mut req = host.request(&big);
    let a = req.headers();
    let r = local(&a);
    assert_eq!(r.status, 431, "{a:?}");
    assert_eq!(reason(r), "headers_too_large");
    assert!(req.upstream_headers().is_none(), "nothing goes upstream");

    // More than 200 fields, each tiny.
    let mut many = get("/public/x", &[]);
    for i in 0..200 {
        many.push((format!("x-h{i}"), b"v".to_vec()));
    }
    let mut req = host.request(&many);
    let a = req.headers();
    assert_eq!(local(&a).status, 431);
    assert_eq!(reason(local(&a)), "headers_too_large");

    // Just under both bounds: served as usual, identity headers stripped.
    let mut ok = get("/public/x", &[("x-edgegate-roles", "admin")]);
    for i in 0..190 {
        ok.push((format!("x-h{i}"), b"v".to_vec()));
    }
    let mut req = host.request(&ok);
    assert_eq!(req.headers(), Action::Continue);
    assert!(!req.upstream_headers().unwrap().contains("x-edgegate-roles"));
    assert_eq!(
        counted(&mut host, "edgegate_denied.reason.headers_too_large"),
        Some(2)
    );
    no_traps(&host);
}

#[test]
fn connect_is_refused_405() {
    let mut host = host();
    let mut h = get("/public/x", &[]);
    h[0].1 = b"CONNECT".to_vec();
    let mut req = host.request(&h);
    let a = req.headers();
    assert_eq!(local(&a).status, 405, "{a:?}");
    assert_eq!(reason(local(&a)), "method_not_allowed");
    no_traps(&host);
}

#[test]
fn a_valid_local_jwt_is_allowed_with_identity_headers_and_then_served_from_the_cache() {
    let mut host = host();
    let token = local_jwt("alice", json!({"roles": ["admin"]}));
    for round in 0..2 {
        let mut req = host.request(&get(
            "/admin/x",
            &[
                ("authorization", &bearer(&token)),
                ("x-edgegate-subject", "mallory"),
            ],
        ));
        assert_eq!(
            req.headers(),
            Action::Continue,
            "round {round}: {:?}",
            req.local_response()
        );
        let up = req.upstream_headers().unwrap();
        assert_eq!(
            up.get_all("x-edgegate-subject"),
            vec!["alice"],
            "forged copy removed, real one set"
        );
        assert_eq!(up.get("x-edgegate-credential").as_deref(), Some("jwt"));
    }
    assert_eq!(counted(&mut host, "edgegate_cache_miss"), Some(1));
    assert_eq!(counted(&mut host, "edgegate_cache_hit"), Some(1));
    assert_eq!(
        counted(&mut host, "edgegate_allowed.credential.jwt"),
        Some(2)
    );
    no_traps(&host);
}

/// The cached-token allow path is the hot path of a busy filter: it may cross into the host only
/// for what it must do: read the header map once, read the clock, remove the consumed
/// credential, set the identity headers. Not for removals of headers the client never sent, and
/// not per counter (counters go to the host on the root's tick).
#[test]
fn a_cached_token_allow_stays_within_its_host_call_budget() {
    let mut host = host();
    let token = local_jwt("alice", json!({"roles": ["admin"]}));
    let send = |host: &mut Host, extra: &[(&str, &str)]| {
        let auth = bearer(&token);
        let mut h = vec![("authorization", auth.as_str()), ("accept", "*/*")];
        h.extend_from_slice(extra);
        let mut req = host.request(&get("/admin/x", &h));
        host.take_host_calls();
        let up = allowed(&mut req);
        (up, host.take_host_calls())
    };
    send(&mut host, &[]); // the miss: verifies and fills the cache
    send(&mut host, &[]); // the first hit defines its counter
    let (up, calls) = send(&mut host, &[]);
    let count = |name: &str| calls.iter().filter(|c| **c == name).count();
    assert_eq!(
        calls.get(..2),
        Some(
            &[
                "proxy_get_header_map_pairs",
                "proxy_get_current_time_nanoseconds"
            ][..]
        ),
        "{calls:?}"
    );
    assert_eq!(
        count("proxy_remove_header_map_value"),
        1,
        "only the consumed Authorization header: {calls:?}"
    );
    let identity = count("proxy_replace_header_map_value");
    assert_eq!(
        identity,
        calls.len() - 3,
        "the rest sets identity headers: {calls:?}"
    );
    // Subject, email, roles, credential, provider, expiry and the token's id, at most.
    assert!((3..=7).contains(&identity), "{calls:?}");
    assert_eq!(up.get("x-edgegate-subject").as_deref(), Some("alice"));
    assert_eq!(up.get("x-edgegate-roles").as_deref(), Some("admin"));
    assert_eq!(
        up.get("accept").as_deref(),
        Some("*/*"),
        "the rest of the map kept"
    );
    assert!(!up.contains("authorization"), "consumed");
    // The token has no permissions: no empty header for them.
    assert!(!up.contains("x-edgegate-permissions"), "{up:?}");
    // No counter crossed on the requests; the two hits are handed over on the tick.
    assert_eq!(count("proxy_increment_metric"), 0, "{calls:?}");
    assert_eq!(counted(&mut host, "edgegate_cache_hit"), Some(2));
    // A client-sent identity header is removed (one call per name present) and never reaches
    // the upstream beside ours.
    let (up, calls) = send(
        &mut host,
        &[
            ("x-edgegate-subject", "mallory"),
            ("X-Edgegate-Roles", "admin"),
        ],
    );
    assert_eq!(up.get_all("x-edgegate-subject"), vec!["alice"]);
    assert_eq!(up.get_all("x-edgegate-roles"), vec!["admin"]);
    let removed = calls
        .iter()
        .filter(|c| **c == "proxy_remove_header_map_value")
        .count();
    assert_eq!(
        removed, 3,
        "two identity headers and the Authorization: {calls:?}"
    );
    no_traps(&host);
}

#[test]
fn every_jwt_refusal_is_a_local_reply_with_its_reason() {
    let mut host = host();
    let good = local_jwt("bob", json!({}));
    let mut parts: Vec<&str> = good.split('.').collect();
    let bad_sig = {
        let mut s = parts[2].to_string();
        s.replace_range(0..2, if s.starts_with("AA") { "BB" } else { "AA" });
        s
    };
    parts[2] = &bad_sig;
    let cases: Vec<(String, u32)> = vec![
        (parts.join("."), 401),
        (local_jwt("bob", json!({"exp": NOW - 3600})), 401),
        (local_jwt("bob", json!({"aud": "someone-else"})), 401),
        (local_jwt("bob", json!({"iss": "https://evil.test"})), 401),
        (local_jwt("bob", json!({"nbf": NOW + 3600})), 401),
        ("not.a.jwt".to_string(), 401),
        (
            format!(
                "{}.{}.",
                edgegate::b64::encode(br#"{"alg":"none"}"#),
                edgegate::b64::encode(br#"{"sub":"x"}"#)
            ),
            401,
        ),
    ];
    let mut reasons = Vec::new();
    for (token, status) in cases {
        let mut req = host.request(&get("/app", &[("authorization", &bearer(&token))]));
        let a = req.headers();
        let r = local(&a);
        assert_eq!(r.status, status, "{token}: {}", r.body_str());
        reasons.push(reason(r));
    }
    assert!(reasons.iter().all(|r| !r.is_empty()), "{reasons:?}");
    // A valid token lacking the admin role on /admin: 403.
    let mut req = host.request(&get("/admin", &[("authorization", &bearer(&good))]));
    assert_eq!(local(&req.headers()).status, 403);
    no_traps(&host);
}

#[test]
fn api_keys_are_checked() {
    let mut host = host();
    let up = allowed(&mut host.request(&get("/admin/deploy", &[("x-api-key", &api_key(2))])));
    assert_eq!(up.get("x-edgegate-credential").as_deref(), Some("api_key"));
    let mut req = host.request(&get("/admin/deploy", &[("x-api-key", &api_key(1))]));
    assert_eq!(local(&req.headers()).status, 403, "ci key lacks admin");
    let mut req = host.request(&get("/app", &[("x-api-key", &api_key(9))]));
    assert_eq!(local(&req.headers()).status, 401);
    no_traps(&host);
}

// --- remote key sets ---------------------------------------------------------------------------

fn jwks(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

/// Answers the key-set fetch `token` with 200, `headers` and a JWKS of `keys`.
fn answer_jwks(host: &mut Host, token: u32, headers: &[(&str, &str)], keys: &[Value]) {
    host.respond_http_call(token, 200, headers, &jwks(keys))
        .unwrap();
}

fn pending_jwks_call(host: &Host) -> u32 {
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1, "expected one JWKS fetch: {calls:#?}");
    let c = &calls[0];
    assert_eq!(c.headers.get(":path").as_deref(), Some("/jwks.json"));
    assert!(c.upstream.starts_with("idp.test"), "cluster {}", c.upstream);
    c.token
}

/// A host with the remote provider whose first key fetch is out (`.1`, its token), and a GET of
/// `path` with an ES256 token for `sub` (`.2`, key `e1`) that waits for it (`.3`).
fn waiting_for_the_first_fetch(path: &str, sub: &str) -> (Host, u32, String, Stream) {
    let mut host = host_with(&config(true));
    let token = pending_jwks_call(&host);
    let jwt = es256(7, "e1", sub);
    let req = waiting_for_keys(&mut host, path, &jwt, "waits for keys");
    (host, token, jwt, req)
}

#[test]
fn first_request_waits_for_the_first_key_fetch_then_resumes() {
    let (mut host, token, jwt, req) = waiting_for_the_first_fetch("/admin", "carol");
    answer_jwks(&mut host, token, JSON, &[es_jwk(7, "e1")]);
    assert_eq!(req.state(), Action::Continue, "{:?}", req.local_response());
    // The paused decision was resumed, not started again.
    assert_eq!(host.decisions_started().unwrap(), Some(1));
    let up = req.upstream_headers().unwrap();
    assert_eq!(up.get("x-edgegate-subject").as_deref(), Some("carol"));
    assert_eq!(up.get("x-edgegate-provider").as_deref(), Some("idp"));
    assert_eq!(counted(&mut host, "edgegate_jwks_fetch_ok"), Some(1));

    // Another worker VM verifies with the published keys without fetching first.
    let mut other = host.spawn_vm().unwrap();
    assert!(other
        .configure(serde_json::to_vec(&config(true)).unwrap())
        .unwrap());
    allowed(&mut get_with_bearer(&mut other, "/app", &jwt));
    no_traps(&host);
    no_traps(&other);
}

#[test]
fn key_fetch_outage_fails_closed_with_503_after_the_wait() {
    let (mut host, token, _, req) = waiting_for_the_first_fetch("/app", "dave");
    host.fail_http_call(token).unwrap();
    assert_eq!(counted(&mut host, "edgegate_jwks_fetch_failed"), Some(1));
    host.advance(Duration::from_secs(6)).unwrap();
    let a = req.state();
    let r = local(&a);
    assert_eq!(r.status, 503, "{}", r.body_str());
    // Answer any retry with a server error: still 503 for new requests after their wait, no trap.
    for c in host.pending_http_calls() {
        host.respond_http_call(c.token, 500, &[], b"oops").unwrap();
    }
    no_traps(&host);
}

/// A host whose remote provider fetched its first key set (key `e1`), with early refetches on an
/// unknown kid at most every 10 s.
fn remote_host_with_key_e1() -> Host {
    let mut cfg = config(true);
    cfg["jwt"]["providers"][0]["remote_jwks"]["unknown_kid_min_interval_seconds"] = json!(10);
    let mut host = host_with(&cfg);
    answer_the_first_fetch_with_key_e1(&mut host);
    host
}

fn answer_the_first_fetch_with_key_e1(host: &mut Host) {
    let token = pending_jwks_call(host);
    answer_jwks(host, token, &[], &[es_jwk(7, "e1")]);
}

#[test]
fn a_rotated_kid_waits_for_the_early_refetch_and_works_on_its_first_request() {
    let mut host = remote_host_with_key_e1();
    // Within the rate limit after the first fetch, an unknown kid is refused at once.
    let rotated = es256(8, "e2", "erin");
    let mut req = host.request(&get("/app", &[("authorization", &bearer(&rotated))]));
    let a = req.headers();
    assert_eq!(local(&a).status, 401);
    assert_eq!(reason(local(&a)), "unknown_kid");
    // Early refetches are rate-limited: wait out the interval after the first fetch.
    host.advance(Duration::from_secs(11)).unwrap();
    assert!(
        host.pending_http_calls().is_empty(),
        "no regular refresh due yet"
    );
    // The IdP rotated to e2: the first request with it waits for the refetch and goes through,
    // on the decision it started (resumed after the refetch, not decided again).
    let before = host.decisions_started().unwrap().unwrap();
    let subject = the_rotated_key_is_refetched_for_this_request(&mut host, &rotated);
    assert_eq!(subject.as_deref(), Some("erin"));
    assert_eq!(host.decisions_started().unwrap(), Some(before + 1));
    // A forged kid right after: the refetch budget is spent, so 401 at once (no wait, no fetch).
    let forged = es256(9, "e3", "eve");
    let mut req = host.request(&get("/app", &[("authorization", &bearer(&forged))]));
    let a = req.headers();
    assert_eq!(reason(local(&a)), "unknown_kid");
    host.advance(Duration::from_millis(300)).unwrap();
    assert!(host.pending_http_calls().is_empty());
    no_traps(&host);
}

#[test]
fn an_unknown_kid_the_refetch_does_not_bring_is_401_after_the_refetch() {
    let mut host = remote_host_with_key_e1();
    host.advance(Duration::from_secs(11)).unwrap();
    let forged = es256(9, "e3", "eve");
    let req = waiting_for_keys(&mut host, "/app", &forged, "");
    host.advance(Duration::from_millis(200)).unwrap();
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1);
    answer_jwks(&mut host, calls[0].token, &[], &[es_jwk(7, "e1")]);
    let a = req.state();
    assert_eq!(local(&a).status, 401, "not a 503: keys are there");
    assert_eq!(reason(local(&a)), "unknown_kid");
    // An IdP that fails the refetch: the waiting request gets its 401 too, without waiting out
    // the whole wait_for_keys_ms.
    host.advance(Duration::from_secs(11)).unwrap();
    let req = waiting_for_keys(&mut host, "/app", &forged, "");
    host.advance(Duration::from_millis(200)).unwrap();
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1);
    host.fail_http_call(calls[0].token).unwrap();
    assert_eq!(reason(local(&req.state())), "unknown_kid");
    no_traps(&host);
}

/// The IdP rotates right after this VM's first fetch; nothing about refetching is configured.
#[test]
fn a_key_rotated_right_after_the_first_fetch_is_followed_within_30_s_by_default() {
    let mut host = host_with(&config(true));
    let t0 = host.now();
    answer_the_first_fetch_with_key_e1(&mut host);
    let rotated = es256(8, "e2", "erin");
    // Within 30 s of the first fetch: refused at once, no fetch.
    for at in [10, 29] {
        host.advance(Duration::from_secs(t0 + at - host.now()))
            .unwrap();
        let mut req = host.request(&get("/app", &[("authorization", &bearer(&rotated))]));
        let a = req.headers();
        assert_eq!(reason(local(&a)), "unknown_kid", "at {at} s");
        host.advance(Duration::from_millis(200)).unwrap();
        assert!(host.pending_http_calls().is_empty(), "at {at} s");
    }
    // 30 s after the first fetch (the default, not 60): the request waits for the refetch.
    host.advance(Duration::from_secs(t0 + 30 - host.now()))
        .unwrap();
    the_rotated_key_is_refetched_for_this_request(&mut host, &rotated);
    no_traps(&host);
}

/// Failed fetches count as attempts: the unknown-kid interval runs from the last one, and a
/// failing IdP (backing off) is still asked once per interval for a rotated key.
#[test]
fn the_unknown_kid_interval_runs_from_the_last_fetch_attempt_failed_ones_included() {
    let mut host = host_with(&config(true));
    let t0 = host.now();
    let token = pending_jwks_call(&host);
    answer_jwks(
        &mut host,
        token,
        &[("cache-control", "max-age=60")],
        &[es_jwk(7, "e1")],
    );
    // The IdP goes down: the refresh at 60 s and its retries (after 5, 10, 20 s) fail.
    let mut attempts = Vec::new();
    while attempts.len() < 4 {
        host.advance(Duration::from_millis(500)).unwrap();
        for c in host.pending_http_calls() {
            attempts.push(host.now() - t0);
            host.fail_http_call(c.token).unwrap();
        }
        assert!(host.now() - t0 < 200, "attempts so far: {attempts:?}");
    }
    assert_eq!(attempts, [60, 65, 75, 95]);
    // The IdP is back with a rotated key. 29 s after the last (failed) attempt: refused at
    // once, no fetch (the last success is long past: it is the attempt that counts).
    let rotated = es256(8, "e2", "erin");
    host.advance(Duration::from_secs(t0 + 124 - host.now()))
        .unwrap();
    let mut req = host.request(&get("/app", &[("authorization", &bearer(&rotated))]));
    assert_eq!(reason(local(&req.headers())), "unknown_kid");
    host.advance(Duration::from_millis(200)).unwrap();
    assert!(host.pending_http_calls().is_empty());
    // 30 s after it: the early refetch goes out, ahead of the 40 s backoff, and the rotated
    // key works on this request.
    host.advance(Duration::from_secs(t0 + 125 - host.now()))
        .unwrap();
    the_rotated_key_is_refetched_for_this_request(&mut host, &rotated);
    no_traps(&host);
}

// --- magic links -------------------------------------------------------------------------------

fn magic_token(host_cfg: &Value, jti: u8) -> String {
    let engine = edgegate::Engine::from_json(&serde_json::to_vec(host_cfg).unwrap()).unwrap();
    let links = engine.magic_links().unwrap();
    links
        .issue(
            &MagicLinkRequest {
                email: Some("frank@example.com".into()),
                sub: None,
                purpose: Some(Purpose::Login),
                path_scope: None,
                target: Some("/app/home".into()),
                ttl: None,
            },
            NOW,
            &[jti; 16],
        )
        .unwrap()
}

/// A magic-link form POST whose headers were delivered (more to come): the stream and what the
/// filter did with the headers.
fn form_post(host: &mut Host) -> (Stream, Action) {
    let mut req = host.request(&with_method(
        "POST",
        "/auth/magic",
        &[("content-type", "application/x-www-form-urlencoded")],
    ));
    let first = req.send_headers(false);
    (req, first)
}

/// (headers action, body action) of a magic-link form POST.
fn post_form_raw(host: &mut Host, body: &[u8]) -> (Action, Action) {
    let (mut req, first) = form_post(host);
    let after = req.body(body, true);
    (first, after)
}

fn post_form(host: &mut Host, body: &[u8]) -> Action {
    let (mut req, first) = form_post(host);
    if first != Action::Pause && first != Action::Continue {
        return first;
    }
    let after = req.body(body, true);
    assert_ne!(
        (&first, &after),
        (&Action::Pause, &Action::Pause),
        "the magic-link POST hangs: on_request_headers returned Pause, and Envoy (StopAllIteration) \
         does not call on_request_body until the stream is resumed. Return Continue from the headers \
         callback for this POST and decide in on_request_body (Pause there until end_of_stream)."
    );
    after
}

#[test]
fn magic_link_get_shows_a_page_and_post_logs_in_exactly_once() {
    let cfg = config(false);
    let mut host = host_with(&cfg);
    let token = magic_token(&cfg, 3);
    let mut req = host.request(&get(&format!("/auth/magic?token={token}"), &[]));
    let a = req.headers();
    assert_eq!(local(&a).status, 200, "a GET never consumes");
    let form = format!("token={token}");
    let a = post_form(&mut host, form.as_bytes());
    let r = local(&a);
    assert_eq!(r.status, 302, "{a:?}");
    let cookie = r.headers.get("set-cookie").unwrap();
    assert!(r.headers.get("location").unwrap().ends_with("/app/home"));
    // Replays are refused, in this VM and in another one.
    assert!(local(&post_form(&mut host, form.as_bytes())).status >= 400);
    let mut other = host.spawn_vm().unwrap();
    assert!(other.configure(serde_json::to_vec(&cfg).unwrap()).unwrap());
    assert!(local(&post_form(&mut other, form.as_bytes())).status >= 400);
    // The session cookie opens the app.
    let cookie_pair = cookie.split(';').next().unwrap().to_string();
    allowed(&mut host.request(&get("/app/home", &[("cookie", &cookie_pair)])));
    no_traps(&host);
    no_traps(&other);
}

// --- hostile input -----------------------------------------------------------------------------

#[test]
fn hostile_requests_never_trap() {
    let mut host = host_with(&config(true));
    let long = "A".repeat(200_000);
    let deep = format!(
        "{}.{}.sig",
        edgegate::b64::encode(br#"{"alg":"HS256","kid":"hs1"}"#),
        edgegate::b64::encode(format!("{}{}", "[".repeat(5000), "]".repeat(5000)))
    );
    let mut cases: Vec<Vec<(String, Vec<u8>)>> = vec![
        get("/app", &[("authorization", "Bearer")]),
        get("/app", &[("authorization", "Bearer ")]),
        get("/app", &[("authorization", &format!("Bearer {long}"))]),
        get("/app", &[("authorization", &bearer(&deep))]),
        get(
            "/app",
            &[
                ("authorization", "Basic Zm9vOmJhcg=="),
                ("authorization", "Bearer x.y.z"),
            ],
        ),
        get("/app", &[("cookie", &format!("edgegate_session={long}"))]),
        get("/app", &[("x-api-key", &long)]),
        get(&format!("/auth/magic?token={long}"), &[]),
        get("/auth/magic?token=%00%ff", &[]),
        get("/%2e%2e/admin", &[]),
        get("", &[]),
        get("*", &[]),
    ];
    let mut raw = get("/app", &[]);
    raw.push(("authorization".into(), b"Bearer \xff\xfe\x00".to_vec()));
    raw.push(("x-edgegate-subject".into(), b"\xc3\x28".to_vec()));
    cases.push(raw);
    let mut many = get("/app", &[]);
    for i in 0..2000 {
        many.push((format!("x-h{i}"), b"v".to_vec()));
    }
    cases.push(many);
    let mut no_pseudo: Vec<(String, Vec<u8>)> =
        vec![("authorization".into(), b"Bearer a.b.c".to_vec())];
    cases.push(std::mem::take(&mut no_pseudo));
    for (i, h) in cases.iter().enumerate() {
        let mut req = host.request(h);
        let a = req.headers();
        assert!(!matches!(a, Action::Failed(_)), "case {i} trapped: {a:?}");
        if let Action::LocalResponse(r) = &a {
            assert!(r.status >= 200, "case {i}");
        }
    }
    // Hostile magic-link form bodies.
    for body in [
        &b"token="[..],
        b"token=%zz",
        b"\xff\xfe",
        &vec![b'a'; 100_000][..],
        b"token=a&token=b",
    ] {
        let (a, b) = post_form_raw(&mut host, body);
        assert!(
            !matches!(a, Action::Failed(_)) && !matches!(b, Action::Failed(_)),
            "form {:?} trapped",
            String::from_utf8_lossy(&body[..body.len().min(20)])
        );
    }
    // Hostile key-set responses.
    let token = pending_jwks_call(&host);
    host.respond_http_call(
        token,
        200,
        &[],
        b"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": 1}]}",
    )
    .unwrap();
    host.advance(Duration::from_secs(400)).unwrap();
    for c in host.pending_http_calls() {
        host.respond_http_call(c.token, 200, &[], &vec![b'{'; 2_000_000])
            .unwrap();
    }
    no_traps(&host);
}

// --- method override and dev mode (issue 11) ----------------------------------------------------

fn with_method(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h = get(path, extra);
    h[0].1 = method.as_bytes().to_vec();
    h
}

#[test]
fn a_method_override_must_pass_the_rule_of_the_method_it_names() {
    let mut cfg = config(false);
    cfg["rules"] = json!([
        {"name": "delete", "match": {"path": {"prefix": "/tickets"}, "methods": ["DELETE"]},
         "credentials": ["jwt"], "require": {"roles_any": ["admin"]}},
        {"name": "write", "match": {"path": {"prefix": "/tickets"}},
         "credentials": ["jwt"], "require": {"roles_any": ["staff", "admin"]}}
    ]);
    let mut host = host_with(&cfg);
    let staff = local_bearer("sam", &["staff"]);
    let admin = local_bearer("ada", &["admin"]);
    let mut req = host.request(&with_method(
        "POST",
        "/tickets/1",
        &[("authorization", &staff)],
    ));
    assert_eq!(req.headers(), Action::Continue);
    for (path, carrier) in [
        ("/tickets/1", vec![("X-HTTP-Method-Override", "DELETE")]),
        ("/tickets/1", vec![("x_http_method", "DELETE")]),
        ("/tickets/1", vec![("x-method-override", "put,delete")]),
        ("/tickets/1?_method=DELETE", vec![]),
    ] {
        let mut headers = vec![("authorization", staff.as_str())];
        headers.extend(carrier.iter().copied());
        let mut req = host.request(&with_method("POST", path, &headers));
        let a = req.headers();
        assert_eq!(local(&a).status, 403, "{path} {carrier:?}");
        assert_eq!(reason(local(&a)), "missing_role");
        assert!(req.upstream_headers().is_none());
        headers[0].1 = &admin;
        let mut req = host.request(&with_method("POST", path, &headers));
        assert_eq!(req.headers(), Action::Continue, "{path} {carrier:?}");
    }
    cfg["method_override"] = json!("reject");
    let mut host = host_with(&cfg);
    let mut req = host.request(&with_method(
        "POST",
        "/tickets/1",
        &[
            ("authorization", &admin),
            ("x-http-method-override", "PATCH"),
        ],
    ));
    let a = req.headers();
    assert_eq!(
        (local(&a).status, reason(local(&a)).as_str()),
        (400, "method_override_refused")
    );
    no_traps(&host);
}

#[test]
fn dev_mode_is_refused_beside_real_credentials_and_answers_loopback_hosts_only() {
    let mut host = Host::load(wasm()).unwrap();
    let mut cfg = config(false);
    cfg["dev_mode"] = json!({"enabled": true, "identity": {"subject": "dev", "roles": ["admin"]}});
    // api_keys, magic_links and a non-loopback issuer: each one refuses the config.
    assert!(!host.configure(serde_json::to_vec(&cfg).unwrap()).unwrap());
    assert!(host.logged("dev mode is refused"), "{:#?}", host.logs());
    let dev = json!({
        "jwt": {"providers": [{"name": "local", "issuer": "http://localhost:8080", "audiences": [AUD],
                "algorithms": ["HS256"], "shared_secrets": [{"kid": "hs1", "secret": HS_SECRET}]}]},
        "dev_mode": cfg["dev_mode"],
        "rules": [{"name": "admin", "match": {"path": {"prefix": "/admin"}}, "credentials": ["jwt"],
                   "require": {"roles_any": ["admin"]}}]
    });
    let mut host = host_with(&dev);
    for authority in ["localhost:10000", "127.0.0.1", "[::1]:8080"] {
        let mut h = get("/admin/x", &[("x-edgegate-subject", "mallory")]);
        h[2].1 = authority.as_bytes().to_vec();
        let mut req = host.request(&h);
        assert_eq!(req.headers(), Action::Continue, "{authority}");
        let up = req.upstream_headers().unwrap();
        assert_eq!(up.get_all("x-edgegate-subject"), vec!["dev"]);
        assert_eq!(up.get("x-edgegate-dev-mode").as_deref(), Some("true"));
    }
    for authority in ["app.test", "localhost.app.test", "10.1.2.3"] {
        let mut h = get("/admin/x", &[("host", "localhost")]);
        h[2].1 = authority.as_bytes().to_vec();
        let mut req = host.request(&h);
        let a = req.headers();
        assert_eq!(local(&a).status, 403, "{authority}");
        assert_eq!(reason(local(&a)), "dev_mode_not_local");
        assert!(req.upstream_headers().is_none());
    }
    no_traps(&host);
}

/// A token signed by the rotated key `e2` waits for the one refetch it pulls forward, and the
/// refetched set (e1, e2) lets it through. Returns the subject the upstream received.
fn the_rotated_key_is_refetched_for_this_request(host: &mut Host, rotated: &str) -> Option<String> {
    let req = waiting_for_keys(host, "/app", rotated, "waits for the refetch");
    host.advance(Duration::from_millis(200)).unwrap();
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1, "one refetch after an unknown kid");
    answer_jwks(
        host,
        calls[0].token,
        &[],
        &[es_jwk(7, "e1"), es_jwk(8, "e2")],
    );
    assert_eq!(req.state(), Action::Continue, "{:?}", req.local_response());
    req.upstream_headers()?.get("x-edgegate-subject")
}

// --- the remote API-key list (api_keys.remote) ---------------------------------------------------

/// A config whose API keys come from a remote list too (refreshed every 10 s, stale after 60 s).
fn key_list_config() -> Value {
    let mut cfg = config(false);
    cfg["api_keys"]["remote"] = json!({
        "url": "http://127.0.0.1:9/keys.json", "cluster": "keys",
        "refresh_interval_seconds": 10, "refresh_max_seconds": 20, "max_stale_seconds": 60,
        "retry_initial_seconds": 1, "retry_max_seconds": 5
    });
    cfg
}

/// The list of keys `api_key(n)` named `name`.
fn key_list(keys: &[(&str, u8)]) -> Vec<u8> {
    let entries: Vec<Value> = keys
        .iter()
        .map(|(name, n)| json!({"name": name, "hash": edgegate::apikey::hash(&api_key(*n), None)}))
        .collect();
    serde_json::to_vec(&json!({ "keys": entries })).unwrap()
}

/// The one pending fetch of the list: its token and `If-None-Match`.
fn pending_list_call(host: &Host) -> (u32, Option<String>) {
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1, "expected one key-list fetch: {calls:#?}");
    let c = &calls[0];
    assert_eq!(c.upstream, "keys");
    assert_eq!(c.headers.get(":path").as_deref(), Some("/keys.json"));
    (c.token, c.headers.get("if-none-match"))
}

/// The status and reason (or subject) of a GET /app with `key`.
fn key_answer(host: &mut Host, key: &str) -> (u32, String) {
    let mut req = host.request(&get("/app", &[("x-api-key", key)]));
    match req.headers() {
        Action::Continue => {
            let up = req.upstream_headers().unwrap();
            (200, up.get("x-edgegate-subject").unwrap_or_default())
        }
        a => {
            let r = local(&a);
            (r.status, reason(r))
        }
    }
}

#[test]
fn a_remote_key_list_is_shared_by_the_vms_revoked_at_the_next_refresh_and_fails_closed_when_stale()
{
    let mut host = host_with(&key_list_config());
    let (token, etag) = pending_list_call(&host);
    assert_eq!(etag, None, "the first fetch is unconditional");
    // No list yet: a listed key is 503, the inline key works.
    assert_eq!(
        key_answer(&mut host, &api_key(5)),
        (503, "api_keys_unavailable".into())
    );
    assert_eq!(key_answer(&mut host, &api_key(1)), (200, "ci".into()));
    host.respond_http_call(
        token,
        200,
        &[("etag", "\"v1\"")],
        &key_list(&[("leaky", 5), ("steady", 6)]),
    )
    .unwrap();
    assert!(host.logged("api_keys.remote: fetched a list of 2 key(s)"));
    assert_eq!(key_answer(&mut host, &api_key(5)), (200, "leaky".into()));

    // Another worker's VM uses the published list without fetching it itself.
    let mut other = host.spawn_vm().unwrap();
    assert!(other
        .configure(serde_json::to_vec(&key_list_config()).unwrap())
        .unwrap());
    assert_eq!(key_answer(&mut other, &api_key(6)), (200, "steady".into()));

    // The refresh is conditional; a 304 keeps the list.
    host.advance(Duration::from_secs(10)).unwrap();
    // (Counters are read after a tick: a filter may hand them to Envoy on its tick.)
    assert!(host.metric("edgegate_api_keys_fetch_ok").unwrap_or(0) >= 1);
    let (token, etag) = pending_list_call(&host);
    assert_eq!(etag.as_deref(), Some("\"v1\""));
    host.respond_http_call(token, 304, &[], b"").unwrap();
    assert_eq!(key_answer(&mut host, &api_key(5)), (200, "leaky".into()));

    // Revoked at the server: refused in both VMs after the next refresh.
    host.advance(Duration::from_secs(10)).unwrap();
    let (token, _) = pending_list_call(&host);
    host.respond_http_call(
        token,
        200,
        &[("etag", "\"v2\"")],
        &key_list(&[("steady", 6)]),
    )
    .unwrap();
    let last_success = host.now();
    assert_eq!(
        key_answer(&mut host, &api_key(5)),
        (401, "api_key_unknown".into())
    );
    other.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(
        key_answer(&mut other, &api_key(5)),
        (401, "api_key_unknown".into())
    );
    assert_eq!(key_answer(&mut other, &api_key(6)), (200, "steady".into()));

    // An outage: the last list holds until 60 s after the last success, then listed keys are 503.
    for _ in 0..100 {
        for c in host.pending_http_calls() {
            host.fail_http_call(c.token).unwrap();
        }
        if host.now() >= last_success + 59 {
            break;
        }
        host.advance(Duration::from_secs(1)).unwrap();
    }
    assert_eq!(key_answer(&mut other, &api_key(6)), (200, "steady".into()));
    host.advance(Duration::from_secs(2)).unwrap();
    assert!(host.metric("edgegate_api_keys_fetch_failed").unwrap_or(0) >= 3);
    other.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(
        key_answer(&mut other, &api_key(6)),
        (503, "api_keys_unavailable".into())
    );
    assert_eq!(
        key_answer(&mut host, &api_key(6)),
        (503, "api_keys_unavailable".into())
    );
    assert_eq!(
        key_answer(&mut host, &api_key(1)),
        (200, "ci".into()),
        "inline keys still work"
    );
    no_traps(&host);
    no_traps(&other);
}
