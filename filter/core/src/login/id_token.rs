//! Step 2b: the ID token of a token response (login or renewal): signature with the provider's
//! keys, then OIDC Core 3.1.3.7 and the provider's own rules, then the identity it maps to.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::Login;
use crate::backend::{check_signature_format, SignatureCheck};
use crate::error::{Error, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::jws;
use crate::oidc;
use crate::verifier::{JwtCheck, JwtStep, JwtVerifier, KeyChoice, KeyLookup, PendingJwt, Provider};
use crate::UnixTime;

/// An ID token issued longer ago than this is refused at login (a stale token replayed).
const ID_TOKEN_MAX_AGE_SECONDS: u64 = 600;
/// Largest ID token accepted.
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

impl Login {
    /// An ID token up to its signature (the engine's machine, [`crate::Engine::check_id_token`],
    /// drives it): structure, an algorithm `provider` allows, the key by `kid` (inline first,
    /// then the key set the host fetched: `NeedKeys` before the first fetch, a refusal with
    /// `refetch` for an unknown `kid`, so the host may refetch early), the signature's format.
    pub(crate) fn begin_id_token(
        &self,
        verifier: &JwtVerifier,
        provider: &Provider,
        keys: &dyn KeyLookup,
        id_token: &str,
    ) -> Result<JwtStep, Error> {
        let jws = jws::parse(id_token, MAX_ID_TOKEN_BYTES)?;
        if !provider.algorithms().contains(&jws.alg) {
            return Err(Error::new(
                Reason::AlgNotAllowed,
                format!(
                    "the ID token is signed with {}, which provider {} does not allow",
                    jws.alg, provider.name
                ),
            ));
        }
        let key =
            match provider.signing_key(jws.kid.as_deref(), jws.alg, || keys.keys(&provider.name)) {
                KeyChoice::Key(k) => k,
                KeyChoice::NeedKeys => {
                    return Ok(JwtStep::Done(JwtCheck::NeedKeys {
                        provider: provider.name.clone(),
                    }))
                }
                KeyChoice::Refused { error, refetch } => {
                    return Ok(JwtStep::Done(JwtCheck::Invalid {
                        error,
                        refetch: refetch.then(|| provider.name.clone()),
                    }))
                }
            };
        check_signature_format(jws.alg, &key.key, &jws.signature)?;
        let index = verifier
            .index_of(provider)
            .ok_or_else(|| Error::new(Reason::Internal, "the login provider is gone"))?;
        let check = SignatureCheck::new(jws.alg, &key.key, jws.signing_input, &jws.signature);
        let pending = PendingJwt::new(index, key.kid.clone(), jws.claims()?, check);
        Ok(JwtStep::NeedSignature(Box::new(pending)))
    }

    /// The rest of an ID token whose signature verified: OIDC Core 3.1.3.7
    /// ([`oidc::check_id_token_claims`]); `nonce` is the attempt's (None on refresh, OIDC Core
    /// 12.2), `access_token` the one from the same response (for `at_hash`). The identity is
    /// mapped with the provider's claim paths and preset.
    pub(crate) fn finish_id_token(
        &self,
        verifier: &JwtVerifier,
        jwt: PendingJwt,
        nonce: Option<&str>,
        access_token: Option<&str>,
        now: UnixTime,
    ) -> Result<Identity, Error> {
        let provider = self
            .provider(verifier)
            .ok_or_else(|| Error::new(Reason::Internal, "the login provider is gone"))?;
        let claims = jwt.claims();
        let issuer = self.expected_issuer(provider, claims)?;
        let expect = IdTokenExpect {
            issuer: &issuer,
            client_id: &self.client_id,
            nonce,
            skew: provider.clock_skew_seconds(),
        };
        let mut identity = identity_of(
            provider,
            &expect,
            claims,
            jwt.check().alg(),
            access_token,
            now,
        )?;
        identity.key_name = jwt.key_name().map(str::to_owned);
        Ok(identity)
    }

    /// The `iss` an ID token must carry. A multi-tenant template: the template with the token's
    /// `tid`, an allowed tenant (Microsoft's validation rule); else the issuer exactly.
    fn expected_issuer(
        &self,
        provider: &Provider,
        claims: &Map<String, Value>,
    ) -> Result<String, Error> {
        match claims.get("iss").and_then(Value::as_str) {
            Some(iss) if provider.issuer_rule().is_template() => {
                match provider.issuer_rule().matches_token(iss, claims)? {
                    true => Ok(iss.to_string()),
                    false => Err(Error::new(
                        Reason::UnknownIssuer,
                        "the ID token's `iss` is not the provider's issuer",
                    )),
                }
            }
            _ => Ok(self.issuer.clone()),
        }
    }
}

/// The identity a signed ID token's claims map to, after OIDC Core 3.1.3.7 (`expect`) and the
/// provider's own rules (which hold for its ID tokens too).
fn identity_of(
    provider: &Provider,
    expect: &IdTokenExpect<'_>,
    claims: &Map<String, Value>,
    alg: crate::Alg,
    access_token: Option<&str>,
    now: UnixTime,
) -> Result<Identity, Error> {
    expect.check(claims, alg, access_token, now)?;
    provider.check_lifetime_and_required_claims(claims)?;
    let mut identity = Identity::new(String::new(), CredentialKind::Jwt, provider.name.clone());
    provider.mapping().apply(claims, &mut identity);
    if identity.subject.is_empty() {
        return Err(Error::new(
            Reason::MissingClaim,
            "the ID token has no subject at the provider's subject claim",
        ));
    }
    identity.expires_at = None;
    // OAuth scopes of the login are not the user's permissions.
    identity.scopes.clear();
    Ok(identity)
}

/// ID-token expectations with an optional nonce (absent on refresh).
struct IdTokenExpect<'a> {
    issuer: &'a str,
    client_id: &'a str,
    nonce: Option<&'a str>,
    skew: u64,
}

impl IdTokenExpect<'_> {
    fn check(
        &self,
        claims: &Map<String, Value>,
        alg: crate::Alg,
        access_token: Option<&str>,
        now: UnixTime,
    ) -> Result<(), Error> {
        let (claims, nonce) = match self.nonce {
            Some(nonce) => (Cow::Borrowed(claims), Cow::Borrowed(nonce)),
            None => {
                // A refreshed ID token need not carry a nonce (OIDC Core 12.2): check it as if
                // it carried the one it has, so every other rule still applies.
                let mut c = claims.clone();
                let nonce = c
                    .get("nonce")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string();
                c.insert("nonce".into(), Value::String(nonce.clone()));
                (Cow::Owned(c), Cow::Owned(nonce))
            }
        };
        oidc::check_id_token_claims(
            &claims,
            alg,
            &oidc::IdTokenExpectations {
                issuer: self.issuer,
                client_id: self.client_id,
                nonce: &nonce,
                clock_skew_seconds: self.skew,
                max_age_seconds: ID_TOKEN_MAX_AGE_SECONDS,
            },
            access_token,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::b64;
    use crate::engine::Engine;
    use crate::jwk::KeySet;
    use crate::keyring::{HmacKeyConfig, KeyRing, Secret};
    use crate::test_support::{with_claim, WRONG_AT_HASH};
    use serde_json::json;

    fn id_token(claims: Value) -> String {
        let ring = KeyRing::compile(&[HmacKeyConfig {
            kid: "k1".into(),
            secret: Secret::new(IDP_SECRET),
        }])
        .unwrap();
        ring.sign(claims.to_string().as_bytes()).unwrap()
    }

    fn good_claims() -> Value {
        json!({"iss": "https://idp.example", "aud": "edge", "sub": "alice", "iat": NOW,
               "exp": NOW + 300, "nonce": "n1", "roles": ["admin"], "email": "a@example.com",
               "name": "Alice", "amr": ["pwd"], "scope": "openid offline_access",
               "at_hash": oidc::token_hash(crate::Alg::HS256, "at")})
    }

    /// Where the engine's ID-token machine ends, its signatures answered in place.
    #[allow(clippy::large_enum_variant)]
    #[derive(Debug)]
    enum IdTokenCheck {
        Valid(Identity),
        NeedKeys,
        UnknownKid(String),
        Invalid(Error),
    }

    fn run(
        e: &Engine,
        keys: &dyn KeyLookup,
        token: &str,
        nonce: Option<&str>,
        at: Option<&str>,
        now: UnixTime,
    ) -> IdTokenCheck {
        let req = crate::Request {
            method: "GET",
            path: "/",
            headers: &[],
        };
        let step = e
            .check_id_token(token, nonce, at, keys, now)
            .answer_signatures(e, &req, keys, &mut e.new_cache(), now);
        match step {
            crate::Step::Done(Ok(id)) => IdTokenCheck::Valid(id),
            crate::Step::Done(Err(err)) => IdTokenCheck::Invalid(err),
            crate::Step::NeedKeys(k) if k.unknown_kid() => {
                IdTokenCheck::UnknownKid(k.provider().to_string())
            }
            crate::Step::NeedKeys(_) => IdTokenCheck::NeedKeys,
            other => panic!("{other:?}"),
        }
    }

    fn verify(e: &Engine, token: &str, nonce: Option<&str>) -> IdTokenCheck {
        let keys = crate::verifier::NoRemoteKeys;
        run(e, &keys, token, nonce, Some("at"), NOW + 1)
    }

    fn entra_claims(iss_tenant: &str, tid: Option<&str>) -> Value {
        let mut c = good_claims();
        c["iss"] = json!(entra_issuer(iss_tenant));
        if let Some(t) = tid {
            c["tid"] = json!(t);
        }
        c
    }

    #[test]
    fn id_tokens_are_checked_and_mapped() {
        let e = engine();
        let IdTokenCheck::Valid(id) = verify(&e, &id_token(good_claims()), Some("n1")) else {
            panic!("valid")
        };
        assert_eq!(id.subject, "alice");
        assert_eq!(id.roles, vec!["admin"]);
        assert_eq!(id.amr, vec!["pwd"]);
        assert_eq!(id.provider, "op");
        assert!(id.scopes.is_empty(), "login scopes are not permissions");
        // refresh: no nonce expected; a token without one passes
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove("nonce");
        assert!(matches!(
            verify(&e, &id_token(c), None),
            IdTokenCheck::Valid(_)
        ));
        let cases: Vec<(&str, Value, Reason)> = vec![
            ("nonce", json!("n2"), Reason::LoginMismatch),
            ("aud", json!("other"), Reason::WrongAudience),
            ("iss", json!("https://evil"), Reason::UnknownIssuer),
            ("exp", json!(NOW - 100), Reason::TokenExpired),
            ("at_hash", json!(WRONG_AT_HASH), Reason::LoginMismatch),
        ];
        for (field, value, reason) in cases {
            let c = with_claim(good_claims(), field, &value);
            match verify(&e, &id_token(c), Some("n1")) {
                IdTokenCheck::Invalid(err) => assert_eq!(err.reason(), reason, "{field}={value}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        // a forged signature
        let mut t = id_token(good_claims());
        t.pop();
        t.push('A');
        assert!(matches!(
            verify(&e, &t, Some("n1")),
            IdTokenCheck::Invalid(_)
        ));
        // alg none
        let none = format!(
            "{}.{}.",
            b64::encode(br#"{"alg":"none"}"#),
            b64::encode(good_claims().to_string())
        );
        assert!(matches!(
            verify(&e, &none, Some("n1")),
            IdTokenCheck::Invalid(_)
        ));
    }

    #[test]
    fn id_tokens_obey_the_providers_required_claims_and_max_lifetime() {
        let mut v = config_value();
        v["jwt"]["providers"][0]["required_claims"] = json!(["email", "amr"]);
        v["jwt"]["providers"][0]["max_lifetime_seconds"] = json!(300);
        let e = engine_from(&v).unwrap();
        assert!(matches!(
            verify(&e, &id_token(good_claims()), Some("n1")),
            IdTokenCheck::Valid(_)
        ));
        let reason = |c: Value, nonce: Option<&str>| match verify(&e, &id_token(c), nonce) {
            IdTokenCheck::Invalid(err) => err.reason(),
            other => panic!("{other:?}"),
        };
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove("email");
        assert_eq!(reason(c.clone(), Some("n1")), Reason::MissingClaim);
        // on refresh too
        c.as_object_mut().unwrap().remove("nonce");
        assert_eq!(reason(c, None), Reason::MissingClaim);
        let mut c = good_claims();
        c["exp"] = json!(NOW + 301);
        assert_eq!(reason(c.clone(), Some("n1")), Reason::LifetimeTooLong);
        c.as_object_mut().unwrap().remove("nonce");
        assert_eq!(reason(c, None), Reason::LifetimeTooLong);
        // without the limits the same tokens pass
        let mut c = good_claims();
        c["exp"] = json!(NOW + 301);
        c.as_object_mut().unwrap().remove("email");
        assert!(matches!(
            verify(&engine(), &id_token(c), Some("n1")),
            IdTokenCheck::Valid(_)
        ));
    }

    #[test]
    fn multi_tenant_id_tokens_and_jwts_need_iss_equal_to_the_template_with_their_allowed_tid() {
        let e = engine_from(&multi_tenant(json!([TENANT_A]))).unwrap();
        let jwt = |c: Value| {
            e.jwt().check(
                &id_token(c),
                &crate::verifier::NoRemoteKeys,
                e.backend(),
                NOW + 1,
            )
        };
        // accepted: iss = template with tid, tid allowed (also upper-case in the allow-list)
        let good = entra_claims(TENANT_A, Some(TENANT_A));
        assert!(matches!(
            verify(&e, &id_token(good.clone()), Some("n1")),
            IdTokenCheck::Valid(_)
        ));
        assert!(matches!(
            jwt(good.clone()),
            crate::verifier::JwtCheck::Valid(_)
        ));
        let upper = engine_from(&multi_tenant(json!([TENANT_A.to_ascii_uppercase()]))).unwrap();
        assert!(matches!(
            verify(&upper, &id_token(good.clone()), Some("n1")),
            IdTokenCheck::Valid(_)
        ));
        // refused: tid mismatch, tenant not allowed, no tid, literal template as iss,
        // another issuer shape
        let cases: Vec<(Value, Reason)> = vec![
            (
                entra_claims(TENANT_A, Some(TENANT_B)),
                Reason::UnknownIssuer,
            ),
            (
                entra_claims(TENANT_B, Some(TENANT_A)),
                Reason::UnknownIssuer,
            ),
            (
                entra_claims(TENANT_B, Some(TENANT_B)),
                Reason::UnknownIssuer,
            ),
            (entra_claims(TENANT_A, None), Reason::MissingClaim),
            (
                entra_claims("{tenantid}", Some("{tenantid}")),
                Reason::UnknownIssuer,
            ),
            (entra_claims("", Some("")), Reason::UnknownIssuer),
            (
                entra_claims(&format!("{TENANT_A}/x"), Some(&format!("{TENANT_A}/x"))),
                Reason::UnknownIssuer,
            ),
        ];
        for (c, reason) in cases {
            match verify(&e, &id_token(c.clone()), Some("n1")) {
                IdTokenCheck::Invalid(err) => assert_eq!(err.reason(), reason, "login {c}"),
                other => panic!("login {c}: {other:?}"),
            }
            match jwt(c.clone()) {
                crate::verifier::JwtCheck::Invalid { error, .. } => {
                    assert_eq!(error.reason(), reason, "jwt {c}")
                }
                other => panic!("jwt {c}: {other:?}"),
            }
        }
        let mut c = good.clone();
        c["iss"] = json!("https://idp.example");
        assert!(matches!(
            verify(&e, &id_token(c), Some("n1")),
            IdTokenCheck::Invalid(_)
        ));
        let mut c = good.clone();
        c["tid"] = json!(7);
        assert!(matches!(
            verify(&e, &id_token(c), Some("n1")),
            IdTokenCheck::Invalid(_)
        ));
        // "*": any well-formed tenant, still iss = template with tid
        let any = engine_from(&multi_tenant(json!(["*"]))).unwrap();
        let entra = |e: &Engine, iss_tenant: &str, tid: &str| {
            verify(
                e,
                &id_token(entra_claims(iss_tenant, Some(tid))),
                Some("n1"),
            )
        };
        // None: valid; else why it is refused
        let refusal = |check: IdTokenCheck| match check {
            IdTokenCheck::Valid(_) => None,
            IdTokenCheck::Invalid(err) => Some(err.reason()),
            other => panic!("{other:?}"),
        };
        assert_eq!(refusal(entra(&any, TENANT_B, TENANT_B)), None);
        let unknown = Some(Reason::UnknownIssuer);
        assert_eq!(refusal(entra(&any, TENANT_A, TENANT_B)), unknown);
        // a provider with one tenant's exact issuer does not accept other tenants (no template)
        let mut v = config_value();
        v["jwt"]["providers"][0]["issuer"] = json!(entra_issuer(TENANT_A));
        let single = engine_from(&v).unwrap();
        assert_eq!(refusal(entra(&single, TENANT_A, TENANT_A)), None);
        assert_eq!(refusal(entra(&single, TENANT_B, TENANT_B)), unknown);
    }

    #[test]
    fn a_tenants_own_provider_wins_over_the_template() {
        let mut v = multi_tenant(json!(["*"]));
        let mut own = v["jwt"]["providers"][0].clone();
        own["name"] = json!("tenant-a");
        own["issuer"] = json!(entra_issuer(TENANT_A));
        own.as_object_mut().unwrap().remove("allowed_tenants");
        v["jwt"]["providers"] = json!([v["jwt"]["providers"][0].clone(), own]);
        let e = engine_from(&v).unwrap();
        let provider_of = |tenant: &str| match e.jwt().check(
            &id_token(entra_claims(tenant, Some(tenant))),
            &crate::verifier::NoRemoteKeys,
            e.backend(),
            NOW + 1,
        ) {
            crate::verifier::JwtCheck::Valid(id) => id.provider,
            other => panic!("{other:?}"),
        };
        assert_eq!(provider_of(TENANT_A), "tenant-a");
        assert_eq!(provider_of(TENANT_B), "op");
    }

    #[test]
    fn remote_keys_are_waited_for_and_refetched_on_unknown_kid() {
        let mut v = config_value();
        v["jwt"]["providers"][0] = json!({
            "name": "op", "issuer": "https://idp.example", "algorithms": ["HS256"],
            "remote_jwks": {"oidc_issuer": "https://idp.example"}
        });
        // HS256 from a remote JWKS is refused by the provider compile; use RS256 then.
        v["jwt"]["providers"][0]["algorithms"] = json!(["RS256"]);
        let e = engine_from(&v).unwrap();
        let token = format!(
            "{}.{}.{}",
            b64::encode(br#"{"alg":"RS256","kid":"new"}"#),
            b64::encode(good_claims().to_string()),
            b64::encode([0u8; 256])
        );
        let none = crate::verifier::NoRemoteKeys;
        assert!(matches!(
            run(&e, &none, &token, Some("n1"), None, NOW),
            IdTokenCheck::NeedKeys
        ));
        let doc = format!(
            "{{\"keys\":[{}]}}",
            crate::backend::test_keys::rsa_jwk("old", 2048)
        );
        let set = KeySet::parse_jwks(doc.as_bytes()).unwrap();
        struct Fetched(KeySet, bool);
        impl KeyLookup for Fetched {
            fn keys(&self, _provider: &str) -> Option<&KeySet> {
                Some(&self.0)
            }
            fn may_refetch(&self, _provider: &str, _now: UnixTime) -> bool {
                self.1
            }
        }
        // An unknown kid the host would refetch now pauses for it; one it would not (rate
        // limit) is refused at once.
        assert!(matches!(
            run(&e, &Fetched(set.clone(), true), &token, Some("n1"), None, NOW),
            IdTokenCheck::UnknownKid(p) if p == "op"
        ));
        match run(&e, &Fetched(set, false), &token, Some("n1"), None, NOW) {
            IdTokenCheck::Invalid(err) => assert_eq!(err.reason(), Reason::UnknownKid),
            other => panic!("{other:?}"),
        }
    }
}
