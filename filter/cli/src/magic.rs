//! `edgegate magic new`.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use edgegate::magic::{MagicLinkRequest, Purpose};

use crate::util::{self, Failure};
use crate::ConfigArg;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PurposeArg {
    /// Log an existing user in.
    Login,
    /// Accept an invitation.
    Join,
    /// Time-limited access to one path prefix (needs --scope).
    Guest,
}

impl From<PurposeArg> for Purpose {
    fn from(p: PurposeArg) -> Purpose {
        match p {
            PurposeArg::Login => Purpose::Login,
            PurposeArg::Join => Purpose::Join,
            PurposeArg::Guest => Purpose::Guest,
        }
    }
}

#[derive(Debug, Args)]
pub struct NewArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The recipient's email address.
    #[arg(long, required_unless_present = "sub")]
    pub email: Option<String>,
    /// A subject instead of (or besides) the email.
    #[arg(long)]
    pub sub: Option<String>,
    /// What the link is for.
    #[arg(long, value_enum)]
    pub purpose: PurposeArg,
    /// The path prefix the link is limited to (required for guest links).
    #[arg(long, value_name = "PATH")]
    pub scope: Option<String>,
    /// Lifetime (600, 10m, 72h); default and maximum per purpose from the config.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Where to go after login: a relative path or an allowed https URL.
    #[arg(long, value_name = "PATH_OR_URL")]
    pub target: Option<String>,
    /// The site's public origin, e.g. https://desk.example.com.
    #[arg(long, value_name = "URL")]
    pub base_url: String,
}

/// The origin links start with: `https://host[:port]` (or `http://localhost` for local work),
/// without a path, query or fragment; a trailing `/` is dropped.
fn base_url(s: &str) -> Result<String, Failure> {
    let bad = |why: &str| Failure::usage(format!("--base-url {s:?}: {why}"));
    let u = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
    let local = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if !(u.scheme() == "https" || (u.scheme() == "http" && local)) {
        return Err(bad("use https:// (http:// only for localhost)"));
    }
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return Err(bad(
            "give only the origin (and optionally a path prefix), no query, fragment or user",
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

pub fn new(a: &NewArgs) -> Result<ExitCode, Failure> {
    let base = base_url(&a.base_url)?;
    let ttl = a
        .ttl
        .as_deref()
        .map(util::parse_duration)
        .transpose()
        .map_err(|e| Failure::usage(format!("--ttl: {e}")))?;
    let loaded = util::load_config(&a.config.config)?;
    let Some(links) = loaded.engine.magic_links() else {
        return Err(Failure::check(format!(
            "{}: magic_links is not configured; add a magic_links section with keys",
            a.config.config.display()
        )));
    };
    if let Some(t) = &a.target {
        // The same return-URL policy the gateway applies when the link is used.
        loaded
            .engine
            .redirects()
            .check(t)
            .map_err(|e| Failure::usage(format!("--target: {}", e.message())))?;
    }
    let req = MagicLinkRequest {
        email: a.email.clone(),
        sub: a.sub.clone(),
        purpose: Some(a.purpose.into()),
        path_scope: a.scope.clone(),
        target: a.target.clone(),
        ttl,
    };
    let now = util::now()?;
    let jti = util::random::<16>()?;
    let token = links.issue(&req, now, &jti).map_err(|e| match e.path() {
        "" => Failure::check(e.to_string()),
        p => Failure::usage(format!("--{p}: {}", e.message())),
    })?;
    println!("{base}{}", links.link_path(&token));
    Ok(ExitCode::SUCCESS)
}
