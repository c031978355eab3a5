//! Counters, through the proxy-wasm metrics ABI (names and what a verdict counts:
//! `edgegate_envoy_glue::metrics`, shared with the native module).
//!
//! The ABI has no labels, so a label is written into the name — `edgegate_denied.reason.bad_signature`
//! — and Envoy's `stats_config.stats_tags` turns it back into one (see `envoy/envoy.yaml`):
//! Envoy names wasm metrics `wasmcustom.<name>`, and `/stats/prometheus` then shows
//! `edgegate_denied{reason="bad_signature"}`. Without the tag rules the label stays part of the
//! name (`edgegate_denied_reason_bad_signature`), which still works.

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

pub use edgegate_envoy_glue::metrics::{
    label_value, Counters, ALLOWED, API_KEYS_FETCH_FAILED, API_KEYS_FETCH_OK, CACHE_HIT,
    CACHE_MISS, DENIED, JWKS_FETCH_FAILED, JWKS_FETCH_OK,
};

/// Metric ids, defined on first use (defining is idempotent in Envoy, but a host call per
/// request is not free). Labeled ids are kept by their parts, so counting one builds no name.
#[derive(Default)]
pub struct Metrics {
    ids: HashMap<&'static str, u32>,
    labeled: Vec<(&'static str, &'static str, String, u32)>,
}

impl Metrics {
    /// Adds one to `name`.
    pub fn inc(&mut self, name: &'static str) {
        let id = match self.ids.get(name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    self.ids.insert(name, id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    }

    /// Adds one to `name` with the label `label=value` (value reduced to `[a-z0-9_]`).
    pub fn inc_labeled(&mut self, name: &'static str, label: &'static str, value: &str) {
        let known = self
            .labeled
            .iter()
            .find(|(n, l, v, _)| *n == name && *l == label && v == value)
            .map(|(_, _, _, id)| *id);
        let id = match known {
            Some(id) => id,
            None => {
                let full = format!("{name}.{label}.{}", label_value(value));
                match hostcalls::define_metric(MetricType::Counter, &full) {
                    Ok(id) => {
                        // Bounded: the values are reason and credential codes.
                        if self.labeled.len() < MAX_LABELED {
                            self.labeled.push((name, label, value.to_string(), id));
                        }
                        id
                    }
                    Err(_) => return,
                }
            }
        };
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Counters for Metrics {
    fn inc(&mut self, name: &'static str) {
        Metrics::inc(self, name);
    }

    fn inc_labeled(&mut self, name: &'static str, label: &'static str, value: &str) {
        Metrics::inc_labeled(self, name, label, value);
    }
}

/// Most labeled ids kept (there are a few dozen reason and credential codes).
const MAX_LABELED: usize = 256;
