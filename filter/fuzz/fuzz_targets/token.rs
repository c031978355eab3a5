//! Any string as a compact JWS: parsing and claim parsing must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(jws) = edgegate::jws::parse(s, 16 * 1024) {
            let _ = jws.claims();
        }
    }
});
