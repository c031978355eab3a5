//! Shared plumbing: failures and exit codes, files, stdin, the clock, randomness, time parsing.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgegate::config::Config;
use edgegate::{ConfigErrors, Engine, UnixTime};

/// Largest file or stdin input the CLI reads (configs, key sets, tokens, wasm modules are read
/// by `sha256_file` in chunks and are not bounded by this).
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Why a command did not succeed; decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or unreadable input: exit 2.
    Usage(String),
    /// A check failed (the messages are printed as they are, one per line): exit 1.
    Check(Vec<String>),
}

impl Failure {
    pub fn usage(msg: impl Into<String>) -> Self {
        Failure::Usage(msg.into())
    }

    pub fn check(msg: impl Into<String>) -> Self {
        Failure::Check(vec![msg.into()])
    }

    /// Prints the failure to stderr and returns its exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("edgegate: {m}");
                ExitCode::from(2)
            }
            Failure::Check(lines) => {
                for l in lines {
                    eprintln!("{l}");
                }
                ExitCode::from(1)
            }
        }
    }
}

/// Reads a whole file (bounded). A missing or unreadable file is a usage error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    let f = std::fs::File::open(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    f.take(MAX_INPUT_BYTES.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(Failure::usage(format!(
            "{} is larger than {MAX_INPUT_BYTES} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// Reads stdin (bounded) as UTF-8 and strips one trailing line ending.
pub fn read_stdin_line(what: &str) -> Result<String, Failure> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT_BYTES.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Failure::usage(format!("cannot read the {what} from stdin: {e}")))?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(Failure::usage(format!("the {what} on stdin is too large")));
    }
    let s = String::from_utf8(buf)
        .map_err(|_| Failure::usage(format!("the {what} on stdin is not UTF-8")))?;
    let s = s.strip_suffix('\n').unwrap_or(&s);
    let s = s.strip_suffix('\r').unwrap_or(s);
    if s.is_empty() {
        return Err(Failure::usage(format!("no {what} on stdin")));
    }
    Ok(s.to_string())
}

/// Seconds since the Unix epoch from the system clock.
pub fn now() -> Result<UnixTime, Failure> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Failure::usage("the system clock is before 1970"))
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random<const N: usize>() -> Result<[u8; N], Failure> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf)
        .map_err(|e| Failure::usage(format!("the OS random source failed: {e}")))?;
    Ok(buf)
}

/// The config errors as lines for stderr: `error: <path>: <message and fix>`.
pub fn config_error_lines(file: &Path, errs: &ConfigErrors) -> Vec<String> {
    let mut lines = vec![format!(
        "{}: {} error{}",
        file.display(),
        errs.0.len(),
        if errs.0.len() == 1 { "" } else { "s" }
    )];
    lines.extend(errs.0.iter().map(|e| format!("error: {e}")));
    lines
}

/// A loaded and checked config: the engine, the parsed config and the raw JSON document.
pub struct Loaded {
    pub engine: Engine,
    pub config: Config,
    pub raw: serde_json::Value,
}

/// Reads and checks a config with the core; a config with errors is a check failure.
pub fn load_config(path: &Path) -> Result<Loaded, Failure> {
    let bytes = read_file(path)?;
    let config =
        Config::from_json(&bytes).map_err(|e| Failure::Check(config_error_lines(path, &e)))?;
    let engine =
        Engine::from_config(&config).map_err(|e| Failure::Check(config_error_lines(path, &e)))?;
    let raw = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::check(format!("{}: {e}", path.display())))?;
    Ok(Loaded {
        engine,
        config,
        raw,
    })
}

/// A duration: plain seconds (`600`) or humantime (`10m`, `90d`, `1h 30m`).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map_err(|_| format!("{s:?} is too large"));
    }
    humantime::parse_duration(s)
        .map(|d: Duration| d.as_secs())
        .map_err(|e| format!("{s:?} is not a duration like 600, 10m, 72h or 90d: {e}"))
}

/// An expiry: a duration from `now` (`90d`), a UTC date (`2027-01-31`, midnight UTC), an
/// RFC 3339 time (`2027-01-31T12:00:00Z`) or Unix seconds (`1830297600`). Must be in the future.
pub fn parse_expires(s: &str, now: UnixTime) -> Result<UnixTime, String> {
    let at = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map_err(|_| format!("{s:?} is too large"))?
    } else if s.contains('-') {
        let text = if s.len() == 10 {
            format!("{s}T00:00:00Z")
        } else {
            s.to_string()
        };
        humantime::parse_rfc3339_weak(&text)
            .map_err(|e| format!("{s:?} is not a date like 2027-01-31: {e}"))?
            .duration_since(UNIX_EPOCH)
            .map_err(|_| format!("{s:?} is before 1970"))?
            .as_secs()
    } else {
        let d = parse_duration(s)
            .map_err(|_| format!("{s:?} is not 90d, 2027-01-31 or Unix seconds"))?;
        now.checked_add(d)
            .ok_or_else(|| format!("{s:?} is too far in the future"))?
    };
    if at <= now {
        return Err(format!("{s:?} is not in the future"));
    }
    Ok(at)
}

/// A UTC timestamp for people (`2027-01-31T00:00:00Z`).
pub fn human_time(t: UnixTime) -> String {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(t))
        .map(|st| humantime::format_rfc3339_seconds(st).to_string())
        .unwrap_or_else(|| "(out of range)".to_string())
}

/// What may be shown of a credential: its first 12 characters and "…".
pub fn preview(secret: &str) -> String {
    let head: String = secret.chars().take(12).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries() {
        let now = 1_800_000_000;
        assert_eq!(parse_expires("90d", now).unwrap(), now + 90 * 86_400);
        assert_eq!(
            parse_expires("2027-01-31", 1_700_000_000).unwrap(),
            1_801_353_600
        );
        assert_eq!(
            parse_expires("2027-01-31T12:00:00Z", 1_700_000_000).unwrap(),
            1_801_353_600 + 43_200
        );
        assert_eq!(parse_expires("1900000000", now).unwrap(), 1_900_000_000);
        for bad in [
            "",
            "yesterday",
            "2020-01-01",
            "12",
            "2027-13-01",
            "-5d",
            "0",
        ] {
            assert!(parse_expires(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600").unwrap(), 600);
        assert_eq!(parse_duration("10m").unwrap(), 600);
        assert_eq!(parse_duration("72h").unwrap(), 259_200);
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn preview_shows_twelve_chars() {
        assert_eq!(preview("eyJhbGciOiJIUzI1NiJ9.x.y"), "eyJhbGciOiJI…");
        assert_eq!(preview("short"), "short…");
    }
}
