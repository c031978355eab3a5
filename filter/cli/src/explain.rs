//! `edgegate token explain`: what the gateway sees in a token, and what it decides.
//!
//! Everything is the core's: `jws::parse` decodes, `JwtVerifier::check` (or the API-key store,
//! or the magic-link verifier) verifies and extracts, `Engine::decide` gives the verdict.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use edgegate::backend::NativeBackend;
use edgegate::jwk::KeySet;
use edgegate::matcher::normalize_path;
use edgegate::rules::Rules;
use edgegate::verifier::{JwtCheck, KeyLookup};
use edgegate::{jws, magic, Engine, Error, Identity, Request, Step, Verdict};
use serde_json::{json, Map, Value};

use crate::util::{self, Failure, Loaded};
use crate::ConfigArg;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The token (a JWT, an API key or a magic-link token). `-` or absent: read it from stdin
    /// (preferred: arguments end up in shell history and process lists).
    pub token: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
    /// The request path (query allowed) to decide for.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// "Now" as Unix seconds (default: the system clock), e.g. to check a token's expiry.
    #[arg(long, value_name = "UNIX")]
    pub now: Option<u64>,
    /// Key sets of remote-JWKS providers: `PROVIDER=FILE`, or just `FILE` when the config has
    /// one remote provider. Repeatable.
    #[arg(long, value_name = "[PROVIDER=]FILE")]
    pub jwks: Vec<String>,
    /// Machine-readable output (one JSON object).
    #[arg(long)]
    pub json: bool,
}

/// Key sets given with `--jwks`, by provider name.
struct FileKeys(HashMap<String, KeySet>);

impl KeyLookup for FileKeys {
    fn keys(&self, provider: &str) -> Option<&KeySet> {
        self.0.get(provider)
    }
}

fn load_jwks(args: &[String], engine: &Engine) -> Result<FileKeys, Failure> {
    let remote: Vec<String> = engine
        .remote_key_sources()
        .into_iter()
        .map(|r| r.provider)
        .collect();
    let mut out = HashMap::new();
    for arg in args {
        let (provider, file) = match arg.split_once('=') {
            Some((p, f)) if remote.iter().any(|r| r == p) => (p.to_string(), f),
            Some((p, _)) if !Path::new(arg).exists() => {
                return Err(Failure::usage(format!(
                    "--jwks {arg}: no provider named {p:?} has remote_jwks (remote providers: {})",
                    joined(&remote, "none")
                )))
            }
            _ => match remote.as_slice() {
                [only] => (only.clone(), arg.as_str()),
                _ => {
                    return Err(Failure::usage(format!(
                        "--jwks {arg}: say which provider it is for, as PROVIDER=FILE (remote providers: {})",
                        joined(&remote, "none")
                    )))
                }
            },
        };
        let bytes = util::read_file(Path::new(file))?;
        let set = KeySet::parse_jwks(&bytes).map_err(|es| {
            let lines: Vec<String> = es.iter().map(ToString::to_string).collect();
            Failure::usage(format!("--jwks {file}: {}", lines.join("; ")))
        })?;
        out.insert(provider, set);
    }
    Ok(FileKeys(out))
}

/// `items` comma-separated, or `empty` when there are none.
fn joined(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}

fn error_json(e: &Error) -> Value {
    json!({"reason": e.reason().code(), "message": e.message()})
}

/// What the credential checks found, apart from the verdict.
struct Findings {
    kind: &'static str,
    header: Option<Value>,
    claims: Option<Value>,
    decode_error: Option<Value>,
    provider: Option<Value>,
    key: Option<String>,
    identity: Option<Identity>,
    check_error: Option<Value>,
    notes: Vec<String>,
}

fn examine(token: &str, loaded: &Loaded, keys: &FileKeys, now: u64) -> Findings {
    let engine = &loaded.engine;
    let mut f = Findings {
        kind: "unknown",
        header: None,
        claims: None,
        decode_error: None,
        provider: None,
        key: None,
        identity: None,
        check_error: None,
        notes: Vec::new(),
    };
    let api_keys = loaded
        .config
        .api_keys
        .as_ref()
        .and_then(|c| c.compile().ok());
    if let Some(store) = api_keys.filter(|s| s.looks_like_key(token)) {
        f.kind = "api_key";
        match store.verify(token, now) {
            Ok(id) => {
                f.key = id.key_name.clone();
                f.identity = Some(id);
            }
            Err(e) => f.check_error = Some(error_json(&e)),
        }
        return f;
    }
    if !token.contains('.') {
        f.notes
            .push("not a JWT (no dots) and not an API key with this config's prefix".to_string());
        return f;
    }
    f.kind = "jwt";
    let parsed = match jws::parse(token, engine.jwt().max_token_bytes()) {
        Ok(j) => j,
        Err(e) => {
            f.decode_error = Some(error_json(&e));
            return f;
        }
    };
    f.header = Some(Value::Object(parsed.header.clone()));
    f.key = parsed.kid.clone();
    let claims: Map<String, Value> = match parsed.claims() {
        Ok(c) => c,
        Err(e) => {
            f.decode_error = Some(error_json(&e));
            return f;
        }
    };
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let aud_magic = claims.get("aud").and_then(Value::as_str) == Some(magic::AUDIENCE);
    f.claims = Some(Value::Object(claims.clone()));
    let provider = engine.jwt().providers().iter().find(|p| p.issuer == iss);
    if let Some(p) = provider {
        f.provider = Some(json!({"name": p.name, "issuer": p.issuer}));
    }
    if let (None, true, Some(links)) = (provider, aud_magic, engine.magic_links()) {
        f.kind = "magic_link";
        f.notes.push(format!(
            "a magic-link token: it is used once at {}?{}=…, not as a bearer credential",
            links.path(),
            links.query_param()
        ));
        match links.verify(token, now) {
            Ok(link) => {
                f.notes.push(format!(
                    "purpose {}, single-use id (jti) {}",
                    link.purpose.as_str(),
                    link.jti
                ));
                f.key = link.identity.key_name.clone().or(f.key);
                f.identity = Some(link.identity);
            }
            Err(e) => f.check_error = Some(error_json(&e)),
        }
        return f;
    }
    match engine.jwt().check(token, keys, &NativeBackend, now) {
        JwtCheck::Valid(id) => {
            f.key = id.key_name.clone().or(f.key);
            f.identity = Some(id);
        }
        JwtCheck::NeedKeys { provider } => {
            f.notes.push(format!(
                "provider {provider} fetches its keys (remote_jwks): pass them with --jwks {provider}=FILE"
            ));
        }
        JwtCheck::Invalid { error, .. } => f.check_error = Some(error_json(&error)),
    }
    f
}

/// The verdict as status, reason, message and headers.
fn verdict_json(engine: &Engine, step: &Step) -> Value {
    match step {
        Step::Done(Verdict::Allow {
            identity, headers, ..
        }) => json!({
            "allowed": true,
            "status": 200,
            "reason": "allowed",
            "message": if identity.is_some() { "allowed: forwarded upstream with the identity headers" } else { "allowed without identity (public route)" },
            "upstream_headers": headers.iter().collect::<Vec<_>>(),
        }),
        Step::Done(Verdict::Reply(d)) => {
            let message = serde_json::from_str::<Value>(&d.body)
                .ok()
                .and_then(|b| b.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            json!({
                "allowed": false,
                "status": d.status,
                "reason": d.reason.code(),
                "message": message,
                "response_headers": d.headers,
            })
        }
        Step::NeedKeys(k) => {
            let provider = k.provider();
            let d = engine.keys_unavailable();
            json!({
                "allowed": false,
                "status": d.status,
                "reason": d.reason.code(),
                "message": format!("the gateway waits for provider {provider}'s key set, then refuses; pass it with --jwks {provider}=FILE"),
                "response_headers": d.headers,
            })
        }
        // Not left by the synchronous driver; said as the gateway would see it.
        Step::NeedSignature(_) => json!({
            "allowed": false,
            "status": 500,
            "reason": "internal",
            "message": "the signature was not verified",
        }),
        Step::NeedForm(_) => json!({
            "allowed": false,
            "status": 0,
            "reason": "magic_link_form",
            "message": "a POST to the magic-link path: the gateway reads the form and consumes the link",
        }),
    }
}

pub fn explain(a: &ExplainArgs) -> Result<ExitCode, Failure> {
    let loaded = util::load_config(&a.config.config)?;
    let keys = load_jwks(&a.jwks, &loaded.engine)?;
    let token = match a.token.as_deref() {
        None | Some("-") => util::read_stdin_line("token")?,
        Some(t) => t.to_string(),
    };
    let now = match a.now {
        Some(n) => n,
        None => util::now()?,
    };
    let method = a.method.to_ascii_uppercase();

    let f = examine(&token, &loaded, &keys, now);

    let rule = match normalize_path(&a.path) {
        Ok(p) => Rules::compile(&loaded.config.rules, &loaded.config.default_rule)
            .ok()
            .map(|r| r.find(&method, &p).name().to_string()),
        Err(_) => None,
    };
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];
    let req = Request {
        method: &method,
        path: &a.path,
        headers: &headers,
    };
    let mut cache = loaded.engine.new_cache();
    let verdict = loaded.engine.decide(&req, &keys, &mut cache, now);
    let allowed = matches!(verdict, Step::Done(Verdict::Allow { .. }));
    let v = verdict_json(&loaded.engine, &verdict);

    let out = json!({
        "token": {"preview": util::preview(&token), "bytes": token.len(), "kind": f.kind},
        "header": f.header,
        "claims": f.claims,
        "decode_error": f.decode_error,
        "provider": f.provider,
        "key": f.key,
        "identity": f.identity,
        "check_error": f.check_error,
        "notes": f.notes,
        "now": now,
        "request": {"method": method, "path": a.path, "rule": rule},
        "verdict": v,
    });
    if a.json {
        let text = serde_json::to_string_pretty(&out)
            .map_err(|e| Failure::check(format!("internal error: {e}")))?;
        println!("{text}");
    } else {
        print_human(&out, f.identity.as_ref());
    }
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn field(label: &str, value: impl std::fmt::Display) {
    println!("{label:<12} {value}");
}

fn words(items: &[String]) -> String {
    joined(items, "-")
}

fn indented(v: &Value) -> String {
    serde_json::to_string_pretty(v)
        .unwrap_or_default()
        .replace('\n', "\n             ")
}

fn print_human(out: &Value, identity: Option<&Identity>) {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let t = &out["token"];
    field(
        "token",
        format!(
            "{} ({} bytes, {})",
            s(&t["preview"]),
            t["bytes"],
            s(&t["kind"])
        ),
    );
    if !out["header"].is_null() {
        field("header", out["header"].to_string());
    }
    if !out["claims"].is_null() {
        field("claims", indented(&out["claims"]));
    }
    if let Some(e) = out["decode_error"].as_object() {
        field(
            "decode",
            format!("refused: {} ({})", s(&e["message"]), s(&e["reason"])),
        );
    }
    match out["provider"].as_object() {
        Some(p) => field(
            "provider",
            format!("{} (issuer {})", s(&p["name"]), s(&p["issuer"])),
        ),
        None if s(&t["kind"]) == "jwt" && out["decode_error"].is_null() => {
            field("provider", "none configured for this iss")
        }
        None => {}
    }
    if let Some(k) = out["key"].as_str() {
        field("key", k);
    }
    for n in out["notes"].as_array().into_iter().flatten() {
        field("note", s(n));
    }
    if let Some(e) = out["check_error"].as_object() {
        field(
            "check",
            format!("invalid: {} ({})", s(&e["message"]), s(&e["reason"])),
        );
    }
    if let Some(id) = identity {
        field("check", "valid");
        field("subject", &id.subject);
        if let Some(e) = &id.email {
            field("email", e);
        }
        field("credential", id.credential.code());
        field("roles", words(&id.roles));
        field("permissions", words(&id.permissions));
        field("scopes", words(&id.scopes));
        if !id.amr.is_empty() || id.acr.is_some() {
            field(
                "mfa",
                format!(
                    "amr {}, acr {}",
                    words(&id.amr),
                    id.acr.as_deref().unwrap_or("-")
                ),
            );
        }
        if let Some(sc) = &id.path_scope {
            field("path scope", sc);
        }
        if let Some(x) = id.expires_at {
            field("expires", format!("{} ({x})", util::human_time(x)));
        }
    }
    let r = &out["request"];
    let rule = match r["rule"].as_str() {
        Some(name) => format!("rule {name:?}"),
        None => "no rule (the path is refused)".to_string(),
    };
    field(
        "request",
        format!(
            "{} {} at {} -> {rule}",
            s(&r["method"]),
            s(&r["path"]),
            out["now"]
        ),
    );
    let v = &out["verdict"];
    if v["allowed"] == Value::Bool(true) {
        field("verdict", format!("ALLOW 200: {}", s(&v["message"])));
        for h in v["upstream_headers"].as_array().into_iter().flatten() {
            println!("{:<12}   {}: {}", "", s(&h[0]), s(&h[1]));
        }
    } else {
        field(
            "verdict",
            format!(
                "DENY {} {}: {}",
                v["status"],
                s(&v["reason"]),
                s(&v["message"])
            ),
        );
    }
}
