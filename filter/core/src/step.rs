//! The decision machine: what the engine needs next, rustls-style.
//!
//! [`crate::Engine::start`] runs a request as far as it can without the host and returns a
//! [`Step`]: the final [`Verdict`], or what it needs first — a remote key set
//! ([`Step::NeedKeys`]), a signature only the host verifies ([`Step::NeedSignature`]: WebCrypto
//! in the worker, Envoy's `verify_signature`, or the core's own backend through
//! [`Step::answer_signatures`]), or the magic-link form body ([`Step::NeedForm`]). Each pause owns
//! where the decision stands (the rules left to decide, the verdict of the first rule, the
//! token checked up to its signature), so a host keeps it across its I/O and resumes it with the
//! answer and the same request: the engine runs once per request, whatever the host. A paused
//! step resumed on another engine (the config was reloaded meanwhile) fails closed with a 500.
//!
//! The same machine checks the ID token of an OIDC login or renewal
//! ([`crate::Engine::check_id_token`]): a [`Step`] whose end is the identity or the refusal
//! ([`IdTokenOutcome`]), with the same pauses for the provider's keys and the signature.
//!
//! HMAC signatures never pause: the secret stays in the core and is checked in place.

use std::marker::PhantomData;

use crate::backend::SignatureCheck;
use crate::cache::TokenCache;
use crate::engine::{Engine, LocalReply, MagicLinkLogin, Verdict};
use crate::error::Error;
use crate::extractor::{Found, Request, Source};
use crate::identity::{CredentialKind, Identity};
use crate::method_override::MAX_OVERRIDE_METHODS;
use crate::verifier::{KeyLookup, PendingJwt};
use crate::UnixTime;

/// What an ID-token check ends in: the identity the session will carry, or the refusal.
pub type IdTokenOutcome = Result<Identity, Error>;

/// What the host does next. `T` is what the machine ends in: a [`Verdict`] for a request, an
/// [`IdTokenOutcome`] for an ID token.
// Built once per request and matched at once, like `Verdict`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step<T = Verdict> {
    /// The end: carry it out.
    Done(T),
    /// A remote key set is needed: fetch it (or wait for the fetch under way), then
    /// [`NeedKeys::resume`].
    NeedKeys(NeedKeys<T>),
    /// Verify [`NeedSignature::check`], then [`NeedSignature::resume`] with the result.
    NeedSignature(NeedSignature<T>),
    /// A POST to the magic-link path: read the form body, then [`NeedForm::resume`] (requests
    /// only).
    NeedForm(NeedForm),
}

/// What a machine can end in ([`Verdict`], [`IdTokenOutcome`]); sealed.
#[allow(private_bounds)]
pub trait Goal: machine::Resume {}
impl Goal for Verdict {}
impl Goal for IdTokenOutcome {}

impl Step<Verdict> {
    /// The verdict of a finished decision; any other step back as `Err`.
    // Matched at once by the caller, like `Step` itself.
    #[allow(clippy::result_large_err)]
    pub fn into_verdict(self) -> Result<Verdict, Step> {
        match self {
            Step::Done(v) => Ok(v),
            other => Err(other),
        }
    }
}

impl<T: Goal> Step<T> {
    /// Answers every [`Step::NeedSignature`] with the engine's backend, in place (the
    /// synchronous hosts: the core's own backend, Envoy's `verify_signature`, the CLI). Other
    /// steps are returned.
    pub fn answer_signatures(
        self,
        engine: &Engine,
        req: &Request<'_>,
        keys: &dyn KeyLookup,
        cache: &mut TokenCache,
        now: UnixTime,
    ) -> Step<T> {
        let mut step = self;
        // A request has at most one credential per rule it decides: the loop is bounded by the
        // rules of the request's methods.
        for _ in 0..=MAX_OVERRIDE_METHODS {
            match step {
                Step::NeedSignature(s) => {
                    let verified = s.check().verify_with(engine.backend());
                    step = s.resume_with(engine, verified, req, keys, cache, now);
                }
                other => return other,
            }
        }
        match step {
            Step::NeedSignature(s) => Step::Done(T::failed(engine, &s.at)),
            other => other,
        }
    }
}

/// The machine's own state, kept from other crates: where a paused decision stands.
mod machine {
    use super::*;

    /// What every step of one decision reads besides the engine: the host's request, remote key
    /// sets and token cache, and the time. Built by the public entry points from their arguments.
    pub struct Cx<'a> {
        pub(crate) req: &'a Request<'a>,
        pub(crate) keys: &'a dyn KeyLookup,
        pub(crate) cache: &'a mut TokenCache,
        pub(crate) now: UnixTime,
    }

    impl<'a> Cx<'a> {
        pub(crate) fn new(
            req: &'a Request<'a>,
            keys: &'a dyn KeyLookup,
            cache: &'a mut TokenCache,
            now: UnixTime,
        ) -> Self {
            Cx {
                req,
                keys,
                cache,
                now,
            }
        }
    }

    /// How each end type goes on from a pause.
    pub trait Resume: Sized {
        /// Continues from `at` with the outcome of the paused credential (`None`: decide it
        /// again, for keys that arrived or a wait that is over).
        fn resume(
            at: Progress<Self>,
            engine: &Engine,
            outcome: Option<Outcome<Self>>,
            cx: &mut Cx<'_>,
        ) -> Step<Self>;

        /// The outcome of a token whose signature the host answered.
        fn signed(
            at: &Progress<Self>,
            engine: &Engine,
            credential: Option<&OwnedCredential>,
            jwt: PendingJwt,
            verified: Result<(), Error>,
            cx: &mut Cx<'_>,
        ) -> Outcome<Self>;

        /// The end of a machine that cannot go on (a broken invariant): fail closed.
        fn failed(engine: &Engine, at: &Progress<Self>) -> Self;
    }

    /// Where a paused decision stands.
    #[derive(Debug)]
    pub struct Progress<T> {
        pub(crate) generation: u64,
        pub(crate) goal: GoalState,
        pub(crate) waited: bool,
        pub(crate) end: PhantomData<fn() -> T>,
    }

    /// How far one credential of a decision got.
    #[derive(Debug)]
    pub enum Outcome<T> {
        Done(T),
        /// The token's signature is the host's to verify (`None`: an ID token, not a request's
        /// credential).
        Signature(Option<Box<OwnedCredential>>, Box<PendingJwt>),
        /// A remote key set is missing (`unknown_kid`: it lacks the token's `kid` and the host
        /// would refetch it now).
        Keys {
            provider: String,
            unknown_kid: bool,
        },
    }

    /// A credential kept across a pause (for the token cache and the upstream edits).
    #[derive(Debug)]
    pub struct OwnedCredential {
        kind: CredentialKind,
        value: String,
        source: Source,
    }

    impl OwnedCredential {
        pub(crate) fn of(found: &Found<'_>) -> Self {
            OwnedCredential {
                kind: found.kind,
                value: found.value.to_owned(),
                source: found.source,
            }
        }

        pub(crate) fn found(&self) -> Found<'_> {
            Found {
                kind: self.kind,
                value: &self.value,
                source: self.source,
            }
        }
    }
}

pub(crate) use machine::{Cx, Outcome, OwnedCredential, Progress, Resume};

/// The rules a request must pass, in order: its method's, then each method it names (each rule
/// once). Fixed capacity: a request names at most [`MAX_OVERRIDE_METHODS`] methods.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuleList {
    ids: [usize; MAX_OVERRIDE_METHODS + 1],
    len: usize,
}

impl RuleList {
    pub(crate) fn of(first: usize) -> Self {
        let mut ids = [0; MAX_OVERRIDE_METHODS + 1];
        ids[0] = first;
        RuleList { ids, len: 1 }
    }

    /// Adds a rule not in the list yet (a full list ignores more: cannot happen, the named
    /// methods are bounded by the same constant).
    pub(crate) fn push(&mut self, id: usize) {
        if self.ids.iter().take(self.len).any(|i| *i == id) {
            return;
        }
        if let Some(slot) = self.ids.get_mut(self.len) {
            *slot = id;
            self.len += 1;
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<usize> {
        self.ids.get(..self.len)?.get(i).copied()
    }
}

/// A decision over the rules, while it runs.
#[derive(Debug)]
pub(crate) struct RulesAt<'p> {
    pub(crate) rules: RuleList,
    /// The rule being decided.
    pub(crate) next: usize,
    /// The normalized path.
    pub(crate) path: &'p str,
    /// The verdict of the first rule, once it allowed (returned when every rule allows).
    pub(crate) first: Option<Verdict>,
    /// The request already waited for keys once (it never waits twice).
    pub(crate) waited: bool,
}

/// What a machine is for.
#[derive(Debug)]
pub(crate) enum GoalState {
    /// The request's rules ([`crate::Engine::start`]); as [`RulesAt`], owned.
    Rules {
        rules: RuleList,
        next: usize,
        path: String,
        first: Option<Box<Verdict>>,
    },
    /// Who the request is, whatever the rules ([`crate::Engine::identify`], `/auth/me`).
    Identify,
    /// An ID token ([`crate::Engine::check_id_token`]).
    IdToken {
        id_token: String,
        nonce: Option<String>,
        access_token: Option<String>,
    },
}

impl<T> Progress<T> {
    pub(crate) fn new(generation: u64, goal: GoalState, waited: bool) -> Self {
        Progress {
            generation,
            goal,
            waited,
            end: PhantomData,
        }
    }

    /// The rule being decided (`None` for other goals), the normalized path, and whether the
    /// request already waited for keys.
    pub(crate) fn current(&self) -> (Option<usize>, &str, bool) {
        match &self.goal {
            GoalState::Rules {
                rules, next, path, ..
            } => (rules.get(*next), path, self.waited),
            _ => (None, "", self.waited),
        }
    }
}

impl Progress<Verdict> {
    pub(crate) fn rules(generation: u64, r: RulesAt<'_>) -> Self {
        let goal = GoalState::Rules {
            rules: r.rules,
            next: r.next,
            path: r.path.to_owned(),
            first: r.first.map(Box::new),
        };
        Progress::new(generation, goal, r.waited)
    }
}

impl Resume for Verdict {
    fn resume(
        at: Progress<Self>,
        engine: &Engine,
        outcome: Option<Outcome<Self>>,
        cx: &mut Cx<'_>,
    ) -> Step {
        match at.goal {
            GoalState::Rules {
                rules,
                next,
                path,
                first,
            } => {
                let r = RulesAt {
                    rules,
                    next,
                    path: &path,
                    first: first.map(|b| *b),
                    waited: at.waited,
                };
                engine.run_rules(r, outcome, cx)
            }
            GoalState::Identify => match outcome {
                Some(o) => engine.identified(o, at.waited),
                None => engine.identify_from(at.waited, cx),
            },
            GoalState::IdToken { .. } => Step::Done(Verdict::Reply(engine.internal())),
        }
    }

    fn signed(
        at: &Progress<Self>,
        engine: &Engine,
        credential: Option<&OwnedCredential>,
        jwt: PendingJwt,
        verified: Result<(), Error>,
        cx: &mut Cx<'_>,
    ) -> Outcome<Self> {
        let Some(credential) = credential else {
            return Outcome::Done(Verdict::Reply(engine.internal()));
        };
        let check = jwt.finish(engine.jwt(), verified, cx.now);
        let found = credential.found();
        let authn = engine.jwt_checked(check, found.value, cx.cache);
        engine.credential_outcome(at, found, authn, cx)
    }

    fn failed(engine: &Engine, _at: &Progress<Self>) -> Self {
        Verdict::Reply(engine.internal())
    }
}

impl Resume for IdTokenOutcome {
    fn resume(
        at: Progress<Self>,
        engine: &Engine,
        outcome: Option<Outcome<Self>>,
        cx: &mut Cx<'_>,
    ) -> Step<Self> {
        match outcome {
            Some(o) => o.pause(at),
            None => engine.id_token_from(at, cx.keys, cx.now),
        }
    }

    fn signed(
        at: &Progress<Self>,
        engine: &Engine,
        _credential: Option<&OwnedCredential>,
        jwt: PendingJwt,
        verified: Result<(), Error>,
        cx: &mut Cx<'_>,
    ) -> Outcome<Self> {
        Outcome::Done(engine.id_token_signed(at, jwt, verified, cx.now))
    }

    fn failed(_engine: &Engine, _at: &Progress<Self>) -> Self {
        Err(Error::new(
            crate::Reason::Internal,
            "the ID token's check did not finish",
        ))
    }
}

impl<T> Outcome<T> {
    /// The step that pauses the machine at `at` for this outcome (a done outcome is final).
    pub(crate) fn pause(self, at: Progress<T>) -> Step<T> {
        match self {
            Outcome::Done(v) => Step::Done(v),
            Outcome::Signature(credential, jwt) => Step::NeedSignature(NeedSignature {
                at: Box::new(at),
                credential,
                jwt,
            }),
            Outcome::Keys {
                provider,
                unknown_kid,
            } => Step::NeedKeys(NeedKeys {
                at: Box::new(at),
                provider,
                unknown_kid,
            }),
        }
    }
}

/// A remote key set the machine needs.
#[derive(Debug)]
pub struct NeedKeys<T = Verdict> {
    // Boxed, like the other pauses: a `Step` stays the size of a verdict on the path that
    // does not pause.
    at: Box<Progress<T>>,
    provider: String,
    unknown_kid: bool,
}

impl<T: Goal> NeedKeys<T> {
    /// The provider whose key set is needed.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// True when the set is there but lacks the token's `kid` (refetch it early, or wait for
    /// the fetch under way); false when it has never arrived (wait for it).
    pub fn unknown_kid(&self) -> bool {
        self.unknown_kid
    }

    /// Resumes once the keys arrived, or the host's wait is over: the request is then allowed
    /// or refused (a key set still missing is a 503), never made to wait twice.
    pub fn resume(
        self,
        engine: &Engine,
        req: &Request<'_>,
        keys: &dyn KeyLookup,
        cache: &mut TokenCache,
        now: UnixTime,
    ) -> Step<T> {
        let mut at = *self.at;
        if at.generation != engine.generation() {
            return Step::Done(T::failed(engine, &at));
        }
        at.waited = true;
        T::resume(at, engine, None, &mut Cx::new(req, keys, cache, now))
    }
}

/// A signature only the host verifies.
#[derive(Debug)]
pub struct NeedSignature<T = Verdict> {
    at: Box<Progress<T>>,
    credential: Option<Box<OwnedCredential>>,
    jwt: Box<PendingJwt>,
}

impl<T: Goal> NeedSignature<T> {
    /// The check: algorithm, key (already the one the token's `kid` selected), signing input
    /// and signature (already past its format check).
    pub fn check(&self) -> &SignatureCheck {
        self.jwt.check()
    }

    /// Resumes with the host's result for [`NeedSignature::check`] (`false` refuses the token).
    pub fn resume(
        self,
        engine: &Engine,
        valid: bool,
        req: &Request<'_>,
        keys: &dyn KeyLookup,
        cache: &mut TokenCache,
        now: UnixTime,
    ) -> Step<T> {
        let verified = if valid {
            Ok(())
        } else {
            Err(SignatureCheck::refused())
        };
        self.resume_with(engine, verified, req, keys, cache, now)
    }

    /// As [`NeedSignature::resume`], with the backend's own error.
    pub fn resume_with(
        self,
        engine: &Engine,
        verified: Result<(), Error>,
        req: &Request<'_>,
        keys: &dyn KeyLookup,
        cache: &mut TokenCache,
        now: UnixTime,
    ) -> Step<T> {
        if self.at.generation != engine.generation() {
            return Step::Done(T::failed(engine, &self.at));
        }
        let cx = &mut Cx::new(req, keys, cache, now);
        let credential = self.credential.as_deref();
        let outcome = T::signed(&self.at, engine, credential, *self.jwt, verified, cx);
        T::resume(*self.at, engine, Some(outcome), cx)
    }
}

/// The magic-link form body is needed.
#[derive(Debug)]
pub struct NeedForm {
    generation: u64,
}

impl NeedForm {
    pub(crate) fn new(generation: u64) -> Self {
        NeedForm { generation }
    }

    /// Verifies the token in the form body (`token=...`, at most
    /// [`crate::engine::MAX_FORM_BODY`] bytes) and prepares the login; the host then enforces
    /// single use on its `jti` (until `expires_at`) and replies.
    pub fn resume(
        self,
        engine: &Engine,
        form_body: &[u8],
        now: UnixTime,
    ) -> Result<MagicLinkLogin, LocalReply> {
        if self.generation != engine.generation() {
            return Err(engine.internal());
        }
        engine.magic_link_consume(form_body, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;
    use crate::backend::{test_keys, NativeBackend};
    use crate::verifier::NoRemoteKeys;

    const ISS: &str = "https://idp.test";
    const HMAC_ISS: &str = "https://hmac.test";
    const NOW: UnixTime = 1_700_000_000;

    fn engine(cache_entries: usize) -> Engine {
        let jwks: serde_json::Value = serde_json::from_str(&test_keys::jwks_all()).unwrap();
        let cfg = serde_json::json!({
            "jwt": {"cache": {"max_entries": cache_entries}, "providers": [{
                "name": "t", "issuer": ISS,
                "algorithms": ["RS256", "PS256", "ES256", "EdDSA"],
                "jwks": jwks, "claims": {"roles": ["roles"]},
            }, {
                "name": "h", "issuer": HMAC_ISS, "algorithms": ["HS256"],
                "shared_secrets": [{"kid": "hmac", "secret": b64::encode(test_keys::HMAC_SECRET)}],
            }]},
            "rules": [
                {"name": "pub", "match": {"path": {"prefix": "/public"}}, "require": {"public": true}},
                {"name": "delete", "match": {"path": {"prefix": "/tickets"}, "methods": ["DELETE"]},
                 "credentials": ["jwt"], "require": {"roles_any": ["admin"]}},
                {"name": "api", "match": {"path": {"prefix": "/"}}, "credentials": ["jwt"]},
            ],
        });
        Engine::from_json(cfg.to_string().as_bytes()).unwrap()
    }

    fn token(alg: &str, iss: &str) -> String {
        let payload =
            format!(r#"{{"iss":"{iss}","sub":"alice","exp":4000000000,"roles":["agent"]}}"#);
        let kid = if alg == "HS256" {
            "hmac"
        } else {
            test_keys::kid_for(alg)
        };
        test_keys::token(alg, Some(kid), &payload)
    }

    fn bearer(t: &str) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Bearer {t}"))]
    }

    fn with_req<R>(
        method: &str,
        path: &str,
        headers: &[(&'static str, String)],
        f: impl FnOnce(&Request<'_>) -> R,
    ) -> R {
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        f(&Request {
            method,
            path,
            headers: &pairs,
        })
    }

    /// Runs `f` with a GET of `path` carrying a bearer token of `alg` from ISS, and an empty
    /// token cache of `e`.
    fn with_token(
        e: &Engine,
        alg: &str,
        path: &str,
        f: impl FnOnce(&Request<'_>, &mut TokenCache),
    ) {
        let h = bearer(&token(alg, ISS));
        with_req("GET", path, &h, |req| f(req, &mut e.new_cache()));
    }

    /// The machine's first step for `req` (no remote keys, at NOW).
    fn start(e: &Engine, req: &Request<'_>, cache: &mut TokenCache) -> Step {
        e.start(req, &NoRemoteKeys, cache, NOW)
    }

    /// `/auth/me`'s first step for `req` (no remote keys, at NOW).
    fn identify(e: &Engine, req: &Request<'_>, cache: &mut TokenCache) -> Step {
        e.identify(req, &NoRemoteKeys, cache, NOW)
    }

    /// Where a paused signature check goes when the host answers `valid`.
    fn answered(
        e: &Engine,
        s: NeedSignature,
        valid: bool,
        req: &Request<'_>,
        cache: &mut TokenCache,
    ) -> Step {
        s.resume(e, valid, req, &NoRemoteKeys, cache, NOW)
    }

    fn paused(step: Step) -> NeedSignature {
        match step {
            Step::NeedSignature(s) => s,
            other => panic!("expected NeedSignature, got {other:?}"),
        }
    }

    fn reply(step: Step) -> LocalReply {
        match step {
            Step::Done(Verdict::Reply(d)) => d,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn subject(step: Step) -> String {
        match step {
            Step::Done(Verdict::Allow {
                identity: Some(id), ..
            }) => id.subject.clone(),
            other => panic!("expected an allow with an identity, got {other:?}"),
        }
    }

    #[test]
    fn a_signature_pause_resumes_to_the_verdict_with_the_hosts_answer() {
        let e = engine(100);
        with_token(&e, "ES256", "/api/x", |req, cache| {
            let s = paused(start(&e, req, cache));
            assert_eq!(s.check().alg(), crate::Alg::ES256);
            assert!(s.check().key_jwk().unwrap().contains("P-256"));
            // The host says no: refused, whatever the signature really is (fail closed).
            let d = reply(answered(&e, s, false, req, cache));
            assert_eq!((d.status, d.reason.code()), (401, "bad_signature"));
            // Asked again (nothing was cached), the host says yes: allowed, then cached.
            let s = paused(start(&e, req, cache));
            let valid = s.check().verify_with(&NativeBackend).is_ok();
            assert_eq!(subject(answered(&e, s, valid, req, cache)), "alice");
            match start(&e, req, cache) {
                Step::Done(Verdict::Allow { cached: true, .. }) => {}
                other => panic!("expected a cached allow, got {other:?}"),
            }
        });
        assert_eq!(e.decisions_started(), 3);
    }

    #[test]
    fn hmac_never_pauses_and_its_secret_stays_in_the_core() {
        let e = engine(100);
        let h = bearer(&token("HS256", HMAC_ISS));
        with_req("GET", "/api/x", &h, |req| {
            let step = e.start(req, &NoRemoteKeys, &mut e.new_cache(), NOW);
            assert_eq!(subject(step), "alice");
        });
    }

    #[test]
    fn a_paused_step_resumed_on_another_engine_fails_closed() {
        let (old, new) = (engine(100), engine(100));
        assert_ne!(old.generation(), new.generation());
        let h = bearer(&token("RS256", ISS));
        with_req("GET", "/api/x", &h, |req| {
            let mut cache = new.new_cache();
            let s = paused(start(&old, req, &mut cache));
            let d = reply(answered(&new, s, true, req, &mut cache));
            assert_eq!((d.status, d.reason.code()), (500, "internal"));
            assert!(cache.is_empty(), "nothing is cached from a stale step");
        });
    }

    #[test]
    fn the_machine_goes_on_with_the_next_rule_and_runs_once() {
        // Without the cache, a request naming DELETE pauses once per rule it must pass: its
        // real method's rule, then DELETE's; each resume goes on from where it stood.
        let e = engine(0);
        let mut h = bearer(&token("RS256", ISS));
        h.push(("x-http-method-override", "DELETE".to_string()));
        with_req("POST", "/tickets/1", &h, |req| {
            let mut cache = e.new_cache();
            let first = paused(start(&e, req, &mut cache));
            let second = paused(answered(&e, first, true, req, &mut cache));
            let d = reply(answered(&e, second, true, req, &mut cache));
            assert_eq!((d.status, d.reason.code()), (403, "missing_role"));
        });
        assert_eq!(e.decisions_started(), 1);
        // The synchronous driver answers both pauses in place.
        with_req("POST", "/tickets/1", &h, |req| {
            let d = reply(e.decide(req, &NoRemoteKeys, &mut e.new_cache(), NOW));
            assert_eq!(d.reason.code(), "missing_role");
        });
    }

    #[test]
    fn a_public_route_ignores_a_refused_signature() {
        let e = engine(100);
        with_token(&e, "EdDSA", "/public/x", |req, cache| {
            let s = paused(start(&e, req, cache));
            match answered(&e, s, false, req, cache) {
                Step::Done(Verdict::Allow { identity: None, .. }) => {}
                other => panic!("expected an anonymous allow, got {other:?}"),
            }
        });
    }

    #[test]
    fn identify_runs_the_same_machine() {
        let e = engine(100);
        with_token(&e, "PS256", "/auth/me", |req, cache| {
            let s = paused(identify(&e, req, cache));
            assert_eq!(subject(answered(&e, s, true, req, cache)), "alice");
            let d = reply(e.identify(
                &Request {
                    method: "GET",
                    path: "/auth/me",
                    headers: &[],
                },
                &NoRemoteKeys,
                cache,
                NOW,
            ));
            assert_eq!(d.reason.code(), "credential_missing");
        });
    }
}
