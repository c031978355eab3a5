//! Step 3: every other request. [`Login::renewal`] says whether the refresh token is due,
//! [`Login::renewed_identity`] what the renewed session holds, [`Login::after_failed_renewal`]
//! whether a failure ends the session.

use super::{Login, RefreshState};
use crate::error::{Error, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::session::{find_cookie, Session, Sessions};
use crate::UnixTime;

/// What a request's cookies call for, before it is decided.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Renewal {
    /// Nothing to do (no refresh cookie, the session is young, or not an OIDC session).
    Keep,
    /// Use the refresh token now. `current` is the still-valid session, if any (without one,
    /// the token response must carry an ID token for the same subject).
    Renew {
        refresh: RefreshState,
        current: Option<Session>,
    },
}

/// What to do after a failed renewal ([`Login::after_failed_renewal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Delete the session and refresh cookies; decide the request without them.
    EndSession,
    /// Leave both cookies as they are (try again on a later request).
    KeepSession,
}

impl Login {
    /// When a valid session becomes due for renewal with the refresh token: the start of the
    /// last quarter of its lifetime, for an OIDC session of this provider when refresh tokens
    /// are kept (`refresh_cookie` keys); `None` for a session this login never renews.
    pub fn renew_at(&self, s: &Session) -> Option<UnixTime> {
        if self.refresh_keys.is_empty()
            || s.origin != CredentialKind::Jwt
            || s.identity.provider != self.provider
        {
            return None;
        }
        let lifetime = s.expires_at.saturating_sub(s.issued_at);
        Some(s.issued_at.saturating_add(lifetime.saturating_mul(3) / 4))
    }

    /// Whether this request's session should be renewed with its refresh token now: the
    /// refresh cookie opens, and either the session (an OIDC session of this provider and
    /// the same subject) is in the last quarter of its lifetime, or there is no valid session
    /// (the browser dropped it at `Max-Age`, or it expired).
    pub fn renewal(&self, sessions: &Sessions, cookie_header: &str, now: UnixTime) -> Renewal {
        if self.refresh_keys.is_empty() {
            return Renewal::Keep;
        }
        let Some(rc) = find_cookie(cookie_header, &self.refresh_cookie) else {
            return Renewal::Keep;
        };
        let session = sessions
            .from_cookie_header(cookie_header)
            .and_then(|v| sessions.open_session(v, now).ok());
        if let Some(s) = &session {
            match self.renew_at(s) {
                Some(renew_at) if now >= renew_at => {}
                _ => return Renewal::Keep,
            }
        }
        let Ok(refresh) = self.open_refresh(rc, now) else {
            return Renewal::Keep;
        };
        if let Some(s) = &session {
            if s.identity.subject != refresh.subject {
                return Renewal::Keep;
            }
        }
        Renewal::Renew {
            refresh,
            current: session,
        }
    }

    /// The identity of a renewed session: the new ID token's (already verified, without a
    /// nonce), which must name the same subject (OIDC Core 12.2); without a new ID token, the
    /// current session's; with neither, the renewal fails and the session ends.
    pub fn renewed_identity(
        &self,
        refresh: &RefreshState,
        current: Option<&Session>,
        verified: Option<Identity>,
    ) -> Result<Identity, Error> {
        match (verified, current) {
            (Some(id), _) if id.subject == refresh.subject => Ok(id),
            (Some(_), _) => Err(Error::new(
                Reason::LoginMismatch,
                "the refreshed ID token names another subject",
            )),
            (None, Some(s)) => {
                let mut id = s.identity.clone();
                id.credential = s.origin;
                Ok(id)
            }
            (None, None) => Err(Error::new(
                Reason::SessionExpired,
                "the session expired and the refresh gave no ID token; log in again",
            )),
        }
    }

    /// What a failed renewal means. The provider refusing (a 4xx from the token endpoint, an
    /// ID token that does not pass, another subject) ends the session. The provider being
    /// unreachable or broken (`KeysUnavailable`: network, 5xx, no keys) while the session is
    /// still valid keeps it until its own expiry (bounded by the session lifetime): an outage
    /// of the provider does not log everyone out; without a valid session it ends too.
    pub fn after_failed_renewal(&self, error: &Error, session_still_valid: bool) -> AfterFailure {
        if session_still_valid && error.reason() == Reason::KeysUnavailable {
            AfterFailure::KeepSession
        } else {
            AfterFailure::EndSession
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn renewal_decision() {
        let (e, l, s) = login_and_sessions();
        // lifetime 400 s: renew from 300 s on
        let cookies = logged_in(e, NOW, true);
        assert!(matches!(l.renewal(s, &cookies, NOW + 299), Renewal::Keep));
        match l.renewal(s, &cookies, NOW + 300) {
            Renewal::Renew { refresh, current } => {
                assert_eq!(refresh.refresh_token, "rt-1");
                assert_eq!(current.unwrap().identity.subject, "alice");
            }
            Renewal::Keep => panic!("last quarter"),
        }
        // expired, or dropped by the browser: renew without a current session
        assert!(matches!(
            l.renewal(s, &cookies, NOW + 1000),
            Renewal::Renew { current: None, .. }
        ));
        let only_refresh: String = cookies
            .split("; ")
            .filter(|c| c.starts_with("edgegate_session_refresh="))
            .collect();
        assert!(matches!(
            l.renewal(s, &only_refresh, NOW + 10),
            Renewal::Renew { current: None, .. }
        ));
        // no refresh cookie, or a broken one: nothing to do
        let no_refresh = logged_in(e, NOW, false);
        assert!(matches!(
            l.renewal(s, &no_refresh, NOW + 350),
            Renewal::Keep
        ));
        let broken = format!("{no_refresh}; edgegate_session_refresh=r2.AAAA");
        assert!(matches!(l.renewal(s, &broken, NOW + 350), Renewal::Keep));
        // a magic-link session is not renewed by a refresh cookie
        let mut magic = oidc_identity();
        magic.credential = CredentialKind::MagicLink;
        let m = s.seal(&magic, NOW).unwrap();
        let refresh = only_refresh.clone();
        let mixed = format!("edgegate_session={m}; {refresh}");
        assert!(matches!(l.renewal(s, &mixed, NOW + 350), Renewal::Keep));
        // another subject's refresh cookie does not renew this session
        let bob = l
            .seal_refresh("rt-b", "bob", None, &[4; 12], NOW)
            .unwrap()
            .unwrap();
        let session_only: String = cookies
            .split("; ")
            .filter(|c| c.starts_with("edgegate_session="))
            .collect();
        let swapped = format!("{session_only}; edgegate_session_refresh={bob}");
        assert!(matches!(l.renewal(s, &swapped, NOW + 350), Renewal::Keep));
    }

    #[test]
    fn renewed_identity_rules() {
        let (_, l, s) = login_and_sessions();
        let refresh = RefreshState {
            refresh_token: "rt".into(),
            subject: "alice".into(),
            id_token: None,
            expires_at: NOW + 100,
        };
        let value = s.seal(&oidc_identity(), NOW).unwrap();
        let current = s.open_session(&value, NOW).unwrap();
        let id = l.renewed_identity(&refresh, Some(&current), None).unwrap();
        assert_eq!(id.credential, CredentialKind::Jwt);
        assert_eq!(id.roles, vec!["admin"]);
        let mut fresh = oidc_identity();
        fresh.roles = vec!["staff".into()];
        assert_eq!(
            l.renewed_identity(&refresh, Some(&current), Some(fresh))
                .unwrap()
                .roles,
            vec!["staff"]
        );
        let bob = Identity::new("bob", CredentialKind::Jwt, "op");
        assert_eq!(
            l.renewed_identity(&refresh, None, Some(bob))
                .unwrap_err()
                .reason(),
            Reason::LoginMismatch
        );
        assert_eq!(
            l.renewed_identity(&refresh, None, None)
                .unwrap_err()
                .reason(),
            Reason::SessionExpired
        );
    }

    #[test]
    fn a_provider_outage_keeps_a_valid_session_a_refusal_ends_it() {
        let (_, l) = engine_and_login();
        let outage = Error::new(Reason::KeysUnavailable, "token endpoint down");
        let refused = Error::new(Reason::LoginMismatch, "invalid_grant");
        assert_eq!(
            l.after_failed_renewal(&outage, true),
            AfterFailure::KeepSession
        );
        assert_eq!(
            l.after_failed_renewal(&outage, false),
            AfterFailure::EndSession
        );
        assert_eq!(
            l.after_failed_renewal(&refused, true),
            AfterFailure::EndSession
        );
        let other = Error::new(Reason::BadSignature, "x");
        assert_eq!(
            l.after_failed_renewal(&other, true),
            AfterFailure::EndSession
        );
    }
}
