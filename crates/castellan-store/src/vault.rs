//! What the Vault-shaped API keeps (issue 20): its client tokens, by the SHA-256 of the token, and the
//! versions of a secret as its metadata lists them.

use super::*;

/// A Vault client token as stored: never the token itself, only its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultTokenRow {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// A public handle of the token (Vault's `accessor`): random, not derived from the token.
    pub accessor: String,
    /// The Castellan client the token acts for.
    pub client_id: String,
    /// The scopes it was given at login (space-separated).
    pub scope: String,
    /// The login it came from (`auth/approle/login`, ...).
    pub auth_path: String,
    /// When it was made, unix seconds.
    pub created_at: i64,
    /// Its lifetime: what a renewal extends it by.
    pub ttl_secs: i64,
    /// When it expires unless renewed.
    pub expires_at: i64,
    /// The latest it can be renewed to.
    pub max_expires_at: i64,
}

impl std::fmt::Debug for VaultTokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTokenRow")
            .field("accessor", &self.accessor)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn token_row(r: &AnyRow) -> Result<VaultTokenRow, StoreError> {
    Ok(VaultTokenRow {
        token_hash: r.try_get("token_hash")?,
        accessor: r.try_get("accessor")?,
        client_id: r.try_get("client_id")?,
        scope: r.try_get("scope")?,
        auth_path: r.try_get("auth_path")?,
        created_at: r.try_get("created_at")?,
        ttl_secs: r.try_get("ttl_secs")?,
        expires_at: r.try_get("expires_at")?,
        max_expires_at: r.try_get("max_expires_at")?,
    })
}

impl Store {
    /// Records a new Vault client token.
    pub async fn add_vault_token(&self, row: &VaultTokenRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO vault_tokens (token_hash, accessor, client_id, scope, auth_path, created_at, \
             ttl_secs, expires_at, max_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&row.token_hash)
        .bind(&row.accessor)
        .bind(&row.client_id)
        .bind(&row.scope)
        .bind(&row.auth_path)
        .bind(row.created_at)
        .bind(row.ttl_secs)
        .bind(row.expires_at)
        .bind(row.max_expires_at)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    /// The token whose SHA-256 is `hash`, if it is recorded (expired or not).
    pub async fn vault_token(&self, hash: &[u8]) -> Result<Option<VaultTokenRow>, StoreError> {
        let r = sqlx::query(
            "SELECT token_hash, accessor, client_id, scope, auth_path, created_at, ttl_secs, \
             expires_at, max_expires_at FROM vault_tokens WHERE token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool()?)
        .await?;
        r.as_ref().map(token_row).transpose()
    }

    /// Moves a token's expiry to `expires_at`; false when it is not recorded.
    pub async fn renew_vault_token(
        &self,
        hash: &[u8],
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE vault_tokens SET expires_at = $2 WHERE token_hash = $1")
            .bind(hash)
            .bind(expires_at)
            .execute(self.pool()?)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Forgets a token; false when it was not recorded.
    pub async fn revoke_vault_token(&self, hash: &[u8]) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM vault_tokens WHERE token_hash = $1")
            .bind(hash)
            .execute(self.pool()?)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Removes the tokens expired before `now`; returns how many.
    pub async fn prune_vault_tokens(&self, now: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM vault_tokens WHERE expires_at < $1")
                .bind(now)
                .execute(self.pool()?)
                .await?
                .rows_affected(),
        )
    }

    /// The kept versions of a secret and when each was written, oldest first.
    pub async fn secret_versions(&self, name: &str) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT version, created_at FROM secrets WHERE name = $1 ORDER BY version")
                .bind(name)
                .fetch_all(self.pool()?)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("created_at")?)))
            .collect()
    }
}
