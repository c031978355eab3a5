//! The fuzz targets' config must load (they panic at start otherwise, which would look like a finding).

#[test]
fn fuzz_config_loads() {
    let cfg = include_str!("../../fuzz/config.json");
    if let Err(e) = edgegate::Engine::from_json(cfg.as_bytes()) {
        panic!("filter/fuzz/config.json refused:\n{e}");
    }
}
