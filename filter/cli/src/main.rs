//! `edgegate`: the operator's command line for the edgegate core.
//!
//! Every check is the core's (`edgegate` crate); this binary only reads files, the clock and the
//! OS random source, and prints; `edgegate login` also talks HTTPS to a deployment. Exit codes: 0 ok / allowed, 1 check failed / refused, 2 usage
//! error (bad arguments, unreadable files).

#![forbid(unsafe_code)]

mod config_cmd;
mod explain;
mod keys;
mod login;
mod magic;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::util::Failure;

const EXIT_CODES: &str = "\
Exit codes:
  0  ok (for `token explain`: the request is allowed)
  1  check failed: the config has errors, or the request `token explain` describes is refused
  2  usage error: bad arguments or input (refused before anything is minted), unreadable files";

/// edgegate: mint API keys and magic links, explain tokens, check and deploy configs.
///
/// Every check is done by the edgegate core, exactly as the gateway does it.
#[derive(Debug, Parser)]
#[command(name = "edgegate", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API keys: mint new ones, revoke them from a key list, hash existing ones.
    #[command(subcommand, after_help = EXIT_CODES)]
    Keys(KeysCmd),
    /// Magic links: issue a link from the config's magic-link keys.
    #[command(subcommand, after_help = EXIT_CODES)]
    Magic(MagicCmd),
    /// Tokens: show what the gateway sees in a token and what it decides.
    #[command(subcommand, after_help = EXIT_CODES)]
    Token(TokenCmd),
    /// Configs: check one, render deployment snippets from it.
    #[command(subcommand, after_help = EXIT_CODES)]
    Config(ConfigCmd),
    /// Log in to an edgegate deployment from this machine (device authorization, RFC 8628).
    ///
    /// Shows a code and a page to confirm it at in a browser, waits, and stores the credential
    /// in $XDG_CONFIG_HOME/edgegate/credentials.json (mode 0600). Send it as
    /// `Authorization: Bearer <access_token>`. The deployment needs `login.device`.
    #[command(after_help = EXIT_CODES)]
    Login(login::LoginArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Mint a new API key: prints the key once (first line of stdout), then the config entry.
    ///
    /// The key is never stored anywhere: copy it to its user now. Paste the JSON entry into
    /// the config's `api_keys.keys`.
    #[command(after_help = EXIT_CODES)]
    New(keys::NewArgs),
    /// Revoke a key: remove its entry from a key list (`keys new --list` writes one).
    ///
    /// Where `api_keys.remote` serves the list, the key stops working within one refresh
    /// interval; where the list is the config's `api_keys.keys`, once the config is reloaded.
    #[command(after_help = EXIT_CODES)]
    Revoke(keys::RevokeArgs),
    /// Hash an existing key read from stdin (for migrations): prints `sha256:<hex>`.
    ///
    /// With --pepper-file, prints `hmac-sha256:<hex>`. A key that does not look like an
    /// edgegate key is still hashed, with a warning on stderr.
    #[command(after_help = EXIT_CODES)]
    Hash(keys::HashArgs),
}

#[derive(Debug, Subcommand)]
enum MagicCmd {
    /// Issue a magic link with the config's first magic-link key; prints the link.
    #[command(after_help = EXIT_CODES)]
    New(magic::NewArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Decode a token, verify it against the config and print the verdict for a request.
    ///
    /// Prints the token's header and claims, the provider and key that matched, the roles,
    /// permissions and scopes the claim paths extracted, the rule the request falls under, and
    /// the exact verdict of the gateway for that request with the token as
    /// `Authorization: Bearer`. The token itself is never printed (at most its first 12
    /// characters). Exit 0 when allowed, 1 when refused.
    #[command(after_help = EXIT_CODES)]
    Explain(explain::ExplainArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Check a config: every error with its field path and fix, warnings, and a summary.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// The config file (JSON).
        file: PathBuf,
    },
    /// Render the Envoy HTTP filter (envoy.filters.http.wasm, V8, fail closed) embedding the config.
    #[command(after_help = EXIT_CODES)]
    Envoy(config_cmd::EnvoyArgs),
    /// Render an Istio WasmPlugin (phase AUTHN, FAIL_CLOSE) with the module's sha256.
    #[command(after_help = EXIT_CODES)]
    Istio(config_cmd::IstioArgs),
    /// Render the edge worker's wrangler.toml; the config goes in as the secret EDGEGATE_CONFIG.
    #[command(after_help = EXIT_CODES)]
    Wrangler(config_cmd::WranglerArgs),
}

/// `--config FILE`, shared by commands that load a config.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The edgegate config file (JSON).
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    pub config: PathBuf,
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Keys(KeysCmd::New(a)) => keys::new(&a),
        Command::Keys(KeysCmd::Revoke(a)) => keys::revoke(&a),
        Command::Keys(KeysCmd::Hash(a)) => keys::hash(&a),
        Command::Magic(MagicCmd::New(a)) => magic::new(&a),
        Command::Token(TokenCmd::Explain(a)) => explain::explain(&a),
        Command::Config(ConfigCmd::Check { file }) => config_cmd::check(&file),
        Command::Config(ConfigCmd::Envoy(a)) => config_cmd::envoy(&a),
        Command::Config(ConfigCmd::Istio(a)) => config_cmd::istio(&a),
        Command::Config(ConfigCmd::Wrangler(a)) => config_cmd::wrangler(&a),
        Command::Login(a) => login::login(&a),
    }
}

fn main() -> ExitCode {
    // clap exits 2 on usage errors and 0 for --help / --version.
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(f) => f.report(),
    }
}
