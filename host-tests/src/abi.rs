//! The host side of the proxy-wasm ABI 0.2.1 (and the WASI preview1 calls Rust's std may import),
//! with Envoy's status codes and availability rules. Every import the module declares that is not
//! implemented here is stubbed (recorded, returns an error status) so instantiation never fails.

use crate::headers::{deserialize_pairs, Headers};
use crate::state::{lock, status, Deferred, HttpCall, LocalResponse, MetricKind, VmState};
use wasmtime::{Caller, Engine, Extern, Linker, Memory, Module, Result, Store, Val};

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

/// Envoy `copyToPointerSize`: empty data is returned as (NULL, 0) without allocating.
fn copy_out(c: &mut C<'_>, data: &[u8], ptr_ptr: i32, size_ptr: i32) -> Result<i32> {
    let Ok(len) = u32::try_from(data.len()) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let addr = if data.is_empty() {
        0
    } else {
        match alloc(c, data.len())? {
            Some(a) if write(c, a, data) => a,
            _ => return Ok(status::INVALID_MEMORY_ACCESS),
        }
    };
    if write_u32(c, ptr_ptr, addr as u32) && write_u32(c, size_ptr, len) {
        Ok(status::OK)
    } else {
        Ok(status::INVALID_MEMORY_ACCESS)
    }
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
    let parts: Vec<String> = path
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let joined = parts.join(".");
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

/// Names this host implements; everything else the module imports is stubbed.
pub(crate) fn build_linker(engine: &Engine) -> Result<Linker<VmState>> {
    let mut l: Linker<VmState> = Linker::new(engine);
    let e = "env";

    l.func_wrap(
        e,
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_log");
            if !(0..=5).contains(&level) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(msg) = read(&mut c, ptr, len) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            c.data_mut()
                .log(level as u32, String::from_utf8_lossy(&msg).into_owned());
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_log_level",
        |mut c: C<'_>, ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_log_level");
            let level = c.data().log_level;
            Ok(if write_u32(&mut c, ptr, level) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ptr: i32| -> Result<i32> {
            c.data_mut()
                .host_calls
                .push("proxy_get_current_time_nanoseconds");
            let now = lock(&c.data().world).now_nanos;
            Ok(if write_u64(&mut c, ptr, now) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: i32| -> Result<i32> {
            c.data_mut()
                .host_calls
                .push("proxy_set_tick_period_milliseconds");
            let now = lock(&c.data().world).now_nanos;
            let s = c.data_mut();
            s.tick_period_ms = ms as u32;
            // Envoy re-arms the timer at now + period on every call.
            s.next_tick_nanos =
                (ms != 0).then(|| now.saturating_add(u64::from(ms as u32) * 1_000_000));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_configuration",
        |mut c: C<'_>, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_configuration");
            let s = c.data();
            let cfg = s
                .plugin_config
                .clone()
                .unwrap_or_else(|| s.vm_config.clone());
            copy_out(&mut c, &cfg, ptr_ptr, size_ptr)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, t: i32, start: i32, max: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_buffer_bytes");
            if !(0..=MAX_BUFFER_TYPE).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(buf) = buffer(c.data(), t) else {
                return Ok(status::NOT_FOUND);
            };
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            // Envoy checks `start + length` for 32-bit overflow.
            if (start as u64).saturating_add(max as u64) > u64::from(u32::MAX) {
                return Ok(status::BAD_ARGUMENT);
            }
            let slice = if start > buf.len() {
                &[][..]
            } else {
                let end = start.saturating_add(max).min(buf.len());
                buf.get(start..end).unwrap_or(&[])
            };
            copy_out(&mut c, slice, ptr_ptr, size_ptr)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_buffer_status",
        |mut c: C<'_>, t: i32, len_ptr: i32, flags_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_buffer_status");
            if !(0..=MAX_BUFFER_TYPE).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(buf) = buffer(c.data(), t) else {
                return Ok(status::NOT_FOUND);
            };
            let ok =
                write_u32(&mut c, len_ptr, buf.len() as u32) && write_u32(&mut c, flags_ptr, 0);
            Ok(if ok {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, t: i32, start: i32, size: i32, ptr: i32, len: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_set_buffer_bytes");
            if !(0..=MAX_BUFFER_TYPE).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(data) = read(&mut c, ptr, len) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            if t > 1 {
                return Ok(if buffer(c.data(), t).is_some() {
                    status::BAD_ARGUMENT
                } else {
                    status::NOT_FOUND
                });
            }
            let Some(h) = c.data_mut().http() else {
                return Ok(status::NOT_FOUND);
            };
            let d = if t == 0 { &mut h.req } else { &mut h.resp };
            if !d.body_live {
                return Ok(status::NOT_FOUND);
            }
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
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, t: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_header_map_pairs");
            if !(0..=MAX_MAP_TYPE).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            // Envoy: always OK, an unavailable map reads as empty.
            let map = const_map(c.data(), t).unwrap_or_default();
            let data = if map.is_empty() {
                Vec::new()
            } else {
                map.serialize()
            };
            copy_out(&mut c, &data, ptr_ptr, size_ptr)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, t: i32, ptr: i32, len: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_set_header_map_pairs");
            if !(0..=MAX_MAP_TYPE).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(data) = read(&mut c, ptr, len) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let pairs = deserialize_pairs(&data);
            let new = Headers::from_pairs(&pairs);
            let s = c.data_mut();
            match with_mut_map(s, t, |m| *m = new.clone()) {
                Some(()) => {
                    note_invalid(s, t, &new);
                    Ok(status::OK)
                }
                None => Ok(status::BAD_ARGUMENT),
            }
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_header_map_size",
        |mut c: C<'_>, t: i32, ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_header_map_size");
            if !(0..=MAX_MAP_TYPE).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(size) = with_mut_map(c.data_mut(), t, |m| m.byte_size()) else {
                return Ok(status::BAD_ARGUMENT);
            };
            Ok(if write_u32(&mut c, ptr, size as u32) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_header_map_value");
            if !(0..=MAX_MAP_TYPE).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(key) = read(&mut c, kp, kl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let in_log = c.data().http_ref().is_some_and(|h| h.in_log);
            let Some(map) = const_map(c.data(), t) else {
                return Ok(if in_log {
                    status::NOT_FOUND
                } else {
                    status::BAD_ARGUMENT
                });
            };
            let key = String::from_utf8_lossy(&key).into_owned();
            match map.get_bytes(&key) {
                Some(v) => {
                    let v = v.to_vec();
                    copy_out(&mut c, &v, ptr_ptr, size_ptr)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    for (name, op) in [
        ("proxy_add_header_map_value", 0u8),
        ("proxy_replace_header_map_value", 1u8),
    ] {
        l.func_wrap(
            e,
            name,
            move |mut c: C<'_>, t: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> Result<i32> {
                c.data_mut().host_calls.push(name);
                if !(0..=MAX_MAP_TYPE).contains(&t) {
                    return Ok(status::BAD_ARGUMENT);
                }
                let (Some(k), Some(v)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
                    return Ok(status::INVALID_MEMORY_ACCESS);
                };
                let s = c.data_mut();
                let done = with_mut_map(s, t, |m| {
                    if op == 0 {
                        m.add(&k, &v)
                    } else {
                        m.set(&k, &v)
                    }
                });
                match done {
                    Some(()) => {
                        note_invalid(s, t, &Headers::from_pairs(&[(k, v)]));
                        Ok(status::OK)
                    }
                    None => Ok(status::BAD_ARGUMENT),
                }
            },
        )?;
    }
    l.func_wrap(
        e,
        "proxy_remove_header_map_value",
        |mut c: C<'_>, t: i32, kp: i32, kl: i32| -> Result<i32> {
            c.data_mut()
                .host_calls
                .push("proxy_remove_header_map_value");
            if !(0..=MAX_MAP_TYPE).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(k) = read(&mut c, kp, kl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            Ok(match with_mut_map(c.data_mut(), t, |m| m.remove(&k)) {
                Some(()) => status::OK,
                None => status::BAD_ARGUMENT,
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_property",
        |mut c: C<'_>, pp: i32, pl: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_property");
            let Some(path) = read(&mut c, pp, pl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            match property(c.data(), &path) {
                Some(v) => copy_out(&mut c, &v, ptr_ptr, size_ptr),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        e,
        "proxy_set_property",
        |mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_set_property");
            let (Some(path), Some(v)) = (read(&mut c, pp, pl), read(&mut c, vp, vl)) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let key = path
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect::<Vec<_>>()
                .join(".");
            match c.data_mut().http() {
                Some(h) => {
                    h.properties.insert(key, v);
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_shared_data",
        |mut c: C<'_>,
         kp: i32,
         kl: i32,
         ptr_ptr: i32,
         size_ptr: i32,
         cas_ptr: i32|
         -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_shared_data");
            let Some(key) = read(&mut c, kp, kl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let found = {
                let s = c.data();
                lock(&s.world).shared.get(&(s.vm_id.clone(), key)).cloned()
            };
            let Some((value, cas)) = found else {
                return Ok(status::NOT_FOUND);
            };
            let st = copy_out(&mut c, &value, ptr_ptr, size_ptr)?;
            if st != status::OK {
                return Ok(st);
            }
            Ok(if write_u32(&mut c, cas_ptr, cas) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_set_shared_data");
            let (Some(key), Some(value)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let s = c.data();
            let st = lock(&s.world).set_shared(&s.vm_id, &key, &value, cas as u32);
            Ok(st)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: i32, nl: i32, tok_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_register_shared_queue");
            let Some(name) = read(&mut c, np, nl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
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
            Ok(if write_u32(&mut c, tok_ptr, token) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: i32, vl: i32, np: i32, nl: i32, tok_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_resolve_shared_queue");
            let (Some(vm), Some(name)) = (read(&mut c, vp, vl), read(&mut c, np, nl)) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
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
            let Some(token) = token else {
                return Ok(status::NOT_FOUND);
            };
            Ok(if write_u32(&mut c, tok_ptr, token) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, token: i32, vp: i32, vl: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_enqueue_shared_queue");
            let Some(value) = read(&mut c, vp, vl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let s = c.data();
            let mut w = lock(&s.world);
            let idx = (token as u32 as usize).wrapping_sub(1);
            let Some(q) = w.queues.get_mut(idx) else {
                return Ok(status::NOT_FOUND);
            };
            q.items.push_back(value);
            let ev = (q.owner_vm, q.owner_root, token as u32);
            w.queue_ready.push(ev);
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, token: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_dequeue_shared_queue");
            let item = {
                let s = c.data();
                let mut w = lock(&s.world);
                let idx = (token as u32 as usize).wrapping_sub(1);
                match w.queues.get_mut(idx) {
                    None => return Ok(status::NOT_FOUND),
                    Some(q) => q.items.pop_front(),
                }
            };
            match item {
                None => Ok(status::EMPTY),
                Some(v) => copy_out(&mut c, &v, ptr_ptr, size_ptr),
            }
        },
    )?;
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
    l.func_wrap(
        e,
        "proxy_continue_stream",
        |mut c: C<'_>, t: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_continue_stream");
            Ok(continue_stream(c.data_mut(), t))
        },
    )?;
    l.func_wrap(e, "proxy_continue_request", |mut c: C<'_>| -> Result<i32> {
        c.data_mut().host_calls.push("proxy_continue_request");
        Ok(continue_stream(c.data_mut(), 0))
    })?;
    l.func_wrap(
        e,
        "proxy_continue_response",
        |mut c: C<'_>| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_continue_response");
            Ok(continue_stream(c.data_mut(), 1))
        },
    )?;
    l.func_wrap(
        e,
        "proxy_close_stream",
        |mut c: C<'_>, t: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_close_stream");
            if !(0..=3).contains(&t) {
                return Ok(status::BAD_ARGUMENT);
            }
            let s = c.data_mut();
            let id = s.ctx_id();
            if t < 2 && s.http().is_some() {
                s.deferred.push(Deferred::Reset(id));
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_send_local_response",
        |mut c: C<'_>,
         code: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc: i32|
         -> Result<i32> {
            c.data_mut().host_calls.push("proxy_send_local_response");
            let (Some(details), Some(body), Some(hdrs)) = (
                read(&mut c, dp, dl),
                read(&mut c, bp, bl),
                read(&mut c, hp, hl),
            ) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
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
        },
    )?;
    l.func_wrap(
        e,
        "proxy_http_call",
        |mut c: C<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         tok_ptr: i32|
         -> Result<i32> {
            c.data_mut().host_calls.push("proxy_http_call");
            let (Some(upstream), Some(hdrs), Some(body), Some(trl)) = (
                read(&mut c, up, ul),
                read(&mut c, hp, hl),
                read(&mut c, bp, bl),
                read(&mut c, tp, tl),
            ) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            if !write_u32(&mut c, tok_ptr, 0) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            if timeout < 0 {
                return Ok(status::BAD_ARGUMENT);
            }
            let upstream = String::from_utf8_lossy(&upstream).into_owned();
            let headers = Headers::from_pairs(&deserialize_pairs(&hdrs));
            let s = c.data_mut();
            let known = match &lock(&s.world).clusters {
                None => true,
                Some(list) => list.contains(&upstream),
            };
            if !known
                || !headers.contains(":path")
                || !headers.contains(":method")
                || !headers.contains(":authority")
            {
                return Ok(status::BAD_ARGUMENT);
            }
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
            Ok(if write_u32(&mut c, tok_ptr, token) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_define_metric",
        |mut c: C<'_>, t: i32, np: i32, nl: i32, id_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_define_metric");
            let Some(kind) = MetricKind::from_abi(t) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(name) = read(&mut c, np, nl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let name = String::from_utf8_lossy(&name).into_owned();
            let s = c.data_mut();
            lock(&s.world)
                .metrics
                .entry((kind, name.clone()))
                .or_default();
            s.next_metric = s.next_metric.wrapping_add(1);
            let id = (s.next_metric << 2) | kind.tag();
            s.metric_ids.insert(id, (kind, name));
            Ok(if write_u32(&mut c, id_ptr, id) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_increment_metric",
        |mut c: C<'_>, id: i32, delta: i64| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_increment_metric");
            let s = c.data();
            let Some((kind, name)) = s.metric_ids.get(&(id as u32)).cloned() else {
                return Ok(if id as u32 & 3 == 2 {
                    status::BAD_ARGUMENT
                } else {
                    status::NOT_FOUND
                });
            };
            let mut w = lock(&s.world);
            let Some(m) = w.metrics.get_mut(&(kind, name)) else {
                return Ok(status::NOT_FOUND);
            };
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
        },
    )?;
    l.func_wrap(
        e,
        "proxy_record_metric",
        |mut c: C<'_>, id: i32, value: i64| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_record_metric");
            let s = c.data();
            let Some((kind, name)) = s.metric_ids.get(&(id as u32)).cloned() else {
                return Ok(status::NOT_FOUND);
            };
            let mut w = lock(&s.world);
            let Some(m) = w.metrics.get_mut(&(kind, name)) else {
                return Ok(status::NOT_FOUND);
            };
            match kind {
                MetricKind::Counter => m.value = m.value.saturating_add(value),
                MetricKind::Gauge => m.value = value,
                MetricKind::Histogram => m.samples.push(value as u64),
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_metric");
            let value = {
                let s = c.data();
                let Some((kind, name)) = s.metric_ids.get(&(id as u32)).cloned() else {
                    return Ok(if id as u32 & 3 == 2 {
                        status::BAD_ARGUMENT
                    } else {
                        status::NOT_FOUND
                    });
                };
                if kind == MetricKind::Histogram {
                    return Ok(status::BAD_ARGUMENT);
                }
                let w = lock(&s.world);
                w.metrics.get(&(kind, name)).map(|m| m.value).unwrap_or(0)
            };
            Ok(if write_u64(&mut c, ptr, value as u64) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    l.func_wrap(
        e,
        "proxy_set_effective_context",
        |mut c: C<'_>, id: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_set_effective_context");
            let s = c.data_mut();
            if s.contexts.contains_key(&(id as u32)) {
                s.effective = id as u32;
                Ok(status::OK)
            } else {
                Ok(status::BAD_ARGUMENT)
            }
        },
    )?;
    l.func_wrap(e, "proxy_done", |mut c: C<'_>| -> Result<i32> {
        c.data_mut().host_calls.push("proxy_done");
        let s = c.data_mut();
        let id = s.ctx_id();
        s.done_calls.push(id);
        if let Some(pos) = s.pending_done.iter().position(|x| *x == id) {
            s.pending_done.remove(pos);
            Ok(status::OK)
        } else {
            Ok(status::NOT_FOUND)
        }
    })?;
    l.func_wrap(
        e,
        "proxy_get_status",
        |mut c: C<'_>, code_ptr: i32, ptr_ptr: i32, size_ptr: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_get_status");
            if !write_u32(&mut c, code_ptr, 0) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            copy_out(&mut c, &[], ptr_ptr, size_ptr)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_clear_route_cache",
        |mut c: C<'_>| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_clear_route_cache");
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_call_foreign_function",
        |mut c: C<'_>,
         name_ptr: i32,
         name_len: i32,
         args_ptr: i32,
         args_len: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> Result<i32> {
            c.data_mut().host_calls.push("proxy_call_foreign_function");
            let (Some(name), Some(args)) = (
                read(&mut c, name_ptr, name_len),
                read(&mut c, args_ptr, args_len),
            ) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            if name != b"verify_signature" {
                return Ok(status::NOT_FOUND);
            }
            let mode = c.data().foreign;
            let (st, out, hash) = crate::foreign::verify_signature(mode, &args);
            if let Some(h) = hash {
                c.data_mut().verify_calls.push(h);
            }
            if st != status::OK {
                return Ok(st);
            }
            copy_out(&mut c, &out, ret_ptr, ret_len)
        },
    )?;

    // gRPC is not emulated: calls fail the way the SDK accepts (no panic), later ops find no token.
    l.func_wrap(
        e,
        "proxy_grpc_call",
        |mut c: C<'_>,
         _a: i32,
         _b: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32,
         _j: i32,
         _k: i32,
         _t: i32,
         _r: i32|
         -> Result<i32> {
            c.data_mut().host_calls.push("proxy_grpc_call");
            c.data_mut()
                .unknown_calls
                .push("env.proxy_grpc_call".into());
            Ok(status::INTERNAL_FAILURE)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_grpc_stream",
        |mut c: C<'_>,
         _a: i32,
         _b: i32,
         _d: i32,
         _e: i32,
         _f: i32,
         _g: i32,
         _h: i32,
         _i: i32,
         _r: i32|
         -> Result<i32> {
            c.data_mut().host_calls.push("proxy_grpc_stream");
            c.data_mut()
                .unknown_calls
                .push("env.proxy_grpc_stream".into());
            Ok(status::INTERNAL_FAILURE)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_grpc_send",
        |mut c: C<'_>, _t: i32, _p: i32, _l: i32, _e: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_grpc_send");
            Ok(status::NOT_FOUND)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_grpc_cancel",
        |mut c: C<'_>, _t: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_grpc_cancel");
            Ok(status::NOT_FOUND)
        },
    )?;
    l.func_wrap(
        e,
        "proxy_grpc_close",
        |mut c: C<'_>, _t: i32| -> Result<i32> {
            c.data_mut().host_calls.push("proxy_grpc_close");
            Ok(status::NOT_FOUND)
        },
    )?;

    for w in ["wasi_snapshot_preview1", "wasi_unstable"] {
        define_wasi(&mut l, w)?;
    }

    Ok(l)
}

fn define_wasi(l: &mut Linker<VmState>, w: &str) -> Result<()> {
    const EBADF: i32 = 8;
    const EFAULT: i32 = 21;
    const EINVAL: i32 = 28;
    const ENOSYS: i32 = 52;
    const ENOTSUP: i32 = 58;

    l.func_wrap(
        w,
        "fd_write",
        |mut c: C<'_>, fd: i32, iovs: i32, n: i32, nw_ptr: i32| -> Result<i32> {
            let level = match fd {
                1 => 2,
                2 => 4,
                _ => return Ok(EBADF),
            };
            let mut out = Vec::new();
            for i in 0..(n as u32).min(1024) {
                let at = iovs.wrapping_add((i * 8) as i32);
                let Some(iov) = read(&mut c, at, 8) else {
                    return Ok(EFAULT);
                };
                let (Some(p), Some(l)) = (iov.get(0..4), iov.get(4..8)) else {
                    return Ok(EFAULT);
                };
                let p = i32::from_le_bytes(p.try_into().unwrap_or_default());
                let l = i32::from_le_bytes(l.try_into().unwrap_or_default());
                let Some(chunk) = read(&mut c, p, l) else {
                    return Ok(EFAULT);
                };
                out.extend_from_slice(&chunk);
            }
            let written = out.len() as u32;
            if !out.is_empty() {
                let mut s = String::from_utf8_lossy(&out).into_owned();
                if s.ends_with('\n') {
                    s.pop();
                }
                c.data_mut().log(level, s);
            }
            Ok(if write_u32(&mut c, nw_ptr, written) {
                0
            } else {
                EFAULT
            })
        },
    )?;
    l.func_wrap(
        w,
        "fd_read",
        |_c: C<'_>, _a: i32, _b: i32, _d: i32, _e: i32| -> Result<i32> { Ok(ENOSYS) },
    )?;
    l.func_wrap(w, "fd_close", |_c: C<'_>, _a: i32| -> Result<i32> { Ok(0) })?;
    l.func_wrap(
        w,
        "fd_seek",
        |_c: C<'_>, _a: i32, _b: i64, _d: i32, _e: i32| -> Result<i32> { Ok(0) },
    )?;
    l.func_wrap(
        w,
        "fd_fdstat_get",
        |mut c: C<'_>, fd: i32, ptr: i32| -> Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(EBADF);
            }
            let mut st = [0u8; 24];
            if let Some(rights) = st.get_mut(8..16) {
                rights.copy_from_slice(&64u64.to_le_bytes());
            }
            Ok(if write(&mut c, ptr, &st) { 0 } else { EFAULT })
        },
    )?;
    l.func_wrap(
        w,
        "fd_prestat_get",
        |_c: C<'_>, _a: i32, _b: i32| -> Result<i32> { Ok(EBADF) },
    )?;
    l.func_wrap(
        w,
        "fd_prestat_dir_name",
        |_c: C<'_>, _a: i32, _b: i32, _d: i32| -> Result<i32> { Ok(ENOSYS) },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        l.func_wrap(
            w,
            name,
            |mut c: C<'_>, count_ptr: i32, size_ptr: i32| -> Result<i32> {
                Ok(
                    if write_u32(&mut c, count_ptr, 0) && write_u32(&mut c, size_ptr, 0) {
                        0
                    } else {
                        EFAULT
                    },
                )
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        l.func_wrap(w, name, |_c: C<'_>, _a: i32, _b: i32| -> Result<i32> {
            Ok(0)
        })?;
    }
    l.func_wrap(
        w,
        "clock_time_get",
        |mut c: C<'_>, id: i32, _precision: i64, ptr: i32| -> Result<i32> {
            if id != 0 && id != 1 {
                return Ok(ENOTSUP);
            }
            let now = lock(&c.data().world).now_nanos;
            Ok(if write_u64(&mut c, ptr, now) {
                0
            } else {
                EFAULT
            })
        },
    )?;
    l.func_wrap(
        w,
        "clock_res_get",
        |mut c: C<'_>, id: i32, ptr: i32| -> Result<i32> {
            if id != 0 && id != 1 {
                return Ok(ENOTSUP);
            }
            Ok(if write_u64(&mut c, ptr, 1) { 0 } else { EFAULT })
        },
    )?;
    l.func_wrap(
        w,
        "random_get",
        |mut c: C<'_>, ptr: i32, len: i32| -> Result<i32> {
            let n = len as u32 as usize;
            if n > 64 * 1024 {
                return Ok(EINVAL);
            }
            let bytes = lock(&c.data().world).random(n);
            Ok(if write(&mut c, ptr, &bytes) {
                0
            } else {
                EFAULT
            })
        },
    )?;
    l.func_wrap(w, "proc_exit", |_c: C<'_>, code: i32| -> Result<()> {
        Err(wasmtime::format_err!(
            "wasi proc_exit({code}) called by the module"
        ))
    })?;
    l.func_wrap(w, "sched_yield", |_c: C<'_>| -> Result<i32> { Ok(0) })?;
    l.func_wrap(
        w,
        "poll_oneoff",
        |mut c: C<'_>, _i: i32, _o: i32, _n: i32, nev_ptr: i32| -> Result<i32> {
            Ok(if write_u32(&mut c, nev_ptr, 0) {
                0
            } else {
                EFAULT
            })
        },
    )?;
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
            52
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
