//! API keys: the format, minting, hashing, and the compiled key store.
//!
//! # Key format
//!
//! ```text
//! egk_3Xq0aZ...(43 characters)...Kf9M2p
//! └─┬┘└──────────┬──────────────┘└─┬──┘
//!   prefix       body            checksum
//! ```
//!
//! - **prefix**: configurable, default `egk_`. 2–16 characters matching `[a-z][a-z0-9_]*_`
//!   (lowercase, ends with `_`), so a key is recognisable to people and to secret scanners.
//! - **body**: 32 random bytes as a big-endian number written in base62, left-padded with `0`
//!   to exactly **43** characters. Base62 alphabet: `0-9`, then `A-Z`, then `a-z`
//!   (`0` is digit 0, `z` is digit 61).
//! - **checksum**: the CRC-32 (IEEE 802.3, as in zlib/`crc32fast`) of the ASCII bytes of
//!   `prefix + body`, written in the same base62 alphabet, left-padded to exactly **6** characters.
//!
//! A key is therefore `prefix.len() + 49` characters, URL- and header-safe, without `.` (so it
//! can never be mistaken for a JWT). The checksum is not a security measure: it lets the gateway
//! refuse typos and scanners' guesses cheaply, before any lookup (as GitHub's token format does).
//!
//! # Storing keys
//!
//! The gateway never stores keys, only their hashes (`hash`), written in the config:
//! - without a pepper: `sha256:<64 hex digits>` — SHA-256 of the key's ASCII bytes;
//! - with a pepper: `hmac-sha256:<64 hex digits>` — HMAC-SHA-256 keyed with the pepper's bytes.
//!
//! A pepper (unpadded base64url, ≥ 32 bytes) is a secret kept apart from the list of hashes, so
//! a leaked list alone cannot be checked offline against guessed keys. All hashes in one config
//! must be of the kind that matches whether a pepper is set.
//!
//! Keys may have an expiry, `expires_at`, in **Unix seconds** (UTC); a key is refused from that
//! second on. A key may have a `scope`, a path prefix it is limited to; the policy layer applies
//! it ([`Identity::scope`]).
//!
//! # Presenting keys
//!
//! `Authorization: Bearer <key>` always works; the engine sends bearer values that
//! [`ApiKeyStore::looks_like_key`] to the key store and others to JWT verification. Optionally one
//! more header (e.g. `x-api-key`) carries the bare key.
//!
//! # Config
//!
//! ```yaml
//! api_keys:
//!   prefix: egk_                 # default
//!   header: x-api-key            # optional
//!   pepper: <base64url, >= 32 bytes>   # optional; then hashes are hmac-sha256:...
//!   keys:
//!     - name: ci-deploy
//!       hash: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//!       roles: [deployer]
//!       permissions: ["deploy:write"]
//!       expires_at: 1767225600     # optional, Unix seconds
//!       scope: /api/deploy/        # optional path prefix
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::error::{ConfigError, Error, Reason};
use crate::identity::{CredentialKind, Identity};
use crate::keylist::{CompiledKeyList, KeyListState, RemoteKeyList};
use crate::keyring::{Secret, MIN_SECRET_BYTES};
use crate::UnixTime;

type HmacSha256 = Hmac<Sha256>;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "egk_";
/// Length of the base62 body (32 random bytes).
pub const BODY_LEN: usize = 43;
/// Length of the base62 CRC-32 checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Longest prefix allowed.
pub const MAX_PREFIX_LEN: usize = 16;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SHA256_TAG: &str = "sha256:";
const HMAC_TAG: &str = "hmac-sha256:";

/// Writes the big-endian number in `bytes` in base62, left-padded with `0` to `width` digits.
/// `width` must be large enough for the number (43 for 32 bytes, 6 for 4 bytes).
fn base62(bytes: &[u8], width: usize) -> String {
    let mut num = bytes.to_vec();
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        let mut rem: u32 = 0;
        for d in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*d);
            *d = u8::try_from(acc / 62).unwrap_or(0);
            rem = acc % 62;
        }
        *slot = BASE62.get(rem as usize).copied().unwrap_or(b'0');
    }
    out.into_iter().map(char::from).collect()
}

fn checksum(prefix_and_body: &str) -> String {
    base62(
        &crc32fast::hash(prefix_and_body.as_bytes()).to_be_bytes(),
        CHECKSUM_LEN,
    )
}

/// Checks a prefix: 2–16 characters, `[a-z][a-z0-9_]*_`.
pub fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    let b = prefix.as_bytes();
    let ok = (2..=MAX_PREFIX_LEN).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last() == Some(&b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "prefix",
            "a key prefix is 2-16 characters: a lowercase letter, then lowercase letters, digits or `_`, ending with `_` (e.g. `egk_`)",
        ))
    }
}

/// Mints a key from 32 random bytes (the core has no randomness: the caller supplies them from
/// a CSPRNG). The prefix is used as given; check it first with [`validate_prefix`].
pub fn mint(prefix: &str, random: &[u8; 32]) -> String {
    let mut key = String::with_capacity(prefix.len() + BODY_LEN + CHECKSUM_LEN);
    key.push_str(prefix);
    key.push_str(&base62(random, BODY_LEN));
    let sum = checksum(&key);
    key.push_str(&sum);
    key
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(
            HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
        ));
        s.push(char::from(
            HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0'),
        ));
    }
    s
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (pair.first()?, pair.get(1)?);
        *o = (crate::syntax::hex_value(*hi)? << 4) | crate::syntax::hex_value(*lo)?;
    }
    Some(out)
}

/// The hash to write in the config for `key`: `sha256:<hex>`, or with a pepper (its decoded
/// bytes) `hmac-sha256:<hex>`.
pub fn hash(key: &str, pepper: Option<&[u8]>) -> String {
    match pepper {
        None => format!("{SHA256_TAG}{}", hex(&Sha256::digest(key.as_bytes()))),
        Some(p) => match HmacSha256::new_from_slice(p) {
            Ok(mut mac) => {
                mac.update(key.as_bytes());
                format!("{HMAC_TAG}{}", hex(&mac.finalize().into_bytes()))
            }
            // HMAC accepts keys of any length; this arm is unreachable in practice.
            Err(_) => String::new(),
        },
    }
}

/// The `api_keys` config section.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// The prefix every key starts with: 2-16 characters, `[a-z][a-z0-9_]*_`. Default `egk_`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// An extra request header carrying the bare key (e.g. `x-api-key`), besides
    /// `Authorization: Bearer <key>` which always works. Case-insensitive. Default: none.
    pub header: Option<String>,
    /// Optional pepper: unpadded base64url of at least 32 random bytes. When set, every hash
    /// must be `hmac-sha256:...`; when not, every hash must be `sha256:...`.
    pub pepper: Option<Secret>,
    /// The accepted keys, by hash.
    #[serde(default)]
    pub keys: Vec<ApiKeyEntry>,
    /// Forward the key upstream unchanged (`Authorization` or `header`). Default false: the
    /// key edgegate checked stays at the edge; the upstream gets the identity headers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward: bool,
    /// A key list fetched from a URL and kept fresh (instant revocation without a config push;
    /// see `edgegate::keylist`). Its keys are accepted besides the inline `keys`; a list that
    /// repeats a name or hash of the inline keys is refused.
    pub remote: Option<RemoteKeyList>,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_string()
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        ApiKeysConfig {
            prefix: default_prefix(),
            header: None,
            pepper: None,
            keys: Vec::new(),
            forward: false,
            remote: None,
        }
    }
}

/// One accepted API key.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Unique name of the key; becomes the identity's subject (e.g. `ci-deploy`). 1-128
    /// printable characters.
    pub name: String,
    /// `sha256:<64 hex>` of the key, or `hmac-sha256:<64 hex>` when a pepper is set
    /// (`edgegate apikey hash` prints it).
    pub hash: Secret,
    /// Roles granted to requests with this key.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions granted to requests with this key.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Expiry in Unix seconds (UTC); the key is refused from this second on. Default: never.
    pub expires_at: Option<UnixTime>,
    /// A path prefix (starting with `/`) the key is limited to. Default: unlimited.
    #[serde(rename = "scope")]
    pub path_scope: Option<String>,
}

/// A list of API keys in edgegate's format, `{"keys": [...]}` with entries as in
/// `api_keys.keys`: what `edgegate keys new --list` and `edgegate keys revoke --list` maintain,
/// and what a config's `api_keys.keys` takes as is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyList {
    pub keys: Vec<ApiKeyEntry>,
}

/// Which hash the store computes for a presented key.
#[derive(Clone)]
enum Hasher {
    Sha256,
    Hmac(HmacSha256),
}

impl Hasher {
    fn digest(&self, key: &str) -> [u8; 32] {
        match self {
            Hasher::Sha256 => Sha256::digest(key.as_bytes()).into(),
            Hasher::Hmac(mac) => {
                let mut mac = mac.clone();
                mac.update(key.as_bytes());
                mac.finalize().into_bytes().into()
            }
        }
    }
}

#[derive(Clone)]
struct StoredKey {
    digest: [u8; 32],
    name: String,
    roles: Vec<String>,
    permissions: Vec<String>,
    expires_at: Option<UnixTime>,
    path_scope: Option<String>,
}

/// The compiled key store: O(1) lookup by digest.
#[derive(Clone)]
pub struct ApiKeyStore {
    prefix: String,
    header: Option<String>,
    hasher: Hasher,
    keys: HashMap<[u8; 32], StoredKey>,
    /// `api_keys.remote`, compiled.
    remote: Option<Arc<CompiledKeyList>>,
}

impl fmt::Debug for ApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.keys.values().map(|k| k.name.as_str()).collect();
        names.sort_unstable();
        f.debug_struct("ApiKeyStore")
            .field("prefix", &self.prefix)
            .field("header", &self.header)
            .field("peppered", &matches!(self.hasher, Hasher::Hmac(_)))
            .field("keys", &names)
            .finish()
    }
}

fn valid_header_name(h: &str) -> bool {
    crate::syntax::is_short_token(h)
}

impl ApiKeysConfig {
    /// Validates the section and builds the store. All problems are reported together.
    pub fn compile(&self) -> Result<ApiKeyStore, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if let Err(e) = validate_prefix(&self.prefix) {
            errors.push(e);
        }
        let header = match &self.header {
            None => None,
            Some(h) if !valid_header_name(h) => {
                errors.push(ConfigError::new("header", "not a valid HTTP header name"));
                None
            }
            Some(h) if h.eq_ignore_ascii_case("authorization") => {
                errors.push(ConfigError::new(
                    "header",
                    "`Authorization: Bearer <key>` always works; name another header here (e.g. x-api-key) or leave it out",
                ));
                None
            }
            Some(h) => Some(h.to_ascii_lowercase()),
        };
        let hasher = match &self.pepper {
            None => Some(Hasher::Sha256),
            Some(p) => match p.decode_base64url("pepper", MIN_SECRET_BYTES) {
                Ok(bytes) => match HmacSha256::new_from_slice(&bytes) {
                    Ok(mac) => Some(Hasher::Hmac(mac)),
                    Err(_) => {
                        errors.push(ConfigError::new("pepper", "not usable as an HMAC key"));
                        None
                    }
                },
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        let mut keys = HashMap::with_capacity(self.keys.len());
        add_entries(&mut keys, &self.keys, self.pepper.is_some(), &mut errors);
        let remote = match self.remote.as_ref().map(RemoteKeyList::compile) {
            None => None,
            Some(Ok(r)) => Some(Arc::new(r)),
            Some(Err(es)) => {
                errors.extend(es.into_iter().map(|e| e.at("remote")));
                None
            }
        };
        match hasher {
            Some(hasher) if errors.is_empty() => Ok(ApiKeyStore {
                prefix: self.prefix.clone(),
                header,
                hasher,
                keys,
                remote,
            }),
            _ => Err(errors),
        }
    }
}

/// Checks `entries` as `api_keys.keys` are checked and adds them to `keys`, which may hold
/// keys already (the inline ones, when `entries` is a remote list): a name or hash taken there
/// is refused too. Paths are `keys[i].field`.
fn add_entries(
    keys: &mut HashMap<[u8; 32], StoredKey>,
    entries: &[ApiKeyEntry],
    peppered: bool,
    errors: &mut Vec<ConfigError>,
) {
    let (tag, other_tag) = if peppered {
        (HMAC_TAG, SHA256_TAG)
    } else {
        (SHA256_TAG, HMAC_TAG)
    };
    let mut names: HashSet<String> = keys.values().map(|k| k.name.clone()).collect();
    for (i, k) in entries.iter().enumerate() {
        let at = |field: &str| format!("keys[{i}].{field}");
        if k.name.is_empty() || k.name.chars().count() > 128 || k.name.chars().any(char::is_control)
        {
            errors.push(ConfigError::new(
                at("name"),
                "a key name is 1-128 printable characters",
            ));
        } else if !names.insert(k.name.clone()) {
            errors.push(ConfigError::new(
                at("name"),
                format!(
                    "the name \"{}\" appears twice (inline keys and a remote list count together); names must be unique",
                    k.name
                ),
            ));
        }
        if let Some(s) = &k.path_scope {
            if !s.starts_with('/') {
                errors.push(ConfigError::new(
                    at("scope"),
                    "a scope is a path prefix starting with `/`",
                ));
            }
        }
        let h = k.hash.expose();
        let digest = if let Some(hexpart) = h.strip_prefix(tag) {
            unhex(hexpart)
        } else {
            None
        };
        let Some(digest) = digest else {
            let msg = if h.starts_with(other_tag) {
                if peppered {
                    "a pepper is set, so hashes must be `hmac-sha256:<64 hex>`; re-hash the key with the pepper"
                } else {
                    "no pepper is set, so hashes must be `sha256:<64 hex>` (an hmac-sha256 hash needs its pepper)"
                }
            } else if peppered {
                "expected `hmac-sha256:` followed by 64 hex digits"
            } else {
                "expected `sha256:` followed by 64 hex digits"
            };
            errors.push(ConfigError::new(at("hash"), msg));
            continue;
        };
        if let Some(other) = keys.get(&digest) {
            errors.push(ConfigError::new(
                at("hash"),
                format!(
                    "the same hash is already used by key \"{}\"; every key must be distinct",
                    other.name
                ),
            ));
            continue;
        }
        keys.insert(
            digest,
            StoredKey {
                digest,
                name: k.name.clone(),
                roles: k.roles.clone(),
                permissions: k.permissions.clone(),
                expires_at: k.expires_at,
                path_scope: k.path_scope.clone(),
            },
        );
    }
}

impl ApiKeyStore {
    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `api_keys.remote`, if configured.
    pub fn remote(&self) -> Option<&CompiledKeyList> {
        self.remote.as_deref()
    }

    /// A fresh refresh state for `api_keys.remote` (one per host that fetches or shares the
    /// list), if configured.
    pub fn remote_list(&self) -> Option<KeyListState> {
        let source = self.remote.clone()?;
        Some(KeyListState::new(source, self.clone()))
    }

    /// This store (the inline keys) plus a remote list's `entries`, checked as inline keys are
    /// and against them. Errors name `keys[i].field` of the list.
    pub(crate) fn with_listed(
        &self,
        entries: &[ApiKeyEntry],
    ) -> Result<ApiKeyStore, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut store = self.clone();
        let peppered = matches!(self.hasher, Hasher::Hmac(_));
        add_entries(&mut store.keys, entries, peppered, &mut errors);
        if errors.is_empty() {
            Ok(store)
        } else {
            Err(errors)
        }
    }

    /// The extra header carrying a bare key, lowercased, if configured.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// Whether a bearer value should be verified as an API key rather than a JWT: it starts
    /// with the prefix and has no `.` (a compact JWS has two).
    pub fn looks_like_key(&self, s: &str) -> bool {
        s.starts_with(self.prefix.as_str()) && !s.contains('.')
    }

    /// Checks a presented key's format and checksum (no lookup). Errors: `ApiKeyMalformed`,
    /// `ApiKeyChecksum`.
    pub fn check_format(&self, presented: &str) -> Result<(), Error> {
        let malformed = || {
            Error::new(
                Reason::ApiKeyMalformed,
                "not an API key: wrong prefix, length or characters",
            )
        };
        let rest = presented
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(malformed)?;
        if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(malformed());
        }
        let (prefix_and_body, sum) = presented
            .split_at_checked(self.prefix.len() + BODY_LEN)
            .ok_or_else(malformed)?;
        if checksum(prefix_and_body) != sum {
            return Err(Error::new(
                Reason::ApiKeyChecksum,
                "the API key's checksum does not match: it is mistyped or not a real key",
            ));
        }
        Ok(())
    }

    /// Verifies a presented key. Format and checksum are checked before any lookup; the lookup
    /// then does the same work for unknown and known keys (one digest, one map probe, one
    /// constant-time comparison).
    ///
    /// Errors: `ApiKeyMalformed`, `ApiKeyChecksum`, `ApiKeyUnknown`, `ApiKeyExpired`.
    pub fn verify(&self, presented: &str, now: UnixTime) -> Result<Identity, Error> {
        self.check_format(presented)?;
        let digest = self.hasher.digest(presented);
        const DECOY: [u8; 32] = [0u8; 32];
        let probe = self.keys.get(&digest);
        let (stored, found) = match probe {
            Some(k) => (&k.digest, Choice::from(1)),
            None => (&DECOY, Choice::from(0)),
        };
        let matched: bool = (stored.ct_eq(&digest) & found).into();
        let key = match probe {
            Some(k) if matched => k,
            _ => {
                return Err(Error::new(
                    Reason::ApiKeyUnknown,
                    "the API key is not known",
                ))
            }
        };
        if let Some(exp) = key.expires_at {
            if now >= exp {
                return Err(Error::new(
                    Reason::ApiKeyExpired,
                    format!("the API key \"{}\" has expired", key.name),
                ));
            }
        }
        let mut id = Identity::new(key.name.clone(), CredentialKind::ApiKey, "api_key");
        id.key_name = Some(key.name.clone());
        id.roles = key.roles.clone();
        id.permissions = key.permissions.clone();
        id.expires_at = key.expires_at;
        id.path_scope = key.path_scope.clone();
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;
    use crate::test_support::error_paths;

    fn entry(name: &str, hash: String) -> ApiKeyEntry {
        ApiKeyEntry {
            name: name.into(),
            hash: Secret::new(hash),
            roles: vec!["deployer".into()],
            permissions: vec!["deploy:write".into()],
            expires_at: None,
            path_scope: None,
        }
    }

    fn reason(store: &ApiKeyStore, k: &str) -> Reason {
        store.verify(k, 1_000).unwrap_err().reason()
    }

    #[test]
    fn base62_is_big_endian_fixed_width() {
        assert_eq!(base62(&[0; 32], BODY_LEN), "0".repeat(43));
        assert_eq!(base62(&[0, 0, 0, 61], 6), "00000z");
        assert_eq!(base62(&[0, 0, 0, 62], 6), "000010");
        assert_eq!(base62(&u32::MAX.to_be_bytes(), 6), "4gfFC3");
        // the largest 32-byte number still fits 43 digits
        let max = base62(&[0xff; 32], BODY_LEN);
        assert_eq!(max.len(), 43);
        assert_ne!(max.as_bytes()[0], b'0');
    }

    #[test]
    fn minted_keys_have_the_documented_shape() {
        let k = mint("egk_", &[7u8; 32]);
        assert_eq!(k.len(), 4 + 43 + 6);
        assert!(k.starts_with("egk_"));
        assert!(k[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        // checksum = base62(crc32(prefix+body)), recomputed independently of `checksum()`
        let crc = crc32fast::hash(&k.as_bytes()[..47]);
        assert_eq!(&k[47..], base62(&crc.to_be_bytes(), 6));
        // deterministic, and different random bytes give different keys
        assert_eq!(k, mint("egk_", &[7u8; 32]));
        assert_ne!(k, mint("egk_", &[8u8; 32]));
    }

    #[test]
    fn hashes_have_documented_forms() {
        // SHA-256("abc")
        assert_eq!(
            hash("abc", None),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2: HMAC-SHA-256(key="Jefe", "what do ya want for nothing?")
        assert_eq!(
            hash("what do ya want for nothing?", Some(b"Jefe")),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn prefix_rules() {
        for ok in ["egk_", "ab_", "acme_live_", "x1_", "a_"] {
            assert!(validate_prefix(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "_",
            "egk",
            "Egk_",
            "1gk_",
            "eg-k_",
            "eg.k_",
            "abcdefghijklmnop_",
            "é_",
        ] {
            let e = validate_prefix(bad).unwrap_err();
            assert_eq!(e.path(), "prefix");
        }
    }

    #[test]
    fn verifies_known_keys_and_builds_identity() {
        let k1 = mint("egk_", &[1; 32]);
        let k2 = mint("egk_", &[2; 32]);
        let mut e2 = entry("scoped", hash(&k2, None));
        e2.expires_at = Some(5_000);
        e2.path_scope = Some("/tickets/".into());
        let cfg = ApiKeysConfig {
            header: Some("X-Api-Key".into()),
            keys: vec![entry("ci", hash(&k1, None)), e2],
            ..Default::default()
        };
        let store = cfg.compile().unwrap();
        assert_eq!(store.header(), Some("x-api-key"));
        let id = store.verify(&k1, 1_000).unwrap();
        assert_eq!(id.subject, "ci");
        assert_eq!(id.credential, CredentialKind::ApiKey);
        assert_eq!(id.provider, "api_key");
        assert_eq!(id.key_name.as_deref(), Some("ci"));
        assert_eq!(id.roles, ["deployer"]);
        assert_eq!(id.permissions, ["deploy:write"]);
        assert_eq!(id.expires_at, None);
        assert_eq!(id.path_scope, None);
        let id = store.verify(&k2, 4_999).unwrap();
        assert_eq!(id.subject, "scoped");
        assert_eq!(id.expires_at, Some(5_000));
        assert_eq!(id.path_scope.as_deref(), Some("/tickets/"));
        assert_eq!(
            store.verify(&k2, 5_000).unwrap_err().reason(),
            Reason::ApiKeyExpired
        );
        assert_eq!(
            store.verify(&k2, 9_999).unwrap_err().reason(),
            Reason::ApiKeyExpired
        );
    }

    #[test]
    fn every_rejection_has_its_reason() {
        let k = mint("egk_", &[1; 32]);
        let store = ApiKeysConfig {
            keys: vec![entry("ci", hash(&k, None))],
            ..Default::default()
        }
        .compile()
        .unwrap();
        // unknown: well-formed with a valid checksum, not configured
        assert_eq!(
            reason(&store, &mint("egk_", &[3; 32])),
            Reason::ApiKeyUnknown
        );
        // wrong prefix, though otherwise a perfectly valid key
        assert_eq!(
            reason(&store, &mint("abc_", &[1; 32])),
            Reason::ApiKeyMalformed
        );
        // length, alphabet, whitespace, non-ASCII
        assert_eq!(reason(&store, &k[..k.len() - 1]), Reason::ApiKeyMalformed);
        assert_eq!(reason(&store, &format!("{k}0")), Reason::ApiKeyMalformed);
        assert_eq!(reason(&store, &format!("{k} ")), Reason::ApiKeyMalformed);
        assert_eq!(
            reason(&store, &format!("{}-{}", &k[..10], &k[11..])),
            Reason::ApiKeyMalformed
        );
        assert_eq!(
            reason(&store, &format!("{}é{}", &k[..10], &k[12..])),
            Reason::ApiKeyMalformed
        );
        assert_eq!(reason(&store, ""), Reason::ApiKeyMalformed);
        assert_eq!(reason(&store, "egk_"), Reason::ApiKeyMalformed);
        // a one-character typo in the body or in the checksum
        let mut typo = k.clone().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            reason(&store, &String::from_utf8(typo).unwrap()),
            Reason::ApiKeyChecksum
        );
        let mut typo = k.clone().into_bytes();
        let last = k.len() - 1;
        typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            reason(&store, &String::from_utf8(typo).unwrap()),
            Reason::ApiKeyChecksum
        );
    }

    #[test]
    fn pepper_switches_to_hmac() {
        let pepper = [9u8; 32];
        let k = mint("egk_", &[1; 32]);
        let cfg = ApiKeysConfig {
            pepper: Some(Secret::new(b64::encode(pepper))),
            keys: vec![entry("ci", hash(&k, Some(&pepper)))],
            ..Default::default()
        };
        let store = cfg.compile().unwrap();
        assert_eq!(store.verify(&k, 1).unwrap().subject, "ci");
        // the unpeppered hash of the same key is a config error under a pepper
        let cfg = ApiKeysConfig {
            keys: vec![entry("ci", hash(&k, None))],
            ..cfg
        };
        let errs = cfg.compile().unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path(), "keys[0].hash");
        assert!(errs[0].message().contains("pepper is set"));
        // and the peppered one without a pepper
        let cfg = ApiKeysConfig {
            keys: vec![entry("ci", hash(&k, Some(&pepper)))],
            ..Default::default()
        };
        let errs = cfg.compile().unwrap_err();
        assert!(errs[0].message().contains("no pepper"));
    }

    #[test]
    fn config_errors_are_all_reported_with_paths() {
        let k = mint("egk_", &[1; 32]);
        let mut scoped = entry("b", hash(&mint("egk_", &[2; 32]), None));
        scoped.path_scope = Some("tickets".into());
        let cfg = ApiKeysConfig {
            prefix: "EGK-".into(),
            header: Some("x api key".into()),
            pepper: Some(Secret::new(b64::encode([1u8; 16]))),
            keys: vec![
                entry("a", format!("hmac-sha256:{}", "0".repeat(63))),
                entry("a", hash(&k, Some(&[1u8; 16]))),
                entry("c", hash(&k, Some(&[1u8; 16]))),
                scoped,
                entry("", "sha256:zz".into()),
            ],
            forward: false,
            remote: None,
        };
        let errs = cfg.compile().unwrap_err();
        assert_eq!(
            error_paths(&errs),
            [
                "prefix",
                "header",
                "pepper",
                "keys[0].hash",
                "keys[1].name",
                "keys[2].hash",
                "keys[3].scope",
                "keys[3].hash",
                "keys[4].name",
                "keys[4].hash",
            ]
        );
        assert!(errs[5].message().contains("already used by key \"a\""));
        let auth = ApiKeysConfig {
            header: Some("Authorization".into()),
            ..Default::default()
        };
        assert_eq!(auth.compile().unwrap_err()[0].path(), "header");
    }

    #[test]
    fn routes_bearer_values() {
        let store = ApiKeysConfig::default().compile().unwrap();
        assert!(store.looks_like_key(&mint("egk_", &[1; 32])));
        assert!(store.looks_like_key("egk_short"));
        assert!(!store.looks_like_key("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
        assert!(!store.looks_like_key("egk_a.b.c"));
        assert!(!store.looks_like_key("EGK_abc"));
    }

    #[test]
    fn no_secret_in_debug_or_errors() {
        let pepper = [9u8; 32];
        let pepper_text = b64::encode(pepper);
        let k = mint("egk_", &[1; 32]);
        let h = hash(&k, Some(&pepper));
        let cfg = ApiKeysConfig {
            pepper: Some(Secret::new(pepper_text.clone())),
            keys: vec![entry("ci", h.clone())],
            ..Default::default()
        };
        let hex_part = h.trim_start_matches(HMAC_TAG).to_string();
        for dbg in [format!("{cfg:?}"), format!("{:?}", cfg.compile().unwrap())] {
            assert!(
                !dbg.contains(&pepper_text) && !dbg.contains(&hex_part),
                "{dbg}"
            );
        }
        let store = cfg.compile().unwrap();
        let body = &k[4..47];
        for bad in [k.clone(), format!("{k}x"), mint("egk_", &[5; 32])] {
            if let Err(e) = store.verify(&bad, u64::MAX) {
                let shown = format!("{e} {e:?}");
                assert!(
                    !shown.contains(body) && !shown.contains(&hex_part),
                    "{shown}"
                );
            }
        }
    }
}
