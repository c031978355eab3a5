//! The edgegate session cookie, set after a magic-link or OIDC login.
//!
//! Stateless: the cookie's value is a compact JWS signed with HS256 by the first configured key
//! (all keys verify, so keys rotate like magic-link keys). Header
//! `{"alg":"HS256","typ":"JWT","kid":<kid>}`; claims, with short names to stay far below the
//! 4 KB cookie limit:
//!
//! | claim | meaning |
//! |-------|---------|
//! | `aud` | always `edgegate-session` (so no other edgegate token passes as a session) |
//! | `sub` | subject |
//! | `em`, `nm` | email, display name (optional) |
//! | `rl`, `pm` | roles, permissions (omitted when empty) |
//! | `amr`, `acr` | authentication methods and context class (optional) |
//! | `pv` | provider of the login (`magic_link` or the OIDC provider's name) |
//! | `cr` | credential of origin (`magic_link`, `jwt`, ...) |
//! | `sc` | path scope carried over from a guest link (optional) |
//! | `iat`, `exp` | issued at, expires at (Unix seconds) |
//!
//! OAuth scopes are not carried. A session lives `lifetime_seconds` from sealing; lowering the
//! configured lifetime also shortens sessions already issued (`iat + lifetime` is enforced).
//!
//! # Config
//!
//! ```yaml
//! session:
//!   cookie_name: edgegate_session  # default
//!   keys: [{ kid: s1, secret: <base64url, >= 32 bytes> }]
//!   lifetime_seconds: 28800        # default (8 h)
//!   domain: example.com            # optional
//!   path: /                        # default
//! ```
//!
//! The cookie is always `HttpOnly; Secure; SameSite=Lax`.

use cookie::time::{Duration, OffsetDateTime};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};

use crate::credential::OWN_TOKEN_SKEW_SECONDS;
use crate::error::{ConfigError, Error, Problems, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::keyring::{HmacKeyConfig, KeyRing};
use crate::UnixTime;

/// The fixed audience of session tokens.
pub const AUDIENCE: &str = "edgegate-session";
/// `seal` refuses to produce a longer value.
pub const MAX_SESSION_BYTES: usize = 3800;
/// Clock skew tolerated on `iat`.
const CLOCK_SKEW_SECONDS: u64 = OWN_TOKEN_SKEW_SECONDS;
/// Longest lifetime browsers honour (Chrome caps `Max-Age` at 400 days).
const MAX_LIFETIME_SECONDS: u64 = 400 * 86_400;

/// The `session` config section.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Cookie name. Default `edgegate_session`. A `__Host-` name requires no `domain` and
    /// path `/`.
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    /// HS256 keys: the first signs, all verify (rotation). Secrets are unpadded base64url of
    /// at least 32 random bytes.
    pub keys: Vec<HmacKeyConfig>,
    /// How long a session lasts, in seconds. Default 28800 (8 hours); at most 400 days.
    #[serde(default = "default_lifetime")]
    pub lifetime_seconds: u64,
    /// Cookie `Domain` (e.g. `example.com` to share the session with subdomains). Default:
    /// none (host-only cookie).
    pub domain: Option<String>,
    /// Cookie `Path`. Default `/`.
    #[serde(default = "default_path")]
    pub path: String,
}

/// The session cookie's name when `session.cookie_name` is not set.
pub const DEFAULT_COOKIE_NAME: &str = "edgegate_session";

fn default_cookie_name() -> String {
    DEFAULT_COOKIE_NAME.into()
}
fn default_lifetime() -> u64 {
    8 * 3600
}
fn default_path() -> String {
    "/".into()
}

/// The compiled session section.
#[derive(Debug, Clone)]
pub struct Sessions {
    cookie_name: String,
    ring: KeyRing,
    lifetime: u64,
    domain: Option<String>,
    path: String,
}

/// An opened session cookie, with what [`Identity`] has no field for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `credential` is [`CredentialKind::Session`], `provider` the login's provider.
    pub identity: Identity,
    /// The credential the session was created from.
    pub origin: CredentialKind,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    aud: String,
    sub: String,
    em: Option<String>,
    nm: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rl: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pm: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    amr: Vec<String>,
    acr: Option<String>,
    pv: String,
    cr: CredentialKind,
    sc: Option<String>,
    iat: u64,
    exp: u64,
}

fn cookie_token(s: &str) -> bool {
    crate::syntax::is_short_token(s)
}

fn invalid() -> Error {
    Error::new(Reason::SessionInvalid, "the session cookie is not valid")
}

impl SessionConfig {
    /// Validates the section. All problems are reported together.
    pub fn compile(&self) -> Result<Sessions, Vec<ConfigError>> {
        let mut errors = Vec::new();
        errors.refuse_if(
            !cookie_token(&self.cookie_name),
            "cookie_name",
            "a cookie name is 1-64 characters of A-Z a-z 0-9 and !#$%&'*+-.^_`|~",
        );
        let ring = KeyRing::compile(&self.keys)
            .map_err(|e| errors.extend(e))
            .ok();
        errors.refuse_if(
            !(1..=MAX_LIFETIME_SECONDS).contains(&self.lifetime_seconds),
            "lifetime_seconds",
            format!("must be between 1 and {MAX_LIFETIME_SECONDS} (400 days)"),
        );
        let domain = self
            .domain
            .as_ref()
            .map(|d| d.trim_start_matches('.').to_ascii_lowercase());
        if let Some(d) = &domain {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                errors.push(ConfigError::new(
                    "domain",
                    "not a domain name (e.g. example.com)",
                ));
            } else if !d.contains('.') {
                errors.push(ConfigError::new(
                    "domain",
                    format!(
                        "{d:?} is a single label (a top-level domain or a host): browsers refuse \
                         such a cookie, so no one could stay logged in; name your site's domain \
                         (e.g. example.com) or leave domain out for this host only"
                    ),
                ));
            }
        }
        if !self.path.starts_with('/')
            || self.path.len() > 256
            || self
                .path
                .chars()
                .any(|c| c == ';' || c.is_control() || c.is_whitespace())
        {
            errors.push(ConfigError::new(
                "path",
                "a cookie path starts with `/` and has no `;`, whitespace or control characters",
            ));
        }
        errors.refuse_if(
            self.cookie_name.starts_with("__Host-") && (domain.is_some() || self.path != "/"),
            "cookie_name",
            "a `__Host-` cookie must have no domain and path `/`",
        );
        match ring {
            Some(ring) if errors.is_empty() => Ok(Sessions {
                cookie_name: self.cookie_name.clone(),
                ring,
                lifetime: self.lifetime_seconds,
                domain,
                path: self.path.clone(),
            }),
            _ => Err(errors),
        }
    }
}

impl Sessions {
    /// The cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The session lifetime in seconds.
    pub fn lifetime_seconds(&self) -> u64 {
        self.lifetime
    }

    /// Seals `identity` into a cookie value valid for `lifetime_seconds` from `now`. Refuses
    /// (`Internal`) when the value would exceed 3800 bytes (e.g. thousands of roles).
    pub fn seal(&self, identity: &Identity, now: UnixTime) -> Result<String, Error> {
        let exp = now
            .checked_add(self.lifetime)
            .ok_or_else(|| Error::new(Reason::Internal, "the session expiry overflows"))?;
        self.seal_until(identity, now, exp)
    }

    /// [`seal`](Self::seal) with an earlier expiry `exp` (a device credential: never beyond the
    /// confirming session's). Refuses an `exp` not after `now` or beyond the lifetime.
    pub fn seal_until(
        &self,
        identity: &Identity,
        now: UnixTime,
        exp: UnixTime,
    ) -> Result<String, Error> {
        if exp <= now || exp > now.saturating_add(self.lifetime) {
            return Err(Error::new(
                Reason::Internal,
                "a session must expire after now and within the session lifetime",
            ));
        }
        let claims = Claims {
            aud: AUDIENCE.into(),
            sub: identity.subject.clone(),
            em: identity.email.clone(),
            nm: identity.name.clone(),
            rl: identity.roles.clone(),
            pm: identity.permissions.clone(),
            amr: identity.amr.clone(),
            acr: identity.acr.clone(),
            pv: identity.provider.clone(),
            cr: identity.credential,
            sc: identity.path_scope.clone(),
            iat: now,
            exp,
        };
        let json = serde_json::to_vec(&claims)
            .map_err(|_| Error::new(Reason::Internal, "could not encode the session"))?;
        // base64url grows 4/3; refuse before signing when it cannot fit anyway
        if json.len() > MAX_SESSION_BYTES {
            return Err(too_large());
        }
        let value = self.ring.sign(&json)?;
        if value.len() > MAX_SESSION_BYTES {
            return Err(too_large());
        }
        Ok(value)
    }

    /// Opens a cookie value. `SessionInvalid` for anything malformed, badly signed, from an
    /// unknown key or meant for something else; `SessionExpired` once `exp` (or `iat` plus the
    /// configured lifetime) has passed.
    pub fn open(&self, value: &str, now: UnixTime) -> Result<Identity, Error> {
        self.open_session(value, now).map(|s| s.identity)
    }

    /// [`open`](Self::open), also returning the credential of origin and the times.
    pub fn open_session(&self, value: &str, now: UnixTime) -> Result<Session, Error> {
        let (jws, kid) = self
            .ring
            .verify(value, MAX_SESSION_BYTES)
            .map_err(|_| invalid())?;
        let map = jws.claims().map_err(|_| invalid())?;
        let c: Claims =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(|_| invalid())?;
        if c.aud != AUDIENCE || c.sub.is_empty() || c.exp <= c.iat {
            return Err(invalid());
        }
        if c.iat > now.saturating_add(CLOCK_SKEW_SECONDS) {
            return Err(invalid());
        }
        let expires_at = c.exp.min(c.iat.saturating_add(self.lifetime));
        if now >= expires_at {
            return Err(Error::new(
                Reason::SessionExpired,
                "the session has expired; log in again",
            ));
        }
        let mut identity = Identity::new(c.sub, CredentialKind::Session, c.pv);
        identity.email = c.em;
        identity.name = c.nm;
        identity.roles = c.rl;
        identity.permissions = c.pm;
        identity.amr = c.amr;
        identity.acr = c.acr;
        identity.key_name = Some(kid.to_string());
        identity.expires_at = Some(expires_at);
        identity.path_scope = c.sc;
        Ok(Session {
            identity,
            origin: c.cr,
            issued_at: c.iat,
            expires_at,
        })
    }

    fn cookie<'c>(&'c self, value: &'c str, max_age: i64) -> Cookie<'c> {
        let mut b = Cookie::build((self.cookie_name.as_str(), value))
            .http_only(true)
            .secure(true)
            .same_site(SameSite::Lax)
            .path(self.path.as_str())
            .max_age(Duration::seconds(max_age));
        if let Some(d) = &self.domain {
            b = b.domain(d.as_str());
        }
        b.build()
    }

    /// The `Set-Cookie` value for a freshly sealed session (`HttpOnly; Secure; SameSite=Lax`,
    /// `Path`, `Domain` if configured, `Max-Age` = lifetime, `Expires` = now + lifetime).
    pub fn set_cookie_header(&self, value: &str, now: UnixTime) -> String {
        let max_age = i64::try_from(self.lifetime).unwrap_or(i64::MAX);
        let mut c = self.cookie(value, max_age);
        let expires = now
            .checked_add(self.lifetime)
            .and_then(|t| i64::try_from(t).ok())
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
        if let Some(t) = expires {
            c.set_expires(t);
        }
        c.to_string()
    }

    /// The `Set-Cookie` value that deletes the session (same attributes, empty value,
    /// `Max-Age=0`, `Expires` in 1970).
    pub fn clear_cookie_header(&self) -> String {
        let mut c = self.cookie("", 0);
        c.set_expires(OffsetDateTime::UNIX_EPOCH);
        c.to_string()
    }

    /// The session cookie's value from a `Cookie` request header (see [`find_cookie`]).
    pub fn from_cookie_header<'a>(&self, cookie_header: &'a str) -> Option<&'a str> {
        find_cookie(cookie_header, &self.cookie_name)
    }
}

fn too_large() -> Error {
    Error::new(
        Reason::Internal,
        format!("the session would exceed {MAX_SESSION_BYTES} bytes (too many roles or permissions for a cookie)"),
    )
}

/// The value of the first cookie named `name` (case-sensitive) in a `Cookie` request header,
/// without percent-decoding; a value wrapped in double quotes is returned without them.
/// Pieces that do not parse are skipped. Returns the first match: browsers send cookies with
/// longer paths first, so a cookie planted for a narrower path by a sibling subdomain may come
/// first — which for a signed session only ever yields someone's valid session or a refusal.
pub fn find_cookie<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    Cookie::split_parse(cookie_header)
        .filter_map(Result::ok)
        .find(|c| c.name_raw() == Some(name))
        .and_then(|c| c.value_raw())
        .map(|v| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;
    use crate::keyring::tests::key;
    use crate::test_support::{assert_debug_hides, error_paths};
    use hmac::{Hmac, Mac};
    use serde_json::json;
    use sha2::Sha256;

    const NOW: u64 = 1_700_000_000;

    fn config() -> SessionConfig {
        serde_json::from_value(json!({
            "keys": [{"kid": "s2", "secret": b64::encode([2u8; 32])},
                     {"kid": "s1", "secret": b64::encode([1u8; 32])}]
        }))
        .unwrap()
    }

    fn sessions() -> Sessions {
        config().compile().unwrap()
    }

    fn identity() -> Identity {
        let mut id = Identity::new("user-1", CredentialKind::Jwt, "google");
        id.email = Some("ana@example.com".into());
        id.name = Some("Ana".into());
        id.roles = vec!["agent".into(), "admin".into()];
        id.permissions = vec!["tickets:read".into()];
        id.scopes = vec!["openid".into()];
        id.amr = vec!["pwd".into(), "mfa".into()];
        id.acr = Some("urn:mace:incommon:iap:silver".into());
        id.key_name = Some("google-kid".into());
        id.expires_at = Some(NOW + 300);
        id
    }

    fn forge(claims: &serde_json::Value, kid: &str, secret: [u8; 32]) -> String {
        let h = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#);
        let si = format!("{}.{}", b64::encode(h), b64::encode(claims.to_string()));
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
        mac.update(si.as_bytes());
        format!("{si}.{}", b64::encode(mac.finalize().into_bytes()))
    }

    fn good() -> serde_json::Value {
        json!({"aud": AUDIENCE, "sub": "u", "pv": "magic_link", "cr": "magic_link",
               "iat": NOW, "exp": NOW + 100})
    }

    fn reason(v: &str) -> Reason {
        sessions().open(v, NOW).unwrap_err().reason()
    }

    #[test]
    fn seal_then_open_round_trips() {
        let s = sessions();
        let value = s.seal(&identity(), NOW).unwrap();
        assert!(value.len() < 1000, "{}", value.len());
        let opened = s.open_session(&value, NOW + 10).unwrap();
        assert_eq!(opened.origin, CredentialKind::Jwt);
        assert_eq!(opened.issued_at, NOW);
        assert_eq!(opened.expires_at, NOW + 8 * 3600);
        let id = opened.identity;
        assert_eq!(id.subject, "user-1");
        assert_eq!(id.email.as_deref(), Some("ana@example.com"));
        assert_eq!(id.name.as_deref(), Some("Ana"));
        assert_eq!(id.roles, ["agent", "admin"]);
        assert_eq!(id.permissions, ["tickets:read"]);
        assert!(id.scopes.is_empty());
        assert_eq!(id.amr, ["pwd", "mfa"]);
        assert_eq!(id.acr.as_deref(), Some("urn:mace:incommon:iap:silver"));
        assert_eq!(id.credential, CredentialKind::Session);
        assert_eq!(id.provider, "google");
        assert_eq!(id.key_name.as_deref(), Some("s2"));
        assert_eq!(id.expires_at, Some(NOW + 8 * 3600));
        assert_eq!(id.path_scope, None);
        // a guest's scope survives the session
        let mut guest = Identity::new("g", CredentialKind::MagicLink, "magic_link");
        guest.path_scope = Some("/tickets/TRK-1".into());
        let v = s.seal(&guest, NOW).unwrap();
        let opened = s.open_session(&v, NOW).unwrap();
        assert_eq!(
            opened.identity.path_scope.as_deref(),
            Some("/tickets/TRK-1")
        );
        assert_eq!(opened.origin, CredentialKind::MagicLink);
    }

    #[test]
    fn expiry() {
        let s = sessions();
        let value = s.seal(&identity(), NOW).unwrap();
        assert!(s.open(&value, NOW + 8 * 3600 - 1).is_ok());
        let e = s.open(&value, NOW + 8 * 3600).unwrap_err();
        assert_eq!(e.reason(), Reason::SessionExpired);
        assert_eq!(e.http_status(), 401);
        // a shorter configured lifetime cuts sessions already issued
        let mut c = config();
        c.lifetime_seconds = 3600;
        let short = c.compile().unwrap();
        assert_eq!(
            short.open(&value, NOW + 3600).unwrap_err().reason(),
            Reason::SessionExpired
        );
        assert_eq!(
            short.open_session(&value, NOW).unwrap().expires_at,
            NOW + 3600
        );
    }

    #[test]
    fn rotation_and_forgery() {
        // sealed with s1 by an older config; s1 is still listed
        let old = SessionConfig {
            keys: vec![key("s1", 1)],
            ..config()
        }
        .compile()
        .unwrap();
        let v = old.seal(&identity(), NOW).unwrap();
        assert_eq!(
            sessions().open(&v, NOW).unwrap().key_name.as_deref(),
            Some("s1")
        );
        // unknown kid, wrong secret, other alg, tampering: all SessionInvalid
        assert_eq!(
            reason(&forge(&good(), "s3", [1; 32])),
            Reason::SessionInvalid
        );
        assert_eq!(
            reason(&forge(&good(), "s1", [9; 32])),
            Reason::SessionInvalid
        );
        assert!(sessions().open(&forge(&good(), "s1", [1; 32]), NOW).is_ok());
        let h = b64::encode(r#"{"alg":"HS512","kid":"s1"}"#);
        assert_eq!(
            reason(&format!("{h}.{}.AAAA", b64::encode("{}"))),
            Reason::SessionInvalid
        );
        let mut tampered = v.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            sessions()
                .open(&String::from_utf8(tampered).unwrap(), NOW)
                .unwrap_err()
                .reason(),
            Reason::SessionInvalid
        );
    }

    #[test]
    fn malformed_values_are_invalid() {
        for v in ["", "x", "a.b.c", "a.b", &"A".repeat(5000)] {
            assert_eq!(reason(v), Reason::SessionInvalid, "{v:.20}");
        }
        let with = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
            let mut c = good();
            f(c.as_object_mut().unwrap());
            forge(&c, "s1", [1; 32])
        };
        // a magic-link audience, no audience, unknown or missing fields, bad types
        assert_eq!(
            reason(&with(&|c| drop(
                c.insert("aud".into(), json!("edgegate-magic"))
            ))),
            Reason::SessionInvalid
        );
        assert_eq!(
            reason(&with(&|c| drop(c.remove("aud")))),
            Reason::SessionInvalid
        );
        assert_eq!(
            reason(&with(&|c| drop(c.insert("admin".into(), json!(true))))),
            Reason::SessionInvalid
        );
        assert_eq!(
            reason(&with(&|c| drop(c.remove("sub")))),
            Reason::SessionInvalid
        );
        assert_eq!(
            reason(&with(&|c| drop(c.insert("sub".into(), json!(""))))),
            Reason::SessionInvalid
        );
        assert_eq!(
            reason(&with(&|c| drop(c.insert("rl".into(), json!("admin"))))),
            Reason::SessionInvalid
        );
        assert_eq!(
            reason(&with(&|c| drop(c.insert("cr".into(), json!("root"))))),
            Reason::SessionInvalid
        );
        assert_eq!(
            reason(&with(&|c| drop(c.insert("exp".into(), json!(NOW - 1))))),
            Reason::SessionInvalid
        );
        assert_eq!(
            reason(&with(&|c| drop(c.insert("iat".into(), json!(NOW + 61))))),
            Reason::SessionInvalid
        );
        // within the skew is fine
        let ok = with(&|c| {
            c.insert("iat".into(), json!(NOW + 60));
            c.insert("exp".into(), json!(NOW + 100));
        });
        assert!(sessions().open(&ok, NOW).is_ok());
        // a magic-link token (right key, wrong kind of token) is not a session
        let magic = crate::magic::MagicLinkConfig {
            issuer: "edgegate".into(),
            keys: vec![key("s1", 1)],
            ttl: Default::default(),
            path: "/auth/magic".into(),
            query_param: "token".into(),
        }
        .compile()
        .unwrap();
        let req = crate::magic::MagicLinkRequest {
            email: Some("a@b.c".into()),
            purpose: Some(crate::magic::Purpose::Login),
            ..Default::default()
        };
        let t = magic.issue(&req, NOW, &[0; 16]).unwrap();
        assert_eq!(reason(&t), Reason::SessionInvalid);
    }

    #[test]
    fn refuses_oversized_sessions() {
        let mut id = identity();
        id.roles = (0..400).map(|i| format!("role-number-{i}")).collect();
        let e = sessions().seal(&id, NOW).unwrap_err();
        assert_eq!(e.reason(), Reason::Internal);
        id.roles.truncate(100);
        let v = sessions().seal(&id, NOW).unwrap();
        assert!(v.len() <= MAX_SESSION_BYTES);
    }

    #[test]
    fn cookie_headers() {
        let s = sessions();
        let h = s.set_cookie_header("abc.def.ghi", NOW);
        assert!(h.starts_with("edgegate_session=abc.def.ghi; "), "{h}");
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=28800",
            "Expires=Wed, 15 Nov 2023 06:13:20 GMT",
        ] {
            assert!(h.split("; ").any(|a| a == attr), "{attr} missing in {h}");
        }
        assert!(!h.contains("Domain"));
        let c = s.clear_cookie_header();
        assert!(c.starts_with("edgegate_session=; "), "{c}");
        assert!(
            c.contains("Max-Age=0") && c.contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
            "{c}"
        );
        assert!(
            c.contains("Path=/") && c.contains("Secure") && c.contains("HttpOnly"),
            "{c}"
        );

        let mut cfg = config();
        cfg.domain = Some(".Example.com".into());
        cfg.path = "/app".into();
        cfg.cookie_name = "sid".into();
        let s = cfg.compile().unwrap();
        let h = s.set_cookie_header("v", NOW);
        assert!(
            h.starts_with("sid=v; ") && h.contains("Domain=example.com") && h.contains("Path=/app"),
            "{h}"
        );
        assert!(s.clear_cookie_header().contains("Domain=example.com"));
    }

    #[test]
    fn finds_cookies_in_request_headers() {
        let h = "a=1; edgegate_session=x.y.z; b=\"q\"; broken; edgegate_session=second";
        assert_eq!(find_cookie(h, "edgegate_session"), Some("x.y.z"));
        assert_eq!(find_cookie(h, "a"), Some("1"));
        assert_eq!(find_cookie(h, "b"), Some("q"));
        assert_eq!(find_cookie(h, "A"), None);
        assert_eq!(find_cookie(h, "edgegate"), None);
        assert_eq!(find_cookie(h, "broken"), None);
        assert_eq!(find_cookie("", "a"), None);
        assert_eq!(find_cookie(";;; ;", "a"), None);
        assert_eq!(find_cookie("a=", "a"), Some(""));
        assert_eq!(find_cookie("  a = 1 ;b=2", "a"), Some("1"));
        assert_eq!(find_cookie("x=%41", "x"), Some("%41"));
        assert_eq!(
            sessions().from_cookie_header("edgegate_session=v1"),
            Some("v1")
        );
    }

    #[test]
    fn config_validation() {
        let mut c = config();
        c.cookie_name = "bad name".into();
        c.lifetime_seconds = 0;
        c.domain = Some("exa mple.com".into());
        c.path = "app".into();
        c.keys.push(key("s1", 7));
        assert_eq!(
            error_paths(&c.compile().unwrap_err()),
            [
                "cookie_name",
                "keys[2].kid",
                "lifetime_seconds",
                "domain",
                "path"
            ]
        );
        let mut c = config();
        c.cookie_name = "__Host-sid".into();
        assert!(c.compile().is_ok());
        c.domain = Some("example.com".into());
        assert_eq!(c.compile().unwrap_err()[0].path(), "cookie_name");
        let mut c = config();
        c.lifetime_seconds = 401 * 86_400;
        assert_eq!(c.compile().unwrap_err()[0].path(), "lifetime_seconds");
        assert!(
            serde_json::from_value::<SessionConfig>(json!({"keys": [], "secure": false})).is_err()
        );
    }

    #[test]
    fn no_secret_in_debug() {
        let c = config();
        assert_debug_hides(c.keys[0].secret.expose(), &[&c, &c.compile().unwrap()]);
    }
}
