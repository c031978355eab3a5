//! edgegate as an Envoy proxy-wasm HTTP filter.
//!
//! Plumbing stage: the filter loads, reads its JSON configuration, and passes requests through,
//! marking them with `x-edgegate-filter: on` so tests can see it ran. The engine lands next.
#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(_)) => {
                log::info!("configured");
                true
            }
            Ok(_) => {
                log::error!("configuration must be a JSON object");
                false
            }
            Err(e) => {
                log::error!("configuration is not JSON: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http;

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.set_http_request_header("x-edgegate-filter", Some("on"));
        Action::Continue
    }
}
