//! Step 2a: the callback. [`Login::open_callback`] matches the provider's answer to the attempt
//! cookie [`Login::start`] wrote; [`Grant::callback`] turns what it opened into the code grant;
//! [`Login::token_request`] and [`Login::parse_token_response`] are the token endpoint's round
//! trip (also used with a [`Grant::Refresh`] on renewal).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::config::TokenAuthMethod;
use super::{bad_response, Discovery, Login, MAX_RESPONSE_BYTES};
use crate::error::{Error, Reason};
use crate::keyring::Secret;
use crate::oidc::{self, Attempt, Callback};
use crate::session::find_cookie;
use crate::UnixTime;

/// A token request for the host to POST (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub url: String,
    /// Includes `content-type`, `accept`, and `authorization` for `client_secret_basic`.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The grant a token request carries.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// The callback's code and the attempt's PKCE verifier.
    Code { code: &'a str, verifier: &'a str },
    /// A stored refresh token.
    Refresh { refresh_token: &'a str },
}

impl<'a> Grant<'a> {
    /// The code grant of a callback [`Login::open_callback`] opened: its `code`, and the PKCE
    /// verifier of the attempt it matched.
    pub fn callback(callback: &'a Callback, attempt: &'a Attempt) -> Self {
        Grant::Code {
            code: &callback.code,
            verifier: &attempt.verifier,
        }
    }
}

/// The useful part of a token response. Never log it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TokenResponse {
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl Login {
    /// Parses the callback query and opens its attempt cookie from the `Cookie` header.
    /// RFC 9207: `iss`, when sent, must be the provider's issuer; when the provider's discovery
    /// document says `authorization_response_iss_parameter_supported: true`, it must be sent
    /// (else `login_mismatch`: a mix-up attack would strip it).
    pub fn open_callback(
        &self,
        query: &str,
        cookie_header: &str,
        disco: &Discovery,
        now: UnixTime,
    ) -> Result<(Callback, Attempt), Error> {
        let cb = oidc::parse_callback(query)?;
        // RFC 9207 `iss`, when sent: the provider's issuer (for a template, with an allowed
        // tenant); the attempt is then opened without it.
        match &cb.iss {
            Some(iss) => self.issuer_rule.matches_bare(iss)?,
            None if disco.iss_parameter_supported => {
                return Err(Error::new(
                    Reason::LoginMismatch,
                    "the callback has no `iss`, and the provider's discovery document says it \
                     always sends one (RFC 9207 authorization_response_iss_parameter_supported)",
                ))
            }
            None => {}
        }
        let name = oidc::attempt_cookie_name(&cb.state);
        let cookie = find_cookie(cookie_header, &name).ok_or_else(|| {
            Error::new(
                Reason::LoginMismatch,
                "no login attempt matches the callback's state (expired, used, or started in another browser); start again",
            )
        })?;
        let bare = Callback {
            iss: None,
            ..cb.clone()
        };
        let attempt = oidc::open_attempt(&self.ring, cookie, &bare, &self.issuer, now)?;
        Ok((cb, attempt))
    }

    /// The `Set-Cookie` value that deletes an attempt cookie.
    pub fn clear_attempt_cookie(&self, state: &str) -> String {
        format!(
            "{}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax",
            oidc::attempt_cookie_name(state)
        )
    }

    /// The token request for a grant. `secret_override` (a host binding) wins over the
    /// config's `client_secret`; with neither, the request is refused (`Internal`).
    pub fn token_request(
        &self,
        disco: &Discovery,
        grant: Grant<'_>,
        secret_override: Option<&str>,
    ) -> Result<TokenRequest, Error> {
        let secret = secret_override
            .filter(|s| !s.is_empty())
            .or(self.client_secret.as_ref().map(Secret::expose))
            .ok_or_else(|| {
                Error::new(
                    Reason::Internal,
                    "no client secret: set login.client_secret or the host's secret binding (OIDC_CLIENT_SECRET)",
                )
            })?;
        let mut form = form_urlencoded::Serializer::new(String::new());
        match grant {
            Grant::Code { code, verifier } => {
                form.append_pair("grant_type", "authorization_code")
                    .append_pair("code", code)
                    .append_pair("redirect_uri", &self.redirect_uri)
                    .append_pair("code_verifier", verifier);
            }
            Grant::Refresh { refresh_token } => {
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh_token);
            }
        }
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("accept".to_string(), "application/json".to_string()),
        ];
        self.authenticate_client(secret, &mut form, &mut headers);
        Ok(TokenRequest {
            url: disco.token_endpoint.clone(),
            headers,
            body: form.finish(),
        })
    }

    /// The client's credentials at the token endpoint: an `Authorization: Basic` header, or
    /// `client_id` and `client_secret` in the form body.
    fn authenticate_client(
        &self,
        secret: &str,
        form: &mut form_urlencoded::Serializer<'_, String>,
        headers: &mut Vec<(String, String)>,
    ) {
        match self.auth {
            TokenAuthMethod::ClientSecretBasic => {
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(&self.client_id), enc(secret));
                headers.push((
                    "authorization".to_string(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                ));
            }
            TokenAuthMethod::ClientSecretPost => {
                form.append_pair("client_id", &self.client_id)
                    .append_pair("client_secret", secret);
            }
        }
    }

    /// Reads a token response. A 4xx is the provider refusing (`LoginMismatch`, with its
    /// `error` code only); a 5xx or garbage is `KeysUnavailable` (503).
    pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenResponse, Error> {
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(bad_response(
                Reason::KeysUnavailable,
                "the token response is too large",
            ));
        }
        let doc = serde_json::from_slice::<Map<String, Value>>(body).ok();
        if status != 200 {
            let code: String = doc
                .as_ref()
                .and_then(|d| d.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            let reason = if (400..500).contains(&status) {
                Reason::LoginMismatch
            } else {
                Reason::KeysUnavailable
            };
            return Err(bad_response(
                reason,
                format!("the token endpoint answered HTTP {status} {code}"),
            ));
        }
        let doc = doc.ok_or_else(|| {
            bad_response(
                Reason::KeysUnavailable,
                "the token response is not a JSON object",
            )
        })?;
        if let Some(t) = doc.get("token_type") {
            if !t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
                return Err(bad_response(
                    Reason::LoginMismatch,
                    "the token response's token_type is not Bearer",
                ));
            }
        }
        let s = |name: &str| {
            doc.get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        Ok(TokenResponse {
            id_token: s("id_token"),
            access_token: s("access_token"),
            refresh_token: s("refresh_token"),
        })
    }
}

/// The `state`s of the login-attempt cookies in a `Cookie` header (at most 16).
pub fn attempt_states(cookie_header: &str) -> Vec<String> {
    cookie_header
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .filter_map(|(n, _)| n.strip_prefix(oidc::ATTEMPT_COOKIE_PREFIX))
        .filter(|s| crate::syntax::is_short_name(s, b"_-"))
        .take(16)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn callback_needs_its_attempt_cookie() {
        let (e, l, s) = started_login("", 7);
        let cookie = s.set_cookie.split(';').next().unwrap().to_string();
        let other = start_login(e, "", 9).unwrap();
        let q = format!("code=c&state={}", s.state);
        // no cookie; another attempt's cookie only; wrong iss
        assert_eq!(
            l.open_callback(&q, "a=b", &disco(), NOW)
                .unwrap_err()
                .reason(),
            Reason::LoginMismatch
        );
        let other_cookie = other.set_cookie.split(';').next().unwrap();
        assert_eq!(
            l.open_callback(&q, other_cookie, &disco(), NOW)
                .unwrap_err()
                .reason(),
            Reason::LoginMismatch
        );
        // RFC 9207: a provider that advertises `iss` in authorization responses must send it
        let strict = Discovery {
            iss_parameter_supported: true,
            ..disco()
        };
        let e = l.open_callback(&q, &cookie, &strict, NOW).unwrap_err();
        assert_eq!(e.reason(), Reason::LoginMismatch);
        assert_eq!(e.http_status(), 401);
        assert!(e.message().contains("RFC 9207"), "{}", e.message());
        // with or without that promise, a wrong iss is refused and the right one accepted
        for d in [disco(), strict] {
            let evil = format!("{q}&iss=https%3A%2F%2Fevil");
            let e = l.open_callback(&evil, &cookie, &d, NOW).unwrap_err();
            assert_eq!(e.reason(), Reason::UnknownIssuer);
            let good = format!("{q}&iss=https%3A%2F%2Fidp.example");
            assert!(l.open_callback(&good, &cookie, &d, NOW).is_ok());
        }
        // both attempts' cookies in one header: each callback finds its own
        let both = format!("{cookie}; {other_cookie}");
        assert!(l.open_callback(&q, &both, &disco(), NOW).is_ok());
        let clear = l.clear_attempt_cookie(&s.state);
        assert!(clear.starts_with(&format!("edgegate_login_{}=;", s.state)));
        assert!(clear.contains("Max-Age=0"));
        assert_eq!(attempt_states(&both).len(), 2);
    }

    #[test]
    fn multi_tenant_callback_iss_must_be_an_allowed_tenant() {
        let e = engine_from(&multi_tenant(json!([TENANT_A]))).unwrap();
        let l = e.login().unwrap();
        let s = start_login(&e, "", 7).unwrap();
        let cookie = s.set_cookie.split(';').next().unwrap().to_string();
        let q = |iss: &str| {
            format!(
                "code=c&state={}&iss={}",
                s.state,
                form_urlencoded::byte_serialize(iss.as_bytes()).collect::<String>()
            )
        };
        assert!(l
            .open_callback(&q(&entra_issuer(TENANT_A)), &cookie, &disco(), NOW)
            .is_ok());
        for bad in [
            entra_issuer(TENANT_B),
            TEMPLATE.to_string(),
            "https://evil".into(),
        ] {
            assert_eq!(
                l.open_callback(&q(&bad), &cookie, &disco(), NOW)
                    .unwrap_err()
                    .reason(),
                Reason::UnknownIssuer,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_code_grant_is_the_callbacks_code_and_its_attempts_verifier() {
        let (_, l, s) = started_login("", 7);
        let cookie = s.set_cookie.split(';').next().unwrap();
        let q = format!("code=c1&state={}", s.state);
        let (cb, attempt) = l.open_callback(&q, cookie, &disco(), NOW).unwrap();
        let Grant::Code { code, verifier } = Grant::callback(&cb, &attempt) else {
            panic!("a code grant")
        };
        assert_eq!(code, "c1");
        assert_eq!(verifier, attempt.verifier);
    }

    #[test]
    fn token_requests() {
        let (_, l) = engine_and_login();
        let r = l
            .token_request(
                &disco(),
                Grant::Code {
                    code: "c1",
                    verifier: "v1",
                },
                None,
            )
            .unwrap();
        assert_eq!(r.url, "https://idp.example/token");
        let auth = r
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.strip_prefix("Basic ").unwrap())
            .unwrap();
        // RFC 6749 2.3.1: both parts form-urlencoded
        assert_eq!(decoded, b"edge:s%3Acret%2F%2B");
        let body: Vec<(String, String)> = form_urlencoded::parse(r.body.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| body.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some("authorization_code"));
        assert_eq!(get("code_verifier"), Some("v1"));
        assert_eq!(
            get("redirect_uri"),
            Some("https://app.example.com/auth/callback")
        );
        assert_eq!(get("client_secret"), None);
        // the host's binding wins
        let r = l
            .token_request(
                &disco(),
                Grant::Refresh {
                    refresh_token: "rt",
                },
                Some("bound"),
            )
            .unwrap();
        assert!(r.body.contains("grant_type=refresh_token") && r.body.contains("refresh_token=rt"));
        let auth = &r
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(auth.strip_prefix("Basic ").unwrap())
                .unwrap(),
            b"edge:bound"
        );
        // client_secret_post: in the body, no Authorization
        let mut v = config_value();
        v["login"]["token_endpoint_auth_method"] = json!("client_secret_post");
        v["login"].as_object_mut().unwrap().remove("client_secret");
        let e2 = engine_from(&v).unwrap();
        let l2 = e2.login().unwrap();
        assert_eq!(
            l2.token_request(
                &disco(),
                Grant::Refresh {
                    refresh_token: "rt"
                },
                None
            )
            .unwrap_err()
            .reason(),
            Reason::Internal
        );
        let r = l2
            .token_request(
                &disco(),
                Grant::Refresh {
                    refresh_token: "rt",
                },
                Some("p/s"),
            )
            .unwrap();
        assert!(r.headers.iter().all(|(n, _)| n != "authorization"));
        assert!(r.body.contains("client_id=edge") && r.body.contains("client_secret=p%2Fs"));
    }

    #[test]
    fn token_responses() {
        let ok = Login::parse_token_response(
            200,
            br#"{"access_token":"a","token_type":"Bearer","id_token":"i","refresh_token":"r"}"#,
        )
        .unwrap();
        assert_eq!(ok.refresh_token.as_deref(), Some("r"));
        assert!(!format!("{ok:?}").contains("\"r\""));
        let e = Login::parse_token_response(
            400,
            br#"{"error":"invalid_grant","error_description":"<b>x"}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason(), Reason::LoginMismatch);
        assert!(e.message().contains("invalid_grant") && !e.message().contains('<'));
        assert_eq!(
            Login::parse_token_response(502, b"oops")
                .unwrap_err()
                .reason(),
            Reason::KeysUnavailable
        );
        assert_eq!(
            Login::parse_token_response(200, br#"{"token_type":"mac","id_token":"i"}"#)
                .unwrap_err()
                .reason(),
            Reason::LoginMismatch
        );
        assert!(Login::parse_token_response(200, b"[]").is_err());
    }
}
