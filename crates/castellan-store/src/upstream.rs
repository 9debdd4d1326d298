//! Sign-in through upstream identity providers: the sign-ins under way (single use, minutes long)
//! and the links from an upstream subject to a user.
//!
//! A sign-in under way is taken with one conditional `UPDATE`, so two replicas handed the same
//! `state` (a replayed callback) cannot both finish it: exactly one wins.

use super::*;

/// An upstream sign-in under way.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamLoginRow {
    /// SHA-256 of the `state` sent upstream.
    pub state_hash: Vec<u8>,
    /// The provider's configured name.
    pub provider: String,
    /// The `nonce` sent upstream, which its ID token must carry.
    pub nonce: String,
    /// The PKCE verifier of the `code_challenge` sent upstream.
    pub pkce_verifier: String,
    /// Castellan's own authorization request that waits (a query string; empty: the account page).
    pub request: String,
    /// Start.
    pub created_at: i64,
    /// End.
    pub expires_at: i64,
    /// When it was finished (or refused), if it was.
    pub used_at: Option<i64>,
}

impl std::fmt::Debug for UpstreamLoginRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLoginRow")
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Stores an upstream sign-in under way.
    pub async fn add_upstream_login(&self, l: &UpstreamLoginRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO upstream_logins (state_hash, provider, nonce, pkce_verifier, request, \
             created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&l.state_hash)
        .bind(&l.provider)
        .bind(&l.nonce)
        .bind(&l.pkce_verifier)
        .bind(&l.request)
        .bind(l.created_at)
        .bind(l.expires_at)
        .bind(l.used_at)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    /// Takes the sign-in under way whose `state` hashes to `state_hash`, once: `None` when there is
    /// none, it has expired, or it was taken before.
    pub async fn take_upstream_login(
        &self,
        state_hash: &[u8],
        now: i64,
    ) -> Result<Option<UpstreamLoginRow>, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let won = sqlx::query(
            "UPDATE upstream_logins SET used_at = $2 \
             WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(state_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !won {
            tx.commit().await?;
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT state_hash, provider, nonce, pkce_verifier, request, created_at, expires_at, \
             used_at FROM upstream_logins WHERE state_hash = $1",
        )
        .bind(state_hash)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(UpstreamLoginRow {
            state_hash: row.try_get("state_hash")?,
            provider: row.try_get("provider")?,
            nonce: row.try_get("nonce")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
            request: row.try_get("request")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
        }))
    }

    /// The user an upstream subject is linked to.
    pub async fn upstream_link(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT user_id FROM upstream_links WHERE provider = $1 AND subject = $2",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(self.pool()?)
        .await?;
        Ok(row.map(|(u,)| u))
    }

    /// Whether any subject of this provider is linked to this user.
    pub async fn upstream_linked_user(
        &self,
        provider: &str,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT subject FROM upstream_links WHERE provider = $1 AND user_id = $2 LIMIT 1",
        )
        .bind(provider)
        .bind(user_id)
        .fetch_optional(self.pool()?)
        .await?;
        Ok(row.is_some())
    }

    /// Links an upstream subject to an existing user; a subject linked before is a
    /// [`StoreError::Conflict`].
    pub async fn link_upstream(
        &self,
        provider: &str,
        subject: &str,
        user_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        insert_link(&mut tx, provider, subject, user_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates a user and links an upstream subject to them, both or neither: a taken name or a
    /// subject linked before is a [`StoreError::Conflict`].
    pub async fn add_upstream_user(
        &self,
        u: &UserRow,
        provider: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
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
        .execute(&mut *tx)
        .await
        .map_err(conflict(&format!("a user named `{}`", u.name)))?;
        insert_link(&mut tx, provider, subject, &u.user_id, u.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes upstream sign-ins that ended more than `keep_secs` ago.
    pub async fn prune_upstream_logins(&self, now: i64, keep_secs: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM upstream_logins WHERE expires_at < $1")
                .bind(now - keep_secs)
                .execute(self.pool()?)
                .await?
                .rows_affected(),
        )
    }
}

async fn insert_link(
    tx: &mut Tx<'_>,
    provider: &str,
    subject: &str,
    user_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO upstream_links (provider, subject, user_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(provider)
    .bind(subject)
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(conflict("a link of this upstream subject"))?;
    Ok(())
}
