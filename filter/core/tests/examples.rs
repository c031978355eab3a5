//! The per-IdP example configs in `envoy/examples/` load, and each IdP's realistic sample token
//! payload (`envoy/examples/<idp>.payload.json`) maps to the roles, permissions and identity the
//! example's rules expect, through the provider's own `claims` section (preset included).
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};

use edgegate::config::Config;
use edgegate::{CredentialKind, Identity};
use serde_json::{Map, Value};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../envoy/examples")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the sample payload of one IdP must become.
struct Expect {
    idp: &'static str,
    preset: &'static str,
    subject: &'static str,
    email: Option<&'static str>,
    roles: &'static [&'static str],
    permissions: &'static [&'static str],
    scopes: &'static [&'static str],
}

const EXPECT: &[Expect] = &[
    Expect {
        idp: "keycloak",
        preset: "keycloak",
        subject: "f3b6a1c2-8d4e-4f7a-9b0c-1d2e3f4a5b6c",
        email: Some("ann@example.com"),
        // realm roles, then the desk-api client's roles (desk-admin renamed to admin); the
        // `account` client's roles do not count.
        roles: &[
            "default-roles-desk",
            "offline_access",
            "uma_authorization",
            "agent",
            "admin",
        ],
        permissions: &[],
        scopes: &["openid", "email", "profile"],
    },
    Expect {
        idp: "google",
        preset: "google",
        subject: "110248495921238986420",
        email: Some("ann@example.com"),
        // the Workspace domain (`hd`) mapped to a role
        roles: &["staff"],
        permissions: &[],
        scopes: &[],
    },
    Expect {
        idp: "microsoft",
        preset: "microsoft",
        subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        email: None,
        // app role renamed, a group object id named, an unnamed group kept as it is
        roles: &["agent", "support", "11111111-2222-4333-8444-555555555555"],
        permissions: &["Tickets.Read", "Tickets.ReadWrite"],
        scopes: &["Tickets.Read", "Tickets.ReadWrite"],
    },
    Expect {
        idp: "auth0",
        preset: "auth0",
        subject: "auth0|64f1c2d3e4b5a6978899aabb",
        email: None,
        roles: &["admin", "agent"],
        permissions: &["read:tickets", "write:tickets"],
        scopes: &[
            "openid",
            "profile",
            "email",
            "read:tickets",
            "write:tickets",
        ],
    },
    Expect {
        idp: "cognito",
        preset: "cognito",
        // access tokens carry the user name in `username` (`sub` is a UUID)
        subject: "ann",
        email: None,
        roles: &["agent", "admin"],
        permissions: &[],
        scopes: &["desk/tickets.read", "desk/tickets.write", "openid"],
    },
    Expect {
        idp: "okta",
        preset: "okta",
        subject: "ann@example.com",
        email: None,
        roles: &["Everyone", "agent"],
        permissions: &[],
        scopes: &["openid", "email", "tickets.read"],
    },
];

#[test]
fn every_example_config_loads() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.ends_with(".payload.json") {
            continue;
        }
        if let Err(e) = edgegate::Engine::from_json(&read(&path)) {
            panic!("{}: refused:\n{e}", path.display());
        }
        n += 1;
    }
    assert!(n >= EXPECT.len(), "only {n} example configs found");
}

#[test]
fn every_preset_has_an_example_with_a_sample_payload() {
    for preset in edgegate::claims::Preset::ALL {
        assert!(
            EXPECT.iter().any(|e| e.preset == preset.name()),
            "no example for preset {preset}"
        );
    }
}

#[test]
fn sample_payloads_map_to_the_expected_identity() {
    for want in EXPECT {
        let dir = examples_dir();
        let config = Config::from_json(&read(&dir.join(format!("{}.json", want.idp))))
            .unwrap_or_else(|e| panic!("{}: {e}", want.idp));
        let payload: Map<String, Value> =
            serde_json::from_slice(&read(&dir.join(format!("{}.payload.json", want.idp)))).unwrap();
        let provider = &config.jwt.providers[0];
        assert_eq!(
            provider.claims.preset.map(|p| p.name()),
            Some(want.preset),
            "{}: preset",
            want.idp
        );

        // The sample is a token this provider would accept: its issuer, one of its audiences
        // (Cognito access tokens have no `aud`: that example checks none), its required claims.
        assert_eq!(
            payload["iss"].as_str(),
            Some(provider.issuer.as_str()),
            "{}: iss",
            want.idp
        );
        let auds: Vec<&str> = match payload.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        assert!(
            provider.audiences.is_empty()
                || provider
                    .audiences
                    .iter()
                    .any(|a| auds.contains(&a.as_str())),
            "{}: aud {auds:?} names none of {:?}",
            want.idp,
            provider.audiences
        );
        for claim in &provider.required_claims {
            assert!(
                payload.contains_key(claim),
                "{}: required claim {claim} missing",
                want.idp
            );
        }
        if let (Some(max), Some(iat), Some(exp)) = (
            provider.max_lifetime_seconds,
            payload["iat"].as_u64(),
            payload["exp"].as_u64(),
        ) {
            assert!(exp - iat <= max, "{}: lifetime over the maximum", want.idp);
        }

        let mapping = provider
            .claims
            .compile()
            .unwrap_or_else(|e| panic!("{}: claims: {e:?}", want.idp));
        let mut id = Identity::new("unset", CredentialKind::Jwt, provider.name.clone());
        mapping.apply(&payload, &mut id);
        assert_eq!(id.subject, want.subject, "{}: subject", want.idp);
        assert_eq!(id.email.as_deref(), want.email, "{}: email", want.idp);
        assert_eq!(id.roles, want.roles, "{}: roles", want.idp);
        assert_eq!(
            id.permissions, want.permissions,
            "{}: permissions",
            want.idp
        );
        assert_eq!(id.scopes, want.scopes, "{}: scopes", want.idp);
    }
}

#[test]
fn a_payload_without_the_role_claims_grants_no_role() {
    // The mapping is not vacuous: stripping each IdP's role claims takes every role away.
    for want in EXPECT.iter().filter(|e| !e.roles.is_empty()) {
        let dir = examples_dir();
        let config = Config::from_json(&read(&dir.join(format!("{}.json", want.idp)))).unwrap();
        let mut payload: Map<String, Value> =
            serde_json::from_slice(&read(&dir.join(format!("{}.payload.json", want.idp)))).unwrap();
        for claim in [
            "realm_access",
            "resource_access",
            "hd",
            "roles",
            "groups",
            "https://desk.example.com/roles",
            "cognito:groups",
        ] {
            payload.remove(claim);
        }
        let provider = &config.jwt.providers[0];
        let mut id = Identity::new("unset", CredentialKind::Jwt, provider.name.clone());
        provider.claims.compile().unwrap().apply(&payload, &mut id);
        assert!(id.roles.is_empty(), "{}: {:?}", want.idp, id.roles);
    }
}
