//! Group commit for issued certificates.
//!
//! Issuing is CPU work; recording the certificate is a database write. Under load, writing each one on
//! its own spends more on the write (a statement, a commit, thread hand-offs to SQLite's worker or a
//! round trip to PostgreSQL) than on the certificate. [`CertBatcher`] lets every request wait for its
//! own row as before, but rows that arrive while a write is in flight go out together in the next
//! statement: one commit for many certificates. Nothing is acknowledged before it is committed.

use tokio::sync::{mpsc, oneshot};

use crate::{CertRow, Store, StoreError, StoreKind, insert_certificates, wal_checkpoint};

/// The most rows written in one statement (11 parameters each, far below SQLite's and PostgreSQL's
/// limits).
const MAX_BATCH: usize = 64;

type Pending = (CertRow, oneshot::Sender<Result<(), StoreError>>);

/// Records issued certificates through one background writer that commits them in batches.
///
/// Cheap to clone. The writer task stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct CertBatcher {
    tx: mpsc::Sender<Pending>,
}

impl CertBatcher {
    /// Starts the writer on the current tokio runtime.
    pub fn spawn(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(store, rx));
        Self { tx }
    }

    /// Records `row`; returns once it is committed (alone or with others).
    pub async fn add(&self, row: CertRow) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.tx
            .send((row, done))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        result.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    // The writer keeps one connection: its prepared statements and SQLite's page cache of the
    // certificate table and indexes stay valid between batches (a pooled connection that another one
    // wrote behind finds its cache stale and reads the pages again). After an error it takes a new one.
    let mut conn: Option<sqlx::AnyConnection> = None;
    let mut checkpoints = Checkpoints::default();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Let the requests being served right now reach the queue first: under load they share the
        // commit; when idle, this returns at once.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH
            && let Ok(p) = rx.try_recv()
        {
            batch.push(p);
        }
        let rows: Vec<&CertRow> = batch.iter().map(|(row, _)| row).collect();
        let kept = conn.is_some();
        let mut result = insert_on(&store, &mut conn, &rows).await;
        if kept && matches!(result, Err(StoreError::Database(_))) {
            // The kept connection may be gone (the database restarted, failed over or closed it
            // while idle): the pool would have noticed on acquire; here the batch tells. Once
            // more on a new connection. (Had the first attempt committed before the connection
            // died, the retry meets its own serials and those requests get a conflict error: their
            // certificates are recorded but not handed out, which is safe.)
            conn = None;
            result = insert_on(&store, &mut conn, &rows).await;
        }
        drop(rows);
        match result {
            Ok(()) => {
                let n = batch.len();
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Ok(()));
                }
                if let Some(c) = conn.as_mut() {
                    checkpoints.after_commit(&store, c, n).await;
                }
            }
            Err(e) => {
                conn = None;
                if batch.len() == 1 {
                    if let Some((_, done)) = batch.pop() {
                        let _ = done.send(Err(e));
                    }
                } else {
                    // One bad row (a repeated serial) fails the whole statement: write them one by
                    // one so each request gets its own answer.
                    for (row, done) in batch.drain(..) {
                        let _ = done.send(store.add_certificate(&row).await);
                    }
                }
            }
        }
    }
}

/// Inserts `rows` on the kept connection, taking a new one first if there is none.
async fn insert_on(
    store: &Store,
    conn: &mut Option<sqlx::AnyConnection>,
    rows: &[&CertRow],
) -> Result<(), StoreError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(store.dedicated().await?),
    };
    insert_certificates(c, rows).await
}

/// Rows committed between checkpoints: about what SQLite's default threshold (1,000 pages of log)
/// holds of certificate rows, each of which dirties a page of the serial index and a kilobyte of table.
const CHECKPOINT_ROWS: usize = 512;

/// Checkpoints of the write-ahead log, kept out of the writer's commits.
///
/// SQLite's own checkpoint runs inside the commit that crosses its threshold: that commit, and every
/// request waiting for the next one, waits for the copy into the database file and its fsync. Here
/// the bulk of the copy runs on another connection while the writer goes on committing; then the
/// writer copies the few pages committed meanwhile itself, so the checkpoint completes and the next
/// commit starts the log from its beginning again (without that last step the log would only grow).
#[derive(Default)]
pub(crate) struct Checkpoints {
    rows: usize,
    copying: Option<oneshot::Receiver<()>>,
}

impl Checkpoints {
    /// Called by the writer after it committed (and answered) `rows` rows on `conn`.
    pub(crate) async fn after_commit(
        &mut self,
        store: &Store,
        conn: &mut sqlx::AnyConnection,
        rows: usize,
    ) {
        if store.kind() != StoreKind::Sqlite {
            return;
        }
        self.rows += rows;
        if let Some(copying) = &mut self.copying {
            if let Err(oneshot::error::TryRecvError::Empty) = copying.try_recv() {
                return;
            }
            self.copying = None;
            self.rows = 0;
            warn_if_failed(wal_checkpoint(conn).await);
        } else if self.rows >= CHECKPOINT_ROWS {
            let (done, copying) = oneshot::channel();
            let store = store.clone();
            tokio::spawn(async move {
                warn_if_failed(wal_checkpoint(&store.pool).await);
                let _ = done.send(());
            });
            self.copying = Some(copying);
        }
    }
}

/// A failed checkpoint loses nothing (the pages stay in the log); the next one copies them.
fn warn_if_failed(result: Result<(), StoreError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "checkpoint of the certificate store failed; retrying later");
    }
}
