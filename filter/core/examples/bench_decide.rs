//! The engine's per-request cost (no host calls) on the paths the Envoy benchmark measures:
//! a repeated RS256 token (a cache hit), a public rule, and the cache hit's parts. Run it natively
//! and as wasm32-wasip1 in node (V8), like `bench_wasm`:
//!   cargo build -p edgegate --example bench_decide --release --target wasm32-wasip1
//!   node filter/core/benches/run_wasm_bench.mjs <target>/wasm32-wasip1/release/examples/bench_decide.wasm 1000
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

#[path = "support/measure.rs"]
mod support;

use edgegate_testkit::test_keys;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::measure;

use edgegate::extractor::Request;
use edgegate::verifier::NoRemoteKeys;
use edgegate::{Engine, Step, Verdict};

const NOW: u64 = 1_800_000_000;

/// Counts heap allocations, so each case also prints how many one operation makes (in Envoy
/// every one is a call into its allocator).
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations (and reallocations) one call of `f` makes.
fn allocations(mut f: impl FnMut()) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    f();
    ALLOCS.load(Ordering::Relaxed) - before
}

fn engine(public: bool) -> Engine {
    let jwk: serde_json::Value = serde_json::from_str(&test_keys::rsa_jwk("k1", 2048)).unwrap();
    let rule = if public {
        serde_json::json!({"name": "all", "match": {"path": {"prefix": "/"}}, "credentials": [], "require": {"public": true}})
    } else {
        serde_json::json!({"name": "api", "match": {"path": {"prefix": "/"}}, "credentials": ["jwt"]})
    };
    let cfg = serde_json::json!({
        "realm": "bench",
        "jwt": {"providers": [{
            "name": "bench", "issuer": "https://idp.bench", "audiences": ["bench-api"],
            "algorithms": ["RS256"], "jwks": {"keys": [jwk]}, "claims": {"roles": ["roles"]}
        }]},
        "rules": [rule]
    });
    Engine::from_json(cfg.to_string().as_bytes()).unwrap()
}

fn main() {
    let budget = support::budget_from_args();
    let payload = format!(
        r#"{{"iss":"https://idp.bench","aud":"bench-api","sub":"user-1","email":"user-1@example.com","roles":["staff"],"iat":{},"exp":{},"jti":"8f14e45fceea167a5a36dedd4bea2543"}}"#,
        NOW - 10,
        NOW + 3600
    );
    let token = test_keys::token("RS256", Some("k1"), &payload);
    let auth = format!("Bearer {token}");
    let headers = [
        (":authority", "127.0.0.1:10000"),
        (":scheme", "http"),
        ("authorization", auth.as_str()),
        ("user-agent", "wrk"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "9c2b8c8e-3f7e-4a8e-9a53-1f0c2e1e7d11"),
    ];
    let req = Request {
        method: "GET",
        path: "/bench",
        headers: &headers,
    };
    println!("case\tops/s\tus/op\tallocations/op");
    let e = engine(false);
    let mut cache = e.new_cache();
    match e.decide(&req, &NoRemoteKeys, &mut cache, NOW) {
        Step::Done(Verdict::Allow { .. }) => {}
        v => panic!("{v:?}"),
    }
    let hit = measure(budget, || {
        let v = e.decide(black_box(&req), &NoRemoteKeys, &mut cache, NOW);
        assert!(matches!(v, Step::Done(Verdict::Allow { cached: true, .. })));
    });
    let n = allocations(|| drop(e.decide(&req, &NoRemoteKeys, &mut cache, NOW)));
    println!("cached-jwt-decide\t{hit:.0}\t{:.2}\t{n}", 1e6 / hit);
    let p = engine(true);
    let public = measure(budget, || {
        let v = p.decide(black_box(&req), &NoRemoteKeys, &mut cache, NOW);
        assert!(matches!(v, Step::Done(Verdict::Allow { .. })));
    });
    let n = allocations(|| drop(p.decide(&req, &NoRemoteKeys, &mut cache, NOW)));
    println!("public-decide\t{public:.0}\t{:.2}\t{n}", 1e6 / public);
    let nocache = engine(false);
    let mut empty = edgegate::cache::TokenCache::new(0);
    let fresh = measure(budget, || {
        let v = nocache.decide(black_box(&req), &NoRemoteKeys, &mut empty, NOW);
        assert!(matches!(
            v,
            Step::Done(Verdict::Allow { cached: false, .. })
        ));
    });
    let n = allocations(|| drop(nocache.decide(&req, &NoRemoteKeys, &mut empty, NOW)));
    println!("verify-decide\t{fresh:.0}\t{:.2}\t{n}", 1e6 / fresh);
    // Fresh tokens (more than the cache holds, each seen once per lap): a miss per request,
    // with the cache (get, verify, insert + eviction) and without it.
    let laps: Vec<String> = (0..1100)
        .map(|i| {
            let p = payload.replace("user-1", &format!("user-{i}"));
            format!("Bearer {}", test_keys::token("RS256", Some("k1"), &p))
        })
        .collect();
    let fresh_run = |cache: &mut edgegate::cache::TokenCache| {
        let mut i = 0usize;
        measure(budget, || {
            let h = [("authorization", laps[i % laps.len()].as_str())];
            i += 1;
            let r = Request {
                method: "GET",
                path: "/bench",
                headers: &h,
            };
            let v = nocache.decide(black_box(&r), &NoRemoteKeys, cache, NOW);
            assert!(matches!(
                v,
                Step::Done(Verdict::Allow { cached: false, .. })
            ));
        })
    };
    let mut full = edgegate::cache::TokenCache::new(1024);
    let with = fresh_run(&mut full);
    let without = fresh_run(&mut edgegate::cache::TokenCache::new(0));
    // One more miss on the full cache: verify, insert, evict.
    let other = format!(
        "Bearer {}",
        test_keys::token("RS256", Some("k1"), &payload.replace("user-1", "user-x"))
    );
    let h = [("authorization", other.as_str())];
    let r = Request {
        method: "GET",
        path: "/bench",
        headers: &h,
    };
    let n = allocations(|| drop(nocache.decide(&r, &NoRemoteKeys, &mut full, NOW)));
    println!("fresh-cache-1024\t{with:.0}\t{:.2}\t{n}", 1e6 / with);
    println!("fresh-cache-0\t{without:.0}\t{:.2}", 1e6 / without);
    // A session cookie (what a logged-in browser sends on every request): opened (HMAC, claims)
    // on each request.
    let secret =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [7u8; 32]);
    let cfg = serde_json::json!({
        "realm": "bench",
        "session": {"keys": [{"kid": "s1", "secret": secret}]},
        "rules": [{"name": "app", "match": {"path": {"prefix": "/"}}, "credentials": ["session"]}]
    });
    let se = Engine::from_json(cfg.to_string().as_bytes()).unwrap();
    let mut id = edgegate::Identity::new("user-1", edgegate::CredentialKind::Jwt, "bench");
    id.email = Some("user-1@example.com".into());
    id.roles = vec!["staff".into()];
    let sealed = se.sessions().unwrap().seal(&id, NOW - 10).unwrap();
    let cookie = format!("edgegate_session={sealed}");
    let sh = [("cookie", cookie.as_str()), ("user-agent", "wrk")];
    let sreq = Request {
        method: "GET",
        path: "/bench",
        headers: &sh,
    };
    let mut scache = se.new_cache();
    let session = measure(budget, || {
        let v = se.decide(black_box(&sreq), &NoRemoteKeys, &mut scache, NOW);
        assert!(matches!(v, Step::Done(Verdict::Allow { .. })));
    });
    let n = allocations(|| drop(se.decide(&sreq, &NoRemoteKeys, &mut scache, NOW)));
    println!("session-decide\t{session:.0}\t{:.2}\t{n}", 1e6 / session);
    use sha2::Digest as _;
    let sha = measure(budget, || {
        black_box(sha2::Sha256::digest(black_box(token.as_bytes())));
    });
    println!("sha256-token\t{sha:.0}\t{:.2}", 1e6 / sha);
}
