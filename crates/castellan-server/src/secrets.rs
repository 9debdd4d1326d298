//! The secrets store's use cases, shared by `/v1/secrets` and `castellan secret`: values are sealed
//! with the newest data key, bound to their name and version, before they reach the store; every
//! write is a new version (optionally only if the newest is the one the writer read), and the newest
//! [`KEEP_VERSIONS`] are kept.

use castellan_core::envelope::MasterKey;
use castellan_core::secret_store::{self, KEEP_VERSIONS, SecretValue};
use castellan_store::{SecretRow, SecretSummary, Store, StoreError};
pub use castellan_wire::secrets::{PutSecret, SecretJson, SecretMeta};

use crate::data_keys;
use crate::error::ServiceError;

/// A secret read back.
#[derive(Debug, Clone)]
pub struct Secret {
    /// Name, version, time.
    pub meta: SecretMeta,
    /// The value.
    pub value: SecretValue,
}

impl From<&Secret> for SecretJson {
    fn from(s: &Secret) -> Self {
        SecretJson::new(&s.meta, s.value.expose())
    }
}

fn check_name(name: &str) -> Result<(), ServiceError> {
    secret_store::validate_name(name).map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// Writes a new version of `name`. With `cas`, only if the newest version is `cas` (`0`: none yet);
/// without, a concurrent writer's version is retried on top of.
pub async fn put(
    store: &Store,
    master: &MasterKey,
    name: &str,
    value: &SecretValue,
    cas: Option<i64>,
    now: i64,
) -> Result<SecretMeta, ServiceError> {
    check_name(name)?;
    secret_store::validate_value(value.expose())
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    if cas.is_some_and(|c| c < 0) {
        return Err(ServiceError::Invalid("`cas` must be 0 or more".into()));
    }
    let dek = data_keys::newest_data_key(store, master).await?;
    // Writers in this process take turns (writes are rare, and a version is chosen before its value is
    // sealed, since the version is part of what seals it); writers in other processes (replicas, the
    // CLI) are met by retrying on the version they took.
    static WRITERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = WRITERS.lock().await;
    for attempt in 0..20u64 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(attempt * 5)).await;
        }
        let latest = store.latest_secret_version(name).await?.unwrap_or(0);
        if let Some(expected) = cas
            && expected != latest
        {
            return Err(version_mismatch(name, expected, latest));
        }
        // Above every version the name ever had: a deleted secret written again goes on from there.
        let version = store.highest_secret_version(name).await?.max(latest) + 1;
        let row = SecretRow {
            name: name.to_owned(),
            version,
            dek_id: dek.id().to_owned(),
            sealed_value: dek.seal(&secret_store::seal_context(name, version), value.expose())?,
            created_at: now,
        };
        match store.add_secret_version(&row, KEEP_VERSIONS).await {
            Ok(()) => {
                return Ok(SecretMeta {
                    name: name.to_owned(),
                    version,
                    created_at: now,
                });
            }
            // Another writer took this version: with `cas` that is a lost race, without it go again.
            Err(StoreError::Conflict(_)) if cas.is_none() => continue,
            Err(StoreError::Conflict(_)) => {
                return Err(version_mismatch(name, latest, latest + 1));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::Precondition(format!(
        "secret {name} is being written by others at the same time; try again"
    )))
}

fn version_mismatch(name: &str, expected: i64, latest: i64) -> ServiceError {
    ServiceError::Precondition(format!(
        "secret {name} is at version {latest}, not {expected} (cas): it was changed since it was read"
    ))
}

/// Reads a version of `name` (the newest when `version` is `None`) and opens it.
pub async fn get(
    store: &Store,
    master: &MasterKey,
    name: &str,
    version: Option<i64>,
) -> Result<Secret, ServiceError> {
    check_name(name)?;
    let row = store.secret(name, version).await?.ok_or_else(|| {
        ServiceError::NotFound(match version {
            Some(v) => format!("version {v} of secret {name}"),
            None => format!("secret {name}"),
        })
    })?;
    let dek = data_keys::data_key(store, master, &row.dek_id).await?;
    let plain = dek.open(
        &secret_store::seal_context(&row.name, row.version),
        &row.sealed_value,
    )?;
    Ok(Secret {
        meta: SecretMeta {
            name: row.name,
            version: row.version,
            created_at: row.created_at,
        },
        value: SecretValue::new(plain),
    })
}

/// Every secret's name, newest version and time; never a value.
pub async fn list(store: &Store) -> Result<Vec<SecretSummary>, ServiceError> {
    Ok(store.secrets().await?)
}

/// Destroys every version of `name`.
pub async fn delete(store: &Store, name: &str) -> Result<(), ServiceError> {
    check_name(name)?;
    if store.delete_secret(name).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound(format!("secret {name}")))
    }
}
