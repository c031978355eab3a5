//! The device-authorization records (`login.device`, RFC 8628) of this Envoy process: the core's
//! store ([`edgegate::login::DeviceStep`]), read and written by compare-and-set under one lock.
//! One store per process (all filter configs and worker threads share it), where the proxy-wasm
//! filter keeps them in shared data: per node either way.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use edgegate::login::Stored;
use edgegate::UnixTime;

use crate::config::lock;

/// Most live records kept; beyond it writes fail closed (500) until records expire.
pub const MAX_RECORDS: usize = 65_536;

/// Records by key: value, version, expiry.
#[derive(Debug, Default)]
pub struct DeviceStore {
    records: HashMap<String, (String, u64, UnixTime)>,
    /// The last version handed out: versions are never reused, even after a record expires.
    counter: u64,
}

impl DeviceStore {
    /// The live record `key`, if any.
    pub fn read(&self, key: &str, now: UnixTime) -> Option<Stored> {
        self.records
            .get(key)
            .filter(|(_, _, exp)| now < *exp)
            .map(|(value, version, _)| Stored {
                value: value.clone(),
                version: *version,
            })
    }

    /// Writes `value` at `key` if its live version is still `expect` (`None`: absent).
    /// `Some(false)`: the compare-and-set lost; `None`: the store is full (fail closed).
    pub fn cas(
        &mut self,
        key: &str,
        value: &str,
        expect: Option<u64>,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Option<bool> {
        let live = self.records.get(key).filter(|(_, _, exp)| now < *exp);
        if live.map(|(_, version, _)| *version) != expect {
            return Some(false);
        }
        if !self.records.contains_key(key) && self.records.len() >= MAX_RECORDS {
            self.records.retain(|_, (_, _, exp)| now < *exp);
            if self.records.len() >= MAX_RECORDS {
                return None;
            }
        }
        self.counter = self.counter.saturating_add(1);
        self.records.insert(
            key.to_string(),
            (value.to_string(), self.counter, expires_at),
        );
        Some(true)
    }
}

/// The process's store.
fn store() -> &'static Mutex<DeviceStore> {
    static STORE: OnceLock<Mutex<DeviceStore>> = OnceLock::new();
    STORE.get_or_init(|| Mutex::new(DeviceStore::default()))
}

/// [`DeviceStore::read`] on the process's store.
pub fn read(key: &str, now: UnixTime) -> Option<Stored> {
    lock(store()).read(key, now)
}

/// [`DeviceStore::cas`] on the process's store.
pub fn cas(
    key: &str,
    value: &str,
    expect: Option<u64>,
    expires_at: UnixTime,
    now: UnixTime,
) -> Option<bool> {
    lock(store()).cas(key, value, expect, expires_at, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_set_creates_once_replaces_by_version_and_forgets_at_expiry() {
        let mut s = DeviceStore::default();
        assert_eq!(s.read("k", 10), None);
        assert_eq!(s.cas("k", "a", None, 100, 10), Some(true));
        assert_eq!(s.cas("k", "b", None, 100, 10), Some(false), "created once");
        let v1 = s.read("k", 10).unwrap();
        assert_eq!(v1.value, "a");
        assert_eq!(s.cas("k", "b", Some(v1.version), 100, 11), Some(true));
        assert_eq!(
            s.cas("k", "c", Some(v1.version), 100, 12),
            Some(false),
            "stale version"
        );
        let v2 = s.read("k", 12).unwrap();
        assert_eq!(v2.value, "b");
        assert!(v2.version > v1.version);
        // expired: absent, and created again with a version never seen before
        assert_eq!(s.read("k", 100), None);
        assert_eq!(s.cas("k", "d", Some(v2.version), 200, 100), Some(false));
        assert_eq!(s.cas("k", "d", None, 200, 100), Some(true));
        assert!(s.read("k", 100).unwrap().version > v2.version);
    }
}
