//! The filter's host signature backend against this host's `verify_signature` (Envoy's foreign
//! function, same protobufs, verified here with ring and p521): RS256/384/512, ES256, ES384 and
//! ES512 go to the
//! host, PS* and EdDSA stay in wasm; a host without the function leaves everything in wasm; a
//! host that fails or answers garbage refuses (fail closed).
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod support;

use edgegate_testkit::test_keys;

use host_tests::{Action, ForeignMode, Host};
use serde_json::{json, Value};
use support::{counted, filter_host, no_traps_or_stubs, AUD, NOW};

const ISS: &str = "https://issuer.test";
const HOST_METRIC: &str = "edgegate_signature_checks.backend.host";
const WASM_METRIC: &str = "edgegate_signature_checks.backend.wasm";
const ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS512", "EdDSA",
];

fn config() -> Value {
    let jwks: Value = serde_json::from_str(&format!(
        r#"{{"keys":[{},{},{},{},{}]}}"#,
        test_keys::rsa_jwk("rsa", 2048),
        test_keys::p256_jwk("p256"),
        test_keys::p384_jwk("p384"),
        test_keys::p521_jwk("p521"),
        test_keys::ed25519_jwk("ed25519"),
    ))
    .unwrap();
    json!({
        "jwt": {"providers": [{
            "name": "p",
            "issuer": ISS,
            "audiences": [AUD],
            "algorithms": ALGS,
            "jwks": jwks
        }]},
        "rules": [{"name": "app", "match": {"path": {"prefix": "/"}}, "credentials": ["jwt"]}]
    })
}

fn host(mode: ForeignMode) -> Host {
    filter_host(&config(), |h| h.set_foreign_mode(mode))
}

fn token(alg: &str, sub: &str) -> String {
    let claims = json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": NOW - 5, "exp": NOW + 300});
    test_keys::token(alg, Some(test_keys::kid_for(alg)), &claims.to_string())
}

/// The token with one signature byte changed (decoded, flipped, re-encoded).
fn tampered(t: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let (input, sig) = t.rsplit_once('.').unwrap();
    let mut s = URL_SAFE_NO_PAD.decode(sig).unwrap();
    s[10] ^= 0x01;
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(&s))
}

/// The status of a GET with `token` as bearer: 200 when it went upstream.
fn status(host: &mut Host, token: &str) -> u32 {
    let auth = format!("Bearer {token}");
    let mut req = host.request(&[
        (":method", "GET"),
        (":path", "/x"),
        (":authority", "app.test"),
        (":scheme", "https"),
        ("authorization", auth.as_str()),
    ]);
    match req.headers() {
        Action::Continue => 200,
        Action::LocalResponse(r) => r.status,
        other => panic!("unexpected action {other:?}"),
    }
}

fn hash_of(alg: &str) -> &'static str {
    match &alg[2..] {
        "256" => "sha256",
        "384" => "sha384",
        _ => "sha512",
    }
}

#[test]
fn rsa_pkcs1_and_ecdsa_are_verified_by_the_host_the_rest_in_wasm() {
    let mut host = host(ForeignMode::Verify);
    assert!(host.logged("verified by the host"), "{:#?}", host.logs());
    let probes = host.verify_calls().len();
    let mut host_checks = 0;
    let mut wasm_checks = 0;
    for (i, alg) in ALGS.iter().enumerate() {
        let before = host.verify_calls().len();
        assert_eq!(
            status(&mut host, &token(alg, &format!("u{i}"))),
            200,
            "{alg}"
        );
        let calls = host.verify_calls();
        let by_host = matches!(
            *alg,
            "RS256" | "RS384" | "RS512" | "ES256" | "ES384" | "ES512"
        );
        if by_host {
            assert_eq!(calls.len(), before + 1, "{alg} not sent to the host");
            assert_eq!(calls.last().unwrap(), hash_of(alg), "{alg}");
            host_checks += 1;
        } else {
            assert_eq!(calls.len(), before, "{alg} must not be sent to the host");
            wasm_checks += 1;
        }
        // the same signature changed: refused, by the same backend
        assert_eq!(
            status(&mut host, &tampered(&token(alg, &format!("t{i}")))),
            401,
            "{alg}"
        );
        let after = host.verify_calls().len();
        assert_eq!(after, before + if by_host { 2 } else { 0 }, "{alg}");
    }
    assert!(probes <= 1);
    assert_eq!(counted(&mut host, HOST_METRIC), Some(2 * host_checks));
    assert_eq!(counted(&mut host, WASM_METRIC), Some(2 * wasm_checks));
    no_traps_or_stubs(&host);
}

#[test]
fn a_host_without_the_function_leaves_every_alg_to_wasm() {
    let mut host = host(ForeignMode::Absent);
    assert!(
        host.logged("the host has no verify_signature function"),
        "{:#?}",
        host.logs()
    );
    for (i, alg) in ALGS.iter().enumerate() {
        assert_eq!(
            status(&mut host, &token(alg, &format!("u{i}"))),
            200,
            "{alg}"
        );
        assert_eq!(
            status(&mut host, &tampered(&token(alg, &format!("t{i}")))),
            401,
            "{alg}"
        );
    }
    assert!(host.verify_calls().is_empty());
    assert_eq!(counted(&mut host, HOST_METRIC), None);
    assert_eq!(counted(&mut host, WASM_METRIC), Some(2 * ALGS.len() as i64));
    no_traps_or_stubs(&host);
}

#[test]
fn a_failing_host_function_refuses_valid_tokens() {
    for mode in [
        ForeignMode::Fail(2),  // BAD_ARGUMENT
        ForeignMode::Fail(10), // INTERNAL_FAILURE
        ForeignMode::Fail(3),  // SERIALIZATION_FAILURE
        ForeignMode::Garbage,
    ] {
        let mut host = host(mode);
        for alg in ["RS256", "ES256", "ES384", "ES512"] {
            assert_eq!(
                status(&mut host, &token(alg, "alice")),
                401,
                "{alg} {mode:?}"
            );
        }
        // the wasm algorithms are not affected
        assert_eq!(status(&mut host, &token("PS256", "alice")), 200, "{mode:?}");
        assert_eq!(counted(&mut host, HOST_METRIC), Some(4), "{mode:?}");
        no_traps_or_stubs(&host);
    }
}

#[test]
fn a_host_that_lost_the_function_after_the_probe_still_verifies_in_wasm() {
    let mut host = host(ForeignMode::Verify);
    host.set_foreign_mode(ForeignMode::Absent);
    assert_eq!(status(&mut host, &token("RS256", "alice")), 200);
    assert_eq!(status(&mut host, &tampered(&token("RS256", "bob"))), 401);
    assert_eq!(counted(&mut host, HOST_METRIC), None);
    assert_eq!(counted(&mut host, WASM_METRIC), Some(2));
    no_traps_or_stubs(&host);
}

#[test]
fn signature_format_checks_run_before_the_host_call() {
    let mut host = host(ForeignMode::Verify);
    let before = host.verify_calls().len();
    // an ES256 signature with s = 0, and an RS256 signature one byte short
    let t = token("ES256", "alice");
    let (input, _) = t.rsplit_once('.').unwrap();
    let zero_s = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let mut s = test_keys::sign("ES256", input.as_bytes());
        s[32..].fill(0);
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(&s))
    };
    assert_eq!(status(&mut host, &zero_s), 401);
    let t = token("RS256", "alice");
    let short = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let (input, sig) = t.rsplit_once('.').unwrap();
        let s = URL_SAFE_NO_PAD.decode(sig).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(&s[1..]))
    };
    assert_eq!(status(&mut host, &short), 401);
    assert_eq!(
        host.verify_calls().len(),
        before,
        "malformed signatures reached the host"
    );
    no_traps_or_stubs(&host);
}
