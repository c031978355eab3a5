//! edgegate core: stateless verification of JWTs, API keys, magic-link tokens and session
//! cookies, and the policy that turns a request into a verdict.
//!
//! Sans-IO: no network, no clock, no randomness. Hosts pass in the config, the request's
//! credentials, fetched key sets and `now` (Unix seconds), and carry out the verdict.
#![forbid(unsafe_code)]

pub mod alg;
pub mod apikey;
pub mod b64;
pub mod backend;
pub mod cache;
pub mod claims;
pub mod config;
pub mod credential;
pub mod engine;
pub mod error;
pub mod extractor;
pub mod identity;
pub mod json;
pub mod jwk;
pub mod jwks;
pub mod jws;
pub mod keylist;
pub mod keyring;
pub mod limits;
pub mod login;
pub mod loopback;
pub mod magic;
pub mod matcher;
pub mod method_override;
pub mod oidc;
pub mod policy;
pub mod redirect;
pub mod refresh;
pub mod rules;
pub mod session;
pub mod step;
mod syntax;
#[cfg(test)]
mod test_support;
pub mod upstream;
pub mod verifier;

pub use alg::Alg;
pub use engine::{Engine, LocalReply, Verdict};
pub use error::{ConfigError, ConfigErrors, Error, Reason};
pub use extractor::Request;
pub use identity::{CredentialKind, Identity};
pub use step::Step;

/// Seconds since the Unix epoch, as hosts pass "now" in.
pub type UnixTime = u64;
