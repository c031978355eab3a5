//! `edgegate keys new`, `edgegate keys revoke` and `edgegate keys hash`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use edgegate::apikey::{self, ApiKeyEntry, ApiKeysConfig, KeyList, DEFAULT_PREFIX};
use edgegate::keyring::{Secret, MIN_SECRET_BYTES};

use crate::util::{self, Failure};

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Unique name of the key; becomes the caller's subject (e.g. ci-pipeline-prod).
    #[arg(long)]
    pub name: String,
    /// Roles granted to the key, comma-separated (e.g. staff,deployer).
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Permissions granted to the key, comma-separated (e.g. deploy:write).
    #[arg(long, value_delimiter = ',')]
    pub permissions: Vec<String>,
    /// Expiry: a duration from now (90d, 12h), a UTC date (2027-01-31) or Unix seconds.
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// A path prefix the key is limited to (e.g. /api/).
    #[arg(long, value_name = "PATH")]
    pub scope: Option<String>,
    /// The key prefix (must match the config's api_keys.prefix).
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// A file holding the config's api_keys.pepper (base64url): the hash becomes hmac-sha256.
    #[arg(long, value_name = "FILE")]
    pub pepper_file: Option<PathBuf>,
    /// Add the entry to this key list ({"keys": [...]}, created if missing) instead of printing
    /// it; a name already in the list is refused.
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The name of the key to revoke.
    pub name: String,
    /// The key list to remove it from ({"keys": [...]}).
    #[arg(long, value_name = "FILE")]
    pub list: PathBuf,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// A file holding the config's api_keys.pepper (base64url): prints hmac-sha256:<hex>.
    #[arg(long, value_name = "FILE")]
    pub pepper_file: Option<PathBuf>,
    /// The prefix edgegate keys have here (only for the format warning).
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
}

/// The pepper as the config holds it (the core decodes and checks it).
fn read_pepper(path: &Path) -> Result<(Secret, Vec<u8>), Failure> {
    let bytes = util::read_file(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::usage(format!("{}: the pepper is not text", path.display())))?;
    let secret = Secret::new(text.trim());
    let decoded = secret
        .decode_base64url("--pepper-file", MIN_SECRET_BYTES)
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok((secret, decoded))
}

fn usage_from(errors: Vec<edgegate::ConfigError>) -> Failure {
    // Paths are the entry's fields (`keys[0].name`): name them as the options that set them.
    let lines: Vec<String> = errors
        .iter()
        .map(|e| match e.path() {
            "" => e.to_string(),
            p => format!("--{}: {}", p.trim_start_matches("keys[0]."), e.message()),
        })
        .collect();
    Failure::usage(lines.join("\n"))
}

pub fn new(a: &NewArgs) -> Result<ExitCode, Failure> {
    let now = util::now()?;
    let expires_at = a
        .expires
        .as_deref()
        .map(|s| util::parse_expires(s, now))
        .transpose()
        .map_err(|e| Failure::usage(format!("--expires: {e}")))?;
    let pepper = a.pepper_file.as_deref().map(read_pepper).transpose()?;
    apikey::validate_prefix(&a.prefix).map_err(|e| Failure::usage(format!("--{e}")))?;
    let roles: Vec<String> = a.roles.iter().filter(|r| !r.is_empty()).cloned().collect();
    let permissions: Vec<String> = a
        .permissions
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect();

    let random = util::random::<32>()?;
    let key = apikey::mint(&a.prefix, &random);
    let entry = ApiKeyEntry {
        name: a.name.clone(),
        hash: Secret::new(apikey::hash(
            &key,
            pepper.as_ref().map(|(_, b)| b.as_slice()),
        )),
        roles,
        permissions,
        expires_at,
        path_scope: a.scope.clone(),
    };
    // The core's own checks of the entry (name, scope, hash kind), before anything is printed.
    let section = ApiKeysConfig {
        prefix: a.prefix.clone(),
        header: None,
        pepper: pepper.as_ref().map(|(s, _)| s.clone()),
        keys: vec![entry.clone()],
        forward: false,
        remote: None,
    };
    let store = section.compile().map_err(usage_from)?;
    if store.verify(&key, now).is_err() {
        return Err(Failure::check(
            "internal error: the minted key does not verify against its own entry",
        ));
    }
    if let Some(path) = &a.list {
        // The list is written before the key is shown: a key whose entry was not stored is
        // never handed out.
        let mut list = read_list(path, true)?;
        if list.keys.iter().any(|k| k.name == entry.name) {
            return Err(Failure::usage(format!(
                "--name: {path} already has a key named {name:?}; revoke it first or pick another name",
                path = path.display(),
                name = entry.name
            )));
        }
        list.keys.push(entry.clone());
        check_list(&list, &section)?;
        write_list(path, &list)?;
        println!("{key}");
        eprintln!("The key is on the first line: give it to its user now. It is shown only this once and stored nowhere.");
        eprintln!(
            "Its entry was added to {} ({} keys).",
            path.display(),
            list.keys.len()
        );
    } else {
        let json = serde_json::to_string_pretty(&entry)
            .map_err(|e| Failure::check(format!("internal error: {e}")))?;
        println!("{key}");
        println!("{json}");
        eprintln!("The key is on the first line: give it to its user now. It is shown only this once and stored nowhere.");
        eprintln!("Add the JSON entry to api_keys.keys in the config.");
    }
    if a.prefix != DEFAULT_PREFIX {
        eprintln!("The config needs \"prefix\": {:?} in api_keys.", a.prefix);
    }
    if pepper.is_some() {
        eprintln!("The hash is peppered: the config's api_keys.pepper must be this same pepper.");
    }
    if let Some(t) = expires_at {
        eprintln!("Expires {} ({t}).", util::human_time(t));
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys revoke NAME --list FILE`: removes the key's entry from the list.
pub fn revoke(a: &RevokeArgs) -> Result<ExitCode, Failure> {
    let mut list = read_list(&a.list, false)?;
    let before = list.keys.len();
    list.keys.retain(|k| k.name != a.name);
    if list.keys.len() == before {
        return Err(Failure::usage(format!(
            "{}: no key named {:?}",
            a.list.display(),
            a.name
        )));
    }
    write_list(&a.list, &list)?;
    eprintln!(
        "Revoked {:?}: removed from {} ({} keys left). Where api_keys.remote serves this file, it stops working within one refresh interval; where the list is pasted into a config's api_keys.keys, once that config is loaded.",
        a.name,
        a.list.display(),
        list.keys.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// A key list file; an empty list when the file does not exist and `create` is set.
fn read_list(path: &Path, create: bool) -> Result<KeyList, Failure> {
    if create && !path.exists() {
        return Ok(KeyList::default());
    }
    let bytes = util::read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::usage(format!(
            "{}: not a key list ({{\"keys\": [...]}}): {e}",
            path.display()
        ))
    })
}

/// The core's checks of a whole list (names unique, hashes of the section's kind).
fn check_list(list: &KeyList, section: &ApiKeysConfig) -> Result<(), Failure> {
    ApiKeysConfig {
        keys: list.keys.clone(),
        ..section.clone()
    }
    .compile()
    .map(|_| ())
    .map_err(|errors| {
        Failure::usage(
            errors
                .iter()
                .map(|e| format!("the list: {e}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// Writes the list whole: to a temporary file beside it, then renamed over it, so a reader
/// never sees half a list.
fn write_list(path: &Path, list: &KeyList) -> Result<(), Failure> {
    let mut json = serde_json::to_string_pretty(list)
        .map_err(|e| Failure::check(format!("internal error: {e}")))?;
    json.push('\n');
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Failure::check(format!("{}: cannot write the list: {e}", path.display()))
        })
}

pub fn hash(a: &HashArgs) -> Result<ExitCode, Failure> {
    let pepper = a.pepper_file.as_deref().map(read_pepper).transpose()?;
    let section = ApiKeysConfig {
        prefix: a.prefix.clone(),
        ..ApiKeysConfig::default()
    };
    let store = section.compile().map_err(usage_from)?;
    let key = util::read_stdin_line("key")?;
    if let Err(e) = store.check_format(&key) {
        eprintln!(
            "warning: this does not look like an edgegate key with prefix {:?} ({}); hashing it anyway",
            a.prefix,
            e.reason().code()
        );
    }
    if key.trim() != key {
        eprintln!("warning: the key has leading or trailing whitespace, which is hashed too");
    }
    println!(
        "{}",
        apikey::hash(&key, pepper.as_ref().map(|(_, b)| b.as_slice()))
    );
    Ok(ExitCode::SUCCESS)
}
