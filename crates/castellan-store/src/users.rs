//! People who sign in, and what ends with them (their sessions and grants).

use super::*;

macro_rules! user_select {
    () => {
        "SELECT user_id, name, email, password_hash, groups, claims, disabled_at, totp_dek_id, \
         totp_sealed, totp_required, created_at, updated_at FROM users"
    };
}

impl Store {
    /// Adds a user; a taken name is a [`StoreError::Conflict`].
    pub async fn add_user(&self, u: &UserRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (user_id, name, email, password_hash, groups, claims, disabled_at, \
             totp_dek_id, totp_sealed, totp_required, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&u.user_id)
        .bind(&u.name)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(&u.groups)
        .bind(&u.claims)
        .bind(u.disabled_at)
        .bind(&u.totp_dek_id)
        .bind(&u.totp_sealed)
        .bind(i64::from(u.totp_required))
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(self.pool()?)
        .await
        .map_err(conflict(&format!("a user named `{}`", u.name)))?;
        Ok(())
    }

    /// One user by id.
    pub async fn user(&self, user_id: &str) -> Result<Option<UserRow>, StoreError> {
        user_by_id(self.pool()?, user_id).await
    }

    /// One user by name.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        sqlx::query(concat!(user_select!(), " WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool()?)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    /// Every user, by name (for `user list`; never on a request path).
    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        sqlx::query(concat!(user_select!(), " ORDER BY name"))
            .fetch_all(self.pool()?)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// Replaces a user's password hash; returns whether the user exists.
    pub async fn set_password(
        &self,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE user_id = $1")
                .bind(user_id)
                .bind(hash)
                .bind(now)
                .execute(self.pool()?)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Disables (`Some(now)`) or enables (`None`) a user. Disabling ends the user's sessions and
    /// revokes every grant (refresh family) in the same transaction. Returns whether the user exists.
    pub async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled_at: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let n =
            sqlx::query("UPDATE users SET disabled_at = $2, updated_at = $3 WHERE user_id = $1")
                .bind(user_id)
                .bind(disabled_at)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if disabled_at.is_some() {
            end_everything_of(&mut tx, user_id, now, "user-disabled").await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Deletes a user with their sessions, grants, refresh tokens and recovery codes. Returns whether
    /// the user existed.
    pub async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let n = sqlx::query("DELETE FROM users WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for sql in [
            "DELETE FROM refresh_tokens WHERE grant_id IN (SELECT grant_id FROM grants WHERE user_id = $1)",
            "DELETE FROM grants WHERE user_id = $1",
            "DELETE FROM sessions WHERE user_id = $1",
            "DELETE FROM auth_codes WHERE user_id = $1",
            "DELETE FROM recovery_codes WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Stores an enrolled TOTP secret (sealed) and the hashes of new recovery codes, replacing any
    /// earlier ones.
    pub async fn set_totp(
        &self,
        user_id: &str,
        dek_id: &str,
        sealed: &[u8],
        recovery_hashes: &[Vec<u8>],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        sqlx::query(
            "UPDATE users SET totp_dek_id = $2, totp_sealed = $3, updated_at = $4 WHERE user_id = $1",
        )
        .bind(user_id)
        .bind(dek_id)
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for h in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (code_hash, user_id) VALUES ($1, $2)")
                .bind(h)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether a user must sign in with a second factor.
    pub async fn set_totp_required(
        &self,
        user_id: &str,
        required: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE users SET totp_required = $2, updated_at = $3 WHERE user_id = $1")
                .bind(user_id)
                .bind(i64::from(required))
                .bind(now)
                .execute(self.pool()?)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Uses a recovery code (once): whether it was an unused code of this user.
    pub async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hash: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE recovery_codes SET used_at = $3 \
             WHERE code_hash = $1 AND user_id = $2 AND used_at IS NULL",
        )
        .bind(code_hash)
        .bind(user_id)
        .bind(now)
        .execute(self.pool()?)
        .await?
        .rows_affected()
            == 1)
    }

    /// Records that the user's second factor accepted a TOTP code of time step `step`: whether it is
    /// newer than every step accepted before (a code used once, or one of an earlier step, is not
    /// accepted again, whichever replica saw it).
    pub async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO totp_steps (user_id, last_step) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET last_step = excluded.last_step \
             WHERE totp_steps.last_step < excluded.last_step",
        )
        .bind(user_id)
        .bind(step)
        .execute(self.pool()?)
        .await?
        .rows_affected()
            == 1)
    }
}

/// Ends a user's sessions and revokes their grants, inside `tx`.
pub(crate) async fn end_everything_of(
    tx: &mut Tx<'_>,
    user_id: &str,
    now: i64,
    why: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET ended_at = $2 WHERE user_id = $1 AND ended_at IS NULL")
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE grants SET revoked_at = $2, revoked_why = $3 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .bind(why)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One user by id, on `executor` (a transaction's connection or the pool).
pub(crate) async fn user_by_id<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    user_id: &str,
) -> Result<Option<UserRow>, StoreError> {
    sqlx::query(concat!(user_select!(), " WHERE user_id = $1"))
        .bind(user_id)
        .fetch_optional(executor)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

/// The columns of a [`UserRow`], in `user_select!`'s order.
pub(crate) const USER_COLUMNS: [&str; 12] = [
    "user_id",
    "name",
    "email",
    "password_hash",
    "groups",
    "claims",
    "disabled_at",
    "totp_dek_id",
    "totp_sealed",
    "totp_required",
    "created_at",
    "updated_at",
];

fn user_from_row(r: &AnyRow) -> Result<UserRow, StoreError> {
    user_from_row_as(r, "")
}

/// A user from a row whose user columns are named `{prefix}{column}` (a join's aliases).
pub(crate) fn user_from_row_as(r: &AnyRow, prefix: &str) -> Result<UserRow, StoreError> {
    let c = |name: &str| format!("{prefix}{name}");
    Ok(UserRow {
        user_id: r.try_get(c("user_id").as_str())?,
        name: r.try_get(c("name").as_str())?,
        email: r.try_get(c("email").as_str())?,
        password_hash: r.try_get(c("password_hash").as_str())?,
        groups: r.try_get(c("groups").as_str())?,
        claims: r.try_get(c("claims").as_str())?,
        disabled_at: r.try_get(c("disabled_at").as_str())?,
        totp_dek_id: r.try_get(c("totp_dek_id").as_str())?,
        totp_sealed: r.try_get(c("totp_sealed").as_str())?,
        totp_required: r.try_get::<i64, _>(c("totp_required").as_str())? != 0,
        created_at: r.try_get(c("created_at").as_str())?,
        updated_at: r.try_get(c("updated_at").as_str())?,
    })
}
