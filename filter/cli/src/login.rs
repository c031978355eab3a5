//! `edgegate login <url>`: the device authorization flow (RFC 8628) against an edgegate
//! deployment with `login.device`, like `gh auth login`: asks for a code, shows the code and
//! the page to confirm it at, polls (respecting `interval` and `slow_down`), and stores the
//! credential in `$XDG_CONFIG_HOME/edgegate/credentials.json` (default `~/.config/...`), mode
//! 0600, written whole by rename. `--print-token` prints it on stdout for scripts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::util::{now, Failure};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read from the deployment.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// The longest wait between two polls the CLI accepts from a deployment (edgegate's own is at
/// most 60 s, plus 5 s per `slow_down`).
const MAX_INTERVAL_S: u64 = 300;
/// The longest a login waits for its confirmation (edgegate's codes live at most an hour).
const MAX_WAIT_S: u64 = 24 * 3600;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The deployment: `https://app.example.com` (`http://` only for localhost).
    pub url: String,
    /// Print the credential on stdout (the instructions go to stderr), for scripts.
    #[arg(long)]
    pub print_token: bool,
    /// Do not store the credential (with --print-token: print only).
    #[arg(long)]
    pub no_store: bool,
    /// The name the confirm page shows for this device.
    #[arg(long, value_name = "NAME", default_value = "edgegate-cli")]
    pub client_name: String,
    /// The deployment's `login.device.path`.
    #[arg(long, value_name = "PATH", default_value = "/auth/device")]
    pub device_path: String,
    /// Where to store the credential. Default `$XDG_CONFIG_HOME/edgegate/credentials.json`
    /// (`~/.config/edgegate/credentials.json`).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct CodeAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
    interval: Option<u64>,
}

/// One stored credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    pub access_token: String,
    pub token_type: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The credentials file: one entry per deployment (its origin).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    pub deployments: BTreeMap<String, Credential>,
}

/// The deployment's origin, checked: https, or http on a loopback host.
fn origin_of(raw: &str) -> Result<String, Failure> {
    let url = url::Url::parse(raw).map_err(|e| {
        Failure::usage(format!(
            "{raw:?} is not a URL ({e}); e.g. https://app.example.com"
        ))
    })?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(Failure::usage(format!(
                "{raw:?}: the deployment must be https:// (http:// only for localhost)"
            )))
        }
    }
    Ok(url.origin().ascii_serialization())
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(HTTP_TIMEOUT)
        .redirects(0)
        .build()
}

/// POSTs a form and reads the JSON answer (any status: OAuth errors are 400s with a body).
fn post_form<T: for<'de> Deserialize<'de>>(
    agent: &ureq::Agent,
    url: &str,
    form: &[(&str, &str)],
) -> Result<(u16, T), Failure> {
    let resp = match agent.post(url).send_form(form) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(Failure::check(format!("edgegate: cannot reach {url}: {e}"))),
    };
    let status = resp.status();
    let mut body = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(resp.into_reader(), MAX_ANSWER_BYTES),
        &mut body,
    )
    .map_err(|e| Failure::check(format!("edgegate: reading the answer of {url}: {e}")))?;
    serde_json::from_str(&body).map(|v| (status, v)).map_err(|_| {
        Failure::check(format!(
            "edgegate: {url} answered {status} without the JSON of a device login; is login.device configured there? ({})",
            body.chars().take(200).collect::<String>()
        ))
    })
}

/// `$XDG_CONFIG_HOME/edgegate/credentials.json`, else `$HOME/.config/edgegate/credentials.json`.
pub fn default_credentials_path() -> Result<PathBuf, Failure> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .or_else(|| std::env::var_os("APPDATA").map(PathBuf::from))
        .ok_or_else(|| {
            Failure::usage(
                "no config directory: set XDG_CONFIG_HOME or HOME, or pass --credentials",
            )
        })?;
    Ok(base.join("edgegate").join("credentials.json"))
}

/// Adds `cred` for `origin` to the file at `path`, written whole: a temporary file beside it
/// (mode 0600 from its creation), then renamed over it.
pub fn store(path: &Path, origin: &str, cred: Credential) -> Result<(), Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::check(format!("edgegate: cannot {what} {}: {e}", path.display()))
    };
    let mut all: Credentials = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Failure::check(format!(
                "edgegate: {} is not an edgegate credentials file ({e}); move it away",
                path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Credentials::default(),
        Err(e) => return Err(fail("read", e)),
    };
    all.deployments.insert(origin.to_string(), cred);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    create_private_dir(dir).map_err(|e| fail("create the directory of", e))?;
    let json = serde_json::to_vec_pretty(&all)
        .map_err(|e| Failure::check(format!("edgegate: cannot encode the credentials: {e}")))?;
    let tmp = dir.join(format!(".credentials.json.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = private_file(&tmp)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    Ok(())
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// When to give up and how long to wait between polls, from the code answer (bounded: see
/// [`MAX_WAIT_S`], [`MAX_INTERVAL_S`]).
fn schedule(start: Instant, expires_in: u64, interval: Option<u64>) -> (Instant, u64) {
    let wait = Duration::from_secs(expires_in.min(MAX_WAIT_S));
    (
        start.checked_add(wait).unwrap_or(start),
        interval.unwrap_or(5).clamp(1, MAX_INTERVAL_S),
    )
}

/// The interval after `slow_down`: RFC 8628 §3.5: 5 seconds more, or what the server says;
/// at most [`MAX_INTERVAL_S`].
fn slowed(interval: u64, server: Option<u64>) -> u64 {
    let more = interval.saturating_add(5);
    server.unwrap_or(more).max(more).min(MAX_INTERVAL_S)
}

pub fn login(a: &LoginArgs) -> Result<ExitCode, Failure> {
    let origin = origin_of(&a.url)?;
    if !a.device_path.starts_with('/') || a.device_path.contains(['?', '#']) {
        return Err(Failure::usage("--device-path is a path like /auth/device"));
    }
    let path = match (&a.credentials, a.no_store) {
        (_, true) => None,
        (Some(p), false) => Some(p.clone()),
        (None, false) => Some(default_credentials_path()?),
    };
    if a.no_store && !a.print_token {
        return Err(Failure::usage(
            "--no-store without --print-token would throw the credential away",
        ));
    }
    let base = format!("{origin}{}", a.device_path.trim_end_matches('/'));
    let agent = agent();
    let (status, code): (u16, CodeAnswer) = post_form(
        &agent,
        &format!("{base}/code"),
        &[("client_id", a.client_name.as_str())],
    )?;
    if status != 200 {
        return Err(Failure::check(format!(
            "edgegate: {base}/code answered {status}"
        )));
    }
    eprintln!("To log in, open {}", code.verification_uri);
    eprintln!("and enter the code: {}", code.user_code);
    if let Some(complete) = &code.verification_uri_complete {
        eprintln!("(or open {complete})");
    }
    eprintln!("Waiting for the confirmation...");
    let (deadline, mut interval) = schedule(Instant::now(), code.expires_in, code.interval);
    loop {
        std::thread::sleep(Duration::from_secs(interval));
        if Instant::now() >= deadline {
            return Err(Failure::check(
                "edgegate: the code expired before it was confirmed; run `edgegate login` again",
            ));
        }
        let (status, t): (u16, TokenAnswer) = post_form(
            &agent,
            &format!("{base}/token"),
            &[
                ("grant_type", GRANT_TYPE),
                ("device_code", &code.device_code),
            ],
        )?;
        match (status, t.error.as_deref(), t.access_token) {
            (200, None, Some(token)) => {
                let expires_at = now()?.saturating_add(t.expires_in.unwrap_or(0));
                if let Some(p) = &path {
                    store(
                        p,
                        &origin,
                        Credential {
                            access_token: token.clone(),
                            token_type: "Bearer".into(),
                            expires_at,
                        },
                    )?;
                    eprintln!(
                        "Logged in to {origin}; the credential is in {} until {}",
                        p.display(),
                        crate::util::human_time(expires_at)
                    );
                } else {
                    eprintln!("Logged in to {origin}");
                }
                if a.print_token {
                    println!("{token}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            (_, Some("authorization_pending"), _) => {}
            (_, Some("slow_down"), _) => {
                interval = slowed(interval, t.interval);
            }
            (_, Some("access_denied"), _) => {
                return Err(Failure::check(
                    "edgegate: the request was denied in the browser",
                ))
            }
            (_, Some("expired_token"), _) => return Err(Failure::check(
                "edgegate: the code expired before it was confirmed; run `edgegate login` again",
            )),
            (status, error, _) => {
                return Err(Failure::check(format!(
                    "edgegate: the deployment refused the login ({status} {}: {})",
                    error.unwrap_or("no error code"),
                    t.error_description.unwrap_or_default()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        assert_eq!(
            origin_of("https://app.example.com/x").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            origin_of("http://localhost:1").unwrap(),
            "http://localhost:1"
        );
        assert!(origin_of("http://app.example.com").is_err());
        assert!(origin_of("ftp://app.example.com").is_err());
        assert!(origin_of("app.example.com").is_err());
    }

    /// The deployment's numbers are bounded: a broken or hostile answer neither crashes the
    /// CLI (an Instant or u64 overflow) nor makes it wait for days.
    #[test]
    fn the_deployments_timing_is_bounded() {
        let start = Instant::now();
        let (deadline, interval) = schedule(start, 600, Some(5));
        assert_eq!((deadline - start, interval), (Duration::from_secs(600), 5));
        assert_eq!(schedule(start, 600, None).1, 5);
        assert_eq!(schedule(start, 600, Some(0)).1, 1);
        let (deadline, interval) = schedule(start, u64::MAX, Some(u64::MAX));
        assert!(deadline - start <= Duration::from_secs(MAX_WAIT_S));
        assert!(interval <= MAX_INTERVAL_S);
        assert_eq!(slowed(5, None), 10);
        assert_eq!(slowed(5, Some(7)), 10);
        assert_eq!(slowed(5, Some(20)), 20);
        assert_eq!(slowed(u64::MAX, None), MAX_INTERVAL_S);
        assert_eq!(slowed(5, Some(u64::MAX)), MAX_INTERVAL_S);
    }

    #[cfg(unix)]
    #[test]
    fn credentials_are_private_and_kept_per_deployment() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("edgegate-cred-{}", std::process::id()));
        let path = dir.join("sub").join("credentials.json");
        let cred = |t: &str| Credential {
            access_token: t.into(),
            token_type: "Bearer".into(),
            expires_at: 1,
        };
        store(&path, "https://a.example", cred("one")).unwrap();
        store(&path, "https://b.example", cred("two")).unwrap();
        store(&path, "https://a.example", cred("three")).unwrap();
        let all: Credentials = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(all.deployments["https://a.example"].access_token, "three");
        assert_eq!(all.deployments["https://b.example"].access_token, "two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        // no temporary file is left
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        // a rewrite never keeps a looser mode of the file it replaces (a new 0600 file is
        // renamed over it; the old one is never opened for writing)
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        store(&path, "https://a.example", cred("four")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // a file that is not ours is refused, not overwritten
        std::fs::write(&path, "not json").unwrap();
        assert!(store(&path, "https://a.example", cred("x")).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not json");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
