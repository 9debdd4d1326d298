//! The events recorded outside `/v1`, each called from the service function of its action: the
//! configuration a server starts with, sign-in and sign-out, reuse of codes and refresh tokens, the
//! scheduled key rotation, and the CLI's changes made directly on the store.

use castellan_core::audit::Outcome;
use castellan_store::Store;
use serde_json::json;

use super::{AuditError, Pending, cli_chain, record_direct};
use crate::config::Config;
use crate::error::ServiceError;
use crate::state::AppState;

/// `config.accepted`: what this replica serves with (never a URL's password or a key).
pub async fn config_accepted(
    state: &AppState,
    cfg: &Config,
    dev: bool,
) -> Result<(), ServiceError> {
    let a = state.audit().settings();
    let detail = json!({
        "issuer": cfg.issuer(),
        "listen": cfg.listen.to_string(),
        "store": state.store().kind().as_str(),
        "tls": format!("{:?}", cfg.tls.mode).to_lowercase(),
        "dev": dev,
        "configured_profiles": cfg.pki.profiles.len(),
        "trusted_issuers": cfg.trusted_issuer.len(),
        "audit_mode": if a.fail_closed { "fail-closed" } else { "best-effort" },
        "audit_file": a.file.as_ref().map(|p| p.display().to_string()),
        "audit_retention_secs": a.retention.as_secs(),
        "fingerprint": state.fingerprint(),
    });
    let p = Pending::new(
        "castellan",
        "config.accepted",
        format!("replica {}", state.settings().replica_id),
        Outcome::Allowed,
    )
    .detail(detail);
    state
        .audit()
        .record_acked(p)
        .await
        .map_err(|e| ServiceError::Store(castellan_store::StoreError::Unavailable(e.to_string())))
}

/// A CLI action done directly on the store, on the chain `cli@HOST` (actor the same).
pub async fn cli(
    store: &Store,
    action: &str,
    object: impl Into<String>,
    result: Outcome,
) -> Result<(), AuditError> {
    let chain = cli_chain();
    record_direct(
        store,
        &chain,
        Pending::new(chain.clone(), action, object, result),
    )
    .await
    .map(|_| ())
}

/// A sign-in step (`signin.login`, `signin.second_factor`, `signin.logout`) of the user `user_id`
/// (`unknown` when the name matched no one: the typed name is never recorded, it may be a password
/// typed in the wrong field). Allowed steps wait for the event (fail-closed); refusals do not.
pub(crate) async fn signin(
    state: &AppState,
    action: &str,
    user_id: Option<&str>,
    address: Option<std::net::IpAddr>,
    result: Result<&str, &str>,
) -> Result<(), AuditError> {
    let actor = user_id.map_or_else(|| "anonymous".to_owned(), |u| format!("user:{u}"));
    let object = user_id.map_or_else(|| "user unknown".to_owned(), |u| format!("user {u}"));
    let source = address.map_or_else(|| "-".to_owned(), |a| a.to_string());
    match result {
        Ok(sid) => {
            let p = Pending::new(actor, action, object, Outcome::Allowed)
                .source(source)
                .detail(json!({"sid": sid}));
            state.audit().record_acked(p).await
        }
        Err(reason) => {
            state.audit().record(
                Pending::new(actor, action, object, Outcome::Denied)
                    .source(source)
                    .reason(reason),
            );
            Ok(())
        }
    }
}

/// A one-time credential presented again (`signin.code_reuse`, `signin.refresh_reuse`): what it
/// issued is revoked.
pub(crate) fn reuse(state: &AppState, action: &str, client_id: &str, grant_id: Option<&str>) {
    state.audit().record(
        Pending::new(
            format!("client:{client_id}"),
            action,
            grant_id.map_or_else(String::new, |g| format!("grant {g}")),
            Outcome::Denied,
        )
        .reason("presented again: what it issued is revoked"),
    );
}
