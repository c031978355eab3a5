//! The `login.device` section: RFC 8628 device authorization brokered by edgegate, compiled
//! into [`Device`].

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Problems};

/// `login.device`: edgegate brokers the OAuth 2.0 device authorization grant (RFC 8628) for
/// devices without a browser (a CLI, a TV, a headless machine). The device asks
/// `POST <path>/code`, the user confirms its code at `GET <path>` after logging in through the
/// `login` flow, the device polls `POST <path>/token` and receives an edgegate credential
/// (`Authorization: Bearer egs_…`) that rules accepting `session` take. Needs state: the worker
/// keeps it in the `DEVICE_GRANTS` Durable Object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Serve the device routes. Default true (the section is the opt-in).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The verification page (`GET`, and the approve/deny `POST`); `<path>/code` and
    /// `<path>/token` are the device's endpoints. Default `/auth/device`.
    #[serde(default = "default_path")]
    pub path: String,
    /// How long a device code and its user code live, in seconds (RFC 8628 `expires_in`).
    /// Default 600; 10 to 3600.
    #[serde(default = "default_code_ttl")]
    pub code_ttl_s: u64,
    /// The least number of seconds between two polls (RFC 8628 `interval`); a device polling
    /// faster gets `slow_down` and 5 s more. Default 5; 1 to 60.
    #[serde(default = "default_interval")]
    pub interval_s: u64,
    /// How long the credential a device receives is valid, in seconds, at most: never beyond
    /// the confirming session's own expiry. Default 3600 (or `session.lifetime_seconds` when
    /// shorter); 60 to `session.lifetime_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ttl_s: Option<u64>,
    /// Wrong user codes one logged-in user may enter per `code_ttl_s` window before the page
    /// refuses (429). Default 10.
    #[serde(default = "default_per_user")]
    pub max_wrong_codes_per_user: u32,
    /// Wrong user codes all users together may enter per `code_ttl_s` window (bounds guessing
    /// by many accounts). Default 100.
    #[serde(default = "default_overall")]
    pub max_wrong_codes: u32,
}

fn yes() -> bool {
    true
}
fn default_code_ttl() -> u64 {
    600
}
fn default_interval() -> u64 {
    5
}
const DEFAULT_TOKEN_TTL: u64 = 3600;
fn default_per_user() -> u32 {
    10
}
fn default_overall() -> u32 {
    100
}

crate::config::string_defaults! {
    default_path => "/auth/device",
}

/// The compiled `login.device` section.
#[derive(Debug, Clone)]
pub struct Device {
    pub(super) page_path: String,
    pub(super) code_path: String,
    pub(super) token_path: String,
    pub(super) verification_uri: String,
    pub(super) code_ttl: u64,
    pub(super) interval: u64,
    pub(super) token_ttl: u64,
    pub(super) per_user: u32,
    pub(super) overall: u32,
}

/// A device route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRoute {
    /// `POST <path>/code`: a device asks for a code (RFC 8628 §3.1).
    Code,
    /// `GET <path>` (the form / confirm page), `POST <path>` (approve or deny).
    Page,
    /// `POST <path>/token`: the device polls (RFC 8628 §3.4).
    Token,
}

impl DeviceRoute {
    /// Whether the host must read the request body (bounded by
    /// [`crate::engine::MAX_FORM_BODY`]) before starting the flow: every `POST`.
    pub fn needs_body(method: &str) -> bool {
        method.eq_ignore_ascii_case("POST")
    }
}

impl DeviceConfig {
    /// Validates the section. `origin`: the `redirect_uri`'s scheme and authority, which the
    /// verification URI shares; `taken`: the other login routes; `lifetime`: the session's.
    pub(super) fn compile(
        &self,
        origin: Option<&str>,
        taken: &[&str],
        lifetime: Option<u64>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Device> {
        let at = |f: &str| format!("device.{f}");
        let before = errors.len();
        if !super::config::valid_path(&self.path) || self.path.ends_with('/') {
            errors.push(ConfigError::new(
                at("path"),
                "a path like /auth/device: starts with `/`, no trailing `/`, no `?`, `#`, `;`, `%` or `\\`",
            ));
        }
        let code_path = format!("{}/code", self.path);
        let token_path = format!("{}/token", self.path);
        for p in [&self.path, &code_path, &token_path] {
            if taken.contains(&p.as_str()) {
                errors.push(ConfigError::new(
                    at("path"),
                    format!("{p} is already another login route"),
                ));
            }
        }
        errors.refuse_if(
            !(10..=3600).contains(&self.code_ttl_s),
            &at("code_ttl_s"),
            "must be between 10 and 3600 seconds",
        );
        errors.refuse_if(
            !(1..=60).contains(&self.interval_s),
            &at("interval_s"),
            "must be between 1 and 60 seconds",
        );
        let max_token = lifetime.unwrap_or(u64::MAX);
        let token_ttl = self
            .token_ttl_s
            .unwrap_or_else(|| DEFAULT_TOKEN_TTL.min(max_token));
        errors.refuse_if(
            token_ttl < 60 || token_ttl > max_token,
            &at("token_ttl_s"),
            format!("must be between 60 and session.lifetime_seconds ({max_token})"),
        );
        errors.refuse_if(
            self.max_wrong_codes_per_user == 0 || self.max_wrong_codes_per_user > 1000,
            &at("max_wrong_codes_per_user"),
            "must be between 1 and 1000",
        );
        errors.refuse_if(
            self.max_wrong_codes == 0 || self.max_wrong_codes > 100_000,
            &at("max_wrong_codes"),
            "must be between 1 and 100000",
        );
        if errors.len() > before || !self.enabled {
            return None;
        }
        Some(Device {
            verification_uri: format!("{}{}", origin?, self.path),
            page_path: self.path.clone(),
            code_path,
            token_path,
            code_ttl: self.code_ttl_s,
            interval: self.interval_s,
            token_ttl,
            per_user: self.max_wrong_codes_per_user,
            overall: self.max_wrong_codes,
        })
    }
}

impl Device {
    /// Which device route a request path (without query) is, if any.
    pub fn route(&self, path: &str) -> Option<DeviceRoute> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        if path == self.page_path {
            Some(DeviceRoute::Page)
        } else if path == self.code_path {
            Some(DeviceRoute::Code)
        } else if path == self.token_path {
            Some(DeviceRoute::Token)
        } else {
            None
        }
    }

    /// The verification page's absolute URL (RFC 8628 `verification_uri`).
    pub fn verification_uri(&self) -> &str {
        &self.verification_uri
    }

    /// The least polling interval, in seconds.
    pub fn interval(&self) -> u64 {
        self.interval
    }
}
