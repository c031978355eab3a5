//! Counters, through the proxy-wasm metrics ABI.
//!
//! The ABI has no labels, so a label is written into the name — `edgegate_denied.reason.bad_signature`
//! — and Envoy's `stats_config.stats_tags` turns it back into one (see `envoy/envoy.yaml`):
//! Envoy names wasm metrics `wasmcustom.<name>`, and `/stats/prometheus` then shows
//! `edgegate_denied{reason="bad_signature"}`. Without the tag rules the label stays part of the
//! name (`edgegate_denied_reason_bad_signature`), which still works.

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

pub const ALLOWED: &str = "edgegate_allowed";
pub const DENIED: &str = "edgegate_denied";
pub const JWKS_FETCH_OK: &str = "edgegate_jwks_fetch_ok";
pub const JWKS_FETCH_FAILED: &str = "edgegate_jwks_fetch_failed";
pub const CACHE_HIT: &str = "edgegate_cache_hit";
pub const CACHE_MISS: &str = "edgegate_cache_miss";

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

/// Most labeled ids kept (there are a few dozen reason and credential codes).
const MAX_LABELED: usize = 256;

/// A label value safe inside an Envoy stat name and a Prometheus label: `[a-z0-9_]`, at most 64
/// characters (codes already are; this guards names that come from config).
pub fn label_value(v: &str) -> String {
    let mut out: String = v
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_safe() {
        assert_eq!(label_value("bad_signature"), "bad_signature");
        assert_eq!(label_value("Api.Key x"), "api_key_x");
        assert_eq!(label_value(""), "none");
        assert_eq!(label_value(&"a".repeat(100)).len(), 64);
    }
}
