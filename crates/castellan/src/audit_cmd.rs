//! `castellan audit …`: list the trail (store or --server) and verify its hash chains and signed
//! checkpoints (store, and a JSON-lines stream file).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use castellan_core::audit::AuditEvent;
use castellan_server::audit::verify::{Report, verify_file, verify_store};
use clap::Subcommand;

use crate::Target;
use crate::common::{self, StoreArgs};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List events, oldest first: who did what to which object, and what came of it.
    List {
        /// Events newer than this (e.g. 1h, 30m, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only this actor (`client:cl_…`, `user:… via client:…`, `cli@host`, `anonymous`).
        #[arg(long)]
        actor: Option<String>,
        /// Only actions starting with this (`GET /v1/secrets`, `signin.`, `keys.rotate`).
        #[arg(long)]
        action: Option<String>,
        /// Only this replica's chain.
        #[arg(long)]
        replica: Option<String>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Print JSON (`{"events": [...]}`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Walk every chain and name the first event that was removed, reordered or altered; check the
    /// signed checkpoints against the key ring. Exit status 0: sound; 1: broken.
    Verify {
        /// Also verify a JSON-lines stream file (against the store's chains: a truncated file is found).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn when(ms: i64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}

fn print_events(events: &[AuditEvent]) {
    for e in events {
        let reason = if e.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", e.reason)
        };
        println!(
            "{} {} {} {} {} {} {}{reason}",
            when(e.at_ms),
            e.name(),
            e.actor,
            e.source,
            e.action,
            if e.object.is_empty() { "-" } else { &e.object },
            e.result
        );
    }
}

fn print_report(r: &Report, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        for c in &r.chains {
            println!(
                "ok       {}: {} events (#{}..#{})",
                c.replica, c.events, c.first_seq, c.last_seq
            );
        }
        for w in &r.warnings {
            println!("warning  {w}");
        }
        for p in &r.problems {
            println!("BROKEN   {}: {}", p.event, p.message);
        }
        println!(
            "{} checkpoint signature(s) verified",
            r.checkpoints_verified
        );
    }
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn run(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::List {
            since,
            actor,
            action,
            replica,
            limit,
            json,
            target,
        } => {
            let events: Vec<AuditEvent> = if let Some(remote) = target.remote.client().await? {
                let mut q = form_urlencoded::Serializer::new(String::new());
                for (k, v) in [
                    ("since", &since),
                    ("actor", &actor),
                    ("action", &action),
                    ("replica", &replica),
                ] {
                    if let Some(v) = v {
                        q.append_pair(k, v);
                    }
                }
                q.append_pair("limit", &limit.to_string());
                let v: serde_json::Value = remote.get(&format!("/v1/audit?{}", q.finish())).await?;
                serde_json::from_value(v["events"].clone())?
            } else {
                let cfg = target.store.config()?;
                let f = castellan_server::http::audit::filter(
                    since.as_deref(),
                    actor,
                    action,
                    replica,
                    Some(limit),
                )
                .map_err(anyhow::Error::msg)?;
                common::open_store(&cfg).await?.audit_events(&f).await?
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"events": events}))?
                );
            } else {
                print_events(&events);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { file, json, store } => {
            let cfg = store.config()?;
            let st = common::open_store(&cfg).await?;
            // The checkpoints are checked against the key ring's published keys (the master key opens
            // the ring); without the master key the chains are still walked.
            let jwks = match common::load_master_key(&cfg, false) {
                Ok(master) => {
                    let ring =
                        castellan_server::keys::load_key_ring(&st, &master, common::now(), None)
                            .await?;
                    Some(ring.jwks().to_vec())
                }
                Err(e) => {
                    eprintln!("warning: checkpoint signatures not checked ({e:#})");
                    None
                }
            };
            let mut report = verify_store(&st, jwks.as_deref()).await?;
            if let Some(path) = file {
                let fr = verify_file(&path, Some(&st), jwks.as_deref())
                    .await
                    .map_err(anyhow::Error::msg)?;
                report.problems.extend(fr.problems);
                report.warnings.extend(fr.warnings);
                report.checkpoints_verified += fr.checkpoints_verified;
                for c in fr.chains {
                    report.chains.push(castellan_core::audit::ChainSummary {
                        replica: format!("{} (file {})", c.replica, path.display()),
                        ..c
                    });
                }
            }
            if report.chains.is_empty() && report.problems.is_empty() {
                bail!("the audit trail is empty");
            }
            print_report(&report, json)
        }
    }
}
