//! The access rules: their config, the compiled [`Rule`] and the ordered [`Rules`].
//!
//! The config has an ordered list `rules` and a `default_rule`. A request is matched against the
//! rules in order and the first whose `match` fits decides; when none fits, `default_rule` does
//! (by default it lets in any authenticated caller and nobody else). A rule:
//!
//! ```json
//! { "name": "ticket-comments",
//!   "match": { "path": { "glob": "/tickets/*/comments/**" }, "methods": ["GET", "POST"] },
//!   "credentials": ["session", "jwt"],
//!   "require": { "roles_any": ["agent", "admin"] },
//!   "login_url": "/login" }
//! ```
//!
//! - `match`: which requests (path and methods); see [`crate::matcher`].
//! - `credentials`: the kinds accepted, in the order the request is searched for them (default
//!   `["session", "jwt", "api_key"]`; magic links are accepted only where listed). The development
//!   mode's synthetic identity is accepted by every rule (dev mode is refused in production by
//!   the config loader).
//! - `require.public: true`: anyone may pass, with or without a credential; such a rule cannot
//!   also require roles, permissions, scopes or MFA.
//! - `require.roles_any`, `roles_all`, `permissions`, `scopes`, `mfa`: what the caller must have;
//!   see [`crate::policy`].
//! - `login_url`: where a browser without a credential is redirected (a path on this site);
//!   default: the `login` section's `login_path` when there is one, else a 401 like any client.
//!
//! [`Rule::authorize`] checks, in this order, and refuses with the first failure: credential kind
//! (`credential_not_accepted`), then the [`crate::policy`] checks: path scope (`out_of_scope`),
//! roles (`missing_role`), permissions (`missing_permission`), scopes (`missing_scope`), MFA
//! (`mfa_required`).

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Error, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::matcher::{MatchConfig, Route};
use crate::policy::{Mfa, Requirements};

/// At most this many rules.
pub const MAX_RULES: usize = 1024;

/// At most this many names per requirement list.
const MAX_NAMES: usize = 256;

/// The credential kinds a rule accepts when it lists none.
pub fn default_credentials() -> Vec<CredentialKind> {
    vec![
        CredentialKind::Session,
        CredentialKind::Jwt,
        CredentialKind::ApiKey,
    ]
}

/// Multi-factor authentication a rule requires; every condition given must hold.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MfaConfig {
    /// The token's `amr` must name at least one of these methods, e.g. `["mfa", "otp", "hwk"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr_any: Vec<String>,
    /// The token's `acr` must equal this value.
    pub acr: Option<String>,
}

/// What the caller must have.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RequireConfig {
    /// Anyone may pass, with or without a credential.
    #[serde(default)]
    pub public: bool,
    /// The caller must have at least one of these roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles_any: Vec<String>,
    /// The caller must have every one of these roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles_all: Vec<String>,
    /// The caller must have every one of these permissions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// The caller's token must carry every one of these OAuth scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Multi-factor authentication (`amr` / `acr`).
    pub mfa: Option<MfaConfig>,
}

/// The rule that applies when no rule matches.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DefaultRuleConfig {
    /// Credential kinds accepted, in the order they are looked for.
    #[serde(default = "default_credentials")]
    pub credentials: Vec<CredentialKind>,
    /// What the caller must have; by default, any accepted credential.
    #[serde(default)]
    pub require: RequireConfig,
    /// Where browsers without a credential are sent (a path on this site, e.g. `/login`).
    pub login_url: Option<String>,
}

impl Default for DefaultRuleConfig {
    fn default() -> Self {
        DefaultRuleConfig {
            credentials: default_credentials(),
            require: RequireConfig::default(),
            login_url: None,
        }
    }
}

/// One access rule: which requests, which credentials, what they must carry.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A unique name, used in logs, metrics and error messages.
    pub name: String,
    /// Which requests the rule applies to; rules are tried in order, the first that fits decides.
    #[serde(rename = "match")]
    pub matches: MatchConfig,
    /// Credential kinds accepted, in the order they are looked for
    /// (`session`, `jwt`, `api_key`, `magic_link`).
    #[serde(default = "default_credentials")]
    pub credentials: Vec<CredentialKind>,
    /// What the caller must have; by default, any accepted credential.
    #[serde(default)]
    pub require: RequireConfig,
    /// Where browsers without a credential are sent (a path on this site, e.g. `/login`).
    pub login_url: Option<String>,
}

fn check_names(field: &str, names: &[String], errors: &mut Vec<ConfigError>) {
    if names.len() > MAX_NAMES {
        errors.push(ConfigError::new(
            field,
            format!("at most {MAX_NAMES} names"),
        ));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.chars().any(char::is_control) {
            errors.push(ConfigError::new(
                format!("{field}[{i}]"),
                "names cannot be empty or contain control characters",
            ));
        }
    }
}

/// A path on this site: starts with one `/`, no `\`, no whitespace or control characters.
fn is_local_path(url: &str) -> bool {
    url.starts_with('/')
        && !url.starts_with("//")
        && !url.contains('\\')
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// A compiled rule: its route (which requests) and its requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    name: String,
    route: Route,
    credentials: Vec<CredentialKind>,
    public: bool,
    requirements: Requirements,
    login_url: Option<String>,
}

fn check_credentials(credentials: &[CredentialKind], public: bool, errors: &mut Vec<ConfigError>) {
    for (i, c) in credentials.iter().enumerate() {
        if *c == CredentialKind::Dev {
            errors.push(ConfigError::new(
                format!("credentials[{i}]"),
                "dev is not listed in rules: development mode applies to every rule",
            ));
        } else if credentials.iter().take(i).any(|o| o == c) {
            errors.push(ConfigError::new(
                format!("credentials[{i}]"),
                format!("{} is listed twice", c.code()),
            ));
        }
    }
    if credentials.is_empty() && !public {
        errors.push(ConfigError::new(
            "credentials",
            "a rule that is not public must accept at least one credential kind",
        ));
    }
}

fn compile_mfa(m: &MfaConfig, errors: &mut Vec<ConfigError>) -> Mfa {
    check_names("require.mfa.amr_any", &m.amr_any, errors);
    if m.acr.as_deref().is_some_and(str::is_empty) {
        errors.push(ConfigError::new("require.mfa.acr", "acr cannot be empty"));
    }
    if m.amr_any.is_empty() && m.acr.is_none() {
        errors.push(ConfigError::new(
            "require.mfa",
            "mfa needs amr_any (e.g. [\"mfa\"]) or acr; remove it to require no MFA",
        ));
    }
    Mfa {
        amr_any: m.amr_any.clone(),
        acr: m.acr.clone(),
    }
}

/// A public rule lets anyone in, so it cannot also require anything.
fn check_public(require: &RequireConfig, errors: &mut Vec<ConfigError>) {
    if !require.public {
        return;
    }
    let mut contradicts = Vec::new();
    for (field, empty) in [
        ("roles_any", require.roles_any.is_empty()),
        ("roles_all", require.roles_all.is_empty()),
        ("permissions", require.permissions.is_empty()),
        ("scopes", require.scopes.is_empty()),
        ("mfa", require.mfa.is_none()),
    ] {
        if !empty {
            contradicts.push(field);
        }
    }
    if !contradicts.is_empty() {
        errors.push(ConfigError::new(
            "require.public",
            format!(
                "a public rule lets anyone in, so it cannot also require {}; remove \
                 public or the requirements",
                contradicts.join(", ")
            ),
        ));
    }
}

/// Compiles a `require` section (without `public`, which the rule keeps) into the checks
/// [`crate::policy`] runs. Error paths start with `require.`.
pub(crate) fn compile_require(require: &RequireConfig) -> Result<Requirements, Vec<ConfigError>> {
    let mut errors = Vec::new();
    check_names("require.roles_any", &require.roles_any, &mut errors);
    check_names("require.roles_all", &require.roles_all, &mut errors);
    check_names("require.permissions", &require.permissions, &mut errors);
    check_names("require.scopes", &require.scopes, &mut errors);
    let mfa = require.mfa.as_ref().map(|m| compile_mfa(m, &mut errors));
    check_public(require, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Requirements {
        roles_any: require.roles_any.clone(),
        roles_all: require.roles_all.clone(),
        permissions: require.permissions.clone(),
        scopes: require.scopes.clone(),
        mfa,
    })
}

fn check_login_url(login_url: Option<&str>, errors: &mut Vec<ConfigError>) {
    if login_url.is_some_and(|url| !is_local_path(url)) {
        errors.push(ConfigError::new(
            "login_url",
            "login_url must be a path on this site starting with a single '/', e.g. /login",
        ));
    }
}

impl Rule {
    /// Compiles one rule, route and requirements together. Error paths are relative to the rule
    /// (`match.path`, `credentials`, `require.mfa`); the name is checked by [`Rules::compile`],
    /// which sees the other rules.
    pub fn compile(config: &RuleConfig) -> Result<Rule, Vec<ConfigError>> {
        let route = Route::compile(&config.matches)
            .map_err(|es| es.into_iter().map(|e| e.at("match")).collect::<Vec<_>>());
        Rule::build(
            &config.name,
            route,
            &config.credentials,
            &config.require,
            config.login_url.as_deref(),
        )
    }

    /// Compiles the default rule: named `default`, it covers every request.
    pub fn compile_default(config: &DefaultRuleConfig) -> Result<Rule, Vec<ConfigError>> {
        Rule::build(
            "default",
            Ok(Route::any()),
            &config.credentials,
            &config.require,
            config.login_url.as_deref(),
        )
    }

    fn build(
        name: &str,
        route: Result<Route, Vec<ConfigError>>,
        credentials: &[CredentialKind],
        require: &RequireConfig,
        login_url: Option<&str>,
    ) -> Result<Rule, Vec<ConfigError>> {
        let (route, mut errors) = match route {
            Ok(route) => (Some(route), Vec::new()),
            Err(es) => (None, es),
        };
        check_credentials(credentials, require.public, &mut errors);
        let requirements = match compile_require(require) {
            Ok(r) => Some(r),
            Err(es) => {
                errors.extend(es);
                None
            }
        };
        check_login_url(login_url, &mut errors);
        match (route, requirements) {
            (Some(route), Some(requirements)) if errors.is_empty() => Ok(Rule {
                name: name.to_owned(),
                route,
                credentials: credentials.to_vec(),
                public: require.public,
                requirements,
                login_url: login_url.map(str::to_owned),
            }),
            _ => Err(errors),
        }
    }

    /// Whether a request falls under this rule's route.
    pub fn matches(&self, method: &str, normalized_path: &str) -> bool {
        self.route.matches(method, normalized_path)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Anyone may pass.
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// The credential kinds accepted, in the order to look for them.
    pub fn credentials(&self) -> &[CredentialKind] {
        &self.credentials
    }

    /// Whether the rule accepts this credential kind (dev mode's identity is always accepted).
    pub fn accepts(&self, kind: CredentialKind) -> bool {
        kind == CredentialKind::Dev || self.credentials.contains(&kind)
    }

    /// Where to send a browser that has no credential.
    pub fn login_url(&self) -> Option<&str> {
        self.login_url.as_deref()
    }

    /// Checks a verified identity against the rule for a request to `normalized_path` (from
    /// [`crate::matcher::normalize_path`]). A public rule lets every identity pass.
    pub fn authorize(&self, identity: &Identity, normalized_path: &str) -> Result<(), Error> {
        if self.public {
            return Ok(());
        }
        if !self.accepts(identity.credential) {
            return Err(Error::new(
                Reason::CredentialNotAccepted,
                format!(
                    "rule \"{}\" does not accept {} credentials",
                    self.name,
                    identity.credential.code()
                ),
            ));
        }
        self.requirements.authorize(identity, normalized_path)
    }
}

/// The compiled rule list and the default rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
    default: Rule,
}

/// A rule's name must be set, not `default`, and unique. Error paths: `rules[2].name`.
fn check_name(rules: &[RuleConfig], i: usize, errors: &mut Vec<ConfigError>) {
    let Some(rc) = rules.get(i) else {
        return;
    };
    let at = format!("rules[{i}].name");
    if rc.name.trim().is_empty() {
        errors.push(ConfigError::new(at, "a rule needs a name"));
    } else if rc.name == "default" {
        errors.push(ConfigError::new(
            at,
            "\"default\" is the name of default_rule; choose another",
        ));
    } else if let Some(j) = rules.iter().take(i).position(|o| o.name == rc.name) {
        errors.push(ConfigError::new(
            at,
            format!("the name \"{}\" is also used by rules[{j}]", rc.name),
        ));
    }
}

impl Rules {
    /// Compiles `rules` and `default_rule`. Error paths: `rules[2].match.path`,
    /// `default_rule.require`...
    pub fn compile(
        rules: &[RuleConfig],
        default: &DefaultRuleConfig,
    ) -> Result<Rules, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if rules.len() > MAX_RULES {
            errors.push(ConfigError::new(
                "rules",
                format!("at most {MAX_RULES} rules"),
            ));
        }
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rc) in rules.iter().enumerate() {
            check_name(rules, i, &mut errors);
            match Rule::compile(rc) {
                Ok(rule) => compiled.push(rule),
                Err(es) => errors.extend(es.into_iter().map(|e| e.at(&format!("rules[{i}]")))),
            }
        }
        // A rule after one that fits every request it fits is never used: almost always a
        // broader rule put first (a public `/` before a protected `/admin` makes it public).
        if compiled.len() == rules.len() {
            for (i, later) in compiled.iter().enumerate() {
                if let Some((j, first)) = compiled
                    .iter()
                    .enumerate()
                    .take(i)
                    .find(|(_, r)| r.route.shadows(&later.route))
                {
                    errors.push(ConfigError::new(
                        format!("rules[{i}].match"),
                        format!(
                            "rule \"{}\" is never used: rules[{j}] (\"{}\") comes first and fits every \
                             request it fits (the first rule that fits decides); put the more \
                             specific rule first",
                            later.name, first.name
                        ),
                    ));
                }
            }
        }
        match Rule::compile_default(default) {
            Ok(default) if errors.is_empty() => Ok(Rules {
                rules: compiled,
                default,
            }),
            Ok(_) => Err(errors),
            Err(es) => {
                errors.extend(es.into_iter().map(|e| e.at("default_rule")));
                Err(errors)
            }
        }
    }

    /// The rule for a request: the first that fits, else the default rule. `normalized_path`
    /// must come from [`crate::matcher::normalize_path`]. Does not allocate.
    pub fn find(&self, method: &str, normalized_path: &str) -> &Rule {
        self.rules
            .iter()
            .find(|r| r.matches(method, normalized_path))
            .unwrap_or(&self.default)
    }

    /// As [`Rules::find`], the rule's index for [`Rules::get`] (the default rule's is the
    /// number of rules).
    pub fn find_index(&self, method: &str, normalized_path: &str) -> usize {
        self.rules
            .iter()
            .position(|r| r.matches(method, normalized_path))
            .unwrap_or(self.rules.len())
    }

    /// The rule at an index from [`Rules::find_index`] (the default rule past the end).
    pub fn get(&self, index: usize) -> &Rule {
        self.rules.get(index).unwrap_or(&self.default)
    }

    /// The rules in order (without the default rule).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule that applies when no other fits.
    pub fn default_rule(&self) -> &Rule {
        &self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::normalize_path;
    use crate::policy::tests::ident;
    use crate::test_support::error_paths;
    use serde_json::json;

    /// A rule with these requirements, default credentials, for every request.
    fn rule(require: serde_json::Value) -> Rule {
        let require: RequireConfig = serde_json::from_value(require).unwrap();
        compile_rule("r", &default_credentials(), &require, None).unwrap()
    }

    /// Compiles a rule that matches every request.
    fn compile_rule(
        name: &str,
        credentials: &[CredentialKind],
        require: &RequireConfig,
        login_url: Option<&str>,
    ) -> Result<Rule, Vec<ConfigError>> {
        Rule::compile(&RuleConfig {
            name: name.to_owned(),
            matches: MatchConfig::default(),
            credentials: credentials.to_vec(),
            require: require.clone(),
            login_url: login_url.map(str::to_owned),
        })
    }

    fn refusal(r: &Rule, id: &Identity, path: &str) -> (Reason, String) {
        let e = r.authorize(id, path).unwrap_err();
        (e.reason(), e.message().to_owned())
    }

    fn rules(v: serde_json::Value, default: serde_json::Value) -> Result<Rules, Vec<ConfigError>> {
        let rules: Vec<RuleConfig> = serde_json::from_value(v).unwrap();
        let default: DefaultRuleConfig = serde_json::from_value(default).unwrap();
        Rules::compile(&rules, &default)
    }

    #[test]
    fn a_rule_that_a_rule_before_it_covers_is_refused() {
        let pair = |first: serde_json::Value, later: serde_json::Value| {
            rules(
                json!([{"name": "first", "match": first}, {"name": "later", "match": later}]),
                json!({}),
            )
        };
        let shadowed = [
            (
                json!({"path": {"prefix": "/"}}),
                json!({"path": {"prefix": "/admin"}}),
            ),
            (json!({"path": {"prefix": "/"}}), json!({})),
            (
                json!({}),
                json!({"path": {"exact": "/x"}, "methods": ["GET"]}),
            ),
            (
                json!({"path": {"prefix": "/api"}}),
                json!({"path": {"exact": "/api/x"}}),
            ),
            (
                json!({"path": {"prefix": "/api/"}}),
                json!({"path": {"prefix": "/api/v1"}}),
            ),
            (
                json!({"path": {"prefix": "/api"}}),
                json!({"path": {"prefix": "/api"}}),
            ),
            (
                json!({"path": {"prefix": "/api"}}),
                json!({"path": {"glob": "/api/*/x/**"}}),
            ),
            (
                json!({"path": {"exact": "/a"}}),
                json!({"path": {"exact": "/a"}}),
            ),
            (
                json!({"path": {"glob": "/t/*"}}),
                json!({"path": {"glob": "/t/*"}}),
            ),
            (
                json!({"path": {"prefix": "/api"}}),
                json!({"path": {"prefix": "/api/x"}, "methods": ["DELETE"]}),
            ),
            (
                json!({"path": {"prefix": "/api"}, "methods": ["GET", "POST"]}),
                json!({"path": {"prefix": "/api/x"}, "methods": ["POST", "HEAD"]}),
            ),
        ];
        for (first, later) in shadowed {
            let errs = pair(first.clone(), later.clone())
                .err()
                .unwrap_or_else(|| panic!("{first} before {later} was accepted"));
            assert_eq!(error_paths(&errs), ["rules[1].match"], "{first} {later}");
            assert!(
                errs[0]
                    .to_string()
                    .contains("\"later\" is never used: rules[0]"),
                "{errs:?}"
            );
        }
        let fine = [
            (
                json!({"path": {"prefix": "/admin"}}),
                json!({"path": {"prefix": "/"}}),
            ),
            (
                json!({"path": {"prefix": "/api"}}),
                json!({"path": {"prefix": "/apix"}}),
            ),
            (
                json!({"path": {"exact": "/api"}}),
                json!({"path": {"prefix": "/api"}}),
            ),
            (
                json!({"path": {"prefix": "/api/v1"}}),
                json!({"path": {"prefix": "/api"}}),
            ),
            (
                json!({"path": {"glob": "/api/*/x"}}),
                json!({"path": {"prefix": "/api"}}),
            ),
            (
                json!({"path": {"prefix": "/api"}}),
                json!({"path": {"glob": "/*/x"}}),
            ),
            (
                json!({"path": {"prefix": "/api"}, "methods": ["GET"]}),
                json!({"path": {"prefix": "/api/x"}}),
            ),
            (
                json!({"path": {"prefix": "/api"}, "methods": ["POST"]}),
                json!({"path": {"prefix": "/api/x"}, "methods": ["POST", "PUT"]}),
            ),
        ];
        for (first, later) in fine {
            assert!(
                pair(first.clone(), later.clone()).is_ok(),
                "{first} before {later}"
            );
        }
    }

    #[test]
    fn first_match_wins_then_default() {
        let rs = rules(
            json!([
                {"name": "health", "match": {"path": {"exact": "/healthz"}},
                 "require": {"public": true}},
                {"name": "admin-write", "match": {"path": {"prefix": "/admin"},
                 "methods": ["POST", "DELETE"]}, "require": {"roles_all": ["admin"]}},
                {"name": "admin", "match": {"path": {"prefix": "/admin"}},
                 "require": {"roles_any": ["admin", "auditor"]}},
                {"name": "comments", "match": {"path": {"glob": "/tickets/*/comments/**"}},
                 "credentials": ["magic_link", "session"]},
                {"name": "public", "match": {"path": {"prefix": "/public"}},
                 "require": {"public": true}}
            ]),
            json!({"login_url": "/login"}),
        )
        .unwrap();
        let find = |m: &str, p: &str| rs.find(m, &normalize_path(p).unwrap()).name().to_owned();
        assert_eq!(find("GET", "/healthz"), "health");
        assert_eq!(find("POST", "/admin/users"), "admin-write");
        assert_eq!(find("post", "/admin/users"), "admin-write");
        assert_eq!(find("GET", "/admin/users"), "admin");
        assert_eq!(find("GET", "/tickets/TRK-1/comments/3"), "comments");
        assert_eq!(find("GET", "/public/x"), "public");
        assert_eq!(find("GET", "/admin/../public/x"), "public");
        assert_eq!(find("GET", "/public/../admin"), "admin");
        assert_eq!(find("GET", "/%61dmin"), "admin");
        assert_eq!(find("GET", "/ADMIN"), "default");
        assert_eq!(find("GET", "/administrator"), "default");
        assert_eq!(rs.default_rule().login_url(), Some("/login"));
        assert!(!rs.default_rule().is_public());
        assert_eq!(rs.rules().len(), 5);
        assert_eq!(
            rs.rules()[3].credentials(),
            [CredentialKind::MagicLink, CredentialKind::Session]
        );
        assert_eq!(
            rs.rules()[0].credentials(),
            [
                CredentialKind::Session,
                CredentialKind::Jwt,
                CredentialKind::ApiKey
            ]
        );
    }

    #[test]
    fn rule_config_errors_name_their_fields() {
        let errs = rules(
            json!([
                {"name": "a", "match": {"path": {"prefix": "/a"}}},
                {"name": "a", "match": {"path": {"glob": "b/*"}}},
                {"name": " ", "match": {"methods": ["GIT"]}},
                {"name": "default", "match": {}},
                {"name": "p", "match": {}, "require": {"public": true, "roles_any": ["x"]}},
                {"name": "l", "match": {}, "login_url": "https://evil.example/login"},
                {"name": "c", "match": {}, "credentials": []}
            ]),
            json!({"login_url": "//evil.example", "require": {"mfa": {}}}),
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(ConfigError::path).collect();
        assert_eq!(
            paths,
            [
                "rules[1].name",
                "rules[1].match.path",
                "rules[2].name",
                "rules[2].match.methods[0]",
                "rules[3].name",
                "rules[4].require.public",
                "rules[5].login_url",
                "rules[6].credentials",
                "default_rule.require.mfa",
                "default_rule.login_url",
            ]
        );
        assert!(errs[0].message().contains("rules[0]"));
        let too_many: Vec<serde_json::Value> = (0..=MAX_RULES)
            .map(|i| json!({"name": format!("r{i}"), "match": {}}))
            .collect();
        let errs = rules(json!(too_many), json!({})).unwrap_err();
        assert_eq!(errs[0].path(), "rules");
    }

    #[test]
    fn rule_config_is_strict() {
        let bad = [
            json!({"name": "x"}),
            json!({"name": "x", "match": {}, "requires": {}}),
            json!({"name": "x", "match": {}, "credentials": ["password"]}),
            json!({"name": "x", "match": {}, "require": {"roles": ["a"]}}),
            json!({"name": "x", "match": {}, "require": {"mfa": {"amr": ["mfa"]}}}),
        ];
        for b in bad {
            assert!(
                serde_json::from_value::<RuleConfig>(b.clone()).is_err(),
                "{b}"
            );
        }
    }

    #[test]
    fn any_accepted_credential_passes_by_default() {
        let r = rule(json!({}));
        for k in [
            CredentialKind::Session,
            CredentialKind::Jwt,
            CredentialKind::ApiKey,
        ] {
            assert!(r.authorize(&ident(k), "/x").is_ok());
        }
        assert_eq!(
            refusal(&r, &ident(CredentialKind::MagicLink), "/x"),
            (
                Reason::CredentialNotAccepted,
                "rule \"r\" does not accept magic_link credentials".into()
            )
        );
        assert!(r.authorize(&ident(CredentialKind::Dev), "/x").is_ok());
        assert!(r.accepts(CredentialKind::Jwt) && !r.accepts(CredentialKind::MagicLink));
    }

    #[test]
    fn public_rules_let_everyone_in() {
        let r = rule(json!({"public": true}));
        assert!(r.is_public());
        assert!(r.authorize(&ident(CredentialKind::MagicLink), "/x").is_ok());
        let mut scoped = ident(CredentialKind::Jwt);
        scoped.path_scope = Some("/elsewhere".into());
        assert!(r.authorize(&scoped, "/x").is_ok());
    }

    #[test]
    fn checks_run_in_the_documented_order() {
        let r = compile_rule(
            "r",
            &[CredentialKind::Jwt],
            &serde_json::from_value(json!({
                "roles_all": ["admin"], "permissions": ["p"], "scopes": ["s"],
                "mfa": {"amr_any": ["mfa"]}
            }))
            .unwrap(),
            None,
        )
        .unwrap();
        let mut id = Identity::new("u", CredentialKind::ApiKey, "p");
        id.path_scope = Some("/other".into());
        assert_eq!(refusal(&r, &id, "/x").0, Reason::CredentialNotAccepted);
        id.credential = CredentialKind::Jwt;
        assert_eq!(refusal(&r, &id, "/x").0, Reason::OutOfScope);
        id.path_scope = None;
        assert_eq!(refusal(&r, &id, "/x").0, Reason::MissingRole);
        id.roles.push("admin".into());
        assert_eq!(refusal(&r, &id, "/x").0, Reason::MissingPermission);
        id.permissions.push("p".into());
        assert_eq!(refusal(&r, &id, "/x").0, Reason::MissingScope);
        id.scopes.push("s".into());
        assert_eq!(refusal(&r, &id, "/x").0, Reason::MfaRequired);
        id.amr.push("mfa".into());
        assert!(r.authorize(&id, "/x").is_ok());
    }

    #[test]
    fn rule_validation() {
        let compile = |creds: &[CredentialKind], req: serde_json::Value, login: Option<&str>| {
            let req: RequireConfig = serde_json::from_value(req).unwrap();
            compile_rule("r", creds, &req, login)
        };
        let d = default_credentials();
        let first_path = |r: Result<Rule, Vec<ConfigError>>| r.unwrap_err()[0].path().to_owned();
        assert_eq!(
            first_path(compile(
                &[CredentialKind::Jwt, CredentialKind::Jwt],
                json!({}),
                None
            )),
            "credentials[1]"
        );
        assert_eq!(
            first_path(compile(&[CredentialKind::Dev], json!({}), None)),
            "credentials[0]"
        );
        assert_eq!(first_path(compile(&[], json!({}), None)), "credentials");
        assert!(compile(&[], json!({"public": true}), None).is_ok());
        assert_eq!(
            first_path(compile(&d, json!({"roles_any": ["a", ""]}), None)),
            "require.roles_any[1]"
        );
        assert_eq!(
            first_path(compile(&d, json!({"mfa": {"acr": ""}}), None)),
            "require.mfa.acr"
        );
        let errs = compile(
            &d,
            json!({"public": true, "scopes": ["s"], "mfa": {"amr_any": ["mfa"]}}),
            None,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message().contains("scopes, mfa"),
            "{}",
            errs[0].message()
        );
        for bad in [
            "login",
            "https://evil.example/login",
            "//evil.example/login",
            "/\\evil.example",
            "/log in",
            "/login\r\nX: y",
            "",
        ] {
            assert_eq!(
                first_path(compile(&d, json!({}), Some(bad))),
                "login_url",
                "{bad:?}"
            );
        }
        let ok = compile(&d, json!({}), Some("/login?next=%2F")).unwrap();
        assert_eq!(ok.login_url(), Some("/login?next=%2F"));
    }
}
