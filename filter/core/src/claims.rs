//! From a verified JWT payload to the caller's roles, permissions, scopes and profile.
//!
//! Every JWT provider has a `claims` section ([`ClaimsConfig`]) that says where in the token
//! its identity provider puts roles and permissions. It is compiled once at config load into a
//! [`ClaimMapping`]; per request, [`ClaimMapping::apply`] copies the values into an [`Identity`].
//!
//! # Claim paths
//!
//! A claim path names a value inside the token's payload: member names separated by dots,
//! each step going one JSON object deeper.
//!
//! | path | reads |
//! | --- | --- |
//! | `roles` | `{"roles": [...]}` |
//! | `realm_access.roles` | `{"realm_access": {"roles": [...]}}` |
//! | `resource_access.desk.roles` | `{"resource_access": {"desk": {"roles": [...]}}}` |
//! | `cognito:groups` | `{"cognito:groups": [...]}` (a colon needs no escaping) |
//! | `"https://desk.example.com/roles"` | `{"https://desk.example.com/roles": [...]}` |
//! | `resource_access."desk.web".roles` | `{"resource_access": {"desk.web": {"roles": [...]}}}` |
//!
//! Grammar:
//!
//! ```text
//! path    = segment *( "." segment )
//! segment = bare / quoted
//! bare    = 1*( any character except  .  "  \  [  ]  and control characters )
//! quoted  = DQUOTE 1*( any character except  "  \  and control characters  /  \"  /  \\ ) DQUOTE
//! ```
//!
//! A member name that contains a dot (namespaced claims such as Auth0's
//! `https://desk.example.com/roles`, client ids such as `desk.web`) is written in double quotes;
//! inside the quotes `\"` is a quote and `\\` a backslash, and nothing else is escaped. In a JSON
//! config file the quotes themselves are escaped once more for JSON:
//! `"roles": ["\"https://desk.example.com/roles\""]`. `[` and `]` are reserved outside quotes.
//! Empty segments (`a..b`, a leading or trailing dot, `""`) are refused, as are paths of more than
//! 16 segments or 512 bytes. Paths are parsed when the config loads; a malformed path is a config
//! error that names the field.
//!
//! # Values
//!
//! The value at a path may be a string (one role) or an array of strings (one role each); any
//! other type, and non-string array elements, are ignored: a token that lacks a claim or has one
//! of an odd shape simply grants nothing from it. A string at a path listed in `space_separated`
//! (by default `scope` and `scp`) is split on spaces, like an OAuth `scope` claim.
//!
//! Values are bounded to protect memory and the headers built from them: at most
//! [`MAX_VALUES`] distinct roles, permissions, scopes and `amr` entries each (the rest are
//! dropped, which can only take rights away), and strings longer than [`MAX_STRING_BYTES`], empty
//! strings and strings with control characters are ignored (never truncated: a truncated role name
//! could be another role's name).
//!
//! After extraction `role_map` renames roles (`{"administrators": "admin"}`; names not in the map
//! stay as they are) and duplicates are removed, keeping first-seen order.
//!
//! Besides roles and permissions, [`ClaimMapping::apply`] fills:
//! - `subject` from the `subject` path (default `sub`); left as it was when absent,
//! - `email` from the `email` path (default `email`), except when the token says
//!   `"email_verified": false`: an unverified address is never used,
//! - `name` from the `name` path (default `name`),
//! - `scopes` from `scope` (space-separated string, or array) and `scp` (string or array),
//! - `amr` (array of strings) and `acr` (string), which rules use for MFA requirements.
//!
//! # Presets
//!
//! `preset` fills in `roles` and `permissions` for a well-known identity provider when the config
//! gives none (a non-empty `roles` or `permissions` list replaces the preset's). Every preset's
//! default signing algorithm is RS256 ([`Preset::default_algs`]); [`Preset::issuer_hint`] and
//! [`Preset::jwks_hint`] give the issuer and key-set URL templates.
//!
//! - **`keycloak`** — roles from `realm_access.roles` and, when `client_id` is set,
//!   `resource_access.<client_id>.roles` (client roles). Issuer
//!   `https://{host}/realms/{realm}` (Keycloak before 17: `https://{host}/auth/realms/{realm}`).
//! - **`google`** — Google ID tokens carry no roles or permissions: gate on identity, or
//!   on the Workspace domain with `"roles": ["hd"]` and `"role_map": {"example.com": "staff"}`
//!   (`hd` is absent for consumer accounts, which then get no role). Issuer
//!   `https://accounts.google.com`.
//! - **`microsoft`** (Entra ID, alias `entra`) — roles from `roles` (app roles) and `groups`
//!   (group object ids: name them with `role_map`, e.g.
//!   `{"3f2c…-…": "support"}`), permissions from `scp` (delegated scopes, a space-separated string).
//!   Issuer `https://login.microsoftonline.com/{tenant}/v2.0`: set the app's
//!   `accessTokenAcceptedVersion` to 2, v1 tokens have issuer `https://sts.windows.net/{tenant}/`.
//! - **`auth0`** — permissions from `permissions` (enable RBAC and "Add Permissions in the Access
//!   Token" on the API). Auth0 puts roles only where a Login Action puts them, under a namespace
//!   you choose: set `namespace` to it (e.g. `https://desk.example.com/`) and roles are read from
//!   `<namespace>roles` (a `/` is inserted when the namespace does not end in one). Without
//!   `namespace`, there are no roles. Issuer `https://{tenant}.{region}.auth0.com/` (with the
//!   trailing slash).
//! - **`cognito`** — roles from `cognito:groups`; scopes from `scope` (access tokens). Issuer
//!   `https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`.
//! - **`okta`** — roles from `groups` (add a `groups` claim to the authorization server); scopes
//!   from `scp` (an array). Issuer `https://{org}.okta.com/oauth2/default` (custom authorization
//!   server).
//!
//! Example (Keycloak, with a client whose id has a dot, and a role rename):
//!
//! ```json
//! { "preset": "keycloak", "client_id": "desk.web", "role_map": { "desk-admin": "admin" } }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::alg::Alg;
use crate::error::{ConfigError, Error, Reason};
use crate::identity::Identity;

/// At most this many distinct values are kept per list (roles, permissions, scopes, `amr`).
pub const MAX_VALUES: usize = 256;
/// Strings longer than this (in bytes) are ignored, never truncated.
pub const MAX_STRING_BYTES: usize = 1024;
/// A claim path has at most this many segments.
pub const MAX_PATH_SEGMENTS: usize = 16;
/// A claim path, as written, is at most this many bytes.
pub const MAX_PATH_BYTES: usize = 512;
/// At most this many paths per list in a config.
const MAX_PATHS: usize = 32;
/// At most this many `role_map` entries.
const MAX_ROLE_MAP: usize = 4096;

/// A parsed claim path: the member names to follow from the payload's top level.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimPath(Vec<String>);

impl ClaimPath {
    /// Parses a path in the grammar of the module documentation. The error message says what is
    /// wrong (it is meant for a config error).
    pub fn parse(text: &str) -> Result<ClaimPath, String> {
        if text.is_empty() {
            return Err("a claim path cannot be empty".into());
        }
        if text.len() > MAX_PATH_BYTES {
            return Err(format!("a claim path is at most {MAX_PATH_BYTES} bytes"));
        }
        let mut segments = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut seg = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\')) => seg.push(e),
                            _ => {
                                return Err(
                                    "inside double quotes only \\\" and \\\\ are escapes".into()
                                )
                            }
                        },
                        c if c.is_control() => {
                            return Err("a claim path cannot contain control characters".into())
                        }
                        c => seg.push(c),
                    }
                }
                if !closed {
                    return Err("a double-quoted segment is not closed".into());
                }
                if seg.is_empty() {
                    return Err("a claim path segment cannot be empty (\"\")".into());
                }
                match chars.next() {
                    None => {
                        segments.push(seg);
                        break;
                    }
                    Some('.') => {}
                    Some(_) => {
                        return Err(
                            "a double-quoted segment must be followed by '.' or end the path"
                                .into(),
                        )
                    }
                }
            } else {
                let mut ended = true;
                for c in chars.by_ref() {
                    match c {
                        '.' => {
                            ended = false;
                            break;
                        }
                        '"' | '\\' | '[' | ']' => {
                            return Err(format!(
                                "'{c}' is not allowed in an unquoted segment: write the segment \
                                 in double quotes, e.g. \"https://example.com/roles\""
                            ))
                        }
                        c if c.is_control() => {
                            return Err("a claim path cannot contain control characters".into())
                        }
                        c => seg.push(c),
                    }
                }
                if seg.is_empty() {
                    return Err(
                        "a claim path segment cannot be empty (a leading, trailing or doubled \
                         '.'); write a member name that contains '.' in double quotes"
                            .into(),
                    );
                }
                if ended {
                    segments.push(seg);
                    break;
                }
            }
            segments.push(seg);
            if chars.peek().is_none() {
                return Err("a claim path cannot end with '.'".into());
            }
            if segments.len() >= MAX_PATH_SEGMENTS {
                return Err(format!(
                    "a claim path has at most {MAX_PATH_SEGMENTS} segments"
                ));
            }
        }
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(format!(
                "a claim path has at most {MAX_PATH_SEGMENTS} segments"
            ));
        }
        Ok(ClaimPath(segments))
    }

    /// A path from member names as they are (no parsing, no escaping), e.g. a client id.
    pub fn from_segments<I, S>(segments: I) -> ClaimPath
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClaimPath(segments.into_iter().map(Into::into).collect())
    }

    /// The member names, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The value at this path, if every step is an object that has the member.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        let mut value = claims.get(first)?;
        for seg in rest {
            value = value.as_object()?.get(seg)?;
        }
        Some(value)
    }
}

impl fmt::Display for ClaimPath {
    /// The canonical written form: segments that need it are double-quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            let plain = !seg.is_empty()
                && !seg
                    .chars()
                    .any(|c| matches!(c, '.' | '"' | '\\' | '[' | ']') || c.is_control());
            if plain {
                f.write_str(seg)?;
            } else {
                f.write_str("\"")?;
                for c in seg.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}

/// A well-known identity provider whose claim layout edgegate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Keycloak: `realm_access.roles`, and `resource_access.<client_id>.roles` with `client_id`.
    Keycloak,
    /// Google: no roles in Google ID tokens; gate on identity or on `hd` (Workspace domain).
    Google,
    /// Microsoft Entra ID: `roles`, `groups` (object ids), permissions from `scp`.
    #[serde(alias = "entra")]
    Microsoft,
    /// Auth0: `permissions`, and roles under the Login Action's `namespace`.
    Auth0,
    /// Amazon Cognito: `cognito:groups`; scopes from `scope`.
    Cognito,
    /// Okta: `groups`; scopes from `scp`.
    Okta,
}

impl Preset {
    pub const ALL: [Preset; 6] = [
        Preset::Keycloak,
        Preset::Google,
        Preset::Microsoft,
        Preset::Auth0,
        Preset::Cognito,
        Preset::Okta,
    ];

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Keycloak => "keycloak",
            Preset::Google => "google",
            Preset::Microsoft => "microsoft",
            Preset::Auth0 => "auth0",
            Preset::Cognito => "cognito",
            Preset::Okta => "okta",
        }
    }

    /// The provider's `iss` value, with `{placeholders}` for the parts that are yours.
    pub fn issuer_hint(self) -> &'static str {
        match self {
            Preset::Keycloak => "https://{host}/realms/{realm}",
            Preset::Google => "https://accounts.google.com",
            Preset::Microsoft => "https://login.microsoftonline.com/{tenant}/v2.0",
            Preset::Auth0 => "https://{tenant}.{region}.auth0.com/",
            Preset::Cognito => "https://cognito-idp.{region}.amazonaws.com/{user_pool_id}",
            Preset::Okta => "https://{org}.okta.com/oauth2/default",
        }
    }

    /// The provider's JWKS URL, with `{placeholders}` for the parts that are yours.
    pub fn jwks_hint(self) -> &'static str {
        match self {
            Preset::Keycloak => "https://{host}/realms/{realm}/protocol/openid-connect/certs",
            Preset::Google => "https://www.googleapis.com/oauth2/v3/certs",
            Preset::Microsoft => "https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys",
            Preset::Auth0 => "https://{tenant}.{region}.auth0.com/.well-known/jwks.json",
            Preset::Cognito => {
                "https://cognito-idp.{region}.amazonaws.com/{user_pool_id}/.well-known/jwks.json"
            }
            Preset::Okta => "https://{org}.okta.com/oauth2/default/v1/keys",
        }
    }

    /// The algorithms the provider signs with by default (all of them: RS256).
    pub fn default_algs(self) -> &'static [Alg] {
        &[Alg::RS256]
    }

    /// The role paths the preset reads when the config lists none.
    pub fn default_roles(self, client_id: Option<&str>, namespace: Option<&str>) -> Vec<ClaimPath> {
        match self {
            Preset::Keycloak => {
                let mut v = vec![ClaimPath::from_segments(["realm_access", "roles"])];
                if let Some(client) = client_id {
                    v.push(ClaimPath::from_segments([
                        "resource_access",
                        client,
                        "roles",
                    ]));
                }
                v
            }
            Preset::Google => Vec::new(),
            Preset::Microsoft => vec![
                ClaimPath::from_segments(["roles"]),
                ClaimPath::from_segments(["groups"]),
            ],
            Preset::Auth0 => match namespace {
                Some(ns) if ns.ends_with('/') => {
                    vec![ClaimPath::from_segments([format!("{ns}roles")])]
                }
                Some(ns) => vec![ClaimPath::from_segments([format!("{ns}/roles")])],
                None => Vec::new(),
            },
            Preset::Cognito => vec![ClaimPath::from_segments(["cognito:groups"])],
            Preset::Okta => vec![ClaimPath::from_segments(["groups"])],
        }
    }

    /// The permission paths the preset reads when the config lists none.
    pub fn default_permissions(self) -> Vec<ClaimPath> {
        match self {
            Preset::Microsoft => vec![ClaimPath::from_segments(["scp"])],
            Preset::Auth0 => vec![ClaimPath::from_segments(["permissions"])],
            Preset::Keycloak | Preset::Google | Preset::Cognito | Preset::Okta => Vec::new(),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

crate::config::string_defaults! {
    default_subject => "sub",
    default_email => "email",
    default_name => "name",
}

fn default_space_separated() -> Vec<String> {
    vec!["scope".into(), "scp".into()]
}

/// Where a JWT provider's tokens carry the caller's roles, permissions and profile.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimsConfig {
    /// A well-known identity provider (`keycloak`, `google`, `microsoft`, `auth0`, `cognito`,
    /// `okta`) whose role and permission claims are used when `roles` / `permissions` are empty.
    pub preset: Option<Preset>,
    /// Claim paths to read roles from, e.g. `realm_access.roles` or
    /// `"https://desk.example.com/roles"` (double-quote a name that contains dots). Each value may
    /// be a string or an array of strings. Replaces the preset's role paths when non-empty.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Claim paths to read permissions from, e.g. `permissions`. Replaces the preset's when
    /// non-empty.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Claim path of the caller's stable id.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Claim path of the caller's email (ignored when the token says `email_verified: false`).
    #[serde(default = "default_email")]
    pub email: String,
    /// Claim path of the caller's display name.
    #[serde(default = "default_name")]
    pub name: String,
    /// Renames roles after extraction, e.g. `{"administrators": "admin"}`; unmapped roles stay.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
    /// Keycloak preset: the client whose client roles (`resource_access.<client_id>.roles`) count.
    pub client_id: Option<String>,
    /// Auth0 preset: the namespace of your Login Action's custom claims, e.g.
    /// `https://desk.example.com/`; roles are read from `<namespace>roles`.
    pub namespace: Option<String>,
    /// Claim paths whose string value is a space-separated list (like OAuth `scope`), when they
    /// are read as roles or permissions.
    #[serde(default = "default_space_separated")]
    pub space_separated: Vec<String>,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            preset: None,
            roles: Vec::new(),
            permissions: Vec::new(),
            subject: default_subject(),
            email: default_email(),
            name: default_name(),
            role_map: BTreeMap::new(),
            client_id: None,
            namespace: None,
            space_separated: default_space_separated(),
        }
    }
}

impl ClaimsConfig {
    /// Checks the section and builds the per-request mapping. Error paths are relative to the
    /// section (`roles[1]`, `client_id`...).
    pub fn compile(&self) -> Result<ClaimMapping, Vec<ConfigError>> {
        let mut errors = Vec::new();

        let mut roles = parse_list("roles", &self.roles, &mut errors);
        let mut permissions = parse_list("permissions", &self.permissions, &mut errors);
        let split = parse_list("space_separated", &self.space_separated, &mut errors);
        let subject = parse_one("subject", &self.subject, &mut errors);
        let email = parse_one("email", &self.email, &mut errors);
        let name = parse_one("name", &self.name, &mut errors);

        let preset_option = [
            (
                "client_id",
                &self.client_id,
                Preset::Keycloak,
                "client_id cannot be empty; remove it or name the Keycloak client",
                "client_id is used only by the keycloak preset (resource_access.<client_id>.roles); \
                 remove it, or list the path in roles",
            ),
            (
                "namespace",
                &self.namespace,
                Preset::Auth0,
                "namespace cannot be empty; remove it or give your Auth0 claim namespace",
                "namespace is used only by the auth0 preset; remove it, or list the roles claim \
                 in roles",
            ),
        ];
        // An option only one preset reads: not empty, and only with that preset.
        for (field, value, preset, empty, unused) in preset_option {
            match value {
                Some(v) if v.is_empty() => errors.push(ConfigError::new(field, empty)),
                Some(_) if self.preset != Some(preset) => {
                    errors.push(ConfigError::new(field, unused))
                }
                _ => {}
            }
        }

        if self.role_map.len() > MAX_ROLE_MAP {
            errors.push(ConfigError::new(
                "role_map",
                format!("at most {MAX_ROLE_MAP} entries"),
            ));
        }
        for (from, to) in &self.role_map {
            if from.is_empty() || to.is_empty() {
                errors.push(ConfigError::new(
                    "role_map",
                    "role names in role_map cannot be empty",
                ));
            } else if !usable(from) || !usable(to) {
                errors.push(ConfigError::new(
                    "role_map",
                    format!(
                        "role names are at most {MAX_STRING_BYTES} bytes without control \
                         characters"
                    ),
                ));
            }
        }

        if let Some(preset) = self.preset {
            if roles.is_empty() && self.roles.is_empty() {
                roles = preset.default_roles(self.client_id.as_deref(), self.namespace.as_deref());
            }
            if permissions.is_empty() && self.permissions.is_empty() {
                permissions = preset.default_permissions();
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let (Some(subject), Some(email), Some(name)) = (subject, email, name) else {
            return Err(vec![ConfigError::new(
                "subject",
                "claim paths could not be parsed",
            )]);
        };
        let source = |path: ClaimPath| Source {
            split: split.contains(&path),
            path,
        };
        Ok(ClaimMapping {
            subject,
            email,
            name,
            roles: roles.into_iter().map(source).collect(),
            permissions: permissions.into_iter().map(source).collect(),
            role_map: self.role_map.clone(),
        })
    }
}

fn parse_one(field: &str, text: &str, errors: &mut Vec<ConfigError>) -> Option<ClaimPath> {
    match ClaimPath::parse(text) {
        Ok(p) => Some(p),
        Err(msg) => {
            errors.push(ConfigError::new(field, msg));
            None
        }
    }
}

fn parse_list(field: &str, items: &[String], errors: &mut Vec<ConfigError>) -> Vec<ClaimPath> {
    if items.len() > MAX_PATHS {
        errors.push(ConfigError::new(
            field,
            format!("at most {MAX_PATHS} claim paths"),
        ));
    }
    let mut out: Vec<ClaimPath> = Vec::new();
    for (i, text) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if let Some(p) = parse_one(&at, text, errors) {
            if out.contains(&p) {
                errors.push(ConfigError::new(
                    at,
                    format!("the claim path {p} is listed twice"),
                ));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    path: ClaimPath,
    split: bool,
}

/// A compiled [`ClaimsConfig`]: reads a verified payload into an [`Identity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    subject: ClaimPath,
    email: ClaimPath,
    name: ClaimPath,
    roles: Vec<Source>,
    permissions: Vec<Source>,
    role_map: BTreeMap<String, String>,
}

impl Default for ClaimMapping {
    /// The mapping of an empty config: `sub`, `email`, `name`, no roles or permissions.
    fn default() -> Self {
        ClaimMapping {
            subject: ClaimPath::from_segments(["sub"]),
            email: ClaimPath::from_segments(["email"]),
            name: ClaimPath::from_segments(["name"]),
            roles: Vec::new(),
            permissions: Vec::new(),
            role_map: BTreeMap::new(),
        }
    }
}

/// A string worth keeping: non-empty, bounded, no control characters (values end up in headers).
fn usable(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_STRING_BYTES && !s.chars().any(char::is_control)
}

/// Ordered, de-duplicated, bounded collection of borrowed strings.
struct Collector<'a> {
    out: Vec<&'a str>,
    seen: BTreeSet<&'a str>,
}

impl<'a> Collector<'a> {
    fn new() -> Self {
        Collector {
            out: Vec::new(),
            seen: BTreeSet::new(),
        }
    }

    fn push(&mut self, s: &'a str) {
        if self.out.len() < MAX_VALUES && usable(s) && self.seen.insert(s) {
            self.out.push(s);
        }
    }

    /// A string (split on spaces when `split`) or an array of strings; anything else is ignored.
    fn value(&mut self, v: &'a Value, split: bool, map: Option<&'a BTreeMap<String, String>>) {
        let mut add = |s: &'a str| {
            let s = match map.and_then(|m| m.get(s)) {
                Some(to) => to.as_str(),
                None => s,
            };
            self.push(s);
        };
        match v {
            Value::String(s) if split => s.split(' ').for_each(&mut add),
            Value::String(s) => add(s),
            Value::Array(items) => items.iter().filter_map(Value::as_str).for_each(&mut add),
            _ => {}
        }
    }

    fn finish(self) -> Vec<String> {
        self.out.into_iter().map(str::to_owned).collect()
    }
}

fn string_at<'a>(path: &ClaimPath, claims: &'a Map<String, Value>) -> Option<&'a str> {
    path.lookup(claims)
        .and_then(Value::as_str)
        .filter(|s| usable(s))
}

impl ClaimMapping {
    /// Fills `identity` from a verified payload: `subject` (kept as it was when the claim is
    /// absent), and, overwriting what was there, `email`, `name`, `roles`, `permissions`,
    /// `scopes`, `amr` and `acr`.
    pub fn apply(&self, claims: &Map<String, Value>, identity: &mut Identity) {
        if let Some(sub) = string_at(&self.subject, claims) {
            identity.subject = sub.to_owned();
        }
        let unverified = claims.get("email_verified") == Some(&Value::Bool(false));
        identity.email = if unverified {
            None
        } else {
            string_at(&self.email, claims).map(str::to_owned)
        };
        identity.name = string_at(&self.name, claims).map(str::to_owned);

        let mut roles = Collector::new();
        for src in &self.roles {
            if let Some(v) = src.path.lookup(claims) {
                roles.value(v, src.split, Some(&self.role_map));
            }
        }
        identity.roles = roles.finish();

        let mut permissions = Collector::new();
        for src in &self.permissions {
            if let Some(v) = src.path.lookup(claims) {
                permissions.value(v, src.split, None);
            }
        }
        identity.permissions = permissions.finish();

        let mut scopes = Collector::new();
        for claim in ["scope", "scp"] {
            if let Some(v) = claims.get(claim) {
                scopes.value(v, true, None);
            }
        }
        identity.scopes = scopes.finish();

        let mut amr = Collector::new();
        if let Some(v) = claims.get("amr") {
            amr.value(v, false, None);
        }
        identity.amr = amr.finish();

        identity.acr = claims
            .get("acr")
            .and_then(Value::as_str)
            .filter(|s| usable(s))
            .map(str::to_owned);
    }

    /// The role paths in effect (after the preset), for `edgegate explain`-style output.
    pub fn role_paths(&self) -> impl Iterator<Item = &ClaimPath> {
        self.roles.iter().map(|s| &s.path)
    }

    /// The permission paths in effect (after the preset).
    pub fn permission_paths(&self) -> impl Iterator<Item = &ClaimPath> {
        self.permissions.iter().map(|s| &s.path)
    }
}

/// The largest NumericDate accepted, in seconds: 2^53 (the largest integer every JSON
/// implementation holds exactly; year 285 million). A larger `exp`, `nbf` or `iat` is refused as
/// malformed rather than clamped, so no parser disagreement can make a token live forever.
pub const MAX_NUMERIC_DATE: u64 = 1 << 53;

/// A NumericDate (RFC 7519 §2): seconds since the epoch, a non-negative JSON number of at most
/// [`MAX_NUMERIC_DATE`], possibly fractional. The fraction is kept and compared: `exp: 1000.5`
/// has expired at 1000.7 and not at 1000.2. The one parser for `exp`, `nbf` and `iat` of JWTs,
/// ID tokens and magic links.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct NumericDate(f64);

impl NumericDate {
    /// The claim `name` of `claims`: `Ok(None)` when absent; `MalformedClaims` when it is not a
    /// number, negative, not finite, or above [`MAX_NUMERIC_DATE`].
    pub fn parse(claims: &Map<String, Value>, name: &str) -> Result<Option<NumericDate>, Error> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => NumericDate::from_value(name, v).map(Some),
        }
    }

    /// Reads one JSON value as a NumericDate (`name` is only for the error message).
    pub fn from_value(name: &str, value: &Value) -> Result<NumericDate, Error> {
        let bad = || {
            Error::new(
                Reason::MalformedClaims,
                format!("{name} is not a valid NumericDate (a number of seconds from 0 to 2^53)"),
            )
        };
        let Value::Number(n) = value else {
            return Err(Error::new(
                Reason::MalformedClaims,
                format!("{name} is not a number"),
            ));
        };
        if let Some(u) = n.as_u64() {
            // Integers are checked as integers: 2^53 + 1 would round to 2^53 as a float.
            return if u <= MAX_NUMERIC_DATE {
                Ok(NumericDate(u as f64))
            } else {
                Err(bad())
            };
        }
        match n.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 && f <= MAX_NUMERIC_DATE as f64 => {
                Ok(NumericDate(f))
            }
            _ => Err(bad()),
        }
    }

    /// From whole seconds (tests, minting).
    pub fn from_secs(secs: u64) -> NumericDate {
        NumericDate(secs.min(MAX_NUMERIC_DATE) as f64)
    }

    /// The date in seconds, with its fraction.
    pub fn seconds(self) -> f64 {
        self.0
    }

    /// Whole seconds, rounded down: a cache or session built on an `exp` ends no later than it.
    pub fn floor_secs(self) -> u64 {
        self.0.floor() as u64
    }

    /// Whole seconds, rounded up: how long to remember something that is valid until this date.
    pub fn ceil_secs(self) -> u64 {
        self.0.ceil() as u64
    }

    /// True when `now` (seconds, possibly fractional) is at or past this date plus `skew`
    /// seconds: an `exp` that holds has expired.
    pub fn reached(self, now: f64, skew: u64) -> bool {
        now >= self.0 + skew as f64
    }

    /// True when this date is later than `now` plus `skew` seconds: an `nbf` not yet reached, an
    /// `iat` in the future.
    pub fn after(self, now: f64, skew: u64) -> bool {
        self.0 > now + skew as f64
    }

    /// `self - earlier` in seconds (negative when `earlier` is later).
    pub fn since(self, earlier: NumericDate) -> f64 {
        self.0 - earlier.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::CredentialKind;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn config(v: Value) -> ClaimsConfig {
        serde_json::from_value(v).unwrap()
    }

    fn run(cfg: Value, payload: Value) -> Identity {
        let mapping = config(cfg).compile().unwrap();
        let mut id = Identity::new("unset", CredentialKind::Jwt, "p");
        mapping.apply(&obj(payload), &mut id);
        id
    }

    fn seg(p: &str) -> Vec<String> {
        ClaimPath::parse(p).unwrap().segments().to_vec()
    }

    #[test]
    fn paths_parse() {
        assert_eq!(seg("roles"), ["roles"]);
        assert_eq!(seg("realm_access.roles"), ["realm_access", "roles"]);
        assert_eq!(seg("cognito:groups"), ["cognito:groups"]);
        assert_eq!(
            seg("\"https://desk.example.com/roles\""),
            ["https://desk.example.com/roles"]
        );
        assert_eq!(
            seg("resource_access.\"desk.web\".roles"),
            ["resource_access", "desk.web", "roles"]
        );
        assert_eq!(seg(r#""a\"b\\c".d"#), ["a\"b\\c", "d"]);
        assert_eq!(seg("\"x\""), ["x"]);
        assert_eq!(seg("a b.c"), ["a b", "c"]);
    }

    #[test]
    fn malformed_paths_are_refused() {
        let long = "a.".repeat(MAX_PATH_SEGMENTS) + "a";
        let huge = "a".repeat(MAX_PATH_BYTES + 1);
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "\"a",
            "\"a\"b",
            "\"a\".",
            "\"\"",
            r#""a\nb""#,
            "a\"b",
            "a\\b",
            "a[0]",
            "[\"a\"]",
            "a\u{0}b",
            "\"a\u{7}\"",
            long.as_str(),
            huge.as_str(),
        ] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let max = "a.".repeat(MAX_PATH_SEGMENTS - 1) + "a";
        assert_eq!(
            ClaimPath::parse(&max).unwrap().segments().len(),
            MAX_PATH_SEGMENTS
        );
    }

    #[test]
    fn paths_display_canonically_and_round_trip() {
        for text in [
            "roles",
            "realm_access.roles",
            "resource_access.\"desk.web\".roles",
            "\"https://desk.example.com/roles\"",
            r#""a\"b\\c".d"#,
            "cognito:groups",
        ] {
            let p = ClaimPath::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(ClaimPath::parse(&p.to_string()).unwrap(), p);
        }
        assert_eq!(
            ClaimPath::parse("\"plain\".x").unwrap().to_string(),
            "plain.x"
        );
    }

    #[test]
    fn lookup_stops_at_non_objects() {
        let claims = obj(json!({"a": {"b": ["x"]}, "s": "str"}));
        let p = ClaimPath::parse("a.b").unwrap();
        assert_eq!(p.lookup(&claims), Some(&json!(["x"])));
        assert_eq!(ClaimPath::parse("a.b.c").unwrap().lookup(&claims), None);
        assert_eq!(ClaimPath::parse("s.x").unwrap().lookup(&claims), None);
        assert_eq!(ClaimPath::parse("missing").unwrap().lookup(&claims), None);
    }

    #[test]
    fn keycloak_access_token() {
        let payload = json!({
            "exp": 1_700_000_300, "iat": 1_700_000_000, "jti": "b3b7…",
            "iss": "https://sso.example.com/realms/desk",
            "aud": ["desk.web", "account"],
            "sub": "f3c6a0c4-8c1e-4f5e-9a3e-2b1c7d0e9f11",
            "typ": "Bearer", "azp": "desk.web", "session_state": "2c7…", "acr": "1",
            "realm_access": {"roles": ["offline_access", "uma_authorization", "agent"]},
            "resource_access": {
                "desk.web": {"roles": ["desk-admin", "agent"]},
                "account": {"roles": ["manage-account", "view-profile"]}
            },
            "scope": "openid email profile",
            "email_verified": true, "name": "Ada Lovelace",
            "preferred_username": "ada", "email": "ada@example.com"
        });
        let id = run(
            json!({"preset": "keycloak", "client_id": "desk.web",
                   "role_map": {"desk-admin": "admin"}}),
            payload.clone(),
        );
        assert_eq!(id.subject, "f3c6a0c4-8c1e-4f5e-9a3e-2b1c7d0e9f11");
        assert_eq!(id.email.as_deref(), Some("ada@example.com"));
        assert_eq!(id.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(
            id.roles,
            ["offline_access", "uma_authorization", "agent", "admin"]
        );
        assert!(id.permissions.is_empty());
        assert_eq!(id.scopes, ["openid", "email", "profile"]);
        assert_eq!(id.acr.as_deref(), Some("1"));

        // Without client_id only realm roles count; the "account" client's roles never do.
        let id = run(json!({"preset": "keycloak"}), payload);
        assert_eq!(id.roles, ["offline_access", "uma_authorization", "agent"]);
    }

    #[test]
    fn entra_id_access_token() {
        let payload = json!({
            "aud": "api://desk", "iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
            "iat": 1_700_000_000, "nbf": 1_700_000_000, "exp": 1_700_003_600,
            "aio": "AXQAi/8…", "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azpacr": "0",
            "groups": ["3f2c1a9e-7b7d-4e0b-9c53-0d6f7a1c2b3d"],
            "name": "Ada Lovelace",
            "oid": "00000000-0000-0000-66f3-3332eca7ea81",
            "preferred_username": "ada@contoso.com",
            "roles": ["Tickets.Admin"],
            "scp": "User.Read tickets.write",
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "amr": ["pwd", "mfa"],
            "ver": "2.0"
        });
        let id = run(
            json!({"preset": "microsoft", "subject": "oid",
                   "role_map": {"3f2c1a9e-7b7d-4e0b-9c53-0d6f7a1c2b3d": "support"}}),
            payload,
        );
        assert_eq!(id.subject, "00000000-0000-0000-66f3-3332eca7ea81");
        assert_eq!(id.roles, ["Tickets.Admin", "support"]);
        assert_eq!(id.permissions, ["User.Read", "tickets.write"]);
        assert_eq!(id.scopes, ["User.Read", "tickets.write"]);
        assert_eq!(id.amr, ["pwd", "mfa"]);
        assert_eq!(id.email, None);
        // "entra" is an alias.
        assert_eq!(
            config(json!({"preset": "entra"})).preset,
            Some(Preset::Microsoft)
        );
    }

    #[test]
    fn auth0_access_token() {
        let payload = json!({
            "https://desk.example.com/roles": ["admin", "agent"],
            "https://desk.example.com/email": "ada@example.com",
            "iss": "https://desk.eu.auth0.com/",
            "sub": "auth0|64b7f0c2e1d3a4b5c6d7e8f9",
            "aud": ["https://api.desk.example.com", "https://desk.eu.auth0.com/userinfo"],
            "iat": 1_700_000_000, "exp": 1_700_086_400,
            "scope": "openid profile email read:tickets",
            "azp": "q8Jc…",
            "permissions": ["read:tickets", "write:tickets"]
        });
        for ns in ["https://desk.example.com/", "https://desk.example.com"] {
            let id = run(json!({"preset": "auth0", "namespace": ns}), payload.clone());
            assert_eq!(id.subject, "auth0|64b7f0c2e1d3a4b5c6d7e8f9");
            assert_eq!(id.roles, ["admin", "agent"]);
            assert_eq!(id.permissions, ["read:tickets", "write:tickets"]);
            assert_eq!(id.scopes, ["openid", "profile", "email", "read:tickets"]);
        }
        // Without a namespace: permissions only.
        let id = run(json!({"preset": "auth0"}), payload.clone());
        assert!(id.roles.is_empty());
        assert_eq!(id.permissions, ["read:tickets", "write:tickets"]);
        // Or spell the namespaced claims out, double-quoted.
        let id = run(
            json!({"preset": "auth0",
                   "roles": ["\"https://desk.example.com/roles\""],
                   "email": "\"https://desk.example.com/email\""}),
            payload,
        );
        assert_eq!(id.roles, ["admin", "agent"]);
        assert_eq!(id.email.as_deref(), Some("ada@example.com"));
    }

    #[test]
    fn cognito_tokens() {
        let access = json!({
            "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "cognito:groups": ["agents", "admins"],
            "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEfGhI",
            "client_id": "1example23456789", "origin_jti": "…", "event_id": "…",
            "token_use": "access",
            "scope": "aws.cognito.signin.user.admin tickets/read",
            "auth_time": 1_700_000_000, "exp": 1_700_003_600, "iat": 1_700_000_000,
            "jti": "…", "username": "ada"
        });
        let id = run(json!({"preset": "cognito"}), access);
        assert_eq!(id.roles, ["agents", "admins"]);
        assert_eq!(id.scopes, ["aws.cognito.signin.user.admin", "tickets/read"]);
        assert!(id.permissions.is_empty());
        let id_token = json!({
            "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "cognito:groups": "agents",
            "email_verified": true, "email": "ada@example.com",
            "cognito:username": "ada", "token_use": "id"
        });
        let id = run(json!({"preset": "cognito"}), id_token);
        assert_eq!(id.roles, ["agents"]);
        assert_eq!(id.email.as_deref(), Some("ada@example.com"));
    }

    #[test]
    fn okta_access_token() {
        let payload = json!({
            "ver": 1, "jti": "AT.…", "iss": "https://desk.okta.com/oauth2/default",
            "aud": "api://default", "iat": 1_700_000_000, "exp": 1_700_003_600,
            "cid": "0oa…", "uid": "00u…",
            "scp": ["openid", "tickets.read"],
            "auth_time": 1_700_000_000, "sub": "ada@example.com",
            "groups": ["Everyone", "Agents"]
        });
        let id = run(
            json!({"preset": "okta", "role_map": {"Agents": "agent"}}),
            payload,
        );
        assert_eq!(id.subject, "ada@example.com");
        assert_eq!(id.roles, ["Everyone", "agent"]);
        assert_eq!(id.scopes, ["openid", "tickets.read"]);
        assert!(id.permissions.is_empty());
    }

    #[test]
    fn google_id_token() {
        let payload = json!({
            "iss": "https://accounts.google.com",
            "azp": "1234987819200.apps.googleusercontent.com",
            "aud": "1234987819200.apps.googleusercontent.com",
            "sub": "10769150350006150715113082367",
            "hd": "example.com", "email": "ada@example.com", "email_verified": true,
            "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q", "name": "Ada Lovelace",
            "picture": "https://lh3.googleusercontent.com/a/x", "given_name": "Ada",
            "iat": 1_700_000_000, "exp": 1_700_003_600
        });
        let id = run(json!({"preset": "google"}), payload.clone());
        assert!(id.roles.is_empty() && id.permissions.is_empty() && id.scopes.is_empty());
        assert_eq!(id.email.as_deref(), Some("ada@example.com"));
        assert_eq!(id.name.as_deref(), Some("Ada Lovelace"));
        // The documented recipe: the Workspace domain as a role.
        let id = run(
            json!({"preset": "google", "roles": ["hd"], "role_map": {"example.com": "staff"}}),
            payload,
        );
        assert_eq!(id.roles, ["staff"]);
    }

    #[test]
    fn preset_hints() {
        assert_eq!(Preset::Google.issuer_hint(), "https://accounts.google.com");
        assert_eq!(
            Preset::Microsoft.issuer_hint(),
            "https://login.microsoftonline.com/{tenant}/v2.0"
        );
        for p in Preset::ALL {
            assert_eq!(p.default_algs(), &[Alg::RS256]);
            assert!(p.issuer_hint().starts_with("https://"));
            assert!(p.jwks_hint().starts_with("https://"));
            let round: Preset = serde_json::from_value(json!(p.name())).unwrap();
            assert_eq!(round, p);
        }
    }

    #[test]
    fn unverified_email_is_dropped() {
        let id = run(
            json!({}),
            json!({"sub": "u", "email": "ada@example.com", "email_verified": false}),
        );
        assert_eq!(id.email, None);
        // A missing email_verified does not drop it (many access tokens lack it).
        let id = run(json!({}), json!({"sub": "u", "email": "ada@example.com"}));
        assert_eq!(id.email.as_deref(), Some("ada@example.com"));
    }

    #[test]
    fn role_map_renames_and_dedups() {
        let id = run(
            json!({"roles": ["roles", "groups"],
                   "role_map": {"administrators": "admin", "Admins": "admin"}}),
            json!({"sub": "u", "roles": ["administrators", "admin", "x"],
                   "groups": ["Admins", "x", "y"]}),
        );
        assert_eq!(id.roles, ["admin", "x", "y"]);
    }

    #[test]
    fn user_paths_replace_the_presets() {
        let id = run(
            json!({"preset": "keycloak", "roles": ["groups"], "permissions": ["perms"]}),
            json!({"sub": "u", "realm_access": {"roles": ["r"]}, "groups": ["g"],
                   "perms": "p1"}),
        );
        assert_eq!(id.roles, ["g"]);
        assert_eq!(id.permissions, ["p1"]);
    }

    #[test]
    fn odd_values_grant_nothing() {
        let id = run(
            json!({"roles": ["roles", "r2", "r3", "r4"]}),
            json!({"sub": 42, "roles": [1, "a", null, {"x": "b"}, ["c"], true, ""],
                   "r2": {"a": "b"}, "r3": true, "r4": 7, "amr": "pwd", "acr": 2,
                   "scope": 5, "name": ["x"]}),
        );
        assert_eq!(id.subject, "unset");
        assert_eq!(id.roles, ["a"]);
        assert_eq!(id.amr, ["pwd"]);
        assert_eq!(id.acr, None);
        assert!(id.scopes.is_empty());
        assert_eq!(id.name, None);
    }

    #[test]
    fn strings_split_only_at_space_separated_paths() {
        let payload = json!({"sub": "u", "roles": "Ticket Admin", "perm": "a b  c",
                             "scope": "s1  s2 s1", "scp": ["s3", "s1"]});
        let id = run(
            json!({"roles": ["roles"], "permissions": ["perm"]}),
            payload.clone(),
        );
        assert_eq!(id.roles, ["Ticket Admin"]);
        assert_eq!(id.permissions, ["a b  c"]);
        assert_eq!(id.scopes, ["s1", "s2", "s3"]);
        let id = run(
            json!({"permissions": ["perm"], "space_separated": ["perm"]}),
            payload,
        );
        assert_eq!(id.permissions, ["a", "b", "c"]);
    }

    #[test]
    fn values_are_bounded() {
        let many: Vec<String> = (0..1000).map(|i| format!("r{i}")).collect();
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        let id = run(
            json!({"roles": ["roles"]}),
            json!({"sub": long.clone(), "roles": many, "name": long.clone(),
                   "amr": (0..1000).map(|i| i.to_string()).collect::<Vec<_>>()}),
        );
        assert_eq!(id.roles.len(), MAX_VALUES);
        assert_eq!(id.roles[0], "r0");
        assert_eq!(id.amr.len(), MAX_VALUES);
        assert_eq!(id.subject, "unset");
        assert_eq!(id.name, None);
        let id = run(
            json!({"roles": ["roles"]}),
            json!({"roles": [long, "ok", "a\r\nX-Injected: 1", "b\u{0}"],
                   "email": "a@b\r\n"}),
        );
        assert_eq!(id.roles, ["ok"]);
        assert_eq!(id.email, None);
    }

    #[test]
    fn apply_overwrites_lists() {
        let mapping = config(json!({"roles": ["roles"]})).compile().unwrap();
        let mut id = Identity::new("s", CredentialKind::Jwt, "p");
        id.roles = vec!["stale".into()];
        id.email = Some("stale@example.com".into());
        mapping.apply(&obj(json!({"roles": ["fresh"]})), &mut id);
        assert_eq!(id.roles, ["fresh"]);
        assert_eq!(id.email, None);
        assert_eq!(id.subject, "s");
    }

    #[test]
    fn config_errors_are_collected_with_paths() {
        let errs = config(json!({
            "roles": ["ok", "a..b", "ok"],
            "permissions": ["\"open"],
            "subject": "",
            "client_id": "desk",
            "namespace": "https://x/",
            "role_map": {"": "admin"}
        }))
        .compile()
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(ConfigError::path).collect();
        assert_eq!(
            paths,
            [
                "roles[1]",
                "roles[2]",
                "permissions[0]",
                "subject",
                "client_id",
                "namespace",
                "role_map"
            ]
        );
        let errs = config(json!({"preset": "keycloak", "client_id": ""}))
            .compile()
            .unwrap_err();
        assert_eq!(errs[0].path(), "client_id");
        assert!(config(json!({"preset": "keycloak", "client_id": "desk"}))
            .compile()
            .is_ok());
        assert!(
            config(json!({"preset": "auth0", "namespace": "https://x/"}))
                .compile()
                .is_ok()
        );
    }

    #[test]
    fn config_is_strict_and_defaults_sensibly() {
        assert!(serde_json::from_value::<ClaimsConfig>(json!({"rolez": []})).is_err());
        assert!(serde_json::from_value::<ClaimsConfig>(json!({"preset": "ping"})).is_err());
        let c = config(json!({}));
        assert_eq!(c, ClaimsConfig::default());
        assert_eq!(c.subject, "sub");
        assert_eq!(c.compile().unwrap(), ClaimMapping::default());
    }
}
