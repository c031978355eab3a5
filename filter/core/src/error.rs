//! The core's two error types: one per kind of error.
//!
//! - [`Error`]: a refusal at request time — of a token, a key, a credential or a request — with a
//!   stable [`Reason`] code (what dashboards and logs key on), an HTTP status derived from it and
//!   a short message that is safe to show a client.
//! - [`ConfigError`]: a config field the gateway refuses at load, with the field's path
//!   (`jwt.providers[0].issuer`) and what is wrong; [`ConfigErrors`] is every one of them.
//!
//! Messages never contain a token, a key or a secret: callers build them from static text and
//! from values the operator wrote (issuer URLs, key ids, field names) only.

use std::fmt;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident => $code:literal, )*) => {
        /// Why something was refused. The `code()` strings are a stable interface: they appear in
        /// responses, logs and metric names, so never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Reason {
            $( $(#[$doc])* $name, )*
        }

        impl Reason {
            /// Every reason, for metrics registration and documentation.
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];

            /// The stable snake_case code used in responses, logs and metrics.
            pub fn code(self) -> &'static str {
                match self {
                    $( Reason::$name => $code, )*
                }
            }
        }
    };
}

reasons! {
    // --- token structure (compact JWS) ---
    /// The token is longer than `max_token_bytes`.
    TokenTooLarge => "token_too_large",
    /// Not three dot-separated segments, or an empty segment.
    MalformedToken => "malformed_token",
    /// A segment is not canonical unpadded base64url (padding, `+`, `/`, stray bits, garbage).
    BadBase64 => "bad_base64",
    /// The header is not a JSON object, or has a field of the wrong type.
    MalformedHeader => "malformed_header",
    /// A JSON object in the token names the same member twice.
    DuplicateJsonKey => "duplicate_json_key",
    /// JSON nested deeper than the core accepts.
    JsonTooDeep => "json_too_deep",
    /// `alg: none` (in any casing).
    AlgNone => "alg_none",
    /// An algorithm the core does not implement.
    AlgUnsupported => "alg_unsupported",
    /// An algorithm the provider does not allow.
    AlgNotAllowed => "alg_not_allowed",
    /// The algorithm does not fit the key (e.g. an HMAC token against an RSA key: algorithm confusion).
    AlgKeyMismatch => "alg_key_mismatch",
    /// `jwk`, `jku`, `x5u` or `x5c` in the header: keys an attacker supplies are never trusted.
    UntrustedHeaderKey => "untrusted_header_key",
    /// `crit` names an extension the core does not understand.
    UnsupportedCrit => "unsupported_crit",
    /// `b64: false` (RFC 7797 unencoded payload) is refused.
    UnencodedPayload => "unencoded_payload",
    /// The payload is not a JSON object with claims of the right types.
    MalformedClaims => "malformed_claims",

    // --- keys and signatures ---
    /// The signature has the wrong length or encoding (DER ECDSA, r or s zero).
    BadSignatureFormat => "bad_signature_format",
    /// The signature does not verify.
    BadSignature => "bad_signature",
    /// No key with the token's `kid`.
    UnknownKid => "unknown_kid",
    /// No key fits the token (no `kid` and no single candidate key).
    NoMatchingKey => "no_matching_key",
    /// The provider's key set has not been fetched yet (fail closed).
    KeysUnavailable => "keys_unavailable",
    /// The provider's discovery document names another `issuer` than the one configured
    /// (OIDC Discovery 4.3): the IdP, or the operator's `issuer`, is wrong, never the user.
    /// Nothing the document names is followed.
    ProviderMismatch => "provider_mismatch",
    /// A key in a key set is one no verifier should trust (short RSA modulus, point off curve...).
    WeakKey => "weak_key",
    /// A key set or key could not be parsed.
    MalformedKey => "malformed_key",

    // --- claims ---
    /// No provider is configured for the token's `iss`.
    UnknownIssuer => "unknown_issuer",
    /// `exp` is in the past (beyond the clock skew).
    TokenExpired => "token_expired",
    /// `nbf` is in the future (beyond the clock skew).
    TokenNotYetValid => "token_not_yet_valid",
    /// `iat` is in the future (beyond the clock skew).
    IssuedInFuture => "issued_in_future",
    /// `exp - iat` is longer than the provider allows.
    LifetimeTooLong => "lifetime_too_long",
    /// `aud` does not name one of the provider's audiences.
    WrongAudience => "wrong_audience",
    /// A required claim is absent.
    MissingClaim => "missing_claim",

    // --- API keys ---
    /// Not in the API key format (prefix, alphabet, length).
    ApiKeyMalformed => "api_key_malformed",
    /// The key's checksum does not match: a typo or a scanner's guess.
    ApiKeyChecksum => "api_key_checksum",
    /// No configured key has this hash.
    ApiKeyUnknown => "api_key_unknown",
    /// The key's expiry has passed.
    ApiKeyExpired => "api_key_expired",
    /// `api_keys.remote` is configured but its key list has not arrived yet, or was not
    /// refreshed within `max_stale_seconds`: a key the inline `keys` do not hold cannot be
    /// decided (fail closed, 503).
    ApiKeysUnavailable => "api_keys_unavailable",

    // --- magic links and sessions ---
    /// A magic-link token with a purpose the route does not accept.
    MagicLinkWrongPurpose => "magic_link_wrong_purpose",
    /// A magic-link or API-key scope does not cover the requested path.
    OutOfScope => "out_of_scope",
    /// The session cookie is malformed, badly signed or from an unknown key.
    SessionInvalid => "session_invalid",
    /// The session cookie has expired.
    SessionExpired => "session_expired",
    /// A single-use token (magic link) was already used.
    TokenReplayed => "token_replayed",
    /// A return URL that is not a relative path or an allowed host.
    UnsafeRedirect => "unsafe_redirect",
    /// An OIDC callback or ID token that does not belong to this login attempt: `state`,
    /// `nonce` or `at_hash` mismatch, a provider `error`, a malformed callback.
    LoginMismatch => "login_mismatch",
    /// A request path the gateway refuses to match (encoded `/`, `\`, NUL, `..` above the
    /// root, `//`, `;`...): such paths are how auth gateways get bypassed.
    MalformedPath => "malformed_path",
    /// A method-override carrier (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`,
    /// `_method`) that is malformed, names too many methods, or is refused by
    /// `method_override: "reject"`.
    MethodOverrideRefused => "method_override_refused",
    /// Dev mode is on and the request's `:authority`/`Host` is not loopback: dev mode never
    /// authenticates traffic addressed to another host.
    DevModeNotLocal => "dev_mode_not_local",
    /// The request's headers are over the bounds a host copies (`limits::MAX_HEADER_BYTES` of
    /// names and values, or `limits::MAX_HEADERS` fields): refused whole, never cut.
    HeadersTooLarge => "headers_too_large",
    /// A method the gateway never forwards (`CONNECT`: a tunnel no rule can judge).
    MethodNotAllowed => "method_not_allowed",
    /// A credential's carrier sent twice (two `Authorization` headers, two API-key headers, the
    /// JWT query parameter twice): edgegate would check one while an upstream could read the
    /// other (RFC 6750 §3.1 `invalid_request`).
    RepeatedCredential => "repeated_credential",

    // --- policy ---
    /// The rule needs a credential and none was sent.
    CredentialMissing => "credential_missing",
    /// A credential was sent of a kind the rule does not accept.
    CredentialNotAccepted => "credential_not_accepted",
    /// The identity lacks the roles the rule requires.
    MissingRole => "missing_role",
    /// The identity lacks a permission the rule requires.
    MissingPermission => "missing_permission",
    /// The token lacks an OAuth scope the rule requires.
    MissingScope => "missing_scope",
    /// The rule requires multi-factor authentication (`amr` / `acr`).
    MfaRequired => "mfa_required",

    // --- operator side ---
    /// A config field is wrong; the error carries its path.
    InvalidConfig => "invalid_config",
    /// Something the host should have supplied is missing or broken (internal, fail closed).
    Internal => "internal",
}

impl Reason {
    /// The HTTP status a request refused for this reason gets: 403 when the caller is known but
    /// not allowed, 503 when the gateway cannot decide yet, 500 for internal faults, 401 otherwise.
    pub fn http_status(self) -> u16 {
        use Reason::*;
        match self {
            MissingRole
            | MissingPermission
            | MissingScope
            | MfaRequired
            | OutOfScope
            | MagicLinkWrongPurpose
            | DevModeNotLocal => 403,
            KeysUnavailable | ApiKeysUnavailable => 503,
            ProviderMismatch => 502,
            InvalidConfig | Internal => 500,
            UnsafeRedirect | MalformedPath | MethodOverrideRefused | RepeatedCredential => 400,
            HeadersTooLarge => 431,
            MethodNotAllowed => 405,
            _ => 401,
        }
    }

    /// The RFC 6750 error code for `WWW-Authenticate`.
    fn bearer_error(self) -> Option<&'static str> {
        use Reason::*;
        match self {
            CredentialMissing | DevModeNotLocal => None,
            MissingScope
            | MissingRole
            | MissingPermission
            | MfaRequired
            | OutOfScope
            | MagicLinkWrongPurpose => Some("insufficient_scope"),
            TokenTooLarge
            | MalformedToken
            | MalformedPath
            | MethodOverrideRefused
            | RepeatedCredential => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal at request time: reason and a message that is safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    reason: Reason,
    message: String,
}

impl Error {
    /// A refusal with a message that is safe to show a client (no secrets, no token).
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Error {
            reason,
            message: message.into(),
        }
    }

    /// The 503 of a provider whose keys have not arrived (the wait for them is over): the
    /// one wording every host uses.
    pub fn keys_unavailable() -> Self {
        Error::new(
            Reason::KeysUnavailable,
            "the identity provider's keys are not available yet; retry shortly",
        )
    }

    /// A signature of the right form that the key does not verify: the one wording every
    /// signature backend uses.
    pub fn bad_signature() -> Self {
        Error::new(Reason::BadSignature, "the signature does not verify")
    }

    /// This refusal as a config error at `path`: a key or document in the config that no
    /// request could use (a weak RSA key, a malformed JWK...).
    pub fn at(self, path: &str) -> ConfigError {
        ConfigError::new(path, self.message)
    }

    pub fn reason(&self) -> Reason {
        self.reason
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn http_status(&self) -> u16 {
        self.reason.http_status()
    }

    /// The RFC 6750 `WWW-Authenticate` value for a refused request.
    pub fn www_authenticate(&self, realm: &str) -> String {
        let realm = quote(realm);
        match self.reason.bearer_error() {
            None => format!("Bearer realm=\"{realm}\""),
            Some(code) => format!(
                "Bearer realm=\"{realm}\", error=\"{code}\", error_description=\"{}\"",
                quote(self.reason.code())
            ),
        }
    }
}

/// Keeps a value safe inside an RFC 7230 quoted-string (drops quotes, backslashes, controls).
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.message)
    }
}

impl std::error::Error for Error {}

/// A config field the gateway refuses at load: where (`rules[2].match.path`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error inside `prefix` (`at("rules[2]")` on `match.path`: `rules[2].match.path`).
    pub fn at(mut self, prefix: &str) -> Self {
        self.path = if self.path.is_empty() {
            prefix.to_string()
        } else if self.path.starts_with('[') {
            format!("{prefix}{}", self.path)
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }

    /// The field's path in the config.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Config problems as a section collects them: every one is reported together, not just the
/// first.
pub(crate) trait Problems {
    /// Records `message` at `path` when `wrong`.
    fn refuse_if(&mut self, wrong: bool, path: &str, message: impl Into<String>);
}

impl Problems for Vec<ConfigError> {
    fn refuse_if(&mut self, wrong: bool, path: &str, message: impl Into<String>) {
        if wrong {
            self.push(ConfigError::new(path, message));
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Several config errors, reported together so the operator fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(r
                .code()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(Reason::MissingRole.http_status(), 403);
        assert_eq!(Reason::BadSignature.http_status(), 401);
        assert_eq!(Reason::CredentialMissing.http_status(), 401);
        assert_eq!(Reason::KeysUnavailable.http_status(), 503);
        assert_eq!(Reason::ApiKeysUnavailable.http_status(), 503);
        assert_eq!(Reason::MalformedPath.http_status(), 400);
        assert_eq!(Reason::MalformedPath.code(), "malformed_path");
        assert_eq!(Reason::HeadersTooLarge.http_status(), 431);
        assert_eq!(Reason::MethodNotAllowed.http_status(), 405);
    }

    #[test]
    fn www_authenticate_follows_rfc6750() {
        let e = Error::new(Reason::CredentialMissing, "no credential");
        assert_eq!(e.www_authenticate("desk"), "Bearer realm=\"desk\"");
        let e = Error::new(Reason::TokenExpired, "expired");
        assert_eq!(
            e.www_authenticate("de\"sk"),
            "Bearer realm=\"desk\", error=\"invalid_token\", error_description=\"token_expired\""
        );
        let e = Error::new(Reason::MissingRole, "x");
        assert!(e.www_authenticate("r").contains("insufficient_scope"));
    }

    #[test]
    fn config_paths_nest() {
        let e = ConfigError::new("jwks", "kid \"k2\" appears twice").at("jwt.providers[1]");
        assert_eq!(e.path(), "jwt.providers[1].jwks");
        assert_eq!(
            e.to_string(),
            "jwt.providers[1].jwks: kid \"k2\" appears twice"
        );
        let e = ConfigError::new("[0]", "x").at("rules");
        assert_eq!(e.path(), "rules[0]");
    }
}
