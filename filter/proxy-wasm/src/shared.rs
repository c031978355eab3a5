//! What the VMs of one Envoy share: fetched key sets and used magic links (proxy-wasm shared
//! data, one store per `vm_id`, with compare-and-swap versions).
//!
//! Every worker thread runs its own VM, and each VM's root context may fetch JWKS. The last good
//! raw JWKS of a provider is published under `edgegate.jwks.<provider>.<source hash>`, so every
//! VM verifies with the newest good keys whichever VM fetched them; HTTP contexts re-parse only
//! when the entry's CAS version changed.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use edgegate::UnixTime;

const JWKS_MAGIC: &str = "edgegate-jwks-v1";

/// Shared-data key of a provider's published JWKS: `edgegate.jwks.<provider>.<source hash>`.
/// The hash of the source (URL and refresh settings) keeps two configs that reuse a provider
/// name for different IdPs (e.g. two listeners, or old and new config during an LDS update)
/// from overwriting each other's keys.
pub fn jwks_key(provider: &str, source_id: &str) -> String {
    format!(
        "edgegate.jwks.{provider}.{:08x}",
        fnv1a(source_id.as_bytes())
    )
}

/// Shared-data key of the published API-key list (`api_keys.remote`):
/// `edgegate.apikeys.<source hash>` (the hash of its URL and settings, as for JWKS).
pub fn list_key(source_id: &str) -> String {
    format!("edgegate.apikeys.{:08x}", fnv1a(source_id.as_bytes()))
}

/// A published key set (or API-key list): where it came from (so a config that renamed a provider or moved its
/// URL never adopts another source's keys), when it was fetched, and the raw JWKS bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub source: String,
    pub fetched_at: UnixTime,
    pub raw: Vec<u8>,
}

impl Published {
    pub fn encode(&self) -> Vec<u8> {
        let source: String = self
            .source
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect();
        let mut out = format!("{JWKS_MAGIC}\n{source}\n{}\n", self.fetched_at).into_bytes();
        out.extend_from_slice(&self.raw);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Published> {
        let mut parts = bytes.splitn(4, |b| *b == b'\n');
        if parts.next()? != JWKS_MAGIC.as_bytes() {
            return None;
        }
        let source = std::str::from_utf8(parts.next()?).ok()?.to_string();
        let fetched_at = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let raw = parts.next()?.to_vec();
        Some(Published {
            source,
            fetched_at,
            raw,
        })
    }
}

/// Reads a published JWKS (by its [`jwks_key`]) and its CAS version.
pub fn read_jwks(key: &str) -> (Option<Published>, Option<u32>) {
    match hostcalls::get_shared_data(key) {
        Ok((Some(bytes), cas)) => (Published::decode(&bytes), cas),
        Ok((None, cas)) => (None, cas),
        Err(_) => (None, None),
    }
}

/// Publishes freshly fetched keys unless the entry already holds the same bytes or newer ones
/// from the same source. Returns true when it wrote.
pub fn publish_jwks(key: &str, p: &Published) -> bool {
    publish(key, p, |c| c.raw == p.raw || c.fetched_at > p.fetched_at)
}

/// Publishes the API-key list a fetch brought or confirmed, unless the entry holds one from
/// the same source fetched later (or the same list, as recently): a `304` renews the list's
/// freshness for every VM. Returns true when it wrote.
pub fn publish_list(key: &str, p: &Published) -> bool {
    publish(key, p, |c| {
        c.fetched_at > p.fetched_at || (c.fetched_at == p.fetched_at && c.raw == p.raw)
    })
}

/// Writes `p` by compare-and-swap unless `current` (from the same source) says not to.
fn publish(key: &str, p: &Published, keep: impl Fn(&Published) -> bool) -> bool {
    for _ in 0..4 {
        let (current, cas) = match hostcalls::get_shared_data(key) {
            Ok((bytes, cas)) => (bytes.as_deref().and_then(Published::decode), cas),
            Err(_) => (None, None),
        };
        if let Some(c) = &current {
            if c.source == p.source && keep(c) {
                return false;
            }
        }
        match hostcalls::set_shared_data(key, Some(&p.encode()), cas) {
            Ok(()) => return true,
            Err(Status::CasMismatch) => continue,
            Err(_) => return false,
        }
    }
    false
}

// --- magic links: single use ---------------------------------------------------------------

/// Used magic-link ids live in a fixed set of buckets, `edgegate.magic.<nn>`, each a list of
/// `<expires_at> <hex jti>` lines updated by compare-and-swap. Why buckets and not one key per
/// `jti`: Envoy's CAS cannot express "insert if absent" (a set with any CAS on a missing key
/// succeeds), so two workers racing on a new key could both win. The buckets are created once,
/// at configure time, and afterwards only ever changed by CAS: a replay race always has a loser.
pub const MAGIC_BUCKETS: u32 = 16;
/// Most live entries per bucket; beyond it logins fail closed (503) until links expire.
pub const MAGIC_BUCKET_MAX: usize = 4096;
const MAX_JTI: usize = 256;

fn magic_key(bucket: u32) -> String {
    format!("edgegate.magic.{bucket:02}")
}

/// Creates the buckets that do not exist yet (called from `on_configure`, before traffic): the
/// magic links' and the renewals'.
pub fn ensure_magic_buckets() {
    let keys = (0..MAGIC_BUCKETS)
        .map(magic_key)
        .chain((0..RENEWAL_BUCKETS).map(renewal_key))
        .chain((0..DEVICE_BUCKETS).map(device_bucket_key));
    for key in keys {
        if let Ok((None, None)) = hostcalls::get_shared_data(&key) {
            let _ = hostcalls::set_shared_data(&key, Some(b""), None);
        }
    }
}

// --- session renewals: one per refresh cookie across the VMs ---------------------------------

/// Renewals in flight or just done, in buckets `edgegate.renew.<nn>` (created at configure and
/// changed by CAS, like the magic-link buckets), each the text of an
/// [`edgegate::login::RenewalBoard`]: requests on any worker thread join the one renewal of
/// their refresh cookie, so a rotated refresh token is used once.
pub const RENEWAL_BUCKETS: u32 = 16;

fn renewal_key(bucket: u32) -> String {
    format!("edgegate.renew.{bucket:02}")
}

/// Runs `f` on the renewal board of `cookie`'s bucket and writes it back (compare-and-swap,
/// retried: `f` may run more than once). `None` when the store is unavailable.
pub fn with_renewal_board<R>(
    cookie: &str,
    mut f: impl FnMut(&mut edgegate::login::RenewalBoard) -> R,
) -> Option<R> {
    let key = renewal_key(fnv1a(cookie.as_bytes()) % RENEWAL_BUCKETS);
    update_bucket(&key, |text| {
        let mut board = edgegate::login::RenewalBoard::decode(text);
        let r = f(&mut board);
        Ok((board.encode(), r))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First use: recorded.
    Fresh,
    /// Used before.
    Replayed,
    /// Could not record it (store full or contended): fail closed.
    Unavailable,
}

/// Records the single use of `jti` (remembered until `expires_at`).
pub fn claim_magic_link(jti: &str, expires_at: UnixTime, now: UnixTime) -> Claim {
    if jti.is_empty() || jti.len() > MAX_JTI {
        return Claim::Unavailable;
    }
    let id = hex(jti.as_bytes());
    let key = magic_key(fnv1a(jti.as_bytes()) % MAGIC_BUCKETS);
    update_bucket(&key, |text| {
        claim_in(text, &id, expires_at, now).map(|updated| (updated, Claim::Fresh))
    })
    .unwrap_or(Claim::Unavailable)
}

/// Rewrites bucket `key` by compare-and-swap: `f` turns its text into the new text and a
/// result, or answers without writing (`Err`). Retried on a CAS mismatch, so `f` may run more
/// than once. `None` when the store is unavailable or stays contended.
fn update_bucket<R>(key: &str, mut f: impl FnMut(&str) -> Result<(String, R), R>) -> Option<R> {
    for _ in 0..16 {
        let (bytes, cas) = hostcalls::get_shared_data(key).ok()?;
        let Some(cas) = cas else {
            // The bucket is missing (should not happen after configure): create it, then retry.
            let _ = hostcalls::set_shared_data(key, Some(b""), None);
            continue;
        };
        let text = bytes
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let (updated, r) = match f(&text) {
            Ok(x) => x,
            Err(r) => return Some(r),
        };
        match hostcalls::set_shared_data(key, Some(updated.as_bytes()), Some(cas)) {
            Ok(()) => return Some(r),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

// --- Device authorization records (login.device) ------------------------------------------------
//
// The core's record store ([`edgegate::login::DeviceStep`]): reads, and compare-and-set writes
// where "create only if absent" must hold too. proxy-wasm's `set_shared_data` without a `cas`
// is unconditional, so records live in buckets created at configure (as magic-link `jti`s do):
// a write is a compare-and-set of its whole bucket that checks the record's own version inside.
// Bucket text: a counter line (versions are never reused, even after a record expires), then
// one JSON line per record `{"k": key, "v": value, "n": version, "e": expires_at}`. Shared by
// every VM of the Envoy process: per node.

/// How many buckets the device records are spread over.
pub const DEVICE_BUCKETS: u32 = 16;
/// The most bytes one bucket holds (expired records are dropped first); past it, writes fail
/// closed.
const DEVICE_BUCKET_MAX_BYTES: usize = 256 * 1024;

fn device_bucket_key(bucket: u32) -> String {
    format!("edgegate.device.{bucket:02}")
}

fn device_bucket_of(key: &str) -> String {
    device_bucket_key(fnv1a(key.as_bytes()) % DEVICE_BUCKETS)
}

/// One record line of a device bucket.
fn device_entry(line: &str) -> Option<(String, String, u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some((
        v.get("k")?.as_str()?.to_string(),
        v.get("v")?.as_str()?.to_string(),
        v.get("n")?.as_u64()?,
        v.get("e")?.as_u64()?,
    ))
}

/// The live record `key`, if any; `Err` when the store cannot be read.
pub(crate) fn device_read(key: &str, now: UnixTime) -> Result<Option<edgegate::login::Stored>, ()> {
    let (bytes, _) = hostcalls::get_shared_data(&device_bucket_of(key)).map_err(|_| ())?;
    let text = bytes
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok(text
        .lines()
        .skip(1)
        .filter_map(device_entry)
        .find(|(k, _, _, e)| k == key && now < *e)
        .map(|(_, value, version, _)| edgegate::login::Stored { value, version }))
}

/// Writes `value` at `key` if its live version is still `expect` (`None`: absent). `Ok(false)`:
/// the compare-and-set lost; `Err`: the store is unavailable or full (fail closed).
pub(crate) fn device_cas(
    key: &str,
    value: &str,
    expect: Option<u64>,
    expires_at: UnixTime,
    now: UnixTime,
) -> Result<bool, ()> {
    let outcome = update_bucket(&device_bucket_of(key), |text| {
        let mut lines = text.lines();
        let counter: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut out = String::with_capacity(text.len() + value.len() + 64);
        let mut current = None;
        let mut kept = String::new();
        for line in lines {
            let Some((k, _, n, e)) = device_entry(line) else {
                continue;
            };
            if now >= e {
                continue;
            }
            if k == key {
                current = Some(n);
                continue;
            }
            kept.push_str(line);
            kept.push('\n');
        }
        if current != expect {
            return Err(Some(false));
        }
        let version = counter.saturating_add(1);
        let entry = serde_json::json!({"k": key, "v": value, "n": version, "e": expires_at});
        out.push_str(&version.to_string());
        out.push('\n');
        out.push_str(&kept);
        out.push_str(&entry.to_string());
        out.push('\n');
        if out.len() > DEVICE_BUCKET_MAX_BYTES {
            return Err(None);
        }
        Ok((out, Some(true)))
    });
    match outcome {
        Some(Some(written)) => Ok(written),
        _ => Err(()),
    }
}

/// The bucket's new text with `id` added and expired entries dropped, or why not.
fn claim_in(text: &str, id: &str, expires_at: UnixTime, now: UnixTime) -> Result<String, Claim> {
    let mut out = String::with_capacity(text.len() + id.len() + 24);
    let mut live = 0usize;
    for line in text.lines() {
        let Some((exp, used)) = line.split_once(' ') else {
            continue;
        };
        let Ok(exp) = exp.parse::<UnixTime>() else {
            continue;
        };
        if used == id {
            // Remembered until it expires; it stays refused whatever `now` says after that,
            // because the core refuses the expired token itself.
            return Err(Claim::Replayed);
        }
        if exp < now {
            continue;
        }
        live += 1;
        out.push_str(line);
        out.push('\n');
    }
    if live >= MAGIC_BUCKET_MAX {
        return Err(Claim::Unavailable);
    }
    out.push_str(&format!("{expires_at} {id}\n"));
    Ok(out)
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_rejects_garbage() {
        let p = Published {
            source: "idp|http://127.0.0.1:1/jwks.json".into(),
            fetched_at: 1_700_000_000,
            raw: b"{\"keys\":[]}\n\nx".to_vec(),
        };
        assert_eq!(Published::decode(&p.encode()), Some(p));
        assert_eq!(Published::decode(b""), None);
        assert_eq!(Published::decode(b"other\nx\n1\n{}"), None);
        assert_eq!(
            Published::decode(b"edgegate-jwks-v1\nx\nnot-a-number\n{}"),
            None
        );
        let weird = Published {
            source: "a\nb".into(),
            fetched_at: 1,
            raw: vec![],
        };
        assert_eq!(Published::decode(&weird.encode()).unwrap().source, "a b");
    }

    #[test]
    fn a_jti_is_claimed_once_and_expired_entries_are_dropped() {
        let t = claim_in("", "aa", 100, 50).unwrap();
        assert_eq!(claim_in(&t, "aa", 100, 60), Err(Claim::Replayed));
        let t2 = claim_in(&t, "bb", 200, 60).unwrap();
        assert!(t2.contains("aa") && t2.contains("bb"));
        // "aa" expired at 100: dropped when the bucket is next written.
        let t3 = claim_in(&t2, "cc", 300, 150).unwrap();
        assert!(!t3.contains("aa") && t3.contains("bb") && t3.contains("cc"));
        // Garbage lines are ignored, not fatal.
        assert!(claim_in("junk\n\n1 \nx y\n", "dd", 10, 1).is_ok());
    }

    #[test]
    fn a_full_bucket_fails_closed() {
        let mut t = String::new();
        for i in 0..MAGIC_BUCKET_MAX {
            t.push_str(&format!("1000 {i:x}\n"));
        }
        assert_eq!(claim_in(&t, "new", 1000, 10), Err(Claim::Unavailable));
        // ...until entries expire.
        assert!(claim_in(&t, "new", 2000, 1001).is_ok());
    }

    #[test]
    fn hashing_spreads_and_hex_is_plain() {
        assert_eq!(hex(b"\x00\xffa"), "00ff61");
        let buckets: std::collections::HashSet<u32> = (0..200)
            .map(|i| fnv1a(format!("jti-{i}").as_bytes()) % MAGIC_BUCKETS)
            .collect();
        assert_eq!(buckets.len() as u32, MAGIC_BUCKETS);
    }
}
