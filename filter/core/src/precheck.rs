//! Two-phase decisions for hosts whose signature verification is asynchronous (WebCrypto's
//! `crypto.subtle.verify` in an edge worker), while [`Engine::decide`] stays synchronous and
//! makes every decision.
//!
//! 1. The host calls [`decide`] with no answers. If the request needs no host-verified signature
//!    (no credential, a cached token, an API key, a session, an HMAC token, a token refused before
//!    its signature step), the result is [`Step::Done`] with the final verdict.
//!    Otherwise it is [`Step::Verify`]: the exact checks the core would run for the credential it
//!    picked — algorithm, the key it selected, signing input and signature, each already past
//!    [`check_signature_format`] (so the host never sees a malformed signature).
//! 2. The host verifies each check (WebCrypto, with the imported key cached under
//!    [`SignatureCheck::key_jwk`]) and calls [`decide`] again with the [`Answer`]s. The engine
//!    runs from the start with a backend that answers exactly those results: a result counts only
//!    for the same algorithm, key material, signing input and signature. Anything else is
//!    recorded as a new check (say the key set was refreshed while the host was verifying) and
//!    the step is `Verify` again; a host that stops answering calls [`decide_final`], where an
//!    unanswered check fails closed.
//!
//! HMAC (`HS*`) never goes to the host: the secret stays in the core, and hashing is fast in wasm.

use std::cell::{Cell, RefCell};

use crate::alg::Alg;
use crate::b64;
use crate::backend::{check_signature_format, NativeBackend, SignatureBackend};
use crate::cache::TokenCache;
use crate::engine::{Engine, Verdict};
use crate::error::{Error, Reason};
use crate::extractor::Request;
use crate::jwk::PublicKey;
use crate::verifier::KeyLookup;
use crate::UnixTime;

/// Most checks one step asks for (a request carries one credential: one check; the bound only
/// keeps a misbehaving loop finite).
pub const MAX_CHECKS: usize = 4;

/// One signature verification the host must perform.
#[derive(Debug, Clone)]
pub struct SignatureCheck {
    alg: Alg,
    key: PublicKey,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

impl SignatureCheck {
    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The bytes that were signed (`header.payload`, ASCII).
    pub fn signing_input(&self) -> &[u8] {
        &self.signing_input
    }

    /// The decoded signature (RSA: modulus length; ECDSA: raw `r || s`; Ed25519: 64 bytes).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The public key as a minimal JWK (JSON, members in a fixed order, no `kid`/`alg`/`use`):
    /// what WebCrypto's `importKey("jwk", ...)` takes, and the same string for the same key, so
    /// hosts can cache the imported key under it (with the algorithm: a WebCrypto RSA key is
    /// bound to one hash). `None` for HMAC, which never goes to the host.
    pub fn key_jwk(&self) -> Option<String> {
        public_jwk(&self.key)
    }

    fn same(&self, alg: Alg, key: &PublicKey, signing_input: &[u8], signature: &[u8]) -> bool {
        self.alg == alg
            && same_key(&self.key, key)
            && self.signing_input == signing_input
            && self.signature == signature
    }
}

/// The host's result for one [`SignatureCheck`].
#[derive(Debug, Clone)]
pub struct Answer {
    pub check: SignatureCheck,
    /// True when the signature verified.
    pub valid: bool,
}

/// What the host does next.
// Built once per request and matched at once, like `Verdict`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step {
    /// The final verdict.
    Done(Verdict),
    /// Verify these (at most [`MAX_CHECKS`]), then call [`decide`] again with the answers.
    Verify(Vec<SignatureCheck>),
}

/// Whether the host verifies `alg` (everything but HMAC).
pub fn host_verifies(alg: Alg) -> bool {
    !matches!(alg, Alg::HS256 | Alg::HS384 | Alg::HS512)
}

/// One step of a host-verified decision; see the module docs.
pub fn decide(
    engine: &Engine,
    req: &Request<'_>,
    keys: &dyn KeyLookup,
    cache: &mut TokenCache,
    now: UnixTime,
    answers: &[Answer],
) -> Step {
    let (verdict, wanted, _) = run(engine, req, keys, cache, now, answers, Unanswered::Ask);
    if wanted.is_empty() {
        Step::Done(verdict)
    } else {
        Step::Verify(wanted)
    }
}

/// The last step: like [`decide`], but a check without an answer fails closed (500 `internal`)
/// instead of being asked for.
pub fn decide_final(
    engine: &Engine,
    req: &Request<'_>,
    keys: &dyn KeyLookup,
    cache: &mut TokenCache,
    now: UnixTime,
    answers: &[Answer],
) -> Verdict {
    run(engine, req, keys, cache, now, answers, Unanswered::Refuse).0
}

/// A first step that also computed its verdict for the case where every check verifies, so the
/// second step need not run the engine again ([`decide_provisional`]).
#[derive(Debug)]
pub struct Pending {
    checks: Vec<SignatureCheck>,
    /// The verdict if every check verifies; `None` when it could not be computed (the token
    /// cache is on, or more than [`MAX_CHECKS`] checks).
    if_valid: Option<Verdict>,
    now: UnixTime,
}

/// What [`decide_provisional`] returns.
// Built once per request and matched at once, like `Verdict`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Provisional {
    /// The final verdict.
    Done(Verdict),
    /// Verify [`Pending::checks`], then call [`Pending::resume`] with the results.
    Verify(Pending),
}

/// Like [`decide`] with no answers, but when the token cache stores nothing
/// (`jwt.cache.max_entries: 0`) the engine runs once with every host check taken as valid, and
/// that verdict is kept: it is exactly what [`decide`] would return with every check answered
/// valid (same request, keys, `now`; the engine is deterministic and the cache stores nothing,
/// so no identity is remembered before its signature is verified). With the cache on this is
/// [`decide`]: a provisional run must never fill the cache.
pub fn decide_provisional(
    engine: &Engine,
    req: &Request<'_>,
    keys: &dyn KeyLookup,
    cache: &mut TokenCache,
    now: UnixTime,
) -> Provisional {
    if cache.capacity() != 0 {
        return match decide(engine, req, keys, cache, now, &[]) {
            Step::Done(v) => Provisional::Done(v),
            Step::Verify(checks) => Provisional::Verify(Pending {
                checks,
                if_valid: None,
                now,
            }),
        };
    }
    let (verdict, wanted, overflow) = run(engine, req, keys, cache, now, &[], Unanswered::Assume);
    if wanted.is_empty() {
        // no host check (an overflow records MAX_CHECKS first): the verdict is final
        return Provisional::Done(verdict);
    }
    let if_valid = (!overflow).then_some(verdict);
    Provisional::Verify(Pending {
        checks: wanted,
        if_valid,
        now,
    })
}

impl Pending {
    /// The checks the host verifies.
    pub fn checks(&self) -> &[SignatureCheck] {
        &self.checks
    }

    /// The second step. `valid[i]` is the host's result for `checks()[i]`; `keys_unchanged`
    /// says the key set is the one the first step saw. The kept verdict counts only when every
    /// check verified, `now` is the first step's and the keys are unchanged; otherwise `Err`
    /// carries the answers for [`decide`] (or [`decide_final`]), which runs the engine again
    /// and matches them exactly. A missing result is `false`.
    pub fn resume(
        self,
        valid: &[bool],
        now: UnixTime,
        keys_unchanged: bool,
    ) -> Result<Verdict, Vec<Answer>> {
        let all_valid = valid.len() == self.checks.len() && valid.iter().all(|v| *v);
        match self.if_valid {
            Some(v) if all_valid && now == self.now && keys_unchanged => Ok(v),
            _ => Err(self
                .checks
                .into_iter()
                .enumerate()
                .map(|(i, check)| Answer {
                    check,
                    valid: valid.get(i).copied().unwrap_or(false),
                })
                .collect()),
        }
    }
}

/// What the step's backend does with a host check it has no answer for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unanswered {
    /// Record it for the host (up to [`MAX_CHECKS`]) and fail this run.
    Ask,
    /// Record it and take it as valid (a provisional run); beyond [`MAX_CHECKS`] the run fails
    /// and is marked unusable.
    Assume,
    /// Fail closed (the last step).
    Refuse,
}

/// Runs the engine once with a [`StepBackend`]: the verdict, the checks it recorded, and
/// whether more than [`MAX_CHECKS`] were assumed.
fn run(
    engine: &Engine,
    req: &Request<'_>,
    keys: &dyn KeyLookup,
    cache: &mut TokenCache,
    now: UnixTime,
    answers: &[Answer],
    unanswered: Unanswered,
) -> (Verdict, Vec<SignatureCheck>, bool) {
    let backend = StepBackend {
        answers,
        unanswered,
        wanted: RefCell::new(Vec::new()),
        overflow: Cell::new(false),
    };
    let verdict = engine.decide_with(req, keys, cache, now, &backend);
    (verdict, backend.wanted.into_inner(), backend.overflow.get())
}

/// The backend of one step: HMAC in-process, the rest from the host's answers; a check without
/// an answer as [`Unanswered`] says.
struct StepBackend<'a> {
    answers: &'a [Answer],
    unanswered: Unanswered,
    wanted: RefCell<Vec<SignatureCheck>>,
    overflow: Cell<bool>,
}

impl SignatureBackend for StepBackend<'_> {
    fn verify(
        &self,
        alg: Alg,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        check_signature_format(alg, key, signature)?;
        if !host_verifies(alg) {
            return NativeBackend.verify(alg, key, signing_input, signature);
        }
        let answer = self
            .answers
            .iter()
            .find(|a| a.check.same(alg, key, signing_input, signature));
        match answer {
            Some(a) if a.valid => return Ok(()),
            Some(_) => {
                return Err(Error::new(
                    Reason::BadSignature,
                    "the signature does not verify",
                ))
            }
            None => {}
        }
        let not_verified =
            || Error::new(Reason::Internal, "the host did not verify this signature");
        if self.unanswered == Unanswered::Refuse {
            return Err(not_verified());
        }
        let mut wanted = self.wanted.borrow_mut();
        if wanted.len() >= MAX_CHECKS {
            if self.unanswered == Unanswered::Assume {
                self.overflow.set(true);
            }
            return Err(not_verified());
        }
        wanted.push(SignatureCheck {
            alg,
            key: key.clone(),
            signing_input: signing_input.to_vec(),
            signature: signature.to_vec(),
        });
        match self.unanswered {
            Unanswered::Assume => Ok(()),
            _ => Err(not_verified()),
        }
    }
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    match (a, b) {
        (PublicKey::Rsa(x), PublicKey::Rsa(y)) => {
            x.modulus() == y.modulus() && x.exponent() == y.exponent()
        }
        (PublicKey::P256(x), PublicKey::P256(y)) => x.key == y.key,
        (PublicKey::P384(x), PublicKey::P384(y)) => x.key == y.key,
        (PublicKey::P521(x), PublicKey::P521(y)) => x.key == y.key,
        (PublicKey::Ed25519(x), PublicKey::Ed25519(y)) => x.as_bytes() == y.as_bytes(),
        // Never host-verified, never answered.
        _ => false,
    }
}

fn public_jwk(key: &PublicKey) -> Option<String> {
    let ec = |crv: &str, point: Vec<u8>, len: usize| {
        // SEC1 uncompressed: 04 || x || y
        let x = point.get(1..1 + len)?;
        let y = point.get(1 + len..1 + 2 * len)?;
        Some(format!(
            r#"{{"kty":"EC","crv":"{crv}","x":"{}","y":"{}"}}"#,
            b64::encode(x),
            b64::encode(y)
        ))
    };
    match key {
        PublicKey::Rsa(k) => Some(format!(
            r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#,
            b64::encode(k.modulus()),
            b64::encode(k.exponent())
        )),
        PublicKey::P256(k) => ec("P-256", k.sec1_uncompressed(), 32),
        PublicKey::P384(k) => ec("P-384", k.sec1_uncompressed(), 48),
        PublicKey::P521(k) => ec("P-521", k.sec1_uncompressed(), 66),
        PublicKey::Ed25519(k) => Some(format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            b64::encode(k.as_bytes())
        )),
        PublicKey::Hmac(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_keys;
    use crate::jwk::KeySet;
    use crate::{jws, LocalReply};

    const ISS: &str = "https://idp.test";
    const HMAC_ISS: &str = "https://hmac.test";

    fn engine() -> Engine {
        let jwks: serde_json::Value = serde_json::from_str(&test_keys::jwks_all()).unwrap();
        let cfg = serde_json::json!({
            "jwt": {"providers": [{
                "name": "t", "issuer": ISS,
                "algorithms": ["RS256", "PS256", "RS384", "ES256", "ES384", "EdDSA"],
                "jwks": jwks,
            }, {
                "name": "h", "issuer": HMAC_ISS, "algorithms": ["HS256"],
                "shared_secrets": [{"kid": "hmac", "secret": b64::encode(test_keys::HMAC_SECRET)}],
            }]},
            "rules": [
                {"name": "pub", "match": {"path": {"prefix": "/public"}}, "require": {"public": true}},
                {"name": "api", "match": {"path": {"prefix": "/"}}, "credentials": ["jwt"]},
            ],
        });
        Engine::from_json(cfg.to_string().as_bytes()).unwrap()
    }

    fn token(alg: &str) -> String {
        token_with(alg, "alice")
    }

    fn token_with(alg: &str, sub: &str) -> String {
        let payload = format!(r#"{{"iss":"{ISS}","sub":"{sub}","exp":4000000000}}"#);
        test_keys::token(alg, Some(test_keys::kid_for(alg)), &payload)
    }

    fn step(
        e: &Engine,
        cache: &mut TokenCache,
        path: &str,
        tok: Option<&str>,
        a: &[Answer],
    ) -> Step {
        let auth = tok.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|v| vec![("authorization", v)])
            .unwrap_or_default();
        let req = Request {
            method: "GET",
            path,
            headers: &headers,
        };
        decide(
            e,
            &req,
            &crate::verifier::NoRemoteKeys,
            cache,
            1_700_000_000,
            a,
        )
    }

    fn final_verdict(e: &Engine, tok: &str, a: &[Answer]) -> Verdict {
        let auth = format!("Bearer {tok}");
        let headers = [("authorization", auth.as_str())];
        let req = Request {
            method: "GET",
            path: "/x",
            headers: &headers,
        };
        decide_final(
            e,
            &req,
            &crate::verifier::NoRemoteKeys,
            &mut e.new_cache(),
            1_700_000_000,
            a,
        )
    }

    fn checks(s: Step) -> Vec<SignatureCheck> {
        match s {
            Step::Verify(c) => c,
            Step::Done(v) => panic!("expected Verify, got {v:?}"),
        }
    }

    fn denial(s: Step) -> LocalReply {
        match s {
            Step::Done(Verdict::Reply(d)) => d,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn allowed(s: Step) -> bool {
        matches!(
            s,
            Step::Done(Verdict::Allow {
                identity: Some(_),
                ..
            })
        )
    }

    /// What a host does: verify with the core's own backend (standing in for WebCrypto).
    fn host(c: &[SignatureCheck]) -> Vec<Answer> {
        c.iter()
            .map(|c| Answer {
                check: c.clone(),
                valid: NativeBackend
                    .verify(c.alg(), c.key(), c.signing_input(), c.signature())
                    .is_ok(),
            })
            .collect()
    }

    fn provisional(e: &Engine, cache: &mut TokenCache, tok: &str, now: UnixTime) -> Provisional {
        let auth = format!("Bearer {tok}");
        let headers = [("authorization", auth.as_str())];
        let req = Request {
            method: "GET",
            path: "/x",
            headers: &headers,
        };
        decide_provisional(e, &req, &crate::verifier::NoRemoteKeys, cache, now)
    }

    fn pending(p: Provisional) -> Pending {
        match p {
            Provisional::Verify(p) => p,
            Provisional::Done(v) => panic!("expected Verify, got {v:?}"),
        }
    }

    fn headers_of(v: &Verdict) -> Vec<(String, String)> {
        match v {
            Verdict::Allow { headers, .. } => headers.to_vec(),
            other => panic!("expected Allow, got {other:?}"),
        }
    }

    #[test]
    fn provisional_verdict_is_the_exact_second_step_verdict_without_a_cache() {
        let e = engine();
        let now = 1_700_000_000;
        for alg in ["RS256", "PS256", "RS384", "ES256", "ES384", "EdDSA"] {
            let t = token(alg);
            let mut off = TokenCache::new(0);
            let p = pending(provisional(&e, &mut off, &t, now));
            // the same checks the exact path asks for
            let exact = checks(step(&e, &mut TokenCache::new(0), "/x", Some(&t), &[]));
            assert_eq!(p.checks().len(), exact.len(), "{alg}");
            assert!(p.checks()[0].same(
                exact[0].alg(),
                exact[0].key(),
                exact[0].signing_input(),
                exact[0].signature()
            ));
            let valid: Vec<bool> = host(p.checks()).iter().map(|a| a.valid).collect();
            assert_eq!(valid, vec![true], "{alg}");
            let kept = p.resume(&valid, now, true).unwrap();
            let Step::Done(again) =
                step(&e, &mut TokenCache::new(0), "/x", Some(&t), &host(&exact))
            else {
                panic!("{alg}: expected a verdict");
            };
            assert_eq!(headers_of(&kept), headers_of(&again), "{alg}");
            assert!(!headers_of(&kept).is_empty());
        }
    }

    #[test]
    fn provisional_verdict_counts_only_when_all_valid_same_second_same_keys() {
        let e = engine();
        let now = 1_700_000_000;
        let t = token("ES256");
        let fresh = || pending(provisional(&e, &mut TokenCache::new(0), &t, now));
        // a negative answer: the engine runs again and refuses
        let a = fresh().resume(&[false], now, true).unwrap_err();
        assert!(!a[0].valid);
        let d = denial(step(&e, &mut TokenCache::new(0), "/x", Some(&t), &a));
        assert_eq!(d.reason, Reason::BadSignature);
        // a missing answer is false
        let a = fresh().resume(&[], now, true).unwrap_err();
        assert_eq!(a.len(), 1);
        assert!(!a[0].valid);
        // another second, or a changed key set: decide again (with the valid answer)
        let a = fresh().resume(&[true], now + 1, true).unwrap_err();
        assert!(a[0].valid);
        assert!(allowed(step(
            &e,
            &mut TokenCache::new(0),
            "/x",
            Some(&t),
            &a
        )));
        assert!(fresh().resume(&[true], now, false).is_err());
    }

    #[test]
    fn provisional_keeps_claim_refusals_and_never_fills_a_cache() {
        let e = engine();
        let now = 1_700_000_000;
        // expired: the kept verdict (if the signature verifies) is the expiry refusal
        let payload = format!(r#"{{"iss":"{ISS}","sub":"a","exp":1600000000}}"#);
        let t = test_keys::token("RS256", Some(test_keys::kid_for("RS256")), &payload);
        let p = pending(provisional(&e, &mut TokenCache::new(0), &t, now));
        match p.resume(&[true], now, true).unwrap() {
            Verdict::Reply(d) => assert_eq!(d.reason, Reason::TokenExpired),
            other => panic!("{other:?}"),
        }
        // with the cache on nothing is assumed: the answers go back to the engine
        let t = token("RS256");
        let mut cache = e.new_cache();
        assert!(cache.capacity() > 0);
        let p = pending(provisional(&e, &mut cache, &t, now));
        assert!(cache.is_empty(), "nothing cached before the host verified");
        let a = p.resume(&[true], now, true).unwrap_err();
        assert!(allowed(step(&e, &mut cache, "/x", Some(&t), &a)));
        assert_eq!(cache.len(), 1);
        // a public route, an HMAC token: no host check, a final verdict
        let h = test_keys::token(
            "HS256",
            Some("hmac"),
            &format!(r#"{{"iss":"{HMAC_ISS}","sub":"a","exp":4000000000}}"#),
        );
        assert!(matches!(
            provisional(&e, &mut TokenCache::new(0), &h, now),
            Provisional::Done(Verdict::Allow { .. })
        ));
    }

    #[test]
    fn every_host_alg_asks_for_exactly_the_tokens_check_then_decides() {
        let e = engine();
        for alg in ["RS256", "PS256", "RS384", "ES256", "ES384", "EdDSA"] {
            let mut cache = e.new_cache();
            let t = token(alg);
            let c = checks(step(&e, &mut cache, "/x", Some(&t), &[]));
            assert_eq!(c.len(), 1, "{alg}");
            let j = jws::parse(&t, 10_000).unwrap();
            assert_eq!(c[0].alg(), j.alg);
            assert_eq!(c[0].signing_input(), j.signing_input);
            assert_eq!(c[0].signature(), &j.signature[..]);
            let ks = KeySet::parse_jwks(test_keys::jwks_all().as_bytes()).unwrap();
            let key = &ks.select(j.kid.as_deref(), j.alg).unwrap().key;
            assert!(
                same_key(c[0].key(), key),
                "{alg}: the key the core selected"
            );
            // the answer decides
            assert!(
                allowed(step(&e, &mut cache, "/x", Some(&t), &host(&c))),
                "{alg}"
            );
            // and the verified token is cached: the next request needs no check
            assert!(
                allowed(step(&e, &mut cache, "/x", Some(&t), &[])),
                "{alg} cached"
            );
        }
    }

    #[test]
    fn a_negative_answer_is_a_bad_signature() {
        let e = engine();
        let mut cache = e.new_cache();
        let t = token("ES256");
        let mut a = host(&checks(step(&e, &mut cache, "/x", Some(&t), &[])));
        a[0].valid = false;
        let d = denial(step(&e, &mut cache, "/x", Some(&t), &a));
        assert_eq!(d.reason, Reason::BadSignature);
        assert_eq!(d.status, 401);
        // nothing was cached
        assert!(matches!(
            step(&e, &mut cache, "/x", Some(&t), &[]),
            Step::Verify(_)
        ));
    }

    #[test]
    fn a_tampered_token_is_refused_by_the_host_answer() {
        let e = engine();
        let mut cache = e.new_cache();
        let t = token("RS256");
        let (input, sig) = t.rsplit_once('.').unwrap();
        let mut s = b64::decode(sig).unwrap();
        s[7] ^= 1;
        let bad = format!("{input}.{}", b64::encode(&s));
        let c = checks(step(&e, &mut cache, "/x", Some(&bad), &[]));
        let a = host(&c);
        assert!(!a[0].valid);
        assert_eq!(
            denial(step(&e, &mut cache, "/x", Some(&bad), &a)).reason,
            Reason::BadSignature
        );
    }

    #[test]
    fn an_answer_counts_only_for_its_exact_key_input_and_signature() {
        let e = engine();
        let mut cache = e.new_cache();
        let t = token("RS256");
        let good = host(&checks(step(&e, &mut cache, "/x", Some(&t), &[])));
        assert!(good[0].valid);
        let forge = |f: &dyn Fn(&mut SignatureCheck)| {
            let mut a = good.clone();
            f(&mut a[0].check);
            a
        };
        let ks = KeySet::parse_jwks(test_keys::jwks_all().as_bytes()).unwrap();
        let other_rsa = {
            // the same exponent, another modulus: "another key of the same type"
            let jwk = test_keys::rsa_jwk("x", 3072);
            KeySet::parse_jwks(format!(r#"{{"keys":[{jwk}]}}"#).as_bytes())
                .unwrap()
                .keys()[0]
                .key
                .clone()
        };
        let variants: Vec<(&str, Vec<Answer>)> = vec![
            ("another key", forge(&|c| c.key = other_rsa.clone())),
            (
                "another key family",
                forge(&|c| c.key = ks.select(Some("p256"), Alg::ES256).unwrap().key.clone()),
            ),
            ("another input", forge(&|c| c.signing_input.push(b'x'))),
            ("another signature", forge(&|c| c.signature[0] ^= 1)),
            ("another alg", forge(&|c| c.alg = Alg::PS256)),
        ];
        for (what, answers) in variants {
            // the answer does not apply: the core asks for the real check again...
            let c = checks(step(&e, &mut cache, "/x", Some(&t), &answers));
            assert_eq!(c.len(), 1, "{what}");
            assert!(c[0].same(
                Alg::RS256,
                good[0].check.key(),
                good[0].check.signing_input(),
                good[0].check.signature()
            ));
            // ...and, as the last step, fails closed
            match final_verdict(&e, &t, &answers) {
                Verdict::Reply(d) => {
                    assert_eq!(d.reason, Reason::Internal, "{what}");
                    assert_eq!(d.status, 500, "{what}");
                }
                v => panic!("{what}: {v:?}"),
            }
        }
        // a valid answer for another token does not let this one in
        let t2 = token_with("RS256", "mallory");
        let c2 = checks(step(&e, &mut cache, "/x", Some(&t2), &good));
        assert_eq!(
            c2[0].signing_input(),
            t2.rsplit_once('.').unwrap().0.as_bytes()
        );
        assert!(matches!(final_verdict(&e, &t2, &good), Verdict::Reply(_)));
        // while the right answer does, in the final step too
        assert!(matches!(
            final_verdict(&e, &t, &good),
            Verdict::Allow { .. }
        ));
    }

    #[test]
    fn no_host_check_without_a_host_verified_signature() {
        let e = engine();
        let mut cache = e.new_cache();
        // no credential on a protected route, on a public one
        assert_eq!(denial(step(&e, &mut cache, "/x", None, &[])).status, 401);
        assert!(matches!(
            step(&e, &mut cache, "/public", None, &[]),
            Step::Done(Verdict::Allow { identity: None, .. })
        ));
        // HMAC stays in the core
        let payload = format!(r#"{{"iss":"{HMAC_ISS}","sub":"a","exp":4000000000}}"#);
        let hs = test_keys::token("HS256", Some("hmac"), &payload);
        assert!(allowed(step(&e, &mut cache, "/x", Some(&hs), &[])));
        // (and a wrong HMAC is refused by the core itself)
        let (input, _) = hs.rsplit_once('.').unwrap();
        let forged = format!("{input}.{}", b64::encode([7u8; 32]));
        assert_eq!(
            denial(step(&e, &mut cache, "/x", Some(&forged), &[])).reason,
            Reason::BadSignature
        );
        // refusals before the signature step: alg not allowed, unknown issuer, malformed
        let t = test_keys::token(
            "RS512",
            Some("rsa"),
            &format!(r#"{{"iss":"{ISS}","sub":"a","exp":4000000000}}"#),
        );
        assert_eq!(
            denial(step(&e, &mut cache, "/x", Some(&t), &[])).reason,
            Reason::AlgNotAllowed
        );
        let t = test_keys::token(
            "RS256",
            Some("rsa"),
            r#"{"iss":"https://other","sub":"a","exp":4000000000}"#,
        );
        assert_eq!(
            denial(step(&e, &mut cache, "/x", Some(&t), &[])).reason,
            Reason::UnknownIssuer
        );
        assert_eq!(
            denial(step(&e, &mut cache, "/x", Some("a.b"), &[])).reason,
            Reason::MalformedToken
        );
    }

    #[test]
    fn malformed_signatures_never_reach_the_host() {
        let e = engine();
        let mut cache = e.new_cache();
        let t = token("ES256");
        let (input, sig) = t.rsplit_once('.').unwrap();
        let s = b64::decode(sig).unwrap();
        // zero r; a truncated signature
        let mut zero = s.clone();
        zero[..32].fill(0);
        for bad_sig in [zero, s[..63].to_vec()] {
            let bad = format!("{input}.{}", b64::encode(&bad_sig));
            assert_eq!(
                denial(step(&e, &mut cache, "/x", Some(&bad), &[])).reason,
                Reason::BadSignatureFormat
            );
        }
        // an ES256 token whose kid names the RSA key: algorithm/key mismatch, before any check
        let payload = format!(r#"{{"iss":"{ISS}","sub":"a","exp":4000000000}}"#);
        let t = test_keys::token("ES256", Some("rsa"), &payload);
        let d = denial(step(&e, &mut cache, "/x", Some(&t), &[]));
        assert!(
            matches!(
                d.reason,
                Reason::AlgKeyMismatch | Reason::NoMatchingKey | Reason::UnknownKid
            ),
            "{:?}",
            d.reason
        );
    }

    #[test]
    fn claims_are_still_checked_after_a_valid_answer() {
        let e = engine();
        let mut cache = e.new_cache();
        let payload = format!(r#"{{"iss":"{ISS}","sub":"a","exp":1000}}"#);
        let t = test_keys::token("EdDSA", Some("ed25519"), &payload);
        let a = host(&checks(step(&e, &mut cache, "/x", Some(&t), &[])));
        assert!(a[0].valid);
        assert_eq!(
            denial(step(&e, &mut cache, "/x", Some(&t), &a)).reason,
            Reason::TokenExpired
        );
    }

    #[test]
    fn key_jwks_are_stable_and_minimal() {
        let ks = KeySet::parse_jwks(test_keys::jwks_all().as_bytes()).unwrap();
        let jwk = |kid: &str, alg: Alg| {
            let c = SignatureCheck {
                alg,
                key: ks.select(Some(kid), alg).unwrap().key.clone(),
                signing_input: Vec::new(),
                signature: Vec::new(),
            };
            c.key_jwk()
        };
        let p256: serde_json::Value =
            serde_json::from_str(&jwk("p256", Alg::ES256).unwrap()).unwrap();
        let want: serde_json::Value = serde_json::from_str(&test_keys::p256_jwk("p256")).unwrap();
        assert_eq!(p256["x"], want["x"]);
        assert_eq!(p256["y"], want["y"]);
        assert_eq!(p256["crv"], "P-256");
        assert!(p256.get("kid").is_none());
        let rsa = jwk("rsa", Alg::RS256).unwrap();
        assert!(rsa.starts_with(r#"{"kty":"RSA","n":""#) && rsa.ends_with(r#","e":"AQAB"}"#));
        assert_eq!(rsa, jwk("rsa", Alg::PS256).unwrap());
        let p384: serde_json::Value =
            serde_json::from_str(&jwk("p384", Alg::ES384).unwrap()).unwrap();
        assert_eq!(p384["x"].as_str().unwrap().len(), 64);
        let ed = jwk("ed25519", Alg::EdDSA).unwrap();
        assert!(ed.starts_with(r#"{"kty":"OKP","crv":"Ed25519","x":""#));
        assert_eq!(jwk("hmac", Alg::HS256), None);
        assert!(
            !host_verifies(Alg::HS512) && host_verifies(Alg::PS512) && host_verifies(Alg::EdDSA)
        );
    }
}
