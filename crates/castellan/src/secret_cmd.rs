//! `castellan secret …`: put, get, list, delete — on the store directly or through --server.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use castellan_core::secret_store::{MAX_VALUE_BYTES, SecretValue};
use castellan_files::{OutFile, write_all_atomic};
use castellan_server::secrets as svc;
use castellan_wire::{PutSecret, SecretJson, SecretMeta};
use clap::Subcommand;
use zeroize::Zeroizing;

use crate::Target;
use crate::common::{self, now};

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Write a new version of a secret, read from standard input or --file (never the command line).
    ///
    /// The value is stored exactly as given, sealed: `printf %s 'VALUE' | castellan secret put
    /// app/db-password` (`echo` would add a newline). It is never taken from the command line, where
    /// `ps` and shell history would see it.
    Put {
        /// The name: `/`-separated segments of letters, digits, `.`, `_`, `-` (e.g. mqtt/broker-password).
        name: String,
        /// Read the value from this file instead of standard input.
        #[arg(long, conflicts_with = "generate")]
        file: Option<PathBuf>,
        /// Generate the value: this many random bytes (16 to 1024), stored as base64url text (for
        /// example a database password nobody has to see). Not printed; read it with `secret get`.
        #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(16..=1024))]
        generate: Option<u16>,
        /// Write only if the newest version is this one (0: only if the secret does not exist yet).
        #[arg(long)]
        cas: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print a secret's value (the newest version unless --version), or write it to --out.
    #[command(disable_version_flag = true)]
    Get {
        /// The name.
        name: String,
        /// A kept older version.
        #[arg(long)]
        version: Option<i64>,
        /// Write the value to this file (atomically, mode --mode) instead of standard output; an
        /// existing directory is never changed.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Octal mode of --out.
        #[arg(long, default_value = "0600", value_parser = parse_mode, requires = "out")]
        mode: u32,
        /// Print JSON (name, version, created_at, value_base64, and value when it is UTF-8).
        #[arg(long, conflicts_with = "out")]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List secrets: names, newest version, versions kept, last write. Never values.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Destroy every version of a secret.
    Delete {
        /// The name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

fn parse_mode(s: &str) -> Result<u32, String> {
    castellan_files::parse_mode(s)
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal file mode such as 0600"))
}

/// The value to put: --file or standard input, at most the store's limit (a larger input is refused,
/// not cut).
fn read_value(file: Option<&PathBuf>) -> Result<SecretValue> {
    let mut buf = Zeroizing::new(Vec::new());
    let limit = (MAX_VALUE_BYTES + 1) as u64;
    match file {
        Some(path) => {
            std::fs::File::open(path)
                .with_context(|| format!("reading {}", path.display()))?
                .take(limit)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!(
                    "give the value on standard input (e.g. `printf %s VALUE | castellan secret put NAME`) or with --file"
                );
            }
            stdin
                .lock()
                .take(limit)
                .read_to_end(&mut buf)
                .context("reading standard input")?;
        }
    }
    Ok(SecretValue::new(buf))
}

async fn local(
    target: &Target,
) -> Result<(castellan_store::Store, castellan_core::envelope::MasterKey)> {
    common::unlocked_store(&target.store.config()?).await
}

pub async fn run(cmd: SecretCommand) -> Result<ExitCode> {
    match cmd {
        SecretCommand::Put {
            name,
            file,
            generate,
            cas,
            json,
            target,
        } => {
            let value = match generate {
                Some(n) => castellan_core::secret_store::generate_value(usize::from(n))?,
                None => read_value(file.as_ref())?,
            };
            let meta: SecretMeta = if let Some(remote) = target.remote.client().await? {
                let body = PutSecret::base64(value.expose(), cas);
                remote
                    .send_json(reqwest::Method::PUT, &format!("/v1/secrets/{name}"), &body)
                    .await?
            } else {
                let (store, master) = local(&target).await?;
                svc::put(&store, &master, &name, &value, cas, now()).await?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&meta)?);
            } else {
                println!("wrote version {} of secret {}", meta.version, meta.name);
            }
        }
        SecretCommand::Get {
            name,
            version,
            out,
            mode,
            json,
            target,
        } => {
            let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let secret: SecretJson = if let Some(remote) = target.remote.client().await? {
                remote.get(&format!("/v1/secrets/{name}{query}")).await?
            } else {
                let (store, master) = local(&target).await?;
                SecretJson::from(&svc::get(&store, &master, &name, version).await?)
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&secret)?);
                return Ok(ExitCode::SUCCESS);
            }
            let value = secret.decode()?;
            match out {
                Some(path) => {
                    write_all_atomic(&[OutFile {
                        path: path.clone(),
                        bytes: value.expose(),
                        mode,
                        owner: None,
                    }])
                    .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "wrote version {} of secret {} to {} (mode {mode:04o})",
                        secret.version,
                        secret.name,
                        path.display()
                    );
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(value.expose())?;
                    stdout.flush()?;
                }
            }
        }
        SecretCommand::List { json, target } => {
            let list: Vec<castellan_store::SecretSummary> =
                if let Some(remote) = target.remote.client().await? {
                    #[derive(serde::Deserialize)]
                    struct List {
                        secrets: Vec<castellan_store::SecretSummary>,
                    }
                    remote.get::<List>("/v1/secrets").await?.secrets
                } else {
                    svc::list(&local(&target).await?.0).await?
                };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"secrets": list}))?
                );
            } else if list.is_empty() {
                println!("no secrets");
            } else {
                println!("{:<48} {:>7} {:>5}  UPDATED", "NAME", "VERSION", "KEPT");
                for s in &list {
                    let updated = humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH
                            + std::time::Duration::from_secs(s.updated_at.max(0) as u64),
                    );
                    println!(
                        "{:<48} {:>7} {:>5}  {updated}",
                        s.name, s.version, s.versions
                    );
                }
            }
        }
        SecretCommand::Delete { name, target } => {
            if let Some(remote) = target.remote.client().await? {
                remote.delete(&format!("/v1/secrets/{name}")).await?;
            } else {
                let (store, _) = local(&target).await?;
                svc::delete(&store, &name).await?;
            }
            println!("deleted every version of secret {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
