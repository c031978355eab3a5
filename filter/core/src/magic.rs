//! Magic-link tokens: short-lived, signed invitations to log in, join or visit as a guest.
//!
//! # Token format
//!
//! A magic-link token is a compact JWS (a JWT) signed with **HS256** by one of the configured
//! keys, so any JWT library can mint one given a key:
//!
//! Header: `{"alg":"HS256","typ":"JWT","kid":"<kid of a configured key>"}`
//!
//! | claim     | type           | meaning |
//! |-----------|----------------|---------|
//! | `iss`     | string         | the configured `issuer` (default `edgegate`) |
//! | `aud`     | string         | always `edgegate-magic` (or an array containing it), so a magic link can never pass as an API bearer JWT elsewhere |
//! | `sub`     | string         | the subject (optional if `email` is present) |
//! | `email`   | string         | the recipient's address (optional if `sub` is present) |
//! | `purpose` | string         | `login`, `join` or `guest` |
//! | `scope`   | string         | a path prefix starting with `/` the link is limited to; **required** for `guest` |
//! | `target`  | string         | optional return path / URL after login; check it with [`crate::redirect::RedirectPolicy`] |
//! | `exp`     | number         | expiry, Unix seconds (a NumericDate: fractions kept, at most 2^53) |
//! | `iat`     | number         | issue time, Unix seconds |
//! | `jti`     | string         | unique id (1-128 characters); the host remembers it until `exp` to make the link single-use |
//! | `nbf`     | number         | optional; honoured if present |
//!
//! At least one of `sub` and `email` is required; without `sub` the identity's subject is the
//! email address. Other claims are ignored.
//!
//! # Lifetimes
//!
//! Per purpose, a default lifetime (used when `issue` is given no `ttl`) and a maximum. The
//! maximum also binds tokens minted elsewhere: a token whose `exp - iat` exceeds it is refused.
//!
//! | purpose | default  | maximum |
//! |---------|----------|---------|
//! | login   | 10 min   | 1 h     |
//! | join    | 72 h     | 7 days  |
//! | guest   | 72 h     | 30 days |
//!
//! # Single use
//!
//! Verification is stateless. Making a link single-use is the host's job: it remembers the
//! returned `jti` until `expires_at` and refuses a second use (`TokenReplayed`).
//!
//! # Config
//!
//! ```yaml
//! magic_links:
//!   issuer: edgegate               # default
//!   keys:                          # first signs, all verify
//!     - { kid: m2, secret: <base64url, >= 32 bytes> }
//!     - { kid: m1, secret: <base64url, >= 32 bytes> }
//!   ttl:
//!     login: { default_seconds: 600, max_seconds: 3600 }   # these are the defaults
//!   path: /auth/magic              # default
//!   query_param: token             # default
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::b64;
use crate::credential::{Audience, Fault, TimeWindow, WindowRules, OWN_TOKEN_SKEW_SECONDS};
use crate::error::{ConfigError, Error, Problems, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::keyring::{HmacKeyConfig, KeyRing};
use crate::UnixTime;

/// The fixed audience of every magic-link token.
pub const AUDIENCE: &str = "edgegate-magic";
/// How far in the future `iat` (and `nbf`) may be, for clock skew between minter and verifier.
pub const CLOCK_SKEW_SECONDS: u64 = OWN_TOKEN_SKEW_SECONDS;
/// The time claims of a magic link: `exp` without leeway (a link is refused from that second),
/// `iat` required, `nbf` honoured, both with [`CLOCK_SKEW_SECONDS`].
const WINDOW: WindowRules = WindowRules {
    exp_skew: 0,
    skew: CLOCK_SKEW_SECONDS,
    iat_required: true,
    check_nbf: true,
};
/// Upper bound on a magic-link token's length.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

const MAX_EMAIL: usize = 254;
const MAX_SUB: usize = 255;
const MAX_SCOPE: usize = 1024;
const MAX_TARGET: usize = 2048;
const MAX_JTI: usize = 128;

/// What a magic link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Log an existing user in.
    Login,
    /// Accept an invitation (first login of a new user).
    Join,
    /// Time-limited access to one path prefix (`scope`), without an account.
    Guest,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Purpose::Login, Purpose::Join, Purpose::Guest];

    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::Join => "join",
            Purpose::Guest => "guest",
        }
    }

    fn parse(s: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Lifetime limits of one purpose, in seconds.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TtlConfig {
    /// Lifetime of links issued without an explicit ttl. Default: login 600, join 259200,
    /// guest 259200.
    pub default_seconds: Option<u64>,
    /// Longest lifetime accepted, at issue and at verification (`exp - iat`). Default: login
    /// 3600, join 604800, guest 2592000.
    pub max_seconds: Option<u64>,
}

/// Lifetime limits per purpose.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PurposeTtls {
    /// `login` links: default 10 minutes, maximum 1 hour.
    #[serde(default)]
    pub login: TtlConfig,
    /// `join` links: default 72 hours, maximum 7 days.
    #[serde(default)]
    pub join: TtlConfig,
    /// `guest` links: default 72 hours, maximum 30 days.
    #[serde(default)]
    pub guest: TtlConfig,
}

/// The `magic_links` config section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MagicLinkConfig {
    /// The `iss` of issued tokens, required of verified ones. Default `edgegate`.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// HS256 keys: the first signs, all verify (rotation). Secrets are unpadded base64url of
    /// at least 32 random bytes.
    pub keys: Vec<HmacKeyConfig>,
    /// Lifetime defaults and limits per purpose.
    #[serde(default)]
    pub ttl: PurposeTtls,
    /// The path that consumes magic links. Default `/auth/magic`.
    #[serde(default = "default_path")]
    pub path: String,
    /// The query parameter carrying the token. Default `token`.
    #[serde(default = "default_query_param")]
    pub query_param: String,
}

crate::config::string_defaults! {
    default_issuer => "edgegate",
    default_path => "/auth/magic",
    default_query_param => "token",
}

/// A request to issue a magic link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MagicLinkRequest {
    pub email: Option<String>,
    pub sub: Option<String>,
    pub purpose: Option<Purpose>,
    /// Path prefix the link is limited to (required for guest links).
    pub path_scope: Option<String>,
    /// Where to go after login.
    pub target: Option<String>,
    /// Lifetime in seconds; default per purpose, at most the purpose's maximum.
    pub ttl: Option<u64>,
}

/// A verified magic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagicLink {
    pub identity: Identity,
    pub purpose: Purpose,
    /// Remember this until `expires_at` to make the link single-use.
    pub jti: String,
    pub expires_at: UnixTime,
    pub path_scope: Option<String>,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ttl {
    default: u64,
    max: u64,
}

/// The compiled magic-link section.
#[derive(Debug, Clone)]
pub struct MagicLinks {
    issuer: String,
    ring: KeyRing,
    login: Ttl,
    join: Ttl,
    guest: Ttl,
    path: String,
    query_param: String,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'static str,
    sub: Option<&'a str>,
    email: Option<&'a str>,
    purpose: &'static str,
    #[serde(rename = "scope")]
    path_scope: Option<&'a str>,
    target: Option<&'a str>,
    exp: u64,
    iat: u64,
    jti: &'a str,
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn valid_email(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EMAIL
        && s.contains('@')
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn valid_scope(s: &str) -> bool {
    s.starts_with('/')
        && s.len() <= MAX_SCOPE
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

impl MagicLinkConfig {
    /// Validates the section. All problems are reported together.
    pub fn compile(&self) -> Result<MagicLinks, Vec<ConfigError>> {
        let mut errors = Vec::new();
        errors.refuse_if(
            self.issuer.is_empty() || self.issuer.len() > 256 || !printable(&self.issuer),
            "issuer",
            "the issuer is 1-256 printable characters",
        );
        let ring = KeyRing::compile(&self.keys)
            .map_err(|e| errors.extend(e))
            .ok();
        let mut ttl = |name: &str, c: &TtlConfig, default: u64, max: u64| {
            let t = Ttl {
                default: c.default_seconds.unwrap_or(default),
                max: c.max_seconds.unwrap_or(max),
            };
            if t.max == 0 {
                errors.push(ConfigError::new(
                    format!("ttl.{name}.max_seconds"),
                    "must be at least 1",
                ));
            }
            if t.default == 0 || t.default > t.max {
                errors.push(ConfigError::new(
                    format!("ttl.{name}.default_seconds"),
                    format!("must be between 1 and max_seconds ({})", t.max),
                ));
            }
            t
        };
        let login = ttl("login", &self.ttl.login, 600, 3600);
        let join = ttl("join", &self.ttl.join, 72 * 3600, 7 * 86400);
        let guest = ttl("guest", &self.ttl.guest, 72 * 3600, 30 * 86400);
        if !self.path.starts_with('/')
            || self.path.starts_with("//")
            || self.path.contains(['?', '#'])
            || self
                .path
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            errors.push(ConfigError::new(
                "path",
                "a path starts with a single `/` and has no query, fragment or whitespace",
            ));
        }
        errors.refuse_if(
            self.query_param.is_empty()
                || !self
                    .query_param
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)),
            "query_param",
            "a query parameter name is 1+ of A-Z a-z 0-9 _ - .",
        );
        match ring {
            Some(ring) if errors.is_empty() => Ok(MagicLinks {
                issuer: self.issuer.clone(),
                ring,
                login,
                join,
                guest,
                path: self.path.clone(),
                query_param: self.query_param.clone(),
            }),
            _ => Err(errors),
        }
    }
}

fn claim_error(reason: Reason, msg: &str) -> Error {
    Error::new(reason, msg.to_string())
}

/// The claim `purpose`: login, join or guest.
fn purpose_of(claims: &Map<String, Value>) -> Result<Purpose, Error> {
    match claims.get("purpose") {
        None => Err(claim_error(
            Reason::MissingClaim,
            "the claim `purpose` is required",
        )),
        Some(Value::String(p)) => Purpose::parse(p).ok_or_else(|| {
            claim_error(
                Reason::MalformedClaims,
                "the claim `purpose` is not login, join or guest",
            )
        }),
        Some(_) => Err(claim_error(
            Reason::MalformedClaims,
            "the claim `purpose` is not a string",
        )),
    }
}

/// Refuses an optional claim that is there but fails `valid`.
fn well_formed(claim: Option<&str>, valid: fn(&str) -> bool, not: &str) -> Result<(), Error> {
    match claim {
        Some(c) if !valid(c) => Err(claim_error(Reason::MalformedClaims, not)),
        _ => Ok(()),
    }
}

/// Who the link is for: `sub`, else `email` (which must be an address); and the email.
fn subject_of(claims: &Map<String, Value>) -> Result<(&str, Option<&str>), Error> {
    let sub = opt_str(claims, "sub", MAX_SUB)?;
    let email = opt_str(claims, "email", MAX_EMAIL)?;
    well_formed(
        email,
        valid_email,
        "the claim `email` is not an email address",
    )?;
    let subject = sub.or(email).ok_or_else(|| {
        claim_error(
            Reason::MissingClaim,
            "the magic link names no `sub` or `email`",
        )
    })?;
    Ok((subject, email))
}

/// The claim `scope`: a path prefix, required for guest links.
fn scope_of(claims: &Map<String, Value>, purpose: Purpose) -> Result<Option<&str>, Error> {
    let scope = opt_str(claims, "scope", MAX_SCOPE)?;
    well_formed(scope, valid_scope, "the claim `scope` is not a path prefix")?;
    if purpose == Purpose::Guest && scope.is_none() {
        return Err(claim_error(
            Reason::MissingClaim,
            "a guest link needs a `scope`",
        ));
    }
    Ok(scope)
}

fn opt_str<'m>(
    claims: &'m Map<String, Value>,
    name: &str,
    max: usize,
) -> Result<Option<&'m str>, Error> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= max && printable(s) => Ok(Some(s)),
        Some(_) => Err(Error::new(
            Reason::MalformedClaims,
            format!("the claim `{name}` is not a non-empty string of at most {max} bytes"),
        )),
    }
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, Error> {
    v.ok_or_else(|| missing_claim(name))
}

fn missing_claim(name: &str) -> Error {
    Error::new(
        Reason::MissingClaim,
        format!("the claim `{name}` is required"),
    )
}

impl MagicLinks {
    fn ttl(&self, p: Purpose) -> Ttl {
        match p {
            Purpose::Login => self.login,
            Purpose::Join => self.join,
            Purpose::Guest => self.guest,
        }
    }

    /// The path that consumes magic links.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query parameter carrying the token.
    pub fn query_param(&self) -> &str {
        &self.query_param
    }

    /// `<path>?<query_param>=<token>`: the path and query of the link to send. (Tokens are
    /// base64url and dots, so they need no escaping.)
    pub fn link_path(&self, token: &str) -> String {
        format!("{}?{}={token}", self.path, self.query_param)
    }

    /// Issues a token. `jti` are 16 random bytes from the caller (the core has no randomness);
    /// they become the token's `jti` as base64url.
    ///
    /// Errors are config-style (`InvalidConfig` with the request field as path): no `sub` or
    /// `email`, no purpose, a guest link without scope, a ttl of 0 or above the purpose's max.
    pub fn issue(
        &self,
        req: &MagicLinkRequest,
        now: UnixTime,
        jti: &[u8; 16],
    ) -> Result<String, ConfigError> {
        let purpose = req
            .purpose
            .ok_or_else(|| ConfigError::new("purpose", "choose login, join or guest"))?;
        if req.sub.is_none() && req.email.is_none() {
            return Err(ConfigError::new(
                "email",
                "a magic link needs an email or a sub",
            ));
        }
        if let Some(e) = &req.email {
            if !valid_email(e) {
                return Err(ConfigError::new("email", "not an email address"));
            }
        }
        if let Some(s) = &req.sub {
            if s.is_empty() || s.len() > MAX_SUB || !printable(s) {
                return Err(ConfigError::new(
                    "sub",
                    "a sub is 1-255 printable characters",
                ));
            }
        }
        match &req.path_scope {
            Some(s) if !valid_scope(s) => {
                return Err(ConfigError::new(
                    "scope",
                    "a scope is a path prefix starting with `/`",
                ))
            }
            None if purpose == Purpose::Guest => {
                return Err(ConfigError::new(
                    "scope",
                    "a guest link needs a scope (a path prefix)",
                ))
            }
            _ => {}
        }
        if let Some(t) = &req.target {
            if t.is_empty()
                || t.len() > MAX_TARGET
                || t.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(ConfigError::new(
                    "target",
                    "a target is a path or URL without whitespace",
                ));
            }
        }
        let limits = self.ttl(purpose);
        let ttl = req.ttl.unwrap_or(limits.default);
        if ttl == 0 || ttl > limits.max {
            return Err(ConfigError::new(
                "ttl",
                format!(
                    "a {} link lives 1 to {} seconds (ttl.{}.max_seconds)",
                    purpose.as_str(),
                    limits.max,
                    purpose.as_str()
                ),
            ));
        }
        let exp = now
            .checked_add(ttl)
            .ok_or_else(|| ConfigError::new("ttl", "the expiry overflows"))?;
        let jti = b64::encode(jti);
        let claims = Claims {
            iss: &self.issuer,
            aud: AUDIENCE,
            sub: req.sub.as_deref(),
            email: req.email.as_deref(),
            purpose: purpose.as_str(),
            path_scope: req.path_scope.as_deref(),
            target: req.target.as_deref(),
            exp,
            iat: now,
            jti: &jti,
        };
        let json = serde_json::to_vec(&claims)
            .map_err(|_| ConfigError::new("", "could not encode the magic-link claims"))?;
        self.ring.sign(&json).map_err(|e| e.at(""))
    }

    /// Verifies a token: structure, `alg` HS256, `kid`, signature, then `iss`, `aud`, `exp`,
    /// `nbf`, `iat` (at most 60 s in the future), lifetime (`exp - iat` within the purpose's
    /// maximum), purpose, subject and scope. `exp` has no leeway: a link is refused from that
    /// second on.
    pub fn verify(&self, token: &str, now: UnixTime) -> Result<MagicLink, Error> {
        let (jws, kid) = self.ring.verify(token, MAX_TOKEN_BYTES)?;
        let claims = jws.claims()?;
        self.check_issuer_and_audience(&claims)?;
        let window = TimeWindow::check(&claims, now as f64, &WINDOW, |fault| match fault {
            Fault::Missing(name) => missing_claim(name),
            Fault::Expired => claim_error(fault.reason(), "the magic link has expired"),
            Fault::IssuedInFuture => {
                claim_error(fault.reason(), "the magic link is issued in the future")
            }
            Fault::NotYetValid => claim_error(fault.reason(), "the magic link is not valid yet"),
        })?;
        let purpose = purpose_of(&claims)?;
        self.check_lifetime(purpose, window.lifetime().unwrap_or(0.0))?;
        let exp = window.exp;
        let (subject, email) = subject_of(&claims)?;
        let scope = scope_of(&claims, purpose)?;
        let target = opt_str(&claims, "target", MAX_TARGET)?;
        let jti = required(opt_str(&claims, "jti", MAX_JTI)?, "jti")?;

        let mut identity = Identity::new(subject, CredentialKind::MagicLink, "magic_link");
        identity.email = email.map(str::to_string);
        identity.key_name = Some(kid.to_string());
        identity.expires_at = Some(exp.floor_secs());
        identity.path_scope = scope.map(str::to_string);
        Ok(MagicLink {
            identity,
            purpose,
            jti: jti.to_string(),
            // Remembered at least until the link expires (rounded up).
            expires_at: exp.ceil_secs(),
            path_scope: scope.map(str::to_string),
            target: target.map(str::to_string),
        })
    }

    /// `iss` is the configured issuer, `aud` names [`AUDIENCE`].
    fn check_issuer_and_audience(&self, claims: &Map<String, Value>) -> Result<(), Error> {
        match claims.get("iss") {
            None => {
                return Err(claim_error(
                    Reason::MissingClaim,
                    "the claim `iss` is required",
                ))
            }
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(_) => {
                return Err(claim_error(
                    Reason::UnknownIssuer,
                    "the magic link's issuer is not the configured one",
                ))
            }
        }
        match Audience::of(claims) {
            Audience::Missing => Err(claim_error(
                Reason::MissingClaim,
                "the claim `aud` is required",
            )),
            Audience::NotStrings => Err(claim_error(
                Reason::MalformedClaims,
                "the claim `aud` is not a string",
            )),
            aud if !aud.matches(&[AUDIENCE]) => Err(Error::new(
                Reason::WrongAudience,
                format!("a magic-link token's aud is `{AUDIENCE}`"),
            )),
            Audience::Names(_) => Ok(()),
        }
    }

    /// A link lives a positive time, at most its purpose's maximum.
    fn check_lifetime(&self, purpose: Purpose, life: f64) -> Result<(), Error> {
        let max = self.ttl(purpose).max;
        if life <= 0.0 {
            return Err(claim_error(
                Reason::MalformedClaims,
                "the magic link expires before it is issued",
            ));
        }
        if life > max as f64 {
            return Err(Error::new(
                Reason::LifetimeTooLong,
                format!("a {} link may live at most {max} seconds", purpose.as_str()),
            ));
        }
        Ok(())
    }

    /// [`verify`](Self::verify), then requires the purpose to be one of `accepted`
    /// (else `MagicLinkWrongPurpose`).
    pub fn verify_for(
        &self,
        token: &str,
        now: UnixTime,
        accepted: &[Purpose],
    ) -> Result<MagicLink, Error> {
        let link = self.verify(token, now)?;
        if accepted.contains(&link.purpose) {
            Ok(link)
        } else {
            Err(Error::new(
                Reason::MagicLinkWrongPurpose,
                format!("a {} link is not accepted here", link.purpose.as_str()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::tests::key;
    use crate::test_support::{assert_debug_hides, error_paths};
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    const NOW: u64 = 1_700_000_000;
    const JTI: [u8; 16] = [42; 16];

    fn config() -> MagicLinkConfig {
        serde_json::from_value(serde_json::json!({
            "keys": [{"kid": "m2", "secret": b64::encode([2u8; 32])},
                     {"kid": "m1", "secret": b64::encode([1u8; 32])}]
        }))
        .unwrap()
    }

    fn links() -> MagicLinks {
        config().compile().unwrap()
    }

    fn req(purpose: Purpose) -> MagicLinkRequest {
        MagicLinkRequest {
            email: Some("ana@example.com".into()),
            purpose: Some(purpose),
            ..Default::default()
        }
    }

    /// Signs arbitrary claims with key `m1` ([1; 32]) independently of `KeyRing::sign`.
    fn forge(header: &str, claims: &Value, secret: &[u8]) -> String {
        let si = format!(
            "{}.{}",
            b64::encode(header),
            b64::encode(claims.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(si.as_bytes());
        format!("{si}.{}", b64::encode(mac.finalize().into_bytes()))
    }

    fn good_claims() -> Value {
        serde_json::json!({
            "iss": "edgegate", "aud": "edgegate-magic", "email": "ana@example.com",
            "purpose": "login", "exp": NOW + 600, "iat": NOW, "jti": "abc"
        })
    }

    fn with(f: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut c = good_claims();
        f(c.as_object_mut().unwrap());
        forge(r#"{"alg":"HS256","typ":"JWT","kid":"m1"}"#, &c, &[1; 32])
    }

    fn reason(token: &str) -> Reason {
        links().verify(token, NOW).unwrap_err().reason()
    }

    #[test]
    fn issue_then_verify_round_trips() {
        let l = links();
        let mut r = req(Purpose::Guest);
        r.sub = Some("user-7".into());
        r.path_scope = Some("/tickets/TRK-1".into());
        r.target = Some("/tickets/TRK-1?tab=notes".into());
        let t = l.issue(&r, NOW, &JTI).unwrap();
        assert!(t.starts_with(&b64::encode(r#"{"alg":"HS256","typ":"JWT","kid":"m2"}"#)));
        let m = l.verify(&t, NOW + 10).unwrap();
        assert_eq!(m.purpose, Purpose::Guest);
        assert_eq!(m.jti, b64::encode(JTI));
        assert_eq!(m.expires_at, NOW + 72 * 3600);
        assert_eq!(m.path_scope.as_deref(), Some("/tickets/TRK-1"));
        assert_eq!(m.target.as_deref(), Some("/tickets/TRK-1?tab=notes"));
        let id = &m.identity;
        assert_eq!(id.subject, "user-7");
        assert_eq!(id.email.as_deref(), Some("ana@example.com"));
        assert_eq!(id.credential, CredentialKind::MagicLink);
        assert_eq!(id.provider, "magic_link");
        assert_eq!(id.key_name.as_deref(), Some("m2"));
        assert_eq!(id.expires_at, Some(NOW + 72 * 3600));
        assert_eq!(id.path_scope.as_deref(), Some("/tickets/TRK-1"));
        // email-only: subject is the email
        let t = l.issue(&req(Purpose::Login), NOW, &JTI).unwrap();
        let m = l.verify(&t, NOW).unwrap();
        assert_eq!(m.identity.subject, "ana@example.com");
        assert_eq!(m.expires_at, NOW + 600);
        assert_eq!(m.identity.path_scope, None);
        assert_eq!(l.link_path(&t), format!("/auth/magic?token={t}"));
    }

    #[test]
    fn old_key_still_verifies_after_rotation() {
        // signed by m1 (now second in the list)
        let t = with(|_| {});
        assert_eq!(
            links()
                .verify(&t, NOW)
                .unwrap()
                .identity
                .key_name
                .as_deref(),
            Some("m1")
        );
    }

    #[test]
    fn default_and_max_ttls_per_purpose() {
        let l = links();
        for (p, default, max) in [
            (Purpose::Login, 600, 3600),
            (Purpose::Join, 259_200, 604_800),
            (Purpose::Guest, 259_200, 2_592_000),
        ] {
            let mut r = req(p);
            r.path_scope = Some("/g/".into());
            let m = l.verify(&l.issue(&r, NOW, &JTI).unwrap(), NOW).unwrap();
            assert_eq!(m.expires_at - NOW, default, "{p:?}");
            r.ttl = Some(max);
            assert!(l.issue(&r, NOW, &JTI).is_ok());
            r.ttl = Some(max + 1);
            let e = l.issue(&r, NOW, &JTI).unwrap_err();
            assert_eq!(e.path(), "ttl");
            r.ttl = Some(0);
            assert_eq!(l.issue(&r, NOW, &JTI).unwrap_err().path(), "ttl");
        }
        let e = l
            .issue(&req(Purpose::Login), u64::MAX - 1, &JTI)
            .unwrap_err();
        assert_eq!(e.path(), "ttl");
    }

    #[test]
    fn issue_refuses_incomplete_requests() {
        let l = links();
        let path = |r: MagicLinkRequest| l.issue(&r, NOW, &JTI).unwrap_err().path().to_string();
        // A login request with one field changed, and the field the refusal names.
        type Edit = fn(&mut MagicLinkRequest);
        let login_but: [(Edit, &str); 7] = [
            (|r| r.email = None, "email"),
            (|r| r.purpose = None, "purpose"),
            (|r| r.purpose = Some(Purpose::Guest), "scope"),
            (|r| r.path_scope = Some("tickets".into()), "scope"),
            (|r| r.email = Some("nope".into()), "email"),
            (|r| r.sub = Some(String::new()), "sub"),
            (|r| r.target = Some("/a b".into()), "target"),
        ];
        for (edit, want) in login_but {
            let mut r = req(Purpose::Login);
            edit(&mut r);
            assert_eq!(path(r), want);
        }
    }

    #[test]
    fn every_claim_rejection_has_its_reason() {
        use serde_json::json;
        let set = |k: &str, v: Value| with(|c| drop(c.insert(k.into(), v)));
        let unset = |k: &str| with(|c| drop(c.remove(k)));
        assert!(links().verify(&with(|_| {}), NOW).is_ok());
        assert_eq!(reason(&set("iss", json!("other"))), Reason::UnknownIssuer);
        assert_eq!(reason(&unset("iss")), Reason::MissingClaim);
        assert_eq!(
            reason(&set("aud", json!("edgegate-session"))),
            Reason::WrongAudience
        );
        assert_eq!(reason(&set("aud", json!(["api"]))), Reason::WrongAudience);
        assert!(links()
            .verify(&set("aud", json!(["x", AUDIENCE])), NOW)
            .is_ok());
        assert_eq!(reason(&set("aud", json!(5))), Reason::MalformedClaims);
        assert_eq!(reason(&unset("aud")), Reason::MissingClaim);
        assert_eq!(reason(&set("exp", json!(NOW))), Reason::TokenExpired);
        assert_eq!(reason(&unset("exp")), Reason::MissingClaim);
        // One NumericDate parser (claims.rs): fractions are compared, not truncated; 2^53 is
        // the bound.
        assert_eq!(reason(&set("exp", json!(1.5e9))), Reason::TokenExpired);
        assert!(links()
            .verify(&set("exp", json!(NOW as f64 + 0.5)), NOW)
            .is_ok());
        assert_eq!(
            links()
                .verify(&set("exp", json!(NOW as f64 + 0.5)), NOW)
                .unwrap()
                .expires_at,
            NOW + 1
        );
        assert_eq!(reason(&set("exp", json!(1e300))), Reason::MalformedClaims);
        assert_eq!(
            reason(&set("exp", json!((1u64 << 53) + 1))),
            Reason::MalformedClaims
        );
        assert_eq!(
            reason(&set("nbf", json!(NOW as f64 + 60.5))),
            Reason::TokenNotYetValid
        );
        assert_eq!(reason(&set("exp", json!("soon"))), Reason::MalformedClaims);
        assert_eq!(reason(&set("exp", json!(-1))), Reason::MalformedClaims);
        assert_eq!(reason(&unset("iat")), Reason::MissingClaim);
        // iat within the skew is fine, beyond it is not
        assert!(links().verify(&set("iat", json!(NOW + 60)), NOW).is_ok());
        assert_eq!(reason(&set("iat", json!(NOW + 61))), Reason::IssuedInFuture);
        assert!(links().verify(&set("nbf", json!(NOW + 60)), NOW).is_ok());
        assert_eq!(
            reason(&set("nbf", json!(NOW + 61))),
            Reason::TokenNotYetValid
        );
        let backwards = with(|c| {
            c.insert("iat".into(), json!(NOW + 30));
            c.insert("exp".into(), json!(NOW + 20));
        });
        assert_eq!(reason(&backwards), Reason::MalformedClaims);
        // a login link claiming to live 1 h + 1 s; the same lifetime is fine for a join link
        assert_eq!(
            reason(&set("exp", json!(NOW + 3601))),
            Reason::LifetimeTooLong
        );
        let join = with(|c| {
            c.insert("exp".into(), json!(NOW + 3601));
            c.insert("purpose".into(), json!("join"));
        });
        assert!(links().verify(&join, NOW).is_ok());
        assert_eq!(
            reason(&set("purpose", json!("admin"))),
            Reason::MalformedClaims
        );
        assert_eq!(
            reason(&set("purpose", json!("Login"))),
            Reason::MalformedClaims
        );
        assert_eq!(reason(&set("purpose", json!(1))), Reason::MalformedClaims);
        assert_eq!(reason(&unset("purpose")), Reason::MissingClaim);
        assert_eq!(reason(&unset("email")), Reason::MissingClaim);
        assert_eq!(
            reason(&set("email", json!("no-at-sign"))),
            Reason::MalformedClaims
        );
        assert_eq!(reason(&set("sub", json!(""))), Reason::MalformedClaims);
        assert_eq!(reason(&set("sub", json!(["a"]))), Reason::MalformedClaims);
        assert_eq!(
            reason(&set("purpose", json!("guest"))),
            Reason::MissingClaim
        );
        let bad_scope = with(|c| {
            c.insert("purpose".into(), json!("guest"));
            c.insert("scope".into(), json!("tickets"));
        });
        assert_eq!(reason(&bad_scope), Reason::MalformedClaims);
        assert_eq!(reason(&unset("jti")), Reason::MissingClaim);
        assert_eq!(
            reason(&set("jti", json!("x".repeat(129)))),
            Reason::MalformedClaims
        );
    }

    #[test]
    fn header_and_signature_rejections() {
        let c = good_claims();
        // (header, signing secret, reason)
        let cases = [
            // alg
            (
                r#"{"alg":"HS384","kid":"m1"}"#,
                [1; 32],
                Reason::AlgNotAllowed,
            ),
            (r#"{"alg":"none","kid":"m1"}"#, [1; 32], Reason::AlgNone),
            // kid
            (r#"{"alg":"HS256","kid":"m9"}"#, [1; 32], Reason::UnknownKid),
            (r#"{"alg":"HS256"}"#, [1; 32], Reason::UnknownKid),
            // right kid, wrong secret; and a key that belongs to the other kid
            (
                r#"{"alg":"HS256","kid":"m1"}"#,
                [3; 32],
                Reason::BadSignature,
            ),
            (
                r#"{"alg":"HS256","kid":"m1"}"#,
                [2; 32],
                Reason::BadSignature,
            ),
        ];
        for (header, secret, want) in cases {
            assert_eq!(reason(&forge(header, &c, &secret)), want, "{header}");
        }
        // a tampered payload under a valid signature
        let t = with(|_| {});
        let parts: Vec<&str> = t.split('.').collect();
        let evil = b64::encode(good_claims().to_string().replace("ana@", "eve@"));
        assert_eq!(
            reason(&format!("{}.{evil}.{}", parts[0], parts[2])),
            Reason::BadSignature
        );
        // structure
        assert_eq!(reason("not-a-token"), Reason::MalformedToken);
        assert_eq!(
            reason(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Reason::TokenTooLarge
        );
        // duplicate claim names are refused even under a valid signature
        let si = format!(
            "{}.{}",
            b64::encode(r#"{"alg":"HS256","kid":"m1"}"#),
            b64::encode(r#"{"purpose":"login","purpose":"guest"}"#)
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&[1; 32]).unwrap();
        mac.update(si.as_bytes());
        let dup = format!("{si}.{}", b64::encode(mac.finalize().into_bytes()));
        assert_eq!(reason(&dup), Reason::DuplicateJsonKey);
    }

    #[test]
    fn wrong_purpose_for_the_route() {
        let l = links();
        let t = l.issue(&req(Purpose::Join), NOW, &JTI).unwrap();
        assert!(l
            .verify_for(&t, NOW, &[Purpose::Join, Purpose::Login])
            .is_ok());
        let e = l.verify_for(&t, NOW, &[Purpose::Login]).unwrap_err();
        assert_eq!(e.reason(), Reason::MagicLinkWrongPurpose);
        assert_eq!(e.http_status(), 403);
    }

    #[test]
    fn config_validation() {
        let mut c = config();
        c.issuer = String::new();
        c.ttl.login.default_seconds = Some(7200);
        c.ttl.join.max_seconds = Some(0);
        c.path = "//evil".into();
        c.query_param = "to ken".into();
        c.keys.push(key("m1", 5));
        assert_eq!(
            error_paths(&c.compile().unwrap_err()),
            [
                "issuer",
                "keys[2].kid",
                "ttl.login.default_seconds",
                "ttl.join.max_seconds",
                "ttl.join.default_seconds",
                "path",
                "query_param"
            ]
        );
        let defaults = links();
        assert_eq!(defaults.path(), "/auth/magic");
        assert_eq!(defaults.query_param(), "token");
        // unknown fields are refused
        assert!(serde_json::from_value::<MagicLinkConfig>(
            serde_json::json!({"keys": [], "lifetime": 5})
        )
        .is_err());
    }

    #[test]
    fn no_secret_in_debug() {
        let c = config();
        assert_debug_hides(c.keys[0].secret.expose(), &[&c, &c.compile().unwrap()]);
    }
}
