//! Group commit for issued certificates.
//!
//! Issuing is CPU work; recording the certificate is a database write. Under load, writing each one on
//! its own spends more on the write (a statement, a commit, thread hand-offs to SQLite's worker or a
//! round trip to PostgreSQL) than on the certificate. [`CertBatcher`] lets every request wait for its
//! own row as before, but rows that arrive while a write is in flight go out together in the next
//! statement: one commit for many certificates. Nothing is acknowledged before it is committed.

use tokio::sync::{mpsc, oneshot};

use crate::{CertRow, Store, StoreError};

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
        let result = store.add_certificates(&rows).await;
        drop(rows);
        match result {
            Ok(()) => {
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some((_, done)) = batch.pop() {
                    let _ = done.send(Err(e));
                }
            }
            // One bad row (a repeated serial) fails the whole statement: write them one by one so
            // each request gets its own answer.
            Err(_) => {
                for (row, done) in batch.drain(..) {
                    let _ = done.send(store.add_certificate(&row).await);
                }
            }
        }
    }
}
