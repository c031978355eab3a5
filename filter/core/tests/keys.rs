//! Configs that real key sets produce load (issue 11): an allow-list wider than the inline keys
//! is a warning, encryption keys beside signing keys are skipped, one `kid` on keys of different
//! types selects by fit, providers may share an issuer with disjoint algorithms (the way out the
//! "mixes HMAC with public-key algorithms" error names), ES512, small-order Ed25519 keys refused,
//! and NumericDate bounds and fractions — all through `Engine::from_json` and `Engine::decide`.
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use edgegate_testkit::test_keys;

use edgegate::engine::{Engine, Verdict};
use edgegate::{b64, Reason};
use serde_json::{json, Value};
use support::{bearer, verdict};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.example.com";

fn jwks(keys: &[String]) -> Value {
    serde_json::from_str(&format!(r#"{{"keys":[{}]}}"#, keys.join(","))).unwrap()
}

fn provider(name: &str, algs: &[&str], keys: Value) -> Value {
    json!({"name": name, "issuer": ISS, "audiences": ["desk"], "algorithms": algs, "jwks": keys})
}

fn load(providers: Value) -> Result<Engine, String> {
    Engine::from_json(
        json!({"jwt": {"providers": providers}})
            .to_string()
            .as_bytes(),
    )
    .map_err(|e| e.to_string())
}

fn claims(over: Value) -> String {
    let mut c =
        json!({"iss": ISS, "sub": "alice", "aud": "desk", "iat": NOW - 5, "exp": NOW + 600});
    for (k, v) in over.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

/// The verdict's reason code, or "ok" with the provider that accepted it.
fn decide(e: &Engine, token: &str) -> String {
    let auth = bearer(token);
    match verdict(e, &mut e.new_cache(), "/", &[("authorization", &auth)], NOW) {
        Verdict::Allow {
            identity: Some(id), ..
        } => format!("ok:{}", id.provider),
        Verdict::Reply(d) => d.reason.code().to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn an_allow_list_wider_than_the_inline_keys_is_a_warning() {
    // RS256 and ES512 are allowed, only an RSA key is inline: loads, with a warning for ES512
    let e = load(json!([provider(
        "idp",
        &["RS256", "ES512"],
        jwks(&[test_keys::rsa_jwk("r", 2048)])
    )]))
    .unwrap();
    let w: Vec<&String> = e
        .warnings()
        .iter()
        .filter(|w| w.contains("no configured key can verify"))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", e.warnings());
    assert!(
        w[0].starts_with("jwt.providers[0].algorithms[1]: ES512 is allowed"),
        "{}",
        w[0]
    );
    let rs = test_keys::token("RS256", Some("r"), &claims(json!({})));
    assert_eq!(decide(&e, &rs), "ok:idp");
    // an ES512 token finds no key: refused, never verified with the RSA key
    let es = test_keys::token("ES512", Some("r"), &claims(json!({})));
    assert_eq!(decide(&e, &es), Reason::AlgKeyMismatch.code());
    let es = test_keys::token("ES512", None, &claims(json!({})));
    assert_eq!(decide(&e, &es), Reason::NoMatchingKey.code());
    // no key for any allowed algorithm is still an error: such a provider accepts nothing
    let err = load(json!([provider(
        "idp",
        &["ES256", "ES512"],
        jwks(&[test_keys::rsa_jwk("r", 2048)])
    )]))
    .unwrap_err();
    assert!(
        err.contains("jwt.providers[0].algorithms") && err.contains("any of the allowed"),
        "{err}"
    );
}

#[test]
fn encryption_keys_and_alg_members_are_normal_in_an_inline_set() {
    let enc = test_keys::rsa_jwk("enc", 2048).replace('{', r#"{"use":"enc","alg":"RSA-OAEP-256","#);
    let ecdh = test_keys::p256_jwk("x").replace('{', r#"{"alg":"ECDH-ES+A128KW","#);
    let sig = test_keys::p256_jwk("s").replace('{', r#"{"alg":"ES256","use":"sig","#);
    let e = load(json!([provider(
        "idp",
        &["ES256"],
        jwks(&[enc, ecdh, sig])
    )]))
    .unwrap();
    assert!(e.warnings().is_empty(), "{:?}", e.warnings());
    let t = test_keys::token("ES256", Some("s"), &claims(json!({})));
    assert_eq!(decide(&e, &t), "ok:idp");
    // the ECDH key's kid names no signing key
    let t = test_keys::token("ES256", Some("x"), &claims(json!({})));
    assert_eq!(decide(&e, &t), Reason::UnknownKid.code());
}

#[test]
fn one_kid_on_keys_of_different_types() {
    let set = jwks(&["RS256", "ES256", "ES512", "EdDSA"].map(|alg| test_keys::jwk_for(alg, "k")));
    let e = load(json!([provider(
        "idp",
        &["RS256", "PS256", "ES256", "ES512", "EdDSA"],
        set
    )]))
    .unwrap();
    for alg in ["RS256", "PS256", "ES256", "ES512", "EdDSA"] {
        let t = test_keys::token(alg, Some("k"), &claims(json!({})));
        assert_eq!(decide(&e, &t), "ok:idp", "{alg}");
    }
    // ambiguous: two P-256 keys under one kid
    let err = load(json!([provider(
        "idp",
        &["ES256"],
        jwks(&[test_keys::p256_jwk("k"), test_keys::p256_jwk("k")])
    )]))
    .unwrap_err();
    assert!(
        err.contains("jwt.providers[0].jwks") && err.contains("both fit ES256"),
        "{err}"
    );
    // an inline JWKS and a shared secret under one kid are different types: fine
    let secret = b64::encode(test_keys::HMAC_SECRET);
    let e = Engine::from_json(
        json!({"jwt": {"providers": [{"name": "idp", "issuer": ISS, "audiences": ["desk"],
            "algorithms": ["HS256"], "jwks": jwks(&[test_keys::rsa_jwk("hmac", 2048)]),
            "shared_secrets": [{"kid": "hmac", "secret": secret}]}]}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let t = test_keys::token("HS256", Some("hmac"), &claims(json!({})));
    assert_eq!(decide(&e, &t), "ok:idp");
}

#[test]
fn the_mixes_hmac_error_advice_works_providers_share_an_issuer() {
    let secret = b64::encode(test_keys::HMAC_SECRET);
    let public = jwks(&[test_keys::rsa_jwk("rsa", 2048), test_keys::p521_jwk("p521")]);
    // one provider with both kinds: refused, and the message says what to do
    let err = Engine::from_json(
        json!({"jwt": {"providers": [{"name": "idp", "issuer": ISS, "audiences": ["desk"],
            "algorithms": ["HS256", "RS256", "ES512"], "jwks": public,
            "shared_secrets": [{"secret": secret}]}]}})
        .to_string()
        .as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mixes HMAC") && err.contains("two providers with the same issuer"),
        "{err}"
    );
    // ...exactly that: two providers, same issuer, disjoint algorithms
    let e = load(json!([
        {"name": "idp-hmac", "issuer": ISS, "audiences": ["desk"], "algorithms": ["HS256"],
         "shared_secrets": [{"secret": secret}]},
        provider("idp-public", &["RS256", "ES512"], public.clone()),
    ]))
    .unwrap();
    let hs = test_keys::token("HS256", None, &claims(json!({})));
    assert_eq!(decide(&e, &hs), "ok:idp-hmac");
    let rs = test_keys::token("RS256", Some("rsa"), &claims(json!({})));
    assert_eq!(decide(&e, &rs), "ok:idp-public");
    let es = test_keys::token("ES512", Some("p521"), &claims(json!({})));
    assert_eq!(decide(&e, &es), "ok:idp-public");
    // an alg neither allows: refused by the first provider of that issuer
    let ps = test_keys::token("PS256", Some("rsa"), &claims(json!({})));
    assert_eq!(decide(&e, &ps), Reason::AlgNotAllowed.code());
    // the HS provider never sees an RS256 token, and an HS256 token naming the RSA kid is
    // checked by the HS provider's keys only
    let confused = test_keys::token("HS256", Some("rsa"), &claims(json!({})));
    assert_eq!(decide(&e, &confused), Reason::UnknownKid.code());
    // overlapping algorithm sets on one issuer are refused (default RS256 counts)
    let err = load(json!([
        provider("a", &["RS256", "PS256"], public.clone()),
        provider("b", &["ES512", "PS256"], public.clone()),
    ]))
    .unwrap_err();
    assert!(
        err.contains("jwt.providers[1].issuer") && err.contains("both allow PS256"),
        "{err}"
    );
    let mut a = provider("a", &[], public.clone());
    a["algorithms"] = json!([]);
    let err = load(json!([a, provider("b", &["RS256"], public)])).unwrap_err();
    assert!(err.contains("both allow RS256"), "{err}");
}

#[test]
fn es512_tokens_verify_and_forgeries_do_not() {
    let e = load(json!([provider(
        "idp",
        &["ES512"],
        jwks(&[test_keys::p521_jwk("p521")])
    )]))
    .unwrap();
    let t = test_keys::token("ES512", Some("p521"), &claims(json!({})));
    assert_eq!(decide(&e, &t), "ok:idp");
    // another payload under the same signature
    let (h, rest) = t.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let forged = format!("{h}.{}.{sig}", b64::encode(claims(json!({"sub": "admin"}))));
    assert_eq!(decide(&e, &forged), Reason::BadSignature.code());
    // an ES256-sized signature
    let short = format!(
        "{}.{}",
        t.rsplit_once('.').unwrap().0,
        b64::encode([1u8; 64])
    );
    assert_eq!(decide(&e, &short), Reason::BadSignatureFormat.code());
}

#[test]
fn small_order_ed25519_keys_are_refused_at_load() {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let key = format!(
        r#"{{"kty":"OKP","crv":"Ed25519","kid":"o","x":"{}"}}"#,
        b64::encode(identity)
    );
    let err = load(json!([provider("idp", &["EdDSA"], jwks(&[key]))])).unwrap_err();
    assert!(
        err.contains("jwt.providers[0].jwks")
            && err.contains("keys[0].x")
            && err.contains("small order"),
        "{err}"
    );
}

#[test]
fn numeric_dates_keep_their_fraction_and_stop_at_2_pow_53() {
    let mut p = provider("idp", &["ES256"], jwks(&[test_keys::p256_jwk("p")]));
    p["clock_skew_seconds"] = json!(0);
    let e = load(json!([p])).unwrap();
    let tok = |over: Value| test_keys::token("ES256", Some("p"), &claims(over));
    // exp half a second after now: valid (truncated, it would be now: expired)
    assert_eq!(decide(&e, &tok(json!({"exp": NOW as f64 + 0.5}))), "ok:idp");
    assert_eq!(
        decide(&e, &tok(json!({"exp": NOW as f64 - 0.5}))),
        Reason::TokenExpired.code()
    );
    // nbf half a second after now: not valid yet (truncated, it would be now: valid)
    assert_eq!(
        decide(&e, &tok(json!({"nbf": NOW as f64 + 0.5}))),
        Reason::TokenNotYetValid.code()
    );
    assert_eq!(
        decide(&e, &tok(json!({"iat": NOW as f64 + 0.25}))),
        Reason::IssuedInFuture.code()
    );
    // the bound: 2^53 is a date, anything beyond is malformed, whatever its JSON form
    assert_eq!(decide(&e, &tok(json!({"exp": 1u64 << 53}))), "ok:idp");
    for (claim, v) in [
        ("exp", json!((1u64 << 53) + 1)),
        ("exp", json!(u64::MAX)),
        ("exp", json!(1e300)),
        ("exp", json!(9007199254740994.0)),
        ("nbf", json!((1u64 << 53) + 1)),
        ("iat", json!(1u64 << 60)),
        ("exp", json!(-1)),
    ] {
        assert_eq!(
            decide(&e, &tok(json!({ claim: v.clone() }))),
            Reason::MalformedClaims.code(),
            "{claim} {v}"
        );
    }
}
