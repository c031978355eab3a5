//! A bounded cache of verified tokens, so a token seen again skips signature verification: JWTs,
//! and edgegate's own session cookies (a logged-in browser sends the same one on every request;
//! opening it is an HMAC check and a claims parse, ~5x a cache hit in V8).
//!
//! Entries are keyed by a hash (BLAKE3) of the token's signature, so the token itself is never
//! stored, and hold the part the signature covers (compared on a hit), the kind of credential
//! the token was found and verified as (a hit needs the same kind: a session cookie's value sent
//! as a bearer JWT misses, and the reverse), the [`Identity`] it verified to and the time it stops
//! being valid. An entry is never returned at or after that time. The cache is least-recently-used with a fixed capacity
//! (`max_entries`, default 1024; `0` turns it off). Build a new cache whenever the config (keys,
//! providers, claim mapping) changes: entries reflect the config they were verified under.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::identity::{CredentialKind, Identity, UpstreamHeaders};
use crate::UnixTime;

/// The largest `max_entries` accepted.
pub const MAX_ENTRIES_LIMIT: usize = 1_000_000;

fn default_max_entries() -> usize {
    1024
}

/// The verified-token cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How many verified tokens to remember, JWTs and session cookies (least recently used go
    /// first); 0 turns the cache off.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: default_max_entries(),
        }
    }
}

impl CacheConfig {
    /// Checks the section and builds an empty cache. Error paths are relative to the section.
    pub fn compile(&self) -> Result<TokenCache, Vec<ConfigError>> {
        if self.max_entries > MAX_ENTRIES_LIMIT {
            return Err(vec![ConfigError::new(
                "max_entries",
                format!("at most {MAX_ENTRIES_LIMIT}; 1024 is plenty for most gateways"),
            )]);
        }
        Ok(TokenCache::new(self.max_entries))
    }
}

/// The cache key: a BLAKE3 hash of the token's signature (the text after its last `.`; the
/// whole token when it has none).
type Key = [u8; 32];

/// Splits a token into what its signature signs (`header.payload`) and the signature.
fn split(token: &str) -> (&str, &str) {
    token.rsplit_once('.').unwrap_or(("", token))
}

fn key(signature: &str) -> Key {
    blake3::hash(signature.as_bytes()).into()
}

/// Byte equality eight bytes at a time. `==` on slices calls `memcmp`, which in wasm32 compares
/// a byte at a time (~23 wasm instructions per byte measured, most of a cache hit's cost).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| <[u8; 8]>::try_from(c).map(u64::from_ne_bytes).ok();
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    wa.remainder() == wb.remainder() && wa.zip(wb).all(|(x, y)| word(x) == word(y))
}

/// Whether the cache holds credentials of this kind: JWTs and session cookies (found as a
/// session or, on a route that accepts only magic-link sessions, as a magic link). API keys are
/// a hash compared in constant time, cheaper than a cache lookup; dev mode checks nothing.
pub fn holds(kind: CredentialKind) -> bool {
    matches!(
        kind,
        CredentialKind::Jwt | CredentialKind::Session | CredentialKind::MagicLink
    )
}

/// One verified token: what its signature signed, the kind it was found and verified as, the
/// identity and its upstream headers, and when it stops being valid.
struct Entry {
    signed: Box<str>,
    kind: CredentialKind,
    identity: Arc<Identity>,
    headers: UpstreamHeaders,
    expires_at: UnixTime,
}

/// Verified tokens, least-recently-used first out.
///
/// Only a hash of each token's signature is kept (the lookup key) with the part the signature
/// covers (`header.payload`, the claims the identity was read from). A hit needs both: the
/// presented signature hashing to the key and the presented `header.payload` equal to the stored
/// one. A signature with other claims, or other claims with a cached
/// signature, miss. Hashing the signature alone, not the whole token, is what makes a hit cheap
/// (the claims are compared, not hashed); without the signature the stored text is no
/// credential.
pub struct TokenCache {
    entries: Option<LruCache<Key, Entry>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens; 0 gives a cache that stores nothing.
    pub fn new(max_entries: usize) -> TokenCache {
        TokenCache {
            entries: NonZeroUsize::new(max_entries).map(LruCache::new),
        }
    }

    /// The identity `token`, found as a credential of `kind`, verified to and its upstream
    /// headers, if it is cached as that kind and `now` is before its expiry. An expired entry is
    /// removed.
    pub fn get(
        &mut self,
        kind: CredentialKind,
        token: &str,
        now: UnixTime,
    ) -> Option<(Arc<Identity>, UpstreamHeaders)> {
        let entries = self.entries.as_mut()?;
        let (signed, signature) = split(token);
        let k = key(signature);
        let entry = entries.get(&k)?;
        if entry.kind != kind {
            // Verified as another kind of credential (a session cookie's value sent as a bearer
            // JWT, say): not an answer for this one. The entry stays.
            return None;
        }
        // A plain comparison: reaching it takes the signature (the secret part), and what its
        // timing could tell, the claims, is readable in the token by whoever holds it.
        if !same(entry.signed.as_bytes(), signed.as_bytes()) {
            // The signature of a cached token on other claims: not this entry (which stays).
            return None;
        }
        if now < entry.expires_at {
            return Some((Arc::clone(&entry.identity), Arc::clone(&entry.headers)));
        }
        entries.pop(&k);
        None
    }

    /// Remembers that `token` verified to `identity` (sent upstream as `headers`) until
    /// `expires_at` (exclusive). Evicts the least recently used entry when full.
    pub fn insert(
        &mut self,
        kind: CredentialKind,
        token: &str,
        identity: &Arc<Identity>,
        headers: &UpstreamHeaders,
        expires_at: UnixTime,
    ) {
        if let Some(entries) = self.entries.as_mut() {
            let (signed, signature) = split(token);
            let entry = Entry {
                signed: signed.into(),
                kind,
                identity: Arc::clone(identity),
                headers: Arc::clone(headers),
                expires_at,
            };
            entries.put(key(signature), entry);
        }
    }

    /// Forgets a token (e.g. after a logout or a revocation).
    pub fn remove(&mut self, token: &str) {
        if let Some(entries) = self.entries.as_mut() {
            let (signed, signature) = split(token);
            let k = key(signature);
            if entries
                .peek(&k)
                .is_some_and(|e| same(e.signed.as_bytes(), signed.as_bytes()))
            {
                entries.pop(&k);
            }
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        if let Some(entries) = self.entries.as_mut() {
            entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, LruCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity (0 when the cache is off).
    pub fn capacity(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.cap().get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: CredentialKind = CredentialKind::Jwt;

    fn id(sub: &str) -> Identity {
        Identity::new(sub, CredentialKind::Jwt, "p")
    }

    /// Caches `token` as verified to subject `sub` (with one upstream header) until `exp`.
    fn put(c: &mut TokenCache, token: &str, sub: &str, exp: UnixTime) {
        let headers: UpstreamHeaders = vec![("x-sub".to_string(), sub.to_string())].into();
        c.insert(JWT, token, &Arc::new(id(sub)), &headers, exp);
    }

    #[test]
    fn hit_before_expiry_miss_and_evict_at_it() {
        let mut c = TokenCache::new(4);
        assert_eq!(c.get(JWT, "tok-a", 100), None);
        put(&mut c, "tok-a", "a", 200);
        assert_eq!(c.get(JWT, "tok-a", 100).unwrap().0.subject, "a");
        assert_eq!(c.get(JWT, "tok-a", 199).unwrap().0.subject, "a");
        assert_eq!(c.get(JWT, "tok-b", 100), None);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(JWT, "tok-a", 200), None, "never at expiry");
        assert_eq!(c.len(), 0, "the expired entry is evicted");
        assert_eq!(c.get(JWT, "tok-a", 100), None, "and stays gone");
        put(&mut c, "tok-a", "a", 200);
        assert_eq!(c.get(JWT, "tok-a", 5000), None);
        assert!(c.is_empty());
    }

    #[test]
    fn capacity_is_bounded_least_recently_used_first() {
        let mut c = TokenCache::new(2);
        assert_eq!(c.capacity(), 2);
        put(&mut c, "t1", "1", 1000);
        put(&mut c, "t2", "2", 1000);
        assert!(c.get(JWT, "t1", 0).is_some()); // t2 is now the least recently used
        put(&mut c, "t3", "3", 1000);
        assert_eq!(c.len(), 2);
        assert!(c.get(JWT, "t2", 0).is_none());
        assert!(c.get(JWT, "t1", 0).is_some());
        assert!(c.get(JWT, "t3", 0).is_some());
        // Re-inserting replaces.
        put(&mut c, "t3", "3b", 1000);
        assert_eq!(c.get(JWT, "t3", 0).unwrap().0.subject, "3b");
        assert_eq!(c.len(), 2);
        c.remove("t3");
        assert!(c.get(JWT, "t3", 0).is_none());
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn zero_turns_it_off() {
        let mut c = CacheConfig { max_entries: 0 }.compile().unwrap();
        put(&mut c, "t", "x", u64::MAX);
        assert_eq!(c.get(JWT, "t", 0), None);
        assert_eq!((c.len(), c.capacity()), (0, 0));
    }

    #[test]
    fn config() {
        let c: CacheConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.max_entries, 1024);
        assert_eq!(c.compile().unwrap().capacity(), 1024);
        assert!(serde_json::from_str::<CacheConfig>(r#"{"size": 3}"#).is_err());
        let errs = CacheConfig {
            max_entries: MAX_ENTRIES_LIMIT + 1,
        }
        .compile()
        .unwrap_err();
        assert_eq!(errs[0].path(), "max_entries");
    }

    #[test]
    fn same_compares_every_byte() {
        let base: Vec<u8> = (0..=40).collect();
        for len in 0..base.len() {
            let a = &base[..len];
            assert!(same(a, a));
            assert!(!same(a, &base[..len + 1]), "lengths differ");
            for i in 0..len {
                let mut b = a.to_vec();
                b[i] ^= 0x20;
                assert!(!same(a, &b), "byte {i} of {len} differs");
            }
        }
    }

    #[test]
    fn the_token_itself_is_not_stored() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";
        let mut c = TokenCache::new(4);
        put(&mut c, token, "u", 1000);
        let dump = format!("{c:?}");
        assert!(!dump.contains(token) && !dump.contains("eyJ"));
        let stored: Vec<String> = c
            .entries
            .as_ref()
            .unwrap()
            .iter()
            .map(|(_, e)| e.signed.to_string())
            .collect();
        assert_eq!(
            stored,
            ["eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0"],
            "no signature kept"
        );
        assert!(c.get(JWT, token, 0).is_some());
        // Tokens differing in one byte are different entries.
        assert!(c.get(JWT, &format!("{token}x"), 0).is_none());
    }

    /// A hit needs the whole token: the cached signature on other claims, other claims with the
    /// cached signature, and a changed header all miss (and leave the real entry in place).
    #[test]
    fn a_hit_needs_the_signature_and_the_claims_it_signed() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVz";
        let mut c = TokenCache::new(4);
        put(&mut c, token, "user", 1000);
        for forged in [
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLWJ5dGVz", // other claims
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVz",   // other header
            "eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVz",                       // header dropped
            "c2lnbmF0dXJlLWJ5dGVz",                                           // signature alone
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVy",  // other signature
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVz.", // extra segment
        ] {
            assert_eq!(c.get(JWT, forged, 10), None, "{forged}");
            c.remove(forged);
        }
        assert_eq!(
            c.get(JWT, token, 10).unwrap().0.subject,
            "user",
            "the real entry stays"
        );
        c.remove(token);
        assert_eq!(c.get(JWT, token, 10), None);
    }

    /// A token cached as one kind of credential answers only for that kind: a session cookie's
    /// value presented as a bearer JWT (or the reverse) misses, and the entry stays.
    #[test]
    fn a_hit_needs_the_same_kind_of_credential() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2Vzc2lvbi1zaWc";
        let mut c = TokenCache::new(4);
        let headers: UpstreamHeaders = vec![("x-sub".to_string(), "user".to_string())].into();
        let session = Identity::new("user", CredentialKind::Session, "p");
        c.insert(
            CredentialKind::Session,
            token,
            &Arc::new(session),
            &headers,
            1000,
        );
        assert_eq!(c.get(JWT, token, 10), None, "a session is no JWT");
        assert_eq!(c.get(CredentialKind::MagicLink, token, 10), None);
        assert_eq!(c.get(CredentialKind::ApiKey, token, 10), None);
        let hit = c.get(CredentialKind::Session, token, 10).unwrap();
        assert_eq!(
            (hit.0.subject.as_str(), hit.0.credential),
            ("user", CredentialKind::Session)
        );
        put(
            &mut c,
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqIn0.and0",
            "j",
            1000,
        );
        assert_eq!(
            c.get(
                CredentialKind::Session,
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqIn0.and0",
                10
            ),
            None,
            "a JWT is no session"
        );
        assert!(holds(JWT) && holds(CredentialKind::Session) && holds(CredentialKind::MagicLink));
        assert!(!holds(CredentialKind::ApiKey) && !holds(CredentialKind::Dev));
    }
}
