//! Step 2c: the cookies a login or renewal ends with ([`Login::establish`]): the session, and the
//! encrypted refresh cookie.
//!
//! # The refresh cookie
//!
//! Named `<session cookie>_refresh`, same `Path`/`Domain` as the session, `HttpOnly; Secure;
//! SameSite=Lax`. Value: `<kid>.<base64url(nonce ‖ AES-256-GCM(json))>` with the 12-byte nonce
//! from the host and the AAD `edgegate-refresh:<kid>`. The JSON holds the refresh token, the
//! session's subject, when it fits the ID token (for `id_token_hint`), `iat` and `exp`. Without
//! `refresh_keys` no refresh token is ever stored.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::Nonce;
use serde::{Deserialize, Serialize};

use super::Login;
use crate::b64;
use crate::error::{Error, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::session::Sessions;
use crate::UnixTime;

/// Random bytes [`Login::establish`] and [`Login::seal_refresh`] need (the AES-GCM nonce).
pub const REFRESH_NONCE_BYTES: usize = 12;
/// How long the refresh cookie lives, in seconds (30 days); the provider may end the refresh
/// token sooner, and then the next renewal fails and the user logs in again.
pub const REFRESH_LIFETIME_SECONDS: u64 = 30 * 86_400;
/// Largest refresh cookie value written or accepted (the ID token is left out to stay below).
pub const MAX_REFRESH_COOKIE_BYTES: usize = 3800;
const REFRESH_AAD_PREFIX: &str = "edgegate-refresh:";

/// The contents of an opened refresh cookie. Never log it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshState {
    pub refresh_token: String,
    /// The subject of the session it belongs to.
    pub subject: String,
    /// The last ID token, for `id_token_hint` at logout (absent when it did not fit).
    pub id_token: Option<String>,
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for RefreshState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshState")
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshClaims {
    rt: String,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idt: Option<String>,
    iat: UnixTime,
    exp: UnixTime,
}

impl Login {
    /// The `Set-Cookie` values after a successful login or renewal: the session, and the
    /// refresh cookie (encrypted with `nonce`) when a refresh token came and refresh keys are
    /// configured — else a deletion of any old refresh cookie.
    pub fn establish(
        &self,
        sessions: &Sessions,
        identity: &Identity,
        refresh_token: Option<&str>,
        id_token: Option<&str>,
        nonce: &[u8; REFRESH_NONCE_BYTES],
        now: UnixTime,
    ) -> Result<Vec<String>, Error> {
        let mut sealed = identity.clone();
        sealed.credential = CredentialKind::Jwt;
        sealed.key_name = None;
        sealed.expires_at = None;
        let value = sessions.seal(&sealed, now)?;
        let mut out = vec![sessions.set_cookie_header(&value, now)];
        let refresh = match refresh_token {
            Some(rt) => self.seal_refresh(rt, &identity.subject, id_token, nonce, now)?,
            None => None,
        };
        out.push(match refresh {
            Some(v) => self.refresh_cookie_header(&v),
            None => self.clear_refresh_cookie(),
        });
        Ok(out)
    }

    /// Encrypts a refresh cookie value with the first refresh key. `Ok(None)` when no refresh
    /// key is configured, or the value would not fit even without the ID token.
    pub fn seal_refresh(
        &self,
        refresh_token: &str,
        subject: &str,
        id_token: Option<&str>,
        nonce: &[u8; REFRESH_NONCE_BYTES],
        now: UnixTime,
    ) -> Result<Option<String>, Error> {
        let Some((kid, cipher)) = self.refresh_keys.first() else {
            return Ok(None);
        };
        for idt in [id_token, None] {
            let claims = RefreshClaims {
                rt: refresh_token.to_string(),
                sub: subject.to_string(),
                idt: idt.map(str::to_string),
                iat: now,
                exp: now.saturating_add(REFRESH_LIFETIME_SECONDS),
            };
            let json = serde_json::to_vec(&claims)
                .map_err(|_| Error::new(Reason::Internal, "could not encode the refresh cookie"))?;
            // nonce + ciphertext + 16-byte tag, base64url (4/3), plus the kid
            let estimate = (json.len() + REFRESH_NONCE_BYTES + 16) * 4 / 3 + kid.len() + 2;
            if estimate > MAX_REFRESH_COOKIE_BYTES {
                continue;
            }
            let aad = format!("{REFRESH_AAD_PREFIX}{kid}");
            let ct = cipher
                .encrypt(
                    &Nonce::from(*nonce),
                    Payload {
                        msg: &json,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| {
                    Error::new(Reason::Internal, "could not encrypt the refresh cookie")
                })?;
            let mut blob = nonce.to_vec();
            blob.extend_from_slice(&ct);
            return Ok(Some(format!("{kid}.{}", b64::encode(blob))));
        }
        Ok(None)
    }

    /// Decrypts a refresh cookie value (any configured key, by kid) and checks its expiry.
    /// `SessionInvalid` for anything tampered, unknown or malformed; `SessionExpired` after
    /// `exp`.
    pub fn open_refresh(&self, value: &str, now: UnixTime) -> Result<RefreshState, Error> {
        let invalid = || Error::new(Reason::SessionInvalid, "the refresh cookie is not valid");
        if value.len() > MAX_REFRESH_COOKIE_BYTES {
            return Err(invalid());
        }
        let (kid, data) = value.split_once('.').ok_or_else(invalid)?;
        let (_, cipher) = self
            .refresh_keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or_else(invalid)?;
        let blob = b64::decode(data).map_err(|_| invalid())?;
        if blob.len() < REFRESH_NONCE_BYTES + 16 {
            return Err(invalid());
        }
        let (nonce, ct) = blob.split_at(REFRESH_NONCE_BYTES);
        let nonce: [u8; REFRESH_NONCE_BYTES] = nonce.try_into().map_err(|_| invalid())?;
        let aad = format!("{REFRESH_AAD_PREFIX}{kid}");
        let json = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| invalid())?;
        let c: RefreshClaims = serde_json::from_slice(&json).map_err(|_| invalid())?;
        if c.rt.is_empty() || c.sub.is_empty() || c.exp <= c.iat {
            return Err(invalid());
        }
        if now >= c.exp {
            return Err(Error::new(
                Reason::SessionExpired,
                "the refresh cookie has expired",
            ));
        }
        Ok(RefreshState {
            refresh_token: c.rt,
            subject: c.sub,
            id_token: c.idt,
            expires_at: c.exp,
        })
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        let mut s = format!(
            "{name}={value}; Path={}; Max-Age={max_age}",
            self.cookie_path
        );
        if max_age == 0 {
            s.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        }
        if let Some(d) = &self.cookie_domain {
            s.push_str("; Domain=");
            s.push_str(d);
        }
        s.push_str("; HttpOnly; Secure; SameSite=Lax");
        s
    }

    /// The `Set-Cookie` value for a sealed refresh cookie.
    pub fn refresh_cookie_header(&self, value: &str) -> String {
        self.cookie(&self.refresh_cookie, value, REFRESH_LIFETIME_SECONDS)
    }

    /// The `Set-Cookie` value that deletes the refresh cookie.
    pub fn clear_refresh_cookie(&self) -> String {
        self.cookie(&self.refresh_cookie, "", 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::b64;
    use serde_json::json;

    #[test]
    fn refresh_cookie_seals_opens_rotates_and_refuses_tampering() {
        let (_, l) = engine_and_login();
        let v = l
            .seal_refresh("rt-1", "alice", Some("id.tok.en"), &[5; 12], NOW)
            .unwrap()
            .unwrap();
        assert!(v.starts_with("r2."), "the first key encrypts");
        assert!(!v.contains("rt-1"));
        let r = l.open_refresh(&v, NOW + 10).unwrap();
        assert_eq!(r.refresh_token, "rt-1");
        assert_eq!(r.subject, "alice");
        assert_eq!(r.id_token.as_deref(), Some("id.tok.en"));
        assert!(!format!("{r:?}").contains("rt-1"));
        // another nonce, another ciphertext
        let v2 = l
            .seal_refresh("rt-1", "alice", None, &[6; 12], NOW)
            .unwrap()
            .unwrap();
        assert_ne!(v, v2);
        // every byte flipped is refused
        let (kid, data) = v.split_once('.').unwrap();
        let raw = b64::decode(data).unwrap();
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 1;
            let forged = format!("{kid}.{}", b64::encode(&t));
            assert_eq!(
                l.open_refresh(&forged, NOW).unwrap_err().reason(),
                Reason::SessionInvalid,
                "byte {i}"
            );
        }
        // the kid is bound (AAD): relabelled under the other key, it fails
        assert!(l.open_refresh(&format!("r1.{data}"), NOW).is_err());
        assert!(l.open_refresh(&format!("zz.{data}"), NOW).is_err());
        assert!(l.open_refresh("garbage", NOW).is_err());
        assert!(l
            .open_refresh(&format!("{kid}.{}", b64::encode([0u8; 20])), NOW)
            .is_err());
        assert_eq!(
            l.open_refresh(&v, NOW + REFRESH_LIFETIME_SECONDS)
                .unwrap_err()
                .reason(),
            Reason::SessionExpired
        );
        // rotation: a cookie of the old key r1 still opens once r1 is second; not once removed
        let mut old = config_value();
        old["login"]["refresh_keys"] = json!([{"kid": "r1", "secret": key(1)}]);
        let e_old = engine_from(&old).unwrap();
        let old_cookie = e_old
            .login()
            .unwrap()
            .seal_refresh("rt-0", "alice", None, &[1; 12], NOW)
            .unwrap()
            .unwrap();
        assert_eq!(
            l.open_refresh(&old_cookie, NOW).unwrap().refresh_token,
            "rt-0"
        );
        let mut new = config_value();
        new["login"]["refresh_keys"] = json!([{"kid": "r2", "secret": key(2)}]);
        let e_new = engine_from(&new).unwrap();
        assert!(e_new
            .login()
            .unwrap()
            .open_refresh(&old_cookie, NOW)
            .is_err());
        // same kid, another key: refused
        let mut other = config_value();
        other["login"]["refresh_keys"] = json!([{"kid": "r2", "secret": key(9)}]);
        let e_other = engine_from(&other).unwrap();
        assert!(e_other.login().unwrap().open_refresh(&v, NOW).is_err());
    }

    #[test]
    fn refresh_cookie_stays_small() {
        let (_, l) = engine_and_login();
        let big_id_token = "x".repeat(4000);
        let v = l
            .seal_refresh("rt-1", "alice", Some(&big_id_token), &[5; 12], NOW)
            .unwrap()
            .unwrap();
        assert!(v.len() <= MAX_REFRESH_COOKIE_BYTES);
        assert_eq!(
            l.open_refresh(&v, NOW).unwrap().id_token,
            None,
            "the hint is dropped"
        );
        let huge = "r".repeat(4000);
        assert_eq!(
            l.seal_refresh(&huge, "alice", None, &[5; 12], NOW).unwrap(),
            None
        );
        // without refresh keys nothing is stored
        let mut v = config_value();
        v["login"].as_object_mut().unwrap().remove("refresh_keys");
        let e2 = engine_from(&v).unwrap();
        let l2 = e2.login().unwrap();
        assert!(!l2.refresh_enabled());
        let set = l2
            .establish(
                sessions_of(&e2),
                &oidc_identity(),
                Some("rt"),
                None,
                &[1; 12],
                NOW,
            )
            .unwrap();
        assert!(set[1].contains("Max-Age=0"), "{set:?}");
    }
}
