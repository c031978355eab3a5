//! Device authorization (login.device, RFC 8628) through the real Envoy filter (.wasm) under
//! wasmtime: a device asks for a code (its POST body held and read), a logged-in browser sees the
//! confirm page and approves, the device polls and gets `authorization_pending`, `slow_down`,
//! then the credential, which opens a session rule; the records are in Envoy's shared data, so a
//! second VM of the same process sees them (the code delivered once).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod support;

use edgegate::identity::{CredentialKind, Identity};
use host_tests::{Action, Host, LocalResponse, Stream};
use serde_json::{json, Value};
use support::{filter_host, no_traps_or_stubs, NOW};

const SESSION_SECRET: &str = "jwoaIj8MA4uqORbygI3Aqi_UBO4gJmB9oGyzqIjWUPI";
const GRANT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code";

fn config() -> Value {
    json!({
        "jwt": {"providers": [{
            "name": "op", "issuer": "https://idp.test", "algorithms": ["HS256"],
            "shared_secrets": [{"kid": "c1", "secret": "N6DNzRHwFWHzTbEbCwlpezlWIlf8Kvn1o1oZe_GowmY"}]
        }]},
        "session": {"keys": [{"kid": "s1", "secret": SESSION_SECRET}], "lifetime_seconds": 3600},
        "login": {
            "provider": "op", "client_id": "edge", "client_secret": "s",
            "redirect_uri": "https://app.test/auth/callback",
            "device": {"interval_s": 5}
        },
        "rules": [{"name": "app", "match": {"path": {"prefix": "/"}}, "credentials": ["session"]}]
    })
}

fn host() -> Host {
    filter_host(&config(), |h| h.set_allow_on_headers_stop_iteration(true))
}

fn headers(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = vec![
        (":method".into(), method.into()),
        (":path".into(), path.into()),
        (":authority".into(), "app.test".into()),
        (":scheme".into(), "https".into()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn local(a: &Action) -> &LocalResponse {
    a.local()
        .unwrap_or_else(|| panic!("expected a local reply, got {a:?}"))
}

/// A form POST (headers, then the body): the filter's answer.
fn post(host: &mut Host, path: &str, body: &str, extra: &[(&str, &str)]) -> LocalResponse {
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(extra);
    let mut req: Stream = host.request(&headers("POST", path, &h));
    assert_eq!(
        req.send_headers(false),
        Action::Pause,
        "the body is read first"
    );
    local(&req.body(body.as_bytes(), true)).clone()
}

fn json_of(r: &LocalResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn poll(host: &mut Host, device_code: &str) -> (u32, Value) {
    let body = format!("grant_type={GRANT}&device_code={device_code}");
    let r = post(host, "/auth/device/token", &body, &[]);
    (r.status, json_of(&r))
}

/// alice's session cookie, as the login would set it.
fn alice() -> String {
    let cfg = config();
    let engine = edgegate::Engine::from_json(&serde_json::to_vec(&cfg).unwrap()).unwrap();
    let mut id = Identity::new("alice", CredentialKind::Jwt, "op");
    id.roles = vec!["admin".into()];
    let value = engine.sessions().unwrap().seal(&id, NOW).unwrap();
    format!("edgegate_session={value}")
}

#[test]
fn the_device_flow_runs_in_the_filter_with_shared_data_across_vms() {
    let mut host = host();
    let r = post(&mut host, "/auth/device/code", "client_id=host-test", &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let code = json_of(&r);
    assert_eq!(code["verification_uri"], "https://app.test/auth/device");
    let user_code = code["user_code"].as_str().unwrap().to_string();
    let device_code = code["device_code"].as_str().unwrap().to_string();

    let (status, v) = poll(&mut host, &device_code);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let (_, v) = poll(&mut host, &device_code);
    assert_eq!(v["error"], "slow_down");
    assert_eq!(v["interval"], 10);

    // a browser without a session is sent to log in; with one, the confirm page
    let page_path = format!("/auth/device?user_code={user_code}");
    let a = host.request(&headers("GET", &page_path, &[])).headers();
    assert_eq!(local(&a).status, 302);
    let cookie = alice();
    let a = host
        .request(&headers("GET", &page_path, &[("cookie", &cookie)]))
        .headers();
    let page = String::from_utf8(local(&a).body.clone()).unwrap();
    assert_eq!(local(&a).status, 200, "{page}");
    assert!(page.contains("host-test"));
    let at = page.find("name=csrf value=\"").unwrap() + 17;
    let csrf = &page[at..at + page[at..].find('"').unwrap()];

    // approved in a second VM of the same process: the records are shared
    let mut other = host.spawn_vm().unwrap();
    other.set_allow_on_headers_stop_iteration(true);
    other.set_time(NOW);
    assert!(other
        .configure(serde_json::to_vec(&config()).unwrap())
        .unwrap());
    let body = format!("user_code={user_code}&csrf={csrf}&action=approve");
    let r = post(&mut other, "/auth/device", &body, &[("cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    host.set_time(NOW + 10);
    let (status, v) = poll(&mut host, &device_code);
    assert_eq!(status, 200, "{v}");
    let token = v["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("egs_"));
    other.set_time(NOW + 20);
    let (_, v) = poll(&mut other, &device_code);
    assert_eq!(v["error"], "invalid_grant", "delivered once");

    // the credential opens the session rule; it does not go upstream
    let bearer = format!("Bearer {token}");
    let mut req = host.request(&headers("GET", "/app", &[("authorization", &bearer)]));
    assert_eq!(
        req.headers(),
        Action::Continue,
        "{:?}",
        req.local_response()
    );
    let up = req.upstream_headers().unwrap();
    assert_eq!(up.get("x-edgegate-subject").as_deref(), Some("alice"));
    assert_eq!(up.get("authorization"), None);
    no_traps_or_stubs(&host);
    no_traps_or_stubs(&other);
}
