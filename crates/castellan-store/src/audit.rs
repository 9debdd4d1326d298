//! The audit trail: events appended in batches (one transaction each), listed by time, actor and
//! action, read chain by chain for verification, and pruned behind a checkpoint.

use castellan_core::audit::{AuditEvent, Pin};

use super::*;

/// Rows per INSERT statement (12 binds each, well below either backend's limit).
const ROWS_PER_INSERT: usize = 64;

/// What `audit list` and `GET /v1/audit` ask for.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events at or after this time, milliseconds since the epoch.
    pub since_ms: Option<i64>,
    /// Events whose actor is this, or starts with it followed by a space (`client:cl_a` matches
    /// `client:cl_a` and `user:u_b via client:cl_a` does not).
    pub actor: Option<String>,
    /// Events whose action is this, or starts with it (`GET /v1/secrets` matches the secrets routes).
    pub action: Option<String>,
    /// One replica's events.
    pub replica: Option<String>,
    /// At most this many (the newest last).
    pub limit: i64,
}

/// A signed checkpoint of one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    /// The replica.
    pub replica: String,
    /// The seq it pins.
    pub seq: i64,
    /// That event's hash.
    pub hash: String,
    /// When it was signed, milliseconds since the epoch.
    pub at_ms: i64,
    /// The compact JWS (claims: replica, seq, hash, at_ms) by a key of the key ring.
    pub jws: String,
}

const EVENT_COLUMNS: &str = "replica_id, seq, at_ms, actor, source, action, object, result, reason, \
                             detail, prev_hash, hash";

fn event(r: &AnyRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        replica: r.try_get("replica_id")?,
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at_ms")?,
        actor: r.try_get("actor")?,
        source: r.try_get("source")?,
        action: r.try_get("action")?,
        object: r.try_get("object")?,
        result: r.try_get("result")?,
        reason: r.try_get("reason")?,
        detail: r.try_get("detail")?,
        prev: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

impl Store {
    /// Appends linked events in one transaction: all are stored or none. A seq already taken is a
    /// [`StoreError::Conflict`] (two writers on one chain).
    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool()?.begin().await?;
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut sql = format!("INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                for c in 0..12 {
                    if c > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("${}", i * 12 + c + 1));
                }
                sql.push(')');
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(&e.replica)
                    .bind(e.seq)
                    .bind(e.at_ms)
                    .bind(&e.actor)
                    .bind(&e.source)
                    .bind(&e.action)
                    .bind(&e.object)
                    .bind(&e.result)
                    .bind(&e.reason)
                    .bind(&e.detail)
                    .bind(&e.prev)
                    .bind(&e.hash);
            }
            q.execute(&mut *tx).await.map_err(conflict("audit event"))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The last event of `replica`'s chain (where a restarted replica continues).
    pub async fn audit_head(&self, replica: &str) -> Result<Option<Pin>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, hash FROM audit_events WHERE replica_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(replica)
        .fetch_optional(self.pool()?)
        .await?;
        let from_events = match row {
            Some(r) => Some(Pin {
                seq: r.try_get("seq")?,
                hash: r.try_get("hash")?,
            }),
            None => None,
        };
        if from_events.is_some() {
            return Ok(from_events);
        }
        // Everything pruned: the chain continues from its newest checkpoint.
        Ok(self.audit_checkpoints(replica).await?.pop().map(|c| Pin {
            seq: c.seq,
            hash: c.hash,
        }))
    }

    /// Events matching `f`, oldest first (the newest `f.limit`).
    pub async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let actor_prefix = f.actor.as_ref().map(|a| format!("{} %", like_escape(a)));
        let action_prefix = f.action.as_ref().map(|a| format!("{}%", like_escape(a)));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE at_ms >= $1 \
             AND ($2 = '' OR actor = $2 OR actor LIKE $3 ESCAPE '\\') \
             AND ($4 = '' OR action LIKE $4 ESCAPE '\\') AND ($5 = '' OR replica_id = $5) \
             ORDER BY at_ms DESC, replica_id DESC, seq DESC LIMIT $6"
        )))
        .bind(f.since_ms.unwrap_or(0))
        .bind(f.actor.clone().unwrap_or_default())
        .bind(actor_prefix.unwrap_or_default())
        .bind(action_prefix.unwrap_or_default())
        .bind(f.replica.clone().unwrap_or_default())
        .bind(f.limit.clamp(1, 100_000))
        .fetch_all(self.pool()?)
        .await?;
        let mut out = rows.iter().map(event).collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Every replica with events or checkpoints, by name.
    pub async fn audit_replicas(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT replica_id FROM audit_events UNION SELECT replica_id FROM audit_checkpoints \
             ORDER BY 1",
        )
        .fetch_all(self.pool()?)
        .await?;
        Ok(rows.into_iter().map(|(r,)| r).collect())
    }

    /// One replica's events by seq (for verification).
    pub async fn audit_chain(&self, replica: &str) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE replica_id = $1 ORDER BY seq"
        )))
        .bind(replica)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter().map(event).collect()
    }

    /// Records a checkpoint.
    pub async fn add_audit_checkpoint(&self, c: &AuditCheckpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (replica_id, seq, hash, at_ms, jws) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&c.replica)
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.at_ms)
        .bind(&c.jws)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    /// One replica's checkpoints by seq.
    pub async fn audit_checkpoints(
        &self,
        replica: &str,
    ) -> Result<Vec<AuditCheckpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT replica_id, seq, hash, at_ms, jws FROM audit_checkpoints WHERE replica_id = $1 \
             ORDER BY seq",
        )
        .bind(replica)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditCheckpoint {
                    replica: r.try_get("replica_id")?,
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    at_ms: r.try_get("at_ms")?,
                    jws: r.try_get("jws")?,
                })
            })
            .collect()
    }

    /// Retention: removes `replica`'s events older than `before_ms`, up to and including its newest
    /// checkpoint older than that (which stays, as where the chain now starts), and the checkpoints
    /// before it. Returns how many events were removed.
    pub async fn prune_audit(&self, replica: &str, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let anchor: Option<(i64,)> = sqlx::query_as(
            "SELECT seq FROM audit_checkpoints WHERE replica_id = $1 AND at_ms < $2 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(replica)
        .bind(before_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((seq,)) = anchor else {
            return Ok(0);
        };
        let n = sqlx::query("DELETE FROM audit_events WHERE replica_id = $1 AND seq <= $2")
            .bind(replica)
            .bind(seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM audit_checkpoints WHERE replica_id = $1 AND seq < $2")
            .bind(replica)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// `s` with LIKE's wildcards escaped (`\` is the escape character).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
