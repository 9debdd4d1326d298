//! `castellan config check FILE`: a server, agent or dev configuration, checked the way the command
//! that reads it would, naming the bad field and its line.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Which program reads a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `castellan serve` (castellan.toml).
    Server,
    /// `castellan agent --config` (server, credential_file, [[certificate]], [[secret]]).
    Agent,
    /// `castellan dev up --config` (castellan-dev.toml).
    Dev,
}

/// The kind a file's top-level keys show: an agent names its `server` (and how it signs in); a dev
/// configuration lists certificates or secrets without a server; anything else is a server's.
pub fn guess(text: &str) -> Kind {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Kind::Server;
    };
    let has = |k: &str| table.contains_key(k);
    if has("server") || has("credential_file") || has("auth") || has("token_file") {
        Kind::Agent
    } else if has("certs_dir") || has("certificate") || has("secret") {
        Kind::Dev
    } else {
        Kind::Server
    }
}

/// Checks `file` as `kind` (guessed from its keys when not given) and says what it found.
pub fn check(file: &Path, kind: Option<Kind>) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let kind = kind.unwrap_or_else(|| guess(&text));
    let summary = match kind {
        Kind::Server => {
            let cfg = castellan_server::config::Config::from_file(file)?;
            format!(
                "server configuration (store: {}, issuer: {})",
                crate::redact_url(&cfg.store_url()),
                cfg.issuer()
            )
        }
        Kind::Agent => {
            let cfg = castellan_agent::AgentConfig::from_toml(&file.display().to_string(), &text)?;
            format!(
                "agent configuration: {} certificate(s), {} secret(s) from {}",
                cfg.certificates.len(),
                cfg.secrets.len(),
                cfg.server
            )
        }
        Kind::Dev => crate::agent_cmd::check_dev_config(file)?,
    };
    println!("{}: ok ({summary})", file.display());
    Ok(ExitCode::SUCCESS)
}
