//! Step 4: logout. Every login cookie cleared, and a 302 to the provider's end-session endpoint
//! (or the configured post-logout page).

use super::{attempt_states, Discovery, Login};
use crate::session::{find_cookie, Sessions};
use crate::UnixTime;

/// What logout answers: a 302 to `location` with every `set_cookies` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutReply {
    pub location: String,
    pub set_cookies: Vec<String>,
}

impl Login {
    /// Logout: delete the session, refresh and attempt cookies; go to the provider's
    /// `end_session_endpoint` (with `id_token_hint` when the refresh cookie kept the ID token,
    /// `post_logout_redirect_uri` and `client_id`) when `disco` names one, else to
    /// `post_logout_redirect_uri` or `/`.
    pub fn logout(
        &self,
        sessions: &Sessions,
        disco: Option<&Discovery>,
        cookie_header: &str,
        now: UnixTime,
    ) -> LogoutReply {
        let mut set_cookies = vec![sessions.clear_cookie_header(), self.clear_refresh_cookie()];
        for state in attempt_states(cookie_header) {
            set_cookies.push(self.clear_attempt_cookie(&state));
        }
        let hint = find_cookie(cookie_header, &self.refresh_cookie)
            .and_then(|v| self.open_refresh(v, now).ok())
            .and_then(|r| r.id_token);
        let location = match disco.and_then(|d| d.end_session_endpoint.as_deref()) {
            Some(end) => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                if let Some(h) = &hint {
                    q.append_pair("id_token_hint", h);
                }
                if let Some(p) = &self.post_logout {
                    q.append_pair("post_logout_redirect_uri", p);
                }
                q.append_pair("client_id", &self.client_id);
                let sep = if end.contains('?') { '&' } else { '?' };
                format!("{end}{sep}{}", q.finish())
            }
            None => self.post_logout.clone().unwrap_or_else(|| "/".into()),
        };
        LogoutReply {
            location,
            set_cookies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    #[test]
    fn logout_clears_everything_and_hints_the_provider() {
        let (e, l, s) = login_and_sessions();
        let cookies = format!(
            "{}; edgegate_login_abc=x; edgegate_login_de-f=y",
            logged_in(e, NOW, true)
        );
        let r = l.logout(s, Some(&disco()), &cookies, NOW + 5);
        assert!(r.location.starts_with("https://idp.example/logout?"));
        assert!(r.location.contains("id_token_hint=id.tok.en"));
        assert!(r
            .location
            .contains("post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fbye"));
        assert!(r.location.contains("client_id=edge"));
        assert_eq!(r.set_cookies.len(), 4);
        assert!(r.set_cookies.iter().all(|c| c.contains("Max-Age=0")));
        assert!(r.set_cookies[0].starts_with("edgegate_session="));
        assert!(r.set_cookies[1].starts_with("edgegate_session_refresh="));
        // no end_session_endpoint: straight to post_logout_redirect_uri
        let mut d = disco();
        d.end_session_endpoint = None;
        assert_eq!(
            l.logout(s, Some(&d), "", NOW).location,
            "https://app.example.com/bye"
        );
        let mut v = config_value();
        v["login"]
            .as_object_mut()
            .unwrap()
            .remove("post_logout_redirect_uri");
        let e2 = engine_from(&v).unwrap();
        let r = e2.login().unwrap().logout(sessions_of(&e2), None, "", NOW);
        assert_eq!(r.location, "/");
    }
}
