//! A proxy-wasm ABI 0.2.1 host on wasmtime, for tests: loads a filter `.wasm`, plays Envoy's part
//! (lifecycle callbacks, header/body availability rules, deferred continue and local replies,
//! shared data with CAS, shared queues, HTTP callouts answered by the test, metrics, ticks) and
//! records everything a test wants to assert on.
//!
//! ```no_run
//! use host_tests::{Action, Host};
//! let mut host = Host::load("filter.wasm").unwrap();
//! assert!(host.configure(br#"{"jwt":{}}"#).unwrap());
//! let mut req = host.request(&[(":method", "GET"), (":path", "/x")]);
//! match req.headers() {
//!     Action::Continue => { let up = req.upstream_headers().unwrap(); }
//!     Action::LocalResponse(r) => assert_eq!(r.status, 401),
//!     other => panic!("{other:?}"),
//! }
//! assert!(host.traps().is_empty());
//! ```
//!
//! Fidelity notes (what Envoy does and this host copies): request headers are only readable and
//! writable while the filter holds iteration (after `on_request_headers` returns Continue, or after
//! `proxy_continue_stream`, reads of a single value get BAD_ARGUMENT, which the Rust SDK turns into a
//! panic); `proxy_continue_stream` and `proxy_send_local_response` take effect after the callback
//! returns; a body that arrives while headers are paused is buffered and delivered after resume;
//! a local reply passes through the filter's own response callbacks; a failed HTTP call is
//! reported as `on_http_call_response(token, 0, 0, 0)` with no response headers map at all.

mod abi;
mod foreign;
mod headers;
mod state;

pub use foreign::ForeignMode;

/// What WASI `random_get` does in this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RandomMode {
    /// Deterministic, non-zero pseudo-random bytes (the default; reproducible, never secret).
    #[default]
    Bytes,
    /// Success, but every byte zero (a host with no entropy that does not say so).
    Zeros,
    /// The call fails with this WASI errno (e.g. 52 = ENOSYS), writing nothing.
    Errno(i32),
}
pub use headers::Headers;
pub use state::{HttpCall, LocalResponse, LogEntry, MetricKind, MetricValue};
pub use wasmtime::{Error, Result};

use state::{
    lock, CallResponse, Ctx, Deferred, Direction, HttpCtx, Phase, SharedWorld, VmState, World,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::{Config, Engine, Instance, Module, Store, StoreLimitsBuilder, Val};

/// What the filter decided in a stream callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Iteration continues (for request headers: the request goes upstream).
    Continue,
    /// The filter holds the stream (waiting on a callout, or buffering a body).
    Pause,
    /// The filter answered locally.
    LocalResponse(LocalResponse),
    /// The filter reset the stream (`proxy_close_stream`).
    Reset,
    /// The VM trapped (or had trapped before); Envoy would fail the stream with a 503.
    Failed(String),
}

impl Action {
    /// The local response, if this is one.
    pub fn local(&self) -> Option<&LocalResponse> {
        match self {
            Action::LocalResponse(r) => Some(r),
            _ => None,
        }
    }
}

/// What a stream callback delivers to the filter.
#[derive(Clone, Copy)]
enum Part {
    Headers,
    Body,
    Trailers,
}

impl Part {
    /// The callback that delivers this part of the request or response side.
    fn callback(self, request: bool) -> &'static str {
        match (self, request) {
            (Part::Headers, true) => "proxy_on_request_headers",
            (Part::Headers, false) => "proxy_on_response_headers",
            (Part::Body, true) => "proxy_on_request_body",
            (Part::Body, false) => "proxy_on_response_body",
            (Part::Trailers, true) => "proxy_on_request_trailers",
            (Part::Trailers, false) => "proxy_on_response_trailers",
        }
    }

    /// The callback's arguments after the context id, as the ABI has them: the count (or
    /// size) of what the side received, then end_of_stream for headers and body.
    fn args(self, d: &Direction) -> Vec<i32> {
        let end = i32::from(d.end_seen);
        match self {
            Part::Headers => vec![d.headers.len() as i32, end],
            Part::Body => vec![d.body.len() as i32, end],
            Part::Trailers => vec![d.trailers.as_ref().map_or(0, |t| t.len() as i32)],
        }
    }
}

const DEFAULT_FUEL: u64 = 2_000_000_000;

fn engine() -> Result<Engine> {
    static ENGINE: OnceLock<std::result::Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut c = Config::new();
            c.consume_fuel(true);
            c.cranelift_opt_level(wasmtime::OptLevel::None);
            Engine::new(&c).map_err(|e| format!("{e:?}"))
        })
        .clone()
        .map_err(|e| wasmtime::format_err!("{e}"))
}

fn compile(path: &Path) -> Result<Module> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, (std::time::SystemTime, Module)>>> =
        OnceLock::new();
    let engine = engine()?;
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| wasmtime::format_err!("cannot read {}: {e}", path.display()))?;
    let cache = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = match cache.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some((t, m)) = cache.get(path) {
        if *t == mtime {
            return Ok(m.clone());
        }
    }
    let bytes = std::fs::read(path)
        .map_err(|e| wasmtime::format_err!("cannot read {}: {e}", path.display()))?;
    let module = Module::from_binary(&engine, &bytes)?;
    cache.insert(path.to_path_buf(), (mtime, module.clone()));
    Ok(module)
}

struct Vm {
    store: Store<VmState>,
    instance: Instance,
    module: Module,
    root: Option<u32>,
    vm_started: bool,
    next_ctx: u32,
    failed: Option<String>,
    traps: Vec<String>,
    stubbed: Vec<String>,
    fuel: u64,
    /// Wasm instructions (fuel) the module executed, summed over calls into it.
    fuel_used: u64,
    local_reply_through_filter: bool,
    /// Envoy's `allow_on_headers_stop_iteration`: a Pause from `on_request_headers` holds only
    /// the headers; the body is still handed to the filter.
    allow_on_headers_stop_iteration: bool,
}

type Raw = (
    std::result::Result<Option<i64>, String>,
    bool,
    Vec<Deferred>,
);

impl Vm {
    fn new(module: Module, world: SharedWorld) -> Result<Vm> {
        let engine = module.engine().clone();
        let vm_index = {
            let mut w = lock(&world);
            let i = w.next_vm;
            w.next_vm = w.next_vm.saturating_add(1);
            i
        };
        let state = VmState {
            world,
            vm_index,
            vm_id: String::new(),
            root_id: String::new(),
            plugin_name: "edgegate".to_string(),
            vm_config: Vec::new(),
            plugin_config: None,
            current: 0,
            effective: 0,
            contexts: BTreeMap::new(),
            call_response: None,
            stop_iteration: false,
            deferred: Vec::new(),
            tick_period_ms: 0,
            next_tick_nanos: None,
            logs: Vec::new(),
            log_level: 0,
            echo_logs: std::env::var_os("HOST_TESTS_ECHO").is_some(),
            http_calls: BTreeMap::new(),
            next_token: 1,
            metric_ids: HashMap::new(),
            next_metric: 0,
            unknown_calls: Vec::new(),
            host_calls: Vec::new(),
            fuel_marks: None,
            invalid_header_writes: Vec::new(),
            pending_done: Vec::new(),
            done_calls: Vec::new(),
            foreign: ForeignMode::default(),
            verify_calls: Vec::new(),
            random: RandomMode::default(),
            env: Vec::new(),
            limits: StoreLimitsBuilder::new().memory_size(1 << 30).build(),
        };
        let mut store = Store::new(&engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_fuel(DEFAULT_FUEL)?;
        let mut linker = abi::build_linker(&engine)?;
        let stubbed = abi::stub_unknown(&mut linker, &mut store, &module)?;
        let instance = linker.instantiate(&mut store, &module)?;
        let mut vm = Vm {
            store,
            instance,
            module,
            root: None,
            vm_started: false,
            next_ctx: 1,
            failed: None,
            traps: Vec::new(),
            stubbed,
            fuel: DEFAULT_FUEL,
            fuel_used: 0,
            local_reply_through_filter: true,
            allow_on_headers_stop_iteration: false,
        };
        // WASI reactor / SDK `main!`: `_initialize` (then `main` if any), else `_start`.
        if vm.instance.get_func(&mut vm.store, "_initialize").is_some() {
            vm.call(0, "_initialize", &[])
                .map_err(|e| wasmtime::format_err!("{e}"))?;
            if vm.instance.get_func(&mut vm.store, "main").is_some() {
                vm.call(0, "main", &[Val::I32(0), Val::I32(0)])
                    .map_err(|e| wasmtime::format_err!("{e}"))?;
            }
        } else if vm.instance.get_func(&mut vm.store, "_start").is_some() {
            vm.call(0, "_start", &[])
                .map_err(|e| wasmtime::format_err!("{e}"))?;
        }
        Ok(vm)
    }

    /// One call into the module. `Ok(None)`: the export does not exist (callbacks are optional).
    fn call(
        &mut self,
        ctx: u32,
        name: &str,
        args: &[Val],
    ) -> std::result::Result<Option<i64>, String> {
        if let Some(f) = &self.failed {
            return Err(format!("VM failed earlier: {f}"));
        }
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let n = func.ty(&self.store).results().len();
        let mut results = vec![Val::I32(0); n];
        let saved = {
            let d = self.store.data_mut();
            let saved = (d.current, d.effective);
            d.current = ctx;
            d.effective = 0;
            saved
        };
        let _ = self.store.set_fuel(self.fuel);
        let r = func.call(&mut self.store, args, &mut results);
        let left = self.store.get_fuel().unwrap_or(self.fuel);
        self.fuel_used = self
            .fuel_used
            .saturating_add(self.fuel.saturating_sub(left));
        {
            let d = self.store.data_mut();
            d.current = saved.0;
            d.effective = saved.1;
        }
        match r {
            Ok(()) => Ok(Some(match results.first() {
                Some(Val::I32(v)) => i64::from(*v as u32),
                Some(Val::I64(v)) => *v,
                _ => 0,
            })),
            Err(e) => {
                let msg = format!("{name}(context {ctx}) trapped: {e:?}");
                if std::env::var_os("HOST_TESTS_QUIET").is_none() {
                    eprintln!("host-tests: {msg}");
                }
                self.traps.push(msg.clone());
                self.failed = Some(msg.clone());
                Err(msg)
            }
        }
    }

    /// A callback plus what it left behind: (result, local reply sent during it, deferred actions).
    fn call_raw(&mut self, ctx: u32, name: &str, args: &[Val]) -> Raw {
        {
            let d = self.store.data_mut();
            d.stop_iteration = false;
            d.deferred.clear();
        }
        let r = self.call(ctx, name, args);
        let d = self.store.data_mut();
        let stop = std::mem::take(&mut d.stop_iteration);
        let acts = std::mem::take(&mut d.deferred);
        (r, stop, acts)
    }

    fn http(&mut self, id: u32) -> Option<&mut HttpCtx> {
        match self.store.data_mut().contexts.get_mut(&id) {
            Some(Ctx::Http(h)) => Some(h),
            _ => None,
        }
    }

    fn http_ref(&self, id: u32) -> Option<&HttpCtx> {
        match self.store.data().contexts.get(&id) {
            Some(Ctx::Http(h)) => Some(h),
            _ => None,
        }
    }

    fn apply(&mut self, acts: Vec<Deferred>) {
        for a in acts {
            match a {
                Deferred::LocalReply(id, r) => self.local_reply(id, r),
                Deferred::ContinueRequest(id) => self.resume(id, true),
                Deferred::ContinueResponse(id) => self.resume(id, false),
                Deferred::Reset(id) => {
                    if let Some(h) = self.http(id) {
                        h.reset = true;
                    }
                }
            }
        }
    }

    fn fail_stream(&mut self, id: u32) {
        if let Some(h) = self.http(id) {
            if h.local.is_none() {
                h.local = Some(LocalResponse {
                    status: 503,
                    headers: Headers::from_pairs(&[(":status", "503")]),
                    body: Vec::new(),
                    details: "wasm_fail_stream".to_string(),
                    grpc_status: -1,
                });
            }
        }
    }

    /// Envoy `sendLocalReply` from a decoder filter: the reply is encoded through the filter chain,
    /// so this filter's response callbacks see (and may edit) it.
    fn local_reply(&mut self, id: u32, r: LocalResponse) {
        let through = self.local_reply_through_filter;
        let Some(h) = self.http(id) else { return };
        if h.local.is_some() || h.local_in_flight || h.finished {
            return;
        }
        h.local_in_flight = true;
        let mut headers = Headers::from_pairs(&[(":status", r.status.to_string())]);
        for (k, v) in r.headers.raw() {
            headers.add(k, v);
        }
        if !r.body.is_empty() {
            headers.set(b"content-length", r.body.len().to_string().as_bytes());
            if !headers.contains("content-type") {
                headers.add(b"content-type", b"text/plain");
            }
        }
        let mut body = r.body.clone();
        if through {
            h.resp = Direction::new();
            h.resp.headers = headers.clone();
            h.resp.headers_live = true;
            h.resp.end_seen = body.is_empty();
            let n = headers.len() as i32;
            let (_, _, acts) = self.call_raw(
                id,
                "proxy_on_response_headers",
                &[
                    Val::I32(id as i32),
                    Val::I32(n),
                    Val::I32(i32::from(body.is_empty())),
                ],
            );
            if let Some(h) = self.http(id) {
                h.resp.headers_live = false;
                headers = h.resp.headers.clone();
            }
            self.apply(acts);
            if !body.is_empty() {
                if let Some(h) = self.http(id) {
                    h.resp.body = body.clone();
                    h.resp.body_live = true;
                    h.resp.end_seen = true;
                }
                let len = body.len() as i32;
                let (_, _, acts) = self.call_raw(
                    id,
                    "proxy_on_response_body",
                    &[Val::I32(id as i32), Val::I32(len), Val::I32(1)],
                );
                if let Some(h) = self.http(id) {
                    h.resp.body_live = false;
                    body = std::mem::take(&mut h.resp.body);
                }
                self.apply(acts);
            }
        }
        if let Some(h) = self.http(id) {
            h.resp.forwarded_headers = Some(headers.clone());
            h.resp.forwarded_body = body.clone();
            h.local_in_flight = false;
            h.local = Some(LocalResponse { headers, body, ..r });
        }
    }

    fn resume(&mut self, id: u32, request: bool) {
        let Some(h) = self.http(id) else { return };
        if h.local.is_some() || h.local_in_flight || h.finished {
            return;
        }
        let d = h.side(request);
        match d.phase {
            Phase::HeadersPaused => {
                d.forwarded_headers = Some(d.headers.clone());
                d.phase = Phase::Flowing;
                if let Some(end) = d.queued_end.take() {
                    let data = std::mem::take(&mut d.queued);
                    self.body(id, request, data, end);
                }
            }
            Phase::BodyPaused => d.forward_body(),
            Phase::Idle | Phase::Flowing => {}
        }
        // Trailers held by the filter go on; trailers Envoy buffered are decoded now.
        let Some(h) = self.http(id) else { return };
        if h.local.is_some() || h.finished {
            return;
        }
        let d = h.side(request);
        if d.trailers_held {
            d.trailers_held = false;
            d.forward_trailers();
        }
        if let Some(t) = d.queued_trailers.take() {
            self.deliver_trailers(id, request, t);
        }
    }

    /// Trailers from the client (request) or upstream (response): `proxy_on_*_trailers`. Envoy
    /// holds them while the filter holds the headers (unless `allow_on_headers_stop_iteration`).
    fn trailers(&mut self, id: u32, request: bool, trailers: Headers) {
        let allow_while_paused = request && self.allow_on_headers_stop_iteration;
        let Some(h) = self.http(id) else { return };
        if h.local.is_some() || h.finished {
            return;
        }
        let d = h.side(request);
        d.end_seen = true;
        if (d.phase == Phase::HeadersPaused && !allow_while_paused) || d.queued_end.is_some() {
            d.queued_trailers = Some(trailers);
            return;
        }
        self.deliver_trailers(id, request, trailers);
    }

    fn deliver_trailers(&mut self, id: u32, request: bool, trailers: Headers) {
        let Some(h) = self.http(id) else { return };
        h.side(request).receive_trailers(trailers);
        self.deliver(
            id,
            request,
            Part::Trailers,
            |d| d.trailers_held = true,
            Direction::forward_trailers,
        );
    }

    fn headers(&mut self, id: u32, request: bool, headers: Headers, end: bool) {
        let Some(h) = self.http(id) else { return };
        h.side(request).receive_headers(headers, end);
        self.deliver(
            id,
            request,
            Part::Headers,
            |d| d.phase = Phase::HeadersPaused,
            |d| {
                d.forward_headers();
                d.phase = Phase::Flowing;
            },
        );
    }

    fn body(&mut self, id: u32, request: bool, data: Vec<u8>, end: bool) {
        let allow_body_while_paused = request && self.allow_on_headers_stop_iteration;
        let Some(h) = self.http(id) else { return };
        if h.local.is_some() || h.finished {
            return;
        }
        let d = h.side(request);
        if d.phase == Phase::HeadersPaused && !allow_body_while_paused {
            d.queued.extend_from_slice(&data);
            d.queued_end = Some(end);
            return;
        }
        d.receive_body(data, end);
        self.deliver(
            id,
            request,
            Part::Body,
            |d| {
                d.buffering = true;
                d.phase = Phase::BodyPaused;
            },
            |d| {
                if d.forwarded_headers.is_none() {
                    // headers held by a Pause (allow_on_headers_stop_iteration) go first
                    d.forward_headers();
                }
                d.forward_body();
            },
        );
    }

    /// Runs the callback for the `part` one side just received, then applies its answer: a trap
    /// fails the stream; a pause (stop iteration, or a non-zero return) runs `paused` on that
    /// side, anything else `went_on`; the actions the callback deferred run last.
    fn deliver(
        &mut self,
        id: u32,
        request: bool,
        part: Part,
        paused: impl FnOnce(&mut Direction),
        went_on: impl FnOnce(&mut Direction),
    ) {
        let Some(h) = self.http(id) else { return };
        let args = part.args(h.side(request));
        let vals: Vec<Val> = std::iter::once(id as i32)
            .chain(args)
            .map(Val::I32)
            .collect();
        let (r, stop, acts) = self.call_raw(id, part.callback(request), &vals);
        match r {
            Err(_) => self.fail_stream(id),
            Ok(v) => {
                if let Some(h) = self.http(id) {
                    let d = h.side(request);
                    if stop || v.unwrap_or(0) != 0 {
                        paused(d);
                    } else {
                        went_on(d);
                    }
                }
            }
        }
        self.apply(acts);
    }

    fn action(&self, id: u32, request: bool, trapped_before: usize) -> Action {
        if self.traps.len() > trapped_before {
            return Action::Failed(self.traps.last().cloned().unwrap_or_default());
        }
        let Some(h) = self.http_ref(id) else {
            return Action::Failed(
                self.failed
                    .clone()
                    .unwrap_or_else(|| "no such stream".to_string()),
            );
        };
        if let Some(r) = &h.local {
            return Action::LocalResponse(r.clone());
        }
        if h.reset {
            return Action::Reset;
        }
        let d = if request { &h.req } else { &h.resp };
        match d.phase {
            Phase::HeadersPaused | Phase::BodyPaused => Action::Pause,
            Phase::Idle | Phase::Flowing => Action::Continue,
        }
    }

    fn ensure_root(&mut self) -> std::result::Result<u32, String> {
        if let Some(r) = self.root {
            return Ok(r);
        }
        let id = self.next_ctx;
        self.next_ctx = self.next_ctx.saturating_add(1);
        self.store.data_mut().contexts.insert(id, Ctx::Root);
        self.root = Some(id);
        let (r, _, acts) = self.call_raw(
            id,
            "proxy_on_context_create",
            &[Val::I32(id as i32), Val::I32(0)],
        );
        self.apply(acts);
        r.map(|_| id)
    }

    fn finish(&mut self, id: u32) {
        let Some(h) = self.http(id) else { return };
        if h.finished {
            return;
        }
        h.finished = true;
        let arg = [Val::I32(id as i32)];
        if self.failed.is_none() {
            let (_, _, acts) = self.call_raw(id, "proxy_on_done", &arg);
            self.apply(acts);
            if let Some(h) = self.http(id) {
                h.in_log = true;
            }
            let (_, _, acts) = self.call_raw(id, "proxy_on_log", &arg);
            self.apply(acts);
            if let Some(h) = self.http(id) {
                h.in_log = false;
            }
            let (_, _, acts) = self.call_raw(id, "proxy_on_delete", &arg);
            self.apply(acts);
        }
        self.store.data_mut().contexts.remove(&id);
    }

    fn tick(&mut self) -> std::result::Result<bool, String> {
        let Some(root) = self.root else {
            return Ok(false);
        };
        if self.store.data().tick_period_ms == 0 {
            return Ok(false);
        }
        let (r, _, acts) = self.call_raw(root, "proxy_on_tick", &[Val::I32(root as i32)]);
        self.apply(acts);
        r.map(|_| true)
    }
}

/// One proxy-wasm VM (an Envoy worker thread) plus the process-wide world it shares with the
/// other VMs made by [`Host::spawn_vm`].
pub struct Host {
    vm: Rc<RefCell<Vm>>,
    world: SharedWorld,
}

/// One HTTP stream (request/response pair) in a [`Host`]. Dropping it ends the stream
/// (`proxy_on_done`, `proxy_on_log`, `proxy_on_delete`).
pub struct Stream {
    vm: Rc<RefCell<Vm>>,
    id: u32,
    headers: Headers,
    traps_at_start: usize,
}

fn err(msg: String) -> Error {
    wasmtime::format_err!("{msg}")
}

impl Host {
    /// Compiles (cached per path and mtime) and instantiates the module, then runs `_initialize`.
    pub fn load(path: impl AsRef<Path>) -> Result<Host> {
        let module = compile(path.as_ref())?;
        let world = Arc::new(Mutex::new(World::new()));
        let vm = Vm::new(module, world.clone())?;
        Ok(Host {
            vm: Rc::new(RefCell::new(vm)),
            world,
        })
    }

    /// A second VM of the same module sharing this one's world (clock, shared data, queues,
    /// metrics), as Envoy runs one VM per worker thread. Configure it with [`Host::configure`].
    pub fn spawn_vm(&self) -> Result<Host> {
        let (module, vm_id, root_id, vm_config, random, env) = {
            let v = self.vm.borrow();
            let d = v.store.data();
            (
                v.module.clone(),
                d.vm_id.clone(),
                d.root_id.clone(),
                d.vm_config.clone(),
                d.random,
                d.env.clone(),
            )
        };
        let allow = self.vm.borrow().allow_on_headers_stop_iteration;
        let mut vm = Vm::new(module, self.world.clone())?;
        vm.allow_on_headers_stop_iteration = allow;
        let d = vm.store.data_mut();
        d.vm_id = vm_id;
        d.root_id = root_id;
        d.vm_config = vm_config;
        d.random = random;
        d.env = env;
        Ok(Host {
            vm: Rc::new(RefCell::new(vm)),
            world: self.world.clone(),
        })
    }

    /// Index of this VM in its world (0 for the first).
    pub fn vm_index(&self) -> usize {
        self.vm.borrow().store.data().vm_index
    }

    /// Sets the VM configuration handed to `proxy_on_vm_start` (call before the first configure).
    pub fn set_vm_config(&mut self, bytes: &[u8]) {
        self.vm.borrow_mut().store.data_mut().vm_config = bytes.to_vec();
    }

    /// Sets the `vm_id` (namespaces shared data and queues) and the plugin `root_id` property.
    pub fn set_ids(&mut self, vm_id: &str, root_id: &str) {
        let mut v = self.vm.borrow_mut();
        let d = v.store.data_mut();
        d.vm_id = vm_id.to_string();
        d.root_id = root_id.to_string();
    }

    /// Log level reported by `proxy_get_log_level` (0 trace .. 5 critical; default 0).
    pub fn set_log_level(&mut self, level: u32) {
        self.vm.borrow_mut().store.data_mut().log_level = level;
    }

    /// Fuel (≈ wasm instructions) allowed per callback; running out is a trap.
    /// Wasm instructions executed since the last call of this (every call into the module
    /// counts: context creation, callbacks, allocations the host asks for).
    pub fn take_fuel_used(&self) -> u64 {
        std::mem::take(&mut self.vm.borrow_mut().fuel_used)
    }

    /// Starts (or stops) noting, at each proxy-wasm call the module makes, the wasm
    /// instructions it executed since the host last called into it: where a request's
    /// instructions go between host calls (`examples/wasm_cost.rs`).
    pub fn trace_fuel(&mut self, on: bool) {
        self.vm.borrow_mut().store.data_mut().fuel_marks = on.then(Vec::new);
    }

    /// The calls noted since [`Host::trace_fuel`], each with the instructions executed since
    /// the host's call into the module began (counted from the fuel each call starts with).
    pub fn take_fuel_marks(&mut self) -> Vec<(&'static str, u64)> {
        let mut vm = self.vm.borrow_mut();
        let start = vm.fuel;
        let marks = vm.store.data_mut().fuel_marks.as_mut().map(std::mem::take);
        marks
            .unwrap_or_default()
            .into_iter()
            .map(|(name, left)| (name, start.saturating_sub(left)))
            .collect()
    }

    pub fn set_fuel_per_call(&mut self, fuel: u64) {
        self.vm.borrow_mut().fuel = fuel;
    }

    /// Envoy's `allow_on_headers_stop_iteration` (default false, as in Envoy): when on, a Pause
    /// from `on_request_headers` still lets the body reach the filter's `on_request_body`.
    /// edgegate's shipped Envoy configs turn it on.
    pub fn set_allow_on_headers_stop_iteration(&mut self, on: bool) {
        self.vm.borrow_mut().allow_on_headers_stop_iteration = on;
    }

    /// What the `verify_signature` foreign function does (default: verifies, as Envoy).
    pub fn set_foreign_mode(&mut self, mode: ForeignMode) {
        self.vm.borrow_mut().store.data_mut().foreign = mode;
    }

    /// What WASI `random_get` does (default [`RandomMode::Bytes`]); set it before `configure`.
    pub fn set_random_mode(&mut self, mode: RandomMode) {
        self.vm.borrow_mut().store.data_mut().random = mode;
    }

    /// The VM's environment variables (Envoy's `vm_config.environment_variables`), read by the
    /// module with WASI `environ_sizes_get`/`environ_get`. Replaces any set before.
    pub fn set_env(&mut self, vars: &[(&str, &str)]) {
        self.vm.borrow_mut().store.data_mut().env = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
    }

    /// The hash function of every `verify_signature` call whose argument parsed, in order.
    pub fn verify_calls(&self) -> Vec<String> {
        self.vm.borrow().store.data().verify_calls.clone()
    }

    /// Whether local replies are passed through the filter's own response callbacks (default true).
    pub fn set_local_reply_through_filter(&mut self, on: bool) {
        self.vm.borrow_mut().local_reply_through_filter = on;
    }

    /// Creates the root context if needed, runs `proxy_on_vm_start` once, then
    /// `proxy_on_configure` with `config`. `Ok(false)`: the filter refused (vm start or configure).
    /// `Err`: the VM trapped.
    pub fn configure(&mut self, config: impl AsRef<[u8]>) -> Result<bool> {
        let mut v = self.vm.borrow_mut();
        let root = v.ensure_root().map_err(err)?;
        if !v.vm_started {
            v.vm_started = true;
            let n = v.store.data().vm_config.len() as i32;
            let (r, _, acts) = v.call_raw(
                root,
                "proxy_on_vm_start",
                &[Val::I32(root as i32), Val::I32(n)],
            );
            v.apply(acts);
            if r.map_err(err)? == Some(0) {
                return Ok(false);
            }
        }
        let cfg = config.as_ref().to_vec();
        let n = cfg.len() as i32;
        v.store.data_mut().plugin_config = Some(cfg);
        let (r, _, acts) = v.call_raw(
            root,
            "proxy_on_configure",
            &[Val::I32(root as i32), Val::I32(n)],
        );
        v.store.data_mut().plugin_config = None;
        v.apply(acts);
        Ok(r.map_err(err)? != Some(0))
    }

    /// Root context id (after configure).
    pub fn root_context(&self) -> Option<u32> {
        self.vm.borrow().root
    }

    /// Sets the shared clock (seconds since the Unix epoch).
    pub fn set_time(&mut self, unix_seconds: u64) {
        self.set_time_nanos(unix_seconds.saturating_mul(1_000_000_000));
    }

    /// Sets the shared clock in nanoseconds.
    pub fn set_time_nanos(&mut self, nanos: u64) {
        lock(&self.world).now_nanos = nanos;
        let mut v = self.vm.borrow_mut();
        let d = v.store.data_mut();
        let period = u64::from(d.tick_period_ms) * 1_000_000;
        d.next_tick_nanos = (period > 0).then(|| nanos.saturating_add(period));
    }

    /// Current shared clock, seconds.
    pub fn now(&self) -> u64 {
        lock(&self.world).now_nanos / 1_000_000_000
    }

    /// Tick period the filter asked for, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        let ms = self.vm.borrow().store.data().tick_period_ms;
        (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
    }

    /// edgegate's test export `edgegate_decisions_started`: the decisions the engine of this
    /// VM started (`None` if the module lacks the export).
    pub fn decisions_started(&self) -> Result<Option<u64>> {
        let v = self
            .vm
            .borrow_mut()
            .call(0, "edgegate_decisions_started", &[])
            .map_err(err)?;
        Ok(v.map(|n| n as u64))
    }

    /// Calls `proxy_on_tick` on the root context now (if the filter set a tick period).
    /// `Ok(false)`: no tick period; `Err`: the VM trapped.
    pub fn tick(&mut self) -> Result<bool> {
        self.vm.borrow_mut().tick().map_err(err)
    }

    /// Moves the shared clock forward, firing this VM's ticks at their due times on the way.
    /// Returns how many ticks fired.
    pub fn advance(&mut self, by: Duration) -> Result<u32> {
        let target = lock(&self.world)
            .now_nanos
            .saturating_add(by.as_nanos().min(u128::from(u64::MAX)) as u64);
        let mut fired = 0u32;
        loop {
            let due = {
                let v = self.vm.borrow();
                let period = u64::from(v.store.data().tick_period_ms) * 1_000_000;
                match v.store.data().next_tick_nanos {
                    Some(t) if period > 0 && t <= target => Some((t, period)),
                    _ => None,
                }
            };
            let Some((t, period)) = due else { break };
            lock(&self.world).now_nanos = t;
            let mut v = self.vm.borrow_mut();
            v.store.data_mut().next_tick_nanos = Some(t.saturating_add(period));
            // The callback may re-arm the timer (set_tick_period), which wins.
            v.tick().map_err(err)?;
            fired = fired.saturating_add(1);
            if fired > 1_000_000 {
                break;
            }
        }
        lock(&self.world).now_nanos = target;
        Ok(fired)
    }

    /// Delivers pending `proxy_on_queue_ready` notifications for this VM (Envoy posts them to the
    /// owning worker). Returns how many were delivered.
    pub fn dispatch(&mut self) -> Result<usize> {
        let me = self.vm_index();
        let events: Vec<(usize, u32, u32)> = {
            let mut w = lock(&self.world);
            let (mine, rest) = w.queue_ready.drain(..).partition(|e| e.0 == me);
            w.queue_ready = rest;
            mine
        };
        let mut v = self.vm.borrow_mut();
        for (_, root, token) in &events {
            let (r, _, acts) = v.call_raw(
                *root,
                "proxy_on_queue_ready",
                &[Val::I32(*root as i32), Val::I32(*token as i32)],
            );
            v.apply(acts);
            r.map_err(err)?;
        }
        Ok(events.len())
    }

    /// Starts an HTTP stream with these request headers (names are lower-cased, values are bytes).
    /// `proxy_on_context_create` runs now; [`Stream::headers`] delivers the headers.
    pub fn request<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, headers: &[(K, V)]) -> Stream {
        let headers = Headers::from_pairs(headers);
        let mut v = self.vm.borrow_mut();
        let traps_at_start = v.traps.len();
        let id = v.next_ctx;
        v.next_ctx = v.next_ctx.saturating_add(1);
        if let Some(root) = v.root {
            v.store.data_mut().contexts.insert(
                id,
                Ctx::Http(Box::new(HttpCtx {
                    root,
                    req: Direction::new(),
                    resp: Direction::new(),
                    local: None,
                    local_in_flight: false,
                    reset: false,
                    in_log: false,
                    properties: BTreeMap::new(),
                    finished: false,
                })),
            );
            let (_, _, acts) = v.call_raw(
                id,
                "proxy_on_context_create",
                &[Val::I32(id as i32), Val::I32(root as i32)],
            );
            v.apply(acts);
        }
        drop(v);
        Stream {
            vm: self.vm.clone(),
            id,
            headers,
            traps_at_start,
        }
    }

    /// Outgoing HTTP calls not answered yet, oldest first.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.vm
            .borrow()
            .store
            .data()
            .http_calls
            .values()
            .cloned()
            .collect()
    }

    /// Answers a call: `proxy_on_http_call_response` runs with these headers (`:status` added
    /// first) and body. `Err` if there is no such pending call or the VM trapped.
    pub fn respond_http_call(
        &mut self,
        token: u32,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<()> {
        let mut h = Headers::from_pairs(&[(":status", status.to_string())]);
        for (k, v) in headers {
            h.add(k.as_bytes(), v.as_bytes());
        }
        self.answer(
            token,
            Some(CallResponse {
                headers: h,
                body: body.to_vec(),
                trailers: Headers::new(),
            }),
        )
    }

    /// What Envoy does when the callout times out: a locally generated 504.
    pub fn timeout_http_call(&mut self, token: u32) -> Result<()> {
        self.respond_http_call(
            token,
            504,
            &[("content-type", "text/plain")],
            b"upstream request timeout",
        )
    }

    /// Envoy `onHttpCallFailure` (stream reset): `proxy_on_http_call_response(token, 0, 0, 0)` with
    /// no response map (reading one response header then gets BAD_ARGUMENT).
    pub fn fail_http_call(&mut self, token: u32) -> Result<()> {
        self.answer(token, None)
    }

    fn answer(&mut self, token: u32, resp: Option<CallResponse>) -> Result<()> {
        let mut v = self.vm.borrow_mut();
        let Some(call) = v.store.data_mut().http_calls.remove(&token) else {
            return Err(wasmtime::format_err!(
                "no pending http call with token {token}"
            ));
        };
        let (nh, nb, nt) = match &resp {
            Some(r) => (r.headers.len(), r.body.len(), r.trailers.len()),
            None => (0, 0, 0),
        };
        v.store.data_mut().call_response = resp;
        let args = [
            Val::I32(call.root as i32),
            Val::I32(token as i32),
            Val::I32(nh as i32),
            Val::I32(nb as i32),
            Val::I32(nt as i32),
        ];
        let (r, _, acts) = v.call_raw(call.root, "proxy_on_http_call_response", &args);
        v.apply(acts);
        v.store.data_mut().call_response = None;
        r.map(|_| ()).map_err(err)
    }

    /// Restricts the cluster names `proxy_http_call` accepts (others get BAD_ARGUMENT, as in
    /// Envoy for an unknown cluster). By default every name is accepted.
    pub fn set_clusters(&mut self, names: &[&str]) {
        lock(&self.world).clusters = Some(names.iter().map(|s| s.to_string()).collect());
    }

    /// Shared data entry (value, cas) in this VM's `vm_id` namespace.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let vm_id = self.vm.borrow().store.data().vm_id.clone();
        lock(&self.world)
            .shared
            .get(&(vm_id, key.as_bytes().to_vec()))
            .cloned()
    }

    /// Writes shared data as another VM would (unconditional).
    pub fn set_shared_data(&mut self, key: &str, value: &[u8]) {
        let vm_id = self.vm.borrow().store.data().vm_id.clone();
        lock(&self.world).set_shared(&vm_id, key.as_bytes(), value, 0);
    }

    /// All shared data keys of this VM's namespace.
    pub fn shared_keys(&self) -> Vec<String> {
        let vm_id = self.vm.borrow().store.data().vm_id.clone();
        let w = lock(&self.world);
        let mut keys: Vec<String> = w
            .shared
            .keys()
            .filter(|(v, _)| *v == vm_id)
            .map(|(_, k)| String::from_utf8_lossy(k).into_owned())
            .collect();
        keys.sort();
        keys
    }

    /// Metric value by name (counter total or gauge value). Counters and gauges with one name are
    /// distinct; this returns the counter if both exist.
    pub fn metric(&self, name: &str) -> Option<i64> {
        let w = lock(&self.world);
        [MetricKind::Counter, MetricKind::Gauge]
            .iter()
            .find_map(|k| w.metrics.get(&(*k, name.to_string())).map(|m| m.value))
    }

    /// Every metric (process-wide, shared by all VMs).
    pub fn metrics(&self) -> BTreeMap<(MetricKind, String), MetricValue> {
        lock(&self.world).metrics.clone()
    }

    /// Sets a property the filter can read with `proxy_get_property` (path parts joined by '.').
    pub fn set_property(&mut self, path: &str, value: &[u8]) {
        lock(&self.world)
            .properties
            .insert(path.to_string(), value.to_vec());
    }

    /// Everything this VM logged, in order.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.vm.borrow().store.data().logs.clone()
    }

    /// True if some log message contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.vm
            .borrow()
            .store
            .data()
            .logs
            .iter()
            .any(|l| l.message.contains(needle))
    }

    /// Traps so far (each callback that trapped, with wasmtime's message and backtrace).
    pub fn traps(&self) -> Vec<String> {
        self.vm.borrow().traps.clone()
    }

    /// The proxy-wasm ABI calls (`proxy_*` imports) the module made since the last
    /// [`Host::take_host_calls`], in order; the list is emptied.
    pub fn take_host_calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut self.vm.borrow_mut().store.data_mut().host_calls)
    }

    /// Calls to imports this host only stubs (they got an error status).
    pub fn unknown_calls(&self) -> Vec<String> {
        self.vm.borrow().store.data().unknown_calls.clone()
    }

    /// Imports the module declares that this host only stubs.
    pub fn stubbed_imports(&self) -> Vec<String> {
        self.vm.borrow().stubbed.clone()
    }

    /// Header writes with NUL/CR/LF in a name or value (Envoy would refuse or mangle them).
    pub fn invalid_header_writes(&self) -> Vec<String> {
        self.vm.borrow().store.data().invalid_header_writes.clone()
    }

    /// Number of live contexts (root included): streams not yet finished.
    pub fn live_contexts(&self) -> usize {
        self.vm.borrow().store.data().contexts.len()
    }

    /// Exported function names of the module.
    pub fn exports(&self) -> Vec<String> {
        self.vm
            .borrow()
            .module
            .exports()
            .map(|e| e.name().to_string())
            .collect()
    }

    /// Imported function names of the module (`module.name`).
    pub fn imports(&self) -> Vec<String> {
        self.vm
            .borrow()
            .module
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect()
    }
}

impl Stream {
    /// Context id of this stream.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn run(&mut self, request: bool, f: impl FnOnce(&mut Vm)) -> Action {
        let mut v = self.vm.borrow_mut();
        if let Some(f) = &v.failed {
            // Envoy fails every stream of a crashed VM (503, or pass-through when fail_open).
            return Action::Failed(format!("VM failed earlier: {f}"));
        }
        if v.http_ref(self.id).is_none() {
            return Action::Failed(v.failed.clone().unwrap_or_else(|| {
                "stream not open (configure the host first, or it already finished)".into()
            }));
        }
        let before = v.traps.len();
        f(&mut v);
        v.action(self.id, request, before)
    }

    /// Delivers the request headers with end_of_stream = true (a request without body).
    pub fn headers(&mut self) -> Action {
        self.send_headers(true)
    }

    /// Delivers the request headers (`proxy_on_request_headers`).
    pub fn send_headers(&mut self, end_of_stream: bool) -> Action {
        let (id, h) = (self.id, self.headers.clone());
        self.run(true, |v| v.headers(id, true, h, end_of_stream))
    }

    /// Delivers a request body chunk (`proxy_on_request_body`; buffered while the filter pauses).
    pub fn body(&mut self, chunk: &[u8], end_of_stream: bool) -> Action {
        let id = self.id;
        let data = chunk.to_vec();
        self.run(true, |v| v.body(id, true, data, end_of_stream))
    }

    /// Delivers request trailers (`proxy_on_request_trailers`; the request ends with them).
    pub fn trailers<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, trailers: &[(K, V)]) -> Action {
        let id = self.id;
        let t = Headers::from_pairs(trailers);
        self.run(true, |v| v.trailers(id, true, t))
    }

    /// Request trailers as they went upstream (`None` while held or never sent).
    pub fn upstream_trailers(&self) -> Option<Headers> {
        self.upstream(|d| d.forwarded_trailers.clone())
    }

    /// Delivers upstream response headers (`proxy_on_response_headers`).
    pub fn respond<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Action {
        let id = self.id;
        let h = Headers::from_pairs(headers);
        self.run(false, |v| v.headers(id, false, h, end_of_stream))
    }

    /// Delivers an upstream response body chunk (`proxy_on_response_body`).
    pub fn respond_body(&mut self, chunk: &[u8], end_of_stream: bool) -> Action {
        let id = self.id;
        let data = chunk.to_vec();
        self.run(false, |v| v.body(id, false, data, end_of_stream))
    }

    /// Where the request stands now (after callouts were answered, for instance).
    pub fn state(&self) -> Action {
        self.vm.borrow().action(self.id, true, self.traps_at_start)
    }

    /// Request headers as they went upstream (`None` while paused or after a local reply).
    pub fn upstream_headers(&self) -> Option<Headers> {
        self.upstream(|d| d.forwarded_headers.clone())
    }

    /// Request body bytes that went upstream so far.
    pub fn upstream_body(&self) -> Vec<u8> {
        self.view(|h| Some(h.req.forwarded_body.clone()))
            .unwrap_or_default()
    }

    /// Response headers as the client gets them (after the filter), or the local reply's.
    pub fn downstream_headers(&self) -> Option<Headers> {
        self.view(|h| h.resp.forwarded_headers.clone())
    }

    /// Response body bytes the client got so far.
    pub fn downstream_body(&self) -> Vec<u8> {
        self.view(|h| Some(h.resp.forwarded_body.clone()))
            .unwrap_or_default()
    }

    /// The local reply, if the filter sent one.
    pub fn local_response(&self) -> Option<LocalResponse> {
        self.view(|h| h.local.clone())
    }

    /// Reads this stream's context (`None` once it is gone).
    fn view<R>(&self, f: impl FnOnce(&HttpCtx) -> Option<R>) -> Option<R> {
        let v = self.vm.borrow();
        f(v.http_ref(self.id)?)
    }

    /// Reads what of the request went upstream: nothing after a local reply.
    fn upstream<R>(&self, f: impl FnOnce(&Direction) -> Option<R>) -> Option<R> {
        self.view(|h| if h.local.is_some() { None } else { f(&h.req) })
    }

    /// Sets a per-stream property (e.g. `source.address`) for `proxy_get_property`.
    pub fn set_property(&mut self, path: &str, value: &[u8]) {
        let id = self.id;
        if let Some(h) = self.vm.borrow_mut().http(id) {
            h.properties.insert(path.to_string(), value.to_vec());
        }
    }

    /// Ends the stream now: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub fn finish(&mut self) {
        let id = self.id;
        self.vm.borrow_mut().finish(id);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let id = self.id;
        if let Ok(mut v) = self.vm.try_borrow_mut() {
            v.finish(id);
        }
    }
}

/// Finds a `.wasm` built for `wasm32-unknown-unknown` in release mode: `$env_var` if set, else
/// `<target dir>/wasm32-unknown-unknown/release/<file_name>` where the target dir is
/// `$CARGO_TARGET_DIR` or the one holding the running test binary. The error says how to build it.
pub fn locate_wasm(env_var: &str, file_name: &str, build_command: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(wasmtime::format_err!(
                "{env_var}={} does not exist; build it with: {build_command}",
                p.display()
            ))
        };
    }
    let mut candidates = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t));
    }
    if let Ok(exe) = std::env::current_exe() {
        // <target>/debug/deps/<test binary>
        if let Some(t) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(t.to_path_buf());
        }
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    );
    for t in &candidates {
        let p = t
            .join("wasm32-unknown-unknown")
            .join("release")
            .join(file_name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(wasmtime::format_err!(
        "{file_name} not found (looked in {:?} and ${env_var}); build it first with:\n    {build_command}\nor run host-tests/run.sh",
        candidates
    ))
}

/// The fixture filter of this crate (`host-tests/fixture`).
pub fn fixture_wasm() -> Result<PathBuf> {
    locate_wasm(
        "HOST_TESTS_FIXTURE_WASM",
        "host_tests_fixture.wasm",
        "cargo build -p host-tests-fixture --target wasm32-unknown-unknown --release",
    )
}

/// The real filter (`filter/proxy-wasm`, crate `edgegate-proxy-wasm`).
pub fn filter_wasm() -> Result<PathBuf> {
    locate_wasm(
        "EDGEGATE_WASM",
        "edgegate_proxy_wasm.wasm",
        "cargo build -p edgegate-proxy-wasm --target wasm32-unknown-unknown --release",
    )
}
