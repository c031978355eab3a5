//! The request as the core sees it, read from Envoy without trusting its bytes. The host-neutral
//! part (the request view, the bounds, the identity-header split) is shared with the native
//! module in `edgegate-envoy-glue`.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use edgegate::upstream::HeaderEdits;
use edgegate::Engine;

use edgegate_envoy_glue::request::{check_count, check_sizes, edit_ops, split_identity};
pub use edgegate_envoy_glue::request::{OverBounds, OwnedRequest, Pairs};

/// The request header map, whole (the bytes variant: the string variant of the SDK traps on a
/// non-UTF-8 value). `None` when the host refused the read.
pub fn read_pairs() -> Option<Vec<(String, Vec<u8>)>> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders).ok()
}

/// The request header map, checked against the core's bounds before anything is copied out of
/// it: `Err` when it is over them, `Ok(None)` when the host refused the read. `num_headers` is
/// the count Envoy passed to `on_http_request_headers`: a map with too many fields is refused
/// without being read.
pub fn read_bounded(num_headers: usize) -> Result<Option<Pairs>, OverBounds> {
    check_count(num_headers)?;
    let pairs = read_pairs();
    if let Some(p) = &pairs {
        check_sizes(p)?;
    }
    Ok(pairs)
}

/// Removes from Envoy's `map` every entry whose name the core calls an identity header
/// (`x_edgegate_roles` as well as `X-Edgegate-Roles`): one host call per distinct name present,
/// none when the client sent none. Returns the other pairs, in order.
pub fn drop_identity(engine: &Engine, map: MapType, pairs: Pairs) -> Pairs {
    let (kept, removed) = split_identity(engine, pairs);
    for name in &removed {
        let _ = hostcalls::set_map_value_bytes(map, name, None);
    }
    kept
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
