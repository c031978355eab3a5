//! State behind the host: the process-wide `World` (clock, shared data, queues, stats — shared by
//! every VM, as in Envoy where each worker thread runs its own VM) and the per-VM `VmState` that
//! wasmtime keeps in the `Store`.

use crate::headers::Headers;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::StoreLimits;

/// proxy-wasm `proxy_status_t` values.
#[allow(dead_code)]
pub(crate) mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const SERIALIZATION_FAILURE: i32 = 3;
    pub const PARSE_FAILURE: i32 = 4;
    pub const INVALID_MEMORY_ACCESS: i32 = 6;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
    pub const UNIMPLEMENTED: i32 = 12;
}

/// Kind of a metric defined by the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Gauge (may go down).
    Gauge,
    /// Histogram (records samples).
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_abi(t: i32) -> Option<Self> {
        match t {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }
    pub(crate) fn tag(self) -> u32 {
        match self {
            Self::Counter => 0,
            Self::Gauge => 1,
            Self::Histogram => 2,
        }
    }
}

/// Value of one metric, as the test sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricValue {
    /// Counter total or gauge value (0 for histograms).
    pub value: i64,
    /// Samples recorded into a histogram.
    pub samples: Vec<u64>,
}

pub(crate) struct Queue {
    pub vm_id: String,
    pub name: Vec<u8>,
    pub owner_vm: usize,
    pub owner_root: u32,
    pub items: VecDeque<Vec<u8>>,
}

/// Everything Envoy keeps process-wide.
pub(crate) struct World {
    pub now_nanos: u64,
    pub shared: HashMap<(String, Vec<u8>), (Vec<u8>, u32)>,
    pub next_cas: u32,
    pub queues: Vec<Queue>,
    /// (vm index, root context id, queue token) awaiting `proxy_on_queue_ready`.
    pub queue_ready: Vec<(usize, u32, u32)>,
    pub metrics: BTreeMap<(MetricKind, String), MetricValue>,
    /// `None` = every cluster name exists.
    pub clusters: Option<Vec<String>>,
    pub properties: BTreeMap<String, Vec<u8>>,
    pub next_vm: usize,
    pub rng: u64,
}

impl World {
    pub fn new() -> Self {
        Self {
            // 2023-11-14T22:13:20Z: a fixed, readable default; tests set their own.
            now_nanos: 1_700_000_000_000_000_000,
            shared: HashMap::new(),
            next_cas: 1,
            queues: Vec::new(),
            queue_ready: Vec::new(),
            metrics: BTreeMap::new(),
            clusters: None,
            properties: BTreeMap::new(),
            next_vm: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Envoy's `nextCas`: never 0 (0 means "no CAS" on set).
    pub fn next_cas(&mut self) -> u32 {
        let c = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1);
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        c
    }

    /// Envoy `SharedData::set`: cas 0 = unconditional; mismatch on an existing key = CAS_MISMATCH;
    /// a missing key is created whatever the cas.
    pub fn set_shared(&mut self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> i32 {
        let slot = (vm_id.to_string(), key.to_vec());
        if let Some((_, cur)) = self.shared.get(&slot) {
            if cas != 0 && cas != *cur {
                return status::CAS_MISMATCH;
            }
        }
        let c = self.next_cas();
        self.shared.insert(slot, (value.to_vec(), c));
        status::OK
    }

    /// Deterministic bytes for `random_get` (tests are reproducible; nothing here is secret).
    pub fn random(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            out.extend_from_slice(&self.rng.to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

pub(crate) type SharedWorld = Arc<Mutex<World>>;

pub(crate) fn lock(w: &SharedWorld) -> MutexGuard<'_, World> {
    match w.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// One log line written by the filter (`proxy_log`, or stdout/stderr through WASI `fd_write`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// proxy-wasm level: 0 trace, 1 debug, 2 info, 3 warn, 4 error, 5 critical.
    pub level: u32,
    /// The message.
    pub message: String,
    /// Context the call was made in (0 = outside any callback).
    pub context: u32,
}

/// An outgoing `proxy_http_call` that the test has not answered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    /// Token the filter got back; pass it to `Host::respond_http_call` / `fail_http_call`.
    pub token: u32,
    /// Envoy cluster name.
    pub upstream: String,
    /// Request headers, pseudo-headers included.
    pub headers: Headers,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: Headers,
    /// Timeout in milliseconds (0 = none).
    pub timeout_ms: u32,
    /// Root context that owns the call (Envoy issues every call from the root context).
    pub(crate) root: u32,
}

/// A local reply sent by the filter with `proxy_send_local_response`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status code.
    pub status: u32,
    /// Response headers as the client gets them (after the filter's own response callbacks).
    pub headers: Headers,
    /// Response body.
    pub body: Vec<u8>,
    /// `status_code_details` given by the filter.
    pub details: String,
    /// gRPC status (-1 = none).
    pub grpc_status: i32,
}

impl LocalResponse {
    /// Body decoded lossily.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Callback not reached yet.
    Idle,
    /// Headers callback returned Pause (Envoy: StopAllIterationAndWatermark).
    HeadersPaused,
    /// Body callback returned Pause (Envoy: StopIterationAndBuffer).
    BodyPaused,
    /// Iteration continues (headers went on, body chunks flow).
    Flowing,
}

#[derive(Clone, Debug)]
pub(crate) struct Direction {
    pub headers: Headers,
    /// Envoy keeps a pointer to the live map only while the filter holds iteration.
    pub headers_live: bool,
    pub trailers: Option<Headers>,
    pub trailers_live: bool,
    pub body: Vec<u8>,
    pub body_live: bool,
    pub buffering: bool,
    pub phase: Phase,
    /// Body that arrived while headers were paused (Envoy buffers it, then calls the body callback).
    pub queued: Vec<u8>,
    pub queued_end: Option<bool>,
    /// Trailers that arrived while headers were paused (delivered when the filter resumes).
    pub queued_trailers: Option<Headers>,
    /// The trailers callback returned Pause: they go on when the filter resumes.
    pub trailers_held: bool,
    /// What went past the filter.
    pub forwarded_trailers: Option<Headers>,
    pub forwarded_headers: Option<Headers>,
    pub forwarded_body: Vec<u8>,
    pub end_seen: bool,
}

impl Direction {
    pub fn new() -> Self {
        Self {
            headers: Headers::new(),
            headers_live: false,
            trailers: None,
            trailers_live: false,
            body: Vec::new(),
            body_live: false,
            buffering: false,
            phase: Phase::Idle,
            queued: Vec::new(),
            queued_end: None,
            queued_trailers: None,
            trailers_held: false,
            forwarded_trailers: None,
            forwarded_headers: None,
            forwarded_body: Vec::new(),
            end_seen: false,
        }
    }

    /// Headers arrive at the filter (`end`: nothing follows them).
    pub fn receive_headers(&mut self, headers: Headers, end: bool) {
        self.headers = headers;
        self.headers_live = true;
        self.end_seen = end;
    }

    /// A body chunk arrives at the filter, after what it buffers (`end`: the last chunk).
    pub fn receive_body(&mut self, data: Vec<u8>, end: bool) {
        if self.buffering {
            self.body.extend_from_slice(&data);
        } else {
            self.body = data;
        }
        self.body_live = true;
        self.end_seen = end;
    }

    /// Trailers arrive at the filter.
    pub fn receive_trailers(&mut self, trailers: Headers) {
        self.trailers = Some(trailers);
        self.trailers_live = true;
    }

    /// The headers go past the filter, which no longer holds them.
    pub fn forward_headers(&mut self) {
        self.headers_live = false;
        self.forwarded_headers = Some(self.headers.clone());
    }

    /// The body the filter held goes past it, and the body flows again.
    pub fn forward_body(&mut self) {
        let body = std::mem::take(&mut self.body);
        self.forwarded_body.extend_from_slice(&body);
        self.body_live = false;
        self.buffering = false;
        self.phase = Phase::Flowing;
    }

    /// The trailers go past the filter, which no longer holds them.
    pub fn forward_trailers(&mut self) {
        self.trailers_live = false;
        self.forwarded_trailers = self.trailers.clone();
    }
}

pub(crate) struct HttpCtx {
    pub root: u32,
    pub req: Direction,
    pub resp: Direction,
    pub local: Option<LocalResponse>,
    pub local_in_flight: bool,
    pub reset: bool,
    pub in_log: bool,
    pub properties: BTreeMap<String, Vec<u8>>,
    pub finished: bool,
}

impl HttpCtx {
    /// The request side (`request`) or the response side of the stream.
    pub fn side(&mut self, request: bool) -> &mut Direction {
        if request {
            &mut self.req
        } else {
            &mut self.resp
        }
    }
}

pub(crate) enum Ctx {
    Root,
    Http(Box<HttpCtx>),
}

#[derive(Clone, Debug)]
pub(crate) enum Deferred {
    LocalReply(u32, LocalResponse),
    ContinueRequest(u32),
    ContinueResponse(u32),
    Reset(u32),
}

pub(crate) struct CallResponse {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

/// Per-VM state living in the wasmtime `Store`.
pub(crate) struct VmState {
    pub world: SharedWorld,
    pub vm_index: usize,
    pub vm_id: String,
    pub root_id: String,
    pub plugin_name: String,
    pub vm_config: Vec<u8>,
    /// Set only while `proxy_on_configure` runs (Envoy's `temp_plugin_`).
    pub plugin_config: Option<Vec<u8>>,
    pub current: u32,
    pub effective: u32,
    pub contexts: BTreeMap<u32, Ctx>,
    pub call_response: Option<CallResponse>,
    pub stop_iteration: bool,
    pub deferred: Vec<Deferred>,
    pub tick_period_ms: u32,
    /// When the root's timer fires next (Envoy re-arms it at now + period on every set).
    pub next_tick_nanos: Option<u64>,
    pub logs: Vec<LogEntry>,
    pub log_level: u32,
    pub echo_logs: bool,
    pub http_calls: BTreeMap<u32, HttpCall>,
    pub next_token: u32,
    pub metric_ids: HashMap<u32, (MetricKind, String)>,
    pub next_metric: u32,
    pub unknown_calls: Vec<String>,
    /// Every proxy-wasm ABI call the module made, in order (for per-request call budgets).
    pub host_calls: Vec<&'static str>,
    /// When on ([`crate::Host::trace_fuel`]): each proxy-wasm call with the fuel left at it.
    pub fuel_marks: Option<Vec<(&'static str, u64)>>,
    pub invalid_header_writes: Vec<String>,
    pub pending_done: Vec<u32>,
    pub done_calls: Vec<u32>,
    pub limits: StoreLimits,
    /// What `verify_signature` does.
    pub foreign: crate::ForeignMode,
    /// Hash function of each parsed `verify_signature` call.
    pub verify_calls: Vec<String>,
    /// What WASI `random_get` does.
    pub random: crate::RandomMode,
    /// The VM's environment (`vm_config.environment_variables`), for WASI `environ_get`.
    pub env: Vec<(String, String)>,
}

impl VmState {
    /// The environment as WASI lays it out: `NAME=value\0` strings.
    pub fn environ(&self) -> Vec<Vec<u8>> {
        self.env
            .iter()
            .map(|(k, v)| {
                let mut e = format!("{k}={v}").into_bytes();
                e.push(0);
                e
            })
            .collect()
    }
}

impl VmState {
    /// Envoy `contextOrEffectiveContext`.
    pub fn ctx_id(&self) -> u32 {
        if self.effective != 0 && self.contexts.contains_key(&self.effective) {
            self.effective
        } else {
            self.current
        }
    }

    pub fn http(&mut self) -> Option<&mut HttpCtx> {
        let id = self.ctx_id();
        match self.contexts.get_mut(&id) {
            Some(Ctx::Http(h)) => Some(h),
            _ => None,
        }
    }

    pub fn http_ref(&self) -> Option<&HttpCtx> {
        match self.contexts.get(&self.ctx_id()) {
            Some(Ctx::Http(h)) => Some(h),
            _ => None,
        }
    }

    /// Root context of the current (or effective) context.
    pub fn root_of_current(&self) -> u32 {
        let id = self.ctx_id();
        match self.contexts.get(&id) {
            Some(Ctx::Http(h)) => h.root,
            _ => id,
        }
    }

    pub fn log(&mut self, level: u32, message: String) {
        let context = self.ctx_id();
        if self.echo_logs {
            eprintln!(
                "[vm{} ctx{} level{}] {}",
                self.vm_index, context, level, message
            );
        }
        self.logs.push(LogEntry {
            level,
            message,
            context,
        });
    }
}
