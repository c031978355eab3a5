//! Step 1a: the provider's discovery document (OIDC Discovery): where it comes from
//! ([`Login::discovery`]: the key source's copy, or the host's own fetch) and what a login
//! needs from it ([`Login::parse_discovery`]).

use serde_json::{Map, Value};

use super::config::check_endpoint;
use super::{bad_response, Login, MAX_RESPONSE_BYTES};
use crate::error::{Error, Reason};
use crate::UnixTime;

/// How long a host may keep a discovery document, in seconds.
pub const DISCOVERY_TTL_SECONDS: u64 = 3600;

/// What the host needs from the provider's discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub end_session_endpoint: Option<String>,
    /// RFC 9207 `authorization_response_iss_parameter_supported`: the provider puts `iss` in
    /// every authorization response, so a callback without it is refused.
    pub iss_parameter_supported: bool,
}

/// Where the login flow gets the provider's discovery document ([`Login::discovery`]): one
/// document per isolate/VM, shared with the provider's key source when both follow the same
/// discovery URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryStep {
    /// The key source fetched it: use it.
    Ready(Discovery),
    /// The key source follows this document and has none yet: drive it (its next poll asks
    /// for the document now), then ask again.
    FetchKeys,
    /// The key source is fetching (it may be this document): wait, bounded, and ask again.
    Wait,
    /// The provider's keys do not come from this document (inline keys, a `jwks_uri`, another
    /// discovery URL): fetch [`Login::discovery_url`] yourself, check it with
    /// [`Login::parse_discovery`] and keep it for [`DISCOVERY_TTL_SECONDS`].
    Own,
}

impl Login {
    /// `discovery_url`, default `<issuer>/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        self.discovery.clone()
    }

    /// The 503 of a discovery document that could not be fetched (`why`: no response, a
    /// refused call...): the IdP's or the network's failure, not the user's.
    pub fn discovery_unreachable(&self, why: &str) -> Error {
        Error::new(
            Reason::KeysUnavailable,
            format!(
                "could not fetch the provider's discovery document {}: {why}",
                self.discovery
            ),
        )
    }

    /// Checks a discovery response: HTTP 200, `issuer` exactly the provider's (a `{tenantid}`
    /// template only when the provider is configured with that template), the
    /// authorization and token endpoints (and `end_session_endpoint` when given) absolute
    /// `https://` URLs (`http://` on localhost).
    pub fn parse_discovery(&self, status: u16, body: &[u8]) -> Result<Discovery, Error> {
        let unavailable = |m: String| bad_response(Reason::KeysUnavailable, m);
        if status != 200 {
            return Err(unavailable(format!(
                "the discovery endpoint answered HTTP {status}"
            )));
        }
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(unavailable("the discovery document is too large".into()));
        }
        let doc = crate::json::parse_object(
            body,
            crate::json::DOCUMENT_MAX_DEPTH,
            Reason::KeysUnavailable,
            "discovery document",
        )?;
        match doc.get("issuer") {
            Some(Value::String(s)) if *s == self.issuer => {}
            _ => {
                return Err(Error::new(
                    Reason::ProviderMismatch,
                    format!(
                        "the discovery document's issuer is not exactly {:?} (OIDC Discovery 4.3); configure the provider's issuer as the IdP spells it",
                        self.issuer
                    ),
                ))
            }
        }
        let endpoint = |name: &str, required: bool| -> Result<Option<String>, Error> {
            match doc.get(name) {
                Some(Value::String(u)) => check_endpoint(u)
                    .map(|_| Some(u.clone()))
                    .map_err(|m| unavailable(format!("the discovered {name} {m}"))),
                None if !required => Ok(None),
                _ => Err(unavailable(format!("the discovery document has no {name}"))),
            }
        };
        let authorization_endpoint = endpoint("authorization_endpoint", true)?.unwrap_or_default();
        let token_endpoint = endpoint("token_endpoint", true)?.unwrap_or_default();
        let end_session_endpoint = endpoint("end_session_endpoint", false)?;
        Ok(Discovery {
            authorization_endpoint,
            token_endpoint,
            end_session_endpoint,
            iss_parameter_supported: iss_parameter_supported(&doc)?,
        })
    }

    /// The discovery document for the login flow, shared with the provider's key source
    /// `keys` (its [`JwksState`](crate::jwks::JwksState), when remote) so one fetch serves both:
    /// see [`DiscoveryStep`]. An error when the key source's fetch of it failed (503, it
    /// retries with backoff) or the document does not serve a login ([`Login::parse_discovery`]).
    pub fn discovery(
        &self,
        keys: Option<&crate::jwks::JwksState>,
        now: UnixTime,
    ) -> Result<DiscoveryStep, Error> {
        let Some(keys) = keys.filter(|k| k.discovery_url() == Some(self.discovery.as_str())) else {
            return Ok(DiscoveryStep::Own);
        };
        if let Some(doc) = keys.discovery_document() {
            return self.parse_discovery(200, doc).map(DiscoveryStep::Ready);
        }
        if keys.fetching() {
            return Ok(DiscoveryStep::Wait);
        }
        if keys.next_wakeup().is_some_and(|at| at <= now) {
            return Ok(DiscoveryStep::FetchKeys);
        }
        Err(bad_response(
            Reason::KeysUnavailable,
            "the provider's discovery document could not be fetched; retrying with backoff",
        ))
    }
}

/// RFC 9207 `authorization_response_iss_parameter_supported`: absent or null is false, anything
/// but a boolean refuses the document.
fn iss_parameter_supported(doc: &Map<String, Value>) -> Result<bool, Error> {
    match doc.get("authorization_response_iss_parameter_supported") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad_response(
            Reason::KeysUnavailable,
            "the discovery document's authorization_response_iss_parameter_supported \
             is not a boolean (RFC 9207)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn discovery_checks() {
        let (_, l) = engine_and_login();
        let doc = |v: Value| v.to_string().into_bytes();
        let good = json!({"issuer": "https://idp.example", "authorization_endpoint": "https://idp.example/auth",
                          "token_endpoint": "https://idp.example/token", "jwks_uri": "https://idp.example/jwks"});
        let d = l.parse_discovery(200, &doc(good.clone())).unwrap();
        assert_eq!(d.token_endpoint, "https://idp.example/token");
        assert_eq!(d.end_session_endpoint, None);
        assert!(!d.iss_parameter_supported);
        // RFC 9207's flag: a boolean, anything else refuses the document
        for (flag, supported) in [
            (json!(true), Some(true)),
            (json!(false), Some(false)),
            (json!("true"), None),
            (json!(1), None),
        ] {
            let mut v = good.clone();
            v["authorization_response_iss_parameter_supported"] = flag.clone();
            match supported {
                Some(b) => assert_eq!(
                    l.parse_discovery(200, &doc(v))
                        .unwrap()
                        .iss_parameter_supported,
                    b
                ),
                None => assert_eq!(
                    l.parse_discovery(200, &doc(v)).unwrap_err().reason(),
                    Reason::KeysUnavailable,
                    "{flag}"
                ),
            }
        }
        let mut v = good.clone();
        v["issuer"] = json!("https://idp.example/");
        assert_eq!(
            l.parse_discovery(200, &doc(v)).unwrap_err().reason(),
            Reason::ProviderMismatch
        );
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove("token_endpoint");
        assert!(l.parse_discovery(200, &doc(v)).is_err());
        let mut v = good.clone();
        v["authorization_endpoint"] = json!("http://idp.example/auth");
        assert!(l.parse_discovery(200, &doc(v)).is_err());
        assert!(l.parse_discovery(500, &doc(good)).is_err());
        assert!(l.parse_discovery(200, b"not json").is_err());
    }

    #[test]
    fn one_discovery_document_serves_the_key_source_and_the_login() {
        use crate::jwks::{FetchKind, JwksSource, JwksState};
        let (_, l) = engine_and_login();
        let state = |iss: &str| {
            JwksState::new(
                JwksSource {
                    oidc_issuer: Some(iss.into()),
                    ..JwksSource::default()
                }
                .compile()
                .unwrap(),
            )
        };
        // keys that do not come from this document: the login fetches its own
        assert_eq!(l.discovery(None, NOW).unwrap(), DiscoveryStep::Own);
        let by_uri = JwksState::new(
            JwksSource {
                jwks_uri: Some("https://idp.example/jwks".into()),
                ..JwksSource::default()
            }
            .compile()
            .unwrap(),
        );
        assert_eq!(l.discovery(Some(&by_uri), NOW).unwrap(), DiscoveryStep::Own);
        let other = state("https://other.example");
        assert_eq!(l.discovery(Some(&other), NOW).unwrap(), DiscoveryStep::Own);
        // the same document: the key source fetches it, once, for both
        let mut s = state("https://idp.example");
        assert_eq!(
            l.discovery(Some(&s), NOW).unwrap(),
            DiscoveryStep::FetchKeys
        );
        let req = s.poll(NOW).unwrap();
        assert_eq!(req.kind, FetchKind::Discovery);
        assert_eq!(req.url, l.discovery_url());
        assert_eq!(l.discovery(Some(&s), NOW).unwrap(), DiscoveryStep::Wait);
        let doc = json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks",
                         "authorization_endpoint": "https://idp.example/auth",
                         "token_endpoint": "https://idp.example/token",
                         "authorization_response_iss_parameter_supported": true});
        s.on_response(&req, 200, None, doc.to_string().as_bytes(), NOW)
            .unwrap();
        let DiscoveryStep::Ready(d) = l.discovery(Some(&s), NOW).unwrap() else {
            panic!("the key source's document")
        };
        assert_eq!(d.token_endpoint, "https://idp.example/token");
        assert!(d.iss_parameter_supported);
        // the key source goes on to the JWKS, not to a second discovery
        assert_eq!(s.poll(NOW).unwrap().kind, FetchKind::Jwks);
        assert!(matches!(
            l.discovery(Some(&s), NOW).unwrap(),
            DiscoveryStep::Ready(_)
        ));
        // the key source's fetch failed: 503 now (it retries with backoff), no fetch of our own
        let mut s = state("https://idp.example");
        s.poll(NOW).unwrap();
        s.on_failure(NOW);
        assert_eq!(
            l.discovery(Some(&s), NOW + 1).unwrap_err().reason(),
            Reason::KeysUnavailable
        );
        assert_eq!(
            l.discovery(Some(&s), NOW + 5).unwrap(),
            DiscoveryStep::FetchKeys
        );
        // a document good for keys but not for a login (no authorization endpoint)
        let mut s = state("https://idp.example");
        let req = s.poll(NOW).unwrap();
        let keys_only =
            json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks"});
        s.on_response(&req, 200, None, keys_only.to_string().as_bytes(), NOW)
            .unwrap();
        assert_eq!(
            l.discovery(Some(&s), NOW).unwrap_err().reason(),
            Reason::KeysUnavailable
        );
    }

    #[test]
    fn multi_tenant_discovery_accepts_the_template_only_when_configured() {
        let doc = |iss: &str| {
            json!({"issuer": iss,
                   "authorization_endpoint": "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
                   "token_endpoint": "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"})
            .to_string()
            .into_bytes()
        };
        let e = engine_from(&multi_tenant(json!([TENANT_A]))).unwrap();
        let l = e.login().unwrap();
        assert!(l.parse_discovery(200, &doc(TEMPLATE)).is_ok());
        // a tenant's own document is not the configured (template) issuer
        assert_eq!(
            l.parse_discovery(200, &doc(&entra_issuer(TENANT_A)))
                .unwrap_err()
                .reason(),
            Reason::ProviderMismatch
        );
        // a provider configured with one tenant's issuer refuses the template document
        let mut v = config_value();
        v["jwt"]["providers"][0]["issuer"] = json!(entra_issuer(TENANT_A));
        let single = engine_from(&v).unwrap();
        let sl = single.login().unwrap();
        assert_eq!(
            sl.discovery_url(),
            format!(
                "{}/.well-known/openid-configuration",
                entra_issuer(TENANT_A)
            )
        );
        assert_eq!(
            sl.parse_discovery(200, &doc(TEMPLATE))
                .unwrap_err()
                .reason(),
            Reason::ProviderMismatch
        );
        assert!(sl
            .parse_discovery(200, &doc(&entra_issuer(TENANT_A)))
            .is_ok());
    }
}
