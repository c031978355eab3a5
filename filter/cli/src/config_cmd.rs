//! `edgegate config check|envoy|istio|wrangler`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::util::{self, Failure, Loaded};
use crate::ConfigArg;

const DEFAULT_WASM: &str = "edgegate_proxy_wasm.wasm";

#[derive(Debug, Args)]
pub struct EnvoyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The filter module as Envoy will find it (a path on the Envoy host).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_WASM)]
    pub wasm: String,
    /// The cluster the rendered route sends requests to (define it; replace the route as needed).
    #[arg(long, value_name = "NAME", default_value = "upstream")]
    pub cluster: String,
    /// Render the native Envoy dynamic module (libedgegate.so, envoy/build-native.sh) instead
    /// of the proxy-wasm filter.
    #[arg(long, conflicts_with = "wasm")]
    pub native: bool,
}

#[derive(Debug, Args)]
pub struct IstioArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The built filter module; its sha256 pins the module (and gives the default file:// url).
    #[arg(long, value_name = "FILE")]
    pub wasm: Option<PathBuf>,
    /// Where proxies fetch the module: oci://registry/repo:tag (or @sha256:digest),
    /// https://..., or file:///path on the proxy. Default: file:// of --wasm.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The WasmPlugin's namespace (istio-system applies it mesh-wide / to the gateway).
    #[arg(long, default_value = "istio-system")]
    pub namespace: String,
    /// The workloads it applies to, as LABEL=VALUE.
    #[arg(
        long,
        value_name = "LABEL=VALUE",
        default_value = "istio=ingressgateway"
    )]
    pub selector: String,
}

#[derive(Debug, Args)]
pub struct WranglerArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The worker's name.
    #[arg(long, default_value = "edgegate")]
    pub name: String,
    /// The origin the worker guards (the `ORIGIN_URL` var).
    #[arg(long, value_name = "URL", default_value = "https://origin.example.com")]
    pub origin_url: String,
}

/// `config check FILE`.
pub fn check(file: &Path) -> Result<ExitCode, Failure> {
    let loaded = util::load_config(file)?;
    for w in loaded.engine.warnings() {
        eprintln!("warning: {w}");
    }
    println!("{}: ok: {}", file.display(), summary(&loaded));
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn summary(l: &Loaded) -> String {
    let c = &l.config;
    let remote = l.engine.remote_key_sources().len();
    format!(
        "{} ({remote} with remote JWKS), {} + default rule, {}, {}, {}",
        plural(c.jwt.providers.len(), "provider"),
        plural(c.rules.len(), "rule"),
        plural(c.api_keys.as_ref().map_or(0, |k| k.keys.len()), "API key"),
        plural(
            c.magic_links.as_ref().map_or(0, |m| m.keys.len()),
            "magic-link key"
        ),
        plural(
            c.session.as_ref().map_or(0, |s| s.keys.len()),
            "session key"
        ),
    )
}

/// `s` with every line after the first indented by `n` spaces.
fn indent(s: &str, n: usize) -> String {
    s.replace('\n', &format!("\n{}", " ".repeat(n)))
}

fn pretty(v: &Value) -> Result<String, Failure> {
    serde_json::to_string_pretty(v).map_err(|e| Failure::check(format!("internal error: {e}")))
}

/// YAML double-quoted scalar (JSON string syntax is valid YAML).
fn yq(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Comment lines naming the Envoy clusters remote JWKS (and the API-key list) are fetched through.
fn cluster_notes(l: &Loaded) -> String {
    let mut out = String::new();
    for r in l.engine.remote_key_sources() {
        let via = match r.source.cluster() {
            Some(c) => format!("cluster {c:?}"),
            None => "the cluster named after the JWKS URL's host:port".to_string(),
        };
        out.push_str(&format!(
            "# Provider {:?} fetches its JWKS through {via}: define it (TLS for https).\n",
            r.provider
        ));
    }
    if let Some(list) = l.engine.api_key_list() {
        let via = match list.source().cluster() {
            Some(c) => format!("cluster {c:?}"),
            None => "the cluster named after its URL's host:port".to_string(),
        };
        out.push_str(&format!(
            "# The API-key list (api_keys.remote) is fetched through {via}: define it (TLS for https).\n"
        ));
    }
    out
}

/// The four connection-manager settings every Envoy config edgegate renders carries, each with
/// why; `indent` spaces in front of every line (the HCM's `typed_config` level).
fn hcm_hardening(indent: usize) -> String {
    let text = "\
# Hardening (see envoy/README.md): rules match the normalised path, so Envoy forwards that path:
# `.`/`..` segments resolved and `//` merged (no `/public/../admin` or `//admin` reaching
# another route than the rule matched).
normalize_path: true
merge_slashes: true
# `%2F` / `%5C` in a path: 400. Apps decode them into `/` after the rules matched the encoded path.
path_with_escaped_slashes_action: REJECT_REQUEST
common_http_protocol_options:
  # A header name with `_`: 400. CGI-style apps (WSGI, Rack, PHP) read `x_edgegate_roles` as
  # HTTP_X_EDGEGATE_ROLES, the same variable as edgegate's `x-edgegate-roles`.
  headers_with_underscores_action: REJECT_REQUEST
";
    let pad = " ".repeat(indent);
    text.lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

/// `config envoy`: a whole http_connection_manager (a listener's network filter) with the
/// hardening settings, the edgegate filter (proxy-wasm, or the native module with `--native`)
/// and the router.
pub fn envoy(a: &EnvoyArgs) -> Result<ExitCode, Failure> {
    let l = util::load_config(&a.config.config)?;
    let json = pretty(&l.raw)?;
    let (notes, filter) = if a.native {
        native_filter(&l, &json)
    } else {
        wasm_filter(&a.wasm, &json)
    };
    print!(
        "\
# edgegate for Envoy: an http_connection_manager for a listener's filter_chains[].filters,
# generated by `edgegate config envoy` from {file}. Replace route_config with your routes
# (the cluster {cluster} is yours to define); keep the hardening settings, and keep edgegate
# before envoy.filters.http.router (http_filters run in order).
{notes}# A config with errors is refused at load.
# The embedded config holds secrets: protect this file as you protect them.
{clusters}- name: envoy.filters.network.http_connection_manager
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
    stat_prefix: ingress
    codec_type: AUTO
{hardening}    route_config:
      name: local
      virtual_hosts:
        - name: app
          domains: [\"*\"]
          routes:
            - match: {{ prefix: \"/\" }}
              route: {{ cluster: {cluster} }}
    http_filters:
{filter}      - name: envoy.filters.http.router
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
",
        file = a.config.config.display(),
        clusters = cluster_notes(&l),
        hardening = hcm_hardening(4),
        cluster = yq(&a.cluster),
    );
    Ok(ExitCode::SUCCESS)
}

/// The proxy-wasm filter of `config envoy`: comment lines and the `http_filters` entry.
fn wasm_filter(wasm: &str, json: &str) -> (String, String) {
    let notes = "\
# Fail closed: failure_policy FAIL_RELOAD replaces a VM that trapped with a fresh one and
# refuses requests meanwhile (never fail open).
"
    .to_string();
    let filter = format!(
        "      - name: envoy.filters.http.wasm
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          config:
            name: edgegate
            root_id: edgegate
            failure_policy: FAIL_RELOAD
            allow_on_headers_stop_iteration: true
            vm_config:
              vm_id: edgegate
              runtime: envoy.wasm.runtime.v8
              code:
                local:
                  filename: {wasm}
            configuration:
              \"@type\": type.googleapis.com/google.protobuf.StringValue
              value: |
                {json}
",
        wasm = yq(wasm),
        json = indent(json, 16),
    );
    (notes, filter)
}

/// The native dynamic module of `config envoy --native`: comment lines and the
/// `http_filters` entry.
fn native_filter(l: &Loaded, json: &str) -> (String, String) {
    let mut notes = String::from(
        "\
# The native module: Envoy loads libedgegate.so (envoy/build-native.sh builds it) from the
# directory in ENVOY_DYNAMIC_MODULES_SEARCH_PATH. It is built for one Envoy minor version
# (1.40; it loads on the next) and runs unsandboxed in Envoy's process; every hook fails
# closed on a panic. For the metric names the wasm filter has (edgegate_* in
# /stats/prometheus), set the runtime flag
# envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true.
",
    );
    if l.engine.login().is_some() {
        notes.push_str(
            "\
# The native module serves browser login from the `login` section; its client secret is
# OIDC_CLIENT_SECRET in Envoy's process environment, else login.client_secret.
",
        );
    }
    let filter = format!(
        "      - name: envoy.filters.http.dynamic_modules
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
          dynamic_module_config: {{ name: edgegate }}
          filter_name: edgegate
          filter_config:
            \"@type\": type.googleapis.com/google.protobuf.StringValue
            value: |
              {json}
",
        json = indent(json, 14),
    );
    (notes, filter)
}

/// Hex SHA-256 of a file, read in chunks.
pub fn sha256_file(path: &Path) -> Result<String, Failure> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
        match buf.get(..n) {
            Some([]) | None => break,
            Some(chunk) => h.update(chunk),
        }
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

/// `config istio`: a WasmPlugin.
pub fn istio(a: &IstioArgs) -> Result<ExitCode, Failure> {
    let (label, value) = a
        .selector
        .split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| {
            Failure::usage("--selector: expected LABEL=VALUE, e.g. istio=ingressgateway")
        })?;
    let module_sha = a.wasm.as_deref().map(sha256_file).transpose()?;
    let url = match (&a.url, &a.wasm) {
        (Some(u), _) => u.clone(),
        (None, Some(w)) => {
            let abs = std::fs::canonicalize(w)
                .map_err(|e| Failure::usage(format!("cannot resolve {}: {e}", w.display())))?;
            format!("file://{}", abs.display())
        }
        (None, None) => {
            return Err(Failure::usage(
                "give --wasm FILE (the built module; url file://) and/or --url oci://...",
            ))
        }
    };
    let (sha_line, sha_note) = if let Some(oci) = url.strip_prefix("oci://") {
        // Istio checks `sha256` of an OCI url against the image digest, not the module.
        let digest = oci.split_once("@sha256:").map(|(_, d)| d.to_string());
        let note = match &module_sha {
            Some(m) => format!("# The module's own sha256 is {m}.\n"),
            None => String::new(),
        };
        match digest {
            Some(d) => (format!("  sha256: {}\n", yq(&d)), note),
            None => (
                String::new(),
                format!("# Pin the image: use url oci://...@sha256:<image digest> (Istio checks sha256 against the image digest).\n{note}"),
            ),
        }
    } else if url.starts_with("file://")
        || url.starts_with("https://")
        || url.starts_with("http://")
    {
        match &module_sha {
            Some(m) => (format!("  sha256: {m}\n"), String::new()),
            None => {
                return Err(Failure::usage(
                    "--url file:// or https:// needs --wasm FILE so the module's sha256 pins it",
                ))
            }
        }
    } else {
        return Err(Failure::usage(
            "--url: expected oci://, https:// or file:// (Istio's supported schemes)",
        ));
    };
    let l = util::load_config(&a.config.config)?;
    let mut raw = l.raw.clone();
    let login = istio_login(&mut raw, &a.namespace);
    let clusters = match &login {
        Some(login) => login.notes.clone(),
        None => cluster_notes(&l),
    };
    let vm_config = match &login {
        Some(login) if login.secret_from_host => {
            "  # The OIDC client secret: the istio-proxy container's environment variable\n  \
             # OIDC_CLIENT_SECRET (feed it from a Kubernetes Secret; envoy/README.md, \"Istio\").\n  \
             vmConfig:\n    env:\n      - name: OIDC_CLIENT_SECRET\n        valueFrom: HOST\n"
        }
        _ => "",
    };
    let idp_docs = login.map(|l| l.documents).unwrap_or_default();
    let json = pretty(&raw)?;
    print!(
        "\
# edgegate as an Istio WasmPlugin. Generated by `edgegate config istio` from {file}.
# phase AUTHN runs it before Istio's authorization; failStrategy FAIL_CLOSE refuses requests
# when the module cannot be fetched or fails (never fail open).
# pluginConfig holds the config's secrets: anyone who can read WasmPlugins in this namespace
# can read them; restrict RBAC accordingly.
{sha_note}{clusters}{envoy_filter}---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: edgegate
  namespace: {ns}
spec:
  selector:
    matchLabels:
      {label}: {value}
  url: {url}
{sha_line}  phase: AUTHN
  failStrategy: FAIL_CLOSE
  pluginName: edgegate
{vm_config}  pluginConfig:
    {json}
{idp_docs}",
        file = a.config.config.display(),
        envoy_filter = istio_hardening(&a.namespace, label, value),
        ns = yq(&a.namespace),
        label = yq(label),
        value = yq(value),
        url = yq(&url),
        json = indent(&json, 4),
    );
    Ok(ExitCode::SUCCESS)
}

/// What `config istio` adds for a config with a `login` section.
struct IstioLogin {
    /// Comment lines: which cluster each IdP call goes through, and what is left to the reader.
    notes: String,
    /// ServiceEntry and DestinationRule documents (each starting with `---`).
    documents: String,
    /// No `login.client_secret`: the secret comes from the proxy's environment.
    secret_from_host: bool,
}

/// `outbound|80||host`: the cluster Istio makes for a ServiceEntry's port 80.
fn outbound(host: &str) -> String {
    format!("outbound|80||{host}")
}

/// The host of an `https://` URL (None for http://, e.g. a localhost IdP in tests).
fn https_host(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    (u.scheme() == "https")
        .then(|| u.host_str().map(str::to_string))
        .flatten()
}

/// For a config with `login`: sets `login.cluster` and the providers' `remote_jwks.cluster`
/// that are not set to the `outbound|80||<host>` cluster of a ServiceEntry, and renders that
/// ServiceEntry and a DestinationRule (TLS origination to 443 with SNI) per host. Under Istio
/// there is no cluster named after a URL's authority, so the filter's default cannot work.
fn istio_login(raw: &mut Value, namespace: &str) -> Option<IstioLogin> {
    let login = raw.get("login")?.clone();
    let provider_name = login.get("provider").and_then(Value::as_str).unwrap_or("");
    let mut hosts: Vec<String> = Vec::new();
    let mut notes = String::from(
        "# Login (the `login` section): under Istio the filter reaches the IdP through the\n\
         # ServiceEntry clusters below (`outbound|80||<host>`, TLS to 443 by the DestinationRule).\n",
    );
    // The providers' key sets.
    if let Some(providers) = raw
        .pointer_mut("/jwt/providers")
        .and_then(Value::as_array_mut)
    {
        for p in providers.iter_mut() {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let Some(rj) = p.get_mut("remote_jwks").and_then(Value::as_object_mut) else {
                continue;
            };
            if let Some(c) = rj.get("cluster").and_then(Value::as_str) {
                notes.push_str(&format!(
                    "# Provider {name:?} fetches its keys through cluster {c:?} (set in the config): it must exist.\n"
                ));
                continue;
            }
            let url = rj
                .get("jwks_uri")
                .or_else(|| rj.get("oidc_issuer"))
                .and_then(Value::as_str)
                .unwrap_or("");
            match https_host(url) {
                Some(h) => {
                    rj.insert("cluster".into(), Value::String(outbound(&h)));
                    notes.push_str(&format!(
                        "# Provider {name:?}: remote_jwks.cluster set to {:?}.\n",
                        outbound(&h)
                    ));
                    if !hosts.contains(&h) {
                        hosts.push(h);
                    }
                }
                None => notes.push_str(&format!(
                    "# Provider {name:?}: {url:?} is not https://; set remote_jwks.cluster to a cluster that reaches it.\n"
                )),
            }
        }
    }
    // Discovery and the token endpoint.
    let discovery = login
        .get("discovery_url")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            raw.pointer("/jwt/providers")
                .and_then(Value::as_array)?
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(provider_name))?
                .get("issuer")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let login_host = https_host(&discovery);
    match (login.get("cluster").and_then(Value::as_str), &login_host) {
        (Some(c), _) => notes.push_str(&format!(
            "# login.cluster {c:?} (set in the config) must reach discovery and the token endpoint.\n"
        )),
        // The token endpoint is on another host than discovery: one login.cluster cannot serve
        // both, and Istio cannot name a cluster after an authority.
        (None, Some(h)) if h == "accounts.google.com" || h.starts_with("cognito-idp.") => {
            notes.push_str(&format!(
                "# login.cluster is NOT set: {h}'s token endpoint is on another host (Google: oauth2.googleapis.com;\n\
                 # Cognito: your user pool's domain), which one cluster cannot serve. Add clusters named exactly\n\
                 # {h:?} and the token endpoint's host with an EnvoyFilter (applyTo: CLUSTER, operation: ADD):\n\
                 # docs/idp/google.md and docs/idp/cognito.md, \"Envoy and Istio (login)\".\n"
            ));
        }
        (None, Some(h)) => {
            if let Some(l) = raw.get_mut("login").and_then(Value::as_object_mut) {
                l.insert("cluster".into(), Value::String(outbound(h)));
            }
            notes.push_str(&format!(
                "# login.cluster set to {:?}: discovery and the token endpoint (both on {h}).\n",
                outbound(h)
            ));
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
        (None, None) => notes.push_str(&format!(
            "# {discovery:?} is not https://: set login.cluster to a cluster that reaches the provider.\n"
        )),
    }
    let secret_from_host = login.get("client_secret").is_none();
    if !secret_from_host {
        notes.push_str(
            "# login.client_secret is in the plugin config below; or remove it and pass OIDC_CLIENT_SECRET\n\
             # with vmConfig.env (valueFrom: HOST) from the istio-proxy container's environment.\n",
        );
    }
    let mut documents = String::new();
    for h in &hosts {
        let name = yq(&format!("edgegate-idp-{}", h.replace('.', "-")));
        let host = yq(h);
        let ns = yq(namespace);
        documents.push_str(&format!(
            "\
---
# The IdP {h} for the filter: it calls http://{h}:80 through cluster \"outbound|80||{h}\";
# the DestinationRule below opens TLS to port 443 with SNI {h}.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
  namespace: {ns}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
    - number: 80
      name: http
      protocol: HTTP
      targetPort: 443
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {name}
  namespace: {ns}
spec:
  host: {host}
  trafficPolicy:
    portLevelSettings:
      - port: {{number: 80}}
        tls:
          mode: SIMPLE
          sni: {host}
"
        ));
    }
    Some(IstioLogin {
        notes,
        documents,
        secret_from_host,
    })
}

/// The EnvoyFilter that sets the hardening settings on the connection managers of the workloads
/// the WasmPlugin runs on (a WasmPlugin cannot set them). envoy/istio/wasmplugin.yaml has the
/// same document.
fn istio_hardening(namespace: &str, label: &str, value: &str) -> String {
    format!(
        "\
# A WasmPlugin cannot set connection-manager options: this EnvoyFilter sets edgegate's
# hardening settings on the same workloads (every HTTP connection manager they run; MERGE
# keeps everything else Istio configured).
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: edgegate-hardening
  namespace: {ns}
spec:
  workloadSelector:
    labels:
      {label}: {value}
  configPatches:
    - applyTo: NETWORK_FILTER
      match:
        listener:
          filterChain:
            filter:
              name: envoy.filters.network.http_connection_manager
      patch:
        operation: MERGE
        value:
          typed_config:
            \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
{hardening}",
        ns = yq(namespace),
        label = yq(label),
        value = yq(value),
        hardening = hcm_hardening(12),
    )
}

/// Where the config holds secrets: HMAC provider secrets (and `k` of inline JWKS keys), session
/// and magic-link keys, the API-key pepper — as field paths.
fn secret_paths(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut strings = |items: Option<&Value>, member: &str, path: &dyn Fn(usize) -> String| {
        for (j, item) in items
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if item.get(member).is_some_and(Value::is_string) {
                out.push(path(j));
            }
        }
    };
    let providers = doc.pointer("/jwt/providers").and_then(Value::as_array);
    for (i, p) in providers.into_iter().flatten().enumerate() {
        strings(p.get("shared_secrets"), "secret", &|j| {
            format!("jwt.providers[{i}].shared_secrets[{j}].secret")
        });
        strings(p.pointer("/jwks/keys"), "k", &|j| {
            format!("jwt.providers[{i}].jwks.keys[{j}].k")
        });
    }
    for section in ["session", "magic_links"] {
        strings(doc.pointer(&format!("/{section}/keys")), "secret", &|j| {
            format!("{section}.keys[{j}].secret")
        });
    }
    if doc
        .pointer("/api_keys/pepper")
        .is_some_and(Value::is_string)
    {
        out.push("api_keys.pepper".to_string());
    }
    out
}

/// `config wrangler`: the edge worker's wrangler.toml (the same as `edge-worker/wrangler.toml`,
/// with this worker's name and origin). The config itself is never in the file: it is the secret
/// `EDGEGATE_CONFIG`, set from the config file with `wrangler secret put`.
pub fn wrangler(a: &WranglerArgs) -> Result<ExitCode, Failure> {
    let l = util::load_config(&a.config.config)?;
    let file = a.config.config.display();
    let mut inside = String::new();
    for path in secret_paths(&l.raw) {
        inside.push_str(&format!("#     {path}\n"));
    }
    if inside.is_empty() {
        inside.push_str(
            "#     (none: it still names your rules and providers; keep it a secret anyway)\n",
        );
    }
    let login = if l.raw.get("login").is_some() {
        "#   npx wrangler secret put OIDC_CLIENT_SECRET                # the OIDC client secret (this config has a login section)\n"
    } else {
        "#   (OIDC_CLIENT_SECRET: only with a login section: the OIDC client secret)\n"
    };
    print!(
        "\
# wrangler.toml for edgegate's edge worker, generated by `edgegate config wrangler` from {file}.
# Build first (edge-worker/build.sh writes dist/), then `npx wrangler deploy`. Offline check:
#   WRANGLER_SEND_METRICS=false npx wrangler deploy --dry-run --outdir /tmp/edgegate-bundle
# Secrets are bindings, never inline here:
#   npx wrangler secret put EDGEGATE_CONFIG < {file}
{login}\
# The config holds these secrets (so the whole config is the secret EDGEGATE_CONFIG):
{inside}\
name = {name}
main = \"dist/worker.mjs\"
compatibility_date = \"2025-09-01\"
# dist/ is wasm-bindgen's output as is: the glue imports the .wasm with `import source`, which
# workerd runs but esbuild does not parse, so wrangler uploads the modules without bundling.
no_bundle = true
find_additional_modules = true
base_dir = \"dist\"

# The glue is an ES module; the .wasm a compiled WebAssembly module it imports.
[[rules]]
type = \"ESModule\"
globs = [\"**/*.js\", \"**/*.mjs\"]
fallthrough = false

[[rules]]
type = \"CompiledWasm\"
globs = [\"**/*.wasm\"]
fallthrough = false

[vars]
# The origin the worker guards (or bind it as the service `ORIGIN` instead).
ORIGIN_URL = {origin}
# Signature backend for RSA/ECDSA/Ed25519: \"webcrypto\" (default, native) or \"wasm\" (pure Rust).
EDGEGATE_CRYPTO = \"webcrypto\"

# Single use of magic links across isolates and locations (class UsedLinks in worker.mjs).
[[durable_objects.bindings]]
name = \"USED_LINKS\"
class_name = \"UsedLinks\"

[[migrations]]
tag = \"v1\"
new_sqlite_classes = [\"UsedLinks\"]

# Device authorization records (login.device, RFC 8628; class DeviceGrants in worker.mjs):
# required when the config has login.device.
[[durable_objects.bindings]]
name = \"DEVICE_GRANTS\"
class_name = \"DeviceGrants\"

[[migrations]]
tag = \"v2\"
new_sqlite_classes = [\"DeviceGrants\"]
",
        name = toml_literal(&a.name),
        origin = toml_literal(&a.origin_url),
    );
    Ok(ExitCode::SUCCESS)
}

/// A TOML string for `s`: a literal string when it has no `'`, else a basic string with escapes.
fn toml_literal(s: &str) -> String {
    if !s.contains('\'') && !s.contains('\n') {
        format!("'{s}'")
    } else {
        // JSON string escaping is valid TOML basic-string escaping for what JSON emits.
        Value::String(s.to_string()).to_string()
    }
}
