//! Any bytes as a config: loading must refuse cleanly, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = edgegate::engine::Engine::from_json(data);
});
