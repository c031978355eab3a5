//! Device authorization (RFC 8628, `login.device`) in the Envoy filter: the I/O of the core's
//! device flow ([`edgegate::login::DeviceStep`]). The core decides every answer; the filter
//! holds a `POST`'s body (bounded, like the magic-link form), passes random bytes from WASI
//! `random_get`, and carries out the reads and compare-and-set writes in Envoy's shared data
//! ([`crate::shared::device_read`], [`crate::shared::device_cas`]): synchronous host calls, so
//! the flow runs to its reply in one callback. Shared data is per Envoy process (node): behind a
//! load balancer a device's polls and the user's confirmation must reach the same node.

use edgegate::login::DeviceStep;
use edgegate_envoy_glue::request::OwnedRequest;

use crate::{login, shared, verdict, Plugin};

/// Whether the request is for a device route (the config has `login.device`).
pub fn is_route(plugin: &Plugin, req: &OwnedRequest) -> bool {
    plugin.engine.device_route(req.path()).is_some()
}

/// Whether the route's request body must be read first.
pub fn needs_body(req: &OwnedRequest) -> bool {
    edgegate::login::DeviceRoute::needs_body(req.method())
}

/// Serves a device route to its reply (sent as a local reply).
pub fn serve(plugin: &Plugin, req: &OwnedRequest, body: &[u8]) {
    let now = crate::now();
    let random = crate::wasi::random_bytes();
    let Some(mut step) = req.with(|r| plugin.engine.device(r, body, &random, now)) else {
        verdict::send(&verdict::internal_error(), Some(plugin));
        return;
    };
    for _ in 0..32 {
        step = match step {
            DeviceStep::Reply(r) => {
                login::send_reply(plugin, &r);
                return;
            }
            DeviceStep::Read(r) => match shared::device_read(r.key(), now) {
                Ok(found) => r.resume(&plugin.engine, found, now),
                Err(()) => break,
            },
            DeviceStep::Write(w) => {
                match shared::device_cas(w.key(), w.value(), w.expect(), w.expires_at(), now) {
                    Ok(written) => w.resume(&plugin.engine, written, now),
                    Err(()) => break,
                }
            }
        };
    }
    log::error!(
        "login.device: the shared-data store is unavailable or full; refusing the device request"
    );
    verdict::send(&verdict::internal_error(), Some(plugin));
}
