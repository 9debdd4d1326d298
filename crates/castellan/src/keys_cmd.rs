//! `castellan keys …`: the token key ring — list, plan, rotate, revoke, import — on the store directly
//! or through --server. Running replicas see a change within their refresh interval (2 s by default).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use castellan_server::keys::{self, KeyInfo};
use clap::Subcommand;

use crate::Target;
use crate::common::{self, now};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the published keys: kid, alg, state (next, current, retired), activate_at, retire_at.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show the timeline ahead: when the next key is published, starts signing, and old keys leave.
    Plan {
        #[command(flatten)]
        target: Target,
    },
    /// Schedule a next key that starts signing `keys.prepublish` from now.
    ///
    /// With --now (the emergency path, e.g. after a key leak) the new key is published first and signs
    /// as soon as every live replica publishes it (their heartbeats in the store say so; on PostgreSQL
    /// that takes milliseconds), at most --wait. A replica still without it then is named and the key
    /// stays `next` (run the command again to wait again), unless --force. Verifiers that cached the
    /// JWKS before it was published reject its tokens until they refetch (most refetch on an unknown
    /// kid; a mesh refreshing on a timer fails for up to its refresh interval).
    Rotate {
        /// Sign with the new key as soon as every live replica publishes it.
        #[arg(long)]
        now: bool,
        /// With --now: how long to wait for every live replica (e.g. 10s, 1m; at most 50s via --server).
        #[arg(long, default_value = "10s", value_parser = castellan_core::duration::parse_duration)]
        wait: std::time::Duration,
        /// With --now: sign with the new key after --wait even if a live replica does not publish it
        /// yet (verifiers fetching the JWKS from that replica fail until it refreshes).
        #[arg(long, requires = "now")]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a key from the JWKS at once (tokens it signed stop verifying).
    Revoke {
        /// The kid.
        kid: String,
        #[command(flatten)]
        target: Target,
    },
    /// Change the master key: re-wrap every data key under a new master key file, in one transaction.
    ///
    /// On the store only (the master key never travels). Make the new key with `openssl rand -base64
    /// 32`; the current one is --master-key-file (or its default). Afterwards restart every replica with
    /// the new file: a process still holding the old key keeps what it loaded but cannot open anything
    /// new (new signing keys, secrets) and refuses to start again. Keep the old file until then.
    ChangeMasterKey {
        /// The new master key file (32 random bytes, base64).
        #[arg(long)]
        new_master_key_file: PathBuf,
        #[command(flatten)]
        store: crate::common::StoreArgs,
    },
    /// Import an RSA private key (PKCS#8 or PKCS#1 PEM) from an older setup.
    ///
    /// `--state retired` (default) publishes it so tokens it already signed keep verifying during the
    /// migration. `--state current` also makes Castellan sign with it, as `keys rotate --now` switches:
    /// the key is published first and signs once every live replica publishes it (at most --wait);
    /// a replica still without it leaves the key `next` (signing `keys.prepublish` from now), and
    /// `keys rotate --now` resumes the wait.
    Import {
        /// The key, PEM.
        #[arg(long)]
        pem: PathBuf,
        /// current or retired.
        #[arg(long, default_value = "retired", value_parser = ["current", "retired"])]
        state: String,
        /// Keep this key id: the `kid` the old service put in its tokens, so the tokens it already
        /// issued keep verifying (default: the RFC 7638 thumbprint).
        #[arg(long, value_name = "LEGACY_KID")]
        kid: Option<String>,
        /// With --state current: how long to wait for every live replica (e.g. 10s, 1m; at most 50s via
        /// --server).
        #[arg(long, default_value = "10s", value_parser = castellan_core::duration::parse_duration)]
        wait: std::time::Duration,
        /// With --state current: sign with it after --wait even if a live replica does not publish it
        /// yet (verifiers fetching the JWKS from that replica fail until it refreshes).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
}

fn when(t: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
    )
    .to_string()
}

/// When a key signs from: `-` for one that never signs (an imported key published to verify the
/// tokens it signed elsewhere has no activation time, stored as 0).
fn activates(t: i64) -> String {
    if t <= 0 { "-".into() } else { when(t) }
}

fn print_keys(keys: &[KeyInfo]) {
    println!(
        "{:<44} {:<6} {:<8} {:<21} RETIRE_AT",
        "KID", "ALG", "STATE", "ACTIVATE_AT"
    );
    for k in keys {
        println!(
            "{:<44} {:<6} {:<8} {:<21} {}",
            k.kid,
            k.alg,
            k.state,
            activates(k.activate_at),
            k.retire_at.map(when).unwrap_or_else(|| "-".into())
        );
    }
}

/// `keys change-master-key`, on the store only.
async fn change_master_key(
    new_master_key_file: &std::path::Path,
    store: &crate::common::StoreArgs,
) -> Result<()> {
    let cfg = store.config()?;
    let st = common::open_store(&cfg).await?;
    let old = common::load_master_key(&cfg, false)?;
    let new = common::read_master_key_file(new_master_key_file)?;
    let n = castellan_server::data_keys::change_master_key(&st, &old, &new).await?;
    let object = format!("master key {} -> {}", old.check_value(), new.check_value());
    common::audited(&st, "master_key.change", object).await?;
    println!(
        "re-wrapped {n} data key(s) under {} (check value {}); restart every replica with it, then retire {}",
        new_master_key_file.display(),
        new.check_value(),
        cfg.master_key_path().display()
    );
    Ok(())
}

pub async fn run(cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::ChangeMasterKey {
            new_master_key_file,
            store,
        } => change_master_key(&new_master_key_file, &store).await?,
        KeysCommand::List { json, target } => {
            let keys: Vec<KeyInfo> = if let Some(remote) = target.remote.client().await? {
                serde_json::from_value(
                    remote.get::<serde_json::Value>("/v1/keys").await?["keys"].clone(),
                )?
            } else {
                let cfg = target.store.config()?;
                keys::list(&common::open_store(&cfg).await?, now()).await?
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"keys": keys}))?
                );
            } else {
                print_keys(&keys);
            }
        }
        KeysCommand::Plan { target } => {
            let events: Vec<(i64, String)> = if let Some(remote) = target.remote.client().await? {
                serde_json::from_value(
                    remote.get::<serde_json::Value>("/v1/keys/plan").await?["events"].clone(),
                )?
            } else {
                let cfg = target.store.config()?;
                keys::plan(
                    &common::open_store(&cfg).await?,
                    &cfg.rotation_policy()?,
                    now(),
                )
                .await?
            };
            for (t, what) in events {
                println!("{}  {what}", when(t));
            }
        }
        KeysCommand::Rotate {
            now: at_once,
            wait,
            force,
            target,
        } => {
            let key: KeyInfo = if let Some(remote) = target.remote.client().await? {
                let body = if at_once {
                    serde_json::json!({"now": true, "force": force, "wait_secs": wait.as_secs()})
                } else {
                    serde_json::json!({"now": false})
                };
                remote.post("/v1/keys/rotate", &body).await?
            } else {
                let cfg = target.store.config()?;
                let (store, master) = common::unlocked_store(&cfg).await?;
                let policy = cfg.rotation_policy()?;
                let key = if at_once {
                    let opts = keys::EmergencyOptions { wait, force };
                    keys::rotate_now(&store, &master, &policy, &castellan_core::SystemClock, opts)
                        .await?
                } else {
                    keys::schedule_rotation(&store, &master, &policy, now()).await?
                };
                let action = if at_once {
                    "keys.rotate_now"
                } else {
                    "keys.rotate"
                };
                common::audited(&store, action, format!("kid {}", key.kid)).await?;
                key
            };
            println!(
                "{} ({}) signs from {}",
                key.kid,
                key.alg,
                when(key.activate_at)
            );
        }
        KeysCommand::Revoke { kid, target } => {
            if let Some(remote) = target.remote.client().await? {
                remote
                    .post::<serde_json::Value>(
                        &format!("/v1/keys/{kid}/revoke"),
                        &serde_json::json!({}),
                    )
                    .await?;
            } else {
                let cfg = target.store.config()?;
                let store = common::open_store(&cfg).await?;
                keys::revoke(&store, &kid, now()).await?;
                common::audited(&store, "keys.revoke", format!("kid {kid}")).await?;
            }
            println!("revoked {kid}: it leaves the JWKS within the servers' refresh interval");
        }
        KeysCommand::Import {
            pem,
            state,
            kid,
            wait,
            force,
            target,
        } => {
            let current = state == "current";
            if force && !current {
                anyhow::bail!("--force goes with --state current");
            }
            let text = std::fs::read_to_string(&pem)
                .with_context(|| format!("reading {}", pem.display()))?;
            let key: KeyInfo = if let Some(remote) = target.remote.client().await? {
                let mut body = serde_json::json!({"pem": text, "state": state, "kid": kid});
                if current {
                    body["wait_secs"] = wait.as_secs().into();
                    body["force"] = force.into();
                }
                remote.post("/v1/keys/import", &body).await?
            } else {
                let cfg = target.store.config()?;
                let (store, master) = common::unlocked_store(&cfg).await?;
                let as_ = if current {
                    keys::ImportAs::Current(keys::EmergencyOptions { wait, force })
                } else {
                    keys::ImportAs::Retired
                };
                let key = keys::import(
                    &store,
                    &master,
                    &text,
                    kid.as_deref(),
                    as_,
                    &cfg.rotation_policy()?,
                    &castellan_core::SystemClock,
                )
                .await?;
                common::audited(&store, "keys.import", format!("kid {}", key.kid)).await?;
                key
            };
            println!("imported {} as {}", key.kid, key.state);
        }
    }
    Ok(ExitCode::SUCCESS)
}
