//! What a rule requires of the caller, and the check of an identity against it.
//!
//! Each rule (and the default rule) says which credential kinds it accepts and what the caller
//! must have:
//!
//! ```json
//! { "credentials": ["session", "jwt", "api_key"],
//!   "require": { "roles_any": ["agent", "admin"], "permissions": ["tickets:write"],
//!                "scopes": ["tickets"], "mfa": { "amr_any": ["mfa", "otp", "hwk"] } },
//!   "login_url": "/login" }
//! ```
//!
//! - `credentials`: the kinds accepted, in the order the request is searched for them (default
//!   `["session", "jwt", "api_key"]`; magic links are accepted only where listed). The development
//!   mode's synthetic identity is accepted by every rule (dev mode is refused in production by
//!   the config loader).
//! - `require.public: true`: anyone may pass, with or without a credential; such a rule cannot
//!   also require roles, permissions, scopes or MFA.
//! - `require.roles_any`: at least one of these roles; `require.roles_all`: every one of them;
//!   `require.permissions`: every one; `require.scopes`: every OAuth scope.
//! - `require.mfa`: `amr_any` (the token's `amr` names at least one of these methods) and/or `acr`
//!   (the token's `acr` equals it); every condition given must hold.
//! - `login_url`: where a browser without a credential is redirected (a path on this site).
//!
//! A credential limited to a path (a guest magic link for `/tickets/TRK-1`, a scoped API key)
//! passes only for that path and below, on segment boundaries: `/tickets/TRK-1` covers
//! `/tickets/TRK-1` and `/tickets/TRK-1/comments` but not `/tickets/TRK-10`.
//!
//! [`Rule::authorize`] checks, in this order, and refuses with the first failure: credential kind
//! (`credential_not_accepted`), path scope (`out_of_scope`), roles (`missing_role`), permissions
//! (`missing_permission`), scopes (`missing_scope`), MFA (`mfa_required`). Messages name the
//! missing role, permission or scope: those are the operator's names, not secrets.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::matcher::{covers_prefix, Route};

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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MfaConfig {
    /// The token's `amr` must name at least one of these methods, e.g. `["mfa", "otp", "hwk"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr_any: Vec<String>,
    /// The token's `acr` must equal this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
}

/// What the caller must have.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaConfig>,
}

/// The rule that applies when no rule matches.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

#[derive(Debug, Clone, PartialEq, Eq)]
struct Mfa {
    amr_any: Vec<String>,
    acr: Option<String>,
}

/// A compiled rule: its route (which requests) and its requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    name: String,
    route: Route,
    credentials: Vec<CredentialKind>,
    public: bool,
    roles_any: Vec<String>,
    roles_all: Vec<String>,
    permissions: Vec<String>,
    scopes: Vec<String>,
    mfa: Option<Mfa>,
    login_url: Option<String>,
}

fn check_names(field: &str, names: &[String], errors: &mut Vec<Error>) {
    if names.len() > MAX_NAMES {
        errors.push(Error::config(field, format!("at most {MAX_NAMES} names")));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.chars().any(char::is_control) {
            errors.push(Error::config(
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

impl Rule {
    /// Compiles a rule's requirements (its route is set with [`Rule::with_route`]; until then it
    /// matches every request). Error paths are relative to the rule (`credentials`, `require.mfa`).
    pub fn compile(
        name: &str,
        credentials: &[CredentialKind],
        require: &RequireConfig,
        login_url: Option<&str>,
    ) -> Result<Rule, Vec<Error>> {
        let mut errors = Vec::new();

        for (i, c) in credentials.iter().enumerate() {
            if *c == CredentialKind::Dev {
                errors.push(Error::config(
                    format!("credentials[{i}]"),
                    "dev is not listed in rules: development mode applies to every rule",
                ));
            } else if credentials.iter().take(i).any(|o| o == c) {
                errors.push(Error::config(
                    format!("credentials[{i}]"),
                    format!("{} is listed twice", c.code()),
                ));
            }
        }
        if credentials.is_empty() && !require.public {
            errors.push(Error::config(
                "credentials",
                "a rule that is not public must accept at least one credential kind",
            ));
        }

        check_names("require.roles_any", &require.roles_any, &mut errors);
        check_names("require.roles_all", &require.roles_all, &mut errors);
        check_names("require.permissions", &require.permissions, &mut errors);
        check_names("require.scopes", &require.scopes, &mut errors);
        let mfa = match &require.mfa {
            None => None,
            Some(m) => {
                check_names("require.mfa.amr_any", &m.amr_any, &mut errors);
                if m.acr.as_deref().is_some_and(str::is_empty) {
                    errors.push(Error::config("require.mfa.acr", "acr cannot be empty"));
                }
                if m.amr_any.is_empty() && m.acr.is_none() {
                    errors.push(Error::config(
                        "require.mfa",
                        "mfa needs amr_any (e.g. [\"mfa\"]) or acr; remove it to require no MFA",
                    ));
                }
                Some(Mfa {
                    amr_any: m.amr_any.clone(),
                    acr: m.acr.clone(),
                })
            }
        };
        if require.public {
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
                errors.push(Error::config(
                    "require.public",
                    format!(
                        "a public rule lets anyone in, so it cannot also require {}; remove \
                         public or the requirements",
                        contradicts.join(", ")
                    ),
                ));
            }
        }
        if let Some(url) = login_url {
            if !is_local_path(url) {
                errors.push(Error::config(
                    "login_url",
                    "login_url must be a path on this site starting with a single '/', e.g. \
                     /login",
                ));
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Rule {
            name: name.to_owned(),
            route: Route::any(),
            credentials: credentials.to_vec(),
            public: require.public,
            roles_any: require.roles_any.clone(),
            roles_all: require.roles_all.clone(),
            permissions: require.permissions.clone(),
            scopes: require.scopes.clone(),
            mfa,
            login_url: login_url.map(str::to_owned),
        })
    }

    /// The rule with this route.
    pub fn with_route(mut self, route: Route) -> Rule {
        self.route = route;
        self
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
        if let Some(scope) = &identity.scope {
            if !scope_covers(scope, normalized_path) {
                return Err(Error::new(
                    Reason::OutOfScope,
                    "the credential is limited to another path",
                ));
            }
        }
        if !self.roles_any.is_empty() && !self.roles_any.iter().any(|r| identity.roles.contains(r))
        {
            return Err(Error::new(
                Reason::MissingRole,
                format!("requires one of the roles: {}", self.roles_any.join(", ")),
            ));
        }
        if let Some(r) = self.roles_all.iter().find(|r| !identity.roles.contains(r)) {
            return Err(Error::new(
                Reason::MissingRole,
                format!("requires the role \"{r}\""),
            ));
        }
        if let Some(p) = self
            .permissions
            .iter()
            .find(|p| !identity.permissions.contains(p))
        {
            return Err(Error::new(
                Reason::MissingPermission,
                format!("requires the permission \"{p}\""),
            ));
        }
        if let Some(s) = self.scopes.iter().find(|s| !identity.scopes.contains(s)) {
            return Err(Error::new(
                Reason::MissingScope,
                format!("requires the scope \"{s}\""),
            ));
        }
        if let Some(mfa) = &self.mfa {
            let amr_ok =
                mfa.amr_any.is_empty() || mfa.amr_any.iter().any(|m| identity.amr.contains(m));
            let acr_ok = mfa.acr.is_none() || mfa.acr == identity.acr;
            if !amr_ok || !acr_ok {
                let mut want = Vec::new();
                if !mfa.amr_any.is_empty() {
                    want.push(format!("amr one of: {}", mfa.amr_any.join(", ")));
                }
                if let Some(acr) = &mfa.acr {
                    want.push(format!("acr \"{acr}\""));
                }
                return Err(Error::new(
                    Reason::MfaRequired,
                    format!("requires multi-factor authentication ({})", want.join("; ")),
                ));
            }
        }
        Ok(())
    }
}

/// Whether a credential limited to `scope` may reach `path`: the same path or one below it, on a
/// segment boundary. A scope that does not start with `/` covers nothing (fail closed).
pub fn scope_covers(scope: &str, normalized_path: &str) -> bool {
    scope.starts_with('/') && covers_prefix(scope.trim_end_matches('/'), normalized_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(require: serde_json::Value) -> Rule {
        let require: RequireConfig = serde_json::from_value(require).unwrap();
        Rule::compile("r", &default_credentials(), &require, None).unwrap()
    }

    fn ident(kind: CredentialKind) -> Identity {
        let mut id = Identity::new("u", kind, "p");
        id.roles = vec!["agent".into(), "viewer".into()];
        id.permissions = vec!["tickets:read".into()];
        id.scopes = vec!["openid".into(), "tickets".into()];
        id.amr = vec!["pwd".into()];
        id.acr = Some("1".into());
        id
    }

    fn refusal(r: &Rule, id: &Identity, path: &str) -> (Reason, String) {
        let e = r.authorize(id, path).unwrap_err();
        (e.reason(), e.message().to_owned())
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
        scoped.scope = Some("/elsewhere".into());
        assert!(r.authorize(&scoped, "/x").is_ok());
    }

    #[test]
    fn scope_covers_on_segment_boundaries() {
        let r = rule(json!({}));
        let mut id = ident(CredentialKind::ApiKey);
        for (scope, path, ok) in [
            ("/tickets/TRK-1", "/tickets/TRK-1", true),
            ("/tickets/TRK-1", "/tickets/TRK-1/", true),
            ("/tickets/TRK-1", "/tickets/TRK-1/comments", true),
            ("/tickets/TRK-1/", "/tickets/TRK-1", true),
            ("/tickets/TRK-1/", "/tickets/TRK-1/x", true),
            ("/tickets/TRK-1", "/tickets/TRK-10", false),
            ("/tickets/TRK-1", "/tickets/TRK-1x/y", false),
            ("/tickets/TRK-1", "/tickets", false),
            ("/tickets/TRK-1", "/", false),
            ("/tickets/TRK-1", "/admin", false),
            ("/", "/anything", true),
            ("", "/anything", false),
            ("tickets", "/tickets", false),
            ("/tickets/../admin", "/admin", false),
        ] {
            id.scope = Some(scope.into());
            match r.authorize(&id, path) {
                Ok(()) => assert!(ok, "{scope} should not cover {path}"),
                Err(e) => {
                    assert!(!ok, "{scope} should cover {path}");
                    assert_eq!(e.reason(), Reason::OutOfScope);
                }
            }
        }
    }

    #[test]
    fn roles() {
        let id = ident(CredentialKind::Jwt);
        assert!(rule(json!({"roles_any": ["admin", "agent"]}))
            .authorize(&id, "/")
            .is_ok());
        assert_eq!(
            refusal(&rule(json!({"roles_any": ["admin", "owner"]})), &id, "/"),
            (
                Reason::MissingRole,
                "requires one of the roles: admin, owner".into()
            )
        );
        assert!(rule(json!({"roles_all": ["agent", "viewer"]}))
            .authorize(&id, "/")
            .is_ok());
        assert_eq!(
            refusal(&rule(json!({"roles_all": ["agent", "admin"]})), &id, "/"),
            (Reason::MissingRole, "requires the role \"admin\"".into())
        );
        // Role names are compared exactly.
        assert_eq!(
            refusal(&rule(json!({"roles_any": ["Agent"]})), &id, "/").0,
            Reason::MissingRole
        );
    }

    #[test]
    fn permissions_and_scopes() {
        let id = ident(CredentialKind::Jwt);
        assert!(
            rule(json!({"permissions": ["tickets:read"], "scopes": ["tickets"]}))
                .authorize(&id, "/")
                .is_ok()
        );
        assert_eq!(
            refusal(
                &rule(json!({"permissions": ["tickets:read", "tickets:write"]})),
                &id,
                "/"
            ),
            (
                Reason::MissingPermission,
                "requires the permission \"tickets:write\"".into()
            )
        );
        assert_eq!(
            refusal(&rule(json!({"scopes": ["openid", "admin"]})), &id, "/"),
            (Reason::MissingScope, "requires the scope \"admin\"".into())
        );
    }

    #[test]
    fn mfa() {
        let mut id = ident(CredentialKind::Jwt);
        let amr = rule(json!({"mfa": {"amr_any": ["mfa", "otp"]}}));
        let (reason, msg) = refusal(&amr, &id, "/");
        assert_eq!(reason, Reason::MfaRequired);
        assert!(msg.contains("mfa, otp"), "{msg}");
        id.amr.push("otp".into());
        assert!(amr.authorize(&id, "/").is_ok());

        let acr = rule(json!({"mfa": {"acr": "2"}}));
        assert_eq!(refusal(&acr, &id, "/").0, Reason::MfaRequired);
        id.acr = None;
        assert_eq!(refusal(&acr, &id, "/").0, Reason::MfaRequired);
        id.acr = Some("2".into());
        assert!(acr.authorize(&id, "/").is_ok());

        let both = rule(json!({"mfa": {"amr_any": ["hwk"], "acr": "2"}}));
        assert_eq!(refusal(&both, &id, "/").0, Reason::MfaRequired);
        id.amr.push("hwk".into());
        assert!(both.authorize(&id, "/").is_ok());
    }

    #[test]
    fn checks_run_in_the_documented_order() {
        let r = Rule::compile(
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
        id.scope = Some("/other".into());
        assert_eq!(refusal(&r, &id, "/x").0, Reason::CredentialNotAccepted);
        id.credential = CredentialKind::Jwt;
        assert_eq!(refusal(&r, &id, "/x").0, Reason::OutOfScope);
        id.scope = None;
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
            Rule::compile("r", creds, &req, login)
        };
        let d = default_credentials();
        let first_path =
            |r: Result<Rule, Vec<Error>>| r.unwrap_err()[0].path().map(str::to_owned).unwrap();
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
