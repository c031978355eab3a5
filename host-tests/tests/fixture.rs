//! Proves the host against the fixture filter (proxy-wasm Rust SDK 0.2): every host call the SDK
//! makes, Envoy's status codes and availability rules, and trap detection.
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod support;

use host_tests::{Action, Host, MetricKind, Stream};
use std::time::Duration;
use support::no_traps_or_stubs;

fn host() -> Host {
    let path = host_tests::fixture_wasm().unwrap_or_else(|e| panic!("{e}"));
    let mut host = Host::load(&path).unwrap();
    host.set_ids("vm-a", "edgegate_root");
    assert!(
        host.configure(b"{}").unwrap(),
        "fixture refused a plain config"
    );
    host
}

fn get(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":path", path.into()),
        (":authority", "example.com".into()),
    ]
}

/// GETs `path`, which must go upstream; returns the request header `name` the fixture set.
fn upstream_header(host: &mut Host, path: &str, name: &str) -> String {
    let mut req = host.request(&get(path));
    assert_eq!(req.headers(), Action::Continue, "{path}");
    let up = req.upstream_headers().unwrap();
    up.get(name)
        .unwrap_or_else(|| panic!("{path}: no {name} upstream: {up:?}"))
}

/// Sends a request to `path` in parts: the headers, then each body chunk (the last one ends the
/// stream). Returns the stream and what the fixture did with each part.
fn upload(host: &mut Host, path: &str, chunks: &[&[u8]]) -> (Stream, Vec<Action>) {
    let mut req = host.request(&get(path));
    let mut actions = vec![req.send_headers(false)];
    for (i, chunk) in chunks.iter().enumerate() {
        actions.push(req.body(chunk, i + 1 == chunks.len()));
    }
    (req, actions)
}

/// The trap message of a callback that trapped.
fn trap(a: Action) -> String {
    let Action::Failed(msg) = a else {
        panic!("expected a trap, got {a:?}")
    };
    msg
}

/// GETs `path`, on which the fixture calls out and pauses: the stream and the callout's token.
fn paused_on_callout(host: &mut Host, path: &str) -> (Stream, u32) {
    let mut req = host.request(&get(path));
    assert_eq!(req.headers(), Action::Pause, "{path}");
    let token = host.pending_http_calls()[0].token;
    (req, token)
}

#[test]
fn every_import_is_implemented_and_configure_runs_the_lifecycle() {
    let host = host();
    assert!(
        host.stubbed_imports().is_empty(),
        "imports without implementation: {:?}",
        host.stubbed_imports()
    );
    assert!(host.logged("vm start"));
    assert!(host.logged("configured: {}"));
    assert_eq!(host.tick_period(), Some(Duration::from_secs(1)));
    assert_eq!(host.root_context(), Some(1));
    no_traps_or_stubs(&host);
}

#[test]
fn a_refused_configuration_is_reported_as_false() {
    let path = host_tests::fixture_wasm().unwrap();
    let mut host = Host::load(&path).unwrap();
    assert!(!host.configure(b"please refuse").unwrap());
    assert!(host.logged("configuration refused"));
    no_traps_or_stubs(&host);
}

#[test]
fn header_reads_and_writes_follow_envoy_semantics() {
    let mut host = host();
    let mut h = get("/headers");
    h.push(("X-Replace", "old".into()));
    h.push(("x-remove", "gone".into()));
    h.push(("x-multi", "a".into()));
    h.push(("x-multi", "b".into()));
    let mut req = host.request(&h);
    assert_eq!(req.headers(), Action::Continue);
    let up = req.upstream_headers().expect("continued upstream");
    assert_eq!(up.get("x-added").as_deref(), Some("1"));
    assert_eq!(up.get_all("x-replace"), vec!["new"]);
    assert!(!up.contains("x-remove"));
    // 3 pseudo + replace + multi*2 + added (x-remove already gone) = 7 at the time of counting.
    assert_eq!(up.get("x-count").as_deref(), Some("7"));
    assert_eq!(up.get("x-first-multi").as_deref(), Some("a"));
    assert_eq!(up.get("x-absent-is-none").as_deref(), Some("true"));
    req.finish();
    assert!(
        host.logged("on_log path=/headers"),
        "request headers are readable in on_log"
    );
    assert_eq!(
        host.live_contexts(),
        1,
        "stream context deleted after finish"
    );
    no_traps_or_stubs(&host);
}

#[test]
fn local_reply_goes_through_the_filters_response_callbacks() {
    let mut host = host();
    let mut req = host.request(&get("/local"));
    let Action::LocalResponse(r) = req.headers() else {
        panic!("expected a local reply")
    };
    assert_eq!(r.status, 403);
    assert_eq!(r.body_str(), "denied");
    assert_eq!(r.headers.get("x-reason").as_deref(), Some("nope"));
    assert_eq!(r.headers.get_all("content-type"), vec!["text/plain"]);
    assert_eq!(r.headers.get("content-length").as_deref(), Some("6"));
    assert_eq!(r.headers.get("x-fixture-response").as_deref(), Some("1"));
    assert!(req.upstream_headers().is_none());
    no_traps_or_stubs(&host);

    let mut host2 = self::host();
    host2.set_local_reply_through_filter(false);
    let mut req = host2.request(&get("/local"));
    let r = req.headers();
    assert!(!r.local().unwrap().headers.contains("x-fixture-response"));
}

#[test]
fn shared_data_cas_is_envoys() {
    let mut host = host();
    let mut req = host.request(&get("/cas"));
    assert_eq!(req.headers(), Action::Continue);
    let up = req.upstream_headers().unwrap();
    assert_eq!(
        up.get("x-cas").as_deref(),
        Some("Ok(())/Ok(())/Err(CasMismatch)/Ok(())")
    );
    let (value, cas) = host.shared_data("counter").unwrap();
    assert_eq!(value, b"2");
    assert_ne!(cas, 0);
    // Another VM sees the same data; its write bumps the cas.
    let mut other = host.spawn_vm().unwrap();
    assert!(other.configure(b"{}").unwrap());
    assert_eq!(other.shared_data("counter").unwrap().0, b"2");
    other.set_shared_data("counter", b"9");
    let (v2, cas2) = host.shared_data("counter").unwrap();
    assert_eq!(v2, b"9");
    assert_ne!(cas, cas2);
    // Namespaced by vm_id.
    let mut foreign = host.spawn_vm().unwrap();
    foreign.set_ids("vm-b", "edgegate_root");
    assert!(foreign.shared_data("counter").is_none());
    no_traps_or_stubs(&host);
}

#[test]
fn http_call_pauses_then_resumes_with_headers_set_in_the_callback() {
    let mut host = host();
    let mut req = host.request(&get("/call"));
    assert_eq!(req.headers(), Action::Pause);
    assert!(req.upstream_headers().is_none());
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.upstream, "upstream");
    assert_eq!(c.headers.get(":method").as_deref(), Some("POST"));
    assert_eq!(c.headers.get(":path").as_deref(), Some("/info"));
    assert_eq!(c.body, b"ping");
    assert_eq!(c.timeout_ms, 1000);
    host.respond_http_call(c.token, 200, &[("x-h", "1")], b"pong")
        .unwrap();
    assert_eq!(req.state(), Action::Continue);
    let up = req.upstream_headers().unwrap();
    assert_eq!(up.get("x-call-body").as_deref(), Some("pong"));
    assert_eq!(up.get("x-call-headers").as_deref(), Some("2"));
    assert!(host.pending_http_calls().is_empty());
    assert!(
        host.respond_http_call(c.token, 200, &[], b"").is_err(),
        "a token answers once"
    );
    no_traps_or_stubs(&host);
}

#[test]
fn http_call_error_status_and_reset_become_local_replies() {
    let mut host = host();
    let (req, t) = paused_on_callout(&mut host, "/call");
    host.respond_http_call(t, 500, &[], b"").unwrap();
    let r = req.state();
    assert_eq!(r.local().unwrap().status, 502);
    assert_eq!(
        r.local()
            .unwrap()
            .headers
            .get("x-upstream-status")
            .as_deref(),
        Some("500")
    );

    let (req, t) = paused_on_callout(&mut host, "/call");
    host.fail_http_call(t).unwrap();
    assert_eq!(req.state().local().unwrap().status, 504);

    let (req, t) = paused_on_callout(&mut host, "/call");
    host.timeout_http_call(t).unwrap();
    assert_eq!(req.state().local().unwrap().status, 502);
    no_traps_or_stubs(&host);
}

#[test]
fn reading_a_header_of_a_reset_callout_traps_as_in_envoy() {
    let mut host = host();
    let (req, t) = paused_on_callout(&mut host, "/call-careless");
    assert!(host.fail_http_call(t).is_err());
    assert!(matches!(req.state(), Action::Failed(_)));
    assert!(
        host.logged("unexpected status: 2"),
        "SDK panics on BAD_ARGUMENT"
    );
}

#[test]
fn unknown_cluster_and_missing_pseudo_headers_are_bad_argument() {
    let mut host = host();
    assert_eq!(
        upstream_header(&mut host, "/bad-call", "x-call-error"),
        "Some(BadArgument)"
    );
    host.set_clusters(&["idp"]);
    let mut req = host.request(&get("/call"));
    let r = req.headers();
    assert_eq!(r.local().unwrap().status, 500);
    assert_eq!(r.local().unwrap().body_str(), "BadArgument");
    no_traps_or_stubs(&host);
}

#[test]
fn body_sent_while_headers_are_paused_is_delivered_after_resume() {
    let mut host = host();
    let (req, actions) = upload(&mut host, "/call", &[b"ab", b"c"]);
    assert_eq!(actions, [Action::Pause, Action::Pause, Action::Pause]);
    assert!(
        !host.logged("request body"),
        "no body callback while headers are paused"
    );
    let t = host.pending_http_calls()[0].token;
    host.respond_http_call(t, 200, &[], b"ok").unwrap();
    assert_eq!(req.state(), Action::Continue);
    assert!(host.logged("request body 3 bytes, end=true"));
    assert_eq!(req.upstream_body(), b"abc");
    no_traps_or_stubs(&host);
}

#[test]
fn body_buffering_and_rewrite() {
    let mut host = host();
    let (_buffered, actions) = upload(&mut host, "/body", &[b"de", b"ny"]);
    assert_eq!(actions[..2], [Action::Continue, Action::Pause]);
    assert_eq!(
        actions[2].local().unwrap().status,
        401,
        "sees the whole buffered body"
    );
    assert!(host.logged("request body 4 bytes, end=true"));

    let (req, actions) = upload(&mut host, "/body", &[b"hello"]);
    assert_eq!(actions, [Action::Continue, Action::Continue]);
    assert_eq!(req.upstream_body(), b"rewritten");
    no_traps_or_stubs(&host);
}

#[test]
fn writing_request_headers_after_they_went_upstream_traps() {
    let mut host = host();
    let (_req, actions) = upload(&mut host, "/late-header", &[b"x"]);
    assert_eq!(actions[0], Action::Continue);
    assert!(matches!(actions[1], Action::Failed(_)));
    assert_eq!(host.traps().len(), 1);
    assert!(host.logged("unexpected status: 2"));
}

#[test]
fn a_panic_is_a_trap_and_the_vm_stays_failed() {
    let mut host = host();
    let mut req = host.request(&get("/panic"));
    let msg = trap(req.headers());
    assert!(msg.contains("proxy_on_request_headers"), "{msg}");
    assert!(host.logged("fixture panics on purpose"));
    let mut next = host.request(&get("/headers"));
    assert!(
        matches!(next.headers(), Action::Failed(_)),
        "a failed VM serves nothing"
    );
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let mut host = host();
    host.set_fuel_per_call(5_000_000);
    let mut req = host.request(&get("/loop"));
    let msg = trap(req.headers());
    assert!(msg.to_lowercase().contains("fuel"), "{msg}");
}

#[test]
fn ticks_follow_the_clock_and_shared_state_spans_vms() {
    let mut a = host();
    let mut b = a.spawn_vm().unwrap();
    assert!(b.configure(b"{}").unwrap());
    assert_eq!(a.advance(Duration::from_millis(3500)).unwrap(), 3);
    assert!(b.tick().unwrap());
    assert!(b.tick().unwrap());
    assert_eq!(a.shared_data("ticks").unwrap().0, b"5");
    assert_eq!(a.metric("fixture_ticks"), Some(5), "stats are process-wide");
    assert_eq!(a.advance(Duration::from_millis(400)).unwrap(), 0);
    assert_eq!(a.advance(Duration::from_millis(100)).unwrap(), 1);
    no_traps_or_stubs(&a);
    no_traps_or_stubs(&b);
}

#[test]
fn root_context_callout_on_tick() {
    let path = host_tests::fixture_wasm().unwrap();
    let mut host = Host::load(&path).unwrap();
    assert!(host.configure(b"fetch").unwrap());
    host.tick().unwrap();
    let calls = host.pending_http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].upstream, "idp");
    assert_eq!(calls[0].headers.get(":path").as_deref(), Some("/keys"));
    host.respond_http_call(calls[0].token, 200, &[], b"KEYS")
        .unwrap();
    assert_eq!(host.shared_data("keys").unwrap().0, b"KEYS");

    host.tick().unwrap();
    let t = host.pending_http_calls()[0].token;
    host.fail_http_call(t).unwrap();
    assert!(host.logged("key fetch failed"));

    host.set_clusters(&["other"]);
    host.tick().unwrap();
    assert!(host.pending_http_calls().is_empty());
    assert!(host.logged("key fetch not dispatched: BadArgument"));
    no_traps_or_stubs(&host);
}

#[test]
fn shared_queue_notifies_the_registering_vm() {
    let mut a = host();
    let mut b = a.spawn_vm().unwrap();
    assert!(b.configure(b"{}").unwrap());
    assert_eq!(upstream_header(&mut a, "/queue", "x-enqueue"), "Ok(())");
    // The queue name was registered last by VM b: Envoy notifies b.
    assert_eq!(a.dispatch().unwrap(), 0);
    assert_eq!(b.dispatch().unwrap(), 1);
    assert!(b.logged("18 bytes"));
    assert_eq!(
        a.shared_data("last_queue_message").unwrap().0,
        b"hello from request"
    );
    no_traps_or_stubs(&a);
    no_traps_or_stubs(&b);
}

#[test]
fn metrics_follow_envoy_rules() {
    let mut host = host();
    // requests counter = 1; gauge 42 - 2; histogram get = BadArgument; counter += 0 = BadArgument.
    assert_eq!(
        upstream_header(&mut host, "/metrics", "x-metrics"),
        "1/40/Err(BadArgument)/Err(BadArgument)"
    );
    assert_eq!(host.metric("fixture_requests"), Some(1));
    assert_eq!(host.metric("fixture_gauge"), Some(40));
    let m = host.metrics();
    assert_eq!(
        m[&(MetricKind::Histogram, "fixture_hist".to_string())].samples,
        vec![7]
    );
    no_traps_or_stubs(&host);
}

#[test]
fn properties_time_logs_and_effective_context() {
    let mut host = host();
    host.set_time(1_800_000_000);
    let mut req = host.request(&get("/time"));
    req.headers();
    assert_eq!(
        req.upstream_headers().unwrap().get("x-now").as_deref(),
        Some("1800000000")
    );
    let mut req = host.request(&get("/property"));
    req.headers();
    let up = req.upstream_headers().unwrap();
    assert_eq!(up.get("x-root-id").as_deref(), Some("edgegate_root"));
    assert_eq!(up.get("x-missing-property").as_deref(), Some("true"));
    let mut req = host.request(&get("/effective"));
    req.headers();
    assert_eq!(
        req.upstream_headers()
            .unwrap()
            .get("x-effective")
            .as_deref(),
        Some("Err(BadArgument)")
    );
    let mut req = host.request(&get("/log"));
    req.headers();
    let levels: Vec<u32> = host
        .logs()
        .iter()
        .filter(|l| l.message.starts_with("log "))
        .map(|l| l.level)
        .collect();
    assert_eq!(levels, vec![0, 1, 2, 3, 4]);
    no_traps_or_stubs(&host);
}

#[test]
fn non_utf8_header_values_reach_the_filter_as_bytes() {
    let mut host = host();
    let mut req = host.request(&[
        (":method", &b"GET"[..]),
        (":path", b"/bytes"),
        ("x-raw", b"\xff\xfe"),
    ]);
    assert_eq!(req.headers(), Action::Continue);
    assert_eq!(
        req.upstream_headers().unwrap().get("x-raw-len").as_deref(),
        Some("2")
    );
    no_traps_or_stubs(&host);
    // The SDK's String getters unwrap from_utf8: this is what a hostile client can do to a filter
    // that uses them.
    let mut req = host.request(&[
        (":method", &b"GET"[..]),
        (":path", b"/utf8"),
        ("x-raw", b"\xff"),
    ]);
    assert!(matches!(req.headers(), Action::Failed(_)));
}

#[test]
fn response_headers_pass_through_the_filter() {
    let mut host = host();
    let mut req = host.request(&get("/"));
    assert_eq!(req.headers(), Action::Continue);
    assert_eq!(
        req.respond(&[(":status", "200"), ("content-type", "text/html")], false),
        Action::Continue
    );
    assert_eq!(req.respond_body(b"<p>", true), Action::Continue);
    let down = req.downstream_headers().unwrap();
    assert_eq!(down.get("x-fixture-response").as_deref(), Some("1"));
    assert_eq!(req.downstream_body(), b"<p>");
    no_traps_or_stubs(&host);
}
