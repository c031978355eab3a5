//! The host glue's one entry point: a compiled config that turns a request into a [`Verdict`].
//!
//! Hosts (the proxy-wasm filter, the edge worker, the CLI's `token explain`) build an [`Engine`]
//! once per config, keep a [`TokenCache`] and the remote key sets they fetched, and call
//! [`Engine::decide`] per request with `now`. They carry out the verdict and nothing more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::apikey::ApiKeyStore;
use crate::backend::{NativeBackend, SignatureBackend};
use crate::cache::TokenCache;
use crate::config::{Config, IdentityHeaders};
use crate::error::{ConfigError, ConfigErrors, Error, Reason};
use crate::extractor::{Extractor, Found, Request};
use crate::identity::{CredentialKind, Identity};
use crate::jwks::CompiledJwksSource;
use crate::login::Login;
use crate::magic::MagicLinks;
use crate::matcher::normalize_path;
use crate::method_override::{self, MethodOverride};
use crate::redirect::RedirectPolicy;
use crate::rules::{Rule, Rules};
use crate::session::Sessions;
use crate::step::{
    Cx, GoalState, IdTokenOutcome, NeedForm, Outcome, OwnedCredential, Progress, RuleList, RulesAt,
    Step,
};
use crate::upstream::{Consumed, Forwarding, HeaderEdits};
use crate::verifier::{JwtCheck, JwtStep, JwtVerifier, KeyLookup, PendingJwt, Provider};
use crate::UnixTime;

/// Largest magic-link form body a host should read.
pub const MAX_FORM_BODY: usize = 16 * 1024;

// Kept here for hosts that name it `edgegate::engine::UpstreamHeaders` (the edge worker).
pub use crate::identity::UpstreamHeaders;

/// What to do with a request.
// Built once per request and matched at once: boxing the identity would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Verdict {
    /// Continue upstream with these headers added (client headers that
    /// [`Engine::is_identity_header`] names already removed by the host) and the edits of
    /// [`Engine::upstream_edits`] for `consumed` carried out. `identity` is `None` on public
    /// routes without a credential.
    Allow {
        identity: Option<Arc<Identity>>,
        headers: UpstreamHeaders,
        /// True when the identity came from the token cache (for metrics).
        cached: bool,
        /// Where the credential edgegate checked came from, when it stays at the edge; `None`
        /// without a credential or when its provider (or `api_keys`) has `forward: true`.
        consumed: Option<Consumed>,
    },
    /// Answer locally: a refusal (401/403/400/405/431/503...), or a page or redirect the gateway
    /// serves itself (the magic-link confirm page is a 200).
    Reply(LocalReply),
}

/// A reply the host sends itself instead of forwarding: status, headers and a small body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub reason: Reason,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A successful magic-link POST: the host remembers `jti` until `expires_at` (single use), then
/// replies 302 to `location` with `set_cookie`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagicLinkLogin {
    pub jti: String,
    pub expires_at: UnixTime,
    pub set_cookie: String,
    pub location: String,
    pub identity: Identity,
}

/// A remote key set a host must fetch and keep fresh.
#[derive(Debug, Clone)]
pub struct RemoteKeys {
    pub provider: String,
    pub source: CompiledJwksSource,
}

/// A compiled config.
pub struct Engine {
    realm: String,
    jwt: JwtVerifier,
    api_keys: Option<ApiKeyStore>,
    magic: Option<MagicLinks>,
    sessions: Option<Sessions>,
    login: Option<Login>,
    redirects: RedirectPolicy,
    rules: Rules,
    headers: IdentityHeaders,
    forwarding: Forwarding,
    dev: Option<Identity>,
    method_override: MethodOverride,
    extractor: Extractor,
    cache_capacity: usize,
    backend: Box<dyn SignatureBackend + Send + Sync>,
    warnings: Vec<String>,
    generation: u64,
    started: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Parses, validates and compiles a JSON config; every problem is reported with its path.
    pub fn from_json(bytes: &[u8]) -> Result<Engine, ConfigErrors> {
        Engine::from_config(&Config::from_json(bytes)?)
    }

    /// Validates and compiles a parsed config.
    pub fn from_config(cfg: &Config) -> Result<Engine, ConfigErrors> {
        let mut errors = Vec::new();
        cfg.validate_global(&mut errors);
        let mut providers = Vec::new();
        for (i, p) in cfg.jwt.providers.iter().enumerate() {
            let at = format!("jwt.providers[{i}]");
            providers.extend(section(&mut errors, &at, Some(p), Provider::compile));
        }
        let api_keys = section(&mut errors, "api_keys", cfg.api_keys.as_ref(), |c| {
            c.compile()
        });
        let magic = section(&mut errors, "magic_links", cfg.magic_links.as_ref(), |c| {
            c.compile()
        });
        let sessions = section(&mut errors, "session", cfg.session.as_ref(), |c| {
            c.compile()
        });
        let login = section(&mut errors, "login", cfg.login.as_ref(), |c| {
            c.compile(cfg.session.as_ref(), &cfg.jwt.providers)
        });
        let redirects = section(&mut errors, "redirects", Some(&cfg.redirects), |c| {
            c.compile()
        });
        // Rule errors already carry full paths (`rules[2].match.path`, `default_rule.require`).
        let rules = match Rules::compile(&cfg.rules, &cfg.default_rule) {
            Ok(r) => Some(r),
            Err(es) => {
                errors.extend(es);
                None
            }
        };
        if let Err(es) = cfg.jwt.cache.compile() {
            errors.extend(es.into_iter().map(|e| e.at("jwt.cache")));
        }
        let (Some(redirects), Some(rules)) = (redirects, rules) else {
            return Err(ConfigErrors(errors));
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut warnings = Vec::new();
        for (i, p) in providers.iter().enumerate() {
            for w in p.warnings() {
                warnings.push(format!("jwt.providers[{i}].{w}"));
            }
        }
        let dev = cfg.dev_mode.enabled.then(|| {
            warnings.push(format!(
                "DEV MODE IS ON: every request is authenticated as {:?} without any credential; never use this in production",
                cfg.dev_mode.identity.subject
            ));
            let mut id = Identity::new(cfg.dev_mode.identity.subject.clone(), CredentialKind::Dev, "dev");
            id.email = cfg.dev_mode.identity.email.clone();
            id.roles = cfg.dev_mode.identity.roles.clone();
            id.permissions = cfg.dev_mode.identity.permissions.clone();
            id
        });
        for p in cfg
            .jwt
            .providers
            .iter()
            .filter(|p| p.allowed_tenants == ["*"])
        {
            warnings.push(format!("jwt provider {:?} accepts users of EVERY tenant of its multi-tenant issuer (allowed_tenants [\"*\"]): anyone with an account there can sign in; restrict with rules on roles or tid, or list the tenant ids", p.name));
        }
        if cfg.jwt.from.query_param.is_some() {
            warnings.push("jwt.from.query_param is on: tokens in URLs end up in access logs and Referer headers".into());
        }
        if rules.default_rule().is_public()
            && rules.rules().iter().all(Rule::is_public)
            && dev.is_none()
        {
            warnings.push("no rule requires a credential (default_rule and every rule are public): every request passes, with an identity only when it carries one; protect paths with a rule, or make default_rule require a credential".into());
        }
        let extractor = Extractor {
            jwt_header: cfg.jwt.from.header.clone(),
            jwt_cookie: cfg.jwt.from.cookie.clone(),
            jwt_query: cfg.jwt.from.query_param.clone(),
            api_key_header: api_keys
                .as_ref()
                .and_then(|k| k.header().map(str::to_string)),
            session_cookie: sessions.as_ref().map(|s| s.cookie_name().to_string()),
            session_bearer: login
                .as_ref()
                .and_then(|l| l.device())
                .map(|_| crate::login::DEVICE_BEARER_PREFIX.to_string()),
        };
        let forwarding = Forwarding::new(
            &cfg.identity_headers.all(),
            cfg.jwt.from.header.as_deref(),
            cfg.jwt.from.cookie.as_deref(),
            extractor.api_key_header.as_deref(),
            sessions
                .as_ref()
                .map_or(crate::session::DEFAULT_COOKIE_NAME, |s| s.cookie_name()),
        )
        .forwarding_tokens_of(
            cfg.jwt
                .providers
                .iter()
                .filter(|p| p.forward)
                .map(|p| p.name.clone())
                .collect(),
            cfg.api_keys.as_ref().is_some_and(|k| k.forward),
        )
        .with_session_bearer(extractor.session_bearer.clone());
        Ok(Engine {
            realm: cfg.realm.clone(),
            jwt: JwtVerifier::new(providers, cfg.jwt.max_token_bytes),
            api_keys,
            magic,
            sessions,
            login,
            redirects,
            rules,
            headers: cfg.identity_headers.clone(),
            forwarding,
            dev,
            method_override: cfg.method_override,
            extractor,
            cache_capacity: cfg.jwt.cache.max_entries,
            backend: Box::new(NativeBackend),
            warnings,
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            started: AtomicU64::new(0),
        })
    }

    /// Replaces the signature backend (the edge worker hands RSA/EC to WebCrypto).
    pub fn with_backend(mut self, backend: Box<dyn SignatureBackend + Send + Sync>) -> Self {
        self.backend = backend;
        self
    }

    /// Notices the host must log loudly at load (dev mode, risky options).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// In dev mode, the header hosts add to every response so nobody mistakes it for production.
    pub fn dev_mode_response_header(&self) -> Option<(&str, &str)> {
        self.dev
            .as_ref()
            .map(|_| (self.headers.dev_mode.as_str(), "true"))
    }

    /// True for a client header the host removes from every request (headers and trailers)
    /// before anything else: one of the identity header names, compared lower-cased with `_`
    /// read as `-` (see [`crate::upstream`]).
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.forwarding.is_identity_header(name)
    }

    /// What the host changes in an allowed request (`headers` as received, identity headers
    /// already removed) before it goes upstream: the `consumed` credential and edgegate's own
    /// cookies are removed.
    pub fn upstream_edits(
        &self,
        headers: &[(&str, &str)],
        consumed: Option<&Consumed>,
    ) -> HeaderEdits {
        self.forwarding.edits(headers, consumed)
    }

    /// A token cache sized as the config says (`jwt.cache.max_entries`).
    pub fn new_cache(&self) -> TokenCache {
        TokenCache::new(self.cache_capacity)
    }

    /// Remote key sets the host must fetch.
    pub fn remote_key_sources(&self) -> Vec<RemoteKeys> {
        self.jwt
            .providers()
            .iter()
            .filter_map(|p| {
                p.remote().map(|s| RemoteKeys {
                    provider: p.name.clone(),
                    source: s.clone(),
                })
            })
            .collect()
    }

    pub fn jwt(&self) -> &JwtVerifier {
        &self.jwt
    }

    pub fn sessions(&self) -> Option<&Sessions> {
        self.sessions.as_ref()
    }

    /// The OIDC login section, if configured.
    pub fn login(&self) -> Option<&Login> {
        self.login.as_ref()
    }

    /// The signature backend (ID tokens at login are checked with it too).
    pub fn backend(&self) -> &dyn SignatureBackend {
        self.backend.as_ref()
    }

    /// Who the request is, from any credential it carries, regardless of the rules (for
    /// `/auth/me`). The machine ends in an allow with the identity, or in the JSON refusal of a
    /// missing or refused credential.
    pub fn identify(
        &self,
        req: &Request<'_>,
        keys: &dyn KeyLookup,
        cache: &mut TokenCache,
        now: UnixTime,
    ) -> Step {
        self.identify_from(false, &mut Cx::new(req, keys, cache, now))
    }

    pub(crate) fn identify_from(&self, waited: bool, cx: &mut Cx<'_>) -> Step {
        if let Some(name) = self.extractor.repeated(cx.req, &crate::extractor::ANY_KIND) {
            return Step::Done(Verdict::Reply(self.deny_json(&repeated(&name))));
        }
        let is_api_key = |s: &str| self.api_keys.as_ref().is_some_and(|k| k.looks_like_key(s));
        let Some(found) = self.extractor.find_any(cx.req, &is_api_key) else {
            let e = Error::new(Reason::CredentialMissing, "no credential");
            return Step::Done(Verdict::Reply(self.deny_json(&e)));
        };
        let authn = self.authenticate(found, cx.keys, cx.cache, cx.now);
        let outcome = self.conclude(None, "", waited, found, authn, cx);
        self.identified(outcome, waited)
    }

    /// The step of an identification with this outcome.
    pub(crate) fn identified(&self, outcome: Outcome<Verdict>, waited: bool) -> Step {
        outcome.pause(Progress::new(self.generation, GoalState::Identify, waited))
    }

    /// Checks the ID token of an OIDC login (`nonce`: the attempt's) or renewal (`None`, OIDC
    /// Core 12.2) with the login provider's keys: the same machine as a request's, ending in
    /// the identity the session will carry or the refusal. `access_token`: the one from the
    /// same token response (for `at_hash`).
    pub fn check_id_token(
        &self,
        id_token: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        keys: &dyn KeyLookup,
        now: UnixTime,
    ) -> Step<IdTokenOutcome> {
        let goal = GoalState::IdToken {
            id_token: id_token.to_owned(),
            nonce: nonce.map(str::to_owned),
            access_token: access_token.map(str::to_owned),
        };
        self.id_token_from(Progress::new(self.generation, goal, false), keys, now)
    }

    /// The ID token's check from its start (or again, after a wait for keys).
    pub(crate) fn id_token_from(
        &self,
        at: Progress<IdTokenOutcome>,
        keys: &dyn KeyLookup,
        now: UnixTime,
    ) -> Step<IdTokenOutcome> {
        let (Some(login), GoalState::IdToken { id_token, .. }) = (&self.login, &at.goal) else {
            return Step::Done(Err(Error::new(Reason::Internal, "login is not configured")));
        };
        let Some(provider) = login.provider(&self.jwt) else {
            return Step::Done(Err(Error::new(Reason::Internal, "login is not configured")));
        };
        let outcome = match login.begin_id_token(&self.jwt, provider, keys, id_token) {
            Ok(JwtStep::NeedSignature(jwt)) => Outcome::Signature(None, jwt),
            Ok(JwtStep::Done(JwtCheck::NeedKeys { .. })) if at.waited => {
                Outcome::Done(Err(Error::new(
                    Reason::KeysUnavailable,
                    "the provider's keys could not be fetched",
                )))
            }
            Ok(JwtStep::Done(JwtCheck::NeedKeys { provider })) => Outcome::Keys {
                provider,
                unknown_kid: false,
            },
            Ok(JwtStep::Done(JwtCheck::Invalid {
                refetch: Some(p), ..
            })) if !at.waited && keys.may_refetch(&p, now) => Outcome::Keys {
                provider: p,
                unknown_kid: true,
            },
            Ok(JwtStep::Done(JwtCheck::Invalid { error, .. })) | Err(error) => {
                Outcome::Done(Err(error))
            }
            Ok(JwtStep::Done(JwtCheck::Valid(_))) => {
                Outcome::Done(Err(Error::new(Reason::Internal, "an unchecked ID token")))
            }
        };
        // HMAC is checked in place: the secret stays in the core.
        let outcome = match outcome {
            Outcome::Signature(_, jwt) if !crate::backend::host_verifies(jwt.check().alg()) => {
                let verified = jwt.check().verify_with(&NativeBackend);
                Outcome::Done(self.id_token_signed(&at, *jwt, verified, now))
            }
            other => other,
        };
        outcome.pause(at)
    }

    /// The rest of an ID token's check once its signature is answered.
    pub(crate) fn id_token_signed(
        &self,
        at: &Progress<IdTokenOutcome>,
        jwt: PendingJwt,
        verified: Result<(), Error>,
        now: UnixTime,
    ) -> IdTokenOutcome {
        let (
            Some(login),
            GoalState::IdToken {
                nonce,
                access_token,
                ..
            },
        ) = (&self.login, &at.goal)
        else {
            return Err(Error::new(Reason::Internal, "login is not configured"));
        };
        verified?;
        login.finish_id_token(
            &self.jwt,
            jwt,
            nonce.as_deref(),
            access_token.as_deref(),
            now,
        )
    }

    pub fn magic_links(&self) -> Option<&MagicLinks> {
        self.magic.as_ref()
    }

    pub fn redirects(&self) -> &RedirectPolicy {
        &self.redirects
    }

    /// The magic-link endpoint path, if magic links are configured.
    pub fn magic_link_path(&self) -> Option<&str> {
        self.magic.as_ref().map(|m| m.path())
    }

    /// The generation of this compiled config: a paused [`Step`] resumes only on the engine
    /// that made it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The first step of one request's decision ([`crate::step`]). Hosts loop: a
    /// [`Step::NeedSignature`] is verified and resumed (or answered in place by
    /// [`Step::answer_signatures`]), a [`Step::NeedKeys`] resumed once the keys arrived or the
    /// wait is over, a [`Step::NeedForm`] with the form body, until [`Step::Done`].
    pub fn start(
        &self,
        req: &Request<'_>,
        keys: &dyn KeyLookup,
        cache: &mut TokenCache,
        now: UnixTime,
    ) -> Step {
        self.started.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = crate::limits::check_request(req) {
            return Step::Done(Verdict::Reply(self.deny_json(&e))); // CONNECT 405, oversized 431
        }
        let path = match normalize_path(req.path) {
            Ok(p) => p,
            Err(e) => return Step::Done(Verdict::Reply(self.deny_json(&e))),
        };
        if let Some(dev) = &self.dev {
            return Step::Done(self.dev_verdict(req, dev));
        }
        if let Some(m) = &self.magic {
            if path == m.path() {
                return self.magic_link_page(req);
            }
        }
        let named = match method_override::override_methods(req) {
            Ok(named) => named,
            Err(e) => return Step::Done(Verdict::Reply(self.deny_json(&e))),
        };
        if !named.is_empty() && self.method_override == MethodOverride::Reject {
            return Step::Done(Verdict::Reply(self.deny_json(&method_override::rejected())));
        }
        // The app may run any method the request names: each one's rule must allow it too (the
        // strictest outcome wins); a rule is decided once.
        let mut rules = RuleList::of(self.rules.find_index(req.method, &path));
        for method in &named {
            rules.push(self.rules.find_index(method, &path));
        }
        let at = RulesAt {
            rules,
            next: 0,
            path: &path,
            first: None,
            waited: false,
        };
        self.run_rules(at, None, &mut Cx::new(req, keys, cache, now))
    }

    /// The synchronous driver: [`Engine::start`] with every signature answered by the engine's
    /// backend ([`Engine::with_backend`]). What is left is `Done`, `NeedKeys` or `NeedForm`.
    pub fn decide(
        &self,
        req: &Request<'_>,
        keys: &dyn KeyLookup,
        cache: &mut TokenCache,
        now: UnixTime,
    ) -> Step {
        self.start(req, keys, cache, now)
            .answer_signatures(self, req, keys, cache, now)
    }

    /// How many decisions this engine started: each request starts one, and resuming a
    /// paused step does not start another (hosts' tests count runs with it).
    pub fn decisions_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Decides the rules from `at.next` on. `outcome`: the outcome of the current rule's
    /// credential, when a paused step resumes with it; otherwise the rule is decided here.
    pub(crate) fn run_rules(
        &self,
        mut at: RulesAt<'_>,
        mut outcome: Option<Outcome<Verdict>>,
        cx: &mut Cx<'_>,
    ) -> Step {
        while let Some(index) = at.rules.get(at.next) {
            let rule = self.rules.get(index);
            let decided = match outcome.take() {
                Some(o) => o,
                None => self.decide_rule(rule, at.path, at.waited, cx),
            };
            match decided {
                Outcome::Done(v @ Verdict::Allow { .. }) => {
                    at.first.get_or_insert(v);
                }
                Outcome::Done(v) => return Step::Done(v),
                paused => return paused.pause(Progress::rules(self.generation, at)),
            }
            at.next += 1;
        }
        Step::Done(at.first.unwrap_or_else(|| Verdict::Reply(self.internal())))
    }

    /// The decision of one rule: find the credential the rule accepts, authenticate it,
    /// authorize the identity.
    fn decide_rule(
        &self,
        rule: &Rule,
        path: &str,
        waited: bool,
        cx: &mut Cx<'_>,
    ) -> Outcome<Verdict> {
        let req = cx.req;
        if let Some(name) = self.extractor.repeated(req, rule.credentials()) {
            return Outcome::Done(Verdict::Reply(self.deny_for(req, &repeated(&name), None)));
        }
        let is_api_key = |s: &str| self.api_keys.as_ref().is_some_and(|k| k.looks_like_key(s));
        let Some(found) = self.extractor.find(req, rule.credentials(), &is_api_key) else {
            if rule.is_public() {
                return Outcome::Done(public_allow());
            }
            let error = match self.extractor.find_any(req, &is_api_key) {
                Some(other) => Error::new(
                    Reason::CredentialNotAccepted,
                    format!(
                        "this route does not accept {} credentials",
                        other.kind.code()
                    ),
                ),
                None => Error::new(Reason::CredentialMissing, "this route needs a credential"),
            };
            return Outcome::Done(Verdict::Reply(self.deny_for(req, &error, rule.login_url())));
        };
        let authn = self.authenticate(found, cx.keys, cx.cache, cx.now);
        self.conclude(Some(rule), path, waited, found, authn, cx)
    }

    /// [`Engine::conclude`] for the credential of a paused decision.
    pub(crate) fn credential_outcome(
        &self,
        at: &Progress<Verdict>,
        found: Found<'_>,
        authn: Authn,
        cx: &Cx<'_>,
    ) -> Outcome<Verdict> {
        let (rule, path, waited) = at.current();
        let rule = rule.map(|i| self.rules.get(i));
        self.conclude(rule, path, waited, found, authn, cx)
    }

    /// What a credential's authentication means under `rule` (`None`: identification only):
    /// an allow, a refusal, or a pause for the host.
    fn conclude(
        &self,
        rule: Option<&Rule>,
        path: &str,
        waited: bool,
        found: Found<'_>,
        authn: Authn,
        cx: &Cx<'_>,
    ) -> Outcome<Verdict> {
        let (req, now) = (cx.req, cx.now);
        let (identity, headers, cached) = match authn {
            Authn::Ok {
                identity,
                headers,
                cached,
            } => (identity, headers, cached),
            Authn::NeedSignature(jwt) => {
                return Outcome::Signature(Some(Box::new(OwnedCredential::of(&found))), jwt);
            }
            Authn::NeedKeys(_) if waited => {
                return Outcome::Done(Verdict::Reply(self.keys_unavailable()));
            }
            Authn::NeedKeys(provider) => {
                return Outcome::Keys {
                    provider,
                    unknown_kid: false,
                };
            }
            Authn::Err(e, refetch) => {
                if rule.is_some_and(Rule::is_public) {
                    // A public route ignores a bad credential: no identity goes upstream.
                    return Outcome::Done(public_allow());
                }
                // An unknown kid of a remote key set the host would refetch now: wait for the
                // refetch, then resume (a rotated key works on its first request; a request
                // waits once).
                if let Some(p) = refetch.filter(|p| !waited && cx.keys.may_refetch(p, now)) {
                    return Outcome::Keys {
                        provider: p,
                        unknown_kid: true,
                    };
                }
                return Outcome::Done(Verdict::Reply(match rule {
                    Some(rule) => self.deny_for(req, &e, rule.login_url()),
                    None => self.deny_json(&e),
                }));
            }
        };
        if let Some(rule) = rule {
            if let Err(e) = rule.authorize(&identity, path) {
                return Outcome::Done(Verdict::Reply(self.deny_json(&e)));
            }
        }
        Outcome::Done(Verdict::Allow {
            consumed: self.forwarding.consumed(&found, &identity),
            headers,
            identity: Some(identity),
            cached,
        })
    }

    /// Dev mode: the synthetic identity, for loopback requests only.
    fn dev_verdict(&self, req: &Request<'_>, dev: &Identity) -> Verdict {
        if !req
            .authority()
            .is_some_and(crate::loopback::is_loopback_authority)
        {
            let e = Error::new(
                Reason::DevModeNotLocal,
                "dev mode answers requests to localhost, 127.0.0.1 or [::1] only",
            );
            return Verdict::Reply(self.deny_json(&e));
        }
        let mut headers = self.identity_headers(dev);
        headers.push((self.headers.dev_mode.clone(), "true".into()));
        Verdict::Allow {
            identity: Some(Arc::new(dev.clone())),
            headers: headers.into(),
            cached: false,
            consumed: None,
        }
    }

    pub(crate) fn authenticate(
        &self,
        found: Found<'_>,
        keys: &dyn KeyLookup,
        cache: &mut TokenCache,
        now: UnixTime,
    ) -> Authn {
        match found.kind {
            CredentialKind::Jwt => {
                if let Some(hit) = cached(cache, found, now) {
                    return hit;
                }
                match self.jwt.begin(found.value, keys, now) {
                    JwtStep::Done(check) => self.jwt_checked(check, found.value, cache),
                    JwtStep::NeedSignature(p) => Authn::NeedSignature(p),
                }
            }
            CredentialKind::ApiKey => match &self.api_keys {
                Some(k) => verify_api_key(k, found.value, keys, now)
                    .map_or_else(|e| Authn::Err(e, None), |id| self.authenticated(id)),
                None => Authn::Err(
                    Error::new(Reason::CredentialNotAccepted, "API keys are not configured"),
                    None,
                ),
            },
            CredentialKind::Session | CredentialKind::MagicLink => {
                self.open_session(found, cache, now)
            }
            CredentialKind::Dev => Authn::Err(
                Error::new(Reason::CredentialNotAccepted, "dev mode is off"),
                None,
            ),
        }
    }

    /// The outcome of a JWT's check; a valid token is cached until it expires.
    pub(crate) fn jwt_checked(
        &self,
        check: JwtCheck,
        token: &str,
        cache: &mut TokenCache,
    ) -> Authn {
        match check {
            JwtCheck::Valid(id) => {
                let until = id.expires_at;
                self.verified(id, cache, CredentialKind::Jwt, token, until)
            }
            JwtCheck::NeedKeys { provider } => Authn::NeedKeys(provider),
            JwtCheck::Invalid { error, refetch } => Authn::Err(error, refetch),
        }
    }

    /// A session cookie. A rule that accepts `magic_link` accepts sessions a magic link opened;
    /// a rule that accepts `session` accepts every session. An opened session is cached under
    /// the kind it was found as until it expires (a browser sends the same cookie on every
    /// request); a refused one is not.
    fn open_session(&self, found: Found<'_>, cache: &mut TokenCache, now: UnixTime) -> Authn {
        if let Some(hit) = cached(cache, found, now) {
            return hit;
        }
        let Some(s) = &self.sessions else {
            return Authn::Err(
                Error::new(Reason::CredentialNotAccepted, "sessions are not configured"),
                None,
            );
        };
        match s.open_session(found.value, now) {
            Ok(session)
                if found.kind == CredentialKind::MagicLink
                    && session.origin != CredentialKind::MagicLink =>
            {
                Authn::Err(
                    Error::new(
                        Reason::CredentialNotAccepted,
                        "this route accepts only magic-link sessions",
                    ),
                    None,
                )
            }
            Ok(session) => {
                // Cached until it expires, or, for a session the login renews with its refresh
                // token, until that renewal is due: a cached session is one whose renewal is not
                // due ([`Engine::renewal_due`] answers from the cache too).
                let renew_at = self.login().and_then(|l| l.renew_at(&session));
                let until = renew_at.map_or(session.expires_at, |t| t.min(session.expires_at));
                let mut id = session.identity;
                if found.kind == CredentialKind::MagicLink {
                    id.credential = CredentialKind::MagicLink;
                }
                let until = (now < until).then_some(until);
                self.verified(id, cache, found.kind, found.value, until)
            }
            Err(e) => Authn::Err(e, None),
        }
    }

    /// An identity and its upstream headers, built once.
    fn granted(&self, id: Identity) -> (Arc<Identity>, UpstreamHeaders) {
        let headers = self.identity_headers(&id).into();
        (Arc::new(id), headers)
    }

    /// A credential verified now, remembered by the cache as `kind` until `until` (`None`: not
    /// cached).
    fn verified(
        &self,
        id: Identity,
        cache: &mut TokenCache,
        kind: CredentialKind,
        token: &str,
        until: Option<UnixTime>,
    ) -> Authn {
        let (identity, headers) = self.granted(id);
        if let Some(until) = until {
            cache.insert(kind, token, &identity, &headers, until);
        }
        Authn::Ok {
            identity,
            headers,
            cached: false,
        }
    }

    /// A verified credential that is not cached.
    fn authenticated(&self, id: Identity) -> Authn {
        let (identity, headers) = self.granted(id);
        Authn::Ok {
            identity,
            headers,
            cached: false,
        }
    }

    /// The remote API-key list's refresh state for this config (`api_keys.remote`), if any:
    /// hosts drive it and hand it back through [`KeyLookup::api_key_list`].
    pub fn api_key_list(&self) -> Option<crate::keylist::KeyListState> {
        self.api_keys.as_ref()?.remote_list()
    }

    /// The 500 of a paused step handed to another engine, or of a broken invariant (fail closed).
    pub(crate) fn internal(&self) -> LocalReply {
        self.deny_json(&Error::new(
            Reason::Internal,
            "the gateway's config changed while this request was paused; retry",
        ))
    }

    /// The 503 a host sends when a request waited for keys that never came (fail closed).
    pub fn keys_unavailable(&self) -> LocalReply {
        self.deny_json(&Error::keys_unavailable())
    }

    /// A JSON (or, for browsers on rules with a login URL, redirect) refusal.
    /// Without a rule's `login_url`, browsers go to the `login` section's login route.
    fn deny_for(&self, req: &Request<'_>, e: &Error, login_url: Option<&str>) -> LocalReply {
        let login_url = login_url.or_else(|| self.login.as_ref().map(Login::login_path));
        if e.http_status() == 401 && req.wants_html() {
            if let Some(login) = login_url {
                let rd = self
                    .redirects
                    .check(req.path)
                    .unwrap_or_else(|_| "/".to_string());
                let sep = if login.contains('?') { '&' } else { '?' };
                let location = format!(
                    "{login}{sep}rd={}",
                    form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
                );
                return LocalReply {
                    status: 302,
                    reason: e.reason(),
                    headers: vec![
                        ("location".into(), location),
                        ("cache-control".into(), "no-store".into()),
                    ],
                    body: String::new(),
                };
            }
        }
        self.deny_json(e)
    }

    /// The standard JSON refusal: status from the reason, RFC 6750 challenge on 401 and 403.
    pub fn deny_json(&self, e: &Error) -> LocalReply {
        json_denial(&self.realm, e)
    }

    /// GET/HEAD on the magic-link path answers a confirm page (mail scanners fetch links; only the
    /// POST from the page's button consumes the token). Other methods: POST reads the form.
    fn magic_link_page(&self, req: &Request<'_>) -> Step {
        let page = match req.method {
            "POST" => return Step::NeedForm(NeedForm::new(self.generation)),
            "GET" | "HEAD" => {
                let Some(m) = &self.magic else {
                    let e = Error::new(Reason::Internal, "magic links off");
                    return Step::Done(Verdict::Reply(self.deny_json(&e)));
                };
                let query = req.path.split_once('?').map_or("", |(_, q)| q);
                let token = form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == m.query_param())
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let body = confirm_page(m.path(), &token);
                Verdict::Reply(LocalReply {
                    status: 200,
                    reason: Reason::CredentialMissing,
                    headers: vec![
                        ("content-type".into(), "text/html; charset=utf-8".into()),
                        ("cache-control".into(), "no-store".into()),
                        ("referrer-policy".into(), "no-referrer".into()),
                        ("x-frame-options".into(), "DENY".into()),
                        (
                            "content-security-policy".into(),
                            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'".into(),
                        ),
                    ],
                    body,
                })
            }
            _ => Verdict::Reply(LocalReply {
                status: 405,
                reason: Reason::CredentialNotAccepted,
                headers: vec![("allow".into(), "GET, HEAD, POST".into())],
                body: String::new(),
            }),
        };
        Step::Done(page)
    }

    /// Verifies the token in a magic-link form body (`token=...`) and prepares the login. The
    /// host enforces single use on `jti` (until `expires_at`) before replying.
    pub fn magic_link_consume(
        &self,
        form_body: &[u8],
        now: UnixTime,
    ) -> Result<MagicLinkLogin, LocalReply> {
        let (Some(magic), Some(sessions)) = (&self.magic, &self.sessions) else {
            return Err(self.deny_json(&Error::new(
                Reason::Internal,
                "magic links are not configured",
            )));
        };
        if form_body.len() > MAX_FORM_BODY {
            return Err(self.deny_json(&Error::new(Reason::TokenTooLarge, "the form is too large")));
        }
        let token = form_urlencoded::parse(form_body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| {
                self.deny_json(&Error::new(
                    Reason::CredentialMissing,
                    "the form has no token",
                ))
            })?;
        let link = magic.verify(&token, now).map_err(|e| self.deny_json(&e))?;
        let location = match link.target.as_deref().or(link.path_scope.as_deref()) {
            Some(t) => self.redirects.check(t).map_err(|e| self.deny_json(&e))?,
            None => "/".to_string(),
        };
        let cookie = sessions
            .seal(&link.identity, now)
            .map_err(|e| self.deny_json(&e))?;
        Ok(MagicLinkLogin {
            jti: link.jti,
            expires_at: link.expires_at,
            set_cookie: sessions.set_cookie_header(&cookie, now),
            location,
            identity: link.identity,
        })
    }

    /// The reply to a magic link used a second time.
    pub fn replayed(&self) -> LocalReply {
        self.deny_json(&Error::new(
            Reason::TokenReplayed,
            "this link was already used; ask for a new one",
        ))
    }

    /// The upstream identity headers for an identity (values made header-safe).
    pub fn identity_headers(&self, id: &Identity) -> Vec<(String, String)> {
        use crate::config::IdentityField as F;
        let h = &self.headers;
        let mut out = Vec::with_capacity(h.send.len());
        let mut push = |field: F, name: &String, value: &dyn Fn() -> String| {
            if h.sends(field) {
                out.push((name.clone(), value()));
            }
        };
        push(F::Subject, &h.subject, &|| header_value(&id.subject));
        push(F::Credential, &h.credential, &|| {
            id.credential.code().to_string()
        });
        push(F::Provider, &h.provider, &|| header_value(&id.provider));
        if let Some(e) = &id.email {
            push(F::Email, &h.email, &|| header_value(e));
        }
        if let Some(n) = &id.name {
            push(F::Name, &h.name, &|| header_value(n));
        }
        for (field, name, list) in [
            (F::Roles, &h.roles, &id.roles),
            (F::Permissions, &h.permissions, &id.permissions),
        ] {
            if h.send_empty || !list.is_empty() {
                push(field, name, &|| header_list(list));
            }
        }
        if let Some(k) = &id.key_name {
            push(F::KeyName, &h.key_name, &|| header_value(k));
        }
        if let Some(exp) = id.expires_at {
            push(F::Expires, &h.expires, &|| exp.to_string());
        }
        out
    }
}

#[allow(clippy::large_enum_variant)]
pub(crate) enum Authn {
    Ok {
        identity: Arc<Identity>,
        headers: UpstreamHeaders,
        /// From the token cache.
        cached: bool,
    },
    /// The token's signature is the host's to verify.
    NeedSignature(Box<PendingJwt>),
    /// The provider's remote keys have not arrived.
    NeedKeys(String),
    /// Refused; the provider whose remote set lacks the token's `kid`, if that is why.
    Err(Error, Option<String>),
}

/// An API key: against the inline keys alone, or, with `api_keys.remote`, against the inline
/// keys plus the host's current list. Without a usable list (none yet, or stale) a key the
/// inline keys lack is `503 api_keys_unavailable`: it may be listed, so refusing it as
/// unknown would be wrong, and accepting it impossible (fail closed).
fn verify_api_key(
    inline: &ApiKeyStore,
    presented: &str,
    keys: &dyn KeyLookup,
    now: UnixTime,
) -> Result<Identity, Error> {
    if inline.remote().is_none() {
        return inline.verify(presented, now);
    }
    inline.check_format(presented)?;
    let unusable = match keys.api_key_list().map(|l| l.usable(now)) {
        Some(Ok(store)) => return store.verify(presented, now),
        Some(Err(e)) => e,
        None => Error::new(
            Reason::ApiKeysUnavailable,
            "the API-key list has not been fetched yet; retry shortly",
        ),
    };
    match inline.verify(presented, now) {
        Err(e) if e.reason() == Reason::ApiKeyUnknown => Err(unusable),
        other => other,
    }
}

/// The refusal of a request that sends a credential's carrier (`what`) twice.
fn repeated(what: &str) -> Error {
    Error::new(
        Reason::RepeatedCredential,
        format!("the request sends {what} more than once; send one credential"),
    )
}

/// The verdict of a public route without an (accepted) credential: nothing goes upstream.
fn public_allow() -> Verdict {
    Verdict::Allow {
        identity: None,
        headers: Arc::new([]),
        cached: false,
        consumed: None,
    }
}

/// Engines built by this process: each gets the next number as its generation.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// Compiles a config section if there is one; its errors join `errors`, under `name`.
fn section<C, T>(
    errors: &mut Vec<ConfigError>,
    name: &str,
    config: Option<&C>,
    compile: impl FnOnce(&C) -> Result<T, Vec<ConfigError>>,
) -> Option<T> {
    match compile(config?) {
        Ok(v) => Some(v),
        Err(es) => {
            errors.extend(es.into_iter().map(|e| e.at(name)));
            None
        }
    }
}

/// Percent-encodes anything outside printable ASCII (and `%`), so a claim can never inject a
/// header line or confuse a parser upstream.
fn header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A comma-separated list whose items have their commas encoded too.
fn header_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| header_value(i).replace(',', "%2C"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `s` safe inside HTML text and attribute values.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn confirm_page(action: &str, token: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>Sign in</title></head>\
<body style=\"font-family:sans-serif;max-width:28em;margin:4em auto\"><h1>Sign in</h1>\
<p>Press the button to finish signing in. This link works once.</p>\
<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
<button type=\"submit\">Continue</button></form></body></html>",
        html_escape(action),
        html_escape(token)
    )
}

/// The standard JSON refusal without an engine: status from the reason, RFC 6750 challenge (with
/// `realm`) on 401 and 403, `Allow` on 405.
pub fn json_denial(realm: &str, e: &Error) -> LocalReply {
    let status = e.http_status();
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
    ];
    if status == 401 || status == 403 {
        headers.push(("www-authenticate".to_string(), e.www_authenticate(realm)));
    }
    if status == 405 {
        // RFC 9110 §15.5.6: a 405 lists the methods the resource supports; only CONNECT is
        // refused by the gateway itself.
        headers.push((
            "allow".to_string(),
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".to_string(),
        ));
    }
    let error = match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        405 => "method_not_allowed",
        431 => "request_header_fields_too_large",
        503 => "unavailable",
        _ => "error",
    };
    LocalReply {
        status,
        reason: e.reason(),
        headers,
        body: json!({"error": error, "reason": e.reason().code(), "message": e.message()})
            .to_string(),
    }
}

/// The cache's answer for a credential found as `found.kind`, if it holds one.
fn cached(cache: &mut TokenCache, found: Found<'_>, now: UnixTime) -> Option<Authn> {
    cache
        .get(found.kind, found.value, now)
        .map(|(identity, headers)| Authn::Ok {
            identity,
            headers,
            cached: true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_cannot_inject() {
        for (claim, sent) in [("a\r\nx-evil: 1", "a%0D%0Ax-evil: 1"), ("Zoë", "Zo%C3%AB")] {
            assert_eq!(header_value(claim), sent);
        }
        assert_eq!(header_list(&["a,b".into(), "c".into()]), "a%2Cb,c");
    }

    #[test]
    fn confirm_page_escapes_the_token() {
        let p = confirm_page("/auth/magic", "\"><script>alert(1)</script>");
        assert!(!p.contains("<script>"));
        assert!(p.contains("&quot;&gt;&lt;script&gt;"));
    }
}
