//! edgegate as an Envoy proxy-wasm HTTP filter: a thin host adapter around the core engine.
//!
//! - The plugin configuration (a JSON string) is compiled once by [`Engine::from_json`]; a bad
//!   config is refused with every error logged (field path and message), so Envoy keeps the
//!   previous config (LDS) or refuses to start.
//! - The root context of each VM fetches remote JWKS through Envoy clusters
//!   (`dispatch_http_call`), as each provider's `JwksState` schedules, and publishes the last
//!   good key set in shared data for every VM ([`shared`]).
//! - The HTTP context removes the headers and request trailers the core calls identity headers,
//!   asks the engine for a verdict and carries it out ([`verdict`]): on allow, the identity
//!   headers are set and the core's [`edgegate::upstream::HeaderEdits`] applied (the consumed
//!   credential and edgegate's cookies removed). Nothing here decides who gets in.
//!
//! Never trap: no unwrap/expect/panic/indexing; header maps are read in one host call and
//! parsed with bounds checks ([`hostmap`], [`request::read_map`]), bodies with the SDK's byte
//! variants, and everything is bounded.
#![deny(unsafe_code)]

pub mod device;
pub mod hostmap;
pub mod hostsig;
pub mod login;
pub mod metrics;
pub mod remote;
pub mod request;
pub mod shared;
pub mod verdict;
pub mod wasi;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

use edgegate::cache::TokenCache;
use edgegate::{Engine, UnixTime};

use crate::metrics::Metrics;
use crate::remote::{KeyCache, ListRemote, Remote};
use crate::request::OwnedRequest;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root::new(id)) });
}}

thread_local! {
    /// The plugins configured in this VM (weak: a reconfigured root drops its old one).
    static PLUGINS: RefCell<Vec<std::rc::Weak<Plugin>>> = const { RefCell::new(Vec::new()) };
}

/// Observability for tests (host-tests calls it through the ABI; Envoy never does): how many
/// decisions the engines of this VM's live plugins started. One request starts one decision,
/// whether it waited for keys or not.
// `no_mangle` is the only exception to `unsafe_code` in this crate: an exported name no other
// symbol of the module uses, with no unsafe body.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn edgegate_decisions_started() -> u64 {
    PLUGINS.with(|p| {
        p.try_borrow()
            .map(|p| {
                p.iter()
                    .filter_map(std::rc::Weak::upgrade)
                    .map(|plugin| plugin.engine.decisions_started())
                    .sum()
            })
            .unwrap_or(0)
    })
}

/// How long a request may wait for a remote key set that has not arrived (then 503, fail closed),
/// when the provider's `remote_jwks.wait_for_keys_ms` is not known.
pub const KEY_WAIT: Duration = Duration::from_secs(3);
/// The root's tick while requests wait for keys or an early refetch is pending.
const FAST_TICK: Duration = Duration::from_millis(100);
/// The tick otherwise: counters go to Envoy ([`Metrics::flush`]) and fetch schedules (the
/// JwksState machines) are checked once a second.
const TICK: Duration = Duration::from_secs(1);

/// Seconds since the Unix epoch, from the host clock.
pub fn now() -> UnixTime {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (for request wait deadlines).
pub fn now_ms() -> u128 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis())
}

/// The environment variable (`vm_config.environment_variables`) holding the login's client
/// secret; it overrides `login.client_secret` (the worker's secret binding has the same name).
pub const CLIENT_SECRET_ENV: &str = "OIDC_CLIENT_SECRET";

/// The client secret from the VM's environment, if set.
pub fn client_secret() -> Option<String> {
    wasi::env_var(CLIENT_SECRET_ENV).filter(|s| !s.is_empty())
}

/// What resumes when a waiter's keys arrive.
pub enum Job {
    /// A request's paused decision (or `/auth/me`'s identification, answered by `me`).
    Decide {
        request: OwnedRequest,
        paused: edgegate::step::NeedKeys,
        me: Option<edgegate::login::AwaitIdentity>,
    },
    /// A login's ID token check.
    IdToken(Box<login::IdTokenWait>),
}

/// A request paused until a provider's keys arrive.
pub struct Waiter {
    pub context_id: u32,
    /// The waiting HTTP context's flag, set when the request is finally allowed.
    pub allowed: Rc<Cell<bool>>,
    pub provider: String,
    pub deadline_ms: u128,
    /// What resumes when the wait is over.
    pub job: Job,
    /// Waiting on an unknown kid: the provider's [`KeyCache::settled`] count when the wait
    /// began (it resumes when that moves). `None`: waiting for the provider's first keys.
    pub settled: Option<u64>,
}

/// One configured plugin instance in one VM, shared by its root and HTTP contexts.
pub struct Plugin {
    pub engine: Engine,
    pub root_id: u32,
    pub cache: RefCell<TokenCache>,
    pub keys: RefCell<KeyCache>,
    pub metrics: RefCell<Metrics>,
    pub waiters: RefCell<Vec<Waiter>>,
    /// Providers whose key set lacked a token's `kid`: refetch early (rate-limited by JwksState).
    pub refetch: RefCell<Vec<String>>,
    /// Per remote provider, how long a request waits for its first keys.
    pub waits: Vec<(String, Duration)>,
    /// OIDC login: calls in flight, the discovery document, renewals.
    pub login: login::LoginState,
}

/// Most requests one VM keeps waiting for keys; beyond it they get the 503 at once.
pub const MAX_WAITERS: usize = 1024;

impl Plugin {
    // RefCell access never panics here: a borrow conflict (which a re-entrant host callback
    // could cause) skips a counter or fails the request closed, it never traps the VM.

    /// Counts into the metrics.
    pub fn count(&self, f: impl FnOnce(&mut Metrics)) {
        if let Ok(mut m) = self.metrics.try_borrow_mut() {
            f(&mut m);
        }
    }

    /// Asks for an early refetch of a provider's keys (once per tick, however many requests ask).
    pub fn request_refetch(&self, provider: String) {
        if let Ok(mut r) = self.refetch.try_borrow_mut() {
            if !r.contains(&provider) {
                r.push(provider);
            }
        }
    }

    /// Registers a waiting request; hands it back when the list is full (the caller answers 503).
    pub fn add_waiter(&self, w: Waiter) -> Option<Waiter> {
        match self.waiters.try_borrow_mut() {
            Ok(mut ws) if ws.len() < MAX_WAITERS => {
                ws.push(w);
                None
            }
            _ => Some(w),
        }
    }

    fn take_waiters(&self) -> Vec<Waiter> {
        self.waiters
            .try_borrow_mut()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    fn take_refetch(&self) -> Vec<String> {
        self.refetch
            .try_borrow_mut()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    /// How long a request waits for `provider`'s keys.
    pub fn key_wait(&self, provider: &str) -> Duration {
        self.waits
            .iter()
            .find(|(p, _)| p == provider)
            .map_or(KEY_WAIT, |(_, w)| *w)
    }

    fn busy(&self) -> bool {
        self.login.busy()
            || self.waiters.try_borrow().map_or(true, |w| !w.is_empty())
            || self.refetch.try_borrow().map_or(true, |r| !r.is_empty())
    }

    /// Asks this VM's root context for a tick soon (waiters or refetch pending). Runs in an HTTP
    /// context: the tick period is the root's, so the call is made as the root.
    pub fn wake_root(&self, own_id: u32) {
        if hostcalls::set_effective_context(self.root_id).is_ok() {
            let _ = hostcalls::set_tick_period(FAST_TICK);
        }
        let _ = hostcalls::set_effective_context(own_id);
    }
}

// --- root context ------------------------------------------------------------------------------

struct Root {
    id: u32,
    plugin: Option<Rc<Plugin>>,
    remotes: Vec<Remote>,
    /// `api_keys.remote`, when configured.
    key_list: Option<ListRemote>,
}

impl Root {
    fn new(id: u32) -> Self {
        Root {
            id,
            plugin: None,
            remotes: Vec::new(),
            key_list: None,
        }
    }

    /// Starts every fetch that is due, resolves waiting requests, and sets the next tick.
    fn run(&mut self) {
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        let now = now();
        let early = plugin.take_refetch();
        for r in &mut self.remotes {
            let refused = early.contains(&r.provider) && !r.on_unknown_kid(now) && !r.fetching();
            r.adopt_shared(now);
            let started = r.start_fetch_if_due(now);
            if let Err(e) = &started {
                plugin.count(|m| m.inc(metrics::JWKS_FETCH_FAILED));
                log::warn!("jwks {}: cannot start fetch: {e}", r.provider);
            }
            if let Ok(mut keys) = plugin.keys.try_borrow_mut() {
                // Requests waiting on an unknown kid resume when no refetch is coming.
                if refused || started.is_err() {
                    keys.settle(&r.provider);
                }
                keys.set_refetch_from(&r.provider, r.unknown_kid_refetch_from());
            }
            login::adopt_discovery(&plugin, &r.provider, r.state(), now);
        }
        if let Some(list) = &mut self.key_list {
            if let Err(e) = list.start_fetch_if_due(now) {
                plugin.count(|m| m.inc(metrics::API_KEYS_FETCH_FAILED));
                log::warn!("api_keys.remote: cannot start fetch: {e}");
            }
        }
        verdict::resolve_waiters(&plugin, now_ms(), self.id);
        login::resolve_renewal_waiters(&plugin, self.id);
        plugin.count(Metrics::flush);
        self.schedule(&plugin);
    }

    fn schedule(&self, plugin: &Plugin) {
        let period = if plugin.busy() { FAST_TICK } else { TICK };
        let _ = hostcalls::set_effective_context(self.id);
        let _ = hostcalls::set_tick_period(period);
    }
}

impl Context for Root {
    // The VM is going away: the counts not yet handed to Envoy go now.
    fn on_done(&mut self) -> bool {
        if let Some(plugin) = &self.plugin {
            plugin.count(Metrics::flush);
        }
        true
    }
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(plugin) = self.plugin.clone() else {
            return;
        };
        let now = now();
        if let Some(list) = self.key_list.as_mut().filter(|l| l.owns(token)) {
            let outcome = list.on_response(token, body_size, now);
            plugin.count(|m| edgegate_envoy_glue::fetch::report_list_fetch(m, &outcome));
            self.run();
            return;
        }
        let Some(r) = self.remotes.iter_mut().find(|r| r.owns(token)) else {
            // Envoy delivers every call's response to the root context: a login's call.
            login::on_call_response(&plugin, token, num_headers, body_size);
            let _ = hostcalls::set_effective_context(self.id);
            return;
        };
        let outcome = r.on_response(token, body_size, now);
        if matches!(
            outcome,
            remote::Outcome::KeysUpdated { .. } | remote::Outcome::Failed(_)
        ) {
            if let Ok(mut keys) = plugin.keys.try_borrow_mut() {
                keys.settle(&r.provider);
            }
        }
        match outcome {
            remote::Outcome::KeysUpdated { keys } => {
                plugin.count(|m| m.inc(metrics::JWKS_FETCH_OK));
                log::info!("jwks {}: fetched {keys} key(s)", r.provider);
            }
            remote::Outcome::Progress => {}
            remote::Outcome::Failed(why) => {
                plugin.count(|m| m.inc(metrics::JWKS_FETCH_FAILED));
                log::warn!(
                    "jwks {}: fetch failed: {why}; keeping the last good keys",
                    r.provider
                );
            }
        }
        self.run();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let engine = match Engine::from_json(&bytes) {
            Ok(e) => {
                // RS*/ES256/ES384 by the host's BoringSSL when it has `verify_signature`.
                let backend = hostsig::HostBackend::default();
                backend.probe();
                e.with_backend(Box::new(backend))
            }
            Err(errors) => {
                for line in edgegate_envoy_glue::config::refusal_lines(&errors) {
                    log::error!("{line}");
                }
                return false;
            }
        };
        if let Err(why) = login::check_random_source(&engine) {
            log::error!("{why}");
            return false;
        }
        for line in edgegate_envoy_glue::config::notice_lines(&engine) {
            log::warn!("{line}");
        }
        shared::ensure_magic_buckets();
        self.remotes = engine
            .remote_key_sources()
            .into_iter()
            .map(Remote::new)
            .collect();
        let plugin = Rc::new(Plugin {
            cache: RefCell::new(engine.new_cache()),
            keys: RefCell::new(KeyCache::default()),
            metrics: RefCell::new(Metrics::default()),
            waiters: RefCell::new(Vec::new()),
            refetch: RefCell::new(Vec::new()),
            waits: self
                .remotes
                .iter()
                .map(|r| (r.provider.clone(), r.wait))
                .collect(),
            root_id: self.id,
            login: login::LoginState::default(),
            engine,
        });
        if let Ok(mut keys) = plugin.keys.try_borrow_mut() {
            for r in &self.remotes {
                keys.expect(&r.provider, &r.source_id);
            }
            if let Some(state) = plugin.engine.api_key_list() {
                keys.expect_list(state);
            }
        }
        self.key_list = plugin.engine.api_key_list().map(ListRemote::new);
        PLUGINS.with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.retain(|w| w.strong_count() > 0);
                p.push(Rc::downgrade(&plugin));
            }
        });
        self.plugin = Some(plugin);
        log::info!("configured ({} remote key set(s))", self.remotes.len());
        self.run();
        true
    }

    fn on_tick(&mut self) {
        self.run();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id: context_id,
            plugin: self.plugin.clone(),
            allowed: Rc::new(Cell::new(false)),
            set_cookies: None,
            form: None,
            device: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

// --- HTTP context ------------------------------------------------------------------------------

struct Http {
    id: u32,
    plugin: Option<Rc<Plugin>>,
    /// True once the engine allowed the request. Until then its body and trailers are held:
    /// with `allow_on_headers_stop_iteration`, a Continue from the body callback would send
    /// paused headers upstream.
    allowed: Rc<Cell<bool>>,
    /// `Set-Cookie` values for the upstream's response (a renewed session).
    /// Only with a `login` section: requests without one allocate nothing for it.
    set_cookies: Option<Rc<RefCell<Vec<String>>>>,
    /// Set while a magic-link form body is being read.
    form: Option<(OwnedRequest, edgegate::step::NeedForm)>,
    /// Set while a device route's `POST` body is being read (`login.device`).
    device: Option<OwnedRequest>,
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _t: usize) {
        if let Some(plugin) = self.plugin.clone() {
            login::on_call_response(&plugin, token, headers, body_size);
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let Some(plugin) = self.plugin.clone() else {
            // No configured plugin in this VM: fail closed.
            verdict::send(&verdict::internal_error(), None);
            return Action::Pause;
        };
        // Over the header bounds: refused whole (431), never cut (a cut map would hide identity
        // headers or a credential from the core while the upstream still got them).
        let Ok(req) = request::read_request(&plugin.engine, num_headers) else {
            verdict::send(&edgegate::limits::headers_too_large_denial(), Some(&plugin));
            return Action::Pause;
        };
        // Then, always: client-sent copies of identity headers, in any spelling, never reach the
        // upstream. The whole map is read in one call; each identity header it holds is removed
        // from Envoy's map by name (in `read_request`), those it lacks cost nothing. A map that
        // cannot be read cannot be cleaned: fail closed.
        let Some(req) = req else {
            log::error!("the request header map cannot be read: 500");
            verdict::send(&verdict::internal_error(), Some(&plugin));
            return Action::Pause;
        };
        // Device authorization routes (login.device), answered here.
        if plugin.engine.login().is_some() && device::is_route(&plugin, &req) {
            if device::needs_body(&req) && !end_of_stream {
                self.device = Some(req);
            } else {
                device::serve(&plugin, &req, &[]);
            }
            return Action::Pause;
        }
        // OIDC login routes, then session renewal, then the rules.
        let req = if plugin.engine.login().is_some() {
            let set_cookies = Rc::new(RefCell::new(Vec::new()));
            self.set_cookies = Some(set_cookies.clone());
            let cx = login::Cx {
                context_id: self.id,
                allowed: self.allowed.clone(),
                set_cookies,
                request: req,
                renewal: None,
            };
            match login::begin(&plugin, cx) {
                login::Begin::Decide(req) => req,
                login::Begin::Held => return Action::Pause,
            }
        } else {
            req
        };
        let start = verdict::Start::Decide;
        match verdict::decide_and_apply(&plugin, &req, self.id, &self.allowed, now_ms(), start) {
            verdict::Next::Continue => Action::Continue,
            verdict::Next::Stop => Action::Pause,
            verdict::Next::Wait => {
                plugin.wake_root(self.id);
                Action::Pause
            }
            verdict::Next::ReadForm(form) => {
                if end_of_stream {
                    verdict::finish_magic_form(&plugin, &req, form, &[]);
                } else {
                    self.form = Some((req, form));
                }
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(plugin) = self.plugin.clone() else {
            return self.hold_until_allowed();
        };
        if self.form.is_none() && self.device.is_none() {
            return self.hold_until_allowed();
        }
        let limit = edgegate::engine::MAX_FORM_BODY.saturating_add(1);
        if body_size >= limit || end_of_stream {
            // At most limit bytes are read; a longer body is refused by the core as too large.
            let body = self
                .get_http_request_body(0, body_size.min(limit))
                .unwrap_or_default();
            if let Some((req, form)) = self.form.take() {
                verdict::finish_magic_form(&plugin, &req, form, &body);
            }
            if let Some(req) = self.device.take() {
                device::serve(&plugin, &req, &body);
            }
        }
        Action::Pause
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        // Trailers (HTTP/2, gRPC, HTTP/1 chunked) may carry identity names too: removed here,
        // whether the request is allowed yet or not. A trailer map that cannot be read cannot be
        // cleaned: fail closed.
        if let Some(plugin) = self.plugin.clone() {
            if !request::drop_identity(&plugin.engine, MapType::HttpRequestTrailers) {
                log::error!("the request trailer map cannot be read: 500");
                self.allowed.set(false);
                verdict::send(&verdict::internal_error(), Some(&plugin));
                return Action::Pause;
            }
        }
        self.hold_until_allowed()
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        // A renewed session (or its end) goes back with the upstream's response.
        if let Some(Ok(set)) = self.set_cookies.as_ref().map(|s| s.try_borrow()) {
            for c in set.iter() {
                let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", c);
            }
        }
        Action::Continue
    }
}

impl Http {
    fn hold_until_allowed(&self) -> Action {
        if self.allowed.get() {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(plugin) = &self.plugin {
            if let Ok(mut w) = plugin.waiters.try_borrow_mut() {
                w.retain(|w| w.context_id != self.id);
            }
            plugin.login.forget(self.id);
        }
    }
}
