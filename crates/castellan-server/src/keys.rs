//! The token key ring: making and loading signing keys, scheduled rotation (run by the one replica
//! holding the jobs lease), manual and emergency rotation, revocation, import, listing and the plan
//! ahead.

use std::collections::HashMap;
use std::sync::Arc;

use castellan_core::KeyType;
use castellan_core::envelope::{DataKey, MasterKey};
use castellan_core::token::rotation::{self, Policy, Scheduled, Step};
use castellan_core::token::{Alg, SigningKey};
use castellan_core::token::{KeyRing, RingKey};
use castellan_store::{MasterKeyCheck, SigningKeyRow, Store};

use crate::data_keys::{self, check_master_key};
pub use crate::emergency::{EmergencyOptions, rotate_now};
use crate::error::ServiceError;

/// Generates a signing key and seals it under `dek`.
pub fn new_signing_key_row(
    dek: &DataKey,
    alg: Alg,
    key_type: Option<KeyType>,
    activate_at: i64,
    now: i64,
) -> Result<SigningKeyRow, ServiceError> {
    let (key, der) = SigningKey::generate(alg, key_type)?;
    let sealed_key = dek.seal(&signing_key_context(key.kid()), &der)?;
    Ok(SigningKeyRow {
        kid: key.kid().to_owned(),
        alg: alg.as_str().to_owned(),
        dek_id: dek.id().to_owned(),
        sealed_key,
        activate_at,
        remove_at: None,
        revoked_at: None,
        created_at: now,
    })
}

fn signing_key_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

/// Loads the published key ring, reusing already-parsed keys from `previous` by kid.
pub async fn load_key_ring(
    store: &Store,
    master: &MasterKey,
    now: i64,
    previous: Option<&KeyRing>,
) -> Result<KeyRing, ServiceError> {
    if check_master_key(store, master).await? == MasterKeyCheck::Uninitialized {
        return Err(ServiceError::NotInitialized);
    }
    let rows = store.published_signing_keys(now).await?;
    let mut deks: Option<HashMap<String, DataKey>> = None;
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let key = match previous.and_then(|p| p.get(&row.kid)) {
            Some(k) => k.key.clone(),
            None => {
                if deks.is_none() {
                    deks = Some(data_keys::data_keys(store, master).await?);
                }
                let dek = deks
                    .as_ref()
                    .and_then(|d| d.get(&row.dek_id))
                    .ok_or_else(|| {
                        ServiceError::NotFound(format!(
                            "data key {} of signing key {}",
                            row.dek_id, row.kid
                        ))
                    })?;
                let der = dek.open(&signing_key_context(&row.kid), &row.sealed_key)?;
                let alg: Alg = row.alg.parse()?;
                let mut key = SigningKey::from_pkcs8(alg, &der)?;
                if key.kid() != row.kid {
                    // An imported legacy key keeps the kid of its old service (`keys import --kid`).
                    // The sealed bytes are bound to the row's kid (the AEAD context), so this names
                    // the key its importer named, not another one.
                    key = key.with_kid(&row.kid).map_err(|_| {
                        ServiceError::Invalid(format!(
                            "stored key {} does not match its kid",
                            row.kid.escape_debug()
                        ))
                    })?;
                }
                Arc::new(key)
            }
        };
        keys.push(RingKey {
            key,
            activate_at: row.activate_at,
            remove_at: row.remove_at,
        });
    }
    if keys.is_empty() {
        return Err(ServiceError::NotInitialized);
    }
    Ok(KeyRing::new(keys)?)
}

/// A key as listed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// Algorithm.
    pub alg: String,
    /// `next`, `current` or `retired`.
    pub state: String,
    /// When it signs from.
    pub activate_at: i64,
    /// When it leaves the JWKS, if scheduled.
    pub retire_at: Option<i64>,
}

pub(crate) fn scheduled(rows: &[SigningKeyRow]) -> Vec<Scheduled> {
    rows.iter()
        .map(|r| Scheduled {
            kid: r.kid.clone(),
            activate_at: r.activate_at,
            remove_at: r.remove_at,
        })
        .collect()
}

/// The published keys with their states at `now`.
pub async fn list(store: &Store, now: i64) -> Result<Vec<KeyInfo>, ServiceError> {
    let rows = store.published_signing_keys(now).await?;
    let sched = scheduled(&rows);
    let current = rotation::current(&sched, now).map(|k| k.kid.clone());
    Ok(rows
        .into_iter()
        .map(|r| {
            let state = if r.activate_at > now {
                "next"
            } else if Some(&r.kid) == current.as_ref() {
                "current"
            } else {
                "retired"
            };
            KeyInfo {
                kid: r.kid,
                alg: r.alg,
                state: state.into(),
                activate_at: r.activate_at,
                retire_at: r.remove_at,
            }
        })
        .collect())
}

/// The timeline ahead.
pub async fn plan(
    store: &Store,
    policy: &Policy,
    now: i64,
) -> Result<Vec<(i64, String)>, ServiceError> {
    let rows = store.published_signing_keys(now).await?;
    Ok(rotation::plan(&scheduled(&rows), policy, now))
}

pub(crate) async fn current_row(
    store: &Store,
    now: i64,
) -> Result<(Vec<SigningKeyRow>, SigningKeyRow), ServiceError> {
    let rows = store.published_signing_keys(now).await?;
    let sched = scheduled(&rows);
    let kid = rotation::current(&sched, now)
        .map(|k| k.kid.clone())
        .ok_or(ServiceError::NotInitialized)?;
    let cur = rows
        .iter()
        .find(|r| r.kid == kid)
        .cloned()
        .ok_or(ServiceError::NotInitialized)?;
    Ok((rows, cur))
}

/// One run of scheduled rotation: inserts the next key when it is due. Idempotent and safe to race:
/// the insert is guarded by a marker per current key, so exactly one next key is ever created for it.
/// Returns the new kid when this call inserted one.
pub async fn rotation_job(
    store: &Store,
    master: &MasterKey,
    policy: &Policy,
    now: i64,
) -> Result<Option<String>, ServiceError> {
    let (rows, cur) = current_row(store, now).await?;
    let Step::InsertNext {
        activate_at,
        removals,
    } = rotation::step(&scheduled(&rows), policy, now)
    else {
        return Ok(None);
    };
    insert_next(
        store,
        master,
        &cur,
        activate_at,
        removals,
        &format!("rotation:{}", cur.kid),
        now,
    )
    .await
}

pub(crate) async fn insert_next(
    store: &Store,
    master: &MasterKey,
    cur: &SigningKeyRow,
    activate_at: i64,
    removals: Vec<(String, i64)>,
    marker: &str,
    now: i64,
) -> Result<Option<String>, ServiceError> {
    let alg: Alg = cur.alg.parse()?;
    let dek = data_keys::newest_data_key(store, master).await?;
    // Keep the current key's size for RSA (the key type is implied by the modulus).
    let key_type = match alg {
        Alg::RS256 => {
            let der = data_keys::data_key(store, master, &cur.dek_id)
                .await?
                .open(&format!("signing-key:{}", cur.kid), &cur.sealed_key)?;
            let bits = SigningKey::from_pkcs8(alg, &der)?
                .jwk()
                .n
                .as_ref()
                .map_or(2048, |n| n.len() * 6);
            Some(if bits > 3500 {
                KeyType::Rsa4096
            } else if bits > 2500 {
                KeyType::Rsa3072
            } else {
                KeyType::Rsa2048
            })
        }
        _ => None,
    };
    let row = new_signing_key_row(&dek, alg, key_type, activate_at, now)?;
    let kid = row.kid.clone();
    if store.insert_key_once(marker, &row, &removals).await? {
        tracing::info!(kid = %kid, activate_at, "published a next signing key");
        Ok(Some(kid))
    } else {
        Ok(None)
    }
}

/// `keys rotate`: schedules a next key `prepublish` from now, unless one is already waiting.
pub async fn schedule_rotation(
    store: &Store,
    master: &MasterKey,
    policy: &Policy,
    now: i64,
) -> Result<KeyInfo, ServiceError> {
    let rows = store.published_signing_keys(now).await?;
    if let Some(next) = rows.iter().find(|r| r.activate_at > now) {
        return Err(ServiceError::Conflict(format!(
            "a next key ({}, signing from {})",
            next.kid, next.activate_at
        )));
    }
    manual_rotation(
        store,
        master,
        policy,
        now,
        now + policy.prepublish,
        "rotation",
    )
    .await
}

/// Inserts a key activating at `activate_at` for the current key, guarded by `<marker>:<current kid>`.
async fn manual_rotation(
    store: &Store,
    master: &MasterKey,
    policy: &Policy,
    now: i64,
    activate_at: i64,
    marker: &str,
) -> Result<KeyInfo, ServiceError> {
    let (rows, cur) = current_row(store, now).await?;
    let removals = rotation::removals_for(&scheduled(&rows), activate_at, policy);
    let guard = format!("{marker}:{}", cur.kid);
    let kid = insert_next(store, master, &cur, activate_at, removals, &guard, now)
        .await?
        .ok_or_else(|| {
            ServiceError::Conflict(format!("a {marker} of the current key ({})", cur.kid))
        })?;
    info(store, &kid, now).await
}

pub(crate) async fn info(store: &Store, kid: &str, now: i64) -> Result<KeyInfo, ServiceError> {
    list(store, now)
        .await?
        .into_iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| ServiceError::NotFound(format!("key {kid}")))
}

/// `keys revoke KID`: the key leaves the JWKS at once. Refused when it would leave nothing to sign with.
pub async fn revoke(store: &Store, kid: &str, now: i64) -> Result<(), ServiceError> {
    let rows = store.published_signing_keys(now).await?;
    if !rows.iter().any(|r| r.kid == kid) {
        return Err(ServiceError::NotFound(format!("published key {kid}")));
    }
    let others: Vec<Scheduled> = scheduled(&rows)
        .into_iter()
        .filter(|k| k.kid != kid)
        .collect();
    if rotation::current(&others, now).is_none() {
        return Err(ServiceError::Invalid(format!(
            "{kid} is the only key that can sign now; run `castellan keys rotate --now` first, then revoke it"
        )));
    }
    store.revoke_signing_key(kid, now).await?;
    tracing::warn!(kid, "revoked a signing key");
    Ok(())
}

/// What an imported key becomes.
#[derive(Debug, Clone, Copy)]
pub enum ImportAs {
    /// Published only (until `retire_after` from now): the tokens it signed elsewhere keep verifying.
    Retired,
    /// It signs, once every live replica publishes it: inserted as `next` (published, signing
    /// `prepublish` from now like a scheduled rotation), then switched to as `keys rotate --now`
    /// switches (see [`crate::emergency`]). Activated at once, a replica whose key ring does not hold
    /// it yet would answer a JWKS without the key its peers sign with.
    Current(EmergencyOptions),
}

/// `keys import --pem FILE [--kid LEGACY_KID]`: an RSA key from an older setup (PKCS#8 or PKCS#1
/// PEM), as [`ImportAs`] says. With `kid` it keeps the key id its old service put in its tokens
/// (else the RFC 7638 thumbprint).
pub async fn import(
    store: &Store,
    master: &MasterKey,
    pem_text: &str,
    kid: Option<&str>,
    as_: ImportAs,
    policy: &Policy,
    clock: &dyn castellan_core::Clock,
) -> Result<KeyInfo, ServiceError> {
    let now = clock.now();
    let block = pem::parse(pem_text.trim())
        .map_err(|e| ServiceError::Invalid(format!("not a PEM key: {e}")))?;
    let kp = match block.tag() {
        "PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_pkcs8(block.contents()),
        "RSA PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_der(block.contents()),
        other => {
            return Err(ServiceError::Invalid(format!(
                "expected an RSA private key PEM, found `{other}`"
            )));
        }
    }
    .map_err(|e| ServiceError::Invalid(format!("not a usable RSA private key: {e}")))?;
    let pkcs8 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
        .map_err(|_| ServiceError::Invalid("the RSA key cannot be re-encoded".into()))?;
    let mut key = SigningKey::from_pkcs8(Alg::RS256, pkcs8.as_ref())?;
    if let Some(kid) = kid {
        key = key
            .with_kid(kid)
            .map_err(|e| ServiceError::Invalid(format!("--kid: {e}")))?;
    }
    let (rows, cur) = current_row(store, now).await?;
    if rows.iter().any(|r| r.kid == key.kid()) {
        return Err(ServiceError::Conflict(format!("a key with kid {}", key.kid())));
    }
    let dek = data_keys::newest_data_key(store, master).await?;
    let sealed_key = dek.seal(&signing_key_context(key.kid()), pkcs8.as_ref())?;
    let (activate_at, remove_at, removals, guard) = match as_ {
        ImportAs::Current(_) => {
            let guard = crate::emergency::marker(&cur.kid);
            if let Some(pending) = store.meta(&guard).await? {
                return Err(ServiceError::Conflict(format!(
                    "a switch away from the current key ({}) to {pending}: finish it with `castellan \
                     keys rotate --now` (or revoke {pending}) first",
                    cur.kid
                )));
            }
            let at = now + policy.prepublish;
            (
                at,
                None,
                rotation::removals_for(&scheduled(&rows), at, policy),
                guard,
            )
        }
        ImportAs::Retired => (
            0,
            Some(now + policy.retire_after),
            Vec::new(),
            format!("import:{}", key.kid()),
        ),
    };
    let row = SigningKeyRow {
        kid: key.kid().to_owned(),
        alg: "RS256".into(),
        dek_id: dek.id().to_owned(),
        sealed_key,
        activate_at,
        remove_at,
        revoked_at: None,
        created_at: now,
    };
    if !store.insert_key_once(&guard, &row, &removals).await? {
        return Err(ServiceError::Conflict(format!("key {}", key.kid())));
    }
    match as_ {
        ImportAs::Current(opts) => {
            crate::emergency::sign_when_published(
                store,
                clock,
                key.kid(),
                opts,
                "castellan keys rotate --now",
            )
            .await
        }
        ImportAs::Retired => info(store, key.kid(), now).await,
    }
}
