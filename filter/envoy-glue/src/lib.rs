//! The host-neutral glue between the edgegate core and Envoy, shared by both Envoy packagings:
//! the proxy-wasm filter (`filter/proxy-wasm`) and the native dynamic module
//! (`filter/envoy-module`). Nothing here calls a host: each packaging reads the request, carries
//! out the verdict and performs fetches with its own ABI, and asks this crate what to read, what
//! to count and what to send.
//!
//! - [`config`]: what a packaging logs when it refuses or accepts the plugin configuration;
//! - [`request`]: the request as the core sees it, built from Envoy's header pairs, and the
//!   header bounds and identity-header split applied before anything else;
//! - [`verdict`]: one decision per request (verdict and upstream edits from one borrowed view),
//!   the fail-closed reply, the magic-link redirect, denial log lines;
//! - [`metrics`]: the counter names and labels both packagings report;
//! - [`fetch`]: the GET a remote key set needs (cluster, headers) and the key lookup a request
//!   that already waited decides with;
//! - [`login`]: the calls to the IdP the login machine asks for, and what their answers mean.
#![forbid(unsafe_code)]

pub mod config;
pub mod fetch;
pub mod login;
pub mod metrics;
pub mod request;
pub mod verdict;
