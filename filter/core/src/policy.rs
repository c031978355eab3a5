//! The identity checks a rule requires: path scope, roles, permissions, scopes, MFA.
//!
//! A rule's `require` section (see [`crate::rules`]) compiles to [`Requirements`], which checks a
//! verified [`Identity`]:
//!
//! - `require.roles_any`: at least one of these roles; `require.roles_all`: every one of them;
//!   `require.permissions`: every one; `require.scopes`: every OAuth scope.
//! - `require.mfa`: `amr_any` (the token's `amr` names at least one of these methods) and/or `acr`
//!   (the token's `acr` equals it); every condition given must hold.
//!
//! A credential limited to a path (a guest magic link for `/tickets/TRK-1`, a scoped API key)
//! passes only for that path and below, on segment boundaries: `/tickets/TRK-1` covers
//! `/tickets/TRK-1` and `/tickets/TRK-1/comments` but not `/tickets/TRK-10`.
//!
//! [`Requirements::authorize`] checks, in this order, and refuses with the first failure: path
//! scope (`out_of_scope`), roles (`missing_role`), permissions (`missing_permission`), scopes
//! (`missing_scope`), MFA (`mfa_required`). Messages name the missing role, permission or scope:
//! those are the operator's names, not secrets. Whether the rule is public and accepts the
//! credential kind is checked before, by [`crate::rules::Rule::authorize`].

use crate::error::{Error, Reason};
use crate::identity::Identity;
use crate::matcher::covers_prefix;

/// Compiled `require.mfa`: every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mfa {
    pub(crate) amr_any: Vec<String>,
    pub(crate) acr: Option<String>,
}

/// What a rule requires of a verified identity, compiled from its `require` section by
/// [`crate::rules`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirements {
    pub(crate) roles_any: Vec<String>,
    pub(crate) roles_all: Vec<String>,
    pub(crate) permissions: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) mfa: Option<Mfa>,
}

impl Requirements {
    /// Checks a verified identity for a request to `normalized_path` (from
    /// [`crate::matcher::normalize_path`]), in the order of the module documentation.
    pub fn authorize(&self, identity: &Identity, normalized_path: &str) -> Result<(), Error> {
        if let Some(path_scope) = &identity.path_scope {
            if !path_scope_covers(path_scope, normalized_path) {
                return Err(Error::new(
                    Reason::OutOfScope,
                    "the credential is limited to another path",
                ));
            }
        }
        self.check_roles(identity)?;
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
        match &self.mfa {
            Some(mfa) => mfa.check(identity),
            None => Ok(()),
        }
    }

    fn check_roles(&self, identity: &Identity) -> Result<(), Error> {
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
        Ok(())
    }
}

impl Mfa {
    fn check(&self, identity: &Identity) -> Result<(), Error> {
        let amr_ok =
            self.amr_any.is_empty() || self.amr_any.iter().any(|m| identity.amr.contains(m));
        let acr_ok = self.acr.is_none() || self.acr == identity.acr;
        if amr_ok && acr_ok {
            return Ok(());
        }
        let mut want = Vec::new();
        if !self.amr_any.is_empty() {
            want.push(format!("amr one of: {}", self.amr_any.join(", ")));
        }
        if let Some(acr) = &self.acr {
            want.push(format!("acr \"{acr}\""));
        }
        Err(Error::new(
            Reason::MfaRequired,
            format!("requires multi-factor authentication ({})", want.join("; ")),
        ))
    }
}

/// Whether a credential limited to `path_scope` may reach `path`: the same path or one below
/// it, on a segment boundary. A path scope that does not start with `/` covers nothing (fail
/// closed).
pub fn path_scope_covers(path_scope: &str, normalized_path: &str) -> bool {
    path_scope.starts_with('/') && covers_prefix(path_scope.trim_end_matches('/'), normalized_path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::CredentialKind;
    use crate::rules::{compile_require, RequireConfig};
    use serde_json::json;

    fn rule(require: serde_json::Value) -> Requirements {
        let require: RequireConfig = serde_json::from_value(require).unwrap();
        compile_require(&require).unwrap()
    }

    /// A caller with roles, a permission, scopes, `amr` and `acr` to check rules against.
    pub(crate) fn ident(kind: CredentialKind) -> Identity {
        let mut id = Identity::new("u", kind, "p");
        id.roles = vec!["agent".into(), "viewer".into()];
        id.permissions = vec!["tickets:read".into()];
        id.scopes = vec!["openid".into(), "tickets".into()];
        id.amr = vec!["pwd".into()];
        id.acr = Some("1".into());
        id
    }

    fn refusal(r: &Requirements, id: &Identity, path: &str) -> (Reason, String) {
        let e = r.authorize(id, path).unwrap_err();
        (e.reason(), e.message().to_owned())
    }

    #[test]
    fn path_scope_covers_on_segment_boundaries() {
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
            id.path_scope = Some(scope.into());
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
}
