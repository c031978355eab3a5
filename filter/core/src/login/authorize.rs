//! Step 1b: the authorization request. [`Login::start`] checks the return URL, draws state,
//! nonce and PKCE verifier from the host's random bytes ([`crate::oidc::start_login`]) and
//! answers the 302 to the provider with the per-attempt cookie that the callback opens.

use super::{Discovery, Login};
use crate::error::Error;
use crate::oidc::{self, AuthorizationParams, LoginStart, LOGIN_RANDOM_BYTES};
use crate::redirect::RedirectPolicy;
use crate::UnixTime;

impl Login {
    /// Starts a login from the login route's query (`rd=<return URL>`, checked by `redirects`;
    /// absent: `/`). `random` from a CSPRNG.
    pub fn start(
        &self,
        disco: &Discovery,
        redirects: &RedirectPolicy,
        query: &str,
        random: &[u8; LOGIN_RANDOM_BYTES],
        now: UnixTime,
    ) -> Result<LoginStart, Error> {
        let rd = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "rd")
            .map(|(_, v)| v.into_owned());
        let return_to = match rd {
            Some(rd) => redirects.check(&rd)?,
            None => "/".to_string(),
        };
        let params = AuthorizationParams {
            authorization_endpoint: &disco.authorization_endpoint,
            client_id: &self.client_id,
            redirect_uri: &self.redirect_uri,
            scope: &self.scope,
        };
        let mut start = oidc::start_login(&self.ring, &params, random, &return_to, now)?;
        if self.offline_access {
            // OIDC Core 11: offline access needs prompt=consent (providers drop the scope, and
            // issue no refresh token, without it).
            start.location.push_str("&prompt=consent");
        }
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::error::Reason;
    use serde_json::json;

    #[test]
    fn start_checks_rd_and_asks_consent_for_offline_access() {
        let (e, l, s) = started_login("rd=%2Fadmin%3Fa%3D1", 7);
        assert!(s.location.starts_with("https://idp.example/auth?"));
        assert!(s.location.ends_with("&prompt=consent"));
        assert!(s.location.contains("scope=openid+email+offline_access"));
        let cookie = s.set_cookie.split(';').next().unwrap();
        let (_, att) = l
            .open_callback(
                &format!("code=c&state={}", s.state),
                cookie,
                &disco(),
                NOW + 1,
            )
            .unwrap();
        assert_eq!(att.return_to, "/admin?a=1");
        for rd in [
            "https%3A%2F%2Fevil.example%2F",
            "%2F%2Fevil.example",
            "javascript%3Aalert(1)",
        ] {
            let err = start_login(e, &format!("rd={rd}"), 7).unwrap_err();
            assert_eq!(err.reason(), Reason::UnsafeRedirect, "{rd}");
        }
        let s = start_login(e, "", 8).unwrap();
        let cookie = s.set_cookie.split(';').next().unwrap();
        let (_, att) = l
            .open_callback(&format!("code=c&state={}", s.state), cookie, &disco(), NOW)
            .unwrap();
        assert_eq!(att.return_to, "/");
        // without offline_access, no prompt
        let mut v = config_value();
        v["login"]["scopes"] = json!(["openid"]);
        let e2 = engine_from(&v).unwrap();
        let s = e2
            .login()
            .unwrap()
            .start(&disco(), e2.redirects(), "", &[8; 64], NOW)
            .unwrap();
        assert!(!s.location.contains("prompt="));
    }
}
