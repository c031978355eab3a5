//! What one request costs the Envoy filter's wasm, counted, not timed: wasm instructions executed
//! (wasmtime fuel) and host calls, per request, for the shipped release module, next to the
//! no-op filter (`envoy/noop-filter`). Instruction counts do not drift with the machine's load, so
//! they show a change in the filter's own work exactly, where `envoy/bench.sh` (req/s in a real
//! Envoy) cannot separate it from the noise. Wall time under wasmtime is printed too.
//!
//!   envoy/build.sh && (cd envoy/noop-filter && cargo build --release --target wasm32-unknown-unknown)
//!   cargo run -p host-tests --release --example wasm_cost [-- --between]
//!
//! `--between` also prints, for one request of each kind, the instructions executed between
//! consecutive host calls (where the filter's own work goes).
//!
//! `EDGEGATE_WASM` / `NOOP_WASM` point at other builds (e.g. a baseline for a before/after).
//! The requests are those of `envoy/bench.sh`: `GET /bench` with an RS256 (2048-bit) or ES256
//! token of the benchmark's claims, repeated (a cache hit), and a public rule.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use edgegate_testkit::test_keys;

use std::time::Instant;

use host_tests::{Action, Host};
use serde_json::json;

const NOW: u64 = 1_760_000_000;

fn request(path: &str, token: Option<&str>) -> Vec<(String, Vec<u8>)> {
    // What Envoy hands the filter for wrk's request (pseudo-headers, then wrk's and Envoy's own).
    let mut h: Vec<(String, Vec<u8>)> = vec![
        (":authority".into(), b"127.0.0.1:10000".to_vec()),
        (":path".into(), path.as_bytes().to_vec()),
        (":method".into(), b"GET".to_vec()),
        (":scheme".into(), b"http".to_vec()),
    ];
    if let Some(t) = token {
        h.push(("authorization".into(), format!("Bearer {t}").into_bytes()));
    }
    h.push(("x-forwarded-proto".into(), b"http".to_vec()));
    h.push((
        "x-request-id".into(),
        b"3f0b0a52-8f7e-4a44-9d1c-6a3f5f1b2c3d".to_vec(),
    ));
    h
}

fn measure(host: &mut Host, headers: &[(String, Vec<u8>)], label: &str) {
    for _ in 0..200 {
        let mut s = host.request(headers);
        assert_eq!(s.headers(), Action::Continue, "{label}: not allowed");
    }
    host.take_host_calls();
    host.take_fuel_used();
    host.trace_fuel(true);
    {
        let mut s = host.request(headers);
        s.headers();
    }
    let calls = host.take_host_calls();
    let marks = host.take_fuel_marks();
    host.trace_fuel(false);
    let traced = host.take_fuel_used();
    let n: u32 = 5000;
    let t = Instant::now();
    for _ in 0..n {
        let mut s = host.request(headers);
        s.headers();
    }
    let ns = t.elapsed().as_nanos() / u128::from(n);
    let fuel = host.take_fuel_used() / u64::from(n);
    println!("{label:<34} {fuel:>12} {:>10} {ns:>16}", calls.len());
    if std::env::args().any(|a| a == "--between") {
        // Instructions executed before each host call, counted from the previous one.
        let mut last = 0;
        for (name, at) in marks {
            println!("    {:>8}  then {name}", at.saturating_sub(last));
            last = at;
        }
        println!(
            "    {:>8}  then the stream's end",
            traced.saturating_sub(last)
        );
    }
}

fn main() {
    let wasm = host_tests::filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    let noop = host_tests::locate_wasm(
        "NOOP_WASM",
        "edgegate_noop_filter.wasm",
        "(cd envoy/noop-filter && cargo build --release --target wasm32-unknown-unknown)",
    );
    let claims = json!({
        "iss": "https://idp.bench", "aud": "bench-api", "sub": "user-1",
        "email": "user-1@example.com", "roles": ["staff"], "iat": NOW - 10, "exp": NOW + 3600,
        "jti": "8f14e45fceea167a5a36dedd4bea2543"
    })
    .to_string();
    let jwks = json!({"keys": [
        serde_json::from_str::<serde_json::Value>(&test_keys::rsa_jwk("rsa", 2048)).unwrap(),
        serde_json::from_str::<serde_json::Value>(&test_keys::p256_jwk("p256")).unwrap(),
    ]});
    let cfg = json!({
        "realm": "bench",
        "jwt": {"providers": [{
            "name": "bench", "issuer": "https://idp.bench", "audiences": ["bench-api"],
            "algorithms": ["RS256", "ES256"], "jwks": jwks, "claims": {"roles": ["roles"]}
        }]},
        "rules": [
            {"name": "public", "match": {"path": {"prefix": "/public"}}, "credentials": [], "require": {"public": true}},
            {"name": "api", "match": {"path": {"prefix": "/"}}, "credentials": ["jwt"]}
        ]
    });
    let mut host = Host::load(&wasm).unwrap();
    host.set_ids("edgegate", "edgegate");
    host.set_time(NOW);
    assert!(
        host.configure(serde_json::to_vec(&cfg).unwrap()).unwrap(),
        "{:#?}",
        host.logs()
    );
    println!("module: {}", wasm.display());
    println!(
        "{:<34} {:>12} {:>10} {:>16}",
        "request", "wasm instr", "host calls", "wasmtime ns/req"
    );
    measure(
        &mut host,
        &request("/public/x", None),
        "edgegate, public rule",
    );
    for alg in ["RS256", "ES256"] {
        let token = test_keys::token(alg, Some(test_keys::kid_for(alg)), &claims);
        let label = format!("edgegate, cached {alg} ({} B)", token.len());
        measure(&mut host, &request("/bench", Some(&token)), &label);
    }
    // The job jwt_authn does in envoy/bench.sh: one identity header upstream (the subject).
    let mut subject_only = cfg.clone();
    subject_only["identity_headers"] = json!({"send": ["subject"]});
    let mut one = Host::load(&wasm).unwrap();
    one.set_ids("edgegate", "edgegate");
    one.set_time(NOW);
    assert!(one
        .configure(serde_json::to_vec(&subject_only).unwrap())
        .unwrap());
    let token = test_keys::token("RS256", Some(test_keys::kid_for("RS256")), &claims);
    measure(
        &mut one,
        &request("/bench", Some(&token)),
        "edgegate, cached RS256, send: subject",
    );
    match noop {
        Ok(noop) => {
            let token = test_keys::token("RS256", Some("rsa"), &claims);
            for (conf, label) in [
                ("", "no-op filter"),
                ("0,0,1", "no-op + header map and clock read"),
                ("0,7", "no-op + 7 headers set"),
                ("1,1,1", "no-op + map, clock, 1 removal, 1 set"),
            ] {
                let mut h = Host::load(&noop).unwrap();
                h.set_time(NOW);
                assert!(h.configure(conf.as_bytes()).unwrap());
                measure(&mut h, &request("/bench", Some(&token)), label);
            }
        }
        Err(e) => println!("(no-op filter skipped: {e})"),
    }
}
