//! Helpers shared by this crate's test files (each test binary uses a part of them).
#![allow(dead_code)]

use host_tests::Host;
use serde_json::Value;

/// The clock the real filter's tests run at (seconds since the Unix epoch).
pub const NOW: u64 = 1_760_000_000;
/// The audience of the test tokens.
pub const AUD: &str = "edgegate-tests";

/// The real filter (release `.wasm`) configured with `cfg` at [`NOW`], with vm and root id
/// "edgegate", as Envoy runs it; `setup` adjusts the host first.
pub fn filter_host(cfg: &Value, setup: impl FnOnce(&mut Host)) -> Host {
    let mut host = Host::load(host_tests::filter_wasm().unwrap_or_else(|e| panic!("{e}"))).unwrap();
    setup(&mut host);
    host.set_ids("edgegate", "edgegate");
    host.set_time(NOW);
    let ok = host.configure(serde_json::to_vec(cfg).unwrap()).unwrap();
    assert!(ok, "config refused: {:#?}", host.logs());
    host
}

/// The module never trapped and never called an import this host only stubs.
pub fn no_traps_or_stubs(host: &Host) {
    assert!(
        host.traps().is_empty(),
        "the module trapped: {:#?}",
        host.traps()
    );
    assert!(
        host.unknown_calls().is_empty(),
        "stubbed imports called: {:?}",
        host.unknown_calls()
    );
}

/// A filter counter as Envoy has it after the filter's next tick: the filter adds its counts up
/// in the VM and hands them to the host on the root context's tick, not on the request's path.
pub fn counted(host: &mut Host, name: &str) -> Option<i64> {
    assert!(
        host.tick().unwrap(),
        "the filter always keeps a tick period"
    );
    host.metric(name)
}
