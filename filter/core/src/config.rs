//! The one config schema, for every host.
//!
//! A config is JSON, parsed with serde (unknown fields are errors, so typos are caught), then
//! validated as a whole: every error is reported with its field path and a fix, e.g.
//! `jwt.providers[1].jwks: kid "k2" appears twice`. The JSON Schema published at
//! `schema/edgegate.schema.json` is generated from these types (`cargo run -p edgegate --features schema --example schema`).

use serde::{Deserialize, Serialize};

use crate::apikey::ApiKeysConfig;
use crate::cache::CacheConfig;
use crate::error::{ConfigError, ConfigErrors};
use crate::identity::CredentialKind;
use crate::login::LoginConfig;
use crate::magic::MagicLinkConfig;
use crate::redirect::RedirectConfig;
use crate::rules::{default_credentials, DefaultRuleConfig, RuleConfig};
use crate::session::SessionConfig;
use crate::upstream::normalize_header_name;
use crate::verifier::ProviderConfig;

/// The whole edgegate config.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Config {
    /// Optional `$schema` reference so editors can validate the file; ignored by edgegate.
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    /// The realm named in `WWW-Authenticate` challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// JWT providers and where JWTs are read from.
    #[serde(default)]
    pub jwt: JwtConfig,
    /// API keys (hashes only).
    pub api_keys: Option<ApiKeysConfig>,
    /// Magic-link tokens.
    pub magic_links: Option<MagicLinkConfig>,
    /// The session cookie (set after OIDC or magic-link login).
    pub session: Option<SessionConfig>,
    /// OpenID Connect login (authorization code flow with PKCE) through one of `jwt.providers`,
    /// with refresh and logout. Needs a `session` section.
    pub login: Option<LoginConfig>,
    /// Which return URLs (login `rd`, magic-link targets) are allowed besides relative paths.
    #[serde(default)]
    pub redirects: RedirectConfig,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The rule for requests no rule matches. Default: any accepted credential, authenticated.
    #[serde(default)]
    pub default_rule: DefaultRuleConfig,
    /// Names of the identity headers sent upstream.
    #[serde(default)]
    pub identity_headers: IdentityHeaders,
    /// Development mode: every request is this synthetic identity. Never in production.
    #[serde(default)]
    pub dev_mode: DevMode,
    /// What to do with a request carrying a method override (`X-HTTP-Method-Override`,
    /// `X-HTTP-Method`, `X-Method-Override`, `_method` query parameter), which many frameworks
    /// obey. `enforce` (default): the request must satisfy the rule of its real method AND of
    /// every method it names. `reject`: such requests are refused with 400. A `_method` field in
    /// a form body is not seen (the filter does not read bodies): see docs/concepts.md.
    #[serde(default)]
    pub method_override: crate::method_override::MethodOverride,
}

/// Serde `default = "..."` functions that return a fixed string: `name => value`, one a line.
macro_rules! string_defaults {
    ($($name:ident => $value:expr),+ $(,)?) => {
        $(
            fn $name() -> String {
                String::from($value)
            }
        )+
    };
}
pub(crate) use string_defaults;

fn default_realm() -> String {
    "edgegate".to_string()
}

/// JWT settings shared by all providers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JwtConfig {
    /// Issuers whose tokens are accepted, chosen by the token's `iss`.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Tokens longer than this are refused before parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// The verified-token cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Where JWTs are read from besides `Authorization: Bearer`.
    #[serde(default)]
    pub from: JwtSources,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            providers: Vec::new(),
            max_token_bytes: default_max_token_bytes(),
            cache: CacheConfig::default(),
            from: JwtSources::default(),
        }
    }
}

fn default_max_token_bytes() -> usize {
    crate::jws::DEFAULT_MAX_TOKEN_BYTES
}

/// Extra places a JWT may arrive. `Authorization: Bearer` is always read.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JwtSources {
    /// A request header holding the bare token (e.g. `x-jwt-assertion`).
    pub header: Option<String>,
    /// A cookie holding the bare token.
    pub cookie: Option<String>,
    /// A query parameter holding the token. Off by default: URLs end up in logs and Referer headers.
    pub query_param: Option<String>,
}

/// Upstream header names for the identity. Client-sent copies of all of them are removed first.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IdentityHeaders {
    pub subject: String,
    pub email: String,
    pub name: String,
    /// Comma-separated roles.
    pub roles: String,
    /// Comma-separated permissions.
    pub permissions: String,
    /// `jwt`, `api_key`, `magic_link`, `session` or `dev`.
    pub credential: String,
    /// Provider name (JWT) or credential kind.
    pub provider: String,
    /// JWK `kid`, API key name or magic-link key id.
    pub key_name: String,
    /// Unix seconds when the credential expires.
    pub expires: String,
    /// Header set on every response's request in dev mode, so nobody mistakes it for production.
    pub dev_mode: String,
    /// Send `roles` and `permissions` also when the list is empty (an empty value). Off by
    /// default: an empty list is left out, which says the same to the upstream (client-sent
    /// copies are removed either way) and saves a header per request.
    pub send_empty: bool,
    /// Which identity headers go upstream; all of them by default. List only what the app
    /// behind reads (e.g. `["subject", "roles"]`): the rest stay at the edge (an email address
    /// the app never needed is not sent), and each header left out is one header less per
    /// request. Client-sent copies of every identity header are removed all the same.
    pub send: Vec<IdentityField>,
}

/// One identity header, by the name of its field under `identity_headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum IdentityField {
    Subject,
    Email,
    Name,
    Roles,
    Permissions,
    Credential,
    Provider,
    KeyName,
    Expires,
}

impl IdentityField {
    pub const ALL: [IdentityField; 9] = [
        IdentityField::Subject,
        IdentityField::Email,
        IdentityField::Name,
        IdentityField::Roles,
        IdentityField::Permissions,
        IdentityField::Credential,
        IdentityField::Provider,
        IdentityField::KeyName,
        IdentityField::Expires,
    ];

    /// The field's name in the config.
    pub fn name(self) -> &'static str {
        match self {
            IdentityField::Subject => "subject",
            IdentityField::Email => "email",
            IdentityField::Name => "name",
            IdentityField::Roles => "roles",
            IdentityField::Permissions => "permissions",
            IdentityField::Credential => "credential",
            IdentityField::Provider => "provider",
            IdentityField::KeyName => "key_name",
            IdentityField::Expires => "expires",
        }
    }
}

/// The default names: `x-edgegate-` and the field's name (`dev-mode` for dev mode).
impl Default for IdentityHeaders {
    fn default() -> Self {
        let h = |name: &str| format!("x-edgegate-{name}");
        IdentityHeaders {
            subject: h("subject"),
            email: h("email"),
            name: h("name"),
            roles: h("roles"),
            permissions: h("permissions"),
            credential: h("credential"),
            provider: h("provider"),
            key_name: h("key-name"),
            expires: h("expires"),
            dev_mode: h("dev-mode"),
            send_empty: false,
            send: IdentityField::ALL.to_vec(),
        }
    }
}

impl IdentityHeaders {
    /// Every header name, in a fixed order, lower-cased.
    pub fn all(&self) -> [&str; 10] {
        self.named().map(|(_, name)| name)
    }

    /// Every header name with the name of its field, in the order of [`IdentityHeaders::all`].
    pub fn named(&self) -> [(&'static str, &str); 10] {
        [
            ("subject", &self.subject),
            ("email", &self.email),
            ("name", &self.name),
            ("roles", &self.roles),
            ("permissions", &self.permissions),
            ("credential", &self.credential),
            ("provider", &self.provider),
            ("key_name", &self.key_name),
            ("expires", &self.expires),
            ("dev_mode", &self.dev_mode),
        ]
    }

    /// True when `field`'s header goes upstream (`send`).
    pub fn sends(&self, field: IdentityField) -> bool {
        self.send.contains(&field)
    }

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        for (i, field) in self.send.iter().enumerate() {
            if self.send.iter().take(i).any(|f| f == field) {
                errors.push(ConfigError::new(
                    format!("identity_headers.send[{i}]"),
                    format!("{:?} is listed twice", field.name()),
                ));
            }
        }
        let named = self.named();
        let normalized_names = named.map(|(_, v)| normalize_header_name(v));
        for (i, ((field, value), normalized)) in named.iter().zip(&normalized_names).enumerate() {
            if !is_header_name(value) {
                errors.push(ConfigError::new(
                    format!("identity_headers.{field}"),
                    format!("{value:?} is not a valid lower-case HTTP header name (letters, digits, `-`)"),
                ));
            }
            if normalized_names.iter().take(i).any(|v| v == normalized) {
                errors.push(ConfigError::new(
                    format!("identity_headers.{field}"),
                    format!("{value:?} is used twice (`_` and `-` count as the same: CGI apps merge them)"),
                ));
            }
            if is_reserved_header(normalized) {
                errors.push(ConfigError::new(
                    format!("identity_headers.{field}"),
                    format!(
                        "{value:?} is a header clients or proxies send for another purpose, and \
                         edgegate removes every client copy of an identity header; pick a name \
                         such as x-edgegate-{}",
                        field.replace('_', "-")
                    ),
                ));
            }
        }
    }

    /// Identity header names that are also where credentials are read (`api_keys.header`,
    /// `jwt.from.header`): the client's copy would be removed before the check, so that
    /// credential could never be used.
    fn validate_against_sources(
        &self,
        sources: &[(&str, Option<&str>)],
        errors: &mut Vec<ConfigError>,
    ) {
        for (field, value) in self.named() {
            let normalized = normalize_header_name(value);
            for (source, name) in sources {
                if name.is_some_and(|n| normalize_header_name(n) == normalized) {
                    errors.push(ConfigError::new(
                        format!("identity_headers.{field}"),
                        format!(
                            "{value:?} is also where credentials are read ({source}): edgegate \
                             would remove them before checking them; pick another name"
                        ),
                    ));
                }
            }
        }
    }
}

/// Request headers an identity header must not be named after (lower-case, `-` for `_`): the
/// request's framing and connection, what a client says about its request, and what the proxies
/// on the way set. Edgegate removes every client copy of an identity header from every request
/// and sends its own value instead, so one of these would break requests or mislead the app.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "expect",
    "content-type",
    "content-encoding",
    "accept",
    "accept-encoding",
    "accept-language",
    "user-agent",
    "referer",
    "origin",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "cache-control",
    "pragma",
    "max-forwards",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-client-cert",
    "x-real-ip",
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
];

fn is_reserved_header(normalized: &str) -> bool {
    normalized.starts_with(':')
        || normalized.starts_with("x-envoy-")
        || normalized.starts_with("x-b3-")
        || RESERVED_HEADERS.contains(&normalized)
        || crate::method_override::OVERRIDE_HEADERS.contains(&normalized)
}

/// A lower-case RFC 9110 token limited to what identity headers need.
pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Development mode. Off by default; loud when on.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DevMode {
    /// When true, every request whose `:authority`/`Host` is loopback (`localhost`, `127.x.x.x`,
    /// `[::1]`, any port) is authenticated as `identity`; others get 403 `dev_mode_not_local`.
    /// Refused alongside `api_keys`, `magic_links` or any provider whose issuer is not a
    /// loopback URL: dev mode never shares a config with production credentials.
    #[serde(default)]
    pub enabled: bool,
    /// The synthetic identity.
    #[serde(default)]
    pub identity: DevIdentity,
}

/// The identity dev mode uses.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DevIdentity {
    #[serde(default = "dev_subject")]
    pub subject: String,
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
}

fn dev_subject() -> String {
    "dev-user".into()
}

impl Default for DevIdentity {
    fn default() -> Self {
        DevIdentity {
            subject: dev_subject(),
            email: None,
            roles: Vec::new(),
            permissions: Vec::new(),
        }
    }
}

impl Config {
    /// Parses JSON. Syntax and type errors come back with the JSON path of the offending field.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigErrors> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "(root)".to_string()
            } else {
                path
            };
            ConfigErrors(vec![ConfigError::new(path, e.into_inner().to_string())])
        })
    }

    /// Where credentials are read must be a header or cookie of their own: not `Authorization`
    /// (always read for `Bearer`), not a header that means something else (the edgegate removes
    /// a consumed credential's header from the upstream request), not one header for two kinds
    /// of credential, and not edgegate's own session cookies.
    fn validate_credential_sources(&self, errors: &mut Vec<ConfigError>) {
        let jwt_header = self.jwt.from.header.as_deref();
        let api_key_header = self.api_keys.as_ref().and_then(|a| a.header.as_deref());
        let sources = [
            ("jwt.from.header", jwt_header),
            ("api_keys.header", api_key_header),
        ];
        self.identity_headers
            .validate_against_sources(&sources, errors);
        for (path, name) in sources {
            let Some(name) = name else { continue };
            let normalized = normalize_header_name(name);
            if normalized == "authorization" {
                // api_keys.header says so in its own section.
                if path == "jwt.from.header" {
                    errors.push(ConfigError::new(
                        path,
                        "`Authorization: Bearer <token>` is always read; name another header here \
                         (e.g. x-jwt-assertion) or leave it out",
                    ));
                }
            } else if is_reserved_header(&normalized) {
                errors.push(ConfigError::new(
                    path,
                    format!(
                        "{name:?} is a header clients or proxies send for another purpose (it \
                         would be removed from requests whose credential it carried); name \
                         another header"
                    ),
                ));
            }
        }
        if let (Some(j), Some(a)) = (jwt_header, api_key_header) {
            if normalize_header_name(j) == normalize_header_name(a) {
                errors.push(ConfigError::new(
                    "jwt.from.header",
                    format!("{j:?} is also api_keys.header: give each kind of credential its own header"),
                ));
            }
        }
        if let (Some(cookie), Some(session)) = (&self.jwt.from.cookie, &self.session) {
            let own = [
                session.cookie_name.clone(),
                format!("{}_refresh", session.cookie_name),
            ];
            if own.contains(cookie) || cookie.starts_with(crate::oidc::ATTEMPT_COOKIE_PREFIX) {
                errors.push(ConfigError::new(
                    "jwt.from.cookie",
                    format!("{cookie:?} is one of edgegate's own cookies (the session's); name the cookie your tokens arrive in"),
                ));
            }
        }
    }

    /// Every secret serves one purpose: the same bytes as the session key and a magic-link key,
    /// a refresh-cookie key, a provider's shared secret or the API-key pepper would let what one
    /// part signs be checked by another (today each also checks its own claims; this keeps it
    /// so whatever changes). The error names both places, never the secret.
    fn validate_secrets_are_not_shared(&self, errors: &mut Vec<ConfigError>) {
        // (purpose, path, secret). Every provider's shared secrets serve one purpose: one
        // issuer's tokens may be split over two providers.
        fn keyed<'a>(
            secrets: &mut Vec<(&str, String, &'a str)>,
            purpose: &'static str,
            list: &str,
            keys: impl Iterator<Item = &'a str>,
        ) {
            for (i, secret) in keys.enumerate() {
                secrets.push((purpose, format!("{list}[{i}].secret"), secret));
            }
        }
        let mut secrets: Vec<(&str, String, &str)> = Vec::new();
        let session = self.session.iter().flat_map(|s| &s.keys);
        keyed(
            &mut secrets,
            "session",
            "session.keys",
            session.map(|k| k.secret.expose()),
        );
        let magic = self.magic_links.iter().flat_map(|m| &m.keys);
        keyed(
            &mut secrets,
            "magic_links",
            "magic_links.keys",
            magic.map(|k| k.secret.expose()),
        );
        let refresh = self.login.iter().flat_map(|l| &l.refresh_keys);
        let refresh = refresh.map(|k| k.secret.expose());
        keyed(&mut secrets, "refresh_keys", "login.refresh_keys", refresh);
        for (p, provider) in self.jwt.providers.iter().enumerate() {
            let list = format!("jwt.providers[{p}].shared_secrets");
            let shared = provider.shared_secrets.iter().map(|k| k.secret.as_str());
            keyed(&mut secrets, "jwt", &list, shared);
        }
        if let Some(pepper) = self.api_keys.as_ref().and_then(|a| a.pepper.as_ref()) {
            secrets.push(("pepper", "api_keys.pepper".to_string(), pepper.expose()));
        }
        // The same secret twice within one purpose is that section's own concern.
        for (i, (purpose, path, secret)) in secrets.iter().enumerate() {
            if let Some((_, first, _)) = secrets
                .iter()
                .take(i)
                .find(|(p, _, s)| s == secret && p != purpose)
            {
                errors.push(ConfigError::new(
                    path.clone(),
                    format!(
                        "is the same secret as {first}; give each purpose its own \
                         (openssl rand 32 | basenc --base64url | tr -d =)"
                    ),
                ));
            }
        }
    }

    /// The magic-link path is a route of its own: not the site's root (every visitor would get
    /// the link page) and not one of the login's or the device flow's routes.
    fn validate_magic_link_path(&self, errors: &mut Vec<ConfigError>) {
        let Some(path) = self.magic_links.as_ref().map(|m| m.path.as_str()) else {
            return;
        };
        if path == "/" {
            errors.push(ConfigError::new(
                "magic_links.path",
                "\"/\" is the site's root: every visitor would get the magic-link page; use a path of its own (e.g. /auth/magic)",
            ));
            return;
        }
        let Some(login) = &self.login else { return };
        let callback = url::Url::parse(&login.redirect_uri)
            .ok()
            .map(|u| u.path().to_string());
        // (field, route, whether the paths below it are routes too)
        let mut taken: Vec<(&str, &str, bool)> = vec![
            ("login.login_path", &login.login_path, false),
            ("login.logout_path", &login.logout_path, false),
            ("login.me_path", &login.me_path, false),
        ];
        if let Some(cb) = &callback {
            taken.push(("login.redirect_uri", cb, false));
        }
        if let Some(device) = login.device.as_ref().filter(|d| d.enabled) {
            taken.push(("login.device.path", &device.path, true));
        }
        for (field, route, below) in taken {
            let covered = if below {
                crate::matcher::covers_prefix(route, path)
            } else {
                path == route
            };
            if covered {
                errors.push(ConfigError::new(
                    "magic_links.path",
                    format!("{path:?} is also a login route ({field}); give magic links a path of their own"),
                ));
            }
        }
    }

    /// Cross-section checks that belong to no single section.
    pub(crate) fn validate_global(&self, errors: &mut Vec<ConfigError>) {
        self.identity_headers.validate(errors);
        if self.realm.is_empty()
            || self.realm.contains(['"', '\\'])
            || self.realm.chars().any(char::is_control)
        {
            errors.push(ConfigError::new(
                "realm",
                "must be non-empty without quotes, backslashes or control characters",
            ));
        }
        if self.jwt.max_token_bytes < 256 || self.jwt.max_token_bytes > 1024 * 1024 {
            errors.push(ConfigError::new(
                "jwt.max_token_bytes",
                "must be between 256 and 1048576 (default 16384)",
            ));
        }
        for (field, v) in [
            ("header", &self.jwt.from.header),
            ("cookie", &self.jwt.from.cookie),
            ("query_param", &self.jwt.from.query_param),
        ] {
            if let Some(v) = v {
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                {
                    errors.push(ConfigError::new(
                        format!("jwt.from.{field}"),
                        format!("{v:?} is not a valid name"),
                    ));
                }
            }
        }
        if let Some(h) = &self.jwt.from.header {
            if !is_header_name(h) {
                errors.push(ConfigError::new(
                    "jwt.from.header",
                    "header names must be lower-case",
                ));
            }
        }
        self.validate_credential_sources(errors);
        self.validate_secrets_are_not_shared(errors);
        self.validate_magic_link_path(errors);
        let mut names: Vec<&str> = Vec::new();
        for (i, p) in self.jwt.providers.iter().enumerate() {
            if names.contains(&p.name.as_str()) {
                errors.push(ConfigError::new(
                    format!("jwt.providers[{i}].name"),
                    format!("{:?} is used by two providers", p.name),
                ));
            }
            names.push(&p.name);
            // Providers may share an issuer when no algorithm is allowed by two of them: a token
            // goes to the provider of its `iss` that allows its `alg`.
            let algs = p.effective_algorithms();
            for (j, q) in self.jwt.providers.iter().enumerate().take(i) {
                if q.issuer != p.issuer {
                    continue;
                }
                let theirs = q.effective_algorithms();
                if let Some(a) = algs.iter().find(|a| theirs.contains(a)) {
                    errors.push(ConfigError::new(
                        format!("jwt.providers[{i}].issuer"),
                        format!("jwt.providers[{j}] has the same issuer and both allow {a}; tokens are routed by iss and alg, so providers sharing an issuer must allow disjoint `algorithms` (or merge them)"),
                    ));
                }
            }
        }
        if self.dev_mode.enabled {
            for (section, present) in [
                ("api_keys", self.api_keys.is_some()),
                ("magic_links", self.magic_links.is_some()),
            ] {
                if present {
                    errors.push(ConfigError::new(
                        "dev_mode.enabled",
                        format!(
                            "dev mode is refused in a config with a {section} section (real credentials): remove {section} from the dev config, or turn dev mode off"
                        ),
                    ));
                }
            }
            for (i, p) in self.jwt.providers.iter().enumerate() {
                if !crate::loopback::is_loopback_url(&p.issuer) {
                    errors.push(ConfigError::new(
                        "dev_mode.enabled",
                        format!(
                            "dev mode is refused while jwt.providers[{i}] has a non-localhost issuer; turn dev mode off or point the provider at a local IdP"
                        ),
                    ));
                }
            }
            if self.dev_mode.identity.subject.is_empty() {
                errors.push(ConfigError::new(
                    "dev_mode.identity.subject",
                    "must not be empty",
                ));
            }
        }
        let rule_credentials = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("rules[{i}].credentials"), &r.credentials))
            .chain(std::iter::once((
                "default_rule.credentials".to_string(),
                &self.default_rule.credentials,
            )));
        let defaults = default_credentials();
        for (path, kinds) in rule_credentials {
            if *kinds == defaults {
                continue; // the default list names every kind; unconfigured ones are simply never found
            }
            for kind in kinds.iter() {
                let missing = match kind {
                    CredentialKind::ApiKey => {
                        self.api_keys.is_none().then_some("an api_keys section")
                    }
                    CredentialKind::MagicLink => self
                        .magic_links
                        .is_none()
                        .then_some("a magic_links section"),
                    CredentialKind::Session => {
                        self.session.is_none().then_some("a session section")
                    }
                    CredentialKind::Jwt => {
                        self.jwt.providers.is_empty().then_some("a jwt provider")
                    }
                    CredentialKind::Dev => None,
                };
                if let Some(what) = missing {
                    errors.push(ConfigError::new(
                        path.clone(),
                        format!(
                            "accepts {} but the config lacks {what}; add it or remove the kind",
                            kind.code()
                        ),
                    ));
                }
            }
        }
        if self.login.is_some() && self.session.is_none() {
            errors.push(ConfigError::new(
                "session",
                "OIDC login (the login section) keeps people logged in with a session cookie: add a session section with a signing key",
            ));
        }
        if self.magic_links.is_some() && self.session.is_none() {
            errors.push(ConfigError::new(
                "session",
                "magic links log people in with a session cookie: add a session section with a signing key",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_mode_is_refused_beside_real_credentials() {
        for section in [
            r#""api_keys": {"keys": []}"#,
            r#""magic_links": {"issuer": "https://app.example", "keys": []}"#,
        ] {
            let json = format!(r#"{{"dev_mode": {{"enabled": true}}, {section}}}"#);
            let cfg = Config::from_json(json.as_bytes()).unwrap();
            let mut errors = Vec::new();
            cfg.validate_global(&mut errors);
            assert!(
                errors.iter().any(|e| e.path() == "dev_mode.enabled"
                    && e.message().contains("dev mode is refused")),
                "{section}: {errors:?}"
            );
        }
        let cfg = Config::from_json(br#"{"dev_mode": {"enabled": true}}"#).unwrap();
        let mut errors = Vec::new();
        cfg.validate_global(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn syntax_errors_carry_the_path() {
        let e = Config::from_json(br#"{"jwt": {"providers": [{"name": "a", "issuer": "x", "clock_skew_seconds": "ten"}]}}"#)
            .unwrap_err();
        assert_eq!(e.0[0].path(), "jwt.providers[0].clock_skew_seconds");
        let e = Config::from_json(br#"{"jwt": {"providres": []}}"#).unwrap_err();
        assert!(e.0[0].message().contains("unknown field"), "{}", e);
    }
}
