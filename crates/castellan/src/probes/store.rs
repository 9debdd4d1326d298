//! Reads of a Castellan store, for the doctor: only looks (it never migrates a store, runs DDL against
//! a database other versions may be serving, or changes its journal mode). Each read hands back what
//! it found, or why it could not, for the checks of `castellan_core::doctor::service`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use castellan_core::doctor::service::{
    CertNames, EXPIRING_WITHIN, IssuedCert, KeyRingFacts, SecretFailure,
};
use castellan_core::envelope::MasterKey;
use castellan_server::config::Config;
use castellan_store::{CaRow, SchemaStatus, Store};

use super::error_chain;

/// Whether `cfg` names a SQLite store whose database file does not exist (a PostgreSQL store always
/// might).
pub fn sqlite_file_missing(cfg: &Config) -> bool {
    cfg.database_url.is_none() && !cfg.data_dir.join("castellan.db").exists()
}

/// Opens the store without migrating it (3 seconds to connect).
pub async fn open(cfg: &Config) -> Result<Store, String> {
    Store::connect_unmigrated(&cfg.store_url(), Duration::from_secs(3))
        .await
        .map_err(|e| error_chain(&e))
}

/// The store's schema against this binary's migrations.
pub async fn schema(store: &Store) -> Result<SchemaStatus, String> {
    store.schema_status().await.map_err(|e| error_chain(&e))
}

/// Whether the store answers.
pub async fn ping(store: &Store) -> Result<(), String> {
    store.ping().await.map_err(|e| error_chain(&e))
}

/// Whether the store was initialized (holds a key ring); false when that cannot be read.
pub async fn is_initialized(store: &Store) -> bool {
    castellan_server::init::is_initialized(store)
        .await
        .unwrap_or(false)
}

/// Loads the key ring with `master` (or says why there is no master key).
pub async fn key_ring(store: &Store, master: Result<&MasterKey, String>, now: i64) -> KeyRingFacts {
    let master = match master {
        Ok(m) => m,
        Err(e) => return KeyRingFacts::NoMasterKey(e),
    };
    match castellan_server::keys::load_key_ring(store, master, now, None).await {
        Ok(ring) => KeyRingFacts::Loaded {
            keys: ring.keys().len(),
            current: ring.signing_key(now).ok().map(|k| k.key.kid().to_owned()),
        },
        Err(e) => KeyRingFacts::Failed(e.to_string()),
    }
}

/// The active CA, if any.
pub async fn active_ca(store: &Store) -> Result<Option<CaRow>, String> {
    store.active_ca().await.map_err(|e| e.to_string())
}

/// Opens the newest version of every stored secret: how many there are, and those that do not open
/// (altered, or sealed under a data key this master key cannot unwrap). The values are dropped at once.
pub async fn secrets(
    store: &Store,
    master: &MasterKey,
) -> Result<(usize, Vec<SecretFailure>), String> {
    use castellan_server::secrets;
    let list = secrets::list(store).await.map_err(|e| e.to_string())?;
    let mut failures = Vec::new();
    for s in &list {
        if let Err(e) = secrets::get(store, master, &s.name, Some(s.version)).await {
            failures.push(SecretFailure {
                name: s.name.clone(),
                version: s.version,
                error: e.to_string(),
            });
        }
    }
    Ok((list.len(), failures))
}

/// The issued certificates that end within [`EXPIRING_WITHIN`] of `now`, and for all names issued, the
/// latest notAfter: what the renewal rule needs.
pub async fn issued_near_end(
    store: &Store,
    now: i64,
) -> Result<(Vec<IssuedCert>, HashMap<CertNames, i64>)> {
    let newest = store
        .newest_expiry_by_names()
        .await?
        .into_iter()
        .map(|n| ((n.profile, n.common_name, n.sans), n.newest_not_after))
        .collect();
    let certs = store
        .certificates(Some(now + EXPIRING_WITHIN))
        .await?
        .into_iter()
        .map(|c| IssuedCert {
            serial: c.serial,
            profile: c.profile,
            common_name: c.common_name,
            sans: c.sans,
            not_before: c.not_before,
            not_after: c.not_after,
            revoked: c.revoked_at.is_some(),
        })
        .collect();
    Ok((certs, newest))
}
