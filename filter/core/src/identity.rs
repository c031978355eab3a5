//! Who a verified request is: the [`Identity`] every credential kind resolves to.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::UnixTime;

/// The headers an allowed request carries upstream. Shared: a cached token's identity and
/// headers are built once, when it is verified, and every later request gets the same ones.
pub type UpstreamHeaders = Arc<[(String, String)]>;

/// The kind of credential a request authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A JWT from a configured provider (bearer header, configured header, cookie or query).
    Jwt,
    /// An API key (`Authorization: Bearer` or the configured header).
    ApiKey,
    /// A magic-link token.
    MagicLink,
    /// The edgegate session cookie (set after OIDC login or a magic-link login).
    Session,
    /// Development mode's synthetic identity.
    Dev,
}

impl CredentialKind {
    pub fn code(self) -> &'static str {
        match self {
            CredentialKind::Jwt => "jwt",
            CredentialKind::ApiKey => "api_key",
            CredentialKind::MagicLink => "magic_link",
            CredentialKind::Session => "session",
            CredentialKind::Dev => "dev",
        }
    }
}

/// A verified caller. Everything here came from a credential whose integrity was checked.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `sub` of a token, the key's name for an API key.
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Roles after the provider's claim paths and role-name mapping.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions after the provider's claim paths.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// OAuth scopes (`scope` split on spaces, or `scp`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Authentication methods (`amr`).
    #[serde(default)]
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub credential: CredentialKind,
    /// The provider name (JWT), or `api_key` / `magic_link` / `session` / `dev`.
    pub provider: String,
    /// The key that verified it: JWK `kid`, API key name, magic-link key id.
    pub key_name: Option<String>,
    /// When the credential stops being valid.
    pub expires_at: Option<UnixTime>,
    /// A path prefix the credential is limited to (guest magic links, scoped API keys).
    #[serde(rename = "scope")]
    pub path_scope: Option<String>,
}

impl Identity {
    /// A minimal identity, for constructors in the credential modules.
    pub fn new(
        subject: impl Into<String>,
        credential: CredentialKind,
        provider: impl Into<String>,
    ) -> Self {
        Identity {
            subject: subject.into(),
            email: None,
            name: None,
            roles: Vec::new(),
            permissions: Vec::new(),
            scopes: Vec::new(),
            amr: Vec::new(),
            acr: None,
            credential,
            provider: provider.into(),
            key_name: None,
            expires_at: None,
            path_scope: None,
        }
    }
}
