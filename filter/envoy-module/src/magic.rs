//! Magic links are single use: the `jti`s used in this Envoy process, remembered until they
//! expire. One set per process (all filter configs and worker threads share it, and an LDS update
//! keeps it), where the proxy-wasm filter keeps them in shared data per `vm_id`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use edgegate::UnixTime;

use crate::config::lock;

/// Most live entries kept; beyond it logins fail closed (503) until links expire.
pub const MAX_USED: usize = 65_536;
const MAX_JTI: usize = 256;

/// What recording a use found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First use: recorded.
    Fresh,
    /// Used before.
    Replayed,
    /// Could not record it (the set is full): fail closed.
    Unavailable,
}

/// Used `jti`s and when each expires.
#[derive(Debug, Default)]
pub struct UsedSet {
    used: HashMap<String, UnixTime>,
}

impl UsedSet {
    /// Records the use of `jti` (remembered until `expires_at`).
    pub fn claim(&mut self, jti: &str, expires_at: UnixTime, now: UnixTime) -> Claim {
        if jti.is_empty() || jti.len() > MAX_JTI {
            return Claim::Unavailable;
        }
        if self.used.contains_key(jti) {
            // Remembered until it expires; after that the core refuses the expired token itself.
            return Claim::Replayed;
        }
        if self.used.len() >= MAX_USED {
            self.used.retain(|_, exp| *exp >= now);
            if self.used.len() >= MAX_USED {
                return Claim::Unavailable;
            }
        }
        self.used.insert(jti.to_string(), expires_at);
        Claim::Fresh
    }
}

/// The process's set.
fn used() -> &'static Mutex<UsedSet> {
    static USED: OnceLock<Mutex<UsedSet>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(UsedSet::default()))
}

/// Records the single use of `jti` in this process.
pub fn claim(jti: &str, expires_at: UnixTime, now: UnixTime) -> Claim {
    lock(used()).claim(jti, expires_at, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_claimed_once() {
        let mut s = UsedSet::default();
        let too_long = "x".repeat(300);
        // (jti, expires_at, now, the answer), claimed in this order on the same set.
        for (jti, expires_at, now, want) in [
            ("a", 100, 50, Claim::Fresh),
            ("a", 100, 60, Claim::Replayed),
            ("b", 100, 60, Claim::Fresh),
            ("", 100, 60, Claim::Unavailable),
            (too_long.as_str(), 100, 60, Claim::Unavailable),
        ] {
            assert_eq!(s.claim(jti, expires_at, now), want, "{jti}");
        }
    }

    #[test]
    fn a_full_set_fails_closed_until_entries_expire() {
        let mut s = UsedSet::default();
        for i in 0..MAX_USED {
            assert_eq!(s.claim(&format!("j{i}"), 1000, 10), Claim::Fresh);
        }
        assert_eq!(s.claim("new", 1000, 10), Claim::Unavailable);
        assert_eq!(s.claim("new", 2000, 1001), Claim::Fresh);
        assert_eq!(s.claim("new", 2000, 1002), Claim::Replayed);
    }

    #[test]
    fn parallel_claims_have_one_winner() {
        let jti = "parallel-claims-have-one-winner";
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| sc.spawn(|| claim(jti, u64::MAX, 1)))
                .collect();
            hs.into_iter()
                .map(|h| usize::from(h.join().unwrap() == Claim::Fresh))
                .sum()
        });
        assert_eq!(wins, 1);
    }
}
