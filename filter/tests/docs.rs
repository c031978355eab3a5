//! Every ```json block in the README (and docs/*.md) is a complete config that must load, so the
//! documentation cannot rot. Fragments use ```jsonc and are not checked here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

fn json_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```json" => current = Some((i + 1, String::new())),
            Some(_) if line.trim_start().starts_with("```") => out.push(current.take().unwrap()),
            Some((_, buf)) => {
                buf.push_str(line);
                buf.push('\n');
            }
            None => {}
        }
    }
    out
}

fn check(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let blocks = json_blocks(&text);
    for (line, block) in &blocks {
        if let Err(e) = edgegate::Engine::from_json(block.as_bytes()) {
            panic!(
                "{}:{line}: the config example is refused:\n{e}",
                path.display()
            );
        }
    }
    blocks.len()
}

#[test]
fn readme_and_docs_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut n = check(&root.join("README.md"));
    if let Ok(dir) = std::fs::read_dir(root.join("docs")) {
        for entry in dir {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "md") {
                n += check(&p);
            }
        }
    }
    assert!(
        n >= 1,
        "the README must carry at least one complete config example"
    );
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
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    assert!(readme.contains(key));
    let block = json_blocks(&readme).into_iter().next().unwrap().1;
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
        edgegate::Verdict::Allow {
            identity: Some(id), ..
        } => assert_eq!(id.subject, "ci-pipeline-prod"),
        other => panic!("the README's API key is refused: {other:?}"),
    }
}
