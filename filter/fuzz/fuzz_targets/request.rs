//! Arbitrary credentials and paths through a full engine (every credential kind configured):
//! `decide` must never panic.
#![no_main]
use std::sync::OnceLock;

use edgegate::engine::Engine;
use edgegate::extractor::Request;
use edgegate::verifier::NoRemoteKeys;
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let cfg = include_str!("../../../envoy/demo/edgegate.json");
        match Engine::from_json(cfg.as_bytes()) {
            Ok(e) => e,
            Err(e) => panic!("demo config refused: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let mut parts = s.splitn(3, '\n');
    let path = parts.next().unwrap_or("/");
    let auth = parts.next().unwrap_or("");
    let cookie = parts.next().unwrap_or("");
    let headers = [("authorization", auth), ("cookie", cookie), ("x-api-key", auth), ("accept", "text/html")];
    let req = Request { method: "GET", path, headers: &headers };
    let e = engine();
    let mut cache = e.new_cache();
    let _ = e.decide(&req, &NoRemoteKeys, &mut cache, 1_800_000_000);
    let _ = e.magic_link_consume(data, 1_800_000_000);
});
