//! The documentation cannot rot:
//!
//! - every ```json block in the README and in `docs/**/*.md` is a complete config that must load
//!   (fragments use ```jsonc and are not checked here); a refused block names its file and line;
//! - a block right after `<!-- edgegate:config <file> -->` must also equal that file (the IdP
//!   guides embed `envoy/examples/<idp>.json`, which `examples.rs` and the Envoy suite use), and a
//!   block after `<!-- edgegate:payload <file> -->` is a sample token payload that must equal
//!   that file;
//! - each IdP guide (`docs/idp/*.md`) has one config and one payload, and its "What edgegate reads
//!   from this payload" list (`- subject:`, `- roles:`, `- permissions:`, `- scopes:`) is exactly
//!   what the config's claim paths extract from the payload.
// The helpers outside `#[test]` functions (clippy.toml allows these in the tests themselves).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use edgegate::config::Config;
use edgegate::{CredentialKind, Identity};
use serde_json::{Map, Value};

/// What a ```json block is, by the marker comment on the line before it.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A config that must load.
    Config,
    /// A config that must load and equal this file (relative to the repository root).
    ConfigOf(String),
    /// A sample token payload that must equal this file.
    PayloadOf(String),
}

#[derive(Debug)]
struct Block {
    line: usize,
    kind: Kind,
    text: String,
}

fn json_blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut marker: Option<Kind> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        match &mut current {
            None if t == "```json" => {
                current = Some(Block {
                    line: i + 1,
                    kind: marker.take().unwrap_or(Kind::Config),
                    text: String::new(),
                });
            }
            None => {
                if let Some(rest) = t
                    .strip_prefix("<!-- edgegate:")
                    .and_then(|r| r.strip_suffix("-->"))
                {
                    let (what, file) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
                    marker = Some(match what {
                        "config" => Kind::ConfigOf(file.trim().to_string()),
                        "payload" => Kind::PayloadOf(file.trim().to_string()),
                        other => panic!("line {}: unknown marker edgegate:{other}", i + 1),
                    });
                } else if !t.is_empty() {
                    // A marker binds the very next block only, with nothing but blank lines between.
                    marker = None;
                }
            }
            Some(_) if t.starts_with("```") => out.push(current.take().unwrap()),
            Some(b) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
        }
    }
    out
}

/// The file named by the block after `<!-- edgegate:<marker> <file> -->` (`config` or
/// `payload`).
fn marked_file<'b>(blocks: &'b [Block], marker: &str) -> Option<&'b str> {
    blocks.iter().find_map(|b| match (&b.kind, marker) {
        (Kind::ConfigOf(f), "config") | (Kind::PayloadOf(f), "payload") => Some(f.as_str()),
        _ => None,
    })
}

/// The lines of a Markdown text outside its ``` code fences, with their 0-based index.
fn prose_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut in_code = false;
    text.lines().enumerate().filter(move |(_, line)| {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            false
        } else {
            !in_code
        }
    })
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn same_json(block: &str, file: &str) -> Result<(), String> {
    let doc: Value = serde_json::from_str(block).map_err(|e| format!("not JSON: {e}"))?;
    let want: Value = serde_json::from_str(&read(&root().join(file)))
        .map_err(|e| format!("{file} is not JSON: {e}"))?;
    if doc == want {
        Ok(())
    } else {
        Err(format!("differs from {file}: copy the file into the block"))
    }
}

/// Checks every block of one file; returns the failures (`file:line: why`) and the blocks.
fn check(path: &Path) -> (Vec<String>, Vec<Block>) {
    let blocks = json_blocks(&read(path));
    let mut failures = Vec::new();
    for b in &blocks {
        let at = format!("{}:{}", path.display(), b.line);
        if let Kind::PayloadOf(file) = &b.kind {
            if let Err(e) = same_json(&b.text, file) {
                failures.push(format!("{at}: the sample payload {e}"));
            }
            continue;
        }
        if let Err(e) = edgegate::Engine::from_json(b.text.as_bytes()) {
            failures.push(format!("{at}: the config example is refused:\n{e}"));
        }
        if let Kind::ConfigOf(file) = &b.kind {
            if let Err(e) = same_json(&b.text, file) {
                failures.push(format!("{at}: the config {e}"));
            }
        }
    }
    (failures, blocks)
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let p = entry.unwrap().path();
        if p.is_dir() {
            markdown_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "md") {
            out.push(p);
        }
    }
}

fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    markdown_files(&root().join("docs"), &mut files);
    files.sort();
    files
}

#[test]
fn readme_and_docs_configs_load() {
    let mut failures = Vec::new();
    let mut n = 0;
    for f in doc_files() {
        let (bad, blocks) = check(&f);
        failures.extend(bad);
        n += blocks.len();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        n >= 7,
        "only {n} checked JSON blocks in the README and docs/"
    );
}

#[test]
fn a_broken_block_is_reported_with_its_file_and_line() {
    // The checker itself: a refused config, a config that drifted from its file and a payload
    // that drifted from its file are all reported, each at the line of its block.
    let dir = std::env::temp_dir().join(format!("edgegate-docs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let md = dir.join("broken.md");
    std::fs::write(
        &md,
        "# t\n\n```json\n{\"rules\": [{\"match\": {\"path\": {\"prefix\": \"admin\"}}}]}\n```\n\n\
         <!-- edgegate:config envoy/examples/google.json -->\n```json\n{}\n```\n\n\
         <!-- edgegate:payload envoy/examples/google.payload.json -->\n\n```json\n{\"sub\": \"x\"}\n```\n\n\
         ```jsonc\n{\"not\": \"checked\"}\n```\n",
    )
    .unwrap();
    let (failures, blocks) = check(&md);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    assert_eq!(failures.len(), 3, "{failures:#?}");
    let at = |line: usize| format!("broken.md:{line}: ");
    assert!(
        failures[0].contains(&at(3)) && failures[0].contains("refused"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains(&at(8))
            && failures[1].contains("differs from envoy/examples/google.json"),
        "{}",
        failures[1]
    );
    assert!(
        failures[2].contains(&at(14)) && failures[2].contains("google.payload.json"),
        "{}",
        failures[2]
    );
    eprintln!("{}", failures.join("\n"));
}

/// The backticked items of a `- <label>: ...` line ("(none)" = empty).
fn listed(text: &str, label: &str) -> Option<Vec<String>> {
    let prefix = format!("- {label}:");
    let line = text.lines().find(|l| l.trim_start().starts_with(&prefix))?;
    Some(
        line.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn every_idp_guide_documents_what_its_config_extracts_from_its_payload() {
    let mut guides = Vec::new();
    markdown_files(&root().join("docs/idp"), &mut guides);
    guides.sort();
    let names: Vec<String> = guides
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["keycloak", "google", "entra-id", "auth0", "cognito", "okta"] {
        assert!(
            names.iter().any(|n| n == want),
            "docs/idp/{want}.md is missing"
        );
    }
    for guide in &guides {
        let g = guide.display();
        let text = read(guide);
        let (failures, blocks) = check(guide);
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
        let config_file = marked_file(&blocks, "config")
            .unwrap_or_else(|| panic!("{g}: no <!-- edgegate:config envoy/examples/… --> block"));
        let payload_file = marked_file(&blocks, "payload")
            .unwrap_or_else(|| panic!("{g}: no <!-- edgegate:payload … --> block"));

        let config = Config::from_json(read(&root().join(config_file)).as_bytes()).unwrap();
        let payload: Map<String, Value> =
            serde_json::from_str(&read(&root().join(payload_file))).unwrap();
        let provider = &config.jwt.providers[0];
        let preset = provider.claims.preset.map(|p| p.name()).unwrap();
        assert!(
            text.contains(&format!("\"preset\": \"{preset}\"")),
            "{g}: the guide does not name its preset {preset}"
        );
        let mut id = Identity::new("unset", CredentialKind::Jwt, provider.name.clone());
        provider.claims.compile().unwrap().apply(&payload, &mut id);
        let section = text
            .split("What edgegate reads from this payload")
            .nth(1)
            .unwrap_or_else(|| panic!("{g}: no \"What edgegate reads from this payload\" list"));
        let subject = listed(section, "subject").unwrap_or_else(|| panic!("{g}: no `- subject:`"));
        assert_eq!(subject, [id.subject.clone()], "{g}: subject");
        for (label, got) in [
            ("roles", &id.roles),
            ("permissions", &id.permissions),
            ("scopes", &id.scopes),
        ] {
            let documented =
                listed(section, label).unwrap_or_else(|| panic!("{g}: no `- {label}:` line"));
            assert_eq!(
                &documented, got,
                "{g}: the documented {label} are not what the config extracts"
            );
        }
    }
}

#[test]
fn every_idp_guide_has_a_complete_worker_login_config_and_no_login_fragment_is_left() {
    let mut guides = Vec::new();
    markdown_files(&root().join("docs/idp"), &mut guides);
    for guide in &guides {
        let g = guide.display();
        let (failures, blocks) = check(guide);
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
        let example_file = marked_file(&blocks, "config").unwrap();
        let example = Config::from_json(read(&root().join(example_file)).as_bytes()).unwrap();
        let preset = example.jwt.providers[0].claims.preset.map(|p| p.name());
        let logins: Vec<Config> = blocks
            .iter()
            .filter(|b| b.kind == Kind::Config)
            .map(|b| Config::from_json(b.text.as_bytes()).unwrap())
            .filter(|c| c.login.is_some())
            .collect();
        assert!(
            !logins.is_empty(),
            "{g}: no ```json config with a `login` section"
        );
        for c in &logins {
            let login = c.login.as_ref().unwrap();
            assert!(c.session.is_some(), "{g}: a login config without `session`");
            assert!(
                login.client_secret.is_none(),
                "{g}: the client secret belongs in the worker secret OIDC_CLIENT_SECRET"
            );
            let p = c
                .jwt
                .providers
                .iter()
                .find(|p| p.name == login.provider)
                .unwrap();
            assert_eq!(
                p.claims.preset.map(|p| p.name()),
                preset,
                "{g}: another preset"
            );
            // The documented refresh setup: refresh keys exactly when a refresh token comes.
            let offline = login.scopes.iter().any(|s| s == "offline_access");
            if offline {
                assert!(
                    !login.refresh_keys.is_empty(),
                    "{g}: offline_access without refresh_keys"
                );
            }
        }
    }
    for f in doc_files() {
        let text = read(&f);
        for (i, block) in text.split("```jsonc").skip(1).enumerate() {
            let body = block.split("```").next().unwrap_or("");
            assert!(
                !body.contains("\"login\""),
                "{}: jsonc block {i} is an untested `login` fragment; make it a complete ```json config",
                f.display()
            );
        }
    }
}

#[test]
fn the_readme_api_key_example_matches_its_hash() {
    // The README shows a key and, in the config example, its hash: they must agree, and the key
    // must pass the format check (it was minted by an independent Python implementation of the
    // documented format).
    let key = "egk_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf1DvKaJ";
    assert_eq!(
        edgegate::apikey::hash(key, None),
        "sha256:d3823326a9d6312b3ed5448201395835677ca12b671427f44f4d347a485a5fe3"
    );
    let readme = read(&root().join("README.md"));
    assert!(readme.contains(key));
    let block = json_blocks(&readme)
        .into_iter()
        .find(|b| b.text.contains("ci-pipeline-prod"))
        .unwrap()
        .text;
    let engine = edgegate::Engine::from_json(block.as_bytes()).unwrap();
    let headers = [("x-api-key", key)];
    let req = edgegate::Request {
        method: "GET",
        path: "/api/tickets",
        headers: &headers,
    };
    let mut cache = engine.new_cache();
    match engine.decide(
        &req,
        &edgegate::verifier::NoRemoteKeys,
        &mut cache,
        1_800_000_000,
    ) {
        edgegate::Step::Done(edgegate::Verdict::Allow {
            identity: Some(id), ..
        }) => assert_eq!(id.subject, "ci-pipeline-prod"),
        other => panic!("the README's API key is refused: {other:?}"),
    }
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation other than `-`/`_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    prose_lines(text)
        .filter(|(_, line)| line.starts_with('#'))
        .map(|(_, line)| slug(line.trim_start_matches('#')))
        .collect()
}

#[test]
fn relative_links_in_the_docs_point_at_files_and_headings_that_exist() {
    let mut broken = Vec::new();
    let mut n = 0;
    for f in doc_files() {
        let text = read(&f);
        for (i, line) in prose_lines(&text) {
            for part in line.split("](").skip(1) {
                let Some(target) = part.split(')').next() else {
                    continue;
                };
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                n += 1;
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let path = if file.is_empty() {
                    f.clone()
                } else {
                    f.parent().unwrap().join(file)
                };
                let at = format!("{}:{}: link {target:?}", f.display(), i + 1);
                if !path.exists() {
                    broken.push(format!("{at}: no such file"));
                } else if !anchor.is_empty() && !anchors(&read(&path)).iter().any(|a| a == anchor) {
                    broken.push(format!("{at}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(n >= 20, "only {n} relative links checked");
}
