//! The request as the core sees it, read from Envoy without trusting its bytes. The host-neutral
//! part (the request view, the bounds, the identity-header split) is shared with the native
//! module in `edgegate-envoy-glue`.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use edgegate::upstream::HeaderEdits;
use edgegate::Engine;

use edgegate_envoy_glue::request::{check_count, check_sizes, edit_ops, identity_names};
pub use edgegate_envoy_glue::request::{OverBounds, OwnedRequest, Pairs};

/// The entries of a serialized header map (proxy-wasm ABI 0.2.1: a little-endian u32 count, a
/// u32 name size and value size per entry, then each name and each value followed by a NUL),
/// borrowed from it. `None` when the buffer does not hold what its sizes say: read with bounds
/// checks, never trusted.
fn parse_serialized(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    if at > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let sizes = i * 8 + 4;
        let (name_len, value_len) = (word(sizes)?, word(sizes + 4)?);
        let name = bytes.get(at..at.checked_add(name_len)?)?;
        at = at.checked_add(name_len)?.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(value_len)?)?;
        at = at.checked_add(value_len)?.checked_add(1)?;
        out.push((name, value));
    }
    Some(out)
}

/// Runs `f` with a header map's entries, borrowed from the one buffer [`crate::hostmap`] reads
/// them into: `None` when the host refused the read (a failed call has no response map) or
/// handed over a map that does not parse. Never traps, unlike the SDK's `get_map_bytes` (a
/// status or a name it does not expect).
fn with_map<R>(map: MapType, f: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> Option<R> {
    let serialized = crate::hostmap::read_serialized(map)?;
    let pairs = parse_serialized(&serialized)?;
    Some(f(&pairs))
}

/// A header map whole (names lossily decoded, values as bytes): `None` as [`with_map`].
pub fn read_map(map: MapType) -> Option<Pairs> {
    with_map(map, |pairs| {
        pairs
            .iter()
            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
            .collect()
    })
}

/// The request, read from Envoy's header map in one call and copied once, without the client's
/// identity headers, which are removed from Envoy's map (one host call per distinct name
/// present, none when the client sent none). `Err` when the map is over the core's bounds
/// (`num_headers`, the count Envoy passed to `on_http_request_headers`, is checked before
/// anything is read); `Ok(None)` when the host refused the read or handed over a map that does
/// not parse.
pub fn read_request(
    engine: &Engine,
    num_headers: usize,
) -> Result<Option<OwnedRequest>, OverBounds> {
    check_count(num_headers)?;
    let read = with_map(MapType::HttpRequestHeaders, |pairs| {
        check_sizes(pairs).map(|()| OwnedRequest::from_map(engine, pairs))
    });
    let Some(read) = read else {
        return Ok(None);
    };
    let (req, identity) = read?;
    remove_all(MapType::HttpRequestHeaders, &identity);
    Ok(Some(req))
}

/// Removes from Envoy's `map` every entry whose name the core calls an identity header
/// (`x_edgegate_roles` as well as `X-Edgegate-Roles`): one host call per distinct name present,
/// none when the client sent none. False when the map cannot be read (then it is not cleaned).
pub fn drop_identity(engine: &Engine, map: MapType) -> bool {
    match with_map(map, |pairs| identity_names(engine, pairs)) {
        Some(names) => {
            remove_all(map, &names);
            true
        }
        None => false,
    }
}

fn remove_all(map: MapType, names: &[String]) {
    for name in names {
        let _ = hostcalls::set_map_value_bytes(map, name, None);
    }
}

/// Carries out the core's edits of an allowed request (the consumed credential, edgegate's
/// cookies) on the current request's headers.
pub fn apply_edits(edits: &HeaderEdits) {
    for (name, value) in edit_ops(edits) {
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            name,
            value.map(str::as_bytes),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::parse_serialized;

    fn serialize(map: &[(&str, &str)]) -> Vec<u8> {
        let mut out = (map.len() as u32).to_le_bytes().to_vec();
        for (n, v) in map {
            out.extend((n.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (n, v) in map {
            out.extend(n.as_bytes());
            out.push(0);
            out.extend(v.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn a_serialized_map_parses_into_its_entries() {
        let map = [
            (":path", "/a"),
            ("authorization", "Bearer x"),
            ("empty", ""),
        ];
        let bytes = serialize(&map);
        let parsed = parse_serialized(&bytes).unwrap();
        let want: Vec<(&[u8], &[u8])> = map
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(parsed, want);
        assert_eq!(parse_serialized(&[]).unwrap(), vec![]);
    }

    #[test]
    fn a_map_that_does_not_hold_what_its_sizes_say_is_refused() {
        let bytes = serialize(&[("name", "value")]);
        // Cut anywhere short of the last NUL (the final terminator itself is not needed).
        for cut in 1..bytes.len() - 1 {
            assert!(parse_serialized(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        // A count far beyond the buffer, sizes that overflow.
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_serialized(&huge).is_none());
        let mut long = bytes.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_serialized(&long).is_none());
    }
}
