//! Group commit for issued certificates.
//!
//! Issuing is CPU work; recording the certificate is a database write. Under load, writing each one on
//! its own spends more on the write (a statement, a commit, thread hand-offs to SQLite's worker or a
//! round trip to PostgreSQL) than on the certificate. [`CertBatcher`] lets every request wait for its
//! own row as before, but rows that arrive while a write is in flight go out together in the next
//! statement: one commit for many certificates. Nothing is acknowledged before it is committed.
//!
//! The queue both batch writers use ([`Queue`], [`Batches`]) and the log's checkpoints are here too;
//! refresh token rotations are batched in `refresh_batch.rs`.

use tokio::sync::{mpsc, oneshot};

use crate::{CertRow, Store, StoreError, StoreKind, insert_certificates, wal_checkpoint};

/// The most rows written in one statement (11 parameters each, far below SQLite's and PostgreSQL's
/// limits).
const MAX_BATCH: usize = 64;

/// Records issued certificates through one background writer that commits them in batches.
///
/// Cheap to clone. The writer task stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct CertBatcher {
    queue: Queue<CertRow, ()>,
}

impl CertBatcher {
    /// Starts the writer on the current tokio runtime.
    pub fn spawn(store: Store) -> Self {
        let (queue, rx) = Queue::new(MAX_BATCH);
        tokio::spawn(write_batches(store, rx));
        Self { queue }
    }

    /// Records `row`; returns once it is committed (alone or with others).
    pub async fn add(&self, row: CertRow) -> Result<(), StoreError> {
        self.queue.call(row).await
    }
}

/// A request to a batch writer, with where its answer goes.
pub(crate) type Waiting<T, A> = (T, oneshot::Sender<Result<A, StoreError>>);

/// The callers' side of a batch writer: each call queues its request and waits for its own answer.
#[derive(Debug)]
pub(crate) struct Queue<T, A> {
    tx: mpsc::Sender<Waiting<T, A>>,
}

impl<T, A> Clone for Queue<T, A> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T, A> Queue<T, A> {
    /// A queue for batches of at most `max` and the writer's end of it.
    pub(crate) fn new(max: usize) -> (Self, Batches<T, A>) {
        let (tx, rx) = mpsc::channel(4 * max);
        (Self { tx }, Batches { rx, max })
    }

    /// Queues `req`; returns the writer's answer to it.
    pub(crate) async fn call(&self, req: T) -> Result<A, StoreError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send((req, done))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// The writer's side: the next batch of waiting requests.
pub(crate) struct Batches<T, A> {
    rx: mpsc::Receiver<Waiting<T, A>>,
    max: usize,
}

impl<T, A> Batches<T, A> {
    /// Fills `batch` (empty) with the next requests; `false` once every caller's side is dropped.
    pub(crate) async fn next(&mut self, batch: &mut Vec<Waiting<T, A>>) -> bool {
        if self.rx.recv_many(batch, self.max).await == 0 {
            return false;
        }
        // Let the requests being served right now reach the queue first: under load they share the
        // commit (tokio would otherwise run the writer, woken by the first, right after it); when
        // idle, this returns at once.
        tokio::task::yield_now().await;
        while batch.len() < self.max
            && let Ok(p) = self.rx.try_recv()
        {
            batch.push(p);
        }
        true
    }
}

async fn write_batches(store: Store, mut rx: Batches<CertRow, ()>) {
    let mut batch: Vec<Waiting<CertRow, ()>> = Vec::with_capacity(MAX_BATCH);
    // The writer keeps one connection: its prepared statements and SQLite's page cache of the
    // certificate table and indexes stay valid between batches (a pooled connection that another one
    // wrote behind finds its cache stale and reads the pages again). After an error it takes a new one.
    let mut conn: Option<sqlx::AnyConnection> = None;
    let mut checkpoints = Checkpoints::default();
    while rx.next(&mut batch).await {
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
