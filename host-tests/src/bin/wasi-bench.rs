//! Runs a `wasm32-wasip1` command module (the core's `bench_wasm` example) under wasmtime, with
//! just the WASI calls it imports: args, environ (empty), a real monotonic/realtime clock,
//! random bytes (zeros: benchmarks need none), `fd_write` to stdout/stderr, `proc_exit`.
//!
//!   cargo run -p host-tests --release --bin wasi-bench -- <module.wasm> [args...]
//!
//! `filter/core/bench.sh` uses it for the wasmtime column (Envoy's other wasm runtime).

use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Config, Engine, Extern, Linker, Memory, Module, Store};

struct Wasi {
    args: Vec<Vec<u8>>,
    start: Instant,
    exit: Option<i32>,
}

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

fn memory(caller: &mut Caller<'_, Wasi>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn write_bytes(caller: &mut Caller<'_, Wasi>, at: i32, bytes: &[u8]) -> i32 {
    let Some(mem) = memory(caller) else {
        return ERRNO_FAULT;
    };
    match mem.write(caller, at as u32 as usize, bytes) {
        Ok(()) => ERRNO_SUCCESS,
        Err(_) => ERRNO_FAULT,
    }
}

fn read_u32(caller: &mut Caller<'_, Wasi>, mem: &Memory, at: usize) -> Option<u32> {
    let mut b = [0u8; 4];
    mem.read(caller, at, &mut b).ok()?;
    Some(u32::from_le_bytes(b))
}

fn main() -> wasmtime::Result<()> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        eprintln!("usage: wasi-bench <module.wasm> [args...]");
        std::process::exit(2);
    }
    let path = argv.remove(0);
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    let engine = Engine::new(&config)?;
    let module = Module::from_file(&engine, &path)?;
    let mut args = vec![b"bench".to_vec()];
    args.extend(argv.into_iter().map(String::into_bytes));
    let mut store = Store::new(
        &engine,
        Wasi {
            args,
            start: Instant::now(),
            exit: None,
        },
    );
    let mut linker: Linker<Wasi> = Linker::new(&engine);
    let w = "wasi_snapshot_preview1";
    linker.func_wrap(
        w,
        "args_sizes_get",
        |mut c: Caller<'_, Wasi>, count: i32, size: i32| {
            let n = c.data().args.len() as u32;
            let total: usize = c.data().args.iter().map(|a| a.len() + 1).sum();
            let r = write_bytes(&mut c, count, &n.to_le_bytes());
            if r != ERRNO_SUCCESS {
                return r;
            }
            write_bytes(&mut c, size, &(total as u32).to_le_bytes())
        },
    )?;
    linker.func_wrap(
        w,
        "args_get",
        |mut c: Caller<'_, Wasi>, ptrs: i32, buf: i32| {
            let args = c.data().args.clone();
            let mut at = buf as u32;
            for (i, a) in args.iter().enumerate() {
                let slot = (ptrs as u32).wrapping_add(4 * i as u32) as i32;
                if write_bytes(&mut c, slot, &at.to_le_bytes()) != ERRNO_SUCCESS {
                    return ERRNO_FAULT;
                }
                let mut z = a.clone();
                z.push(0);
                if write_bytes(&mut c, at as i32, &z) != ERRNO_SUCCESS {
                    return ERRNO_FAULT;
                }
                at = at.wrapping_add(z.len() as u32);
            }
            ERRNO_SUCCESS
        },
    )?;
    linker.func_wrap(
        w,
        "environ_sizes_get",
        |mut c: Caller<'_, Wasi>, count: i32, size: i32| {
            let r = write_bytes(&mut c, count, &0u32.to_le_bytes());
            if r != ERRNO_SUCCESS {
                return r;
            }
            write_bytes(&mut c, size, &0u32.to_le_bytes())
        },
    )?;
    linker.func_wrap(
        w,
        "environ_get",
        |_c: Caller<'_, Wasi>, _p: i32, _b: i32| ERRNO_SUCCESS,
    )?;
    linker.func_wrap(
        w,
        "clock_time_get",
        |mut c: Caller<'_, Wasi>, id: i32, _precision: i64, out: i32| {
            let nanos: u64 = match id {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                1 => c.data().start.elapsed().as_nanos() as u64,
                _ => return ERRNO_INVAL,
            };
            write_bytes(&mut c, out, &nanos.to_le_bytes())
        },
    )?;
    linker.func_wrap(
        w,
        "random_get",
        |mut c: Caller<'_, Wasi>, buf: i32, len: i32| {
            let zeros = vec![0u8; len as u32 as usize];
            write_bytes(&mut c, buf, &zeros)
        },
    )?;
    linker.func_wrap(
        w,
        "fd_write",
        |mut c: Caller<'_, Wasi>, fd: i32, iovs: i32, iovs_len: i32, written: i32| {
            let Some(mem) = memory(&mut c) else {
                return ERRNO_FAULT;
            };
            let mut out = Vec::new();
            for i in 0..iovs_len as u32 as usize {
                let base = iovs as u32 as usize + 8 * i;
                let (Some(ptr), Some(len)) = (
                    read_u32(&mut c, &mem, base),
                    read_u32(&mut c, &mem, base + 4),
                ) else {
                    return ERRNO_FAULT;
                };
                let mut chunk = vec![0u8; len as usize];
                if mem.read(&c, ptr as usize, &mut chunk).is_err() {
                    return ERRNO_FAULT;
                }
                out.extend_from_slice(&chunk);
            }
            let ok = match fd {
                1 => std::io::stdout().write_all(&out).is_ok(),
                2 => std::io::stderr().write_all(&out).is_ok(),
                _ => return ERRNO_BADF,
            };
            if !ok {
                return ERRNO_FAULT;
            }
            write_bytes(&mut c, written, &(out.len() as u32).to_le_bytes())
        },
    )?;
    linker.func_wrap(
        w,
        "proc_exit",
        |mut c: Caller<'_, Wasi>, code: i32| -> wasmtime::Result<()> {
            c.data_mut().exit = Some(code);
            Err(wasmtime::format_err!("proc_exit({code})"))
        },
    )?;
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    let result = start.call(&mut store, ());
    std::io::stdout().flush()?;
    match (result, store.data().exit) {
        (_, Some(code)) => std::process::exit(code),
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(e),
    }
}
