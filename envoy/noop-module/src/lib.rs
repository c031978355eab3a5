//! A benchmark fixture, not part of edgegate: an Envoy dynamic module (ABI of Envoy 1.40,
//! `v0.2.0`) whose HTTP filter does nothing but the host calls its plugin config names, so that
//! `envoy/bench.sh` can price what Envoy charges any native module per request, and what the
//! calls edgegate's module makes on a cached allow cost, without edgegate's own work.
//!
//! Plugin config: `"READ,ADD,REMOVE"` (missing fields are 0):
//! - READ = 1: read the request header map whole (its size, then the pairs), as edgegate does;
//! - ADD = n: add n request headers `x-noop-0..n` (edgegate adds its identity headers);
//! - REMOVE = 1: remove `authorization` (edgegate keeps a consumed credential at the edge).
//!
//! Envoy calls the hooks only as abi.h says (on the stream's worker thread, with its own
//! pointers); the module has no panicking path (no indexing, no unwrap).
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_void};

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    ptr: *const c_char,
    length: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

const REQUEST_HEADER: u32 = 0;
const CONTINUE: u32 = 0;

extern "C" {
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, kind: u32)
        -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        kind: u32,
        out: *mut Header,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        kind: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: *mut c_void,
        kind: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
}

/// What each request does (the plugin config).
struct Plan {
    read: bool,
    add: usize,
    remove: bool,
}

const NAMES: [&str; 16] = [
    "x-noop-0", "x-noop-1", "x-noop-2", "x-noop-3", "x-noop-4", "x-noop-5", "x-noop-6", "x-noop-7",
    "x-noop-8", "x-noop-9", "x-noop-a", "x-noop-b", "x-noop-c", "x-noop-d", "x-noop-e", "x-noop-f",
];

fn buf(s: &[u8]) -> Buffer {
    Buffer {
        ptr: s.as_ptr().cast(),
        length: s.len(),
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    c"v0.2.0".as_ptr()
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _envoy: *mut c_void,
    _name: Buffer,
    config: Buffer,
) -> *const c_void {
    // SAFETY: Envoy's config bytes, valid during this call.
    let raw = unsafe { std::slice::from_raw_parts(config.ptr.cast::<u8>(), config.length) };
    let text = String::from_utf8_lossy(raw);
    let mut fields = text
        .split(',')
        .map(|f| f.trim().parse::<usize>().unwrap_or(0));
    let plan = Plan {
        read: fields.next().unwrap_or(0) == 1,
        add: fields.next().unwrap_or(0).min(NAMES.len()),
        remove: fields.next().unwrap_or(0) == 1,
    };
    Box::into_raw(Box::new(plan)).cast()
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    // SAFETY: the pointer config_new returned, destroyed once.
    drop(unsafe { Box::from_raw(config.cast::<Plan>().cast_mut()) });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _envoy: *mut c_void,
    _config: *const c_void,
    _event: u64,
) {
}

/// The stream's filter is the config itself (the module keeps no per-stream state).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _envoy: *mut c_void,
) -> *const c_void {
    config
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: *mut c_void,
    module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: the config pointer handed back by filter_new, alive while the stream is.
    let Some(plan) = (unsafe { module.cast::<Plan>().as_ref() }) else {
        return CONTINUE;
    };
    if plan.read {
        // SAFETY: the hook's filter pointer; `out` has room for the count Envoy reported.
        unsafe {
            let n = envoy_dynamic_module_callback_http_get_headers_size(envoy, REQUEST_HEADER);
            let mut out = vec![
                Header {
                    key_ptr: std::ptr::null(),
                    key_length: 0,
                    value_ptr: std::ptr::null(),
                    value_length: 0
                };
                n
            ];
            envoy_dynamic_module_callback_http_get_headers(envoy, REQUEST_HEADER, out.as_mut_ptr());
            std::hint::black_box(&out);
        }
    }
    if plan.remove {
        let null = Buffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        // SAFETY: the hook's filter pointer; a live name; a null value removes.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                envoy,
                REQUEST_HEADER,
                buf(b"authorization"),
                null,
            )
        };
    }
    for name in NAMES.iter().take(plan.add) {
        // SAFETY: the hook's filter pointer; live name and value, copied by Envoy.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                envoy,
                REQUEST_HEADER,
                buf(name.as_bytes()),
                buf(b"noop-value"),
            )
        };
    }
    CONTINUE
}

macro_rules! continue_hook {
    ($($name:ident($($arg:ty),*);)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name($(_: $arg),*) -> u32 {
            CONTINUE
        }
    )*};
}

continue_hook! {
    envoy_dynamic_module_on_http_filter_request_body(*mut c_void, *const c_void, bool);
    envoy_dynamic_module_on_http_filter_request_trailers(*mut c_void, *const c_void);
    envoy_dynamic_module_on_http_filter_response_headers(*mut c_void, *const c_void, bool);
    envoy_dynamic_module_on_http_filter_response_body(*mut c_void, *const c_void, bool);
    envoy_dynamic_module_on_http_filter_response_trailers(*mut c_void, *const c_void);
}

macro_rules! empty_hook {
    ($($name:ident($($arg:ty),*);)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name($(_: $arg),*) {}
    )*};
}

empty_hook! {
    envoy_dynamic_module_on_http_filter_config_http_callout_done(*mut c_void, *const c_void, u64, u32, *mut Header, usize, *mut Buffer, usize);
    envoy_dynamic_module_on_http_filter_scheduled(*mut c_void, *const c_void, u64);
    envoy_dynamic_module_on_http_filter_destroy(*const c_void);
    envoy_dynamic_module_on_http_filter_stream_complete(*mut c_void, *const c_void);
    envoy_dynamic_module_on_http_filter_http_callout_done(*mut c_void, *const c_void, u64, u32, *mut Header, usize, *mut Buffer, usize);
    envoy_dynamic_module_on_http_filter_http_stream_headers(*mut c_void, *const c_void, u64, *mut Header, usize, bool);
    envoy_dynamic_module_on_http_filter_http_stream_data(*mut c_void, *const c_void, u64, *const Buffer, usize, bool);
    envoy_dynamic_module_on_http_filter_http_stream_trailers(*mut c_void, *const c_void, u64, *mut Header, usize);
    envoy_dynamic_module_on_http_filter_http_stream_complete(*mut c_void, *const c_void, u64);
    envoy_dynamic_module_on_http_filter_http_stream_reset(*mut c_void, *const c_void, u64, u32);
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(*mut c_void, *const c_void);
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(*mut c_void, *const c_void);
}
