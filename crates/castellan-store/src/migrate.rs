//! Schema migrations: one numbered set per backend, applied in order, and the schema check
//! `doctor` and `serve` read.

use super::*;

const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_pki.sql")),
    (3, include_str!("../migrations/sqlite/0003_secrets.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_secret_heads.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_changes.sql")),
    (7, include_str!("../migrations/sqlite/0007_signin.sql")),
    (
        6,
        include_str!("../migrations/sqlite/0006_heartbeats_cert_names.sql"),
    ),
    (8, include_str!("../migrations/sqlite/0008_upstream.sql")),
    (12, include_str!("../migrations/sqlite/0012_totp_steps.sql")),
    (9, include_str!("../migrations/sqlite/0009_vault.sql")),
    (10, include_str!("../migrations/sqlite/0010_signing.sql")),
    (11, include_str!("../migrations/sqlite/0011_audit.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_pki.sql")),
    (3, include_str!("../migrations/postgres/0003_secrets.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_secret_heads.sql"),
    ),
    (5, include_str!("../migrations/postgres/0005_changes.sql")),
    (7, include_str!("../migrations/postgres/0007_signin.sql")),
    (
        6,
        include_str!("../migrations/postgres/0006_heartbeats_cert_names.sql"),
    ),
    (8, include_str!("../migrations/postgres/0008_upstream.sql")),
    (
        12,
        include_str!("../migrations/postgres/0012_totp_steps.sql"),
    ),
    (9, include_str!("../migrations/postgres/0009_vault.sql")),
    (10, include_str!("../migrations/postgres/0010_signing.sql")),
    (11, include_str!("../migrations/postgres/0011_audit.sql")),
];

impl Store {
    /// The store's schema against the migrations this binary carries, read without changing anything.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let exists = match self.kind {
            StoreKind::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            }
            StoreKind::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
            }
        };
        let (tables,): (i64,) = sqlx::query_as(exists).fetch_one(self.pool()?).await?;
        let applied: Vec<i64> = if tables == 0 {
            Vec::new()
        } else {
            sqlx::query_as::<_, (i64,)>("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(self.pool()?)
                .await?
                .into_iter()
                .map(|(v,)| v)
                .collect()
        };
        let known: Vec<i64> = self.migrations().iter().map(|(v, _)| *v).collect();
        Ok(SchemaStatus {
            missing: known
                .iter()
                .copied()
                .filter(|v| !applied.contains(v))
                .collect(),
            unknown: applied
                .iter()
                .copied()
                .filter(|v| !known.contains(v))
                .collect(),
            applied,
        })
    }

    pub(crate) fn migrations(&self) -> &'static [(i64, &'static str)] {
        match self.kind {
            StoreKind::Sqlite => SQLITE_MIGRATIONS,
            StoreKind::Postgres => POSTGRES_MIGRATIONS,
        }
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = self.migrations();
        match self.kind {
            StoreKind::Sqlite => {
                // WAL lets readers (a running server) and a writer (a CLI on the same file) proceed.
                // Setting it needs a lock busy_timeout cannot wait on, so retry briefly.
                for attempt in 0..50 {
                    match sqlx::raw_sql("PRAGMA journal_mode = WAL")
                        .execute(self.pool()?)
                        .await
                    {
                        Ok(_) => break,
                        Err(e) if attempt == 49 => return Err(e.into()),
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
            StoreKind::Postgres => {}
        }
        // Every migration is idempotent (IF NOT EXISTS), so racing processes cannot break each other;
        // on PostgreSQL an advisory lock also serializes them. On SQLite a transaction that read first
        // cannot wait for the write lock (busy_timeout does not apply to that upgrade), so processes
        // started together (an upgrade, a CLI beside a server) retry until theirs goes through.
        let mut attempt = 0;
        loop {
            match self.apply(migrations).await {
                Err(StoreError::Database(e))
                    if self.kind == StoreKind::Sqlite && attempt < 100 && sqlite_busy(&e) =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 + 10 * attempt.min(10))).await;
                }
                other => return other,
            }
        }
    }

    pub(crate) async fn apply(&self, migrations: &[(i64, &'static str)]) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        if self.kind == StoreKind::Postgres {
            sqlx::raw_sql("SELECT pg_advisory_xact_lock(7240981312)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        for (version, sql) in migrations {
            let applied = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !applied {
                sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO schema_migrations (version) VALUES ($1) ON CONFLICT DO NOTHING",
                )
                .bind(*version)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
