//! `castellan doctor` without a subcommand: a Castellan server (`--server`) or store (`--data-dir`,
//! `--database-url`), probed step by step, each step judged before the next (a store that cannot be
//! opened is not asked for its key ring).

use anyhow::Result;
use castellan::probes::{http, store as probe};
use castellan_core::doctor::service::{
    self as judge, SchemaFacts, StoreCa, StoreStep, store_unreachable,
};
use castellan_core::doctor::{Finding, codes};
use castellan_server::config::Config;
use castellan_store::Store;

use crate::common::{self, StoreArgs, now};

/// Checks the server at `server`, or else the store `store` names.
pub(super) async fn run(server: Option<&str>, store: &StoreArgs) -> Result<Vec<Finding>> {
    match server {
        Some(url) => Ok(check_server(url.trim_end_matches('/')).await),
        None => check_store(store).await,
    }
}

/// `/healthz`, `/readyz` and the published JWKS of the server at `base`.
async fn check_server(base: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let client = match http::client() {
        Ok(c) => c,
        Err(e) => {
            out.push(judge::http_client_failed(
                codes::SERVER_UNREACHABLE,
                base,
                &format!("{e:#}"),
            ));
            return out;
        }
    };
    let health = http::get(&client, &format!("{base}/healthz")).await;
    if !judge::check_healthz(base, &health, &mut out) {
        return out;
    }
    let ready = http::get(&client, &format!("{base}/readyz")).await;
    out.extend(judge::check_readyz(base, &ready));
    let doc = http::fetch_jwks(&client, &format!("{base}/.well-known/jwks.json")).await;
    out.extend(judge::check_published_jwks(&doc, now()));
    out
}

/// Opens the store (without migrating it), judges its schema, and runs the other checks when the
/// schema allows.
async fn check_store(args: &StoreArgs) -> Result<Vec<Finding>> {
    let cfg = args.config()?;
    let now = now();
    let mut out = Vec::new();
    let subject = match &cfg.database_url {
        Some(_) => "the PostgreSQL store".to_owned(),
        None => cfg.data_dir.join("castellan.db").display().to_string(),
    };
    if probe::sqlite_file_missing(&cfg) {
        out.push(judge::no_store(&subject));
        return Ok(out);
    }
    let store = match probe::open(&cfg).await {
        Ok(s) => s,
        Err(e) => {
            out.push(store_unreachable(&subject, StoreStep::Open, &e));
            return Ok(out);
        }
    };
    let result = match schema_checks(&store, &subject, &mut out).await {
        true => store_checks(&cfg, &store, &subject, now, &mut out).await,
        false => Ok(()),
    };
    store.close().await;
    result?;
    Ok(out)
}

/// Judges the store's schema against this binary's migrations; false when the other store checks
/// cannot run on it.
async fn schema_checks(store: &Store, subject: &str, out: &mut Vec<Finding>) -> bool {
    let schema = match probe::schema(store).await {
        Ok(s) => s,
        Err(e) => {
            out.push(store_unreachable(subject, StoreStep::Schema, &e));
            return false;
        }
    };
    let facts = SchemaFacts {
        applied: &schema.applied,
        missing: &schema.missing,
        unknown: &schema.unknown,
    };
    judge::check_schema(subject, &facts, env!("CARGO_PKG_VERSION"), out)
}

/// The store answers and is initialized; then its key ring, CA, secrets and issued certificates.
async fn store_checks(
    cfg: &Config,
    store: &Store,
    subject: &str,
    now: i64,
    out: &mut Vec<Finding>,
) -> Result<()> {
    if let Err(e) = probe::ping(store).await {
        out.push(store_unreachable(subject, StoreStep::Ping, &e));
        return Ok(());
    }
    if !probe::is_initialized(store).await {
        out.push(judge::not_initialized(subject));
        return Ok(());
    }
    let master = common::load_master_key(cfg, false);
    let ring = probe::key_ring(store, master.as_ref().map_err(|e| format!("{e:#}")), now).await;
    out.push(judge::check_key_ring(subject, &ring));
    match probe::active_ca(store).await {
        Ok(row) => {
            let ca = row.as_ref().map(|r| StoreCa {
                ca_cert_pem: &r.ca_cert_pem,
                intermediates_pem: &r.intermediates_pem,
                root_pem: &r.root_pem,
            });
            out.extend(judge::check_store_ca(subject, ca.as_ref(), now));
        }
        Err(e) => out.push(store_unreachable(subject, StoreStep::ReadCa, &e)),
    }
    if let Ok(master) = &master {
        match probe::secrets(store, master).await {
            Ok((count, failures)) => out.extend(judge::check_secrets(subject, count, &failures)),
            Err(e) => out.push(store_unreachable(subject, StoreStep::ListSecrets, &e)),
        }
    }
    let (certs, newest) = probe::issued_near_end(store, now).await?;
    out.extend(judge::check_unrenewed(&certs, &newest, now));
    Ok(())
}
