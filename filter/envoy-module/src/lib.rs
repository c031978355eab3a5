//! edgegate as a native Envoy dynamic module (`envoy.filters.http.dynamic_modules`): the same
//! sans-IO core as the proxy-wasm filter, loaded into Envoy's process as a shared library.
//!
//! Same plugin configuration JSON, same verdicts, identity headers, upstream edits, local
//! replies and counter names as `filter/proxy-wasm` (the glue both share is
//! `edgegate-envoy-glue`); what differs is what native code in one process allows:
//!
//! - one filter config ([`config::Shared`]) serves every worker thread: one compiled engine, one
//!   verified-token cache (a mutex), one copy of each remote key set (an `Arc` snapshot swapped
//!   under a lock), one set of used magic links per process ([`magic`]);
//! - remote key sets are fetched on Envoy's main thread with config-level HTTP callouts to a
//!   cluster, driven by the core's `JwksState` exactly as the proxy-wasm root context drives it;
//!   a small background thread only wakes the main thread when a refresh or a wait deadline is
//!   due (the ABI has no timers for HTTP filter configs);
//! - a request that waits for keys is paused on its worker and resumed there through the
//!   stream's scheduler;
//! - OIDC login (the `login` section) is the core's login machine, its calls to the IdP
//!   callouts of the request's stream; the discovery document and the renewals in flight are
//!   kept once per process;
//! - signatures are verified by the core's native backend (ring, RustCrypto), in Envoy's
//!   process.
//!
//! The module runs unsandboxed in Envoy's address space and is built for one Envoy minor
//! version (see [`abi`]). All `unsafe` code is in [`abi`]; every hook catches panics and fails
//! closed.
#![deny(unsafe_code)]

pub mod abi;
pub mod config;
pub mod device;
pub mod filter;
pub mod keys;
pub mod magic;
pub mod signature;
