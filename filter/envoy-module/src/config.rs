//! One filter configuration, shared by every worker thread of the process: the compiled engine,
//! the verified-token cache, the remote key sets and the requests waiting for them.
//!
//! Threads:
//! - worker threads run the streams ([`crate::filter`]): they read the key snapshot, lock the
//!   token cache for the decision, and register waiting requests;
//! - Envoy's main thread runs [`Shared::on_scheduled`] and [`Shared::on_callout_done`]: it drives
//!   the key-set state machines, starts the fetches, publishes key snapshots and resumes waiting
//!   requests through their streams' schedulers;
//! - a ticker thread (one per config with remote key sets or a `login` section) only commits an
//!   event to the main thread when the next refresh, retry or wait deadline is due: the ABI gives
//!   HTTP filter configs a scheduler but no timer;
//! - OIDC login ([`crate::filter`]'s login) runs on the streams' worker threads; what they share
//!   is here: the discovery document and the renewals in flight ([`RenewalBoard`]), one copy per
//!   process.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgegate::cache::TokenCache;
use edgegate::login::{Discovery, Join, RenewalBoard, RenewalOutcome, DISCOVERY_TTL_SECONDS};
use edgegate::{Engine, UnixTime};
use edgegate_envoy_glue::fetch::Outcome;
use edgegate_envoy_glue::metrics::{self, label_value, Counters};

use crate::abi::{
    self, CalloutResponse, ConfigCtx, ConfigScheduler, FilterScheduler, IncrementCounter,
};
use crate::keys::{KeySnapshot, ListRemote, Remote};

/// How long a request may wait for a remote key set when its provider's
/// `remote_jwks.wait_for_keys_ms` is not known (then 503, fail closed).
pub const KEY_WAIT: Duration = Duration::from_secs(3);
/// The tick while requests wait for keys or an early refetch is pending.
const FAST_TICK: Duration = Duration::from_millis(100);
/// The tick otherwise: the workers' counts go to Envoy ([`PendingCounts`]) and the key sets'
/// fetch schedules (the JwksState machines) are checked once a second.
const FLUSH_TICK: Duration = Duration::from_secs(1);
/// Most requests kept waiting for keys in the process; beyond it they get the 503 at once.
pub const MAX_WAITERS: usize = 4096;

/// Config scheduler events (both run [`Shared::run`]).
const EVENT_TICK: u64 = 1;
const EVENT_WAKE: u64 = 2;
/// The stream scheduler event that resumes a waiting request.
pub const EVENT_RESUME: u64 = 1;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Seconds since the Unix epoch.
pub fn now() -> UnixTime {
    edgegate_envoy_glue::verdict::secs(now_ms())
}

/// Locks `m`. A panic elsewhere while it was held leaves data that is still valid (every
/// critical section here leaves its data whole), so a poisoned lock is taken as is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request paused until a provider's keys arrive.
pub struct Waiter {
    /// The stream's filter ([`crate::filter::Filter`]), to remove its entry when it goes away.
    pub filter_id: u64,
    /// Resumes the stream on its worker thread.
    pub scheduler: Arc<FilterScheduler>,
    pub provider: String,
    pub deadline_ms: u128,
    /// Waiting on an unknown kid: the provider's settled count when the wait began (it resumes
    /// when that moves). `None`: waiting for the provider's first keys.
    pub settled: Option<u64>,
    /// Waiting for another stream's renewal of this refresh cookie instead of keys (`provider`
    /// unused): resumed when that renewal ends ([`Shared::finish_renewal`]) or at the deadline.
    pub renewal: Option<String>,
}

/// How a stream joined a renewal ([`Shared::join_renewal`]).
pub enum Joined {
    /// It renews (the board marked it in flight).
    Lead,
    /// A renewal of the same cookie just ended: carry out its outcome.
    Shared(RenewalOutcome),
    /// Another stream renews it: this one waits (registered), resumed when it ends.
    Waiting,
    /// It should wait but cannot (no scheduler, the waiting list full).
    Full,
}

/// The counters this config defined (Envoy freezes stat creation once the config exists).
#[derive(Debug, Default)]
pub struct CounterIds {
    allowed: Option<usize>,
    denied: Option<usize>,
    fetch_ok: Option<usize>,
    fetch_failed: Option<usize>,
    cache_hit: Option<usize>,
    cache_miss: Option<usize>,
    login: Option<usize>,
    list_ok: Option<usize>,
    list_failed: Option<usize>,
}

impl CounterIds {
    fn define(ctx: &ConfigCtx<'_>) -> CounterIds {
        CounterIds {
            allowed: ctx.define_counter(metrics::ALLOWED, &[metrics::CREDENTIAL]),
            denied: ctx.define_counter(metrics::DENIED, &[metrics::REASON]),
            fetch_ok: ctx.define_counter(metrics::JWKS_FETCH_OK, &[]),
            fetch_failed: ctx.define_counter(metrics::JWKS_FETCH_FAILED, &[]),
            list_ok: ctx.define_counter(metrics::API_KEYS_FETCH_OK, &[]),
            list_failed: ctx.define_counter(metrics::API_KEYS_FETCH_FAILED, &[]),
            cache_hit: ctx.define_counter(metrics::CACHE_HIT, &[]),
            cache_miss: ctx.define_counter(metrics::CACHE_MISS, &[]),
            login: ctx.define_counter(metrics::LOGIN, &[metrics::OUTCOME]),
        }
    }

    fn id(&self, name: &str) -> Option<usize> {
        match name {
            metrics::ALLOWED => self.allowed,
            metrics::DENIED => self.denied,
            metrics::JWKS_FETCH_OK => self.fetch_ok,
            metrics::JWKS_FETCH_FAILED => self.fetch_failed,
            metrics::API_KEYS_FETCH_OK => self.list_ok,
            metrics::API_KEYS_FETCH_FAILED => self.list_failed,
            metrics::CACHE_HIT => self.cache_hit,
            metrics::CACHE_MISS => self.cache_miss,
            metrics::LOGIN => self.login,
            _ => None,
        }
    }
}

/// Counting from a hook: a stream's (`FilterCtx`, worker thread) or the config's (`ConfigCtx`,
/// main thread).
pub struct HookCounters<'a, C> {
    pub ctx: &'a C,
    pub ids: &'a CounterIds,
}

impl<C: IncrementCounter> Counters for HookCounters<'_, C> {
    fn inc(&mut self, name: &'static str) {
        if let Some(id) = self.ids.id(name) {
            self.ctx.increment_counter(id, &[], 1);
        }
    }

    fn inc_labeled(&mut self, name: &'static str, _label: &'static str, value: &str) {
        if let Some(id) = self.ids.id(name) {
            self.ctx.increment_counter(id, &[&label_value(value)], 1);
        }
    }
}

/// Counts made on the worker threads, handed to Envoy on the main thread's next tick (at most
/// [`FLUSH_TICK`] later): a labelled counter increment makes Envoy build the tagged stat's name
/// per call, which the hot path should not pay per request.
#[derive(Default)]
pub struct PendingCounts(Mutex<Vec<(usize, String, u64)>>);

impl PendingCounts {
    fn add(&self, id: usize, label: &str) {
        let mut p = lock(&self.0);
        match p.iter_mut().find(|(i, l, _)| *i == id && l == label) {
            Some((_, _, n)) => *n = n.saturating_add(1),
            None => p.push((id, label.to_string(), 1)),
        }
    }

    /// Hands every count to Envoy through `ctx` (main thread).
    fn flush(&self, ctx: &ConfigCtx<'_>) {
        let pending = std::mem::take(&mut *lock(&self.0));
        for (id, label, n) in pending {
            if label.is_empty() {
                ctx.increment_counter(id, &[], n);
            } else {
                ctx.increment_counter(id, &[&label_value(&label)], n);
            }
        }
    }
}

/// Counting from a worker thread: into [`PendingCounts`] when the config has a ticker to flush
/// them, else straight to Envoy through the stream.
pub struct StreamCounters<'a, C> {
    pub shared: &'a Shared,
    pub ctx: &'a C,
}

impl<C: IncrementCounter> Counters for StreamCounters<'_, C> {
    fn inc(&mut self, name: &'static str) {
        self.inc_labeled(name, "", "");
    }

    fn inc_labeled(&mut self, name: &'static str, _label: &'static str, value: &str) {
        let Some(id) = self.shared.counters.id(name) else {
            return;
        };
        if self.shared.ticker.is_some() {
            self.shared.pending.add(id, value);
        } else if value.is_empty() {
            self.ctx.increment_counter(id, &[], 1);
        } else {
            self.ctx.increment_counter(id, &[&label_value(value)], 1);
        }
    }
}

/// When the ticker thread should next wake the main thread.
#[derive(Default)]
struct Tick {
    next: Option<Instant>,
    stop: bool,
}

struct Ticker {
    state: Arc<(Mutex<Tick>, Condvar)>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Ticker {
    /// Starts the thread. It owns a scheduler reference and the tick state, never the config.
    fn spawn(scheduler: Arc<ConfigScheduler>) -> Option<Ticker> {
        let state = Arc::new((Mutex::new(Tick::default()), Condvar::new()));
        let st = Arc::clone(&state);
        let handle = std::thread::Builder::new()
            .name("edgegate-ticker".into())
            .spawn(move || {
                let (m, cv) = &*st;
                let mut tick = lock(m);
                loop {
                    if tick.stop {
                        return;
                    }
                    match tick.next {
                        None => tick = cv.wait(tick).unwrap_or_else(PoisonError::into_inner),
                        Some(at) => {
                            let now = Instant::now();
                            if now >= at {
                                tick.next = None;
                                // Not under the lock: the main thread may be setting the next
                                // tick meanwhile.
                                drop(tick);
                                scheduler.commit(EVENT_TICK);
                                tick = lock(m);
                            } else {
                                tick = cv
                                    .wait_timeout(tick, at - now)
                                    .map(|(g, _)| g)
                                    .unwrap_or_else(|e| e.into_inner().0);
                            }
                        }
                    }
                }
            });
        match handle {
            Ok(h) => Some(Ticker {
                state,
                handle: Mutex::new(Some(h)),
            }),
            Err(e) => {
                log::error!(
                    "cannot start the key refresh thread: {e}; keys are fetched on demand only"
                );
                None
            }
        }
    }

    fn set(&self, after: Option<Duration>) {
        let (m, cv) = &*self.state;
        lock(m).next = after.map(|d| Instant::now() + d);
        cv.notify_one();
    }

    fn stop(&self) {
        let (m, cv) = &*self.state;
        lock(m).stop = true;
        cv.notify_one();
        if let Some(h) = lock(&self.handle).take() {
            let _ = h.join();
        }
    }
}

/// One filter configuration, for every worker thread.
pub struct Shared {
    pub engine: Engine,
    /// The verified-token cache of the process (held for one decision at a time).
    cache: Mutex<TokenCache>,
    /// What the workers verify with.
    keys: RwLock<Arc<KeySnapshot>>,
    /// The key-set state machines (main thread only; a lock only because `Shared` is shared).
    remotes: Mutex<Vec<Remote>>,
    /// `api_keys.remote`'s state machine (main thread only), when configured.
    key_list: Mutex<Option<ListRemote>>,
    waiters: Mutex<Vec<Waiter>>,
    /// Providers whose key set lacked a token's `kid`: refetch early (rate-limited by JwksState).
    refetch: Mutex<Vec<String>>,
    /// Per remote provider, how long a request waits for its first keys.
    waits: Vec<(String, Duration)>,
    pub counters: CounterIds,
    /// Counts not yet handed to Envoy.
    pending: PendingCounts,
    scheduler: Option<Arc<ConfigScheduler>>,
    ticker: Option<Ticker>,
    /// The login's discovery document and when it was fetched (or taken from the key set).
    discovery: Mutex<Option<(Discovery, UnixTime)>>,
    /// The renewals of the process, by refresh cookie.
    renewals: Mutex<RenewalBoard>,
}

impl Shared {
    /// Compiles the plugin configuration (main thread). `None` refuses it, every error logged.
    pub fn new(ctx: &ConfigCtx<'_>, _name: &[u8], config: &[u8]) -> Option<Arc<Shared>> {
        let engine = match Engine::from_json(config) {
            // RS256/384/512 by AWS-LC with kept keys; the rest by the core's own backend.
            Ok(e) => e.with_backend(Box::new(crate::signature::ModuleBackend::default())),
            Err(errors) => {
                for line in edgegate_envoy_glue::config::refusal_lines(&errors) {
                    log::error!("{line}");
                }
                return None;
            }
        };
        for line in edgegate_envoy_glue::config::notice_lines(&engine) {
            log::warn!("{line}");
        }
        let remotes: Vec<Remote> = engine
            .remote_key_sources()
            .into_iter()
            .map(Remote::new)
            .collect();
        let validating = abi::is_validation_mode();
        // Every config has the main thread's tick: counters are handed to Envoy there; key sets
        // and the API-key list are fetched, and login waits (a stream waiting for another's
        // renewal) resumed, there.
        let key_list = engine.api_key_list().map(ListRemote::new);
        let scheduler = if validating {
            None
        } else {
            ctx.new_scheduler().map(Arc::new)
        };
        if scheduler.is_none() && !validating {
            log::error!("Envoy gave no scheduler: remote key sets cannot be fetched, counters are counted per request");
        }
        let ticker = scheduler
            .as_ref()
            .and_then(|s| Ticker::spawn(Arc::clone(s)));
        let snapshot = KeySnapshot {
            entries: remotes.iter().map(Remote::entry).collect(),
            list: None,
        };
        let shared = Arc::new(Shared {
            key_list: Mutex::new(key_list),
            cache: Mutex::new(engine.new_cache()),
            keys: RwLock::new(Arc::new(snapshot)),
            waits: remotes
                .iter()
                .map(|r| (r.provider.clone(), r.wait))
                .collect(),
            remotes: Mutex::new(remotes),
            waiters: Mutex::new(Vec::new()),
            refetch: Mutex::new(Vec::new()),
            counters: CounterIds::define(ctx),
            pending: PendingCounts::default(),
            scheduler,
            ticker,
            discovery: Mutex::new(None),
            renewals: Mutex::new(RenewalBoard::default()),
            engine,
        });
        let n = lock(&shared.remotes).len();
        log::info!("configured ({n} remote key set(s))");
        // The first fetches start on the main loop, once Envoy's clusters are up.
        shared.wake();
        Some(shared)
    }

    /// The config is gone: stop the ticker and let go of waiting streams.
    pub fn shutdown(&self) {
        if let Some(t) = &self.ticker {
            t.stop();
        }
        lock(&self.waiters).clear();
    }

    // --- worker side -------------------------------------------------------------------------

    /// The key sets as of now.
    pub fn snapshot(&self) -> Arc<KeySnapshot> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The token cache, for one decision. (A panic while it was held may have left it half
    /// written: it is emptied then; it is only a cache.)
    pub fn cache(&self) -> MutexGuard<'_, TokenCache> {
        match self.cache.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                g.clear();
                self.cache.clear_poison();
                g
            }
        }
    }

    /// How long a request waits for `provider`'s keys.
    pub fn key_wait(&self, provider: &str) -> Duration {
        self.waits
            .iter()
            .find(|(p, _)| p == provider)
            .map_or(KEY_WAIT, |(_, w)| *w)
    }

    /// Asks the main thread to run soon.
    pub fn wake(&self) {
        if let Some(s) = &self.scheduler {
            s.commit(EVENT_WAKE);
        }
    }

    /// Asks for an early refetch of a provider's keys (once per run, however many requests ask).
    pub fn request_refetch(&self, provider: String) {
        let mut r = lock(&self.refetch);
        if !r.contains(&provider) {
            r.push(provider);
        }
    }

    /// Registers a waiting request; hands it back when the list is full (the caller answers
    /// 503) or nothing could resume it.
    pub fn add_waiter(&self, w: Waiter) -> Result<(), Waiter> {
        if self.scheduler.is_none() {
            return Err(w);
        }
        let mut ws = lock(&self.waiters);
        if ws.len() >= MAX_WAITERS {
            return Err(w);
        }
        ws.push(w);
        Ok(())
    }

    /// Forgets a stream's waiting entries (the stream ended).
    pub fn remove_waiters(&self, filter_id: u64) {
        lock(&self.waiters).retain(|w| w.filter_id != filter_id);
    }

    /// The login's discovery document, while it is fresh.
    pub fn cached_discovery(&self, now: UnixTime) -> Option<Discovery> {
        lock(&self.discovery)
            .as_ref()
            .filter(|(_, at)| now < at.saturating_add(DISCOVERY_TTL_SECONDS))
            .map(|(d, _)| d.clone())
    }

    /// Keeps the login's discovery document fetched at `now`.
    pub fn keep_discovery(&self, d: &Discovery, now: UnixTime) {
        *lock(&self.discovery) = Some((d.clone(), now));
    }

    /// Joins the process's renewal of the refresh cookie `key` ([`RenewalBoard::join`]); when
    /// it must wait, `waiter` is registered in the same step, so the renewal's end
    /// ([`Shared::finish_renewal`]) cannot slip in between and leave it waiting to its deadline.
    pub fn join_renewal(
        &self,
        key: &str,
        now_ms: u64,
        since_ms: u64,
        waiter: Option<Waiter>,
    ) -> Joined {
        let mut board = lock(&self.renewals);
        match board.join(key, now_ms, since_ms) {
            Join::Lead => Joined::Lead,
            Join::Shared(outcome) => Joined::Shared(outcome),
            Join::Wait => match waiter.map(|w| self.add_waiter(w)) {
                Some(Ok(())) => Joined::Waiting,
                _ => Joined::Full,
            },
        }
    }

    /// A renewal ended: its outcome is kept for the streams that share it, and those waiting for
    /// it resume (on their worker threads).
    pub fn finish_renewal(&self, key: &str, outcome: &RenewalOutcome, now_ms: u64) {
        // The board stays locked until the waiters are woken (lock order: renewals, waiters).
        let mut board = lock(&self.renewals);
        board.finish(key, outcome, now_ms);
        let mut ws = lock(&self.waiters);
        ws.retain(|w| {
            if w.renewal.as_deref() == Some(key) {
                w.scheduler.commit(EVENT_RESUME);
                false
            } else {
                true
            }
        });
    }

    // --- main thread -------------------------------------------------------------------------

    /// A scheduler event: run.
    pub fn on_scheduled(&self, ctx: &ConfigCtx<'_>, _event: u64) {
        self.run(ctx);
    }

    /// A key-set fetch ended.
    pub fn on_callout_done(&self, ctx: &ConfigCtx<'_>, id: u64, response: &CalloutResponse<'_>) {
        let now = now();
        let mut counters = HookCounters {
            ctx,
            ids: &self.counters,
        };
        if let Ok(mut list) = self.key_list.try_lock() {
            if let Some(outcome) = list.as_mut().and_then(|l| l.on_response(id, response, now)) {
                edgegate_envoy_glue::fetch::report_list_fetch(&mut counters, &outcome);
                drop(list);
                self.run(ctx);
                return;
            }
        }
        {
            // Only ever locked on the main thread: a failed try_lock would be re-entrance.
            let Ok(mut remotes) = self.remotes.try_lock() else {
                log::error!("a key-set response arrived re-entrantly; ignored");
                return;
            };
            for r in remotes.iter_mut() {
                let Some((outcome, replaced)) = r.on_response(id, response, now) else {
                    continue;
                };
                if replaced {
                    // A key may have been withdrawn: it stops working at once.
                    self.cache().clear();
                }
                match outcome {
                    Outcome::KeysUpdated { keys } => {
                        counters.inc(metrics::JWKS_FETCH_OK);
                        log::info!("jwks {}: fetched {keys} key(s)", r.provider);
                    }
                    Outcome::Progress => {}
                    Outcome::Failed(why) => {
                        counters.inc(metrics::JWKS_FETCH_FAILED);
                        log::warn!(
                            "jwks {}: fetch failed: {why}; keeping the last good keys",
                            r.provider
                        );
                    }
                }
                self.adopt_discovery(r, now);
                break;
            }
        }
        self.run(ctx);
    }

    /// Keeps the discovery document the login's provider key set fetched, when it follows the
    /// login's discovery URL: one fetch serves both.
    fn adopt_discovery(&self, r: &Remote, now: UnixTime) {
        let Some(login) = self.engine.login() else {
            return;
        };
        if login.provider_name() != r.provider || self.cached_discovery(now).is_some() {
            return;
        }
        if let Ok(edgegate::login::DiscoveryStep::Ready(d)) = login.discovery(Some(r.state()), now)
        {
            self.keep_discovery(&d, now);
        }
    }

    /// Starts every fetch that is due, publishes the key snapshot, resumes waiting requests
    /// whose keys arrived or whose wait is over, and sets the next tick.
    fn run(&self, ctx: &ConfigCtx<'_>) {
        let now = now();
        let early = std::mem::take(&mut *lock(&self.refetch));
        let mut counters = HookCounters {
            ctx,
            ids: &self.counters,
        };
        self.pending.flush(ctx);
        {
            let Ok(mut remotes) = self.remotes.try_lock() else {
                return;
            };
            for r in remotes.iter_mut() {
                let refused =
                    early.contains(&r.provider) && !r.on_unknown_kid(now) && !r.fetching();
                let started = r.start_fetch_if_due(ctx, now);
                if let Err(e) = &started {
                    counters.inc(metrics::JWKS_FETCH_FAILED);
                    log::warn!("jwks {}: cannot start fetch: {e}", r.provider);
                }
                // Requests waiting on an unknown kid resume when no refetch is coming.
                if refused || started.is_err() {
                    r.settle();
                }
            }
            let mut list_published = None;
            if let Ok(mut list) = self.key_list.try_lock() {
                if let Some(l) = list.as_mut() {
                    if let Err(e) = l.start_fetch_if_due(ctx, now) {
                        counters.inc(metrics::API_KEYS_FETCH_FAILED);
                        log::warn!("api_keys.remote: cannot start fetch: {e}");
                    }
                    list_published = l.published();
                }
            }
            let snapshot = KeySnapshot {
                entries: remotes.iter().map(Remote::entry).collect(),
                list: list_published,
            };
            *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
        }
        self.resolve_waiters(now_ms());
        self.schedule();
    }

    /// Resumes (on their worker threads) the requests whose keys arrived or whose wait is over;
    /// their paused decisions resume there (a still-missing key set past the deadline is a 503).
    fn resolve_waiters(&self, now_ms: u128) {
        let snapshot = self.snapshot();
        // Sorted out under the lock (a commit only posts an event): a renewal ending meanwhile
        // on a worker thread ([`Shared::finish_renewal`]) finds its waiters in the list.
        lock(&self.waiters).retain(|w| {
            let ready = match (&w.renewal, w.settled) {
                // Resumed by the renewal's end, or here at the deadline.
                (Some(_), _) => false,
                (None, Some(at)) => snapshot.settled(&w.provider) != at,
                (None, None) => snapshot.has(&w.provider),
            };
            if ready || now_ms >= w.deadline_ms {
                w.scheduler.commit(EVENT_RESUME);
                return false;
            }
            true
        });
    }

    /// Sets the next tick: soon while requests wait or a refetch is pending, else in a second.
    fn schedule(&self) {
        let Some(ticker) = &self.ticker else { return };
        let busy = !lock(&self.waiters).is_empty() || !lock(&self.refetch).is_empty();
        ticker.set(Some(if busy { FAST_TICK } else { FLUSH_TICK }));
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shutdown();
    }
}
