// Helpers for the OIDC login tests (rp-conformance.test.mjs, browser.test.mjs), next to
// harness.mjs (whose startWorkerd they use with fixed `port`s, since a login config names the
// worker's own redirect_uri, and `text` bindings for OIDC_CLIENT_SECRET):
//
// - freePorts: distinct free ports, chosen before the configs are written;
// - Jar: a minimal cookie jar (one host: 127.0.0.1);
// - driveLogin: /auth/login -> the OP's /authorize -> /auth/callback, by hand, one hop at a time,
//   so a test sees every response;
// - GATE_HOSTS, startGates: the host dimension. The login tests run the same cases against each
//   host named in EDGEGATE_RP_HOSTS (comma-separated; default `worker`): `worker` (the edge
//   worker in real workerd, harness.mjs), `envoy` (real Envoy loading the proxy-wasm filter,
//   envoy-host.mjs) and `envoy-native` (real Envoy loading the native dynamic module), with the
//   same config JSON.
import { describe } from "node:test";
import { freePort, startWorkerd } from "./harness.mjs";
import { ENVOY_CONCURRENCY, startEnvoy } from "./envoy-host.mjs";

const KNOWN_HOSTS = ["worker", "envoy", "envoy-native"];

/** The hosts the login tests run against: EDGEGATE_RP_HOSTS (e.g. `worker,envoy`), default
 * `worker` (so edge-worker/test.sh needs no Envoy). An unknown name is an error, not a skip. */
export const GATE_HOSTS = (() => {
  const hosts = (process.env.EDGEGATE_RP_HOSTS ?? "worker")
    .split(",")
    .map((h) => h.trim())
    .filter(Boolean);
  for (const h of hosts) {
    if (!KNOWN_HOSTS.includes(h)) throw new Error(`EDGEGATE_RP_HOSTS: unknown host ${h} (known: ${KNOWN_HOSTS})`);
  }
  if (!hosts.length) throw new Error("EDGEGATE_RP_HOSTS names no host");
  return [...new Set(hosts)];
})();

/** What the tests may rely on per host. `vms`: how many copies of the gate's state a host runs
 * (the worker: one isolate; Envoy: a VM per worker thread and one on the main thread, each
 * fetching discovery and keys itself, sharing key sets through shared data; the native module:
 * one copy per process, whatever the worker threads). `requestVms`: of those, how many serve
 * requests. */
export const HOST_TRAITS = Object.freeze({
  worker: Object.freeze({ kind: "worker", vms: 1, requestVms: 1, bindings: true }),
  envoy: Object.freeze({ kind: "envoy", vms: ENVOY_CONCURRENCY + 1, requestVms: ENVOY_CONCURRENCY, bindings: false }),
  "envoy-native": Object.freeze({ kind: "envoy", vms: 1, requestVms: 1, bindings: false }),
});
/** Runs `suite(hostName, traits)` inside a `describe` for each host of GATE_HOSTS. */
export function describeEachHost(suite) {
  for (const hostName of GATE_HOSTS) {
    describe(`host: ${hostName}`, () => suite(hostName, HOST_TRAITS[hostName]));
  }
}

/**
 * Starts `gates` ([{name, port, config, text?}]) on `host` in front of the origin on
 * `originPort`: the worker (workerd, origin as a service binding; `text` bindings such as
 * OIDC_CLIENT_SECRET) or Envoy (one listener per gate; no bindings: a gate with `text` is an
 * error). Returns {host, ...HOST_TRAITS[host], urls: {name: base URL}, logs(), stop()}.
 */
export async function startGates(host, { originPort, gates }) {
  const started =
    host === "envoy" || host === "envoy-native"
      ? await startEnvoy({ originPort, gates, native: host === "envoy-native" })
      : await startWorkerd({ originPort, workers: gates.map((g) => ({ ...g, origin: "binding" })) });
  return { ...HOST_TRAITS[host], host, urls: started.urls, logs: started.logs, stop: started.stop };
}

/** Distinct free ports (freePort can hand out the same one twice in a row). */
export async function freePorts(n) {
  const ports = new Set();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

/** A cookie jar for one host. Honours deletion (empty value, Max-Age<=0, Expires in the past). */
export class Jar {
  constructor() {
    this.cookies = new Map();
  }
  /** Takes the Set-Cookie headers of a response; returns them parsed ([{name, value, attrs}]). */
  take(res) {
    const seen = [];
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...rest] = line.split(";");
      const i = pair.indexOf("=");
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const attrs = Object.fromEntries(
        rest.map((a) => {
          const j = a.indexOf("=");
          return j < 0 ? [a.trim().toLowerCase(), true] : [a.slice(0, j).trim().toLowerCase(), a.slice(j + 1).trim()];
        }),
      );
      const expired =
        value === "" ||
        (attrs["max-age"] !== undefined && Number(attrs["max-age"]) <= 0) ||
        (typeof attrs.expires === "string" && Date.parse(attrs.expires) <= Date.now());
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
      seen.push({ name, value, attrs, expired });
    }
    return seen;
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
  has(name) {
    return this.cookies.has(name);
  }
  names() {
    return [...this.cookies.keys()];
  }
}

/** GET without following redirects; with the jar's cookies, taking its Set-Cookies. */
export async function jarGet(url, jar, headers = {}) {
  const h = { accept: "text/html", ...headers };
  if (jar && jar.cookies.size) h.cookie = jar.header();
  const res = await fetch(url, { headers: h, redirect: "manual", signal: AbortSignal.timeout(10_000) });
  const setCookies = jar ? jar.take(res) : [];
  const body = await res.text();
  return { status: res.status, location: res.headers.get("location"), headers: res.headers, setCookies, body, url };
}

/**
 * Drives a login by hand: GET base/auth/login?rd=… -> (302) the OP's /authorize -> (302) the
 * callback -> its answer. `tamperCallback(url)` may change the callback URL before it is sent.
 * Returns {jar, start, authorize, callback}; a step that did not happen is undefined.
 */
export async function driveLogin(base, { rd = "/app/page", jar = new Jar(), tamperCallback, loginPath = "/auth/login" } = {}) {
  const start = await jarGet(`${base}${loginPath}?rd=${encodeURIComponent(rd)}`, jar);
  if (start.status !== 302 || !start.location) return { jar, start };
  const authorizeUrl = new URL(start.location, base);
  const authorize = await jarGet(authorizeUrl.toString(), null);
  if (authorize.status !== 302 || !authorize.location) return { jar, start, authorize };
  const cb = new URL(authorize.location, authorizeUrl);
  tamperCallback?.(cb);
  const callback = await jarGet(cb.toString(), jar);
  return { jar, start, authorize, callback };
}

/** A short description of a step for assertion messages. */
export function describeStep(step) {
  if (!step) return "(not reached)";
  const cookies = step.setCookies.map((c) => `${c.name}${c.expired ? "(deleted)" : ""}`).join(",");
  return `${step.status} location=${step.location} set-cookie=[${cookies}] body=${step.body.slice(0, 300)}`;
}
