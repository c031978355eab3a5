//! One stream: the request hooks, on the stream's worker thread. The same steps as the
//! proxy-wasm HTTP context: bounds, identity headers removed, the OIDC login routes and session
//! renewal ([`login`]), one decision, the verdict carried out (the glue in
//! `edgegate-envoy-glue` says what to read, count and send).

mod login;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use edgegate::engine::{LocalReply, Verdict, MAX_FORM_BODY};
use edgegate::login::{AwaitIdentity, DeviceStep, LoginStep};
use edgegate::step::{NeedForm, NeedKeys, Step};
use edgegate::upstream::HeaderEdits;
use edgegate_envoy_glue::metrics;
use edgegate_envoy_glue::request::{
    check_count, check_sizes, edit_ops, identity_names, OwnedRequest,
};
use edgegate_envoy_glue::verdict::{self as glue, internal_error};

use crate::abi::{CalloutResponse, FilterCtx, FilterScheduler, RequestMap};
use crate::config::{self, Shared, StreamCounters, Waiter, EVENT_RESUME};
use crate::keys::KeySnapshot;
use crate::magic::{self, Claim};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the request hook does next.
enum Next {
    /// Allowed: headers set, continue upstream.
    Continue,
    /// Answered locally, or paused (waiting for keys, reading a magic-link form).
    Stop,
}

/// A request paused until keys arrive: the request and the engine's paused decision (with
/// `/auth/me`'s answer still to give: `me`).
struct Waiting {
    request: OwnedRequest,
    paused: NeedKeys,
    me: Option<AwaitIdentity>,
}

/// The module's filter of one stream.
pub struct Filter {
    shared: Arc<Shared>,
    id: u64,
    /// True once the engine allowed the request. Until then its body and trailers are held.
    allowed: bool,
    /// Set while a magic-link form body is being read.
    form: Option<(OwnedRequest, NeedForm)>,
    /// Set while a device route's `POST` body is being read (`login.device`).
    device: Option<OwnedRequest>,
    /// Set while the request waits for keys.
    waiting: Option<Waiting>,
    scheduler: Option<Arc<FilterScheduler>>,
    /// The stream's login state; only with a `login` section.
    login: Option<Box<login::StreamLogin>>,
    /// True while the request headers hook runs: an allow there continues by its return value,
    /// elsewhere (a callout's answer, a scheduled event) by continuing decoding.
    in_headers: bool,
}

impl Filter {
    pub fn new(shared: Arc<Shared>) -> Filter {
        Filter {
            shared,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            allowed: false,
            form: None,
            device: None,
            waiting: None,
            scheduler: None,
            login: None,
            in_headers: false,
        }
    }

    /// The request headers. True: continue upstream; false: stop (answered, or paused).
    pub fn on_request_headers(&mut self, ctx: &FilterCtx<'_>, end_of_stream: bool) -> bool {
        let shared = Arc::clone(&self.shared);
        // Over the header bounds: refused whole (431), never cut (a cut map would hide identity
        // headers or a credential from the core while the upstream still got them).
        let len = ctx.map_len(RequestMap::Headers);
        if check_count(len).is_err() {
            self.send(ctx, &edgegate::limits::headers_too_large_denial());
            return false;
        }
        // The map is read in place (Envoy's own bytes, no copy per header), checked, and copied
        // once into the request without the client's identity headers; a map that cannot be
        // read cannot be cleaned: fail closed.
        let read = ctx.with_map(RequestMap::Headers, len, |pairs| {
            check_sizes(pairs)
                .ok()
                .map(|()| OwnedRequest::from_map(&shared.engine, pairs))
        });
        let Some(read) = read else {
            log::error!("the request header map cannot be read: 500");
            self.send(ctx, &internal_error());
            return false;
        };
        let Some((req, identity)) = read else {
            self.send(ctx, &edgegate::limits::headers_too_large_denial());
            return false;
        };
        // Then, always: client-sent copies of identity headers, in any spelling, never reach the
        // upstream.
        remove_all(ctx, RequestMap::Headers, &identity);
        // Device authorization routes (login.device), answered here.
        if shared.engine.device_route(req.path()).is_some() {
            if edgegate::login::DeviceRoute::needs_body(req.method()) && !end_of_stream {
                self.device = Some(req);
            } else {
                self.serve_device(ctx, &req, &[]);
            }
            return false;
        }
        // OIDC login routes, then session renewal, then the rules.
        let req = if shared.engine.login().is_some() {
            self.in_headers = true;
            let begun = self.login_begin(ctx, req);
            self.in_headers = false;
            match begun {
                login::Begin::Decide(req) => req,
                // Answered, paused, or decided and allowed already (then it continues).
                login::Begin::Held => return self.allowed,
            }
        } else {
            req
        };
        match self.decide_and_apply(ctx, req, config::now_ms(), None, None) {
            Next::Continue => true,
            Next::Stop => {
                if end_of_stream {
                    if let Some((req, form)) = self.form.take() {
                        self.finish_magic_form(ctx, &req, form, &[]);
                    }
                }
                false
            }
        }
    }

    /// A request body frame. True: continue; false: hold it (buffered).
    pub fn on_request_body(&mut self, ctx: &FilterCtx<'_>, end_of_stream: bool) -> bool {
        if self.device.is_some() {
            let limit = MAX_FORM_BODY.saturating_add(1);
            if end_of_stream || ctx.request_body_size() >= limit {
                let body = ctx.request_body(limit);
                if let Some(req) = self.device.take() {
                    self.serve_device(ctx, &req, &body);
                }
            }
            return false;
        }
        if self.form.is_some() {
            let limit = MAX_FORM_BODY.saturating_add(1);
            if end_of_stream || ctx.request_body_size() >= limit {
                // At most limit bytes are read; a longer body is refused by the core as too large.
                let body = ctx.request_body(limit);
                if let Some((req, form)) = self.form.take() {
                    self.finish_magic_form(ctx, &req, form, &body);
                }
            }
            return false;
        }
        self.allowed
    }

    /// The request trailers: identity names removed here too, whether the request is allowed
    /// yet or not. True: continue; false: hold them.
    pub fn on_request_trailers(&mut self, ctx: &FilterCtx<'_>) -> bool {
        let len = ctx.map_len(RequestMap::Trailers);
        let shared = Arc::clone(&self.shared);
        match ctx.with_map(RequestMap::Trailers, len, |pairs| {
            identity_names(&shared.engine, pairs)
        }) {
            Some(identity) => remove_all(ctx, RequestMap::Trailers, &identity),
            None => {
                // A trailer map that cannot be read cannot be cleaned: fail closed.
                log::error!("the request trailer map cannot be read: 500");
                self.allowed = false;
                self.waiting = None;
                self.send(ctx, &internal_error());
                return false;
            }
        }
        self.allowed
    }

    /// A stream event: the main thread resumed a request that waited for keys (or for another
    /// stream's renewal).
    pub fn on_scheduled(&mut self, ctx: &FilterCtx<'_>, event: u64) {
        if event != EVENT_RESUME {
            return;
        }
        let Some(w) = self.waiting.take() else {
            self.login_resume(ctx);
            return;
        };
        // Resumes the paused decision (keys still missing past the deadline: a 503 there).
        if let Next::Continue =
            self.decide_and_apply(ctx, w.request, config::now_ms(), Some(w.paused), w.me)
        {
            ctx.continue_decoding();
        }
    }

    /// The upstream's response headers: a renewed session (or its end) goes back with them.
    /// (Envoy does not run this hook for the module's own local replies: those carry them
    /// themselves, [`Filter::renewal_cookies`].)
    pub fn on_response_headers(&mut self, ctx: &FilterCtx<'_>) {
        for (name, value) in self.renewal_cookies() {
            ctx.add_response_header(name, value);
        }
    }

    /// The `set-cookie` headers of a renewal this request carried out (none without one).
    fn renewal_cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.login
            .iter()
            .flat_map(|l| l.set_cookies())
            .map(|c| ("set-cookie", c))
    }

    /// A stream callout ended: a login's call to the provider.
    pub fn on_callout_done(
        &mut self,
        ctx: &FilterCtx<'_>,
        id: u64,
        response: &CalloutResponse<'_>,
    ) {
        self.login_call_done(ctx, id, response);
    }

    /// Runs the engine's machine for the request (from its start, or from the step that waited
    /// for keys: `waited`) and carries out where it ends. `me`: `/auth/me`, whose machine
    /// identifies the request's credential and answers with the identity.
    fn decide_and_apply(
        &mut self,
        ctx: &FilterCtx<'_>,
        req: OwnedRequest,
        now_ms: u128,
        waited: Option<NeedKeys>,
        me: Option<AwaitIdentity>,
    ) -> Next {
        let shared = Arc::clone(&self.shared);
        let engine = &shared.engine;
        let resumed = waited.is_some();
        let snapshot = shared.snapshot();
        let now = glue::secs(now_ms);
        let (step, edits) = {
            let mut cache = shared.cache();
            if me.is_some() {
                let keys = &*snapshot;
                let start = |r: &edgegate::Request<'_>, c: &mut edgegate::cache::TokenCache| {
                    engine.identify(r, keys, c, now)
                };
                let step = glue::run_from(engine, &req, keys, &mut cache, now, start, waited);
                (step, HeaderEdits::default())
            } else {
                glue::run(engine, &req, &*snapshot, &mut cache, now, waited)
            }
        };
        let step = match (step, me) {
            (Step::Done(verdict), Some(me)) => {
                match me.resume(engine, verdict) {
                    LoginStep::Reply(r) => self.send_login_reply(ctx, &r),
                    _ => self.send(ctx, &internal_error()),
                }
                return Next::Stop;
            }
            (Step::NeedKeys(paused), me) if !resumed => {
                return self.wait_for_keys(ctx, req, now_ms, paused, me, &snapshot);
            }
            (step, None) => step,
            // A resumed `/auth/me` never pauses again: fail closed.
            (_, Some(_)) => {
                self.send(ctx, &internal_error());
                return Next::Stop;
            }
        };
        match step {
            Step::Done(Verdict::Allow {
                identity,
                headers,
                cached,
                ..
            }) => {
                metrics::count_allow(&mut self.counters(ctx), identity.as_deref(), cached);
                for (name, value) in edit_ops(&edits) {
                    ctx.set(RequestMap::Headers, name, value);
                }
                // Every identity header the client sent was removed before the decision, so these
                // names are absent: added, not set (a set removes first).
                for (name, value) in headers.iter() {
                    ctx.add(RequestMap::Headers, name, value);
                }
                self.allowed = true;
                Next::Continue
            }
            Step::Done(Verdict::Reply(d)) => {
                log_denial(&d, &req);
                self.send(ctx, &d);
                Next::Stop
            }
            Step::NeedForm(form) if !resumed => {
                self.form = Some((req, form));
                Next::Stop
            }
            // A resumed request never pauses again (the core answers after one wait) and never
            // reads a body; signatures were answered in place: fail closed.
            Step::NeedKeys(_) | Step::NeedForm(_) | Step::NeedSignature(_) => {
                self.send(ctx, &internal_error());
                Next::Stop
            }
        }
    }

    /// Pauses the request until its provider's keys arrive (or an early refetch for an unknown
    /// kid settles), bounded by the provider's wait; 503 when it cannot wait.
    fn wait_for_keys(
        &mut self,
        ctx: &FilterCtx<'_>,
        req: OwnedRequest,
        now_ms: u128,
        paused: NeedKeys,
        me: Option<AwaitIdentity>,
        snapshot: &KeySnapshot,
    ) -> Next {
        let shared = Arc::clone(&self.shared);
        let provider = paused.provider().to_string();
        if self.wait_keys(ctx, &provider, now_ms, snapshot) {
            self.waiting = Some(Waiting {
                request: req,
                paused,
                me,
            });
            return Next::Stop;
        }
        let d = shared.engine.keys_unavailable();
        log::warn!(
            "keys of provider {provider} are not available (too many requests waiting): 503"
        );
        log_denial(&d, &req);
        self.send(ctx, &d);
        Next::Stop
    }

    /// Registers this stream as waiting for `provider`'s keys (or an early refetch for an
    /// unknown kid), bounded by the provider's wait, and wakes the main thread. False when it
    /// cannot wait.
    fn wait_keys(
        &mut self,
        ctx: &FilterCtx<'_>,
        provider: &str,
        now_ms: u128,
        snapshot: &KeySnapshot,
    ) -> bool {
        let shared = Arc::clone(&self.shared);
        let deadline_ms = now_ms.saturating_add(shared.key_wait(provider).as_millis());
        // The provider has keys: the token's kid is unknown and the main thread may refetch.
        let settled = snapshot.has(provider).then(|| snapshot.settled(provider));
        if settled.is_some() {
            shared.request_refetch(provider.to_string());
        }
        let ok = self
            .waiter(ctx, provider, deadline_ms, settled, None)
            .is_some_and(|w| shared.add_waiter(w).is_ok());
        if ok {
            shared.wake();
        }
        ok
    }

    /// This stream's entry in the waiting list, for `provider`'s keys or for the renewal of the
    /// refresh cookie `renewal`; `None` when Envoy gave no scheduler.
    fn waiter(
        &mut self,
        ctx: &FilterCtx<'_>,
        provider: &str,
        deadline_ms: u128,
        settled: Option<u64>,
        renewal: Option<String>,
    ) -> Option<Waiter> {
        if self.scheduler.is_none() {
            self.scheduler = ctx.new_scheduler().map(Arc::new);
        }
        let scheduler = self.scheduler.as_ref()?;
        Some(Waiter {
            filter_id: self.id,
            scheduler: Arc::clone(scheduler),
            provider: provider.to_string(),
            deadline_ms,
            settled,
            renewal,
        })
    }

    /// A device route (`login.device`): the core's flow on this process's store
    /// ([`crate::device`]), to its reply.
    fn serve_device(&self, ctx: &FilterCtx<'_>, req: &OwnedRequest, body: &[u8]) {
        let engine = &self.shared.engine;
        let now = config::now();
        let random = login::random_bytes();
        let Some(mut step) = req.with(|r| engine.device(r, body, &random, now)) else {
            self.send(ctx, &internal_error());
            return;
        };
        for _ in 0..32 {
            step = match step {
                DeviceStep::Reply(r) => {
                    self.send_login_reply(ctx, &r);
                    return;
                }
                DeviceStep::Read(r) => {
                    let found = crate::device::read(r.key(), now);
                    r.resume(engine, found, now)
                }
                DeviceStep::Write(w) => {
                    match crate::device::cas(w.key(), w.value(), w.expect(), w.expires_at(), now) {
                        Some(written) => w.resume(engine, written, now),
                        None => break,
                    }
                }
            };
        }
        log::error!("login.device: the device store is full; refusing the device request");
        self.send(ctx, &internal_error());
    }

    /// The end of a magic-link POST: the core verifies the form's token; this process enforces
    /// single use, then redirects with the session cookie.
    fn finish_magic_form(
        &mut self,
        ctx: &FilterCtx<'_>,
        req: &OwnedRequest,
        form: NeedForm,
        body: &[u8],
    ) {
        let now = config::now();
        let engine = &self.shared.engine;
        let login = match form.resume(engine, body, now) {
            Ok(l) => l,
            Err(d) => {
                log_denial(&d, req);
                self.send(ctx, &d);
                return;
            }
        };
        match magic::claim(&login.jti, login.expires_at, now) {
            Claim::Fresh => {
                metrics::count_magic_login(&mut self.counters(ctx));
                log::info!("{}", glue::magic_login_log_line(&login));
                ctx.send_response(
                    302,
                    &glue::magic_login_headers(&login),
                    b"",
                    "edgegate_magic_link",
                );
            }
            Claim::Replayed => {
                let d = engine.replayed();
                log_denial(&d, req);
                self.send(ctx, &d);
            }
            Claim::Unavailable => {
                let d = glue::single_use_unavailable(engine);
                log::error!("magic link refused: the single-use store is full");
                self.send(ctx, &d);
            }
        }
    }

    fn counters<'a, 'h>(&'a self, ctx: &'a FilterCtx<'h>) -> StreamCounters<'a, FilterCtx<'h>> {
        StreamCounters {
            shared: &self.shared,
            ctx,
        }
    }

    /// Sends a local reply and counts a refusal.
    fn send(&self, ctx: &FilterCtx<'_>, d: &LocalReply) {
        metrics::count_reply(&mut self.counters(ctx), d);
        let mut headers = edgegate::extractor::header_refs(&d.headers);
        headers.extend(self.renewal_cookies());
        let details = format!("edgegate_{}", d.reason.code());
        ctx.send_response(d.status, &headers, d.body.as_bytes(), &details);
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        if self.scheduler.is_some() {
            self.shared.remove_waiters(self.id);
        }
    }
}

/// Removes every value of each named header from a request map (the identity headers the client
/// sent: one call per distinct name).
fn remove_all(ctx: &FilterCtx<'_>, map: RequestMap, names: &[String]) {
    for name in names {
        ctx.set(map, name, None);
    }
}

fn log_denial(d: &LocalReply, req: &OwnedRequest) {
    if let Some(line) = glue::denial_log_line(d, req) {
        log::info!("{line}");
    }
}
