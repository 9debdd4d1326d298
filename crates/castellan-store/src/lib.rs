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
    // A derived table named `clients`, so callers append `WHERE client_id = $1` or `ORDER BY name`.
    () => {
        "SELECT * FROM (SELECT c.client_id, c.name, c.secret_hash, c.scopes, c.audience, c.token_ttl_secs, \
         c.created_at, \
         (SELECT patterns FROM client_cert_names n WHERE n.client_id = c.client_id) AS cert_names, \
         COALESCE(a.redirect_uris, '') AS redirect_uris, \
         COALESCE(a.post_logout_redirect_uris, '') AS post_logout_redirect_uris, \
         COALESCE(a.grant_types, 'client_credentials') AS grant_types, \
         COALESCE(a.public_client, 0) AS public_client, COALESCE(a.require_mfa, 0) AS require_mfa, \
         COALESCE(a.user_claims, '') AS user_claims, \
         p.audiences AS policy_audiences, p.sign_max_ttl_secs, p.sign_claims, p.sign_sub, p.sign_typ, \
         p.exchange_from \
         FROM clients c LEFT JOIN client_apps a ON a.client_id = c.client_id \
         LEFT JOIN client_policies p ON p.client_id = c.client_id) AS clients"
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

mod audit;
mod batch;
mod changes;
mod client_policies;
mod clients;
mod heartbeats;
mod keys;
mod migrate;
mod pki;
mod refresh_batch;
mod rows;
mod secrets;
mod signin;
#[doc(hidden)]
pub mod testing;
mod upstream;
mod users;
mod vault;

pub use audit::{AuditCheckpoint, AuditFilter};
pub use batch::CertBatcher;
pub use changes::{Change, ChangeKind, ChangeListener, Wake};
pub use refresh_batch::{RefreshBatcher, RotateRequest};
pub use rows::*;
pub use upstream::UpstreamLoginRow;
pub use vault::VaultTokenRow;

use clients::*;
use pki::*;

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
    /// The database cannot be reached now (named cause); callers answer "retry later".
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
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

/// SQLite's "database is locked" / "busy" (SQLITE_BUSY and SQLITE_LOCKED, with their extended codes).
fn sqlite_busy(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    kind: StoreKind,
    url: Url,
    health: std::sync::Arc<Health>,
}

/// What the store last learned about reaching its database, shared by every clone of one [`Store`].
/// While an outage is known, calls fail at once with [`StoreError::Unavailable`] instead of each
/// waiting out the pool's acquire timeout; [`Store::probe`] finds the outage and its end.
#[derive(Debug, Default)]
struct Health {
    outage: std::sync::Mutex<Option<Outage>>,
}

impl Health {
    /// The outage slot (a panic elsewhere while it was held leaves a value that is still whole).
    fn known(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.outage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A known outage of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// When it was found, seconds since the epoch.
    pub since: i64,
    /// Why the database cannot be reached (`connection refused at db:5432`); never holds the URL's
    /// password.
    pub cause: String,
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

/// Makes the SQLite file at `url` Castellan's alone before it is opened: names, scopes, secret hashes
/// and the certificate inventory are not for other local users. A missing directory is created 0700
/// and a missing file 0600 (SQLite gives the `-wal` and `-shm` files the database file's mode); an
/// existing file readable by group or others is narrowed to 0600. In-memory databases are left alone.
fn private_sqlite_file(url: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    let path = opts.get_filename();
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" || url.contains("mode=memory")
    {
        return Ok(());
    }
    let io =
        |what: &str, e: std::io::Error| StoreError::Path(format!("{what} {}: {e}", path.display()));
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("creating the directory of", e))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating", e)),
    }
    let meta = std::fs::metadata(path).map_err(|e| io("reading", e))?;
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("narrowing the mode of", e))?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        Self::connect(&sqlite_url(path)).await
    }

    /// Connects to `sqlite://…` or `postgres://…` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            private_sqlite_file(url)?;
        }
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
            StoreKind::Postgres => match opts
                .max_connections(8)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // The idempotent migrations (`CREATE ... IF NOT EXISTS`) would otherwise
                        // send a NOTICE per object on every start ("relation ... already exists,
                        // skipping"), which sqlx logs at INFO: warnings and errors still come.
                        sqlx::raw_sql("SET client_min_messages = warning")
                            .execute(conn)
                            .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
            {
                Ok(pool) => pool,
                // The pool retries a refused connection until its time-out and then says only
                // that it timed out: one direct attempt names the cause.
                Err(sqlx::Error::PoolTimedOut) => {
                    return Err(StoreError::Unavailable(unreachable_cause(url).await));
                }
                Err(e) => return Err(e.into()),
            },
        };
        Ok(Self {
            pool,
            kind,
            url: Url(url.into()),
            health: std::sync::Arc::default(),
        })
    }

    /// The pool, unless an outage is known: then the call fails at once, naming the cause.
    fn pool(&self) -> Result<&AnyPool, StoreError> {
        match &*self.health.known() {
            Some(outage) => Err(StoreError::Unavailable(outage.cause.clone())),
            None => Ok(&self.pool),
        }
    }

    /// The outage known now, if any (for `/v1/sys/status` and `/metrics`).
    pub fn outage(&self) -> Option<Outage> {
        self.health.known().clone()
    }

    /// Checks that the database answers within `timeout` (a `SELECT 1` through the pool, past the
    /// outage gate) and records the answer: a failure starts an outage, with its cause found by one
    /// direct connection attempt; a success ends one. `now` is seconds since the epoch.
    pub async fn probe(&self, timeout: Duration, now: i64) -> Result<(), StoreError> {
        let answered = tokio::time::timeout(timeout, async {
            let mut conn = self.pool.acquire().await?;
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            Ok::<_, sqlx::Error>(())
        })
        .await;
        let cause = match answered {
            Ok(Ok(())) => {
                *self.health.known() = None;
                return Ok(());
            }
            Ok(Err(e)) if !matches!(e, sqlx::Error::PoolTimedOut) => {
                describe(&e, self.url.as_str())
            }
            _ => tokio::time::timeout(timeout, unreachable_cause(self.url.as_str()))
                .await
                .unwrap_or_else(|_| format!("no answer within {} ms", timeout.as_millis())),
        };
        let mut known = self.health.known();
        let since = known.as_ref().map_or(now, |o| o.since);
        *known = Some(Outage {
            since,
            cause: cause.clone(),
        });
        Err(StoreError::Unavailable(cause))
    }

    /// Which backend this is.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A connection of its own for the certificate writer (outside the pool's count), so that its
    /// prepared statements and SQLite's page cache of the tables it writes stay warm between batches.
    ///
    /// On SQLite it does not checkpoint the log inside its commits: the writer schedules checkpoints
    /// itself (see `batch.rs`), so a commit does not wait for a checkpoint's writes and fsync.
    pub(crate) async fn dedicated(&self) -> Result<sqlx::AnyConnection, StoreError> {
        let mut conn = self.pool()?.acquire().await?.detach();
        if self.kind == StoreKind::Sqlite {
            sqlx::raw_sql("PRAGMA wal_autocheckpoint = 0")
                .execute(&mut conn)
                .await?;
        }
        Ok(conn)
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
        .execute(self.pool()?)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Cheap liveness check.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.pool()?).await?;
        Ok(())
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

fn conflict(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Database(e),
    }
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

/// Why the database at `url` cannot be reached: one direct connection attempt (outside the pool,
/// which hides the cause behind its time-out), its error named with the host and port.
async fn unreachable_cause(url: &str) -> String {
    use sqlx::Connection as _;
    match sqlx::AnyConnection::connect(url).await {
        Ok(_) => {
            "the connection pool timed out, though the database accepts connections".to_owned()
        }
        Err(e) => describe(&e, url),
    }
}

/// An error of a connection to `url`, with where it was going (host and port, never the password).
fn describe(e: &sqlx::Error, url: &str) -> String {
    let what = match e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
            _ => io.to_string(),
        },
        sqlx::Error::PoolTimedOut => "no connection within the pool's time-out".to_owned(),
        other => other.to_string(),
    };
    match sqlx::postgres::PgConnectOptions::from_str(url) {
        Ok(o) if url.starts_with("postgres") => {
            format!("{what} at {}:{}", o.get_host(), o.get_port())
        }
        _ => what,
    }
}
