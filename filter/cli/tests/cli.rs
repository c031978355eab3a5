//! Runs the built `edgegate` binary: exit codes, output, refusals, and round trips through the core.
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edgegate::verifier::NoRemoteKeys;
use edgegate::{Engine, Request, Verdict};
use hmac::{Hmac, Mac};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CI_SECRET: &str = "cEdu7LCDLrB046A4XGgQc0ST9s-qIPWO0uNBHkI3pGd4eA";
/// An HMAC secret for an inline JWKS (`oct` key).
const OCT_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const SESSION_SECRET: &str = "jwoaIj8MA4uqORbygI3Aqi_UBO4gJmB9oGyzqIjWUPI";
const MAGIC_SECRET: &str = "N6DNzRHwFWHzTbEbCwlpezlWIlf8Kvn1o1oZe_GowmY";
const PEPPER: &str = "pWd0sQn2b8T1vJ3kX9mR4yZ7cL6aE5hG0uI2oP8qW3s";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgegate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            // A command that does not need its stdin may exit before reading it.
            if let Err(e) = pipe.write_all(s.as_bytes()) {
                assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
            }
        }
    }
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code().unwrap(),
        stdout: String::from_utf8(o.stdout).unwrap(),
        stderr: String::from_utf8(o.stderr).unwrap(),
    }
}

/// `edgegate <command> -c <file> <args>`.
fn run_with_config(command: &[&str], file: &str, args: &[&str], stdin: Option<&str>) -> Out {
    let all = [command, &["-c", file], args].concat();
    run(&all, stdin)
}

/// `edgegate magic new -c <file> --email a@example.com <args>`.
fn magic_new(file: &str, args: &[&str]) -> Out {
    let args = [&["--email", "a@example.com"], args].concat();
    run_with_config(&["magic", "new"], file, &args, None)
}

/// `edgegate token explain -c <file> <args>`, the token (or `stdin`) on standard input.
fn explain(file: &str, args: &[&str], stdin: &str) -> Out {
    run_with_config(&["token", "explain"], file, args, Some(stdin))
}

/// `edgegate config <renderer> -c <file> <args>`.
fn render(renderer: &str, file: &str, args: &[&str]) -> Out {
    run_with_config(&["config", renderer], file, args, None)
}

/// Every one of `needles` is in `out` (a failure names the one missing and shows `out`).
fn assert_contains_all<S: AsRef<str>>(out: &str, needles: impl IntoIterator<Item = S>) {
    for needle in needles {
        let needle = needle.as_ref();
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh file under the test's temp dir.
fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

fn config(api_keys: Value) -> Value {
    json!({
        "realm": "desk",
        "jwt": {"providers": [
            {"name": "ci", "issuer": "https://ci.example.com", "algorithms": ["HS256"],
             "shared_secrets": [{"kid": "2026-11", "secret": CI_SECRET}],
             "claims": {"roles": ["roles"]}},
            {"name": "idp", "issuer": "https://idp.example.com", "algorithms": ["EdDSA"],
             "remote_jwks": {"jwks_uri": "https://idp.example.com/jwks.json"}}
        ]},
        "api_keys": api_keys,
        "session": {"keys": [{"kid": "s1", "secret": SESSION_SECRET}]},
        "magic_links": {"keys": [{"kid": "m1", "secret": MAGIC_SECRET}]},
        "redirects": {"allowed_hosts": ["desk.example.com"]},
        "rules": [
            {"name": "admin", "match": {"path": {"prefix": "/admin"}},
             "credentials": ["jwt"], "require": {"roles_any": ["admin"]}},
            {"name": "api", "match": {"path": {"prefix": "/api"}},
             "credentials": ["jwt", "api_key"], "require": {"roles_any": ["staff"]}}
        ]
    })
}

fn config_file(cfg: &Value) -> String {
    temp_file("edgegate.json", cfg.to_string().as_bytes())
        .to_str()
        .unwrap()
        .to_string()
}

fn default_config_file() -> String {
    config_file(&config(json!({"keys": []})))
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// An HS256 JWT signed with `secret` (base64url), as an IdP would mint it.
fn hs256(secret_b64: &str, header: Value, claims: Value) -> String {
    let secret = URL_SAFE_NO_PAD.decode(secret_b64).unwrap();
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn ci_token(roles: &[&str], exp: u64) -> String {
    hs256(
        CI_SECRET,
        json!({"alg": "HS256", "typ": "JWT", "kid": "2026-11"}),
        json!({"iss": "https://ci.example.com", "sub": "alice", "roles": roles,
               "iat": now() - 10, "exp": exp}),
    )
}

fn decide(engine: &Engine, path: &str, bearer: &str) -> Verdict {
    let auth = format!("Bearer {bearer}");
    let headers = [("authorization", auth.as_str())];
    let req = Request {
        method: "GET",
        path,
        headers: &headers,
    };
    engine
        .decide(&req, &NoRemoteKeys, &mut engine.new_cache(), now())
        .into_verdict()
        .unwrap()
}

// ---------------------------------------------------------------- help and usage

#[test]
fn help_documents_commands_and_exit_codes() {
    let o = run(&["--help"], None);
    assert_eq!(o.code, 0);
    assert_contains_all(
        &o.stdout,
        [
            "keys",
            "magic",
            "token",
            "config",
            "Exit codes",
            "usage error",
        ],
    );
    for cmd in [
        &["keys", "new", "--help"][..],
        &["keys", "hash", "--help"],
        &["keys", "revoke", "--help"],
        &["magic", "new", "--help"],
        &["token", "explain", "--help"],
        &["config", "check", "--help"],
        &["config", "envoy", "--help"],
        &["config", "istio", "--help"],
        &["config", "wrangler", "--help"],
    ] {
        let o = run(cmd, None);
        assert_eq!(o.code, 0, "{cmd:?}");
        assert!(o.stdout.contains("Exit codes"), "{cmd:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&[], None).code, 2);
    assert_eq!(run(&["frobnicate"], None).code, 2);
    assert_eq!(run(&["keys", "new"], None).code, 2); // --name is required
    assert_eq!(run(&["magic", "new", "--purpose", "login"], None).code, 2);
    assert_eq!(run(&["config", "check"], None).code, 2);
}

// ---------------------------------------------------------------- keys new / hash

fn mint(args: &[&str]) -> (String, Value, Out) {
    let mut all = vec!["keys", "new"];
    all.extend_from_slice(args);
    let o = run(&all, None);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let (key, entry) = o.stdout.split_once('\n').unwrap();
    let entry: Value = serde_json::from_str(entry).unwrap();
    (key.to_string(), entry, o)
}

#[test]
fn keys_new_prints_the_key_once_and_an_entry_the_gateway_accepts() {
    let (key, entry, o) = mint(&[
        "--name",
        "ci-pipeline-prod",
        "--roles",
        "staff,deployer",
        "--permissions",
        "deploy:write",
        "--expires",
        "90d",
        "--scope",
        "/api/",
    ]);
    assert!(key.starts_with("egk_") && key.len() == 53, "{key}");
    assert_eq!(o.stdout.matches(&key).count(), 1, "the key is printed once");
    assert!(!o.stderr.contains(&key));
    assert_eq!(entry["name"], "ci-pipeline-prod");
    assert_eq!(entry["roles"], json!(["staff", "deployer"]));
    assert_eq!(entry["permissions"], json!(["deploy:write"]));
    assert_eq!(entry["scope"], "/api/");
    let exp = entry["expires_at"].as_u64().unwrap();
    assert!((now() + 90 * 86_400).abs_diff(exp) < 60, "{exp}");
    assert_eq!(
        entry["hash"].as_str().unwrap(),
        edgegate::apikey::hash(&key, None)
    );

    // Pasted into a config: `config check` passes and the gateway accepts the key.
    let cfg = config(json!({"keys": [entry]}));
    let file = config_file(&cfg);
    let c = run(&["config", "check", &file], None);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert!(c.stdout.contains("1 API key"), "{}", c.stdout);
    let engine = Engine::from_json(cfg.to_string().as_bytes()).unwrap();
    match decide(&engine, "/api/deploy", &key) {
        Verdict::Allow {
            identity: Some(id), ..
        } => {
            assert_eq!(id.subject, "ci-pipeline-prod");
            assert_eq!(id.roles, ["staff", "deployer"]);
            assert_eq!(id.path_scope.as_deref(), Some("/api/"));
        }
        other => panic!("{other:?}"),
    }
    // ... and `token explain` says the same, without echoing the key.
    let e = explain(&file, &["--path", "/api/x"], &key);
    assert_eq!(e.code, 0, "{}{}", e.stdout, e.stderr);
    assert!(e.stdout.contains("ci-pipeline-prod") && e.stdout.contains("ALLOW"));
    assert!(!e.stdout.contains(&key) && !e.stderr.contains(&key));
    // A different key of the same shape is refused.
    let (other, _, _) = mint(&["--name", "other"]);
    assert!(matches!(decide(&engine, "/api/x", &other), Verdict::Reply(d) if d.status == 401));
}

#[test]
fn a_key_list_is_kept_by_keys_new_and_keys_revoke() {
    let dir = temp_file("unused", b"");
    let list = dir.with_file_name("keys.json");
    let list_arg = list.to_str().unwrap();
    let mut keys = Vec::new();
    for (name, roles) in [("ci", "staff"), ("ops", "staff,deployer")] {
        let o = run(
            &[
                "keys", "new", "--name", name, "--roles", roles, "--list", list_arg,
            ],
            None,
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        // The key alone on stdout; the entry went to the list.
        let key = o.stdout.trim_end().to_string();
        assert!(
            key.starts_with("egk_") && !key.contains('\n'),
            "{}",
            o.stdout
        );
        assert!(o.stderr.contains("added to"), "{}", o.stderr);
        keys.push(key);
    }
    // A name already in the list is refused, and the list is left as it was.
    let before = std::fs::read(&list).unwrap();
    let o = run(&["keys", "new", "--name", "ci", "--list", list_arg], None);
    assert_eq!((o.code, o.stdout.as_str()), (2, ""), "{}", o.stderr);
    assert!(
        o.stderr.contains("already has a key named \"ci\""),
        "{}",
        o.stderr
    );
    assert_eq!(std::fs::read(&list).unwrap(), before);

    // The list is a config's api_keys.keys as is: both keys open /api.
    let load = || {
        let l: Value = serde_json::from_slice(&std::fs::read(&list).unwrap()).unwrap();
        Engine::from_json(config(json!({"keys": l["keys"]})).to_string().as_bytes()).unwrap()
    };
    let engine = load();
    for key in &keys {
        assert!(matches!(
            decide(&engine, "/api/x", key),
            Verdict::Allow { .. }
        ));
    }

    // Revoked: gone from the list, refused by a gateway loading it; the other key still works.
    let o = run(&["keys", "revoke", "ci", "--list", list_arg], None);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("1 keys left"), "{}", o.stderr);
    let engine = load();
    assert!(matches!(decide(&engine, "/api/x", &keys[0]), Verdict::Reply(d) if d.status == 401));
    assert!(matches!(
        decide(&engine, "/api/x", &keys[1]),
        Verdict::Allow { .. }
    ));
    // Revoking a name the list does not have is a usage error, the list untouched.
    let before = std::fs::read(&list).unwrap();
    let o = run(&["keys", "revoke", "ci", "--list", list_arg], None);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("no key named \"ci\""), "{}", o.stderr);
    assert_eq!(std::fs::read(&list).unwrap(), before);
    // A file that is not a key list is refused, not overwritten.
    let bad = temp_file("not-a-list.json", b"{\"keys\": 3}");
    let o = run(
        &["keys", "revoke", "x", "--list", bad.to_str().unwrap()],
        None,
    );
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("not a key list"), "{}", o.stderr);
    assert_eq!(std::fs::read(&bad).unwrap(), b"{\"keys\": 3}");
}

#[test]
fn keys_new_with_a_pepper_and_a_prefix() {
    let pepper = temp_file("pepper", format!("{PEPPER}\n").as_bytes());
    let (key, entry, o) = mint(&[
        "--name",
        "peppered",
        "--roles",
        "staff",
        "--prefix",
        "acme_",
        "--pepper-file",
        pepper.to_str().unwrap(),
        "--expires",
        "2099-01-31",
    ]);
    assert!(key.starts_with("acme_"));
    assert!(entry["hash"].as_str().unwrap().starts_with("hmac-sha256:"));
    assert_eq!(entry["expires_at"], 4_073_500_800u64);
    assert!(o.stderr.contains("pepper") && o.stderr.contains("acme_"));
    let cfg = config(json!({"prefix": "acme_", "pepper": PEPPER, "keys": [entry]}));
    let engine = Engine::from_json(cfg.to_string().as_bytes()).unwrap();
    assert!(matches!(
        decide(&engine, "/api/x", &key),
        Verdict::Allow { .. }
    ));
    // `keys hash` with the same pepper gives the same hash.
    let h = run(
        &[
            "keys",
            "hash",
            "--prefix",
            "acme_",
            "--pepper-file",
            pepper.to_str().unwrap(),
        ],
        Some(&format!("{key}\n")),
    );
    assert_eq!(h.code, 0);
    assert_eq!(h.stdout.trim(), entry["hash"].as_str().unwrap());
    assert!(h.stderr.is_empty(), "{}", h.stderr);
}

#[test]
fn keys_new_refuses_bad_input() {
    let short = temp_file("pepper", b"c2hvcnQ");
    let not_b64 = temp_file("pepper", b"not base64!");
    for (args, needle) in [
        (&["--name", ""][..], "--name"),
        (&["--name", "x\u{7}"], "--name"),
        (&["--name", "x", "--expires", "yesterday"], "--expires"),
        (
            &["--name", "x", "--expires", "2001-01-01"],
            "not in the future",
        ),
        (&["--name", "x", "--expires", "12"], "not in the future"),
        (&["--name", "x", "--prefix", "EGK_"], "--prefix"),
        (&["--name", "x", "--prefix", "egk"], "--prefix"),
        (&["--name", "x", "--scope", "api"], "--scope"),
        (
            &["--name", "x", "--pepper-file", short.to_str().unwrap()],
            "at least 32",
        ),
        (
            &["--name", "x", "--pepper-file", not_b64.to_str().unwrap()],
            "base64url",
        ),
        (
            &["--name", "x", "--pepper-file", "/nonexistent/pepper"],
            "cannot read",
        ),
    ] {
        let mut all = vec!["keys", "new"];
        all.extend_from_slice(args);
        let o = run(&all, None);
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(o.stdout.is_empty(), "{args:?}: nothing (no key) on stdout");
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
    }
}

#[test]
fn keys_hash_hashes_any_key_and_warns_on_foreign_ones() {
    let key = edgegate::apikey::mint("egk_", &[7u8; 32]);
    let o = run(&["keys", "hash"], Some(&format!("{key}\r\n")));
    assert_eq!(o.code, 0);
    assert_eq!(
        o.stdout,
        format!("{}\n", edgegate::apikey::hash(&key, None))
    );
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    assert!(!o.stdout.contains(&key));

    let legacy = "sk_live_legacy-format-key";
    let o = run(&["keys", "hash"], Some(legacy));
    assert_eq!(o.code, 0);
    assert_eq!(
        o.stdout.trim(),
        format!("sha256:{:x}", Sha256::digest(legacy.as_bytes()))
    );
    assert!(o.stderr.contains("warning") && o.stderr.contains("api_key_malformed"));
    assert!(!o.stderr.contains(legacy));

    // A typo in an edgegate key: the checksum catches it.
    let mut typo = key.clone();
    typo.replace_range(10..11, if &key[10..11] == "A" { "B" } else { "A" });
    let o = run(&["keys", "hash"], Some(&typo));
    assert_eq!(o.code, 0);
    assert!(o.stderr.contains("api_key_checksum"), "{}", o.stderr);

    assert_eq!(run(&["keys", "hash"], Some("")).code, 2);
    assert_eq!(run(&["keys", "hash"], Some("\n")).code, 2);
    assert_eq!(run(&["keys", "hash", "--prefix", "X"], Some(&key)).code, 2);
}

// ---------------------------------------------------------------- magic new

#[test]
fn magic_new_issues_a_link_the_config_verifies() {
    let file = default_config_file();
    let o = magic_new(
        &file,
        &[
            "--purpose",
            "guest",
            "--scope",
            "/tickets/TRK-2849",
            "--ttl",
            "2h",
            "--target",
            "/tickets/TRK-2849",
            "--base-url",
            "https://desk.example.com/",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let link = o.stdout.trim();
    let token = link
        .strip_prefix("https://desk.example.com/auth/magic?token=")
        .unwrap_or_else(|| panic!("{link}"));
    let engine = Engine::from_json(config(json!({"keys": []})).to_string().as_bytes()).unwrap();
    let t = now();
    let m = engine.magic_links().unwrap().verify(token, t).unwrap();
    assert_eq!(m.identity.email.as_deref(), Some("a@example.com"));
    assert_eq!(m.purpose, edgegate::magic::Purpose::Guest);
    assert_eq!(m.path_scope.as_deref(), Some("/tickets/TRK-2849"));
    assert_eq!(m.target.as_deref(), Some("/tickets/TRK-2849"));
    assert!((t + 7200).abs_diff(m.expires_at) < 60);
    assert_eq!(m.jti.len(), 22, "16 random bytes as base64url");
    // Two links never share a jti.
    let o2 = magic_new(
        &file,
        &[
            "--purpose",
            "login",
            "--base-url",
            "https://desk.example.com",
        ],
    );
    assert_eq!(o2.code, 0);
    let t2 = o2.stdout.trim().rsplit_once('=').unwrap().1;
    let m2 = engine.magic_links().unwrap().verify(t2, t).unwrap();
    assert_ne!(m.jti, m2.jti);
    // The link's token is explained as a magic link.
    let e = explain(&file, &[], token);
    assert!(
        e.stdout.contains("magic_link") && e.stdout.contains("purpose guest"),
        "{}",
        e.stdout
    );
}

#[test]
fn magic_new_refuses_bad_input() {
    let file = default_config_file();
    for (extra, code, needle) in [
        (
            &["--email", "a@example.com", "--purpose", "guest"][..],
            2,
            "--scope",
        ),
        (
            &["--email", "not-an-email", "--purpose", "login"],
            2,
            "--email",
        ),
        (
            &[
                "--email",
                "a@example.com",
                "--purpose",
                "login",
                "--ttl",
                "2h",
            ],
            2,
            "--ttl",
        ),
        (
            &[
                "--email",
                "a@example.com",
                "--purpose",
                "login",
                "--ttl",
                "soon",
            ],
            2,
            "--ttl",
        ),
        (
            &[
                "--email",
                "a@example.com",
                "--purpose",
                "login",
                "--target",
                "https://evil.example/",
            ],
            2,
            "--target",
        ),
        (
            &[
                "--email",
                "a@example.com",
                "--purpose",
                "login",
                "--target",
                "//evil.example/",
            ],
            2,
            "--target",
        ),
        (
            &["--email", "a@example.com", "--purpose", "bogus"],
            2,
            "bogus",
        ),
        (&["--purpose", "login"], 2, "--email"),
    ] {
        let args = [&["--base-url", "https://desk.example.com"], extra].concat();
        let o = run_with_config(&["magic", "new"], &file, &args, None);
        assert_eq!(o.code, code, "{extra:?}: {}", o.stderr);
        assert!(o.stdout.is_empty(), "{extra:?}");
        assert!(o.stderr.contains(needle), "{extra:?}: {}", o.stderr);
    }
    for bad_base in [
        "http://desk.example.com",
        "desk.example.com",
        "https://desk.example.com/?x=1",
    ] {
        let o = magic_new(&file, &["--purpose", "login", "--base-url", bad_base]);
        assert_eq!(o.code, 2, "{bad_base}");
        assert!(o.stderr.contains("--base-url"));
    }
    // A config without magic links, a broken config: check failures.
    let mut cfg = config(json!({"keys": []}));
    cfg.as_object_mut().unwrap().remove("magic_links");
    let no_magic = config_file(&cfg);
    let bad = temp_file("bad.json", br#"{"realm": ""}"#);
    for f in [no_magic.as_str(), bad.to_str().unwrap()] {
        let o = magic_new(
            f,
            &["--purpose", "login", "--base-url", "https://d.example.com"],
        );
        assert_eq!(o.code, 1, "{f}: {}", o.stderr);
        assert!(o.stdout.is_empty());
    }
}

// ---------------------------------------------------------------- token explain

#[test]
fn token_explain_shows_claims_roles_and_the_exact_verdict() {
    let file = default_config_file();
    let token = ci_token(&["staff"], now() + 600);
    // A route requiring another role: 403 missing_role, exit 1.
    let o = run(
        &["token", "explain", &token, "-c", &file, "--path", "/admin"],
        None,
    );
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_contains_all(
        &o.stdout,
        [
            "ci (issuer https://ci.example.com)",
            "2026-11",
            "roles        staff",
            "\"sub\": \"alice\"",
            "rule \"admin\"",
            "DENY 403 missing_role",
            &token[..12],
        ],
    );
    assert!(!o.stdout.contains(&token) && !o.stderr.contains(&token));
    let sig = token.rsplit_once('.').unwrap().1;
    assert!(!o.stdout.contains(sig), "the signature is never printed");

    // The route it may use: exit 0, with the upstream headers.
    let o = run(
        &[
            "token",
            "explain",
            "-",
            "-c",
            &file,
            "--path",
            "/api/tickets",
        ],
        Some(&token),
    );
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(o.stdout.contains("ALLOW 200") && o.stdout.contains("x-edgegate-roles: staff"));

    // Machine output.
    let o = explain(&file, &["--path", "/admin", "--json"], &token);
    assert_eq!(o.code, 1);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["verdict"]["status"], 403);
    assert_eq!(v["verdict"]["reason"], "missing_role");
    assert_eq!(v["verdict"]["allowed"], false);
    assert_eq!(v["identity"]["roles"], json!(["staff"]));
    assert_eq!(v["provider"]["name"], "ci");
    assert_eq!(v["key"], "2026-11");
    assert_eq!(v["header"]["alg"], "HS256");
    assert_eq!(v["claims"]["sub"], "alice");
    assert_eq!(v["request"]["rule"], "admin");
    assert_eq!(v["token"]["preview"], format!("{}…", &token[..12]));
    assert!(!o.stdout.contains(&token));
}

#[test]
fn token_explain_refusals_carry_the_core_reason() {
    let file = default_config_file();
    let verdict = |args: &[&str], stdin: &str| {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        if !args.contains(&"--path") {
            all.extend_from_slice(&["--path", "/api/x"]);
        }
        let o = explain(&file, &all, stdin);
        assert_eq!(o.code, 1, "{args:?} {}", o.stdout);
        let v: Value = serde_json::from_str(&o.stdout).unwrap();
        assert!(!o.stdout.contains(stdin) || stdin.len() <= 12);
        (
            v["verdict"]["status"].as_u64().unwrap(),
            v["verdict"]["reason"].as_str().unwrap().to_string(),
            v,
        )
    };
    let token = ci_token(&["staff"], now() + 600);
    // Expired by --now.
    let (s, r, v) = verdict(&["--now", &(now() + 3600).to_string()], &token);
    assert_eq!((s, r.as_str()), (401, "token_expired"));
    assert_eq!(v["check_error"]["reason"], "token_expired");
    // Tampered signature.
    let mut bad = token.clone();
    bad.push('A');
    let (s, r, _) = verdict(&[], &bad);
    assert_eq!(s, 401);
    assert!(
        r == "bad_signature" || r == "bad_base64" || r == "bad_signature_format",
        "{r}"
    );
    // Unknown issuer.
    let other = hs256(
        CI_SECRET,
        json!({"alg": "HS256", "kid": "2026-11"}),
        json!({"iss": "https://other.example", "sub": "x", "exp": now() + 60}),
    );
    let (s, r, _) = verdict(&[], &other);
    assert_eq!((s, r.as_str()), (401, "unknown_issuer"));
    // alg none is refused while decoding.
    let none = format!("{}.{}.x", b64(br#"{"alg":"none"}"#), b64(br#"{"sub":"x"}"#));
    let (s, r, v) = verdict(&[], &none);
    assert_eq!((s, r.as_str()), (401, "alg_none"));
    assert_eq!(v["decode_error"]["reason"], "alg_none");
    // Not a token at all.
    let (s, _, _) = verdict(&[], "garbage");
    assert_eq!(s, 401);
    // A bad path: 400.
    let (s, r, _) = verdict(&["--path", "/api/..%2F..%2Fadmin"], &token);
    assert_eq!((s, r.as_str()), (400, "malformed_path"));

    // Usage errors: unreadable config, empty stdin, --jwks for an unknown provider.
    assert_eq!(explain("/nonexistent.json", &[], &token).code, 2);
    assert_eq!(explain(&file, &[], "").code, 2);
    let jwks = temp_file("jwks.json", b"{\"keys\":[]}");
    let arg = format!("nobody={}", jwks.display());
    assert_eq!(explain(&file, &["--jwks", &arg], &token).code, 2);
    let bad_jwks = temp_file(
        "jwks.json",
        b"{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2hvcnQ\"}]}",
    );
    let o = explain(&file, &["--jwks", bad_jwks.to_str().unwrap()], &token);
    assert_eq!(o.code, 2, "{}", o.stderr);
    // A broken config: check failure.
    let bad = temp_file(
        "bad.json",
        br#"{"rules": [{"name": "x", "match": {"path": {"prefix": "x"}}}]}"#,
    );
    let o = explain(bad.to_str().unwrap(), &[], &token);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("rules[0].match.path"));
}

#[test]
fn token_explain_takes_remote_key_sets_from_files() {
    let file = default_config_file();
    let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"EdDSA","kid":"e1"}"#),
        b64(
            json!({"iss": "https://idp.example.com", "sub": "bob", "exp": now() + 600})
                .to_string()
                .as_bytes()
        )
    );
    let token = format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()));
    // Without the key set the gateway would wait and then refuse with 503.
    let o = explain(&file, &["--json"], &token);
    assert_eq!(o.code, 1);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["verdict"]["status"], 503);
    assert_eq!(v["verdict"]["reason"], "keys_unavailable");
    assert!(v["notes"].to_string().contains("--jwks idp=FILE"));
    // A key set without the token's kid: 401 unknown_kid (the gateway would refetch early).
    let other = temp_file(
        "jwks.json",
        json!({"keys": [{"kty": "oct", "kid": "h1", "k": OCT_K}]})
            .to_string()
            .as_bytes(),
    );
    let o = explain(&file, &["--jwks", other.to_str().unwrap()], &token);
    assert_eq!(o.code, 1);
    assert!(o.stdout.contains("DENY 401 unknown_kid"), "{}", o.stdout);
    let jwks = temp_file(
        "jwks.json",
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "e1",
                         "x": b64(pair.public_key().as_ref())}]})
        .to_string()
        .as_bytes(),
    );
    for arg in [
        jwks.display().to_string(),
        format!("idp={}", jwks.display()),
    ] {
        let o = explain(&file, &["--jwks", &arg], &token);
        assert_eq!(o.code, 0, "{arg}: {}", o.stdout);
        assert!(o.stdout.contains("idp (issuer https://idp.example.com)"));
        assert!(o.stdout.contains("key          e1"));
        assert!(o.stdout.contains("subject      bob"));
    }
}

// ---------------------------------------------------------------- config

#[test]
fn config_check_lists_every_error_with_its_path() {
    let bad = temp_file(
        "bad.json",
        json!({
            "realm": "",
            "jwt": {"providers": [{"name": "a", "issuer": ""}]},
            "session": {"keys": [{"kid": "s", "secret": "short"}]},
            "rules": [{"name": "r", "match": {"path": {"prefix": "x"}}}]
        })
        .to_string()
        .as_bytes(),
    );
    let o = run(&["config", "check", bad.to_str().unwrap()], None);
    assert_eq!(o.code, 1);
    assert!(o.stdout.is_empty());
    assert_contains_all(
        &o.stderr,
        [
            "realm:",
            "jwt.providers[0].issuer:",
            "session.keys[0].secret:",
            "rules[0].match.path:",
        ]
        .map(|path| format!("error: {path}")),
    );
    assert!(!o.stderr.contains("short"), "secrets are never echoed");
    // Unknown fields and JSON syntax errors come with their path too.
    let typo = temp_file("typo.json", br#"{"rules": [], "realmm": "x"}"#);
    let o = run(&["config", "check", typo.to_str().unwrap()], None);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("realmm"), "{}", o.stderr);
    let syntax = temp_file("syntax.json", b"{");
    assert_eq!(
        run(&["config", "check", syntax.to_str().unwrap()], None).code,
        1
    );
    assert_eq!(run(&["config", "check", "/nonexistent.json"], None).code, 2);

    let good = default_config_file();
    let o = run(&["config", "check", &good], None);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("ok: 2 providers (1 with remote JWKS), 2 rules + default rule, 0 API keys, 1 magic-link key, 1 session key"),
        "{}",
        o.stdout
    );
    // Warnings are shown on success.
    let mut cfg = config(json!({"keys": []}));
    cfg["jwt"]["from"] = json!({"query_param": "access_token"});
    let o = run(&["config", "check", &config_file(&cfg)], None);
    assert_eq!(o.code, 0);
    assert!(
        o.stderr.contains("warning: jwt.from.query_param"),
        "{}",
        o.stderr
    );
}

/// The JSON document that starts after `marker`'s line, up to the end of the output.
fn embedded_json(out: &str, marker: &str, stop: Option<&str>) -> Value {
    let start = out.find(marker).unwrap() + marker.len();
    let rest = &out[start..];
    let rest = match stop {
        Some(s) => &rest[..rest.find(s).unwrap()],
        None => rest,
    };
    serde_json::from_str(rest).unwrap()
}

#[test]
fn config_envoy_embeds_the_config_in_a_fail_closed_wasm_filter() {
    let cfg = config(json!({"keys": []}));
    let file = config_file(&cfg);
    let o = render("envoy", &file, &["--wasm", "/etc/envoy/edgegate.wasm"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_contains_all(
        &o.stdout,
        [
            "- name: envoy.filters.network.http_connection_manager",
            "- name: envoy.filters.http.wasm",
            "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "failure_policy: FAIL_RELOAD",
            "runtime: envoy.wasm.runtime.v8",
            "filename: \"/etc/envoy/edgegate.wasm\"",
            "type.googleapis.com/google.protobuf.StringValue",
            "value: |",
        ],
    );
    assert_eq!(
        embedded_json(
            &o.stdout,
            "value: |",
            Some("      - name: envoy.filters.http.router")
        ),
        cfg
    );
    // edgegate runs before the router, and the four hardening settings are there.
    assert!(
        o.stdout.find("- name: envoy.filters.http.wasm")
            < o.stdout.find("- name: envoy.filters.http.router")
    );
    assert_hardening(&o.stdout, "    ");
    // A remote API-key list: the rendered config names the cluster to define.
    let mut listed = cfg.clone();
    listed["api_keys"]["remote"] =
        json!({"url": "https://keys.internal/keys.json", "cluster": "keys_internal"});
    let o = render(
        "envoy",
        &config_file(&listed),
        &["--wasm", "/etc/envoy/edgegate.wasm"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains(
            "# The API-key list (api_keys.remote) is fetched through cluster \"keys_internal\""
        ),
        "{}",
        o.stdout
    );
}

/// The four connection-manager settings, at the HCM's `typed_config` level (`pad`), each after
/// a comment that says why.
fn assert_hardening(out: &str, pad: &str) {
    for setting in [
        "normalize_path: true",
        "merge_slashes: true",
        "path_with_escaped_slashes_action: REJECT_REQUEST",
        "common_http_protocol_options:",
    ] {
        let line = format!("\n{pad}{setting}\n");
        assert!(out.contains(&line), "{setting:?} at {pad:?}:\n{out}");
    }
    assert!(
        out.contains(&format!(
            "\n{pad}  headers_with_underscores_action: REJECT_REQUEST\n"
        )),
        "{out}"
    );
    for why in ["HTTP_X_EDGEGATE_ROLES", "%2F", "`..`", "`//`"] {
        assert!(out.contains(why), "no comment with {why:?}:\n{out}");
    }
}

#[test]
fn config_istio_pins_the_module_by_its_sha256() {
    let module: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let wasm = temp_file("edgegate_proxy_wasm.wasm", &module);
    let expected = format!("{:x}", Sha256::digest(&module));
    let cfg = config(json!({"keys": []}));
    let file = config_file(&cfg);
    let o = render("istio", &file, &["--wasm", wasm.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_contains_all(
        &o.stdout,
        [
            "apiVersion: extensions.istio.io/v1alpha1",
            "kind: WasmPlugin",
            &format!("  sha256: {expected}\n"),
            "phase: AUTHN",
            "failStrategy: FAIL_CLOSE",
            "url: \"file:///",
            "\"istio\": \"ingressgateway\"",
        ],
    );
    assert_eq!(embedded_json(&o.stdout, "pluginConfig:", None), cfg);
    // The EnvoyFilter that sets the hardening settings on the same workloads.
    assert_contains_all(
        &o.stdout,
        [
            "kind: EnvoyFilter",
            "applyTo: NETWORK_FILTER",
            "operation: MERGE",
            "name: envoy.filters.network.http_connection_manager",
        ],
    );
    assert_hardening(&o.stdout, "            ");

    // An OCI image by tag: the module's sha256 is not the image digest, so it is only a note.
    let o = render(
        "istio",
        &file,
        &[
            "--wasm",
            wasm.to_str().unwrap(),
            "--url",
            "oci://ghcr.io/acme/edgegate:1.0",
        ],
    );
    assert_eq!(o.code, 0);
    assert!(!o.stdout.contains("  sha256:"));
    assert!(o
        .stdout
        .contains(&format!("# The module's own sha256 is {expected}")));
    let o = render(
        "istio",
        &file,
        &[
            "--url",
            &format!("oci://ghcr.io/acme/edgegate@sha256:{expected}"),
        ],
    );
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains(&format!("  sha256: \"{expected}\"")));

    // Refusals.
    assert_eq!(render("istio", &file, &[]).code, 2);
    assert_eq!(
        render("istio", &file, &["--url", "https://x.example/e.wasm"]).code,
        2
    );
    assert_eq!(render("istio", &file, &["--url", "ftp://x"]).code, 2);
    assert_eq!(
        render("istio", &file, &["--wasm", "/nonexistent.wasm"]).code,
        2
    );
    let o = render(
        "istio",
        &file,
        &["--wasm", wasm.to_str().unwrap(), "--selector", "nolabel"],
    );
    assert_eq!(o.code, 2);
}

#[test]
fn config_wrangler_keeps_secrets_out_of_the_file() {
    let mut cfg = config(json!({"keys": [], "pepper": PEPPER}));
    cfg["jwt"]["providers"][1] = json!({"name": "pinned", "issuer": "https://p.example", "algorithms": ["HS256"],
        "jwks": {"keys": [{"kty": "oct", "kid": "h1", "k": OCT_K}]}});
    let file = config_file(&cfg);
    let o = render("wrangler", &file, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for secret in [CI_SECRET, OCT_K, SESSION_SECRET, MAGIC_SECRET, PEPPER] {
        assert!(
            !o.stdout.contains(secret),
            "a secret leaked into wrangler.toml"
        );
    }
    // the whole config is the secret EDGEGATE_CONFIG, set from the file; never a var
    assert!(
        o.stdout
            .contains(&format!("npx wrangler secret put EDGEGATE_CONFIG < {file}")),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.lines().any(|l| l.starts_with("EDGEGATE_CONFIG")));
    assert!(o
        .stdout
        .contains("OIDC_CLIENT_SECRET: only with a login section"));
    // and the comment says which secrets it holds (paths only)
    assert_contains_all(
        &o.stdout,
        [
            "jwt.providers[1].jwks.keys[0].k",
            "session.keys[0].secret",
            "magic_links.keys[0].secret",
            "api_keys.pepper",
        ]
        .map(|path| format!("#     {path}\n")),
    );
    assert!(!o.stdout.contains("not built yet"));
}

/// The settings (not the comments) of `config wrangler`'s output are edge-worker/wrangler.toml's,
/// whose offline `wrangler deploy --dry-run` the worker's tests run.
#[test]
fn config_wrangler_matches_the_edge_workers_wrangler_toml() {
    let settings = |s: &str| -> Vec<String> {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../edge-worker/wrangler.toml"),
    )
    .unwrap();
    let file = config_file(&config(json!({"keys": []})));
    let o = render("wrangler", &file, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let ours: Vec<String> = settings(&o.stdout)
        .into_iter()
        .map(|l| {
            // the shipped file uses basic strings for these two
            l.replace("name = 'edgegate'", "name = \"edgegate\"")
                .replace(
                    "ORIGIN_URL = 'https://origin.example.com'",
                    "ORIGIN_URL = \"https://origin.example.com\"",
                )
        })
        .collect();
    assert_eq!(ours, settings(&shipped));
    // --name and --origin-url
    let o = render(
        "wrangler",
        &file,
        &["--name", "gate-eu", "--origin-url", "https://app.internal"],
    );
    assert!(o.stdout.contains("\nname = 'gate-eu'\n"), "{}", o.stdout);
    assert!(o.stdout.contains("\nORIGIN_URL = 'https://app.internal'\n"));
}

#[test]
fn config_renderers_refuse_a_config_that_fails_the_check() {
    let bad = temp_file("bad.json", br#"{"realm": "", "rules": []}"#);
    let bad = bad.to_str().unwrap();
    let wasm = temp_file("m.wasm", b"\0asm");
    for args in [
        vec!["config", "envoy", "-c", bad],
        vec![
            "config",
            "istio",
            "-c",
            bad,
            "--wasm",
            wasm.to_str().unwrap(),
        ],
        vec!["config", "wrangler", "-c", bad],
    ] {
        let o = run(&args, None);
        assert_eq!(o.code, 1, "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(o.stderr.contains("error: realm:"), "{args:?}: {}", o.stderr);
    }
}

/// A config whose `login` logs in with the provider `issuer` (keys from `jwks`).
fn login_config(issuer: &str, jwks: &str, login_extra: Value) -> Value {
    let mut login = json!({
        "provider": "op",
        "client_id": "desk-gate",
        "redirect_uri": "https://desk.example.com/auth/callback",
    });
    if let (Some(login), Some(extra)) = (login.as_object_mut(), login_extra.as_object()) {
        login.extend(extra.clone());
    }
    json!({
        "realm": "desk",
        "jwt": {"providers": [
            {"name": "op", "issuer": issuer, "algorithms": ["RS256"],
             "remote_jwks": {"jwks_uri": jwks}}
        ]},
        "session": {"keys": [{"kid": "s1", "secret": SESSION_SECRET}]},
        "login": login,
        "rules": [{"name": "app", "match": {"path": {"prefix": "/"}}, "credentials": ["session"],
                   "login_url": "/auth/login"}]
    })
}

/// `config istio` of `cfg` with `args`, which must succeed: the output and its pluginConfig.
fn istio_plugin(cfg: &Value, args: &[&str]) -> (Out, Value) {
    let o = render("istio", &config_file(cfg), args);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let plugin = embedded_json(&o.stdout, "pluginConfig:", Some("\n---"));
    (o, plugin)
}

/// The first provider's `remote_jwks.cluster` of a rendered pluginConfig.
fn jwks_cluster(plugin: &Value) -> &Value {
    plugin
        .pointer("/jwt/providers/0/remote_jwks/cluster")
        .unwrap_or(&Value::Null)
}

#[test]
fn config_istio_renders_what_login_needs_under_istio() {
    let wasm = temp_file("edgegate_proxy_wasm.wasm", b"\0asm\x01\0\0\0");
    let wasm = wasm.to_str().unwrap();
    // One IdP host (Keycloak): login.cluster and remote_jwks.cluster become its ServiceEntry's
    // cluster, with the ServiceEntry and the TLS-originating DestinationRule; the secret comes
    // from the proxy's environment.
    let cfg = login_config(
        "https://sso.example.com/realms/desk",
        "https://sso.example.com/realms/desk/protocol/openid-connect/certs",
        json!({}),
    );
    let (o, plugin) = istio_plugin(&cfg, &["--wasm", wasm, "--namespace", "desk"]);
    assert_eq!(plugin["login"]["cluster"], "outbound|80||sso.example.com");
    assert_eq!(jwks_cluster(&plugin), "outbound|80||sso.example.com");
    let mut expected = cfg.clone();
    expected["login"]["cluster"] = json!("outbound|80||sso.example.com");
    expected["jwt"]["providers"][0]["remote_jwks"]["cluster"] =
        json!("outbound|80||sso.example.com");
    assert_eq!(plugin, expected, "nothing else changes");
    assert_contains_all(
        &o.stdout,
        [
            "  vmConfig:\n    env:\n      - name: OIDC_CLIENT_SECRET\n        valueFrom: HOST\n",
            "kind: ServiceEntry",
            "  hosts: [\"sso.example.com\"]",
            "      targetPort: 443",
            "kind: DestinationRule",
            "          mode: SIMPLE\n          sni: \"sso.example.com\"",
            "  namespace: \"desk\"",
            "# login.cluster set to \"outbound|80||sso.example.com\"",
        ],
    );
    assert_eq!(
        o.stdout.matches("kind: ServiceEntry").count(),
        1,
        "one per host"
    );

    // A cluster the config sets is kept; a secret in the config needs no vmConfig.
    let cfg = login_config(
        "https://sso.example.com/realms/desk",
        "https://keys.example.com/certs",
        json!({"cluster": "outbound|443||sso.example.com", "client_secret": "s3cret"}),
    );
    let (o, plugin) = istio_plugin(&cfg, &["--wasm", wasm]);
    assert_eq!(plugin["login"]["cluster"], "outbound|443||sso.example.com");
    assert_eq!(jwks_cluster(&plugin), "outbound|80||keys.example.com");
    assert!(!o.stdout.contains("vmConfig:"), "{}", o.stdout);
    assert!(o.stdout.contains("  hosts: [\"keys.example.com\"]"));
    assert!(!o.stdout.contains("  hosts: [\"sso.example.com\"]"));

    // Google: the token endpoint is on another host, so login.cluster stays unset and the
    // output says what to add; the keys still get their ServiceEntry.
    let cfg = login_config(
        "https://accounts.google.com",
        "https://www.googleapis.com/oauth2/v3/certs",
        json!({}),
    );
    let (o, plugin) = istio_plugin(&cfg, &["--wasm", wasm]);
    assert!(plugin["login"].get("cluster").is_none(), "{plugin}");
    assert_eq!(jwks_cluster(&plugin), "outbound|80||www.googleapis.com");
    assert_contains_all(
        &o.stdout,
        [
            "# login.cluster is NOT set",
            "applyTo: CLUSTER",
            "docs/idp/google.md",
        ],
    );

    // Without a login section nothing of this is rendered.
    let o = render("istio", &default_config_file(), &["--wasm", wasm]);
    assert!(!o.stdout.contains("ServiceEntry") && !o.stdout.contains("vmConfig"));
}
