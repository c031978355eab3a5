//! JWTs minted by an independent implementation (PyJWT + cryptography + jwcrypto, see
//! `tests/mint/mint_jwts.py`) must get exactly the verdict the script expects from the core.
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod support;

use std::process::Command;

use edgegate::engine::{Engine, Verdict};
use serde_json::{json, Value};
use support::{bearer, verdict};

/// Runs the minting script with the project's Python ([`edgegate_testkit::python`]: the venv
/// `scripts/setup.sh` makes, or `EDGEGATE_PYTHON`). Without PyJWT this fails: the independent
/// check is not optional.
fn mint() -> Value {
    let python = edgegate_testkit::python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mint/mint_jwts.py");
    let out = Command::new(&python)
        .arg(script)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/setup.sh (or set EDGEGATE_PYTHON)",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "mint_jwts.py failed (needs pyjwt, jwcrypto, cryptography: pip install -r filter/core/tests/mint/requirements.txt):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn engine(m: &Value) -> Engine {
    let cfg = json!({
        "jwt": {"providers": [
            {"name": "rsa", "issuer": m["rsa"]["issuer"], "audiences": [m["audience"]],
             "algorithms": ["RS256", "PS256"], "jwks": m["rsa"]["jwks"], "max_lifetime_seconds": 3600,
             "claims": {"preset": "keycloak", "client_id": "desk", "role_map": {"administrators": "admin"}}},
            {"name": "ec", "issuer": m["ec"]["issuer"], "audiences": [m["audience"]],
             "algorithms": ["ES256", "ES384", "ES512", "EdDSA"], "jwks": m["ec"]["jwks"]},
            {"name": "hs", "issuer": m["hs"]["issuer"], "audiences": [m["audience"]],
             "algorithms": ["HS256", "HS384", "HS512"], "shared_secrets": [{"secret": m["hs"]["secret"]}]},
            // The same issuer, public-key algorithms only: what "mixes HMAC with public-key
            // algorithms" tells the operator to do.
            {"name": "hs-pub", "issuer": m["hs"]["issuer"], "audiences": [m["audience"]],
             "algorithms": ["ES256"], "jwks": m["hs"]["public_jwks"]},
            // One kid on RSA, P-256 and P-521 keys, encryption keys beside them; EdDSA is allowed
            // though no inline key fits it (a warning, not an error).
            {"name": "mixed", "issuer": m["mixed"]["issuer"], "audiences": [m["audience"]],
             "algorithms": ["RS256", "PS256", "ES256", "ES512", "EdDSA"], "jwks": m["mixed"]["jwks"]}
        ]}
    });
    let engine = Engine::from_json(cfg.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("config refused:\n{e}"));
    assert_eq!(
        engine
            .warnings()
            .iter()
            .filter(|w| w.contains("EdDSA is allowed but no configured key"))
            .count(),
        1,
        "{:?}",
        engine.warnings()
    );
    assert!(
        engine
            .warnings()
            .iter()
            .any(|w| w.starts_with("jwt.providers[4].algorithms[4]:")),
        "{:?}",
        engine.warnings()
    );
    engine
}

#[test]
fn pyjwt_tokens_get_the_expected_verdicts() {
    let m = mint();
    let engine = engine(&m);
    let now = m["now"].as_u64().unwrap();
    let mut failures = Vec::new();
    let cases = m["cases"].as_array().unwrap();
    assert!(cases.len() > 30);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let auth = bearer(c["token"].as_str().unwrap());
        let headers = [("authorization", auth.as_str())];
        let got = match verdict(&engine, &mut engine.new_cache(), "/api/x", &headers, now) {
            Verdict::Allow {
                identity: Some(id), ..
            } => {
                assert_eq!(id.subject, "user-1", "{name}");
                "ok".to_string()
            }
            Verdict::Reply(d) => {
                assert!(
                    d.status == 401 || d.status == 403,
                    "{name}: status {}",
                    d.status
                );
                d.reason.code().to_string()
            }
            other => format!("{other:?}"),
        };
        if got != c["expect"].as_str().unwrap() {
            failures.push(format!("{name}: expected {}, got {got}", c["expect"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn claim_mapping_from_a_pyjwt_token() {
    let m = mint();
    let engine = engine(&m);
    let now = m["now"].as_u64().unwrap();
    let c = m["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "RS256")
        .unwrap();
    let auth = bearer(c["token"].as_str().unwrap());
    let request_headers = [
        ("authorization", auth.as_str()),
        ("x-edgegate-roles", "spoofed"),
    ];
    let mut cache = engine.new_cache();
    let Verdict::Allow {
        identity: Some(id),
        headers,
        cached,
        ..
    } = verdict(&engine, &mut cache, "/", &request_headers, now)
    else {
        panic!("RS256 token refused")
    };
    assert!(!cached);
    assert_eq!(id.email.as_deref(), Some("a@example.com"));
    assert!(id.roles.contains(&"admin".to_string()), "{:?}", id.roles);
    assert!(id.roles.contains(&"agent".to_string()));
    assert_eq!(id.scopes, vec!["openid", "tickets:read"]);
    assert_eq!(id.amr, vec!["pwd", "otp"]);
    assert_eq!(id.key_name.as_deref(), Some("rsa-1"));
    let roles = headers
        .iter()
        .find(|(k, _)| k == "x-edgegate-roles")
        .unwrap();
    assert!(roles.1.contains("admin"));
    // The same token again comes from the cache.
    let Verdict::Allow { cached, .. } = verdict(&engine, &mut cache, "/", &request_headers, now)
    else {
        panic!()
    };
    assert!(cached);
    // ...but never after it expires.
    let Verdict::Reply(d) = verdict(&engine, &mut cache, "/", &request_headers, now + 3600) else {
        panic!()
    };
    assert_eq!(d.reason.code(), "token_expired");
}
