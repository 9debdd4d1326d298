//! The master key check, data keys and token signing keys, and the one-transaction initialization.

use super::*;

impl Store {
    /// Compares a master key check value with the one recorded at init.
    pub async fn check_master_key(&self, check_value: &str) -> Result<MasterKeyCheck, StoreError> {
        Ok(match self.meta("master_key_check").await? {
            None => MasterKeyCheck::Uninitialized,
            Some(v) if v == check_value => MasterKeyCheck::Matches,
            Some(_) => MasterKeyCheck::Mismatch,
        })
    }

    /// Reads a meta value.
    pub async fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool()?)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>("value")).transpose()?)
    }

    /// Writes everything `init` creates in one transaction, unless the store is initialized already.
    /// Returns `true` when this call initialized the store. Safe to race: exactly one call wins.
    pub async fn initialize(&self, bundle: &InitBundle) -> Result<bool, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let won = sqlx::query(
            "INSERT INTO meta (name, value) VALUES ('master_key_check', $1) ON CONFLICT DO NOTHING",
        )
        .bind(&bundle.master_key_check)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !won {
            tx.rollback().await?;
            return Ok(false);
        }
        for (name, value) in &bundle.meta {
            sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        insert_data_key(&mut tx, &bundle.data_key).await?;
        insert_signing_key(&mut tx, &bundle.signing_key).await?;
        insert_client(&mut tx, &bundle.admin_client).await?;
        insert_ca(&mut tx, &bundle.ca).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces the master key: every data key's wrapped form and the check value change in one
    /// transaction, and only if the store's check value is still `old_check` and `rows` re-wrap exactly
    /// the data keys it holds; otherwise nothing changes and the answer is [`StoreError::Conflict`].
    pub async fn rewrap_data_keys(
        &self,
        old_check: &str,
        new_check: &str,
        rows: &[DataKeyRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        // First the write that takes the lock (SQLite's writer lock, PostgreSQL's row lock).
        let swapped = sqlx::query(
            "UPDATE meta SET value = $1 WHERE name = 'master_key_check' AND value = $2",
        )
        .bind(new_check)
        .bind(old_check)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !swapped {
            tx.rollback().await?;
            return Err(StoreError::Conflict(
                "a master key change (the store's check value is not the old key's)".into(),
            ));
        }
        let held: Vec<String> = sqlx::query("SELECT id FROM data_keys ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut given: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        given.sort_unstable();
        if given != held.iter().map(String::as_str).collect::<Vec<_>>() {
            tx.rollback().await?;
            return Err(StoreError::Conflict(
                "a data key added meanwhile (run the master key change again)".into(),
            ));
        }
        for row in rows {
            sqlx::query("UPDATE data_keys SET wrapped = $1 WHERE id = $2")
                .bind(&row.wrapped)
                .bind(&row.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every data key.
    pub async fn data_keys(&self) -> Result<Vec<DataKeyRow>, StoreError> {
        let rows = sqlx::query("SELECT id, wrapped, created_at FROM data_keys ORDER BY id")
            .fetch_all(self.pool()?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DataKeyRow {
                    id: r.try_get("id")?,
                    wrapped: r.try_get("wrapped")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Adds a data key wrapped by the master key whose check value is `master_check`, in one
    /// transaction with a check that the store still records that key: a process still running with a
    /// master key that `change-master-key` replaced meanwhile gets [`StoreError::Conflict`] instead of
    /// adding a key nobody can unwrap once the old master key is gone.
    pub async fn add_data_key(
        &self,
        row: &DataKeyRow,
        master_check: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        // A write first: it waits for a master key change in progress (SQLite's writer lock,
        // PostgreSQL's row lock) and then sees its result.
        let current = sqlx::query(
            "UPDATE meta SET value = value WHERE name = 'master_key_check' AND value = $1",
        )
        .bind(master_check)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !current {
            tx.rollback().await?;
            return Err(StoreError::Conflict(
                "a master key change: this process holds the old master key (restart it with the new one)"
                    .into(),
            ));
        }
        insert_data_key(&mut tx, row).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The published signing keys: neither revoked nor past `remove_at` at `now`.
    pub async fn published_signing_keys(&self, now: i64) -> Result<Vec<SigningKeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, alg, dek_id, sealed_key, activate_at, remove_at, revoked_at, created_at FROM signing_keys \
             WHERE revoked_at IS NULL AND (remove_at IS NULL OR remove_at > $1) ORDER BY kid",
        )
        .bind(now)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    /// Adds a signing key.
    pub async fn add_signing_key(&self, row: &SigningKeyRow) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        insert_signing_key(&mut tx, row).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts a key guarded by a one-time `marker` (for example `rotation:<current kid>`), and
    /// schedules the removal of the keys it supersedes, in one transaction. Returns `false` (and changes
    /// nothing) when the marker exists: another replica, or an earlier run killed after committing,
    /// did it already. This is what makes "exactly one next key" hold under races.
    pub async fn insert_key_once(
        &self,
        marker: &str,
        row: &SigningKeyRow,
        removals: &[(String, i64)],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let won =
            sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(marker)
                .bind(&row.kid)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if !won {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_signing_key(&mut tx, row).await?;
        for (kid, remove_at) in removals {
            sqlx::query(
                "UPDATE signing_keys SET remove_at = $2 WHERE kid = $1 AND remove_at IS NULL",
            )
            .bind(kid)
            .bind(*remove_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Makes a published, not yet signing key sign from `at` (the last step of an emergency rotation).
    /// Returns `false` (and changes nothing) when the key is revoked, gone, or signs already.
    pub async fn activate_signing_key(&self, kid: &str, at: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE signing_keys SET activate_at = $2 \
             WHERE kid = $1 AND activate_at > $2 AND revoked_at IS NULL",
        )
        .bind(kid)
        .bind(at)
        .execute(self.pool()?)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Revokes a signing key: it leaves the JWKS at once. Returns whether a published key was revoked.
    pub async fn revoke_signing_key(&self, kid: &str, now: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE signing_keys SET revoked_at = $2 WHERE kid = $1 AND revoked_at IS NULL",
        )
        .bind(kid)
        .bind(now)
        .execute(self.pool()?)
        .await?
        .rows_affected();
        Ok(n > 0)
    }
}

pub(crate) async fn insert_data_key(tx: &mut Tx<'_>, row: &DataKeyRow) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO data_keys (id, wrapped, created_at) VALUES ($1, $2, $3)")
        .bind(&row.id)
        .bind(&row.wrapped)
        .bind(row.created_at)
        .execute(&mut **tx)
        .await
        .map_err(conflict("data key"))?;
    Ok(())
}

pub(crate) async fn insert_signing_key(
    tx: &mut Tx<'_>,
    row: &SigningKeyRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, dek_id, sealed_key, activate_at, remove_at, revoked_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.kid)
    .bind(&row.alg)
    .bind(&row.dek_id)
    .bind(&row.sealed_key)
    .bind(row.activate_at)
    .bind(row.remove_at)
    .bind(row.revoked_at)
    .bind(row.created_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict("signing key"))?;
    Ok(())
}

pub(crate) fn signing_key_from_row(r: &AnyRow) -> Result<SigningKeyRow, StoreError> {
    Ok(SigningKeyRow {
        kid: r.try_get("kid")?,
        alg: r.try_get("alg")?,
        dek_id: r.try_get("dek_id")?,
        sealed_key: r.try_get("sealed_key")?,
        activate_at: r.try_get("activate_at")?,
        remove_at: r.try_get("remove_at")?,
        revoked_at: r.try_get("revoked_at")?,
        created_at: r.try_get("created_at")?,
    })
}
