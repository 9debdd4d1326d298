//! The background jobs (key rotation, CRL rebuild, pruning the change feed and ended sign-in state), run by the one replica
//! holding the `jobs` lease. Every job is idempotent, so a replica killed mid-job loses nothing.

use std::time::Duration;

use crate::error::ServiceError;
use crate::pki;

use super::AppState;

/// How often the store is checked, and how long its answer may take: an outage is known (and calls
/// that need the store refused at once) within about 1.5 s of its start, and its end within 0.5 s.
pub const STORE_PROBE_EVERY: Duration = Duration::from_millis(500);
/// See [`STORE_PROBE_EVERY`].
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl AppState {
    /// Checks the store every [`STORE_PROBE_EVERY`] (see [`castellan_store::Store::probe`]): while it
    /// is unreachable, calls that need it answer 503 with `Retry-After` at once instead of waiting out
    /// the pool's time-out, and tokens for the clients in memory are still issued. Logs the start of an
    /// outage with its cause, and its end; the end also wakes the refresh, to catch up at once.
    pub fn spawn_store_probe(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STORE_PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut down = false;
            loop {
                tick.tick().await;
                let answer = state
                    .0
                    .store
                    .probe(STORE_PROBE_TIMEOUT, state.0.clock.now())
                    .await;
                match answer {
                    Err(e) if !down => {
                        down = true;
                        tracing::error!(error = %e, "the store is unreachable: calls that need it get 503 until it answers; tokens for the clients in memory are still issued");
                    }
                    Ok(()) if down => {
                        down = false;
                        tracing::info!("the store answers again");
                        state.0.wake.notify_one();
                    }
                    _ => {}
                }
            }
        })
    }

    /// Runs the background jobs (key rotation, CRL rebuild before its nextUpdate) on the one replica holding the
    /// `jobs` lease in the store; every job is idempotent, so a replica killed mid-job loses nothing.
    pub fn spawn_jobs(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            // Often enough that a due rotation is never late by more than a quarter of prepublish.
            let every = (state.0.settings.rotation.prepublish / 4).clamp(1, 30);
            let mut tick = tokio::time::interval(Duration::from_secs(every.unsigned_abs()));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = state.run_jobs().await {
                    tracing::warn!(error = %e, "background job failed; it will run again");
                }
            }
        })
    }

    /// One round of background jobs, if this replica holds the lease.
    pub async fn run_jobs(&self) -> Result<bool, ServiceError> {
        let now = self.0.clock.now();
        if !self
            .0
            .store
            .try_lease("jobs", &self.0.settings.replica_id, now, 90)
            .await?
        {
            return Ok(false);
        }
        if let Some(kid) = crate::keys::rotation_job(
            &self.0.store,
            &self.0.master,
            &self.0.settings.rotation,
            now,
        )
        .await?
        {
            let p = crate::audit::Pending::new(
                "castellan",
                "keys.rotate",
                format!("kid {kid}"),
                castellan_core::audit::Outcome::Allowed,
            );
            self.0
                .audit
                .record(p.detail(serde_json::json!({"scheduled": true})));
            self.refresh().await?;
        }
        // The change feed is kept a day (a replica cut off longer reloads whole).
        self.0
            .store
            .prune_changes(now - super::refresh::FEED_KEPT.as_secs() as i64)
            .await?;
        // Upstream sign-ins under way, an hour after they expired.
        self.0.store.prune_upstream_logins(now, 3600).await?;
        // Heartbeats of replicas gone for a day.
        self.0
            .store
            .prune_heartbeats(crate::emergency::wall_ms() - 86_400_000)
            .await?;
        // Sign-in state (codes, sessions, refresh families, failure counters) ended a day ago.
        self.0.store.prune_signin(now, 86_400).await?;
        pki::current_crl(
            &self.0.store,
            &self.ca(),
            now,
            self.0.settings.crl_validity_secs,
            self.0.settings.crl_validity_secs / 2,
        )
        .await?;
        Ok(true)
    }
}
