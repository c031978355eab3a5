//! The whole decision, end to end through `Engine::decide`: every credential kind, every rule
//! requirement, the refusal shapes (status, WWW-Authenticate, JSON body), redirects for browsers,
//! magic-link login, dev mode, remote keys and config refusals with field paths.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use edgegate::apikey;
use edgegate::b64;
use edgegate::engine::{Engine, Verdict};
use edgegate::extractor::Request;
use edgegate::jwk::KeySet;
use edgegate::magic::{MagicLinkRequest, Purpose};
use edgegate::verifier::{KeyLookup, NoRemoteKeys};
use edgegate::{Identity, UnixTime};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const NOW: u64 = 1_800_000_000;
const JWT_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-jwt-secret";
const ISS: &str = "https://idp.example.com";

fn secret(s: &str) -> String {
    b64::encode(format!("{s:-<40}"))
}

fn hs256(header: Value, claims: Value, key: &[u8]) -> String {
    let si = format!(
        "{}.{}",
        b64::encode(header.to_string()),
        b64::encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(si.as_bytes());
    format!("{si}.{}", b64::encode(mac.finalize().into_bytes()))
}

fn jwt(claims: Value) -> String {
    let mut base =
        json!({"iss": ISS, "sub": "alice", "aud": "desk", "iat": NOW - 5, "exp": NOW + 600});
    for (k, v) in claims.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    hs256(json!({"alg": "HS256", "typ": "JWT"}), base, JWT_SECRET)
}

fn api_key() -> String {
    apikey::mint("egk_", &[7u8; 32])
}

fn config() -> Value {
    json!({
        "realm": "desk",
        "jwt": {"providers": [{
            "name": "idp", "issuer": ISS, "audiences": ["desk"], "algorithms": ["HS256"],
            "shared_secrets": [{"secret": b64::encode(JWT_SECRET)}],
            "claims": {"roles": ["roles"], "permissions": ["permissions"]}
        }]},
        "api_keys": {"keys": [
            {"name": "ci", "hash": apikey::hash(&api_key(), None), "roles": ["staff"], "scope": "/api/"},
            {"name": "old", "hash": apikey::hash(&apikey::mint("egk_", &[8u8; 32]), None), "expires_at": NOW - 1}
        ], "header": "x-api-key"},
        "session": {"keys": [{"kid": "s1", "secret": secret("session")}]},
        "magic_links": {"keys": [{"kid": "m1", "secret": secret("magic")}]},
        "redirects": {"allowed_hosts": ["desk.example.com"]},
        "rules": [
            {"name": "health", "match": {"path": {"exact": "/healthz"}}, "require": {"public": true}},
            {"name": "admin", "match": {"path": {"prefix": "/admin"}}, "credentials": ["session", "jwt"],
             "require": {"roles_any": ["admin"], "mfa": {"amr_any": ["otp", "hwk"]}}, "login_url": "/auth/login"},
            {"name": "tickets", "match": {"path": {"glob": "/tickets/*/**"}},
             "credentials": ["magic_link", "session", "jwt"]},
            {"name": "api", "match": {"path": {"prefix": "/api"}, "methods": ["GET", "POST"]},
             "credentials": ["jwt", "api_key"], "require": {"permissions": []}},
            {"name": "reports", "match": {"path": {"prefix": "/reports"}}, "credentials": ["jwt"],
             "require": {"permissions": ["reports:read"], "scopes": ["reports"]}}
        ],
        "default_rule": {"credentials": ["session", "jwt", "api_key"], "login_url": "/auth/login"}
    })
}

fn engine_from(cfg: &Value) -> Engine {
    Engine::from_json(cfg.to_string().as_bytes()).unwrap_or_else(|e| panic!("config refused:\n{e}"))
}

fn engine() -> Engine {
    engine_from(&config())
}

fn decide_with(
    e: &Engine,
    keys: &dyn KeyLookup,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Verdict {
    let mut cache = e.new_cache();
    e.decide(
        &Request {
            method,
            path,
            headers,
        },
        keys,
        &mut cache,
        NOW,
    )
}

fn decide(e: &Engine, method: &str, path: &str, headers: &[(&str, &str)]) -> Verdict {
    decide_with(e, &NoRemoteKeys, method, path, headers)
}

fn allowed(v: Verdict) -> (Option<Identity>, Vec<(String, String)>) {
    match v {
        Verdict::Allow {
            identity, headers, ..
        } => (
            identity.map(std::sync::Arc::unwrap_or_clone),
            headers.to_vec(),
        ),
        other => panic!("expected Allow, got {other:?}"),
    }
}

fn denied(v: Verdict) -> edgegate::Denial {
    match v {
        Verdict::Deny(d) => d,
        other => panic!("expected Deny, got {other:?}"),
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn public_routes_pass_without_and_with_bad_credentials_but_never_carry_identity() {
    let e = engine();
    let (id, h) = allowed(decide(&e, "GET", "/healthz", &[]));
    assert!(id.is_none() && h.is_empty());
    let (id, _) = allowed(decide(
        &e,
        "GET",
        "/healthz",
        &[("authorization", "Bearer garbage.x.y")],
    ));
    assert!(id.is_none());
    for name in [
        "x-edgegate-subject",
        "x-edgegate-roles",
        "x-edgegate-dev-mode",
        "x-edgegate-credential",
    ] {
        assert!(
            e.strip_headers().iter().any(|s| s == name),
            "{name} must be stripped"
        );
    }
}

#[test]
fn missing_credential_is_401_with_a_bare_bearer_challenge() {
    let d = denied(decide(&e_api(), "GET", "/api/x", &[]));
    assert_eq!(d.status, 401);
    assert_eq!(d.reason.code(), "credential_missing");
    assert_eq!(
        header(&d.headers, "www-authenticate"),
        Some("Bearer realm=\"desk\"")
    );
    let body: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(body["reason"], "credential_missing");
}

fn e_api() -> Engine {
    engine()
}

#[test]
fn browsers_are_sent_to_login_with_a_safe_return_url() {
    let e = engine();
    let d = denied(decide(
        &e,
        "GET",
        "/admin/users?page=2",
        &[("accept", "text/html,application/xhtml+xml")],
    ));
    assert_eq!(d.status, 302);
    assert_eq!(
        header(&d.headers, "location"),
        Some("/auth/login?rd=%2Fadmin%2Fusers%3Fpage%3D2")
    );
    // API clients get the 401 instead.
    let d = denied(decide(
        &e,
        "GET",
        "/admin/users",
        &[("accept", "application/json")],
    ));
    assert_eq!(d.status, 401);
}

#[test]
fn jwt_identity_reaches_upstream_headers() {
    let e = engine();
    let t = jwt(
        json!({"roles": ["agent"], "permissions": ["tickets:read"], "email": "alice@example.com"}),
    );
    let auth = format!("Bearer {t}");
    let (id, h) = allowed(decide(
        &e,
        "GET",
        "/api/tickets",
        &[("authorization", &auth)],
    ));
    let id = id.unwrap();
    assert_eq!(id.subject, "alice");
    assert_eq!(header(&h, "x-edgegate-subject"), Some("alice"));
    assert_eq!(header(&h, "x-edgegate-email"), Some("alice@example.com"));
    assert_eq!(header(&h, "x-edgegate-roles"), Some("agent"));
    assert_eq!(header(&h, "x-edgegate-permissions"), Some("tickets:read"));
    assert_eq!(header(&h, "x-edgegate-credential"), Some("jwt"));
    assert_eq!(header(&h, "x-edgegate-provider"), Some("idp"));
    assert_eq!(
        header(&h, "x-edgegate-expires"),
        Some((NOW + 600).to_string().as_str())
    );
}

#[test]
fn a_malformed_credential_is_401_not_a_fall_through() {
    let e = engine();
    let session = e
        .sessions()
        .unwrap()
        .seal(
            &Identity::new("bob", edgegate::CredentialKind::Session, "idp"),
            NOW,
        )
        .unwrap();
    let cookie = format!("edgegate_session={session}");
    // /api takes jwt first: a broken bearer token must not fall through to anything else.
    let d = denied(decide(
        &e,
        "GET",
        "/api/x",
        &[
            ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30"),
            ("cookie", &cookie),
        ],
    ));
    assert_eq!((d.status, d.reason.code()), (401, "malformed_token"));
    assert!(header(&d.headers, "www-authenticate")
        .unwrap()
        .contains("error=\"invalid_request\""));
}

#[test]
fn credential_of_a_kind_the_rule_does_not_take() {
    let e = engine();
    let key = api_key();
    let d = denied(decide(&e, "GET", "/reports/q3", &[("x-api-key", &key)]));
    assert_eq!(
        (d.status, d.reason.code()),
        (401, "credential_not_accepted")
    );
}

#[test]
fn api_keys_by_header_and_bearer_with_scope() {
    let e = engine();
    let key = api_key();
    let (id, h) = allowed(decide(&e, "GET", "/api/tickets", &[("x-api-key", &key)]));
    assert_eq!(id.unwrap().subject, "ci");
    assert_eq!(header(&h, "x-edgegate-key-name"), Some("ci"));
    assert_eq!(header(&h, "x-edgegate-credential"), Some("api_key"));
    let bearer = format!("Bearer {key}");
    allowed(decide(
        &e,
        "POST",
        "/api/tickets",
        &[("authorization", &bearer)],
    ));
    // The key is scoped to /api/: the default rule takes api keys, but not outside the scope.
    let d = denied(decide(&e, "GET", "/dashboard", &[("x-api-key", &key)]));
    assert_eq!((d.status, d.reason.code()), (403, "out_of_scope"));
    // typo: checksum fails before any lookup
    let mut typo = key.clone();
    let c = typo.pop().unwrap();
    typo.push(if c == 'a' { 'b' } else { 'a' });
    let d = denied(decide(&e, "GET", "/api/x", &[("x-api-key", &typo)]));
    assert_eq!(d.reason.code(), "api_key_checksum");
    let unknown = apikey::mint("egk_", &[9u8; 32]);
    let d = denied(decide(&e, "GET", "/api/x", &[("x-api-key", &unknown)]));
    assert_eq!(d.reason.code(), "api_key_unknown");
    let old = apikey::mint("egk_", &[8u8; 32]);
    let d = denied(decide(&e, "GET", "/api/x", &[("x-api-key", &old)]));
    assert_eq!(d.reason.code(), "api_key_expired");
    // a method the api rule does not list falls to the default rule, which takes api keys
    // (within the key's scope)
    allowed(decide(&e, "DELETE", "/api/tickets", &[("x-api-key", &key)]));
}

#[test]
fn roles_permissions_scopes_and_mfa_are_403() {
    let e = engine();
    let agent = format!(
        "Bearer {}",
        jwt(json!({"roles": ["agent"], "amr": ["pwd", "otp"]}))
    );
    let d = denied(decide(&e, "GET", "/admin", &[("authorization", &agent)]));
    assert_eq!((d.status, d.reason.code()), (403, "missing_role"));
    assert!(header(&d.headers, "www-authenticate")
        .unwrap()
        .contains("insufficient_scope"));
    let admin_no_mfa = format!(
        "Bearer {}",
        jwt(json!({"roles": ["admin"], "amr": ["pwd"]}))
    );
    let d = denied(decide(
        &e,
        "GET",
        "/admin",
        &[("authorization", &admin_no_mfa)],
    ));
    assert_eq!((d.status, d.reason.code()), (403, "mfa_required"));
    let admin = format!(
        "Bearer {}",
        jwt(json!({"roles": ["admin"], "amr": ["pwd", "hwk"]}))
    );
    allowed(decide(
        &e,
        "GET",
        "/admin/users",
        &[("authorization", &admin)],
    ));

    let no_perm = format!("Bearer {}", jwt(json!({"scope": "reports"})));
    let d = denied(decide(
        &e,
        "GET",
        "/reports/q3",
        &[("authorization", &no_perm)],
    ));
    assert_eq!((d.status, d.reason.code()), (403, "missing_permission"));
    let no_scope = format!(
        "Bearer {}",
        jwt(json!({"permissions": ["reports:read"], "scope": "openid"}))
    );
    let d = denied(decide(
        &e,
        "GET",
        "/reports/q3",
        &[("authorization", &no_scope)],
    ));
    assert_eq!((d.status, d.reason.code()), (403, "missing_scope"));
    let ok = format!(
        "Bearer {}",
        jwt(json!({"permissions": ["reports:read"], "scope": "openid reports"}))
    );
    allowed(decide(&e, "GET", "/reports/q3", &[("authorization", &ok)]));
}

#[test]
fn path_confusion_is_refused_before_any_rule() {
    let e = engine();
    for p in ["/healthz/..%2fadmin", "//admin", "/a/%2e%2e/%2e%2e/admin"] {
        let d = denied(decide(&e, "GET", p, &[]));
        assert_eq!(d.status, 400, "{p}");
    }
    // dot segments resolve: this is /admin, not a public path
    let d = denied(decide(&e, "GET", "/healthz/../admin", &[]));
    assert_eq!(d.status, 401);
}

#[test]
fn magic_link_confirm_page_then_single_login_then_scoped_session() {
    let e = engine();
    let magic = e.magic_links().unwrap();
    let req = MagicLinkRequest {
        email: Some("guest@example.com".into()),
        sub: None,
        purpose: Some(Purpose::Guest),
        scope: Some("/tickets/TRK-2849".into()),
        target: Some("/tickets/TRK-2849/view".into()),
        ttl: None,
    };
    let token = magic.issue(&req, NOW, &[1u8; 16]).unwrap();
    let path = format!("/auth/magic?token={token}");
    // GET never consumes: it answers a confirm page that POSTs the token back.
    let page = denied(decide(&e, "GET", &path, &[]));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("method=\"post\""));
    assert!(page.body.contains(&token));
    assert!(matches!(
        decide(&e, "POST", "/auth/magic", &[]),
        Verdict::MagicLinkForm
    ));
    let login = e
        .magic_link_consume(format!("token={token}").as_bytes(), NOW)
        .unwrap();
    assert_eq!(login.location, "/tickets/TRK-2849/view");
    assert!(
        login.set_cookie.contains("HttpOnly")
            && login.set_cookie.contains("Secure")
            && login.set_cookie.contains("SameSite=Lax")
    );
    assert!(!login.jti.is_empty());
    assert!(login.expires_at > NOW);
    let cookie = login.set_cookie.split(';').next().unwrap().to_string();
    let (id, h) = allowed(decide(
        &e,
        "GET",
        "/tickets/TRK-2849/view",
        &[("cookie", &cookie)],
    ));
    assert_eq!(id.unwrap().email.as_deref(), Some("guest@example.com"));
    assert_eq!(header(&h, "x-edgegate-credential"), Some("magic_link"));
    // ...and nothing else
    let d = denied(decide(
        &e,
        "GET",
        "/tickets/TRK-28490/view",
        &[("cookie", &cookie)],
    ));
    assert_eq!((d.status, d.reason.code()), (403, "out_of_scope"));
    let d = denied(decide(&e, "GET", "/dashboard", &[("cookie", &cookie)]));
    assert_eq!(d.status, 403);
    // a tampered token is refused at the POST
    let bad = e
        .magic_link_consume(format!("token={token}x").as_bytes(), NOW)
        .unwrap_err();
    assert_eq!(bad.status, 401);
    // a magic link's target must pass the redirect policy
    let evil = MagicLinkRequest {
        target: Some("https://evil.example.net/".into()),
        ..req
    };
    let t = magic.issue(&evil, NOW, &[2u8; 16]).unwrap();
    let d = e
        .magic_link_consume(format!("token={t}").as_bytes(), NOW)
        .unwrap_err();
    assert_eq!(d.reason.code(), "unsafe_redirect");
}

#[test]
fn dev_mode_is_loud_and_refused_with_real_issuers() {
    let mut cfg = config();
    cfg["dev_mode"] = json!({"enabled": true, "identity": {"subject": "dev", "roles": ["admin"]}});
    let err = Engine::from_json(cfg.to_string().as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .contains("dev_mode.enabled: dev mode is refused"),
        "{err}"
    );
    cfg["jwt"]["providers"][0]["issuer"] = json!("http://localhost:8080/realms/dev");
    let e = engine_from(&cfg);
    assert!(e.warnings().iter().any(|w| w.contains("DEV MODE")));
    let (id, h) = allowed(decide(&e, "GET", "/admin", &[]));
    assert_eq!(id.unwrap().subject, "dev");
    assert_eq!(header(&h, "x-edgegate-dev-mode"), Some("true"));
    assert_eq!(
        e.dev_mode_response_header().map(|(k, _)| k),
        Some("x-edgegate-dev-mode")
    );
    assert!(engine().dev_mode_response_header().is_none());
}

struct OneSet(KeySet);
impl KeyLookup for OneSet {
    fn keys(&self, provider: &str) -> Option<&KeySet> {
        (provider == "remote").then_some(&self.0)
    }
}

fn eddsa(kid: Option<&str>, claims: Value) -> (String, Value) {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let pair = Ed25519KeyPair::from_seed_unchecked(&[42u8; 32]).unwrap();
    let mut header = json!({"alg": "EdDSA"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    let si = format!(
        "{}.{}",
        b64::encode(header.to_string()),
        b64::encode(claims.to_string())
    );
    let sig = pair.sign(si.as_bytes());
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": b64::encode(pair.public_key().as_ref())});
    (format!("{si}.{}", b64::encode(sig.as_ref())), jwk)
}

#[test]
fn remote_keys_wait_then_verify_and_unknown_kid_asks_for_a_refetch() {
    let mut cfg = config();
    cfg["jwt"]["providers"] = json!([{
        "name": "remote", "issuer": ISS, "algorithms": ["EdDSA"],
        "remote_jwks": {"jwks_uri": "https://idp.example.com/jwks"}
    }]);
    let e = engine_from(&cfg);
    assert_eq!(e.remote_key_sources().len(), 1);
    let claims = json!({"iss": ISS, "sub": "a", "exp": NOW + 60});
    let (t, jwk) = eddsa(None, claims.clone());
    let (with_kid, _) = eddsa(Some("k2"), claims);
    let auth = format!("Bearer {t}");
    match decide(&e, "GET", "/api/x", &[("authorization", &auth)]) {
        Verdict::WaitForKeys { provider } => assert_eq!(provider, "remote"),
        other => panic!("expected WaitForKeys, got {other:?}"),
    }
    let keys = OneSet(KeySet::from_jwks_value(&json!({"keys": [jwk]})).unwrap());
    let d = denied(decide_with(
        &e,
        &keys,
        "GET",
        "/api/x",
        &[("authorization", &format!("Bearer {with_kid}"))],
    ));
    assert_eq!(d.reason.code(), "unknown_kid");
    assert_eq!(d.refetch_keys.as_deref(), Some("remote"));
    // no kid, one fitting key: verifies
    let (id, _) = allowed(decide_with(
        &e,
        &keys,
        "GET",
        "/api/x",
        &[("authorization", &auth)],
    ));
    assert_eq!(id.unwrap().key_name.as_deref(), Some("k1"));
    assert_eq!(e.keys_unavailable().status, 503);

    // A host that would refetch now: the unknown kid waits for the refetch instead of a 401.
    struct Refetching(OneSet, UnixTime);
    impl KeyLookup for Refetching {
        fn keys(&self, provider: &str) -> Option<&KeySet> {
            self.0.keys(provider)
        }
        fn may_refetch(&self, provider: &str, now: UnixTime) -> bool {
            provider == "remote" && now >= self.1
        }
    }
    let kid_auth = format!("Bearer {with_kid}");
    let refetching = Refetching(keys, NOW);
    match decide_with(
        &e,
        &refetching,
        "GET",
        "/api/x",
        &[("authorization", &kid_auth)],
    ) {
        Verdict::WaitForKeys { provider } => assert_eq!(provider, "remote"),
        other => panic!("expected WaitForKeys, got {other:?}"),
    }
    // a known kid never waits
    allowed(decide_with(
        &e,
        &refetching,
        "GET",
        "/api/x",
        &[("authorization", &auth)],
    ));
    // not yet allowed (rate limit): refused at once, still asking for a refetch
    let later = Refetching(refetching.0, NOW + 1);
    let d = denied(decide_with(
        &e,
        &later,
        "GET",
        "/api/x",
        &[("authorization", &kid_auth)],
    ));
    assert_eq!(d.reason.code(), "unknown_kid");
    assert_eq!(d.refetch_keys.as_deref(), Some("remote"));
}

#[test]
fn config_errors_name_the_field_and_the_fix() {
    let mut cfg = config();
    cfg["jwt"]["providers"] = json!([
        {"name": "a", "issuer": "https://a", "jwks": {"keys": []}},
        {"name": "b", "issuer": "https://b", "jwks": {"keys": [
            {"kty": "oct", "kid": "k2", "k": b64::encode(JWT_SECRET)},
            {"kty": "oct", "kid": "k2", "k": b64::encode(JWT_SECRET)}
        ]}, "algorithms": ["HS256"]}
    ]);
    cfg["rules"][1]["require"]["roles_any"] = json!(["admin"]);
    cfg["rules"][0]["match"]["path"] = json!({"exact": "healthz"});
    let err = Engine::from_json(cfg.to_string().as_bytes()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("jwt.providers[1].jwks"), "{text}");
    assert!(text.contains("kid \"k2\" appears twice"), "{text}");
    assert!(text.contains("rules[0].match"), "{text}");
    // every error is reported at once
    assert!(err.0.len() >= 2, "{text}");
    // a typo in a field name is caught with its path
    let err = Engine::from_json(
        br#"{"jwt": {"providers": [{"name": "a", "issuer": "x", "audience": "y"}]}}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("jwt.providers[0]"), "{err}");
    assert!(
        err.to_string().contains("unknown field `audience`"),
        "{err}"
    );
}

#[test]
fn spoofable_header_values_are_encoded() {
    let e = engine();
    let t = format!(
        "Bearer {}",
        jwt(json!({"sub": "alice\r\nx-admin: 1", "roles": ["a,b"]}))
    );
    match decide(&e, "GET", "/api/x", &[("authorization", &t)]) {
        Verdict::Allow { headers, .. } => {
            for (_, v) in headers.iter() {
                assert!(!v.contains('\r') && !v.contains('\n'), "{v:?}");
            }
        }
        // the claim mapping may also drop values with control characters: both are safe
        Verdict::Deny(d) => assert_eq!(d.reason.code(), "missing_claim"),
        other => panic!("{other:?}"),
    }
}

/// The verified-token cache is keyed by the signature's hash: a token that reuses a cached
/// token's signature with other claims (or the cached claims under another signature) must be
/// verified, and refused, never served from the cache; the real token still hits, with the same
/// identity and headers as when it was verified.
#[test]
fn a_cached_signature_on_other_claims_is_verified_and_refused() {
    let e = engine();
    let mut cache = e.new_cache();
    let mut run = |auth: &str| {
        let headers = [("authorization", auth)];
        let req = Request {
            method: "GET",
            path: "/api/tickets",
            headers: &headers,
        };
        e.decide(&req, &NoRemoteKeys, &mut cache, NOW)
    };
    let real = jwt(json!({"roles": ["agent"]}));
    let Verdict::Allow {
        cached: false,
        headers: first,
        ..
    } = run(&format!("Bearer {real}"))
    else {
        panic!("the real token is allowed")
    };
    let (signed, signature) = real.rsplit_once('.').unwrap();
    let (header_b64, _) = signed.split_once('.').unwrap();
    let admin = b64::encode(
        json!({"iss": ISS, "sub": "mallory", "aud": "desk", "roles": ["admin"], "exp": NOW + 600})
            .to_string(),
    );
    for forged in [
        format!("{header_b64}.{admin}.{signature}"),
        format!("{signed}.{}", b64::encode([7u8; 32])),
    ] {
        let d = denied(run(&format!("Bearer {forged}")));
        assert_eq!(d.status, 401, "{d:?}");
    }
    match run(&format!("Bearer {real}")) {
        Verdict::Allow {
            cached: true,
            headers,
            identity,
        } => {
            assert_eq!(identity.unwrap().subject, "alice");
            assert_eq!(*headers, *first);
        }
        other => panic!("the real token hits the cache: {other:?}"),
    }
}

#[test]
fn connect_and_oversized_headers_are_refused_before_any_rule() {
    let e = engine();
    // CONNECT: 405 even on a public route, even with a valid credential.
    let token = jwt(json!({}));
    let auth = format!("Bearer {token}");
    for path in ["/healthz", "/api/x", "example.com:443"] {
        let d = denied(decide(&e, "CONNECT", path, &[("authorization", &auth)]));
        assert_eq!(
            (d.status, d.reason),
            (405, edgegate::Reason::MethodNotAllowed),
            "{path}"
        );
        assert!(header(&d.headers, "allow").is_some());
    }
    // Over the header bounds: 431 on a public route too, the credential behind them unseen.
    let big = "b".repeat(edgegate::limits::MAX_HEADER_BYTES);
    let d = denied(decide(
        &e,
        "GET",
        "/healthz",
        &[("x-big", &big), ("x-edgegate-roles", "admin")],
    ));
    assert_eq!(
        (d.status, d.reason),
        (431, edgegate::Reason::HeadersTooLarge)
    );
    let many: Vec<(String, String)> = (0..=edgegate::limits::MAX_HEADERS)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let d = denied(decide(&e, "GET", "/healthz", &many));
    assert_eq!(
        (d.status, d.reason),
        (431, edgegate::Reason::HeadersTooLarge)
    );
    // At the bounds: decided as usual.
    allowed(decide(&e, "GET", "/healthz", &many[1..]));
}
