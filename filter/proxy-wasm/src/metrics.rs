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
///
/// Counts are added up in the VM and handed to Envoy by [`flush`](Metrics::flush), which the
/// root context calls on its tick (at least once a second, see `FLUSH_TICK`): the two counters
/// of an allow cost no host call on the request's path, and Envoy's counters lag the requests
/// by at most that tick.
#[derive(Default)]
pub struct Metrics {
    ids: HashMap<&'static str, u32>,
    labeled: Vec<(&'static str, &'static str, String, u32)>,
    /// Counts not yet handed to Envoy, by metric id.
    pending: Vec<(u32, u64)>,
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
        self.add(id);
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
        self.add(id);
    }

    fn add(&mut self, id: u32) {
        match self.pending.iter_mut().find(|(i, _)| *i == id) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.pending.push((id, 1)),
        }
    }

    /// Hands the counts added since the last flush to Envoy (one host call per counter that
    /// moved).
    pub fn flush(&mut self) {
        for (id, n) in self.pending.drain(..) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
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
