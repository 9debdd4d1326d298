//! The secrets store's use cases, shared by `/v1/secrets` and `castellan secret`: values are sealed
//! with the newest data key, bound to their name and version, before they reach the store; every
//! write is a new version (optionally only if the newest is the one the writer read), and the newest
//! [`KEEP_VERSIONS`] are kept.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use castellan_core::envelope::MasterKey;
use castellan_core::secret_store::{self, KEEP_VERSIONS, SecretValue};
use castellan_store::{SecretRow, SecretSummary, Store, StoreError};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::data_keys;
use crate::error::ServiceError;

/// A version as written or read, without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    /// The secret's name.
    pub name: String,
    /// The version.
    pub version: i64,
    /// When it was written (seconds since the epoch).
    pub created_at: i64,
}

/// A secret read back.
#[derive(Debug, Clone)]
pub struct Secret {
    /// Name, version, time.
    pub meta: SecretMeta,
    /// The value.
    pub value: SecretValue,
}

/// `GET /v1/secrets/{name}`'s answer, also what the agent and `castellan secret get --server` read.
/// `value_base64` always; `value` too when the bytes are UTF-8. `Debug` hides both. Fields added to
/// the answer later are ignored by readers of this version.
#[derive(Clone, Serialize, Deserialize)]
pub struct SecretJson {
    /// The secret's name.
    pub name: String,
    /// The version.
    pub version: i64,
    /// When it was written.
    pub created_at: i64,
    /// The value, base64 (standard alphabet, padded).
    pub value_base64: String,
    /// The value as text, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl std::fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretJson")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl From<&Secret> for SecretJson {
    fn from(s: &Secret) -> Self {
        let bytes = s.value.expose();
        Self {
            name: s.meta.name.clone(),
            version: s.meta.version,
            created_at: s.meta.created_at,
            value_base64: B64.encode(bytes),
            value: std::str::from_utf8(bytes).ok().map(str::to_owned),
        }
    }
}

impl SecretJson {
    /// The value's bytes (from `value_base64`, which must agree with `value` when both are given).
    pub fn decode(&self) -> Result<SecretValue, ServiceError> {
        let bytes = decode_base64(&self.value_base64)?;
        if let Some(text) = &self.value
            && text.as_bytes() != bytes.as_slice()
        {
            return Err(ServiceError::Invalid(
                "`value` and `value_base64` differ".into(),
            ));
        }
        Ok(SecretValue::new(bytes))
    }
}

/// `PUT /v1/secrets/{name}`'s body: the value as text or as base64 (exactly one), and optionally the
/// version the writer expects to replace (`0`: the secret must not exist yet).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value as UTF-8 text.
    #[serde(default)]
    pub value: Option<Zeroizing<String>>,
    /// The value, base64.
    #[serde(default)]
    pub value_base64: Option<Zeroizing<String>>,
    /// Write only if the newest version is this one (check-and-set).
    #[serde(default)]
    pub cas: Option<i64>,
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret")
            .field("cas", &self.cas)
            .finish_non_exhaustive()
    }
}

impl PutSecret {
    /// The value's bytes.
    pub fn bytes(&self) -> Result<SecretValue, ServiceError> {
        let bytes = match (&self.value, &self.value_base64) {
            (Some(text), None) => Zeroizing::new(text.as_bytes().to_vec()),
            (None, Some(b64)) => decode_base64(b64.trim())?,
            _ => {
                return Err(ServiceError::Invalid(
                    "give exactly one of `value` (text) and `value_base64`".into(),
                ));
            }
        };
        Ok(SecretValue::new(bytes))
    }
}

fn decode_base64(text: &str) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
    B64.decode(text)
        .map(Zeroizing::new)
        .map_err(|_| ServiceError::Invalid("`value_base64` is not valid base64".into()))
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
