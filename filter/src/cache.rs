//! A bounded cache of verified tokens, so a token seen again skips signature verification.
//!
//! Entries are keyed by the SHA-256 of the token, so the token itself is never stored, and hold
//! the [`Identity`] it verified to and the time it stops being valid. An entry is never returned
//! at or after that time. The cache is least-recently-used with a fixed capacity
//! (`max_entries`, default 1024; `0` turns it off). Build a new cache whenever the config (keys,
//! providers, claim mapping) changes: entries reflect the config they were verified under.

use std::num::NonZeroUsize;

use lru::LruCache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::identity::Identity;
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
    /// How many verified tokens to remember (least recently used go first); 0 turns the cache off.
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
    pub fn compile(&self) -> Result<TokenCache, Vec<Error>> {
        if self.max_entries > MAX_ENTRIES_LIMIT {
            return Err(vec![Error::config(
                "max_entries",
                format!("at most {MAX_ENTRIES_LIMIT}; 1024 is plenty for most gateways"),
            )]);
        }
        Ok(TokenCache::new(self.max_entries))
    }
}

/// SHA-256 of a token, the cache key.
type Key = [u8; 32];

fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

/// Verified tokens, least-recently-used first out.
#[derive(Debug)]
pub struct TokenCache {
    entries: Option<LruCache<Key, (Identity, UnixTime)>>,
}

impl TokenCache {
    /// A cache of at most `max_entries` tokens; 0 gives a cache that stores nothing.
    pub fn new(max_entries: usize) -> TokenCache {
        TokenCache {
            entries: NonZeroUsize::new(max_entries).map(LruCache::new),
        }
    }

    /// The identity `token` verified to, if it is cached and `now` is before its expiry. An
    /// expired entry is removed.
    pub fn get(&mut self, token: &str, now: UnixTime) -> Option<Identity> {
        let entries = self.entries.as_mut()?;
        let k = key(token);
        match entries.get(&k) {
            Some((identity, expires_at)) if now < *expires_at => Some(identity.clone()),
            Some(_) => {
                entries.pop(&k);
                None
            }
            None => None,
        }
    }

    /// Remembers that `token` verified to `identity` until `expires_at` (exclusive). Evicts the
    /// least recently used entry when full.
    pub fn insert(&mut self, token: &str, identity: Identity, expires_at: UnixTime) {
        if let Some(entries) = self.entries.as_mut() {
            entries.put(key(token), (identity, expires_at));
        }
    }

    /// Forgets a token (e.g. after a logout or a revocation).
    pub fn remove(&mut self, token: &str) {
        if let Some(entries) = self.entries.as_mut() {
            entries.pop(&key(token));
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
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;
    use crate::identity::CredentialKind;

    fn id(sub: &str) -> Identity {
        Identity::new(sub, CredentialKind::Jwt, "p")
    }

    #[test]
    fn hit_before_expiry_miss_and_evict_at_it() {
        let mut c = TokenCache::new(4);
        assert_eq!(c.get("tok-a", 100), None);
        c.insert("tok-a", id("a"), 200);
        assert_eq!(c.get("tok-a", 100).unwrap().subject, "a");
        assert_eq!(c.get("tok-a", 199).unwrap().subject, "a");
        assert_eq!(c.get("tok-b", 100), None);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("tok-a", 200), None, "never at expiry");
        assert_eq!(c.len(), 0, "the expired entry is evicted");
        assert_eq!(c.get("tok-a", 100), None, "and stays gone");
        c.insert("tok-a", id("a"), 200);
        assert_eq!(c.get("tok-a", 5000), None);
        assert!(c.is_empty());
    }

    #[test]
    fn capacity_is_bounded_least_recently_used_first() {
        let mut c = TokenCache::new(2);
        assert_eq!(c.capacity(), 2);
        c.insert("t1", id("1"), 1000);
        c.insert("t2", id("2"), 1000);
        assert!(c.get("t1", 0).is_some()); // t2 is now the least recently used
        c.insert("t3", id("3"), 1000);
        assert_eq!(c.len(), 2);
        assert!(c.get("t2", 0).is_none());
        assert!(c.get("t1", 0).is_some());
        assert!(c.get("t3", 0).is_some());
        // Re-inserting replaces.
        c.insert("t3", id("3b"), 1000);
        assert_eq!(c.get("t3", 0).unwrap().subject, "3b");
        assert_eq!(c.len(), 2);
        c.remove("t3");
        assert!(c.get("t3", 0).is_none());
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn zero_turns_it_off() {
        let mut c = CacheConfig { max_entries: 0 }.compile().unwrap();
        c.insert("t", id("x"), u64::MAX);
        assert_eq!(c.get("t", 0), None);
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
        assert_eq!(errs[0].path(), Some("max_entries"));
    }

    #[test]
    fn the_token_itself_is_not_stored() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";
        let mut c = TokenCache::new(4);
        c.insert(token, id("u"), 1000);
        let dump = format!("{c:?}");
        assert!(!dump.contains(token) && !dump.contains("eyJ"));
        assert!(c.get(token, 0).is_some());
        // Tokens differing in one byte are different entries.
        assert!(c.get(&format!("{token}x"), 0).is_none());
    }
}
