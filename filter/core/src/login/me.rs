//! Step 5: `me_path`, the identity of any accepted credential as JSON.

use serde_json::json;

use crate::identity::Identity;

/// The `/auth/me` body for an accepted credential.
pub fn whoami_json(identity: &Identity) -> String {
    json!({
        "subject": identity.subject,
        "email": identity.email,
        "name": identity.name,
        "roles": identity.roles,
        "permissions": identity.permissions,
        "amr": identity.amr,
        "provider": identity.provider,
        "credential": identity.credential.code(),
        "expires_at": identity.expires_at,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::identity::CredentialKind;
    use serde_json::Value;

    #[test]
    fn whoami_lists_the_identity() {
        let mut id = oidc_identity();
        id.credential = CredentialKind::Session;
        id.expires_at = Some(NOW);
        let v: Value = serde_json::from_str(&whoami_json(&id)).unwrap();
        assert_eq!(v["subject"], "alice");
        assert_eq!(v["roles"], json!(["admin"]));
        assert_eq!(v["credential"], "session");
        assert_eq!(v["provider"], "op");
        assert_eq!(v["expires_at"], json!(NOW));
    }
}
