//! The master key and the data keys it wraps: checking the master key against the store, changing it,
//! and unwrapping the data keys that seal everything secret at rest.

use std::collections::HashMap;

use castellan_core::envelope::{DataKey, MasterKey};
use castellan_store::{DataKeyRow, MasterKeyCheck, Store, StoreError};

use crate::error::ServiceError;

/// Checks the master key against the store.
pub async fn check_master_key(
    store: &Store,
    master: &MasterKey,
) -> Result<MasterKeyCheck, ServiceError> {
    let given = master.check_value();
    match store.check_master_key(&given).await? {
        MasterKeyCheck::Mismatch => Err(ServiceError::MasterKeyMismatch { given }),
        other => Ok(other),
    }
}

/// Changes the master key: every data key is unwrapped with `old` and wrapped with `new`, and the
/// store's check value becomes `new`'s, in one transaction. Nothing else is sealed by the master key,
/// so nothing else changes. Returns how many data keys were re-wrapped. Processes still holding `old`
/// keep what they loaded but can no longer open anything new; they must be restarted with `new`.
pub async fn change_master_key(
    store: &Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, ServiceError> {
    match check_master_key(store, old).await? {
        MasterKeyCheck::Uninitialized => return Err(ServiceError::NotInitialized),
        MasterKeyCheck::Matches | MasterKeyCheck::Mismatch => {}
    }
    if old.check_value() == new.check_value() {
        return Err(ServiceError::Invalid(
            "the new master key is the current one".into(),
        ));
    }
    let rows = store
        .data_keys()
        .await?
        .into_iter()
        .map(|row| {
            let dek = unwrap_data_key(old, &row)?;
            Ok(DataKeyRow {
                wrapped: new.wrap(&dek)?,
                ..row
            })
        })
        .collect::<Result<Vec<_>, ServiceError>>()?;
    store
        .rewrap_data_keys(&old.check_value(), &new.check_value(), &rows)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(what) => ServiceError::Precondition(format!(
                "the store changed while the master key was being changed ({what}); nothing was changed, run it again"
            )),
            other => other.into(),
        })?;
    Ok(rows.len())
}

/// The newest data key, unwrapped: it seals what is written now.
pub async fn newest_data_key(store: &Store, master: &MasterKey) -> Result<DataKey, ServiceError> {
    let newest = store
        .data_keys()
        .await?
        .into_iter()
        .max_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        })
        .ok_or(ServiceError::NotInitialized)?;
    unwrap_data_key(master, &newest)
}

/// Unwraps one data key (the others stay wrapped).
pub async fn data_key(
    store: &Store,
    master: &MasterKey,
    id: &str,
) -> Result<DataKey, ServiceError> {
    let row = store
        .data_keys()
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ServiceError::NotFound(format!("data key {id}")))?;
    unwrap_data_key(master, &row)
}

/// Unwraps every data key.
pub async fn data_keys(
    store: &Store,
    master: &MasterKey,
) -> Result<HashMap<String, DataKey>, ServiceError> {
    store
        .data_keys()
        .await?
        .iter()
        .map(|row| Ok((row.id.clone(), unwrap_data_key(master, row)?)))
        .collect()
}

/// A data key row opened with the master key; one that does not open means another master key.
fn unwrap_data_key(master: &MasterKey, row: &DataKeyRow) -> Result<DataKey, ServiceError> {
    master
        .unwrap(&row.id, &row.wrapped)
        .map_err(|_| ServiceError::MasterKeyMismatch {
            given: master.check_value(),
        })
}
