//! Checking a JWT against a provider: issuer, algorithm, key, signature, then claims.
//!
//! Order matters and is fixed: structure (in [`crate::jws`]) → issuer → algorithm allowed →
//! key selection (with the alg/key family check that stops algorithm confusion) → signature
//! format → signature → time claims → audience → lifetime → required claims → claim mapping.
//! Nothing from the payload is trusted before the signature step passes, except `iss` (and `tid`
//! for a multi-tenant issuer template), which only choose which provider's keys to try.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::alg::Alg;
use crate::backend::{
    check_signature_format, host_verifies, NativeBackend, SignatureBackend, SignatureCheck,
};
use crate::claims::{ClaimMapping, ClaimsConfig, NumericDate};
use crate::credential::{Audience, Fault, TimeWindow, WindowRules};
use crate::error::{ConfigError, Error, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::jwk::{self, Jwk, KeySet};
use crate::jwks::{CompiledJwksSource, JwksSource};
use crate::jws;
use crate::UnixTime;

/// One JWT issuer: where its keys come from and what its tokens must look like.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProviderConfig {
    /// A short name for logs, metrics and identity headers (e.g. `keycloak`).
    pub name: String,
    /// The exact `iss` value of this provider's tokens. A multi-tenant issuer (Microsoft Entra ID's
    /// `common`/`organizations` endpoints) is the template
    /// `https://login.microsoftonline.com/{tenantid}/v2.0`: a token's `iss` must then equal it with
    /// `{tenantid}` replaced by the token's `tid` claim, a tenant of `allowed_tenants`.
    pub issuer: String,
    /// With a `{tenantid}` issuer template (and only then, where it is required): the tenant ids
    /// whose tokens are accepted, or `["*"]` for any tenant (every Entra ID tenant in the world can
    /// then sign users in: check `roles` or `tid` in the rules; logged loudly at load).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tenants: Vec<String>,
    /// Accepted `aud` values; the token's `aud` (string or array) must contain one. Empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Algorithms this provider's tokens may use. Default: the preset's, else `["RS256"]`
    /// (`["HS256"]` with only `shared_secrets`). Allowing one that no inline key can verify is a
    /// load-time warning (a remote key set changes), not an error. Two providers may share an
    /// issuer when these sets do not overlap: a token goes to the provider of its `iss` that
    /// allows its `alg`.
    #[serde(default)]
    pub algorithms: Vec<Alg>,
    /// An inline JWKS (`{"keys": [...]}`), for keys that do not rotate or for tests.
    pub jwks: Option<Value>,
    /// A remote JWKS: a `jwks_uri` or an OIDC issuer to discover it from, and how to refresh it.
    pub remote_jwks: Option<JwksSource>,
    /// Shared HMAC secrets (HS256/384/512), base64url, at least 32 bytes each.
    #[serde(default)]
    pub shared_secrets: Vec<SharedSecret>,
    /// Allowed clock difference for `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// The longest `exp - iat` accepted, in seconds. Unset: no limit.
    pub max_lifetime_seconds: Option<u64>,
    /// Claims that must be present (in addition to `exp`, always required, and `sub`).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Where roles, permissions, email... are read from; presets fill in per-IdP defaults.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// Forward this provider's tokens upstream unchanged (in the `Authorization` header,
    /// `jwt.from.header` or `jwt.from.cookie` they came in). Default false: the token edgegate
    /// checked stays at the edge, as Envoy `jwt_authn`'s `forward: false`; the upstream gets the
    /// identity headers. edgegate's own cookies are removed either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward: bool,
}

/// A shared secret for HMAC-signed JWTs.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SharedSecret {
    /// Key id; needed when a provider has several secrets (rotation).
    pub kid: Option<String>,
    /// The secret, unpadded base64url, at least 32 bytes once decoded.
    pub secret: String,
}

fn default_clock_skew() -> u64 {
    60
}

impl ProviderConfig {
    /// The algorithms the provider accepts: `algorithms`, else the preset's defaults, else
    /// `RS256` (`HS256` when the only keys are `shared_secrets`).
    pub fn effective_algorithms(&self) -> Vec<Alg> {
        if !self.algorithms.is_empty() {
            return self.algorithms.clone();
        }
        if !self.shared_secrets.is_empty() && self.jwks.is_none() && self.remote_jwks.is_none() {
            return vec![Alg::HS256];
        }
        self.claims
            .preset
            .map(|p| p.default_algs().to_vec())
            .unwrap_or_else(|| vec![Alg::RS256])
    }
}

/// A provider compiled at load: parsed keys and claim mapping, ready for the request path.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    /// The configured issuer (possibly a `{tenantid}` template: match with [`Provider::issuer_rule`]).
    pub issuer: String,
    issuer_rule: IssuerRule,
    audiences: Vec<String>,
    algorithms: Vec<Alg>,
    /// Inline JWKS and shared secrets. `None` when keys come only from `remote_jwks`.
    static_keys: Option<KeySet>,
    remote: Option<CompiledJwksSource>,
    clock_skew: u64,
    max_lifetime: Option<u64>,
    required_claims: Vec<String>,
    mapping: ClaimMapping,
    /// Load-time notices (paths relative to the provider), e.g. an allowed alg no inline key fits.
    warnings: Vec<String>,
}

/// The largest `clock_skew_seconds` accepted.
pub const MAX_CLOCK_SKEW: u64 = 300;

impl Provider {
    /// Validates and compiles one provider. Error paths are relative to the provider.
    pub fn compile(cfg: &ProviderConfig) -> Result<Provider, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if cfg.name.trim().is_empty() {
            errors.push(ConfigError::new(
                "name",
                "must not be empty; give the provider a short name such as \"keycloak\"",
            ));
        }
        if cfg.issuer.trim().is_empty() {
            errors.push(ConfigError::new(
                "issuer",
                "must not be empty; use the exact `iss` of the provider's tokens",
            ));
        }
        let issuer_rule = match IssuerRule::compile(&cfg.issuer, &cfg.allowed_tenants) {
            Ok(r) => Some(r),
            Err(es) => {
                errors.extend(es);
                None
            }
        };
        if let Some(oidc) = cfg
            .remote_jwks
            .as_ref()
            .and_then(|r| r.oidc_issuer.as_deref())
        {
            if oidc.contains(TENANT_PLACEHOLDER) {
                errors.push(ConfigError::new(
                    "remote_jwks.oidc_issuer",
                    "a {tenantid} template has no discovery document; use jwks_uri (Entra ID: https://login.microsoftonline.com/common/discovery/v2.0/keys)",
                ));
            }
        }
        let mapping = match cfg.claims.compile() {
            Ok(m) => Some(m),
            Err(es) => {
                errors.extend(es.into_iter().map(|e| e.at("claims")));
                None
            }
        };
        let algorithms = cfg.effective_algorithms();
        let mut warnings = Vec::new();
        if cfg.clock_skew_seconds > MAX_CLOCK_SKEW {
            errors.push(ConfigError::new(
                "clock_skew_seconds",
                format!(
                    "at most {MAX_CLOCK_SKEW} (5 minutes; default 60): more would accept tokens \
                     that long after they expire; a clock that far off needs its time sync fixed"
                ),
            ));
        }
        if cfg.max_lifetime_seconds == Some(0) {
            errors.push(ConfigError::new(
                "max_lifetime_seconds",
                "must be at least 1 (the longest exp - iat accepted); leave it out for no limit",
            ));
        }
        if cfg.audiences.is_empty() {
            warnings.push(
                "audiences is empty: `aud` is not checked, so a token this issuer made for any \
                 other client or API is accepted too; list your API's (or client's) id, or, where \
                 tokens have no `aud` (Cognito access tokens), require the scopes only your app \
                 grants in the rules"
                    .to_string(),
            );
        }
        let mut seen = Vec::new();
        for (i, a) in cfg.algorithms.iter().enumerate() {
            if seen.contains(a) {
                errors.push(ConfigError::new(
                    format!("algorithms[{i}]"),
                    format!("{a} is listed twice"),
                ));
            }
            seen.push(*a);
        }
        let has_keys =
            cfg.jwks.is_some() || cfg.remote_jwks.is_some() || !cfg.shared_secrets.is_empty();
        if !has_keys {
            errors.push(ConfigError::new(
                "jwks",
                "the provider has no keys: set `jwks` (inline), `remote_jwks` (jwks_uri or OIDC discovery) or `shared_secrets`",
            ));
        }
        // Mixing symmetric and asymmetric algorithms invites algorithm confusion: refuse it.
        let symmetric = algorithms.iter().filter(|a| a.is_symmetric()).count();
        if symmetric != 0 && symmetric != algorithms.len() {
            errors.push(ConfigError::new(
                "algorithms",
                "mixes HMAC (HS*) with public-key algorithms; split them into two providers with the same issuer, one allowing only the HS* algorithms (with shared_secrets), the other only the public-key ones",
            ));
        }
        if symmetric != 0 && cfg.shared_secrets.is_empty() && cfg.jwks.is_none() {
            errors.push(ConfigError::new(
                "shared_secrets",
                "HS* algorithms are allowed but no shared secret is configured",
            ));
        }
        if symmetric == 0 && !cfg.shared_secrets.is_empty() {
            errors.push(ConfigError::new(
                "algorithms",
                "shared_secrets are set but no HS* algorithm is allowed; add e.g. \"HS256\" to algorithms",
            ));
        }

        let errors_before_keys = errors.len();
        let mut keys: Vec<jwk::Jwk> = Vec::new();
        let mut have_static = false;
        if let Some(v) = &cfg.jwks {
            have_static = true;
            match KeySet::from_jwks_value(v) {
                Ok(set) => keys.extend(set.keys().iter().cloned()),
                Err(es) => errors.extend(es.into_iter().map(|e| e.at("jwks"))),
            }
        }
        for (i, s) in cfg.shared_secrets.iter().enumerate() {
            have_static = true;
            let path = format!("shared_secrets[{i}]");
            match crate::b64::decode(&s.secret) {
                Err(_) => errors.push(ConfigError::new(
                    format!("{path}.secret"),
                    "is not unpadded base64url; encode the secret bytes with base64url (no `=`)",
                )),
                Ok(bytes) => match jwk::hmac_secret(s.kid.clone(), &bytes) {
                    Ok(k) => keys.push(k),
                    Err(e) => errors.push(ConfigError::new(
                        format!("{path}.secret"),
                        e.message().to_string(),
                    )),
                },
            }
        }
        let static_keys = if have_static {
            match KeySet::from_keys(keys) {
                Ok(set) => Some(set),
                Err(es) => {
                    errors.extend(es.into_iter().map(|e| e.at("")));
                    None
                }
            }
        } else {
            None
        };
        // Only when the keys themselves loaded: otherwise this would repeat their error.
        // An allowed alg no inline key fits is a warning (keys rotate; an IdP's set holds keys
        // for some of its algorithms at a time); no key for any allowed alg is an error.
        if let (Some(set), true, None) = (
            &static_keys,
            errors.len() == errors_before_keys,
            &cfg.remote_jwks,
        ) {
            let unfit: Vec<(usize, Alg)> = algorithms
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, a)| !set.keys().iter().any(|k| k.fits(*a)))
                .collect();
            if unfit.len() == algorithms.len() {
                errors.push(ConfigError::new(
                    "algorithms",
                    "no configured key can verify any of the allowed algorithms; check the keys' kty/crv/alg against `algorithms`",
                ));
            } else {
                for (i, a) in unfit {
                    warnings.push(format!(
                        "algorithms[{i}]: {a} is allowed but no configured key can verify it; tokens signed with {a} are refused until a key for it is configured"
                    ));
                }
            }
        }
        let remote = match cfg.remote_jwks.as_ref().map(JwksSource::compile) {
            None => None,
            Some(Ok(r)) => Some(r),
            Some(Err(es)) => {
                errors.extend(es.into_iter().map(|e| e.at("remote_jwks")));
                None
            }
        };
        match (errors.is_empty(), mapping, issuer_rule) {
            (true, Some(mapping), Some(issuer_rule)) => Ok(Provider {
                name: cfg.name.clone(),
                issuer: cfg.issuer.clone(),
                issuer_rule,
                audiences: cfg.audiences.clone(),
                algorithms,
                static_keys,
                remote,
                clock_skew: cfg.clock_skew_seconds,
                max_lifetime: cfg.max_lifetime_seconds,
                required_claims: cfg.required_claims.clone(),
                mapping,
                warnings,
            }),
            _ => Err(errors),
        }
    }

    /// The remote key source, if this provider fetches its keys.
    pub fn remote(&self) -> Option<&CompiledJwksSource> {
        self.remote.as_ref()
    }

    pub fn algorithms(&self) -> &[Alg] {
        &self.algorithms
    }

    /// Load-time notices for the host to log (paths relative to the provider).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The inline keys and shared secrets, if any (OIDC login checks ID tokens with them too).
    pub fn static_keys(&self) -> Option<&KeySet> {
        self.static_keys.as_ref()
    }

    /// The key for a token's `kid` and `alg` ([`KeySet::select`]): the inline keys first, then
    /// the fetched remote set, looked up only when needed (`remote`). `NeedKeys` when the remote
    /// set has not been fetched yet; a refusal for an unknown `kid` in the remote set says so
    /// (`refetch`), so the caller may refetch it early.
    pub fn signing_key<'k>(
        &'k self,
        kid: Option<&str>,
        alg: Alg,
        remote: impl FnOnce() -> Option<&'k KeySet>,
    ) -> KeyChoice<'k> {
        let refused = |error| KeyChoice::Refused {
            error,
            refetch: false,
        };
        match self.static_keys.as_ref().map(|s| s.select(kid, alg)) {
            Some(Ok(k)) => KeyChoice::Key(k),
            Some(Err(e)) if self.remote.is_none() => refused(e),
            _ => match remote() {
                None if self.remote.is_some() => KeyChoice::NeedKeys,
                None => refused(Error::new(
                    Reason::KeysUnavailable,
                    "the provider has no keys",
                )),
                Some(set) => match set.select(kid, alg) {
                    Ok(k) => KeyChoice::Key(k),
                    Err(error) => KeyChoice::Refused {
                        refetch: error.reason() == Reason::UnknownKid,
                        error,
                    },
                },
            },
        }
    }

    /// Where roles, permissions, email... are read from (also applied to ID tokens at login).
    pub fn mapping(&self) -> &ClaimMapping {
        &self.mapping
    }

    /// Allowed clock difference, in seconds.
    pub fn clock_skew_seconds(&self) -> u64 {
        self.clock_skew
    }

    /// How a token's `iss` is matched (exactly, or a multi-tenant template).
    pub fn issuer_rule(&self) -> &IssuerRule {
        &self.issuer_rule
    }

    /// The provider's own claim rules that hold for every token it signs, ID tokens at login
    /// included: `max_lifetime_seconds` (`exp - iat`) and `required_claims`.
    pub fn check_lifetime_and_required_claims(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<(), Error> {
        if let Some(max) = self.max_lifetime {
            let exp = NumericDate::parse(claims, "exp")?
                .ok_or_else(|| Error::new(Reason::MissingClaim, "the token has no exp"))?;
            let iat = NumericDate::parse(claims, "iat")?.ok_or_else(|| {
                Error::new(
                    Reason::MissingClaim,
                    "the provider limits token lifetime, so iat is required",
                )
            })?;
            if exp.since(iat) > max as f64 {
                return Err(Error::new(
                    Reason::LifetimeTooLong,
                    format!("the token lives longer than the provider's limit of {max} s"),
                ));
            }
        }
        for name in &self.required_claims {
            if !claims.contains_key(name) {
                return Err(Error::new(
                    Reason::MissingClaim,
                    format!("required claim {name} is missing"),
                ));
            }
        }
        Ok(())
    }
}

/// The placeholder of a multi-tenant issuer template.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Which tenants a multi-tenant issuer accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    /// `allowed_tenants: ["*"]`.
    Any,
    /// These tenant ids (compared ASCII case-insensitively).
    Only(Vec<String>),
}

/// How a provider's issuer matches a token's `iss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerRule {
    /// `iss` equals this exactly.
    Exact(String),
    /// `iss` is `prefix + tid + suffix`, `tid` the token's `tid` claim, an allowed tenant
    /// (Microsoft's multi-tenant validation).
    Template {
        prefix: String,
        suffix: String,
        tenants: Tenants,
    },
}

fn valid_tenant(t: &str) -> bool {
    crate::syntax::is_short_name(t, b"-.")
}

impl IssuerRule {
    /// Compiles `issuer` and `allowed_tenants`. Error paths are relative to the provider.
    pub fn compile(
        issuer: &str,
        allowed_tenants: &[String],
    ) -> Result<IssuerRule, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let Some((prefix, suffix)) = issuer.split_once(TENANT_PLACEHOLDER) else {
            if !allowed_tenants.is_empty() {
                errors.push(ConfigError::new(
                    "allowed_tenants",
                    "only applies to a multi-tenant issuer template containing {tenantid} (e.g. https://login.microsoftonline.com/{tenantid}/v2.0); remove it, or use the template",
                ));
            }
            if issuer.contains('{') || issuer.contains('}') {
                errors.push(ConfigError::new(
                    "issuer",
                    "has braces but no {tenantid} placeholder; the only template is {tenantid} (Entra ID multi-tenant)",
                ));
            }
            return if errors.is_empty() {
                Ok(IssuerRule::Exact(issuer.to_string()))
            } else {
                Err(errors)
            };
        };
        if suffix.contains(TENANT_PLACEHOLDER) || prefix.contains('{') || suffix.contains('{') {
            errors.push(ConfigError::new(
                "issuer",
                "a multi-tenant issuer has exactly one {tenantid} placeholder and no other braces",
            ));
        }
        let tenants = if allowed_tenants.is_empty() {
            errors.push(ConfigError::new(
                "allowed_tenants",
                "a {tenantid} issuer accepts tokens of any Entra ID tenant: list the tenant ids allowed to sign in, or [\"*\"] to accept every tenant deliberately",
            ));
            None
        } else if allowed_tenants.iter().any(|t| t == "*") {
            if allowed_tenants.len() > 1 {
                errors.push(ConfigError::new(
                    "allowed_tenants",
                    "\"*\" (any tenant) stands alone; remove the other entries or the \"*\"",
                ));
            }
            Some(Tenants::Any)
        } else {
            for (i, t) in allowed_tenants.iter().enumerate() {
                if !valid_tenant(t) {
                    errors.push(ConfigError::new(
                        format!("allowed_tenants[{i}]"),
                        "a tenant id (the directory's GUID, as in the token's tid), or \"*\" alone",
                    ));
                }
            }
            Some(Tenants::Only(
                allowed_tenants
                    .iter()
                    .map(|t| t.to_ascii_lowercase())
                    .collect(),
            ))
        };
        match tenants {
            Some(tenants) if errors.is_empty() => Ok(IssuerRule::Template {
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
                tenants,
            }),
            _ => Err(errors),
        }
    }

    /// True for a `{tenantid}` template.
    pub fn is_template(&self) -> bool {
        matches!(self, IssuerRule::Template { .. })
    }

    /// True when `allowed_tenants` is `["*"]`.
    pub fn any_tenant(&self) -> bool {
        matches!(
            self,
            IssuerRule::Template {
                tenants: Tenants::Any,
                ..
            }
        )
    }

    /// The tenant part of `iss` when it has the template's shape (`None` for an exact rule or
    /// another shape).
    fn tenant_in<'a>(&self, iss: &'a str) -> Option<&'a str> {
        let IssuerRule::Template { prefix, suffix, .. } = self else {
            return None;
        };
        iss.strip_prefix(prefix.as_str())?
            .strip_suffix(suffix.as_str())
    }

    fn check_tenant(&self, tenant: &str) -> Result<(), Error> {
        if !valid_tenant(tenant) {
            return Err(Error::new(
                Reason::UnknownIssuer,
                "the token's tenant id is malformed",
            ));
        }
        match self {
            IssuerRule::Template {
                tenants: Tenants::Only(list),
                ..
            } if !list.iter().any(|t| t.eq_ignore_ascii_case(tenant)) => Err(Error::new(
                Reason::UnknownIssuer,
                format!("tenant {tenant} is not in the provider's allowed_tenants"),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a token's `iss` (with its claims, for `tid`) is this issuer: `Ok(false)` when it
    /// is another issuer altogether; an error when it has the template's shape but `tid` is
    /// missing, differs from the tenant in `iss`, or is not allowed.
    pub fn matches_token(&self, iss: &str, claims: &Map<String, Value>) -> Result<bool, Error> {
        match self {
            IssuerRule::Exact(e) => Ok(e == iss),
            IssuerRule::Template { .. } => {
                let Some(tenant) = self.tenant_in(iss) else {
                    return Ok(false);
                };
                let tid = match claims.get("tid") {
                    Some(Value::String(t)) => t,
                    Some(_) => {
                        return Err(Error::new(Reason::MalformedClaims, "tid is not a string"))
                    }
                    None => {
                        return Err(Error::new(
                            Reason::MissingClaim,
                            "the token has no tid; a multi-tenant issuer needs it",
                        ))
                    }
                };
                // Microsoft: iss must be the template with {tenantid} replaced by tid.
                if tid != tenant {
                    return Err(Error::new(
                        Reason::UnknownIssuer,
                        "the token's iss is not the issuer template with its tid",
                    ));
                }
                self.check_tenant(tenant)?;
                Ok(true)
            }
        }
    }

    /// Whether an `iss` without claims (RFC 9207's callback parameter) is this issuer: exact,
    /// or the template with an allowed tenant.
    pub fn matches_bare(&self, iss: &str) -> Result<(), Error> {
        let unknown = || {
            Error::new(
                Reason::UnknownIssuer,
                "the callback's `iss` is not the provider's issuer (RFC 9207)",
            )
        };
        match self {
            IssuerRule::Exact(e) if e == iss => Ok(()),
            IssuerRule::Exact(_) => Err(unknown()),
            IssuerRule::Template { .. } => {
                let tenant = self.tenant_in(iss).ok_or_else(unknown)?;
                self.check_tenant(tenant)
            }
        }
    }
}

/// The outcome of checking one JWT.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum JwtCheck {
    /// Valid: who it is, and until when the result may be cached.
    Valid(Identity),
    /// The provider's remote keys are not there yet: wait for them (fail closed after a timeout).
    NeedKeys { provider: String },
    /// Refused. `refetch` names a provider whose remote key set lacks the token's `kid`.
    Invalid {
        error: Error,
        refetch: Option<String>,
    },
}

/// How far [`JwtVerifier::begin`] got.
// Built once per token and matched at once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum JwtStep {
    Done(JwtCheck),
    /// The signature is the host's to verify; then [`PendingJwt::finish`].
    NeedSignature(Box<PendingJwt>),
}

/// A token checked up to its signature: what is left once the host has verified it.
#[derive(Debug)]
pub struct PendingJwt {
    provider: usize,
    key_name: Option<String>,
    claims: Map<String, Value>,
    check: SignatureCheck,
}

impl PendingJwt {
    pub(crate) fn new(
        provider: usize,
        key_name: Option<String>,
        claims: Map<String, Value>,
        check: SignatureCheck,
    ) -> Self {
        PendingJwt {
            provider,
            key_name,
            claims,
            check,
        }
    }

    /// The token's claims (not yet trusted: the signature is unanswered until `finish`).
    pub(crate) fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The `kid` of the key that verifies it.
    pub(crate) fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// The signature the host verifies.
    pub fn check(&self) -> &SignatureCheck {
        &self.check
    }

    /// The rest of the check with the host's result for [`PendingJwt::check`] (`verifier` is
    /// the one that began it: callers hold the engine generation that proves it).
    pub fn finish(
        self,
        verifier: &JwtVerifier,
        verified: Result<(), Error>,
        now: UnixTime,
    ) -> JwtCheck {
        let invalid = |error| JwtCheck::Invalid {
            error,
            refetch: None,
        };
        if let Err(e) = verified {
            return invalid(e);
        }
        let Some(provider) = verifier.providers.get(self.provider) else {
            return invalid(Error::new(Reason::Internal, "the token's provider is gone"));
        };
        match provider.validate_claims(&self.claims, now) {
            Ok(mut identity) => {
                identity.key_name = self.key_name;
                JwtCheck::Valid(identity)
            }
            Err(e) => invalid(e),
        }
    }
}

/// Which key verifies a token ([`Provider::signing_key`]).
#[derive(Debug)]
pub enum KeyChoice<'k> {
    Key(&'k Jwk),
    /// The provider's remote keys have not been fetched yet.
    NeedKeys,
    /// No usable key. `refetch`: the remote set lacks the token's `kid` (a refetch may help).
    Refused {
        error: Error,
        refetch: bool,
    },
}

/// What `decide` needs to know about keys the host fetched.
pub trait KeyLookup {
    /// The current key set of a remote provider, if one has been fetched.
    fn keys(&self, provider: &str) -> Option<&KeySet>;

    /// Whether the host would refetch `provider`'s key set now for a token naming a `kid` the
    /// set lacks (see [`crate::jwks::JwksState::unknown_kid_refetch_from`]). When it would,
    /// the engine pauses with [`crate::step::Step::NeedKeys`] instead of refusing, so a
    /// freshly rotated key works on its first request. Default: never.
    fn may_refetch(&self, _provider: &str, _now: UnixTime) -> bool {
        false
    }

    /// The remote API-key list as the host holds it (`api_keys.remote`). Default: none, so a
    /// config with a remote list refuses every key the inline `keys` lack with
    /// `503 api_keys_unavailable` (fail closed) on a host that does not fetch it.
    fn api_key_list(&self) -> Option<&crate::keylist::KeyListState> {
        None
    }
}

/// No remote keys at all (hosts without fetching, tests).
pub struct NoRemoteKeys;

impl KeyLookup for NoRemoteKeys {
    fn keys(&self, _provider: &str) -> Option<&KeySet> {
        None
    }
}

/// The JWT providers of a config, chosen by `iss`.
#[derive(Debug)]
pub struct JwtVerifier {
    providers: Vec<Provider>,
    max_token_bytes: usize,
}

impl JwtVerifier {
    pub fn new(providers: Vec<Provider>, max_token_bytes: usize) -> Self {
        JwtVerifier {
            providers,
            max_token_bytes,
        }
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Checks one token with `backend` answering its signature step (the synchronous hosts).
    pub fn check(
        &self,
        token: &str,
        keys: &dyn KeyLookup,
        backend: &dyn SignatureBackend,
        now: UnixTime,
    ) -> JwtCheck {
        match self.begin(token, keys, now) {
            JwtStep::Done(c) => c,
            JwtStep::NeedSignature(p) => {
                let verified = p.check.verify_with(backend);
                p.finish(self, verified, now)
            }
        }
    }

    /// Checks one token up to its signature. HMAC signatures are verified here (the secret
    /// stays in the core); any other signature is handed to the host as a [`PendingJwt`],
    /// whose [`PendingJwt::finish`] completes the check with the host's answer.
    pub fn begin(&self, token: &str, keys: &dyn KeyLookup, now: UnixTime) -> JwtStep {
        let invalid = |error| {
            JwtStep::Done(JwtCheck::Invalid {
                error,
                refetch: None,
            })
        };
        let jws = match jws::parse(token, self.max_token_bytes) {
            Ok(j) => j,
            Err(e) => return invalid(e),
        };
        let claims = match jws.claims() {
            Ok(c) => c,
            Err(e) => return invalid(e),
        };
        let provider = match self.provider_for(&claims, jws.alg) {
            Ok(p) => p,
            Err(e) => return invalid(e),
        };
        let Some(index) = self.index_of(provider) else {
            return invalid(Error::new(Reason::Internal, "provider lookup"));
        };
        if !provider.algorithms.contains(&jws.alg) {
            return invalid(Error::new(
                Reason::AlgNotAllowed,
                format!("provider {} does not allow {}", provider.name, jws.alg),
            ));
        }
        // Static keys first; a provider may have both (pinned + remote).
        let key =
            match provider.signing_key(jws.kid.as_deref(), jws.alg, || keys.keys(&provider.name)) {
                KeyChoice::Key(k) => k,
                KeyChoice::NeedKeys => {
                    return JwtStep::Done(JwtCheck::NeedKeys {
                        provider: provider.name.clone(),
                    })
                }
                KeyChoice::Refused { error, refetch } => {
                    return JwtStep::Done(JwtCheck::Invalid {
                        error,
                        refetch: refetch.then(|| provider.name.clone()),
                    })
                }
            };
        if let Err(e) = check_signature_format(jws.alg, &key.key, &jws.signature) {
            return invalid(e);
        }
        let pending = PendingJwt {
            provider: index,
            key_name: key.kid.clone(),
            claims,
            check: SignatureCheck::new(jws.alg, &key.key, jws.signing_input, &jws.signature),
        };
        if !host_verifies(jws.alg) {
            let verified = pending.check.verify_with(&NativeBackend);
            return JwtStep::Done(pending.finish(self, verified, now));
        }
        JwtStep::NeedSignature(Box::new(pending))
    }

    /// The index of one of this verifier's providers (for a [`PendingJwt`]).
    pub(crate) fn index_of(&self, provider: &Provider) -> Option<usize> {
        self.providers
            .iter()
            .position(|p| std::ptr::eq(p, provider))
    }

    /// The provider for a token's `iss` and `alg`. Providers may share an issuer when their
    /// algorithm sets do not overlap (checked at load): the one that allows `alg` is chosen; when
    /// none does, the first with that issuer (which then refuses the alg).
    pub fn provider_for<'a>(
        &'a self,
        claims: &Map<String, Value>,
        alg: Alg,
    ) -> Result<&'a Provider, Error> {
        let iss = match claims.get("iss") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(Error::new(Reason::MalformedClaims, "iss is not a string")),
            None => return Err(Error::new(Reason::MissingClaim, "the token has no iss")),
        };
        let pick = |found: Vec<&'a Provider>| -> Option<&'a Provider> {
            found
                .iter()
                .copied()
                .find(|p| p.algorithms.contains(&alg))
                .or_else(|| found.first().copied())
        };
        // Exact issuers first, so a template never shadows a configured tenant's own provider.
        let exact: Vec<&Provider> = self
            .providers
            .iter()
            .filter(|p| matches!(&p.issuer_rule, IssuerRule::Exact(e) if e == iss))
            .collect();
        if let Some(p) = pick(exact) {
            return Ok(p);
        }
        let mut templates = Vec::new();
        for p in self
            .providers
            .iter()
            .filter(|p| p.issuer_rule.is_template())
        {
            if p.issuer_rule.matches_token(iss, claims)? {
                templates.push(p);
            }
        }
        if let Some(p) = pick(templates) {
            return Ok(p);
        }
        Err(Error::new(
            Reason::UnknownIssuer,
            "no provider is configured for the token's issuer",
        ))
    }
}

impl Provider {
    fn validate_claims(
        &self,
        claims: &Map<String, Value>,
        now: UnixTime,
    ) -> Result<Identity, Error> {
        let exp = check_time_claims(claims, now as f64, self.clock_skew)?;
        if !self.audiences.is_empty() && !Audience::of(claims).matches(&self.audiences) {
            return Err(Error::new(
                Reason::WrongAudience,
                "the token's aud names none of the provider's audiences",
            ));
        }
        self.check_lifetime_and_required_claims(claims)?;
        let mut identity = Identity::new(String::new(), CredentialKind::Jwt, self.name.clone());
        self.mapping.apply(claims, &mut identity);
        if identity.subject.is_empty() {
            return Err(Error::new(
                Reason::MissingClaim,
                "the token has no subject (sub)",
            ));
        }
        identity.expires_at = Some(exp.floor_secs());
        Ok(identity)
    }
}

/// `exp` (required), `nbf` and `iat` of a JWT against `now` (seconds, possibly fractional) with
/// `skew` seconds of leeway, each compared with its fraction ([`TimeWindow`]). Returns `exp`.
pub fn check_time_claims(
    claims: &Map<String, Value>,
    now: f64,
    skew: u64,
) -> Result<NumericDate, Error> {
    let window = TimeWindow::check(claims, now, &WindowRules::jwt(skew), |fault| {
        let msg = match fault {
            Fault::Missing(_) => "the token has no exp; tokens without expiry are refused",
            Fault::Expired => "the token has expired",
            Fault::NotYetValid => "the token is not valid yet (nbf)",
            Fault::IssuedInFuture => "the token was issued in the future (iat)",
        };
        Error::new(fault.reason(), msg)
    })?;
    Ok(window.exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn time_claims_are_compared_with_their_fraction() {
        let c = claims(json!({"exp": 1000.5}));
        assert_eq!(
            check_time_claims(&c, 1000.7, 0).unwrap_err().reason(),
            Reason::TokenExpired
        );
        assert_eq!(check_time_claims(&c, 1000.2, 0).unwrap().seconds(), 1000.5);
        assert_eq!(
            check_time_claims(&c, 1000.5, 0).unwrap_err().reason(),
            Reason::TokenExpired
        );
        // with skew
        assert!(check_time_claims(&c, 1060.4, 60).is_ok());
        assert!(check_time_claims(&c, 1060.6, 60).is_err());
        let c = claims(json!({"exp": 2000, "nbf": 1000.5}));
        assert_eq!(
            check_time_claims(&c, 1000.2, 0).unwrap_err().reason(),
            Reason::TokenNotYetValid
        );
        assert!(check_time_claims(&c, 1000.7, 0).is_ok());
        let c = claims(json!({"exp": 2000, "iat": 1000.5}));
        assert_eq!(
            check_time_claims(&c, 1000.2, 0).unwrap_err().reason(),
            Reason::IssuedInFuture
        );
        assert!(check_time_claims(&c, 1000.5, 0).is_ok());
    }

    #[test]
    fn numeric_dates_beyond_2_pow_53_are_malformed() {
        use crate::claims::MAX_NUMERIC_DATE;
        for bad in [
            json!(MAX_NUMERIC_DATE + 1),
            json!(u64::MAX),
            json!(1e16),
            json!(f64::MAX),
            json!(-0.5),
            json!(-1),
            json!("1000"),
        ] {
            let c = claims(json!({ "exp": bad.clone() }));
            assert_eq!(
                check_time_claims(&c, 0.0, 0).unwrap_err().reason(),
                Reason::MalformedClaims,
                "{bad}"
            );
        }
        let c = claims(json!({ "exp": MAX_NUMERIC_DATE }));
        assert!(check_time_claims(&c, 1.0, 0).is_ok());
        let c = claims(json!({ "exp": 5000, "nbf": MAX_NUMERIC_DATE + 1 }));
        assert_eq!(
            check_time_claims(&c, 1.0, 0).unwrap_err().reason(),
            Reason::MalformedClaims
        );
    }
}
