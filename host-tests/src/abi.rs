//! The host side of the proxy-wasm ABI 0.2.1 (and the WASI preview1 calls Rust's std may import),
//! with Envoy's status codes and availability rules. Every import the module declares that is not
//! implemented here is stubbed (recorded, returns an error status) so instantiation never fails.

use crate::headers::{deserialize_pairs, Headers};
use crate::state::{lock, status, Deferred, HttpCall, LocalResponse, MetricKind, VmState};
use wasmtime::{
    Caller, Engine, Extern, FuncType, Linker, Memory, Module, Result, Store, Val, ValType,
};

type C<'a> = Caller<'a, VmState>;

fn memory(c: &mut C<'_>) -> Option<Memory> {
    match c.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn span(ptr: i32, len: i32) -> Option<(usize, usize)> {
    let p = ptr as u32 as usize;
    let end = p.checked_add(len as u32 as usize)?;
    Some((p, end))
}

/// Copies `len` bytes at `ptr` out of linear memory; `None` = invalid memory access.
fn read(c: &mut C<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let m = memory(c)?;
    let (p, end) = span(ptr, len)?;
    m.data(&*c).get(p..end).map(<[u8]>::to_vec)
}

fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> bool {
    let Some(m) = memory(c) else { return false };
    let Ok(len) = i32::try_from(bytes.len()) else {
        return false;
    };
    let Some((p, end)) = span(ptr, len) else {
        return false;
    };
    match m.data_mut(&mut *c).get_mut(p..end) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> bool {
    write(c, ptr, &v.to_le_bytes())
}

fn write_u64(c: &mut C<'_>, ptr: i32, v: u64) -> bool {
    write(c, ptr, &v.to_le_bytes())
}

/// Calls the module's allocator (`malloc`, else `proxy_on_memory_allocate`), as Envoy does.
fn alloc(c: &mut C<'_>, size: usize) -> Result<Option<i32>> {
    let f = match c
        .get_export("malloc")
        .or_else(|| c.get_export("proxy_on_memory_allocate"))
    {
        Some(Extern::Func(f)) => f,
        _ => return Ok(None),
    };
    let Ok(size) = i32::try_from(size) else {
        return Ok(None);
    };
    let typed = f.typed::<i32, i32>(&*c)?;
    let ptr = typed.call(&mut *c, size)?;
    Ok(if ptr == 0 { None } else { Some(ptr) })
}

/// A host function's early end: the status the module gets (a refused argument), or a trap.
enum Stop {
    Status(i32),
    Trap(wasmtime::Error),
}

impl From<wasmtime::Error> for Stop {
    fn from(e: wasmtime::Error) -> Self {
        Stop::Trap(e)
    }
}

/// What a host function answers: a `proxy_status_t` (an errno for WASI). In a body, `?` on a refusal
/// ([`refuse`], [`check`], [`arg`]) ends the call with that refusal's status.
type Answer = std::result::Result<i32, Stop>;

fn refuse(code: i32) -> Stop {
    Stop::Status(code)
}

/// `Err` with status `code` unless `ok`.
fn check(ok: bool, code: i32) -> std::result::Result<(), Stop> {
    if ok {
        Ok(())
    } else {
        Err(refuse(code))
    }
}

/// An argument in linear memory (`ptr`, `len`); outside memory: INVALID_MEMORY_ACCESS.
fn arg(c: &mut C<'_>, ptr: i32, len: i32) -> std::result::Result<Vec<u8>, Stop> {
    read(c, ptr, len).ok_or(refuse(status::INVALID_MEMORY_ACCESS))
}

/// The status of writing a result through a pointer the module passed.
fn written(ok: bool) -> i32 {
    if ok {
        status::OK
    } else {
        status::INVALID_MEMORY_ACCESS
    }
}

/// The code a host function's body answers, or the status of the refusal that ended it.
fn answer(c: &mut C<'_>, body: impl FnOnce(&mut C<'_>) -> Answer) -> Result<i32> {
    match body(c) {
        Ok(code) | Err(Stop::Status(code)) => Ok(code),
        Err(Stop::Trap(e)) => Err(e),
    }
}

/// Defines the import `<module>.<name>` with these `i32`/`i64` parameters; `body` (over the
/// caller `c`) gives its [`Answer`] (a `proxy_status_t`, or a WASI errno).
macro_rules! import {
    ($l:expr, $module:expr, $name:expr, |$c:ident $(, $arg:ident: $ty:ty)*| $body:expr) => {{
        $l.func_wrap(
            $module,
            $name,
            move |mut caller: C<'_> $(, $arg: $ty)*| -> Result<i32> {
                answer(&mut caller, |$c| $body)
            },
        )?;
    }};
}

/// Defines the proxy-wasm import `env.<name>`, which first records the call in `host_calls`.
macro_rules! proxy_fn {
    ($l:expr, $name:expr, |$c:ident $(, $arg:ident: $ty:ty)*| $body:expr) => {{
        let name: &'static str = $name;
        import!($l, "env", name, |$c $(, $arg: $ty)*| {
            $c.data_mut().host_calls.push(name);
            if $c.data().fuel_marks.is_some() {
                let left = $c.get_fuel().unwrap_or(0);
                if let Some(marks) = $c.data_mut().fuel_marks.as_mut() {
                    marks.push((name, left));
                }
            }
            $body
        });
    }};
}

/// What a canned import notes about its call.
type Record = fn(&mut VmState, &'static str);

/// Defines `module.name` taking `params` and always answering `code`, after `record` (which
/// notes the call where the ABI says so).
fn canned(
    l: &mut Linker<VmState>,
    (module, name): (&str, &'static str),
    params: &[ValType],
    code: i32,
    record: Record,
) -> Result<()> {
    let ty = FuncType::new(l.engine(), params.iter().cloned(), [ValType::I32]);
    l.func_new(
        module,
        name,
        ty,
        move |mut c: C<'_>, _args: &[Val], out: &mut [Val]| -> Result<()> {
            record(c.data_mut(), name);
            if let Some(slot) = out.first_mut() {
                *slot = Val::I32(code);
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Envoy `copyToPointerSize`: empty data is returned as (NULL, 0) without allocating.
fn copy_out(c: &mut C<'_>, data: &[u8], ptr_ptr: i32, size_ptr: i32) -> Answer {
    let len = u32::try_from(data.len()).map_err(|_| refuse(status::INVALID_MEMORY_ACCESS))?;
    let addr = if data.is_empty() {
        0
    } else {
        match alloc(c, data.len())? {
            Some(a) if write(c, a, data) => a,
            _ => return Err(refuse(status::INVALID_MEMORY_ACCESS)),
        }
    };
    check(
        write_u32(c, ptr_ptr, addr as u32) && write_u32(c, size_ptr, len),
        status::INVALID_MEMORY_ACCESS,
    )?;
    Ok(status::OK)
}

const MAX_MAP_TYPE: i32 = 7;
const MAX_BUFFER_TYPE: i32 = 8;

/// Envoy `getConstMap`: the map a read sees, `None` when not available in this callback.
fn const_map(s: &VmState, t: i32) -> Option<Headers> {
    match t {
        0..=3 => {
            let h = s.http_ref()?;
            let d = if t < 2 { &h.req } else { &h.resp };
            let trailers = t % 2 == 1;
            if h.in_log {
                // Access-log phase: read-only views of what was seen.
                return if trailers {
                    if t == 1 {
                        None
                    } else {
                        d.trailers.clone()
                    }
                } else {
                    Some(
                        d.forwarded_headers
                            .clone()
                            .unwrap_or_else(|| d.headers.clone()),
                    )
                };
            }
            if trailers {
                if d.trailers_live {
                    d.trailers.clone()
                } else {
                    None
                }
            } else if d.headers_live {
                Some(d.headers.clone())
            } else {
                None
            }
        }
        6 => s.call_response.as_ref().map(|r| r.headers.clone()),
        7 => s.call_response.as_ref().map(|r| r.trailers.clone()),
        _ => None,
    }
}

/// Envoy `getMap`: the map a write may change (only request/response headers and trailers, only
/// while the filter holds iteration).
fn with_mut_map<R>(s: &mut VmState, t: i32, f: impl FnOnce(&mut Headers) -> R) -> Option<R> {
    let h = s.http()?;
    if h.in_log {
        return None;
    }
    let d = match t {
        0 | 1 => &mut h.req,
        2 | 3 => &mut h.resp,
        _ => return None,
    };
    if t % 2 == 0 {
        if !d.headers_live {
            return None;
        }
        Some(f(&mut d.headers))
    } else {
        if !d.trailers_live {
            // Trailers may be added from the body callback at end of stream.
            if !(d.body_live && d.end_seen) {
                return None;
            }
            d.trailers_live = true;
        }
        Some(f(d.trailers.get_or_insert_with(Headers::new)))
    }
}

fn note_invalid(s: &mut VmState, map_type: i32, h: &Headers) {
    for name in h.invalid_entries() {
        s.invalid_header_writes
            .push(format!("map {map_type}: {name}"));
    }
}

/// Buffer contents for `proxy_get_buffer_bytes`; `None` = NOT_FOUND.
fn buffer(s: &VmState, t: i32) -> Option<Vec<u8>> {
    match t {
        0 | 1 => Some(match s.http_ref() {
            Some(h) => {
                let d = if t == 0 { &h.req } else { &h.resp };
                if d.body_live {
                    d.body.clone()
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        }),
        2 | 3 | 5 | 8 => Some(Vec::new()),
        4 => s.call_response.as_ref().map(|r| r.body.clone()),
        6 => Some(s.vm_config.clone()),
        7 => s.plugin_config.clone(),
        _ => None,
    }
}

fn property(s: &VmState, path: &[u8]) -> Option<Vec<u8>> {
    let joined = property_key(path);
    match joined.as_str() {
        "plugin_name" => return Some(s.plugin_name.clone().into_bytes()),
        "plugin_root_id" => return Some(s.root_id.clone().into_bytes()),
        "plugin_vm_id" => return Some(s.vm_id.clone().into_bytes()),
        _ => {}
    }
    if let Some(v) = s.http_ref().and_then(|h| h.properties.get(&joined)) {
        return Some(v.clone());
    }
    lock(&s.world).properties.get(&joined).cloned()
}

/// The key `proxy_{get,set}_property` use for a path (parts separated by NUL): joined by '.'.
fn property_key(path: &[u8]) -> String {
    path.split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// A map type the ABI knows; another: BAD_ARGUMENT.
fn map_type(t: i32) -> std::result::Result<(), Stop> {
    check((0..=MAX_MAP_TYPE).contains(&t), status::BAD_ARGUMENT)
}

/// A buffer type the ABI knows; another: BAD_ARGUMENT.
fn buffer_type(t: i32) -> std::result::Result<(), Stop> {
    check((0..=MAX_BUFFER_TYPE).contains(&t), status::BAD_ARGUMENT)
}

/// The buffer `proxy_get_buffer_*` read: BAD_ARGUMENT for an unknown type, NOT_FOUND when
/// there is none in this callback.
fn readable_buffer(s: &VmState, t: i32) -> std::result::Result<Vec<u8>, Stop> {
    buffer_type(t)?;
    buffer(s, t).ok_or(refuse(status::NOT_FOUND))
}

/// A write to map `t` (see [`with_mut_map`]): BAD_ARGUMENT where it cannot be written now, else
/// OK, with the `written` entries checked for bytes Envoy refuses.
fn edit_map(s: &mut VmState, t: i32, written: &Headers, f: impl FnOnce(&mut Headers)) -> Answer {
    with_mut_map(s, t, f).ok_or(refuse(status::BAD_ARGUMENT))?;
    note_invalid(s, t, written);
    Ok(status::OK)
}

/// The metric a `proxy_*_metric` id names, if it was defined.
fn metric_of(s: &VmState, id: i32) -> Option<(MetricKind, String)> {
    s.metric_ids.get(&(id as u32)).cloned()
}

/// Envoy's answer for an undefined metric id: BAD_ARGUMENT when its tag bits say histogram,
/// else NOT_FOUND.
fn unknown_metric(id: i32) -> Stop {
    refuse(if id as u32 & 3 == 2 {
        status::BAD_ARGUMENT
    } else {
        status::NOT_FOUND
    })
}

fn continue_stream(s: &mut VmState, t: i32) -> i32 {
    if !(0..=3).contains(&t) {
        return status::BAD_ARGUMENT;
    }
    if t == 3 {
        return status::UNIMPLEMENTED;
    }
    if t == 2 {
        return status::OK;
    }
    let id = s.ctx_id();
    if let Some(h) = s.http() {
        // Envoy drops its request-side pointers at once (continueStream), and continues decoding
        // or encoding after the VM call returns.
        h.req.headers_live = false;
        h.req.body_live = false;
        h.req.trailers_live = false;
        s.deferred.push(if t == 0 {
            Deferred::ContinueRequest(id)
        } else {
            Deferred::ContinueResponse(id)
        });
    }
    status::OK
}

/// Names this host implements; everything else the module imports is stubbed.
pub(crate) fn build_linker(engine: &Engine) -> Result<Linker<VmState>> {
    let mut l: Linker<VmState> = Linker::new(engine);

    proxy_fn!(l, "proxy_log", |c, level: i32, ptr: i32, len: i32| {
        check((0..=5).contains(&level), status::BAD_ARGUMENT)?;
        let msg = arg(c, ptr, len)?;
        c.data_mut()
            .log(level as u32, String::from_utf8_lossy(&msg).into_owned());
        Ok(status::OK)
    });
    proxy_fn!(l, "proxy_get_log_level", |c, ptr: i32| {
        let level = c.data().log_level;
        Ok(written(write_u32(c, ptr, level)))
    });
    proxy_fn!(l, "proxy_get_current_time_nanoseconds", |c, ptr: i32| {
        let now = lock(&c.data().world).now_nanos;
        Ok(written(write_u64(c, ptr, now)))
    });
    proxy_fn!(l, "proxy_set_tick_period_milliseconds", |c, ms: i32| {
        let now = lock(&c.data().world).now_nanos;
        let s = c.data_mut();
        s.tick_period_ms = ms as u32;
        // Envoy re-arms the timer at now + period on every call.
        s.next_tick_nanos = (ms != 0).then(|| now.saturating_add(u64::from(ms as u32) * 1_000_000));
        Ok(status::OK)
    });
    proxy_fn!(
        l,
        "proxy_get_configuration",
        |c, ptr_ptr: i32, size_ptr: i32| {
            let s = c.data();
            let cfg = s
                .plugin_config
                .clone()
                .unwrap_or_else(|| s.vm_config.clone());
            copy_out(c, &cfg, ptr_ptr, size_ptr)
        }
    );

    // Buffers.
    proxy_fn!(
        l,
        "proxy_get_buffer_bytes",
        |c, t: i32, start: i32, max: i32, ptr_ptr: i32, size_ptr: i32| {
            let buf = readable_buffer(c.data(), t)?;
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            // Envoy checks `start + length` for 32-bit overflow.
            check(
                (start as u64).saturating_add(max as u64) <= u64::from(u32::MAX),
                status::BAD_ARGUMENT,
            )?;
            let slice = if start > buf.len() {
                &[][..]
            } else {
                let end = start.saturating_add(max).min(buf.len());
                buf.get(start..end).unwrap_or(&[])
            };
            copy_out(c, slice, ptr_ptr, size_ptr)
        }
    );
    proxy_fn!(
        l,
        "proxy_get_buffer_status",
        |c, t: i32, len_ptr: i32, flags_ptr: i32| {
            let buf = readable_buffer(c.data(), t)?;
            Ok(written(
                write_u32(c, len_ptr, buf.len() as u32) && write_u32(c, flags_ptr, 0),
            ))
        }
    );
    proxy_fn!(
        l,
        "proxy_set_buffer_bytes",
        |c, t: i32, start: i32, size: i32, ptr: i32, len: i32| {
            buffer_type(t)?;
            let data = arg(c, ptr, len)?;
            if t > 1 {
                return Ok(if buffer(c.data(), t).is_some() {
                    status::BAD_ARGUMENT
                } else {
                    status::NOT_FOUND
                });
            }
            let h = c.data_mut().http().ok_or(refuse(status::NOT_FOUND))?;
            let d = if t == 0 { &mut h.req } else { &mut h.resp };
            check(d.body_live, status::NOT_FOUND)?;
            let (start, size) = (start as u32 as usize, size as u32 as usize);
            // Envoy `BufferBase::copyFrom`: prepend/replace from 0, append past the end, nothing else.
            if start == 0 {
                let drain = size.min(d.body.len());
                d.body.drain(..drain);
                let mut v = data;
                v.extend_from_slice(&d.body);
                d.body = v;
                Ok(status::OK)
            } else if start >= d.body.len() {
                d.body.extend_from_slice(&data);
                Ok(status::OK)
            } else {
                Ok(status::BAD_ARGUMENT)
            }
        }
    );

    // Header maps.
    proxy_fn!(
        l,
        "proxy_get_header_map_pairs",
        |c, t: i32, ptr_ptr: i32, size_ptr: i32| {
            map_type(t)?;
            // Envoy: always OK, an unavailable map reads as empty.
            let map = const_map(c.data(), t).unwrap_or_default();
            let data = if map.is_empty() {
                Vec::new()
            } else {
                map.serialize()
            };
            copy_out(c, &data, ptr_ptr, size_ptr)
        }
    );
    proxy_fn!(
        l,
        "proxy_set_header_map_pairs",
        |c, t: i32, ptr: i32, len: i32| {
            map_type(t)?;
            let new = Headers::from_pairs(&deserialize_pairs(&arg(c, ptr, len)?));
            edit_map(c.data_mut(), t, &new, |m| *m = new.clone())
        }
    );
    proxy_fn!(l, "proxy_get_header_map_size", |c, t: i32, ptr: i32| {
        map_type(t)?;
        let size =
            with_mut_map(c.data_mut(), t, |m| m.byte_size()).ok_or(refuse(status::BAD_ARGUMENT))?;
        Ok(written(write_u32(c, ptr, size as u32)))
    });
    proxy_fn!(
        l,
        "proxy_get_header_map_value",
        |c, t: i32, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32| {
            map_type(t)?;
            let key = arg(c, kp, kl)?;
            let in_log = c.data().http_ref().is_some_and(|h| h.in_log);
            let map = const_map(c.data(), t).ok_or(refuse(if in_log {
                status::NOT_FOUND
            } else {
                status::BAD_ARGUMENT
            }))?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let value = map
                .get_bytes(&key)
                .ok_or(refuse(status::NOT_FOUND))?
                .to_vec();
            copy_out(c, &value, ptr_ptr, size_ptr)
        }
    );
    for (name, replace) in [
        ("proxy_add_header_map_value", false),
        ("proxy_replace_header_map_value", true),
    ] {
        proxy_fn!(l, name, |c, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| {
            map_type(t)?;
            let (k, v) = (arg(c, kp, kl)?, arg(c, vp, vl)?);
            let entry = Headers::from_pairs(&[(&k, &v)]);
            edit_map(c.data_mut(), t, &entry, |m| {
                if replace {
                    m.set(&k, &v)
                } else {
                    m.add(&k, &v)
                }
            })
        });
    }
    proxy_fn!(
        l,
        "proxy_remove_header_map_value",
        |c, t: i32, kp: i32, kl: i32| {
            map_type(t)?;
            let k = arg(c, kp, kl)?;
            with_mut_map(c.data_mut(), t, |m| m.remove(&k)).ok_or(refuse(status::BAD_ARGUMENT))?;
            Ok(status::OK)
        }
    );

    // Properties and shared data.
    proxy_fn!(
        l,
        "proxy_get_property",
        |c, pp: i32, pl: i32, ptr_ptr: i32, size_ptr: i32| {
            let path = arg(c, pp, pl)?;
            let value = property(c.data(), &path).ok_or(refuse(status::NOT_FOUND))?;
            copy_out(c, &value, ptr_ptr, size_ptr)
        }
    );
    proxy_fn!(
        l,
        "proxy_set_property",
        |c, pp: i32, pl: i32, vp: i32, vl: i32| {
            let (path, v) = (arg(c, pp, pl)?, arg(c, vp, vl)?);
            let h = c.data_mut().http().ok_or(refuse(status::NOT_FOUND))?;
            h.properties.insert(property_key(&path), v);
            Ok(status::OK)
        }
    );
    proxy_fn!(
        l,
        "proxy_get_shared_data",
        |c, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32, cas_ptr: i32| {
            let key = arg(c, kp, kl)?;
            let found = {
                let s = c.data();
                lock(&s.world).shared.get(&(s.vm_id.clone(), key)).cloned()
            };
            let (value, cas) = found.ok_or(refuse(status::NOT_FOUND))?;
            copy_out(c, &value, ptr_ptr, size_ptr)?;
            Ok(written(write_u32(c, cas_ptr, cas)))
        }
    );
    proxy_fn!(
        l,
        "proxy_set_shared_data",
        |c, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| {
            let (key, value) = (arg(c, kp, kl)?, arg(c, vp, vl)?);
            let s = c.data();
            let st = lock(&s.world).set_shared(&s.vm_id, &key, &value, cas as u32);
            Ok(st)
        }
    );

    // Shared queues.
    proxy_fn!(
        l,
        "proxy_register_shared_queue",
        |c, np: i32, nl: i32, tok_ptr: i32| {
            let name = arg(c, np, nl)?;
            let token = {
                let s = c.data();
                let root = s.root_of_current();
                let mut w = lock(&s.world);
                let existing = w
                    .queues
                    .iter()
                    .position(|q| q.vm_id == s.vm_id && q.name == name);
                let idx = match existing {
                    Some(i) => {
                        if let Some(q) = w.queues.get_mut(i) {
                            q.owner_vm = s.vm_index;
                            q.owner_root = root;
                        }
                        i
                    }
                    None => {
                        w.queues.push(crate::state::Queue {
                            vm_id: s.vm_id.clone(),
                            name,
                            owner_vm: s.vm_index,
                            owner_root: root,
                            items: Default::default(),
                        });
                        w.queues.len() - 1
                    }
                };
                idx as u32 + 1
            };
            Ok(written(write_u32(c, tok_ptr, token)))
        }
    );
    proxy_fn!(
        l,
        "proxy_resolve_shared_queue",
        |c, vp: i32, vl: i32, np: i32, nl: i32, tok_ptr: i32| {
            let (vm, name) = (arg(c, vp, vl)?, arg(c, np, nl)?);
            let token = {
                let s = c.data();
                let vm_id = if vm.is_empty() {
                    s.vm_id.clone()
                } else {
                    String::from_utf8_lossy(&vm).into_owned()
                };
                let w = lock(&s.world);
                w.queues
                    .iter()
                    .position(|q| q.vm_id == vm_id && q.name == name)
                    .map(|i| i as u32 + 1)
            };
            let token = token.ok_or(refuse(status::NOT_FOUND))?;
            Ok(written(write_u32(c, tok_ptr, token)))
        }
    );
    proxy_fn!(
        l,
        "proxy_enqueue_shared_queue",
        |c, token: i32, vp: i32, vl: i32| {
            let value = arg(c, vp, vl)?;
            let s = c.data();
            let mut w = lock(&s.world);
            let idx = (token as u32 as usize).wrapping_sub(1);
            let q = w.queues.get_mut(idx).ok_or(refuse(status::NOT_FOUND))?;
            q.items.push_back(value);
            let ev = (q.owner_vm, q.owner_root, token as u32);
            w.queue_ready.push(ev);
            Ok(status::OK)
        }
    );
    proxy_fn!(
        l,
        "proxy_dequeue_shared_queue",
        |c, token: i32, ptr_ptr: i32, size_ptr: i32| {
            let item = {
                let s = c.data();
                let mut w = lock(&s.world);
                let idx = (token as u32 as usize).wrapping_sub(1);
                let q = w.queues.get_mut(idx).ok_or(refuse(status::NOT_FOUND))?;
                q.items.pop_front()
            };
            match item {
                None => Ok(status::EMPTY),
                Some(v) => copy_out(c, &v, ptr_ptr, size_ptr),
            }
        }
    );

    // The stream.
    proxy_fn!(l, "proxy_continue_stream", |c, t: i32| Ok(continue_stream(
        c.data_mut(),
        t
    )));
    proxy_fn!(l, "proxy_continue_request", |c| Ok(continue_stream(
        c.data_mut(),
        0
    )));
    proxy_fn!(l, "proxy_continue_response", |c| Ok(continue_stream(
        c.data_mut(),
        1
    )));
    proxy_fn!(l, "proxy_close_stream", |c, t: i32| {
        check((0..=3).contains(&t), status::BAD_ARGUMENT)?;
        let s = c.data_mut();
        let id = s.ctx_id();
        if t < 2 && s.http().is_some() {
            s.deferred.push(Deferred::Reset(id));
        }
        Ok(status::OK)
    });
    proxy_fn!(
        l,
        "proxy_send_local_response",
        |c, code: i32, dp: i32, dl: i32, bp: i32, bl: i32, hp: i32, hl: i32, grpc: i32| {
            let (details, body, hdrs) = (arg(c, dp, dl)?, arg(c, bp, bl)?, arg(c, hp, hl)?);
            let headers = Headers::from_pairs(&deserialize_pairs(&hdrs));
            let s = c.data_mut();
            note_invalid(s, -1, &headers);
            let id = s.ctx_id();
            if s.http().is_some() {
                s.deferred.push(Deferred::LocalReply(
                    id,
                    LocalResponse {
                        status: code as u32,
                        headers,
                        body,
                        details: String::from_utf8_lossy(&details).into_owned(),
                        grpc_status: grpc,
                    },
                ));
            }
            s.stop_iteration = true;
            Ok(status::OK)
        }
    );
    proxy_fn!(
        l,
        "proxy_http_call",
        |c,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         tok_ptr: i32| {
            let (upstream, hdrs, body, trl) = (
                arg(c, up, ul)?,
                arg(c, hp, hl)?,
                arg(c, bp, bl)?,
                arg(c, tp, tl)?,
            );
            check(write_u32(c, tok_ptr, 0), status::INVALID_MEMORY_ACCESS)?;
            check(timeout >= 0, status::BAD_ARGUMENT)?;
            let upstream = String::from_utf8_lossy(&upstream).into_owned();
            let headers = Headers::from_pairs(&deserialize_pairs(&hdrs));
            let s = c.data_mut();
            let known = match &lock(&s.world).clusters {
                None => true,
                Some(list) => list.contains(&upstream),
            };
            check(
                known
                    && headers.contains(":path")
                    && headers.contains(":method")
                    && headers.contains(":authority"),
                status::BAD_ARGUMENT,
            )?;
            let token = s.next_token;
            s.next_token = s.next_token.wrapping_add(1).max(1);
            let root = s.root_of_current();
            s.http_calls.insert(
                token,
                HttpCall {
                    token,
                    upstream,
                    headers,
                    body,
                    trailers: Headers::from_pairs(&deserialize_pairs(&trl)),
                    timeout_ms: timeout as u32,
                    root,
                },
            );
            Ok(written(write_u32(c, tok_ptr, token)))
        }
    );

    // Metrics.
    proxy_fn!(
        l,
        "proxy_define_metric",
        |c, t: i32, np: i32, nl: i32, id_ptr: i32| {
            let kind = MetricKind::from_abi(t).ok_or(refuse(status::BAD_ARGUMENT))?;
            let name = String::from_utf8_lossy(&arg(c, np, nl)?).into_owned();
            let s = c.data_mut();
            lock(&s.world)
                .metrics
                .entry((kind, name.clone()))
                .or_default();
            s.next_metric = s.next_metric.wrapping_add(1);
            let id = (s.next_metric << 2) | kind.tag();
            s.metric_ids.insert(id, (kind, name));
            Ok(written(write_u32(c, id_ptr, id)))
        }
    );
    proxy_fn!(l, "proxy_increment_metric", |c, id: i32, delta: i64| {
        let s = c.data();
        let (kind, name) = metric_of(s, id).ok_or_else(|| unknown_metric(id))?;
        let mut w = lock(&s.world);
        let m = w
            .metrics
            .get_mut(&(kind, name))
            .ok_or(refuse(status::NOT_FOUND))?;
        Ok(match kind {
            // Envoy: counters only go up, and a zero delta is refused too.
            MetricKind::Counter if delta > 0 => {
                m.value = m.value.saturating_add(delta);
                status::OK
            }
            MetricKind::Counter | MetricKind::Histogram => status::BAD_ARGUMENT,
            MetricKind::Gauge => {
                m.value = m.value.saturating_add(delta);
                status::OK
            }
        })
    });
    proxy_fn!(l, "proxy_record_metric", |c, id: i32, value: i64| {
        let s = c.data();
        let (kind, name) = metric_of(s, id).ok_or(refuse(status::NOT_FOUND))?;
        let mut w = lock(&s.world);
        let m = w
            .metrics
            .get_mut(&(kind, name))
            .ok_or(refuse(status::NOT_FOUND))?;
        match kind {
            MetricKind::Counter => m.value = m.value.saturating_add(value),
            MetricKind::Gauge => m.value = value,
            MetricKind::Histogram => m.samples.push(value as u64),
        }
        Ok(status::OK)
    });
    proxy_fn!(l, "proxy_get_metric", |c, id: i32, ptr: i32| {
        let value = {
            let s = c.data();
            let (kind, name) = metric_of(s, id).ok_or_else(|| unknown_metric(id))?;
            check(kind != MetricKind::Histogram, status::BAD_ARGUMENT)?;
            let w = lock(&s.world);
            w.metrics.get(&(kind, name)).map(|m| m.value).unwrap_or(0)
        };
        Ok(written(write_u64(c, ptr, value as u64)))
    });

    // Contexts, status, foreign functions.
    proxy_fn!(l, "proxy_set_effective_context", |c, id: i32| {
        let s = c.data_mut();
        check(s.contexts.contains_key(&(id as u32)), status::BAD_ARGUMENT)?;
        s.effective = id as u32;
        Ok(status::OK)
    });
    proxy_fn!(l, "proxy_done", |c| {
        let s = c.data_mut();
        let id = s.ctx_id();
        s.done_calls.push(id);
        let pos = s
            .pending_done
            .iter()
            .position(|x| *x == id)
            .ok_or(refuse(status::NOT_FOUND))?;
        s.pending_done.remove(pos);
        Ok(status::OK)
    });
    proxy_fn!(
        l,
        "proxy_get_status",
        |c, code_ptr: i32, ptr_ptr: i32, size_ptr: i32| {
            check(write_u32(c, code_ptr, 0), status::INVALID_MEMORY_ACCESS)?;
            copy_out(c, &[], ptr_ptr, size_ptr)
        }
    );
    proxy_fn!(l, "proxy_clear_route_cache", |c| Ok(status::OK));
    proxy_fn!(
        l,
        "proxy_call_foreign_function",
        |c,
         name_ptr: i32,
         name_len: i32,
         args_ptr: i32,
         args_len: i32,
         ret_ptr: i32,
         ret_len: i32| {
            let (name, args) = (arg(c, name_ptr, name_len)?, arg(c, args_ptr, args_len)?);
            check(name == b"verify_signature", status::NOT_FOUND)?;
            let mode = c.data().foreign;
            let (st, out, hash) = crate::foreign::verify_signature(mode, &args);
            if let Some(h) = hash {
                c.data_mut().verify_calls.push(h);
            }
            check(st == status::OK, st)?;
            copy_out(c, &out, ret_ptr, ret_len)
        }
    );

    // gRPC is not emulated: calls fail the way the SDK accepts (no panic), later ops find no
    // token. A started call or stream also counts as a call to an unknown import.
    fn started(s: &mut VmState, name: &'static str) {
        s.host_calls.push(name);
        s.unknown_calls.push(format!("env.{name}"));
    }
    fn noted(s: &mut VmState, name: &'static str) {
        s.host_calls.push(name);
    }
    for (name, arity, code, record) in [
        (
            "proxy_grpc_call",
            12,
            status::INTERNAL_FAILURE,
            started as Record,
        ),
        ("proxy_grpc_stream", 9, status::INTERNAL_FAILURE, started),
        ("proxy_grpc_send", 4, status::NOT_FOUND, noted),
        ("proxy_grpc_cancel", 1, status::NOT_FOUND, noted),
        ("proxy_grpc_close", 1, status::NOT_FOUND, noted),
    ] {
        canned(
            &mut l,
            ("env", name),
            &vec![ValType::I32; arity],
            code,
            record,
        )?;
    }

    for w in ["wasi_snapshot_preview1", "wasi_unstable"] {
        define_wasi(&mut l, w)?;
    }

    Ok(l)
}

/// WASI `errno` values.
mod errno {
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
    pub const NOTSUP: i32 = 58;
}

/// The errno of writing a result through a pointer the module passed.
fn wasi_written(ok: bool) -> i32 {
    if ok {
        0
    } else {
        errno::FAULT
    }
}

fn define_wasi(l: &mut Linker<VmState>, w: &str) -> Result<()> {
    use ValType::{I32, I64};

    import!(
        l,
        w,
        "fd_write",
        |c, fd: i32, iovs: i32, n: i32, nw_ptr: i32| {
            let level = match fd {
                1 => 2,
                2 => 4,
                _ => return Ok(errno::BADF),
            };
            let mut out = Vec::new();
            for i in 0..(n as u32).min(1024) {
                let at = iovs.wrapping_add((i * 8) as i32);
                let iov = read(c, at, 8).ok_or(refuse(errno::FAULT))?;
                let (Some(p), Some(l)) = (iov.get(0..4), iov.get(4..8)) else {
                    return Ok(errno::FAULT);
                };
                let p = i32::from_le_bytes(p.try_into().unwrap_or_default());
                let l = i32::from_le_bytes(l.try_into().unwrap_or_default());
                out.extend_from_slice(&read(c, p, l).ok_or(refuse(errno::FAULT))?);
            }
            let written = out.len() as u32;
            if !out.is_empty() {
                let mut s = String::from_utf8_lossy(&out).into_owned();
                if s.ends_with('\n') {
                    s.pop();
                }
                c.data_mut().log(level, s);
            }
            Ok(wasi_written(write_u32(c, nw_ptr, written)))
        }
    );
    import!(l, w, "fd_fdstat_get", |c, fd: i32, ptr: i32| {
        check(fd == 1 || fd == 2, errno::BADF)?;
        let mut st = [0u8; 24];
        if let Some(rights) = st.get_mut(8..16) {
            rights.copy_from_slice(&64u64.to_le_bytes());
        }
        Ok(wasi_written(write(c, ptr, &st)))
    });
    import!(
        l,
        w,
        "args_sizes_get",
        |c, count_ptr: i32, size_ptr: i32| Ok(wasi_written(
            write_u32(c, count_ptr, 0) && write_u32(c, size_ptr, 0)
        ))
    );
    import!(
        l,
        w,
        "environ_sizes_get",
        |c, count_ptr: i32, size_ptr: i32| {
            let env = c.data().environ();
            let size: usize = env.iter().map(Vec::len).sum();
            Ok(wasi_written(
                write_u32(c, count_ptr, env.len() as u32) && write_u32(c, size_ptr, size as u32),
            ))
        }
    );
    // Pointers to each `NAME=value\0` in `environ`, the strings back to back in `buf`.
    import!(l, w, "environ_get", |c, environ: i32, buf: i32| {
        let env = c.data().environ();
        let mut at = buf;
        let mut ok = true;
        for (i, e) in env.iter().enumerate() {
            ok = ok
                && write_u32(c, environ.wrapping_add(4 * i as i32), at as u32)
                && write(c, at, e);
            at = at.wrapping_add(e.len() as i32);
        }
        Ok(wasi_written(ok))
    });
    // The realtime and monotonic clocks both read the world's clock.
    let clock = |id: i32| check(id == 0 || id == 1, errno::NOTSUP);
    import!(
        l,
        w,
        "clock_time_get",
        |c, id: i32, _precision: i64, ptr: i32| {
            clock(id)?;
            let now = lock(&c.data().world).now_nanos;
            Ok(wasi_written(write_u64(c, ptr, now)))
        }
    );
    import!(l, w, "clock_res_get", |c, id: i32, ptr: i32| {
        clock(id)?;
        Ok(wasi_written(write_u64(c, ptr, 1)))
    });
    import!(l, w, "random_get", |c, ptr: i32, len: i32| {
        let n = len as u32 as usize;
        check(n <= 64 * 1024, errno::INVAL)?;
        let bytes = match c.data().random {
            crate::RandomMode::Bytes => lock(&c.data().world).random(n),
            crate::RandomMode::Zeros => vec![0; n],
            crate::RandomMode::Errno(code) => return Err(refuse(code)),
        };
        Ok(wasi_written(write(c, ptr, &bytes)))
    });
    import!(
        l,
        w,
        "poll_oneoff",
        |c, _i: i32, _o: i32, _n: i32, nev_ptr: i32| Ok(wasi_written(write_u32(c, nev_ptr, 0)))
    );
    l.func_wrap(w, "proc_exit", |_c: C<'_>, code: i32| -> Result<()> {
        Err(wasmtime::format_err!(
            "wasi proc_exit({code}) called by the module"
        ))
    })?;
    // What std may import and this host has nothing to do for: a fixed answer.
    fn quiet(_: &mut VmState, _: &'static str) {}
    for (name, params, code) in [
        ("fd_read", &[I32, I32, I32, I32][..], errno::NOSYS),
        ("fd_close", &[I32], 0),
        ("fd_seek", &[I32, I64, I32, I32], 0),
        ("fd_prestat_get", &[I32, I32], errno::BADF),
        ("fd_prestat_dir_name", &[I32, I32, I32], errno::NOSYS),
        ("args_get", &[I32, I32], 0),
        ("sched_yield", &[], 0),
    ] {
        canned(l, (w, name), params, code, quiet)?;
    }
    Ok(())
}

/// Defines a recording stub for every function import this host does not implement (or declares
/// with another signature): proxy-wasm ones return UNIMPLEMENTED, WASI ones ENOSYS.
pub(crate) fn stub_unknown(
    l: &mut Linker<VmState>,
    store: &mut Store<VmState>,
    module: &Module,
) -> Result<Vec<String>> {
    let mut stubbed = Vec::new();
    l.allow_shadowing(true);
    for imp in module.imports() {
        let wasmtime::ExternType::Func(ft) = imp.ty() else {
            continue;
        };
        let key = (imp.module().to_string(), imp.name().to_string());
        let fits = match l.get(&mut *store, &key.0, &key.1) {
            Ok(Extern::Func(f)) => f.ty(&*store).matches(&ft),
            _ => false,
        };
        if fits {
            continue;
        }
        let label = format!("{}.{}", key.0, key.1);
        let code = if key.0.starts_with("wasi") {
            errno::NOSYS
        } else {
            status::UNIMPLEMENTED
        };
        let results: Vec<_> = ft.results().collect();
        let label2 = label.clone();
        l.func_new(
            &key.0,
            &key.1,
            ft.clone(),
            move |mut c: C<'_>, _args: &[Val], out: &mut [Val]| -> Result<()> {
                c.data_mut().unknown_calls.push(label2.clone());
                for (slot, ty) in out.iter_mut().zip(results.iter()) {
                    *slot = match ty {
                        wasmtime::ValType::I32 => Val::I32(code),
                        other => Val::default_for_ty(other).unwrap_or(Val::I32(0)),
                    };
                }
                Ok(())
            },
        )?;
        stubbed.push(label);
    }
    l.allow_shadowing(false);
    Ok(stubbed)
}
