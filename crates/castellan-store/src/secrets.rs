//! Versioned secrets (values arrive and leave sealed).

use super::*;

impl Store {
    /// The newest version of a secret, if it exists.
    pub async fn latest_secret_version(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool()?)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("v")?)
    }

    /// The highest version ever given to `name` (0 if none), deleted ones included: the next version
    /// is above it.
    pub async fn highest_secret_version(&self, name: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(latest) AS v FROM secret_heads WHERE name = $1")
            .bind(name)
            .fetch_one(self.pool()?)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("v")?.unwrap_or(0))
    }

    /// Adds a version of a secret and destroys the versions older than the newest `keep`, in one
    /// transaction. A version not above every version ever given to the name (deleted ones included)
    /// is a [`StoreError::Conflict`]: a concurrent writer took it, or took a later one.
    pub async fn add_secret_version(&self, row: &SecretRow, keep: i64) -> Result<(), StoreError> {
        let taken =
            || StoreError::Conflict(format!("version {} of secret {}", row.version, row.name));
        let mut tx = self.pool()?.begin().await?;
        let above = sqlx::query(
            "INSERT INTO secret_heads (name, latest) VALUES ($1, $2) ON CONFLICT (name) \
             DO UPDATE SET latest = excluded.latest WHERE secret_heads.latest < excluded.latest",
        )
        .bind(&row.name)
        .bind(row.version)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !above {
            tx.rollback().await?;
            return Err(taken());
        }
        sqlx::query(
            "INSERT INTO secrets (name, version, dek_id, sealed_value, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.name)
        .bind(row.version)
        .bind(&row.dek_id)
        .bind(&row.sealed_value)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict(&format!("version {} of secret {}", row.version, row.name)))?;
        sqlx::query("DELETE FROM secrets WHERE name = $1 AND version <= $2")
            .bind(&row.name)
            .bind(row.version - keep.max(1))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One version of a secret, the newest when `version` is `None`.
    pub async fn secret(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<SecretRow>, StoreError> {
        let q = match version {
            Some(v) => sqlx::query(concat!(secret_select!(), " AND version = $2"))
                .bind(name)
                .bind(v),
            None => {
                sqlx::query(concat!(secret_select!(), " ORDER BY version DESC LIMIT 1")).bind(name)
            }
        };
        let Some(r) = q.fetch_optional(self.pool()?).await? else {
            return Ok(None);
        };
        Ok(Some(SecretRow {
            name: r.try_get("name")?,
            version: r.try_get("version")?,
            dek_id: r.try_get("dek_id")?,
            sealed_value: r.try_get("sealed_value")?,
            created_at: r.try_get("created_at")?,
        }))
    }

    /// Every secret's name and newest version, by name; no values.
    pub async fn secrets(&self) -> Result<Vec<SecretSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, MAX(version) AS version, COUNT(*) AS versions, MAX(created_at) AS updated_at \
             FROM secrets GROUP BY name ORDER BY name",
        )
        .fetch_all(self.pool()?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretSummary {
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    versions: r.try_get("versions")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Destroys every version of a secret; returns whether there was one.
    pub async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(self.pool()?)
            .await?
            .rows_affected();
        Ok(n > 0)
    }
}
