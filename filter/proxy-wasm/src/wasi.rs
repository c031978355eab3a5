//! What the filter takes from WASI, which Envoy's wasm runtimes provide to every module:
//! random bytes (`random_get`, for login's state, nonce, PKCE and cookie nonces) and the VM's
//! environment (`environ_get`, for the client secret in `vm_config.environment_variables`).
//! Declared by hand because the filter is built for `wasm32-unknown-unknown`; off wasm (the
//! crate's own unit tests) there is no randomness and no environment.
#![allow(unsafe_code)]

use edgegate::login::FLOW_RANDOM_BYTES;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
    fn environ_sizes_get(count: *mut usize, size: *mut usize) -> u16;
    fn environ_get(environ: *mut *mut u8, buf: *mut u8) -> u16;
}

/// Fresh bytes from the host's CSPRNG; all zeros when there is none (the core then refuses to
/// log in with them).
#[cfg(target_arch = "wasm32")]
pub fn random_bytes() -> [u8; FLOW_RANDOM_BYTES] {
    let mut buf = [0u8; FLOW_RANDOM_BYTES];
    // SAFETY: `buf` is a live, writable buffer of exactly `buf.len()` bytes; the host writes at
    // most that many bytes into it and returns an errno.
    let errno = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
    if errno != 0 {
        return [0u8; FLOW_RANDOM_BYTES];
    }
    buf
}

/// Off wasm there is no host CSPRNG here: zeros, which the core refuses.
#[cfg(not(target_arch = "wasm32"))]
pub fn random_bytes() -> [u8; FLOW_RANDOM_BYTES] {
    [0u8; FLOW_RANDOM_BYTES]
}

/// The VM's environment variable `name` (Envoy: `vm_config.environment_variables`), if set
/// and UTF-8.
#[cfg(target_arch = "wasm32")]
pub fn env_var(name: &str) -> Option<String> {
    let (mut count, mut size) = (0usize, 0usize);
    // SAFETY: both pointers are to live, writable `usize` locals.
    if unsafe { environ_sizes_get(&mut count, &mut size) } != 0 || count == 0 {
        return None;
    }
    if count > 4096 || size > 1 << 20 {
        return None;
    }
    let mut ptrs: Vec<*mut u8> = vec![std::ptr::null_mut(); count];
    let mut buf = vec![0u8; size];
    // SAFETY: `ptrs` has room for the `count` pointers and `buf` for the `size` bytes the host
    // just reported; the host fills them and returns an errno.
    if unsafe { environ_get(ptrs.as_mut_ptr(), buf.as_mut_ptr()) } != 0 {
        return None;
    }
    let prefix = format!("{name}=");
    buf.split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| entry.strip_prefix(&prefix).map(str::to_string))
}

/// Off wasm there is no VM environment.
#[cfg(not(target_arch = "wasm32"))]
pub fn env_var(_name: &str) -> Option<String> {
    None
}
