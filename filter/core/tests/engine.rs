//! The whole decision, end to end through `Engine::decide`: every credential kind, every rule
//! requirement, the refusal shapes (status, WWW-Authenticate, JSON body), redirects for browsers,
//! magic-link login, dev mode, remote keys and config refusals with field paths.
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use edgegate::apikey;
use edgegate::b64;
use edgegate::engine::{Engine, Verdict};
use edgegate::extractor::Request;
use edgegate::jwk::KeySet;
use edgegate::magic::{MagicLinkRequest, Purpose};
use edgegate::upstream::{Consumed, HeaderEdits};
use edgegate::verifier::{KeyLookup, NoRemoteKeys};
use edgegate::{Identity, Step, UnixTime};
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

fn step_with(
    e: &Engine,
    keys: &dyn KeyLookup,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Step {
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

/// The verdict of a request that needs no keys fetched and no form read.
fn decide_with(
    e: &Engine,
    keys: &dyn KeyLookup,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Verdict {
    match step_with(e, keys, method, path, headers) {
        Step::Done(v) => v,
        other => panic!("expected a verdict, got {other:?}"),
    }
}

fn decide(e: &Engine, method: &str, path: &str, headers: &[(&str, &str)]) -> Verdict {
    decide_with(e, &NoRemoteKeys, method, path, headers)
}

/// The verdict on `method` `path` with `bearer` as the `Authorization` header.
fn with_bearer(e: &Engine, method: &str, path: &str, bearer: &str) -> Verdict {
    decide(e, method, path, &[("authorization", bearer)])
}

/// The verdict on a GET.
fn get(e: &Engine, path: &str, headers: &[(&str, &str)]) -> Verdict {
    decide(e, "GET", path, headers)
}

/// The verdict on a GET of `path` with a bearer token of `claims`.
fn get_as(e: &Engine, path: &str, claims: Value) -> Verdict {
    with_bearer(e, "GET", path, &format!("Bearer {}", jwt(claims)))
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

fn denied(v: Verdict) -> edgegate::LocalReply {
    match v {
        Verdict::Reply(d) => d,
        other => panic!("expected a local reply, got {other:?}"),
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn public_routes_pass_without_and_with_bad_credentials_but_never_carry_identity() {
    let e = engine();
    let (id, h) = allowed(get(&e, "/healthz", &[]));
    assert!(id.is_none() && h.is_empty());
    let (id, _) = allowed(get(
        &e,
        "/healthz",
        &[("authorization", "Bearer garbage.x.y")],
    ));
    assert!(id.is_none());
    for name in [
        "x-edgegate-subject",
        "x-edgegate-roles",
        "x-edgegate-dev-mode",
        "x-edgegate-credential",
        "x_edgegate_roles",
        "X_EDGEGATE_ROLES",
        "x-edgegate_credential",
        "X-Edgegate-Subject",
    ] {
        assert!(e.is_identity_header(name), "{name} must be stripped");
    }
    assert!(!e.is_identity_header("x-edgegate-rolesx"));
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
    let d = denied(get(
        &e,
        "/admin/users?page=2",
        &[("accept", "text/html,application/xhtml+xml")],
    ));
    assert_eq!(d.status, 302);
    assert_eq!(
        header(&d.headers, "location"),
        Some("/auth/login?rd=%2Fadmin%2Fusers%3Fpage%3D2")
    );
    // API clients get the 401 instead.
    let d = denied(get(&e, "/admin/users", &[("accept", "application/json")]));
    assert_eq!(d.status, 401);
}

#[test]
fn jwt_identity_reaches_upstream_headers() {
    let e = engine();
    let t = jwt(
        json!({"roles": ["agent"], "permissions": ["tickets:read"], "email": "alice@example.com"}),
    );
    let auth = format!("Bearer {t}");
    let (id, h) = allowed(get(&e, "/api/tickets", &[("authorization", &auth)]));
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
fn empty_role_and_permission_lists_are_left_out_unless_configured() {
    let t = jwt(json!({"roles": ["agent"]}));
    let auth = format!("Bearer {t}");
    let (_, h) = allowed(get(&engine(), "/api/tickets", &[("authorization", &auth)]));
    assert_eq!(header(&h, "x-edgegate-roles"), Some("agent"));
    assert_eq!(header(&h, "x-edgegate-permissions"), None, "{h:?}");
    // `identity_headers.send_empty`: the empty list goes up as an empty value.
    let mut cfg = config();
    cfg["identity_headers"] = json!({"send_empty": true});
    let (_, h) = allowed(get(
        &engine_from(&cfg),
        "/api/tickets",
        &[("authorization", &auth)],
    ));
    assert_eq!(header(&h, "x-edgegate-permissions"), Some(""));
    assert_eq!(header(&h, "x-edgegate-roles"), Some("agent"));
}

#[test]
fn only_the_identity_headers_listed_in_send_go_upstream_and_every_copy_is_still_stripped() {
    let t = jwt(json!({"roles": ["agent"], "email": "ann@example.com"}));
    let auth = format!("Bearer {t}");
    let names = |h: &[(String, String)]| {
        let mut n: Vec<String> = h.iter().map(|(k, _)| k.clone()).collect();
        n.sort();
        n
    };
    // By default every identity header with a value goes up.
    let (_, all) = allowed(get(&engine(), "/api/tickets", &[("authorization", &auth)]));
    assert_eq!(
        names(&all),
        [
            "x-edgegate-credential",
            "x-edgegate-email",
            "x-edgegate-expires",
            "x-edgegate-provider",
            "x-edgegate-roles",
            "x-edgegate-subject"
        ]
    );
    let mut cfg = config();
    cfg["identity_headers"] = json!({"send": ["roles", "subject"], "email": "x-mail"});
    let e = engine_from(&cfg);
    let (id, h) = allowed(get(&e, "/api/tickets", &[("authorization", &auth)]));
    assert_eq!(names(&h), ["x-edgegate-roles", "x-edgegate-subject"]);
    assert_eq!(header(&h, "x-edgegate-roles"), Some("agent"));
    // The identity itself is whole (policy and logs still see it); only the headers are fewer.
    assert_eq!(id.unwrap().email.as_deref(), Some("ann@example.com"));
    // Client copies of the headers not sent are identity headers all the same: removed.
    for name in [
        "x-mail",
        "x-edgegate-credential",
        "x-edgegate-expires",
        "x_edgegate_provider",
    ] {
        assert!(e.is_identity_header(name), "{name}");
    }
    // An empty list sends none: authentication only, as jwt_authn without claim_to_headers.
    cfg["identity_headers"] = json!({"send": []});
    let (_, h) = allowed(get(
        &engine_from(&cfg),
        "/api/tickets",
        &[("authorization", &auth)],
    ));
    assert_eq!(h, vec![]);
}

#[test]
fn identity_headers_send_names_fields_once_or_the_config_is_refused() {
    for (send, path, says) in [
        (
            json!(["subject", "mail"]),
            "identity_headers.send[1]",
            "unknown variant `mail`",
        ),
        (
            json!(["subject", "roles", "subject"]),
            "identity_headers.send[2]",
            "\"subject\" is listed twice",
        ),
        (
            json!(["dev_mode"]),
            "identity_headers.send[0]",
            "unknown variant `dev_mode`",
        ),
        (json!("subject"), "identity_headers.send", "a sequence"),
    ] {
        let mut cfg = config();
        cfg["identity_headers"] = json!({"send": send});
        let err = Engine::from_json(cfg.to_string().as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{send} was accepted"))
            .to_string();
        assert!(err.contains(path) && err.contains(says), "{send}: {err}");
    }
}

#[test]
fn identity_header_names_that_would_take_over_another_header_are_refused() {
    let refused = |headers: Value, top: &[(&str, Value)]| {
        let mut cfg = config();
        cfg["identity_headers"] = headers;
        for (k, v) in top {
            cfg[*k] = v.clone();
        }
        Engine::from_json(cfg.to_string().as_bytes())
            .err()
            .map(|e| e.to_string())
    };
    for (headers, path, says) in [
        // the request's framing, what clients say of their request, what proxies set
        (
            json!({"email": "transfer-encoding"}),
            "identity_headers.email",
            "clients or proxies",
        ),
        (
            json!({"subject": "content-type"}),
            "identity_headers.subject",
            "x-edgegate-subject",
        ),
        (
            json!({"name": "x-forwarded-for"}),
            "identity_headers.name",
            "clients or proxies",
        ),
        (
            json!({"roles": "x_envoy_original_path"}),
            "identity_headers.roles",
            "clients or proxies",
        ),
        (
            json!({"key_name": "x-http-method-override"}),
            "identity_headers.key_name",
            "x-edgegate-key-name",
        ),
        // two names a CGI app would merge
        (
            json!({"subject": "x-user", "email": "x_user"}),
            "identity_headers.email",
            "used twice",
        ),
        // where this config reads credentials (api_keys.header is x-api-key)
        (
            json!({"subject": "x_api_key"}),
            "identity_headers.subject",
            "api_keys.header",
        ),
    ] {
        let err = refused(headers.clone(), &[]).unwrap_or_else(|| panic!("{headers} was accepted"));
        assert!(err.contains(path) && err.contains(says), "{headers}: {err}");
    }
    let mut jwt = config()["jwt"].clone();
    jwt["from"] = json!({"header": "x-jwt"});
    let err = refused(json!({"email": "x-jwt"}), &[("jwt", jwt)]).expect("x-jwt was accepted");
    assert!(
        err.contains("identity_headers.email") && err.contains("jwt.from.header"),
        "{err}"
    );
    // oauth2-proxy's names, which apps behind it read, stay allowed
    assert_eq!(
        refused(
            json!({"subject": "x-forwarded-user", "email": "x-forwarded-email"}),
            &[]
        ),
        None
    );
}

#[test]
fn credential_sources_that_mean_something_else_are_refused() {
    let refused = |jwt_from: Value, api_key_header: Option<&str>| {
        let mut cfg = config();
        cfg["jwt"]["from"] = jwt_from;
        match api_key_header {
            Some(h) => cfg["api_keys"]["header"] = json!(h),
            None => {
                cfg["api_keys"].as_object_mut().unwrap().remove("header");
            }
        }
        Engine::from_json(cfg.to_string().as_bytes())
            .err()
            .map(|e| e.to_string())
    };
    for (from, api, path, says) in [
        (
            json!({"header": "authorization"}),
            None,
            "jwt.from.header",
            "always read",
        ),
        (
            json!({"header": "content-type"}),
            None,
            "jwt.from.header",
            "another purpose",
        ),
        (
            json!({}),
            Some("x-forwarded-for"),
            "api_keys.header",
            "another purpose",
        ),
        (
            json!({"header": "x-token"}),
            Some("x_token"),
            "jwt.from.header",
            "its own header",
        ),
        (
            json!({"cookie": "edgegate_session"}),
            None,
            "jwt.from.cookie",
            "edgegate's own",
        ),
        (
            json!({"cookie": "edgegate_session_refresh"}),
            None,
            "jwt.from.cookie",
            "edgegate's own",
        ),
        (
            json!({"cookie": "edgegate_login_x"}),
            None,
            "jwt.from.cookie",
            "edgegate's own",
        ),
    ] {
        let err =
            refused(from.clone(), api).unwrap_or_else(|| panic!("{from} {api:?} was accepted"));
        assert!(
            err.contains(path) && err.contains(says),
            "{from} {api:?}: {err}"
        );
    }
    assert_eq!(
        refused(
            json!({"header": "x-jwt-assertion", "cookie": "access_token"}),
            Some("x-api-key")
        ),
        None
    );
}

#[test]
fn a_provider_that_would_accept_expired_or_any_clients_tokens_is_refused_or_warned_of() {
    let with = |extra: Value| {
        let mut cfg = config();
        for (k, v) in extra.as_object().unwrap() {
            cfg["jwt"]["providers"][0][k] = v.clone();
        }
        Engine::from_json(cfg.to_string().as_bytes())
    };
    for (extra, path) in [
        (
            json!({"clock_skew_seconds": 301}),
            "jwt.providers[0].clock_skew_seconds",
        ),
        (
            json!({"max_lifetime_seconds": 0}),
            "jwt.providers[0].max_lifetime_seconds",
        ),
    ] {
        let err = with(extra.clone())
            .err()
            .unwrap_or_else(|| panic!("{extra} was accepted"))
            .to_string();
        assert!(err.contains(path), "{extra}: {err}");
    }
    assert!(with(json!({"clock_skew_seconds": 300})).is_ok());
    // No audiences: loaded (Cognito access tokens carry none), but loudly.
    let e = with(json!({"audiences": []})).unwrap();
    assert!(
        e.warnings()
            .iter()
            .any(|w| w.starts_with("jwt.providers[0].audiences is empty")),
        "{:?}",
        e.warnings()
    );
    assert!(engine().warnings().is_empty(), "{:?}", engine().warnings());
}

#[test]
fn one_secret_for_two_purposes_is_refused_naming_both_places_never_the_secret() {
    let load = |cfg: &Value| {
        Engine::from_json(cfg.to_string().as_bytes())
            .err()
            .map(|e| e.to_string())
    };
    let session_secret = config()["session"]["keys"][0]["secret"].clone();
    let jwt_secret = config()["jwt"]["providers"][0]["shared_secrets"][0]["secret"].clone();
    let mut reused = config();
    reused["magic_links"]["keys"][0]["secret"] = session_secret.clone();
    let err = load(&reused).expect("the session key as a magic-link key was accepted");
    assert!(
        err.contains("magic_links.keys[0].secret") && err.contains("session.keys[0].secret"),
        "{err}"
    );
    assert!(
        !err.contains(session_secret.as_str().unwrap()),
        "the secret is in the error: {err}"
    );
    let mut reused = config();
    reused["session"]["keys"][0]["secret"] = jwt_secret.clone();
    let err = load(&reused).expect("a provider's secret as the session key was accepted");
    assert!(
        err.contains("session.keys[0].secret") && err.contains("shared_secrets[0]"),
        "{err}"
    );
    let mut reused = config();
    reused["api_keys"]["pepper"] = session_secret;
    let err = load(&reused).expect("the session key as the pepper was accepted");
    assert!(
        err.contains("api_keys.pepper: is the same secret as session.keys[0].secret"),
        "{err}"
    );
    // Two providers of one signer may share it.
    let mut two = config();
    let mut other = two["jwt"]["providers"][0].clone();
    other["name"] = json!("idp2");
    other["issuer"] = json!("https://other.example");
    two["jwt"]["providers"].as_array_mut().unwrap().push(other);
    assert_eq!(load(&two), None);
}

#[test]
fn a_config_that_protects_nothing_loads_with_a_warning() {
    let warned = |cfg: Value| {
        let e = Engine::from_json(cfg.to_string().as_bytes()).unwrap();
        e.warnings()
            .iter()
            .any(|w| w.starts_with("no rule requires a credential"))
    };
    assert!(warned(
        json!({"default_rule": {"require": {"public": true}}})
    ));
    assert!(warned(json!({
        "rules": [{"name": "a", "match": {"path": {"prefix": "/a"}}, "require": {"public": true}}],
        "default_rule": {"require": {"public": true}}
    })));
    assert!(!warned(
        json!({"default_rule": {"require": {"public": true}}, "rules": [
        {"name": "a", "match": {"path": {"prefix": "/a"}}, "credentials": ["session"]}
    ], "session": config()["session"].clone()})
    ));
    assert!(!warned(config()));
}

#[test]
fn a_session_cookie_no_browser_keeps_and_a_magic_link_path_that_takes_a_route_are_refused() {
    let load = |cfg: &Value| {
        Engine::from_json(cfg.to_string().as_bytes())
            .err()
            .map(|e| e.to_string())
    };
    for domain in ["com", ".com", "localhost"] {
        let mut cfg = config();
        cfg["session"]["domain"] = json!(domain);
        let err = load(&cfg).unwrap_or_else(|| panic!("domain {domain} was accepted"));
        assert!(
            err.contains("session.domain") && err.contains("single label"),
            "{err}"
        );
    }
    let mut cfg = config();
    cfg["session"]["domain"] = json!("example.com");
    assert_eq!(load(&cfg), None);
    let mut cfg = config();
    cfg["magic_links"]["path"] = json!("/");
    let err = load(&cfg).expect("magic_links.path / was accepted");
    assert!(
        err.contains("magic_links.path") && err.contains("root"),
        "{err}"
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
    let d = denied(get(
        &e,
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
    let d = denied(get(&e, "/reports/q3", &[("x-api-key", &key)]));
    assert_eq!(
        (d.status, d.reason.code()),
        (401, "credential_not_accepted")
    );
}

#[test]
fn api_keys_by_header_and_bearer_with_scope() {
    let e = engine();
    let key = api_key();
    let (id, h) = allowed(get(&e, "/api/tickets", &[("x-api-key", &key)]));
    assert_eq!(id.unwrap().subject, "ci");
    assert_eq!(header(&h, "x-edgegate-key-name"), Some("ci"));
    assert_eq!(header(&h, "x-edgegate-credential"), Some("api_key"));
    let bearer = format!("Bearer {key}");
    allowed(with_bearer(&e, "POST", "/api/tickets", &bearer));
    // The key is scoped to /api/: the default rule takes api keys, but not outside the scope.
    let d = denied(get(&e, "/dashboard", &[("x-api-key", &key)]));
    assert_eq!((d.status, d.reason.code()), (403, "out_of_scope"));
    // typo: checksum fails before any lookup
    let mut typo = key.clone();
    let c = typo.pop().unwrap();
    typo.push(if c == 'a' { 'b' } else { 'a' });
    let d = denied(get(&e, "/api/x", &[("x-api-key", &typo)]));
    assert_eq!(d.reason.code(), "api_key_checksum");
    let unknown = apikey::mint("egk_", &[9u8; 32]);
    let d = denied(get(&e, "/api/x", &[("x-api-key", &unknown)]));
    assert_eq!(d.reason.code(), "api_key_unknown");
    let old = apikey::mint("egk_", &[8u8; 32]);
    let d = denied(get(&e, "/api/x", &[("x-api-key", &old)]));
    assert_eq!(d.reason.code(), "api_key_expired");
    // a method the api rule does not list falls to the default rule, which takes api keys
    // (within the key's scope)
    allowed(decide(&e, "DELETE", "/api/tickets", &[("x-api-key", &key)]));
}

#[test]
fn roles_permissions_scopes_and_mfa_are_403() {
    let e = engine();
    // (path, claims, the 403's reason)
    let refused = [
        (
            "/admin",
            json!({"roles": ["agent"], "amr": ["pwd", "otp"]}),
            "missing_role",
        ),
        (
            "/admin",
            json!({"roles": ["admin"], "amr": ["pwd"]}),
            "mfa_required",
        ),
        (
            "/reports/q3",
            json!({"scope": "reports"}),
            "missing_permission",
        ),
        (
            "/reports/q3",
            json!({"permissions": ["reports:read"], "scope": "openid"}),
            "missing_scope",
        ),
    ];
    for (path, claims, reason) in refused {
        let d = denied(get_as(&e, path, claims));
        assert_eq!((d.status, d.reason.code()), (403, reason));
        if reason == "missing_role" {
            assert!(header(&d.headers, "www-authenticate")
                .unwrap()
                .contains("insufficient_scope"));
        }
    }
    let admin = json!({"roles": ["admin"], "amr": ["pwd", "hwk"]});
    allowed(get_as(&e, "/admin/users", admin));
    let reader = json!({"permissions": ["reports:read"], "scope": "openid reports"});
    allowed(get_as(&e, "/reports/q3", reader));
}

#[test]
fn path_confusion_is_refused_before_any_rule() {
    let e = engine();
    for p in ["/healthz/..%2fadmin", "//admin", "/a/%2e%2e/%2e%2e/admin"] {
        let d = denied(get(&e, p, &[]));
        assert_eq!(d.status, 400, "{p}");
    }
    // dot segments resolve: this is /admin, not a public path
    let d = denied(get(&e, "/healthz/../admin", &[]));
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
        path_scope: Some("/tickets/TRK-2849".into()),
        target: Some("/tickets/TRK-2849/view".into()),
        ttl: None,
    };
    let token = magic.issue(&req, NOW, &[1u8; 16]).unwrap();
    let path = format!("/auth/magic?token={token}");
    // GET never consumes: it answers a confirm page that POSTs the token back.
    let page = denied(get(&e, &path, &[]));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("method=\"post\""));
    assert!(page.body.contains(&token));
    assert!(matches!(
        step_with(&e, &NoRemoteKeys, "POST", "/auth/magic", &[]),
        Step::NeedForm(_)
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
    let (id, h) = allowed(get(&e, "/tickets/TRK-2849/view", &[("cookie", &cookie)]));
    assert_eq!(id.unwrap().email.as_deref(), Some("guest@example.com"));
    assert_eq!(header(&h, "x-edgegate-credential"), Some("magic_link"));
    // ...and nothing else
    let d = denied(get(&e, "/tickets/TRK-28490/view", &[("cookie", &cookie)]));
    assert_eq!((d.status, d.reason.code()), (403, "out_of_scope"));
    let d = denied(get(&e, "/dashboard", &[("cookie", &cookie)]));
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
fn dev_mode_is_loud_refused_beside_real_credentials_and_local_only() {
    let mut cfg = config();
    cfg["dev_mode"] = json!({"enabled": true, "identity": {"subject": "dev", "roles": ["admin"]}});
    let err = Engine::from_json(cfg.to_string().as_bytes()).unwrap_err();
    for what in [
        "non-localhost issuer",
        "api_keys section",
        "magic_links section",
    ] {
        assert!(
            err.to_string()
                .contains("dev_mode.enabled: dev mode is refused")
                && err.to_string().contains(what),
            "{what}: {err}"
        );
    }
    // A config with only API keys and dev mode (once a warning) is refused too.
    let only_keys = json!({"api_keys": cfg["api_keys"], "dev_mode": cfg["dev_mode"]});
    let err = Engine::from_json(only_keys.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("api_keys section"), "{err}");

    cfg["jwt"]["providers"][0]["issuer"] = json!("http://localhost:8080/realms/dev");
    let obj = cfg.as_object_mut().unwrap();
    obj.remove("api_keys");
    obj.remove("magic_links");
    cfg["rules"] = json!([]);
    cfg["default_rule"] = json!({"credentials": ["session", "jwt"]});
    let e = engine_from(&cfg);
    assert!(e.warnings().iter().any(|w| w.contains("DEV MODE")));
    for host in [
        "localhost",
        "LOCALHOST:8080",
        "127.0.0.1:10000",
        "127.9.9.9",
        "[::1]:80",
    ] {
        for name in [":authority", "host"] {
            let (id, h) = allowed(get(&e, "/admin", &[(name, host)]));
            assert_eq!(id.unwrap().subject, "dev", "{name}: {host}");
            assert_eq!(header(&h, "x-edgegate-dev-mode"), Some("true"));
        }
    }
    // :authority wins over a client's Host; anything not loopback (or no host at all) is refused.
    for headers in [
        &[(":authority", "desk.example.com"), ("host", "localhost")][..],
        &[("host", "desk.example.com")],
        &[("host", "localhost.desk.example.com")],
        &[("host", "127.0.0.1.nip.io")],
        &[("host", "10.0.0.5:8080")],
        &[],
    ] {
        let d = denied(get(&e, "/admin", headers));
        assert_eq!(
            (d.status, d.reason.code()),
            (403, "dev_mode_not_local"),
            "{headers:?}"
        );
        assert!(d.body.contains("dev_mode_not_local"));
    }
    assert_eq!(
        e.dev_mode_response_header().map(|(k, _)| k),
        Some("x-edgegate-dev-mode")
    );
    assert!(engine().dev_mode_response_header().is_none());
}

/// Rules where POST is open to staff and DELETE needs admin, as a help desk has them.
fn override_engine(mode: &str) -> Engine {
    let mut cfg = config();
    cfg["method_override"] = json!(mode);
    cfg["rules"] = json!([
        {"name": "delete", "match": {"path": {"prefix": "/tickets"}, "methods": ["DELETE"]},
         "credentials": ["jwt"], "require": {"roles_any": ["admin"]}},
        {"name": "public-read", "match": {"path": {"prefix": "/tickets"}, "methods": ["GET"]},
         "require": {"public": true}},
        {"name": "write", "match": {"path": {"prefix": "/tickets"}, "methods": ["POST", "PUT"]},
         "credentials": ["jwt"], "require": {"roles_any": ["staff", "admin"]}}
    ]);
    engine_from(&cfg)
}

#[test]
fn a_method_override_must_pass_the_rule_of_every_method_it_names() {
    let e = override_engine("enforce");
    let staff = format!("Bearer {}", jwt(json!({"roles": ["staff"]})));
    let admin = format!("Bearer {}", jwt(json!({"roles": ["admin"]})));
    // Without an override, staff may POST and only admins DELETE.
    allowed(with_bearer(&e, "POST", "/tickets/1", &staff));
    let d = denied(with_bearer(&e, "DELETE", "/tickets/1", &staff));
    assert_eq!(d.reason.code(), "missing_role");
    // Every carrier that names DELETE makes the POST need admin.
    for (path, carrier) in [
        ("/tickets/1", Some(("X-HTTP-Method-Override", "DELETE"))),
        ("/tickets/1", Some(("x-http-method", "delete"))),
        ("/tickets/1", Some(("X-Method-Override", "DELETE"))),
        ("/tickets/1", Some(("x_http_method_override", "DELETE"))),
        (
            "/tickets/1",
            Some(("x-http-method-override", "PUT, DELETE")),
        ),
        ("/tickets/1?_method=DELETE", None),
        ("/tickets/1?a=b&_method=delete", None),
    ] {
        let mut headers = vec![("authorization", staff.as_str())];
        headers.extend(carrier);
        let d = denied(decide(&e, "POST", path, &headers));
        assert_eq!(
            (d.status, d.reason.code()),
            (403, "missing_role"),
            "{path} {carrier:?}"
        );
        headers[0].1 = &admin;
        allowed(decide(&e, "POST", path, &headers));
    }
    // A public GET that names POST needs POST's credential; naming a method whose rule allows
    // the caller changes nothing.
    let d = denied(get(&e, "/tickets/1", &[("x-http-method-override", "POST")]));
    assert_eq!(d.reason.code(), "credential_missing");
    allowed(get(
        &e,
        "/tickets/1",
        &[
            ("x-http-method-override", "POST"),
            ("authorization", &staff),
        ],
    ));
    allowed(get(&e, "/tickets/1", &[("x-http-method-override", "GET")]));
    // Garbage or floods of methods are refused, not guessed at.
    for v in ["DELETE;", "", "DEL ETE", "A,B,C,D,E,F,G,H,I"] {
        let d = denied(decide(
            &e,
            "POST",
            "/tickets/1",
            &[("authorization", &admin), ("x-http-method", v)],
        ));
        assert_eq!(
            (d.status, d.reason.code()),
            (400, "method_override_refused"),
            "{v:?}"
        );
    }
}

#[test]
fn method_override_reject_refuses_every_carrier() {
    let e = override_engine("reject");
    let admin = format!("Bearer {}", jwt(json!({"roles": ["admin"]})));
    allowed(with_bearer(&e, "DELETE", "/tickets/1", &admin));
    for (path, carrier) in [
        ("/tickets/1", Some(("X-HTTP-Method-Override", "POST"))),
        ("/tickets/1", Some(("x_method_override", "GET"))),
        ("/tickets/1?_method=GET", None),
    ] {
        let mut headers = vec![("authorization", admin.as_str())];
        headers.extend(carrier);
        let d = denied(get(&e, path, &headers));
        assert_eq!(
            (d.status, d.reason.code()),
            (400, "method_override_refused")
        );
        assert!(d.body.contains("method_override: reject"), "{}", d.body);
    }
    let err = Engine::from_json(br#"{"method_override": "ignore"}"#).unwrap_err();
    assert!(err.to_string().contains("method_override"), "{err}");
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
    match step_with(
        &e,
        &NoRemoteKeys,
        "GET",
        "/api/x",
        &[("authorization", &auth)],
    ) {
        Step::NeedKeys(k) => assert_eq!((k.provider(), k.unknown_kid()), ("remote", false)),
        other => panic!("expected NeedKeys, got {other:?}"),
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
    let kid_headers = [("authorization", kid_auth.as_str())];
    let kid_req = Request {
        method: "GET",
        path: "/api/x",
        headers: &kid_headers,
    };
    let mut cache = e.new_cache();
    match e.decide(&kid_req, &refetching, &mut cache, NOW) {
        Step::NeedKeys(k) => {
            assert_eq!((k.provider(), k.unknown_kid()), ("remote", true));
            // The refetch brought nothing new: resumed, the request is refused, never made to
            // wait twice (the host still says it may refetch).
            match k.resume(&e, &kid_req, &refetching, &mut cache, NOW) {
                Step::Done(v) => assert_eq!(denied(v).reason.code(), "unknown_kid"),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        other => panic!("expected NeedKeys, got {other:?}"),
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
    assert!(text.contains("kid \"k2\" is used by two keys"), "{text}");
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
    match get(&e, "/api/x", &[("authorization", &t)]) {
        Verdict::Allow { headers, .. } => {
            for (_, v) in headers.iter() {
                assert!(!v.contains('\r') && !v.contains('\n'), "{v:?}");
            }
        }
        // the claim mapping may also drop values with control characters: both are safe
        Verdict::Reply(d) => assert_eq!(d.reason.code(), "missing_claim"),
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
            .into_verdict()
            .unwrap()
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
            consumed,
        } => {
            assert_eq!(consumed, Some(Consumed::Authorization), "as when verified");
            assert_eq!(identity.unwrap().subject, "alice");
            assert_eq!(*headers, *first);
        }
        other => panic!("the real token hits the cache: {other:?}"),
    }
}

// --- what goes upstream: consumed credentials, `forward`, edgegate's cookies -----------------

fn consumed(v: Verdict) -> Option<Consumed> {
    match v {
        Verdict::Allow { consumed, .. } => consumed,
        other => panic!("expected Allow, got {other:?}"),
    }
}

fn jwt_sources_config(forward: bool) -> Value {
    let mut cfg = config();
    cfg["jwt"]["providers"][0]["forward"] = json!(forward);
    cfg["jwt"]["from"] =
        json!({"header": "x-jwt-assertion", "cookie": "id_token", "query_param": "access_token"});
    cfg
}

#[test]
fn the_checked_credential_is_consumed_where_it_was_found() {
    let e = engine_from(&jwt_sources_config(false));
    let t = jwt(json!({}));
    let bearer = format!("Bearer {t}");
    let cookie = format!("a=1; id_token={t}; edgegate_session_refresh=R; b=2");
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<Consumed>);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("authorization", &bearer)],
            "/api/x",
            Some(Consumed::Authorization),
        ),
        (
            vec![("x-jwt-assertion", &t)],
            "/api/x",
            Some(Consumed::JwtHeader),
        ),
        (
            vec![("cookie", &cookie)],
            "/api/x",
            Some(Consumed::JwtCookie),
        ),
        // the query parameter is left in the URL (documented)
        (vec![], "/api/x?access_token=TOKEN", None),
    ];
    for (headers, path, want) in cases {
        let path = path.replace("TOKEN", &t);
        let got = consumed(get(&e, &path, &headers));
        assert_eq!(got, want, "{headers:?} {path}");
        let edits = e.upstream_edits(&headers, got.as_ref());
        match want {
            Some(Consumed::Authorization) => assert_eq!(edits.remove, vec!["authorization"]),
            Some(Consumed::JwtHeader) => assert_eq!(edits.remove, vec!["x-jwt-assertion"]),
            Some(Consumed::JwtCookie) => {
                assert!(edits.remove.is_empty());
                assert_eq!(edits.cookie.as_deref(), Some("a=1; b=2"));
            }
            _ => assert_eq!(edits, HeaderEdits::default()),
        }
    }
    // API keys, in Authorization and in their header
    let e = engine();
    let k = format!("Bearer {}", api_key());
    let (h1, h2) = ([("authorization", k.as_str())], [("x-api-key", api_key())]);
    let h2: Vec<(&str, &str)> = h2.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(
        consumed(get(&e, "/api/x", &h1)),
        Some(Consumed::Authorization)
    );
    let c = consumed(get(&e, "/api/x", &h2));
    assert_eq!(c, Some(Consumed::ApiKeyHeader));
    assert_eq!(e.upstream_edits(&h2, c.as_ref()).remove, vec!["x-api-key"]);
    // no credential on a public route: nothing consumed, edgegate's cookies still go
    let h = [(
        "cookie",
        "edgegate_session=x; theme=dark; edgegate_login_abc=y",
    )];
    let c = consumed(get(&e, "/healthz", &h));
    assert_eq!(c, None);
    let edits = e.upstream_edits(&h, None);
    assert!(edits.remove.is_empty());
    assert_eq!(edits.cookie.as_deref(), Some("theme=dark"));
}

#[test]
fn forward_true_keeps_the_token_but_never_edgegates_cookies() {
    let e = engine_from(&jwt_sources_config(true));
    let t = jwt(json!({}));
    let bearer = format!("Bearer {t}");
    let h = [
        ("authorization", bearer.as_str()),
        ("cookie", "edgegate_session=S; a=1"),
    ];
    // the cache keeps consumed right too (derived per request, not cached)
    let mut cache = e.new_cache();
    for round in 0..2 {
        let req = Request {
            method: "GET",
            path: "/api/x",
            headers: &h,
        };
        let v = e
            .decide(&req, &NoRemoteKeys, &mut cache, NOW)
            .into_verdict()
            .unwrap();
        let Verdict::Allow {
            consumed, cached, ..
        } = v
        else {
            panic!("{v:?}")
        };
        assert_eq!(cached, round == 1);
        assert_eq!(consumed, None, "forward: true");
        let edits = e.upstream_edits(&h, consumed.as_ref());
        assert!(edits.remove.is_empty(), "{edits:?}");
        assert_eq!(edits.cookie.as_deref(), Some("a=1"));
    }
    // api_keys.forward
    let mut cfg = config();
    cfg["api_keys"]["forward"] = json!(true);
    let e = engine_from(&cfg);
    let k = api_key();
    assert_eq!(consumed(get(&e, "/api/x", &[("x-api-key", &k)])), None);
    // forward on one provider does not forward another's tokens
    let e = engine();
    assert_eq!(
        consumed(get(&e, "/api/x", &[("authorization", &bearer)])),
        Some(Consumed::Authorization)
    );
}

#[test]
fn a_session_is_consumed_and_its_cookies_removed() {
    let cfg = config();
    let e = engine_from(&cfg);
    let sessions = e.sessions().unwrap();
    let id = Identity::new("alice", edgegate::CredentialKind::Session, "session");
    let cookie = sessions.seal(&id, NOW).unwrap();
    let header = format!("pref=1; edgegate_session={cookie}; edgegate_session_refresh=r; z=2");
    let h = [("cookie", header.as_str())];
    let c = consumed(get(&e, "/dashboard", &h));
    assert_eq!(c, Some(Consumed::SessionCookie));
    let edits = e.upstream_edits(&h, c.as_ref());
    assert_eq!(edits.cookie.as_deref(), Some("pref=1; z=2"));
}

/// A session cookie is opened (HMAC, claims) on its first request and answered from the
/// verified-token cache after that, with the same identity and headers, until it expires; the
/// cache answers only for the kind it was opened as: the cookie's value sent as a bearer JWT, or
/// on a route that takes only magic-link sessions, is checked in full and refused.
#[test]
fn a_session_is_opened_once_then_cached_for_its_own_kind_only() {
    let mut cfg = config();
    cfg["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "guests", "match": {"path": {"prefix": "/guest"}}, "credentials": ["magic_link"]}));
    let e = engine_from(&cfg);
    let mut id = Identity::new("alice", edgegate::CredentialKind::Jwt, "idp");
    id.roles = vec!["staff".into()];
    let sealed = e.sessions().unwrap().seal(&id, NOW).unwrap();
    let cookie = format!("edgegate_session={sealed}");
    let bearer = format!("Bearer {sealed}");
    let mut cache = e.new_cache();
    let mut at = |now: UnixTime, path: &str, h: &[(&str, &str)]| {
        let req = Request {
            method: "GET",
            path,
            headers: h,
        };
        match e.decide(&req, &NoRemoteKeys, &mut cache, now) {
            Step::Done(v) => v,
            other => panic!("expected a verdict, got {other:?}"),
        }
    };
    let cached_flag = |v: &Verdict| match v {
        Verdict::Allow { cached, .. } => Some(*cached),
        _ => None,
    };
    let first = at(NOW, "/dashboard", &[("cookie", &cookie)]);
    assert_eq!(
        cached_flag(&first),
        Some(false),
        "opened in full the first time"
    );
    let second = at(NOW + 60, "/dashboard", &[("cookie", &cookie)]);
    assert_eq!(cached_flag(&second), Some(true), "then from the cache");
    let (id1, h1) = allowed(first);
    let (id2, h2) = allowed(second);
    assert_eq!(
        id1.as_ref().map(|i| &i.subject),
        id2.as_ref().map(|i| &i.subject)
    );
    assert_eq!(h1, h2, "the same identity headers");
    assert_eq!(header(&h2, "x-edgegate-credential"), Some("session"));
    assert_eq!(header(&h2, "x-edgegate-roles"), Some("staff"));
    // The cookie's value as a bearer JWT: no cache answer, and no JWT.
    // (A cache answer would be refused later as credential_not_accepted; checked in full as a
    // JWT it has no `iss`.)
    let d = denied(at(NOW + 60, "/api/x", &[("authorization", &bearer)]));
    assert_eq!((d.status, d.reason.code()), (401, "missing_claim"));
    // A route that takes only magic-link sessions: this session came from a login, not a link.
    let d = denied(at(NOW + 60, "/guest/x", &[("cookie", &cookie)]));
    assert_eq!(d.reason.code(), "credential_not_accepted");
    // Still cached as a session, until it expires (8 hours by default); then refused as expired.
    assert_eq!(
        cached_flag(&at(NOW + 28_799, "/dashboard", &[("cookie", &cookie)])),
        Some(true)
    );
    let d = denied(at(
        NOW + 28_800,
        "/dashboard",
        &[
            ("authorization", "x"),
            ("cookie", &cookie),
            ("accept", "application/json"),
        ],
    ));
    assert_eq!(d.reason.code(), "session_expired");
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
    let d = denied(get(
        &e,
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
    let d = denied(get(&e, "/healthz", &many));
    assert_eq!(
        (d.status, d.reason),
        (431, edgegate::Reason::HeadersTooLarge)
    );
    // At the bounds: decided as usual.
    allowed(get(&e, "/healthz", &many[1..]));
}

/// The host's copy of the remote API-key list.
struct Listed(edgegate::keylist::KeyListState);
impl KeyLookup for Listed {
    fn keys(&self, _provider: &str) -> Option<&KeySet> {
        None
    }
    fn api_key_list(&self) -> Option<&edgegate::keylist::KeyListState> {
        Some(&self.0)
    }
}

/// The verdict on GET /api/x with `key` in `x-api-key` at `now`.
fn key_at(e: &Engine, keys: &dyn KeyLookup, key: &str, now: UnixTime) -> Verdict {
    let mut cache = e.new_cache();
    let headers = [("x-api-key", key)];
    let req = Request {
        method: "GET",
        path: "/api/x",
        headers: &headers,
    };
    match e.decide(&req, keys, &mut cache, now) {
        Step::Done(v) => v,
        other => panic!("expected a verdict, got {other:?}"),
    }
}

#[test]
fn a_remote_key_list_decides_keys_and_fails_closed_without_it() {
    use edgegate::refresh::Response;
    let listed_key = apikey::mint("egk_", &[21u8; 32]);
    let other_key = apikey::mint("egk_", &[22u8; 32]);
    let list = |keys: &[(&str, &String)]| -> Vec<u8> {
        let entries: Vec<Value> = keys
            .iter()
            .map(|(n, k)| json!({"name": n, "hash": apikey::hash(k, None), "roles": ["staff"], "scope": "/api/"}))
            .collect();
        json!({ "keys": entries }).to_string().into_bytes()
    };
    let mut cfg = config();
    cfg["api_keys"]["remote"] = json!({"url": "https://keys.example/keys.json"});
    let e = engine_from(&cfg);
    let mut state = e.api_key_list().expect("a remote list is configured");
    // Before the first list: a key the inline keys lack is 503, never 401 nor an allow; the
    // inline key, a JWT and a malformed key are unaffected.
    for keys in [&NoRemoteKeys as &dyn KeyLookup, &Listed(state.clone())] {
        let d = denied(key_at(&e, keys, &listed_key, NOW));
        assert_eq!((d.status, d.reason.code()), (503, "api_keys_unavailable"));
        allowed(key_at(&e, keys, &api_key(), NOW));
        let bearer = format!("Bearer {}", jwt(json!({})));
        allowed(decide_with(
            &e,
            keys,
            "GET",
            "/api/x",
            &[("authorization", &bearer)],
        ));
        let d = denied(key_at(&e, keys, "egk_nope", NOW));
        assert_eq!(d.reason.code(), "api_key_malformed");
    }
    // The list arrives: its keys and the inline ones work.
    let req = state.poll(NOW).unwrap();
    let body = list(&[("listed", &listed_key), ("other", &other_key)]);
    state
        .on_response(&req, &Response::new(200, None, &body), NOW)
        .unwrap();
    let (id, h) = allowed(key_at(&e, &Listed(state.clone()), &listed_key, NOW));
    assert_eq!(id.unwrap().subject, "listed");
    assert_eq!(header(&h, "x-edgegate-roles"), Some("staff"));
    allowed(key_at(&e, &Listed(state.clone()), &api_key(), NOW));
    // Revoked: refused as soon as the refresh brings the new list.
    let req = state.poll(NOW + 30).unwrap();
    let body = list(&[("other", &other_key)]);
    state
        .on_response(&req, &Response::new(200, None, &body), NOW + 30)
        .unwrap();
    let d = denied(key_at(&e, &Listed(state.clone()), &listed_key, NOW + 30));
    assert_eq!((d.status, d.reason.code()), (401, "api_key_unknown"));
    allowed(key_at(&e, &Listed(state.clone()), &other_key, NOW + 30));
    // Stale (default max_stale_seconds 600 after the last success): 503 for listed keys, the
    // inline key still works.
    allowed(key_at(&e, &Listed(state.clone()), &other_key, NOW + 629));
    let d = denied(key_at(&e, &Listed(state.clone()), &other_key, NOW + 630));
    assert_eq!((d.status, d.reason.code()), (503, "api_keys_unavailable"));
    allowed(key_at(&e, &Listed(state.clone()), &api_key(), NOW + 630));
}

#[test]
fn a_credential_carrier_sent_twice_is_400_never_one_of_the_two() {
    let e = engine();
    let a = format!("Bearer {}", jwt(json!({"roles": ["agent"]})));
    let forged = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let refused = |v: Verdict, what: &str| {
        let d = denied(v);
        assert_eq!(
            (d.status, d.reason),
            (400, edgegate::Reason::RepeatedCredential),
            "{}",
            d.body
        );
        assert!(d.body.contains(what), "{}", d.body);
    };
    for pair in [
        [&a, &a],
        [&a, &forged.to_string()],
        [&forged.to_string(), &a],
    ] {
        refused(
            get(
                &e,
                "/api/x",
                &[("authorization", pair[0]), ("authorization", pair[1])],
            ),
            "the authorization header",
        );
    }
    // as hosts fold them: one field, the values joined by a comma
    refused(
        get(
            &e,
            "/api/x",
            &[("authorization", &format!("{a}, {forged}"))],
        ),
        "the authorization header",
    );
    let key = api_key();
    refused(
        get(&e, "/api/x", &[("x-api-key", &key), ("X-Api-Key", &key)]),
        "the x-api-key header",
    );
    refused(
        get(&e, "/api/x", &[("x-api-key", &format!("{key}, {key}"))]),
        "the x-api-key header",
    );
    // another scheme's commas are not a repeat (and not a credential here)
    let digest = denied(get(
        &e,
        "/api/x",
        &[("authorization", "Digest username=\"a\", realm=\"b\"")],
    ));
    assert_eq!(
        digest.reason,
        edgegate::Reason::CredentialMissing,
        "{}",
        digest.body
    );
    // one of each carrier is not a repeat: the rule's order decides
    allowed(get(
        &e,
        "/api/x",
        &[("authorization", &a), ("x-api-key", &key)],
    ));
    // a route that reads no credential does not care; one that may read one (public, with the
    // default credentials) refuses the ambiguity too
    refused(
        get(
            &e,
            "/healthz",
            &[("authorization", &a), ("authorization", forged)],
        ),
        "the authorization header",
    );
    let mut open = config();
    open["rules"][0]["credentials"] = json!([]);
    allowed(get(
        &engine_from(&open),
        "/healthz",
        &[("authorization", &a), ("authorization", forged)],
    ));
    // the JWT query parameter twice
    let mut cfg = config();
    cfg["jwt"]["from"] = json!({"query_param": "access_token"});
    let t = jwt(json!({}));
    refused(
        get(
            &engine_from(&cfg),
            &format!("/reports/x?access_token={t}&access_token={t}"),
            &[],
        ),
        "the access_token query parameter",
    );
}
