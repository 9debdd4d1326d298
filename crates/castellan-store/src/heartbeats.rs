//! Replica heartbeats: each replica records, by its id, when it last refreshed and the key ring it
//! serves; an emergency rotation reads the live ones (by time, indexed) before a new key signs.

use super::*;

impl Store {
    /// Records (or replaces) a replica's heartbeat.
    pub async fn beat(&self, hb: &Heartbeat) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO replica_heartbeats (replica_id, seen_at_ms, every_ms, fingerprint, kids) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (replica_id) DO UPDATE SET \
             seen_at_ms = excluded.seen_at_ms, every_ms = excluded.every_ms, \
             fingerprint = excluded.fingerprint, kids = excluded.kids",
        )
        .bind(&hb.replica_id)
        .bind(hb.seen_at_ms)
        .bind(hb.every_ms)
        .bind(&hb.fingerprint)
        .bind(&hb.kids)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    /// The heartbeats recorded at or after `since_ms`, by replica id (at most `limit`).
    pub async fn heartbeats_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<Heartbeat>, StoreError> {
        let rows = sqlx::query(
            "SELECT replica_id, seen_at_ms, every_ms, fingerprint, kids FROM replica_heartbeats \
             WHERE seen_at_ms >= $1 ORDER BY replica_id LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Heartbeat {
                    replica_id: r.try_get("replica_id")?,
                    seen_at_ms: r.try_get("seen_at_ms")?,
                    every_ms: r.try_get("every_ms")?,
                    fingerprint: r.try_get("fingerprint")?,
                    kids: r.try_get("kids")?,
                })
            })
            .collect()
    }

    /// Removes the heartbeats older than `before_ms` (replicas long gone); returns how many.
    pub async fn prune_heartbeats(&self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM replica_heartbeats WHERE seen_at_ms < $1")
                .bind(before_ms)
                .execute(self.pool()?)
                .await?
                .rows_affected(),
        )
    }
}
