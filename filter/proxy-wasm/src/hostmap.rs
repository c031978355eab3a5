//! A header map read in one host call into one buffer, past the SDK: its `get_map_bytes` makes a
//! `String` and a `Vec` per header (two allocations each, on every request) and traps on a
//! status or a name it does not expect. [`crate::request`] parses the buffer with bounds checks.
#![allow(unsafe_code)]

use proxy_wasm::types::MapType;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
extern "C" {
    /// proxy-wasm ABI 0.2.1 (the call the SDK's `get_map_bytes` makes): the host allocates the
    /// serialized map in this module's memory (through the SDK's `proxy_on_memory_allocate`)
    /// and writes where and how long. Integers here, not the SDK's enums: a status the SDK does
    /// not know must not become an invalid enum value.
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// A header map, serialized (proxy-wasm ABI 0.2.1), in a buffer of this module's: one host call,
/// one allocation. `None` when the host refused the read.
#[cfg(target_arch = "wasm32")]
pub fn read_serialized(map: MapType) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: both out-pointers point to live locals; the host writes them and nothing else.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    if status != 0 {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: the host allocated `size` bytes at `data` through `proxy_on_memory_allocate`,
    // which hands out a `Vec<u8>` of exactly that capacity and forgets it; ownership comes back
    // here, once (as in the SDK's `get_map_bytes`).
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Off wasm there is no host: no map.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_serialized(_map: MapType) -> Option<Vec<u8>> {
    None
}
