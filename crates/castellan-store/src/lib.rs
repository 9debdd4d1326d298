//! Castellan's store: one [`Store`] over SQLite (the embedded default) or PostgreSQL (shared by
//! replicas).
//!
//! Both backends run the same SQL (a common subset, `$n` placeholders, `ON CONFLICT DO NOTHING`) through
//! sqlx's `Any` driver; each has its own migration set because column types differ. The store keeps only
//! what it is given: secret values arrive sealed (see `castellan_core::envelope`) and leave sealed.
//!
//! It does **not** encrypt, decrypt or cache; callers do that.
#![forbid(unsafe_code)]

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

macro_rules! client_select {
    () => {
        "SELECT client_id, name, secret_hash, scopes, audience, token_ttl_secs, created_at FROM clients"
    };
}

macro_rules! secret_select {
    () => {
        "SELECT name, version, dek_id, sealed_value, created_at FROM secrets WHERE name = $1"
    };
}

macro_rules! ca_select {
    () => {
        "SELECT id, ca_cert_pem, intermediates_pem, root_pem, dek_id, sealed_key, root_sealed_key, created_at FROM cas"
    };
}

macro_rules! cert_select {
    () => {
        "SELECT serial, ca_id, profile, common_name, sans, not_before, not_after, cert_pem, revoked_at, \
         revocation_reason, created_at FROM certificates"
    };
}

mod batch;
mod changes;
#[doc(hidden)]
pub mod testing;

pub use batch::CertBatcher;
pub use changes::{Change, ChangeKind, ChangeListener, Wake};

/// The latest expiry among the certificates issued for one set of names (see
/// [`Store::newest_expiry_by_names`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesExpiry {
    /// The profile.
    pub profile: String,
    /// The common name, if any.
    pub common_name: Option<String>,
    /// The SANs, as stored (`dns:… ip:…`).
    pub sans: String,
    /// The latest `not_after` of those not revoked.
    pub newest_not_after: i64,
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be reached or a statement failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A row with the same unique value exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The URL names no supported database.
    #[error("unsupported database URL (expected sqlite://… or postgres://…)")]
    UnsupportedUrl,
    /// A file system path could not be used for the SQLite database.
    #[error("cannot use the data directory: {0}")]
    Path(String),
    /// The background writer stopped (the process is shutting down).
    #[error("the certificate writer has stopped")]
    WriterStopped,
}

/// Which database backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded default.
    Sqlite,
    /// Shared by replicas.
    Postgres,
}

impl StoreKind {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// A stored data key, wrapped by the master key.
#[derive(Debug, Clone)]
pub struct DataKeyRow {
    /// Its id, recorded beside every value it seals.
    pub id: String,
    /// The key sealed by the master key.
    pub wrapped: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
}

/// A stored token signing key.
#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// JOSE algorithm name.
    pub alg: String,
    /// The data key that sealed the private key.
    pub dek_id: String,
    /// PKCS#8, sealed.
    pub sealed_key: Vec<u8>,
    /// When it starts signing.
    pub activate_at: i64,
    /// When it leaves the JWKS.
    pub remove_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// Creation time.
    pub created_at: i64,
}

/// A stored OAuth client.
#[derive(Debug, Clone)]
pub struct ClientRow {
    /// The public id.
    pub client_id: String,
    /// A unique human name.
    pub name: String,
    /// SHA-256 of the secret.
    pub secret_hash: Vec<u8>,
    /// Space-separated scopes the client may ask for.
    pub scopes: String,
    /// The `aud` of its tokens (the issuer when unset).
    pub audience: Option<String>,
    /// Token lifetime.
    pub token_ttl_secs: i64,
    /// Creation time.
    pub created_at: i64,
}

/// Everything `castellan init` creates, written in one transaction or not at all.
#[derive(Debug)]
pub struct InitBundle {
    /// The master key's check value.
    pub master_key_check: String,
    /// The first data key.
    pub data_key: DataKeyRow,
    /// The first signing key.
    pub signing_key: SigningKeyRow,
    /// The admin client.
    pub admin_client: ClientRow,
    /// Extra meta rows (name, value).
    pub meta: Vec<(String, String)>,
    /// The CA hierarchy.
    pub ca: CaRow,
}

/// A stored issuing CA with its chain. The newest row is the one that issues.
#[derive(Debug, Clone)]
pub struct CaRow {
    /// Id (random).
    pub id: String,
    /// The issuing CA certificate, PEM.
    pub ca_cert_pem: String,
    /// CA certificates between it and the root, PEM (may be empty).
    pub intermediates_pem: String,
    /// The root, PEM.
    pub root_pem: String,
    /// The data key that sealed the keys.
    pub dek_id: String,
    /// The issuing CA's PKCS#8 key, sealed.
    pub sealed_key: Vec<u8>,
    /// The root's key, sealed; `None` when it is kept offline or was never ours.
    pub root_sealed_key: Option<Vec<u8>>,
    /// Creation time.
    pub created_at: i64,
}

/// A stored issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// Serial, lowercase hex.
    pub serial: String,
    /// The CA that issued it.
    pub ca_id: String,
    /// Profile name.
    pub profile: String,
    /// Subject CN.
    pub common_name: Option<String>,
    /// SANs as space-separated text.
    pub sans: String,
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Revocation time.
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason name.
    pub revocation_reason: Option<String>,
    /// Creation time.
    pub created_at: i64,
}

/// A stored CRL.
#[derive(Debug, Clone)]
pub struct CrlRow {
    /// The CA that signed it.
    pub ca_id: String,
    /// Its CRL number.
    pub crl_number: i64,
    /// DER.
    pub der: Vec<u8>,
    /// PEM.
    pub pem: String,
    /// thisUpdate.
    pub this_update: i64,
    /// nextUpdate.
    pub next_update: i64,
}

/// One stored version of a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// The secret's name.
    pub name: String,
    /// Its version, from 1.
    pub version: i64,
    /// The data key that sealed the value.
    pub dek_id: String,
    /// The value, sealed.
    pub sealed_value: Vec<u8>,
    /// When this version was written.
    pub created_at: i64,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("dek_id", &self.dek_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A secret as listed (also the JSON of `GET /v1/secrets` and `castellan secret list`): never its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretSummary {
    /// The secret's name.
    pub name: String,
    /// Its newest version.
    pub version: i64,
    /// How many versions are kept.
    pub versions: i64,
    /// When the newest version was written.
    pub updated_at: i64,
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now.
    Revoked,
    /// It was revoked before; nothing changed.
    AlreadyRevoked,
    /// No certificate has that serial.
    NotFound,
}

/// A store's schema against the migrations this binary carries ([`Store::schema_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The versions applied to the database, in order; empty when it holds no Castellan schema.
    pub applied: Vec<i64>,
    /// Versions this binary carries that the database lacks: a server of this version applies them.
    pub missing: Vec<i64>,
    /// Versions in the database this binary does not know: a newer Castellan migrated it.
    pub unknown: Vec<i64>,
}

/// What the store says about a master key's check value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeyCheck {
    /// The store has never been initialized.
    Uninitialized,
    /// The value matches.
    Matches,
    /// The store was initialized with another master key.
    Mismatch,
}

/// SQLite's "database is locked" / "busy" (SQLITE_BUSY and SQLITE_LOCKED, with their extended codes).
fn sqlite_busy(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_pki.sql")),
    (3, include_str!("../migrations/sqlite/0003_secrets.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_secret_heads.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_changes.sql")),
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
];

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    kind: StoreKind,
    url: Url,
}

/// The database URL, kept for a connection opened beside the pool (the change listener). It may hold
/// a password, so `Debug` never shows it.
#[derive(Clone)]
struct Url(std::sync::Arc<str>);

impl Url {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<database url>")
    }
}

/// The `sqlite://` URL of the database file at `path`, created if missing. The driver percent-decodes
/// the path and reads `?` as the start of its options, so `%`, `?` and `#` in a directory name are
/// escaped: the URL opens exactly that file.
pub fn sqlite_url(path: &Path) -> String {
    let mut escaped = String::new();
    for c in path.display().to_string().chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '?' => escaped.push_str("%3F"),
            '#' => escaped.push_str("%23"),
            c => escaped.push(c),
        }
    }
    format!("sqlite://{escaped}?mode=rwc")
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Self::connect(&sqlite_url(path)).await
    }

    /// Connects to `sqlite://…` or `postgres://…` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect_unmigrated(url, Duration::from_secs(10)).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without applying migrations or changing the database's journal mode: for tools that
    /// must only look, like the doctor. [`Store::schema_status`] says whether the schema is this
    /// binary's; the other methods expect it to be.
    pub async fn connect_unmigrated(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            StoreKind::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            StoreKind::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let opts = AnyPoolOptions::new().acquire_timeout(timeout);
        let pool = match kind {
            StoreKind::Sqlite => {
                opts.max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql(
                                // WAL with synchronous=NORMAL never corrupts the database; a power
                                // loss (not a process crash) may lose the last commits. One fsync per
                                // checkpoint instead of per commit is what lets issuance scale here.
                                "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                            )
                                .execute(conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            StoreKind::Postgres => opts.max_connections(8).connect(url).await?,
        };
        Ok(Self {
            pool,
            kind,
            url: Url(url.into()),
        })
    }

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
        let (tables,): (i64,) = sqlx::query_as(exists).fetch_one(&self.pool).await?;
        let applied: Vec<i64> = if tables == 0 {
            Vec::new()
        } else {
            sqlx::query_as::<_, (i64,)>("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(&self.pool)
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

    fn migrations(&self) -> &'static [(i64, &'static str)] {
        match self.kind {
            StoreKind::Sqlite => SQLITE_MIGRATIONS,
            StoreKind::Postgres => POSTGRES_MIGRATIONS,
        }
    }

    /// Which backend this is.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = self.migrations();
        match self.kind {
            StoreKind::Sqlite => {
                // WAL lets readers (a running server) and a writer (a CLI on the same file) proceed.
                // Setting it needs a lock busy_timeout cannot wait on, so retry briefly.
                for attempt in 0..50 {
                    match sqlx::raw_sql("PRAGMA journal_mode = WAL")
                        .execute(&self.pool)
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

    async fn apply(&self, migrations: &[(i64, &'static str)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
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
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>("value")).transpose()?)
    }

    /// Writes everything `init` creates in one transaction, unless the store is initialized already.
    /// Returns `true` when this call initialized the store. Safe to race: exactly one call wins.
    pub async fn initialize(&self, bundle: &InitBundle) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
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
            .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
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
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    /// Adds a signing key.
    pub async fn add_signing_key(&self, row: &SigningKeyRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
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

    /// Revokes a signing key: it leaves the JWKS at once. Returns whether a published key was revoked.
    pub async fn revoke_signing_key(&self, kid: &str, now: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE signing_keys SET revoked_at = $2 WHERE kid = $1 AND revoked_at IS NULL",
        )
        .bind(kid)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Adds a client; a taken name or id is a [`StoreError::Conflict`].
    pub async fn add_client(&self, row: &ClientRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_client(&mut tx, row).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One client by id.
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRow>, StoreError> {
        let row = sqlx::query(concat!(client_select!(), " WHERE client_id = $1"))
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// Every client, by name.
    pub async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        let rows = sqlx::query(concat!(client_select!(), " ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Deletes a client by id or name; returns whether one was deleted.
    pub async fn delete_client(&self, id_or_name: &str) -> Result<bool, StoreError> {
        // The id first, and the name only when no id matched: one call deletes one client, even where
        // an older store holds a client named like another's id.
        for by in [
            "DELETE FROM clients WHERE client_id = $1",
            "DELETE FROM clients WHERE name = $1",
        ] {
            let n = sqlx::query(by)
                .bind(id_or_name)
                .execute(&self.pool)
                .await?
                .rows_affected();
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The issuing CA: the newest one.
    pub async fn active_ca(&self) -> Result<Option<CaRow>, StoreError> {
        let row = sqlx::query(concat!(
            ca_select!(),
            " ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ca_from_row).transpose()
    }

    /// Adds a CA (it becomes the issuing one if it is the newest).
    pub async fn add_ca(&self, row: &CaRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_ca(&mut tx, row).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records an issued certificate.
    pub async fn add_certificate(&self, row: &CertRow) -> Result<(), StoreError> {
        self.add_certificates(std::slice::from_ref(row)).await
    }

    /// Records several issued certificates in one statement: all of them or, on any error, none.
    pub async fn add_certificates(
        &self,
        rows: &[impl std::borrow::Borrow<CertRow>],
    ) -> Result<(), StoreError> {
        insert_certificates(&self.pool, rows).await
    }

    /// A connection of its own for the certificate writer (outside the pool's count), so that its
    /// prepared statements and SQLite's page cache of the tables it writes stay warm between batches.
    ///
    /// On SQLite it does not checkpoint the log inside its commits: the writer schedules checkpoints
    /// itself (see `batch.rs`), so a commit does not wait for a checkpoint's writes and fsync.
    pub(crate) async fn dedicated(&self) -> Result<sqlx::AnyConnection, StoreError> {
        let mut conn = self.pool.acquire().await?.detach();
        if self.kind == StoreKind::Sqlite {
            sqlx::raw_sql("PRAGMA wal_autocheckpoint = 0")
                .execute(&mut conn)
                .await?;
        }
        Ok(conn)
    }

    /// Issued certificates, soonest expiry first; with `not_after_before`, only those expiring before it.
    pub async fn certificates(
        &self,
        not_after_before: Option<i64>,
    ) -> Result<Vec<CertRow>, StoreError> {
        let rows = sqlx::query(concat!(
            cert_select!(),
            " WHERE not_after < $1 ORDER BY not_after, serial"
        ))
        .bind(not_after_before.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cert_from_row).collect()
    }

    /// For each set of names certificates were issued for (profile, common name and SANs), the latest
    /// `not_after` of the ones not revoked: a certificate that ends before it has been renewed.
    pub async fn newest_expiry_by_names(&self) -> Result<Vec<NamesExpiry>, StoreError> {
        let rows = sqlx::query(
            "SELECT profile, common_name, sans, MAX(not_after) AS newest FROM certificates \
             WHERE revoked_at IS NULL GROUP BY profile, common_name, sans",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NamesExpiry {
                    profile: r.try_get("profile")?,
                    common_name: r.try_get("common_name")?,
                    sans: r.try_get("sans")?,
                    newest_not_after: r.try_get("newest")?,
                })
            })
            .collect()
    }

    /// One certificate by serial.
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertRow>, StoreError> {
        let row = sqlx::query(concat!(cert_select!(), " WHERE serial = $1"))
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(cert_from_row).transpose()
    }

    /// Revokes a certificate.
    pub async fn revoke_certificate(
        &self,
        serial: &str,
        at: i64,
        reason: Option<&str>,
    ) -> Result<Revocation, StoreError> {
        let n = sqlx::query(
            "UPDATE certificates SET revoked_at = $2, revocation_reason = $3 WHERE serial = $1 AND revoked_at IS NULL",
        )
        .bind(serial)
        .bind(at)
        .bind(reason)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n > 0 {
            return Ok(Revocation::Revoked);
        }
        Ok(match self.certificate(serial).await? {
            Some(_) => Revocation::AlreadyRevoked,
            None => Revocation::NotFound,
        })
    }

    /// Revoked certificates of a CA that have not expired before `now`.
    pub async fn revoked_certificates(
        &self,
        ca_id: &str,
        now: i64,
    ) -> Result<Vec<CertRow>, StoreError> {
        let rows = sqlx::query(concat!(
            cert_select!(),
            " WHERE ca_id = $1 AND revoked_at IS NOT NULL AND not_after > $2 ORDER BY serial"
        ))
        .bind(ca_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cert_from_row).collect()
    }

    /// The newest CRL of a CA.
    pub async fn latest_crl(&self, ca_id: &str) -> Result<Option<CrlRow>, StoreError> {
        let row = sqlx::query(
            "SELECT ca_id, crl_number, der, pem, this_update, next_update FROM crls WHERE ca_id = $1 \
             ORDER BY crl_number DESC LIMIT 1",
        )
        .bind(ca_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(CrlRow {
                ca_id: r.try_get("ca_id")?,
                crl_number: r.try_get("crl_number")?,
                der: r.try_get("der")?,
                pem: r.try_get("pem")?,
                this_update: r.try_get("this_update")?,
                next_update: r.try_get("next_update")?,
            })
        })
        .transpose()
    }

    /// Stores a CRL; `false` when another process stored that CRL number first (build the next one).
    pub async fn add_crl(&self, row: &CrlRow) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO crls (ca_id, crl_number, der, pem, this_update, next_update) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&row.ca_id)
        .bind(row.crl_number)
        .bind(&row.der)
        .bind(&row.pem)
        .bind(row.this_update)
        .bind(row.next_update)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The newest version of a secret, if it exists.
    pub async fn latest_secret_version(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("v")?)
    }

    /// The highest version ever given to `name` (0 if none), deleted ones included: the next version
    /// is above it.
    pub async fn highest_secret_version(&self, name: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(latest) AS v FROM secret_heads WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("v")?.unwrap_or(0))
    }

    /// Adds a version of a secret and destroys the versions older than the newest `keep`, in one
    /// transaction. A version not above every version ever given to the name (deleted ones included)
    /// is a [`StoreError::Conflict`]: a concurrent writer took it, or took a later one.
    pub async fn add_secret_version(&self, row: &SecretRow, keep: i64) -> Result<(), StoreError> {
        let taken =
            || StoreError::Conflict(format!("version {} of secret {}", row.version, row.name));
        let mut tx = self.pool.begin().await?;
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
        let Some(r) = q.fetch_optional(&self.pool).await? else {
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
        .fetch_all(&self.pool)
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
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Takes or renews the lease `name` for `holder` until `now + ttl`; `false` while another holder's
    /// lease has not expired. Background jobs run only on the holder.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE \
             SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Cheap liveness check.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// The one INSERT of [`Store::add_certificates`], on a pool or on a kept connection.
pub(crate) async fn insert_certificates<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    rows: &[impl std::borrow::Borrow<CertRow>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO certificates (serial, ca_id, profile, common_name, sans, not_before, not_after, cert_pem, \
         revoked_at, revocation_reason, created_at) VALUES ",
    );
    for i in 0..rows.len() {
        let b = i * 11;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 1..=11 {
            if c > 1 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(b + c).to_string());
        }
        sql.push(')');
    }
    // Only `$n` placeholders are added to the fixed text: no value is ever part of the SQL.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        let row = row.borrow();
        q = q
            .bind(&row.serial)
            .bind(&row.ca_id)
            .bind(&row.profile)
            .bind(&row.common_name)
            .bind(&row.sans)
            .bind(row.not_before)
            .bind(row.not_after)
            .bind(&row.cert_pem)
            .bind(row.revoked_at)
            .bind(&row.revocation_reason)
            .bind(row.created_at);
    }
    q.execute(executor)
        .await
        .map_err(conflict("a certificate with this serial"))?;
    Ok(())
}

/// A passive checkpoint of SQLite's write-ahead log: copies committed pages into the database file
/// without waiting for readers or writers.
pub(crate) async fn wal_checkpoint<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
) -> Result<(), StoreError> {
    sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(executor)
        .await?;
    Ok(())
}

fn conflict(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Database(e),
    }
}

async fn insert_data_key(tx: &mut Tx<'_>, row: &DataKeyRow) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO data_keys (id, wrapped, created_at) VALUES ($1, $2, $3)")
        .bind(&row.id)
        .bind(&row.wrapped)
        .bind(row.created_at)
        .execute(&mut **tx)
        .await
        .map_err(conflict("data key"))?;
    Ok(())
}

async fn insert_signing_key(tx: &mut Tx<'_>, row: &SigningKeyRow) -> Result<(), StoreError> {
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

async fn insert_client(tx: &mut Tx<'_>, row: &ClientRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO clients (client_id, name, secret_hash, scopes, audience, token_ttl_secs, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.client_id)
    .bind(&row.name)
    .bind(&row.secret_hash)
    .bind(&row.scopes)
    .bind(&row.audience)
    .bind(row.token_ttl_secs)
    .bind(row.created_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict(&format!("a client named `{}`", row.name)))?;
    Ok(())
}

async fn insert_ca(tx: &mut Tx<'_>, row: &CaRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cas (id, ca_cert_pem, intermediates_pem, root_pem, dek_id, sealed_key, root_sealed_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.id)
    .bind(&row.ca_cert_pem)
    .bind(&row.intermediates_pem)
    .bind(&row.root_pem)
    .bind(&row.dek_id)
    .bind(&row.sealed_key)
    .bind(&row.root_sealed_key)
    .bind(row.created_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict("CA"))?;
    Ok(())
}

fn ca_from_row(r: &AnyRow) -> Result<CaRow, StoreError> {
    Ok(CaRow {
        id: r.try_get("id")?,
        ca_cert_pem: r.try_get("ca_cert_pem")?,
        intermediates_pem: r.try_get("intermediates_pem")?,
        root_pem: r.try_get("root_pem")?,
        dek_id: r.try_get("dek_id")?,
        sealed_key: r.try_get("sealed_key")?,
        root_sealed_key: r.try_get("root_sealed_key")?,
        created_at: r.try_get("created_at")?,
    })
}

fn cert_from_row(r: &AnyRow) -> Result<CertRow, StoreError> {
    Ok(CertRow {
        serial: r.try_get("serial")?,
        ca_id: r.try_get("ca_id")?,
        profile: r.try_get("profile")?,
        common_name: r.try_get("common_name")?,
        sans: r.try_get("sans")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        cert_pem: r.try_get("cert_pem")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: r.try_get("revocation_reason")?,
        created_at: r.try_get("created_at")?,
    })
}

fn signing_key_from_row(r: &AnyRow) -> Result<SigningKeyRow, StoreError> {
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

fn client_from_row(r: &AnyRow) -> Result<ClientRow, StoreError> {
    Ok(ClientRow {
        client_id: r.try_get("client_id")?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        scopes: r.try_get("scopes")?,
        audience: r.try_get("audience")?,
        token_ttl_secs: r.try_get("token_ttl_secs")?,
        created_at: r.try_get("created_at")?,
    })
}

impl FromStr for StoreKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "sqlite" => Ok(StoreKind::Sqlite),
            "postgres" => Ok(StoreKind::Postgres),
            _ => Err(StoreError::UnsupportedUrl),
        }
    }
}
