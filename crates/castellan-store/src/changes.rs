//! The change feed (migration 0005): every write to clients, signing keys and CAs records a numbered
//! [`Change`] in the same transaction, so a replica's cache follows the store by reading only what
//! changed since the number it last saw. On PostgreSQL a [`ChangeListener`] wakes replicas at the
//! commit of each change (`LISTEN/NOTIFY`); polling the feed stays the fallback, and the only way on
//! SQLite.

use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::Row;

use crate::{ClientRow, Store, StoreError, StoreKind, client_from_row};

/// The NOTIFY channel the change triggers signal on.
const CHANNEL: &str = "castellan_changes";

/// What a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A client (id: the client id).
    Client,
    /// A signing key (id: the kid).
    Key,
    /// A CA (id: the CA id).
    Ca,
    /// A kind this binary does not know (written by a newer one).
    Other,
}

/// One recorded write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its number: increasing, without gaps except where the feed was pruned.
    pub seq: i64,
    /// What it touched.
    pub kind: ChangeKind,
    /// The id of the row it touched (inserted, updated or deleted: read the row to know which).
    pub id: String,
}

impl Store {
    /// The number of the newest change (0 before any). Read it before loading a cache whole, then
    /// follow the feed from it: a change made while loading is applied again, which is harmless.
    pub async fn change_head(&self) -> Result<i64, StoreError> {
        let sql = match self.kind {
            StoreKind::Sqlite => {
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)"
            }
            StoreKind::Postgres => "SELECT seq FROM change_seq WHERE id = 1",
        };
        let (seq,): (i64,) = sqlx::query_as(sql).fetch_one(self.pool()?).await?;
        Ok(seq)
    }

    /// At most `limit` changes after `after`, oldest first.
    pub async fn changes_since(&self, after: i64, limit: i64) -> Result<Vec<Change>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, kind, id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(self.pool()?)
                .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                Ok(Change {
                    seq: r.try_get("seq")?,
                    kind: match kind.as_str() {
                        "client" => ChangeKind::Client,
                        "key" => ChangeKind::Key,
                        "ca" => ChangeKind::Ca,
                        _ => ChangeKind::Other,
                    },
                    id: r.try_get("id")?,
                })
            })
            .collect()
    }

    /// Removes changes recorded before `before` (unix seconds), always keeping the newest; returns how
    /// many went. A replica that had not read them yet sees a gap and reloads whole.
    pub async fn prune_changes(&self, before: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM changes WHERE at < $1 AND seq < (SELECT MAX(seq) FROM changes)",
        )
        .bind(before)
        .execute(self.pool()?)
        .await?
        .rows_affected())
    }

    /// Calls `each` with every client, read as a stream (the whole table is never held twice).
    pub async fn each_client(&self, mut each: impl FnMut(ClientRow)) -> Result<(), StoreError> {
        let mut rows =
            sqlx::query(concat!(client_select!(), " ORDER BY client_id")).fetch(self.pool()?);
        while let Some(row) = rows.try_next().await? {
            each(client_from_row(&row)?);
        }
        Ok(())
    }

    /// A listener for change notifications: `Some` on PostgreSQL, `None` on SQLite (poll instead).
    pub fn change_listener(&self) -> Option<ChangeListener> {
        match self.kind {
            StoreKind::Postgres => Some(ChangeListener {
                url: self.url.clone(),
                listener: None,
            }),
            StoreKind::Sqlite => None,
        }
    }
}

/// Waits for change notifications on PostgreSQL, connecting (and reconnecting) by itself.
pub struct ChangeListener {
    url: crate::Url,
    listener: Option<sqlx::postgres::PgListener>,
}

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeListener")
            .field("connected", &self.listener.is_some())
            .finish()
    }
}

/// What [`ChangeListener::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A change was committed.
    Changed,
    /// The listening connection was (re)established or lost: notifications may have been missed, so
    /// the caller should read the feed now.
    Reconnected,
}

impl ChangeListener {
    /// Waits for the next notification. Errors (the store unreachable) are returned after a short
    /// pause, so a caller looping on this does not spin; the next call connects again.
    pub async fn wait(&mut self) -> Result<Wake, StoreError> {
        let listener = match &mut self.listener {
            Some(l) => l,
            None => {
                let connected = async {
                    let mut l = sqlx::postgres::PgListener::connect(self.url.as_str()).await?;
                    l.listen(CHANNEL).await?;
                    Ok::<_, sqlx::Error>(l)
                }
                .await;
                match connected {
                    Ok(l) => {
                        self.listener = Some(l);
                        return Ok(Wake::Reconnected);
                    }
                    Err(e) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        return Err(e.into());
                    }
                }
            }
        };
        match listener.try_recv().await {
            Ok(Some(_)) => Ok(Wake::Changed),
            // The connection was lost; the next call reconnects (and listens again) by itself.
            Ok(None) => Ok(Wake::Reconnected),
            Err(e) => {
                self.listener = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
                Err(e.into())
            }
        }
    }
}
