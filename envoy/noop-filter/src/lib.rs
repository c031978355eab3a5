//! A proxy-wasm HTTP filter that lets every request through untouched (benchmark baseline).
//!
//! Its plugin configuration is a number N (empty: 0): each request then makes N host calls that
//! remove a header the request does not have, to price one host call (envoy/bench.py's
//! `wasm-hostcalls` config). `N,K` also sets K request headers (`x-noop-set-<i>: value-<i>`) that
//! go upstream, as edgegate's identity headers do (config `wasm-setheaders`). `N,K,R` with R > 0
//! also reads the header map and the clock first (`wasm-readheaders`). `N,K,R,M` chooses how the
//! K headers are set: M = 0 one replace call each (`proxy_replace_header_map_value`), 1 one add
//! call each (`proxy_add_header_map_value`), 2 the whole map written back once with the K headers
//! appended (`proxy_set_header_map_pairs`; reads the map itself).

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { plan: Rc::new(Plan::default()) }) });
}}

/// What each request does, read from the plugin configuration.
#[derive(Default)]
struct Plan {
    /// Headers the request does not have, removed with one host call each.
    names: Vec<String>,
    /// Headers set on the request, which go upstream.
    set: Vec<(String, String)>,
    /// Read the request's header map and the clock, as edgegate does once per request.
    read: bool,
    /// How headers are set: 0 replace each, 1 add each, 2 the whole map at once.
    how: usize,
}

struct Root {
    plan: Rc<Plan>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let conf = self.get_plugin_configuration().unwrap_or_default();
        let text = std::str::from_utf8(&conf).unwrap_or("");
        let mut parts = text.trim().split(',');
        let mut num = || -> usize {
            parts
                .next()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0usize)
                .min(1000)
        };
        let (n, k, r, m) = (num(), num(), num(), num());
        self.plan = Rc::new(Plan {
            names: (0..n).map(|i| format!("x-noop-absent-{i}")).collect(),
            set: (0..k)
                .map(|i| (format!("x-noop-set-{i}"), format!("value-{i}")))
                .collect(),
            read: r > 0,
            how: m,
        });
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass {
            plan: Rc::clone(&self.plan),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Pass {
    plan: Rc<Plan>,
}

impl Context for Pass {}

impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        let plan = &*self.plan;
        if plan.read {
            let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
            let _ = hostcalls::get_current_time();
            if headers.len() > 1000 {
                return Action::Pause;
            }
        }
        for name in plan.names.iter() {
            let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None);
        }
        // Read once: the host calls below could not change it, but the compiler cannot know.
        let how = plan.how;
        if how == 2 && !plan.set.is_empty() {
            let current = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
            let mut all: Vec<(&str, &[u8])> = current
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            all.extend(plan.set.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
            let _ = hostcalls::set_map_bytes(MapType::HttpRequestHeaders, all);
            return Action::Continue;
        }
        for (name, value) in plan.set.iter() {
            if how == 1 {
                let _ = hostcalls::add_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    name,
                    value.as_bytes(),
                );
            } else {
                let _ = hostcalls::set_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    name,
                    Some(value.as_bytes()),
                );
            }
        }
        Action::Continue
    }
}
