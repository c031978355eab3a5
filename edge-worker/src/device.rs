//! Device authorization (RFC 8628, `login.device`) in the worker: the I/O of the core's device
//! flow ([`edgegate::login::DeviceStep`]). The core decides every answer; the worker reads the
//! POST body (bounded), passes random bytes from `crypto.getRandomValues`, and carries out the
//! reads and compare-and-set writes the flow asks for in the `DEVICE_GRANTS` Durable Object
//! namespace: one object per record key (`idFromName(key)`), which runs one event at a time, so
//! each compare-and-set is atomic and global. Without that binding the device routes answer
//! 500 and say so in the log: a per-isolate store would lose flows between isolates.

use edgegate::engine::MAX_FORM_BODY;
use edgegate::login::{DeviceStep, Stored, DEVICE_RANDOM_BYTES};
use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

use crate::{internal_error, log_error, now, DurableObjectNamespace, State, STATE};

/// The Durable Object namespace holding device-flow records (class `DeviceGrants` in
/// worker.mjs).
pub const DEVICE_GRANTS_BINDING: &str = "DEVICE_GRANTS";

/// Which device route `path` is, if the config has `login.device`.
pub(crate) fn is_route(path: &str) -> bool {
    STATE.with(|cell| match cell.borrow().as_ref() {
        Some(State::Ready(g)) => g.engine.device_route(path).is_some(),
        _ => false,
    })
}

fn with_engine<R>(f: impl FnOnce(&edgegate::Engine) -> R) -> Option<R> {
    STATE.with(|cell| match cell.borrow().as_ref() {
        Some(State::Ready(g)) => Some(f(&g.engine)),
        _ => None,
    })
}

/// A device route: the core's flow, driven to its reply.
pub(crate) async fn serve(
    req: &Request,
    env: &JsValue,
    head: &crate::drive::Head<'_>,
) -> Result<Response, JsValue> {
    let namespace = Reflect::get(env, &JsValue::from_str(DEVICE_GRANTS_BINDING))?;
    if !namespace.is_object() {
        log_error(&format!(
            "edgegate: login.device needs the {DEVICE_GRANTS_BINDING} Durable Object binding (class DeviceGrants); refusing the device routes"
        ));
        return internal_error();
    }
    let ns: DurableObjectNamespace = namespace.unchecked_into();
    let body = if edgegate::login::DeviceRoute::needs_body(head.method) {
        match read_body(req).await? {
            Some(b) => b,
            // over the bound: the core refuses it with its own answer
            None => vec![0u8; MAX_FORM_BODY + 1],
        }
    } else {
        Vec::new()
    };
    let mut random = [0u8; DEVICE_RANDOM_BYTES];
    if !crate::login::fill_random(&mut random) {
        random = [0u8; DEVICE_RANDOM_BYTES];
    }
    let start = |e: &edgegate::Engine| head.with(|r| e.device(r, &body, &random, now()));
    let Some(Some(mut step)) = with_engine(start) else {
        return internal_error();
    };
    for _ in 0..32 {
        step = match step {
            DeviceStep::Reply(r) => return crate::login::reply(&r),
            DeviceStep::Read(r) => {
                let found = match get(&ns, r.key()).await {
                    Ok(f) => f,
                    Err(why) => return store_failed(&why),
                };
                match with_engine(|e| r.resume(e, found, now())) {
                    Some(s) => s,
                    None => return internal_error(),
                }
            }
            DeviceStep::Write(w) => {
                let written = match cas(&ns, w.key(), w.value(), w.expect(), w.expires_at()).await {
                    Ok(ok) => ok,
                    Err(why) => return store_failed(&why),
                };
                match with_engine(|e| w.resume(e, written, now())) {
                    Some(s) => s,
                    None => return internal_error(),
                }
            }
        };
    }
    internal_error()
}

fn store_failed(why: &str) -> Result<Response, JsValue> {
    log_error(&format!(
        "edgegate: the {DEVICE_GRANTS_BINDING} Durable Object failed: {why}; refusing the device request"
    ));
    internal_error()
}

/// The request body, `None` when it is over [`MAX_FORM_BODY`].
async fn read_body(req: &Request) -> Result<Option<Vec<u8>>, JsValue> {
    let too_large = req
        .headers()
        .get("content-length")?
        .and_then(|l| l.trim().parse::<usize>().ok())
        .is_some_and(|l| l > MAX_FORM_BODY);
    if too_large {
        return Ok(None);
    }
    let text = JsFuture::from(req.text()?)
        .await?
        .as_string()
        .unwrap_or_default();
    Ok((text.len() <= MAX_FORM_BODY).then(|| text.into_bytes()))
}

/// One call to the record's Durable Object: `{op, ...}` as JSON; status and body.
async fn call(
    ns: &DurableObjectNamespace,
    key: &str,
    body: serde_json::Value,
) -> Result<(u16, String), String> {
    let describe = |e: JsValue| {
        e.as_string()
            .or_else(|| js_sys::Error::from(e).message().as_string())
            .unwrap_or_else(|| "the call failed".into())
    };
    let stub = ns
        .get(&ns.id_from_name(key).map_err(describe)?)
        .map_err(describe)?;
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&body.to_string()));
    let request =
        Request::new_with_str_and_init("https://device-grants/", &init).map_err(describe)?;
    let resp: Response = JsFuture::from(stub.fetch(&request).map_err(describe)?)
        .await
        .map_err(describe)?
        .unchecked_into();
    let text = JsFuture::from(resp.text().map_err(describe)?)
        .await
        .map_err(describe)?
        .as_string()
        .unwrap_or_default();
    Ok((resp.status(), text))
}

async fn get(ns: &DurableObjectNamespace, key: &str) -> Result<Option<Stored>, String> {
    let (status, text) = call(ns, key, serde_json::json!({"op": "get"})).await?;
    match status {
        404 => Ok(None),
        200 => {
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|_| "an unreadable record".to_string())?;
            let field = |k: &str| v.get(k);
            match (
                field("value").and_then(|x| x.as_str()),
                field("version").and_then(|x| x.as_u64()),
            ) {
                (Some(value), Some(version)) => Ok(Some(Stored {
                    value: value.to_string(),
                    version,
                })),
                _ => Err("an unreadable record".into()),
            }
        }
        other => Err(format!("get answered {other}")),
    }
}

async fn cas(
    ns: &DurableObjectNamespace,
    key: &str,
    value: &str,
    expect: Option<u64>,
    expires_at: u64,
) -> Result<bool, String> {
    let body = serde_json::json!({
        "op": "cas", "value": value, "expect": expect, "expires_at": expires_at,
    });
    match call(ns, key, body).await?.0 {
        204 => Ok(true),
        409 => Ok(false),
        other => Err(format!("cas answered {other}")),
    }
}
