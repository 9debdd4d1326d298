//! Group commit for refresh token rotations (issue 17).
//!
//! A rotation is a few keyed statements and a commit; the two RSA signatures that follow it are the
//! rest of a refresh. Run alone, each rotation paid a pooled connection (and its ping), a transaction
//! and a hand-off to SQLite's worker thread per statement (or a round trip to PostgreSQL): about a
//! third of the server's time under load. [`RefreshBatcher`] keeps one connection and writes the
//! rotations that arrive while a batch is in flight together: one `UPDATE … RETURNING` that uses the
//! presented tokens, one read of their grants and users, one `INSERT` of the new tokens, one commit.
//! Each caller still waits for its own rotation to be committed, and gets the answer it would have
//! had from [`Store::rotate_refresh`]: the batch decides its rotations in arrival order, as if each
//! had been written alone (a token presented twice in one batch is a reuse, a family revoked by an
//! earlier rotation of the batch refuses a later one).
//!
//! A batch that fails before its commit changed nothing; its rotations are then written one by one
//! with [`Store::rotate_refresh`], so each gets its own answer (a PostgreSQL deadlock between two
//! replicas' batches, a lost connection). A failed commit is answered as an error and not retried:
//! the commit may have happened, and a retry would take the caller's own rotation for a reuse.

use std::collections::{HashMap, HashSet};

use sqlx::Connection;

use super::*;
use crate::batch::{Batches, Checkpoints, Queue, Waiting};

/// Rotations per batch at most (the largest statement binds 5 × 64 values).
const MAX_BATCH: usize = 64;

/// One presented refresh token, as [`Store::rotate_refresh`] takes it.
#[derive(Debug, Clone)]
pub struct RotateRequest {
    /// SHA-256 of the presented token.
    pub token_hash: Vec<u8>,
    /// SHA-256 of its successor.
    pub new_hash: Vec<u8>,
    /// The client presenting it.
    pub client_id: String,
    /// The successor's idle lifetime.
    pub idle_secs: i64,
    /// How long a rotated token may still be presented (0: never).
    pub grace_secs: i64,
    /// Now, in seconds.
    pub now: i64,
}

/// Rotates refresh tokens through one background writer that commits them in batches.
///
/// Cheap to clone. The writer task stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct RefreshBatcher {
    queue: Queue<RotateRequest, Rotation>,
}

impl RefreshBatcher {
    /// Starts the writer on the current tokio runtime.
    pub fn spawn(store: Store) -> Self {
        let (queue, rx) = Queue::new(MAX_BATCH);
        tokio::spawn(write_batches(store, rx));
        Self { queue }
    }

    /// Rotates one token; returns once the rotation is committed (alone or with others).
    pub async fn rotate(&self, req: RotateRequest) -> Result<Rotation, StoreError> {
        self.queue.call(req).await
    }
}

async fn write_batches(store: Store, mut rx: Batches<RotateRequest, Rotation>) {
    let mut batch: Vec<Waiting<RotateRequest, Rotation>> = Vec::with_capacity(MAX_BATCH);
    let mut conn: Option<sqlx::AnyConnection> = None;
    let mut checkpoints = Checkpoints::default();
    while rx.next(&mut batch).await {
        let reqs: Vec<&RotateRequest> = batch.iter().map(|(r, _)| r).collect();
        let c = match &mut conn {
            Some(c) => Ok(c),
            None => store.dedicated().await.map(|c| conn.insert(c)),
        };
        let outcome = match c {
            Ok(c) => rotate_batch(c, &reqs).await,
            Err(e) => Err(Failed::BeforeCommit(e)),
        };
        drop(reqs);
        match outcome {
            Ok(answers) => {
                let n = batch.len();
                for ((_, done), a) in batch.drain(..).zip(answers) {
                    let _ = done.send(Ok(a));
                }
                if let Some(c) = conn.as_mut() {
                    checkpoints.after_commit(&store, c, 2 * n).await;
                }
            }
            Err(Failed::BeforeCommit(e)) => {
                // Nothing was written: each on its own, on the pool (the kept connection may be
                // the cause: a new one next time).
                conn = None;
                if batch.len() == 1 {
                    if let Some((_, done)) = batch.pop() {
                        let _ = done.send(Err(e));
                    }
                } else {
                    for (r, done) in batch.drain(..) {
                        let _ = done.send(
                            store
                                .rotate_refresh(
                                    &r.token_hash,
                                    &r.new_hash,
                                    &r.client_id,
                                    r.idle_secs,
                                    r.grace_secs,
                                    r.now,
                                )
                                .await,
                        );
                    }
                }
            }
            Err(Failed::Commit(e)) => {
                conn = None;
                tracing::warn!(error = %e, rotations = batch.len(), "a batch of refresh token rotations may not have been committed");
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(StoreError::Database(sqlx::Error::Protocol(
                        "the commit of a refresh token rotation failed".into(),
                    ))));
                }
            }
        }
    }
}

enum Failed {
    /// Rolled back: nothing was written.
    BeforeCommit(StoreError),
    /// The commit failed: it may or may not have happened.
    Commit(StoreError),
}

impl From<sqlx::Error> for Failed {
    fn from(e: sqlx::Error) -> Self {
        Failed::BeforeCommit(e.into())
    }
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed::BeforeCommit(e)
    }
}

/// `$from, $from+1, …` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the batch read of one presented token: its row, its grant and the grant's user.
struct Found {
    refresh: RefreshRow,
    grant: GrantRow,
    user: Option<UserRow>,
}

async fn rotate_batch(
    conn: &mut sqlx::AnyConnection,
    reqs: &[&RotateRequest],
) -> Result<Vec<Rotation>, Failed> {
    // One clock for the statements: the latest of the batch (at most a second past any request's).
    let now = reqs.iter().map(|r| r.now).max().unwrap_or_default();
    let mut tx = conn.begin().await?;
    // Writes first: on SQLite the transaction holds the write lock from here (see signin.rs).
    let sql = format!(
        "UPDATE refresh_tokens SET used_at = $1 WHERE used_at IS NULL AND expires_at > $1 \
         AND token_hash IN ({}) RETURNING token_hash",
        placeholders(2, reqs.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
    for r in reqs {
        q = q.bind(&r.token_hash);
    }
    let mut won: HashSet<Vec<u8>> = HashSet::new();
    for row in q.fetch_all(&mut *tx).await? {
        won.insert(row.try_get("token_hash")?);
    }
    let found = read_found(&mut tx, reqs).await?;

    // The rotations in arrival order, as if each had been written alone: `used` is each token's
    // `used_at` as the requests before saw it (a token the UPDATE took was unused until then).
    let mut used: HashMap<&[u8], Option<i64>> = found
        .iter()
        .map(|(h, f)| {
            let before = if won.contains(h) {
                None
            } else {
                f.refresh.used_at
            };
            (h.as_slice(), before)
        })
        .collect();
    let mut answers = Vec::with_capacity(reqs.len());
    let mut revoke: Vec<String> = Vec::new();
    let mut fresh: Vec<RefreshRow> = Vec::new();
    for r in reqs {
        let Some(f) = found.get(&r.token_hash) else {
            answers.push(Rotation::Invalid);
            continue;
        };
        let g = &f.grant;
        if g.client_id != r.client_id
            || g.revoked_at.is_some()
            || g.expires_at <= r.now
            || revoke.contains(&g.grant_id)
        {
            // Dropped, nothing written (another client's token, an ended family).
            answers.push(Rotation::Invalid);
            continue;
        }
        let seen = used.get(r.token_hash.as_slice()).copied().flatten();
        // Unused and unexpired when the batch began, and not used by a request before this one.
        let live = seen.is_none() && won.contains(&r.token_hash);
        let within_grace = r.grace_secs > 0
            && seen.is_some_and(|u| r.now - u <= r.grace_secs)
            && f.refresh.expires_at > r.now;
        if live {
            used.insert(r.token_hash.as_slice(), Some(now));
        } else if !within_grace {
            if seen.is_none() {
                answers.push(Rotation::Invalid); // expired, never used
            } else {
                revoke.push(g.grant_id.clone());
                answers.push(Rotation::Reused);
            }
            continue;
        }
        fresh.push(RefreshRow {
            token_hash: r.new_hash.clone(),
            grant_id: g.grant_id.clone(),
            created_at: r.now,
            expires_at: (r.now + r.idle_secs).min(g.expires_at),
            used_at: None,
        });
        answers.push(Rotation::Rotated {
            grant: Box::new(g.clone()),
            user: f.user.clone().map(Box::new),
        });
    }
    // Tokens the UPDATE took that no request of the batch could use: as they were.
    let unuse: Vec<&[u8]> = won
        .iter()
        .map(Vec::as_slice)
        .filter(|h| used.get(h).copied().flatten().is_none())
        .collect();
    if !unuse.is_empty() {
        let sql = format!(
            "UPDATE refresh_tokens SET used_at = NULL WHERE token_hash IN ({})",
            placeholders(1, unuse.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for h in &unuse {
            q = q.bind(*h);
        }
        q.execute(&mut *tx).await?;
    }
    if !revoke.is_empty() {
        let sql = format!(
            "UPDATE grants SET revoked_at = $1, revoked_why = 'reuse' \
             WHERE revoked_at IS NULL AND grant_id IN ({})",
            placeholders(2, revoke.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for g in &revoke {
            q = q.bind(g);
        }
        q.execute(&mut *tx).await?;
    }
    if !fresh.is_empty() {
        let rows = (0..fresh.len())
            .map(|i| format!("({})", placeholders(5 * i + 1, 5)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, used_at) VALUES {rows}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for f in &fresh {
            q = q
                .bind(&f.token_hash)
                .bind(&f.grant_id)
                .bind(f.created_at)
                .bind(f.expires_at)
                .bind(f.used_at);
        }
        q.execute(&mut *tx)
            .await
            .map_err(|e| Failed::BeforeCommit(conflict("refresh token")(e)))?;
    }
    tx.commit()
        .await
        .map_err(|e| Failed::Commit(StoreError::Database(e)))?;
    Ok(answers)
}

/// The presented tokens' rows with their grants and users, by token hash (unknown ones absent).
async fn read_found(
    tx: &mut Tx<'_>,
    reqs: &[&RotateRequest],
) -> Result<HashMap<Vec<u8>, Found>, StoreError> {
    let sql = format!(
        "SELECT r.token_hash AS r_token_hash, r.created_at AS r_created_at, \
         r.expires_at AS r_expires_at, r.used_at AS r_used_at, \
         g.grant_id, g.client_id, g.user_id, g.sid, g.scope, g.auth_time, g.amr, g.created_at, \
         g.expires_at, g.revoked_at, g.revoked_why, {} \
         FROM refresh_tokens r JOIN grants g ON g.grant_id = r.grant_id \
         LEFT JOIN users u ON u.user_id = g.user_id WHERE r.token_hash IN ({})",
        crate::users::USER_COLUMNS
            .iter()
            .map(|c| format!("u.{c} AS u_{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        placeholders(1, reqs.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in reqs {
        q = q.bind(&r.token_hash);
    }
    let mut out = HashMap::new();
    for row in q.fetch_all(&mut **tx).await? {
        let grant = crate::signin::grant_from_row(&row)?;
        let user = match row.try_get::<Option<String>, _>("u_user_id")? {
            Some(_) => Some(crate::users::user_from_row_as(&row, "u_")?),
            None => None,
        };
        let refresh = RefreshRow {
            token_hash: row.try_get("r_token_hash")?,
            grant_id: grant.grant_id.clone(),
            created_at: row.try_get("r_created_at")?,
            expires_at: row.try_get("r_expires_at")?,
            used_at: row.try_get("r_used_at")?,
        };
        out.insert(
            refresh.token_hash.clone(),
            Found {
                refresh,
                grant,
                user,
            },
        );
    }
    Ok(out)
}
