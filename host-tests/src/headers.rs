//! Header maps with Envoy's semantics (lower-case names, ordered, multi-valued, byte values) and the
//! proxy-wasm pair serialization used by `proxy_get_header_map_pairs` and friends.

/// An ordered, multi-valued header map. Names are stored lower-case (as Envoy's `LowerCaseString`);
/// values are bytes because a client may send obs-text that is not UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(Vec<u8>, Vec<u8>)>);

impl Headers {
    /// An empty map.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Builds a map from `(name, value)` pairs; names are lower-cased.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Self {
        let mut h = Self::new();
        for (k, v) in pairs {
            h.add(k.as_ref(), v.as_ref());
        }
        h
    }

    /// Number of entries (a repeated name counts once per entry).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// First value of `name` as bytes (Envoy's `proxy_get_header_map_value` returns the first one).
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        let key = lower(name.as_bytes());
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// First value of `name`, decoded lossily as UTF-8.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of `name`, in order, decoded lossily.
    pub fn get_all(&self, name: &str) -> Vec<String> {
        let key = lower(name.as_bytes());
        self.0
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// True when `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// All entries, decoded lossily.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    /// All entries as raw bytes.
    pub fn raw(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.0
    }

    /// Appends an entry (Envoy `addCopy`).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.0.push((lower(name), value.to_vec()));
    }

    /// Replaces the first entry of `name` and drops the others, or appends (Envoy `setCopy`).
    pub fn set(&mut self, name: &[u8], value: &[u8]) {
        let key = lower(name);
        let mut seen = false;
        self.0.retain_mut(|(k, v)| {
            if *k != key {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            *v = value.to_vec();
            true
        });
        if !seen {
            self.0.push((key, value.to_vec()));
        }
    }

    /// Removes every entry of `name`.
    pub fn remove(&mut self, name: &[u8]) {
        let key = lower(name);
        self.0.retain(|(k, _)| *k != key);
    }

    /// Sum of name and value lengths (Envoy `byteSize`).
    pub(crate) fn byte_size(&self) -> usize {
        self.0
            .iter()
            .map(|(k, v)| k.len().saturating_add(v.len()))
            .sum()
    }

    /// Serializes in the proxy-wasm map format: count, then (name_len, value_len) pairs, then
    /// NUL-terminated names and values.
    pub(crate) fn serialize(&self) -> Vec<u8> {
        serialize_pairs(&self.0)
    }

    /// Entries that Envoy would refuse to put on the wire (NUL, CR or LF in a name or value).
    pub(crate) fn invalid_entries(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| {
                k.iter()
                    .chain(v.iter())
                    .any(|b| matches!(b, 0 | b'\r' | b'\n'))
            })
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }
}

pub(crate) fn lower(b: &[u8]) -> Vec<u8> {
    b.to_ascii_lowercase()
}

pub(crate) fn serialize_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses the proxy-wasm map format. Like Envoy's `PairsUtil::toPairs`, malformed input yields an
/// empty list rather than an error.
pub(crate) fn deserialize_pairs(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    parse_pairs(data).unwrap_or_default()
}

fn read_u32(data: &[u8], at: usize) -> Option<usize> {
    let end = at.checked_add(4)?;
    let bytes: [u8; 4] = data.get(at..end)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

fn parse_pairs(data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(data, 0)?;
    // Each pair needs at least 8 bytes of sizes and 2 NULs: bound the count by the input length.
    if count > data.len() / 10 + 1 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let at = i.checked_mul(8)?.checked_add(4)?;
        sizes.push((read_u32(data, at)?, read_u32(data, at.checked_add(4)?)?));
    }
    let mut p = count.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(count);
    for (klen, vlen) in sizes {
        let kend = p.checked_add(klen)?;
        let key = data.get(p..kend)?.to_vec();
        if *data.get(kend)? != 0 {
            return None;
        }
        p = kend.checked_add(1)?;
        let vend = p.checked_add(vlen)?;
        let value = data.get(p..vend)?.to_vec();
        if *data.get(vend)? != 0 {
            return None;
        }
        p = vend.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_semantics() {
        let mut h = Headers::from_pairs(&[("X-A", "1"), ("x-a", "2"), ("b", "")]);
        assert_eq!(h.get("x-A").as_deref(), Some("1"));
        assert_eq!(h.get_all("x-a"), vec!["1", "2"]);
        let back = deserialize_pairs(&h.serialize());
        assert_eq!(back, h.raw());
        h.set(b"X-A", b"3");
        assert_eq!(h.get_all("x-a"), vec!["3"]);
        h.remove(b"x-a");
        assert!(!h.contains("x-a"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn malformed_is_empty() {
        assert!(deserialize_pairs(&[1, 0, 0, 0, 200, 0, 0, 0]).is_empty());
        assert!(deserialize_pairs(&[0xff, 0xff, 0xff, 0xff]).is_empty());
        // Missing NUL terminator.
        assert!(
            deserialize_pairs(&[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'a', b'b', b'c', 0])
                .is_empty()
        );
    }
}
