//! Interoperability of magic-link tokens with PyJWT, an independent JWT implementation:
//! tokens PyJWT mints verify (or are refused for the right reason) with edgegate, and tokens
//! edgegate issues verify with PyJWT.
//!
//! Python: [`edgegate_testkit::python`] (the venv `scripts/setup.sh` makes, or `$EDGEGATE_PYTHON`).
//! Without PyJWT the test fails when `$CI` is set and prints "skipped: pyjwt missing" otherwise.
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use edgegate::b64;
use edgegate::magic::{MagicLinkConfig, MagicLinkRequest, MagicLinks, Purpose};
use edgegate::{CredentialKind, Reason};
use serde_json::{json, Value};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mint/magic.py");

fn python() -> std::path::PathBuf {
    edgegate_testkit::python()
}

/// Whether PyJWT can be used; fails the test under CI when it cannot.
fn pyjwt_available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import jwt"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!(
                "PyJWT is not importable by `{}` (run scripts/setup.sh or set EDGEGATE_PYTHON); CI requires it",
                python().display()
            );
        }
        println!("skipped: pyjwt missing");
    }
    ok
}

/// Runs the jobs through tests/mint/magic.py in one process.
fn py(jobs: &[Value]) -> Vec<Value> {
    let mut child = Command::new(python())
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(jobs).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mint script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), jobs.len());
    results
}

fn secret(byte: u8) -> String {
    b64::encode([byte; 32])
}

fn links() -> MagicLinks {
    serde_json::from_value::<MagicLinkConfig>(json!({
        "issuer": "https://desk.example.com",
        "keys": [{"kid": "m2", "secret": secret(2)}, {"kid": "m1", "secret": secret(1)}]
    }))
    .unwrap()
    .compile()
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mint(claims: Value, kid: Option<&str>, secret: String, alg: &str) -> Value {
    let headers = match kid {
        Some(k) => json!({ "kid": k }),
        None => json!({}),
    };
    json!({"op": "mint", "secret": secret, "claims": claims, "headers": headers, "alg": alg})
}

#[test]
fn pyjwt_minted_links_verify_with_edgegate() {
    if !pyjwt_available() {
        return;
    }
    let now = now();
    let base = |purpose: &str, life: u64| {
        json!({
            "iss": "https://desk.example.com", "aud": "edgegate-magic",
            "email": "ana@example.com", "purpose": purpose,
            "iat": now, "exp": now + life, "jti": "pyjwt-jti-1"
        })
    };
    let mut guest = base("guest", 86_400);
    guest["sub"] = json!("guest-42");
    guest["scope"] = json!("/tickets/TRK-9");
    guest["target"] = json!("/tickets/TRK-9#reply");
    let mut expired = base("login", 600);
    expired["iat"] = json!(now - 700);
    expired["exp"] = json!(now - 100);
    let mut wrong_aud = base("login", 600);
    wrong_aud["aud"] = json!("https://api.example.com");
    let mut wrong_iss = base("login", 600);
    wrong_iss["iss"] = json!("edgegate");
    let mut unscoped_guest = base("guest", 600);
    unscoped_guest["sub"] = json!("guest-42");

    let jobs = [
        mint(base("login", 600), Some("m1"), secret(1), "HS256"),
        mint(guest, Some("m2"), secret(2), "HS256"),
        mint(base("join", 7 * 86_400), Some("m2"), secret(2), "HS256"),
        mint(expired, Some("m1"), secret(1), "HS256"),
        mint(wrong_aud, Some("m1"), secret(1), "HS256"),
        mint(wrong_iss, Some("m1"), secret(1), "HS256"),
        mint(base("login", 7200), Some("m1"), secret(1), "HS256"),
        mint(base("login", 600), Some("m1"), secret(3), "HS256"),
        mint(base("login", 600), Some("m1"), secret(1), "HS512"),
        mint(base("login", 600), None, secret(1), "HS256"),
        mint(base("login", 600), Some("m7"), secret(1), "HS256"),
        mint(unscoped_guest, Some("m1"), secret(1), "HS256"),
        mint(base("admin", 600), Some("m1"), secret(1), "HS256"),
    ];
    let tokens: Vec<String> = py(&jobs)
        .into_iter()
        .map(|r| r["token"].as_str().unwrap().to_string())
        .collect();
    let l = links();

    let m = l.verify(&tokens[0], now).unwrap();
    assert_eq!(m.purpose, Purpose::Login);
    assert_eq!(m.jti, "pyjwt-jti-1");
    assert_eq!(m.expires_at, now + 600);
    assert_eq!(m.identity.subject, "ana@example.com");
    assert_eq!(m.identity.email.as_deref(), Some("ana@example.com"));
    assert_eq!(m.identity.credential, CredentialKind::MagicLink);
    assert_eq!(m.identity.key_name.as_deref(), Some("m1"));

    let m = l.verify(&tokens[1], now).unwrap();
    assert_eq!(m.purpose, Purpose::Guest);
    assert_eq!(m.identity.subject, "guest-42");
    assert_eq!(m.path_scope.as_deref(), Some("/tickets/TRK-9"));
    assert_eq!(m.identity.path_scope.as_deref(), Some("/tickets/TRK-9"));
    assert_eq!(m.target.as_deref(), Some("/tickets/TRK-9#reply"));
    assert_eq!(m.identity.key_name.as_deref(), Some("m2"));

    assert_eq!(l.verify(&tokens[2], now).unwrap().purpose, Purpose::Join);

    let expect = [
        (3, Reason::TokenExpired),
        (4, Reason::WrongAudience),
        (5, Reason::UnknownIssuer),
        (6, Reason::LifetimeTooLong),
        (7, Reason::BadSignature),
        (8, Reason::AlgNotAllowed),
        (9, Reason::UnknownKid),
        (10, Reason::UnknownKid),
        (11, Reason::MissingClaim),
        (12, Reason::MalformedClaims),
    ];
    for (i, reason) in expect {
        assert_eq!(
            l.verify(&tokens[i], now).unwrap_err().reason(),
            reason,
            "token {i}"
        );
    }
}

#[test]
fn edgegate_issued_links_verify_with_pyjwt() {
    if !pyjwt_available() {
        return;
    }
    let now = now();
    let l = links();
    let login = l
        .issue(
            &MagicLinkRequest {
                email: Some("ana@example.com".into()),
                purpose: Some(Purpose::Login),
                ..Default::default()
            },
            now,
            &[7; 16],
        )
        .unwrap();
    let guest = l
        .issue(
            &MagicLinkRequest {
                sub: Some("guest-42".into()),
                purpose: Some(Purpose::Guest),
                path_scope: Some("/tickets/TRK-9".into()),
                target: Some("https://desk.example.com/tickets/TRK-9".into()),
                ttl: Some(3600),
                ..Default::default()
            },
            now,
            &[8; 16],
        )
        .unwrap();
    let verify = |token: &str, secret: String, iss: &str, aud: &str| json!({"op": "verify", "secret": secret, "token": token, "issuer": iss, "audience": aud});
    let iss = "https://desk.example.com";
    let results = py(&[
        verify(&login, secret(2), iss, "edgegate-magic"),
        verify(&guest, secret(2), iss, "edgegate-magic"),
        // PyJWT refuses them too when something is off, so the checks above can fail
        verify(&login, secret(1), iss, "edgegate-magic"),
        verify(&login, secret(2), iss, "https://api.example.com"),
        verify(&login, secret(2), "edgegate", "edgegate-magic"),
    ]);

    let r = &results[0];
    assert_eq!(
        r["header"],
        json!({"alg": "HS256", "typ": "JWT", "kid": "m2"})
    );
    let c = &r["claims"];
    assert_eq!(c["iss"], iss);
    assert_eq!(c["aud"], "edgegate-magic");
    assert_eq!(c["email"], "ana@example.com");
    assert_eq!(c["purpose"], "login");
    assert_eq!(c["iat"], now);
    assert_eq!(c["exp"], now + 600);
    assert_eq!(c["jti"], b64::encode([7u8; 16]));
    assert!(c.get("sub").is_none() && c.get("scope").is_none());

    let c = &results[1]["claims"];
    assert_eq!(c["sub"], "guest-42");
    assert_eq!(c["purpose"], "guest");
    assert_eq!(c["scope"], "/tickets/TRK-9");
    assert_eq!(c["target"], "https://desk.example.com/tickets/TRK-9");
    assert_eq!(c["exp"], now + 3600);

    assert_eq!(results[2]["error"], "InvalidSignatureError");
    assert_eq!(results[3]["error"], "InvalidAudienceError");
    assert_eq!(results[4]["error"], "InvalidIssuerError");
}
