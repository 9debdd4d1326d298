//! The background jobs (key rotation, CRL rebuild, pruning the change feed), run by the one replica
//! holding the `jobs` lease. Every job is idempotent, so a replica killed mid-job loses nothing.

use std::time::Duration;

use crate::error::ServiceError;
use crate::pki;

use super::AppState;

impl AppState {
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
        if crate::keys::rotation_job(
            &self.0.store,
            &self.0.master,
            &self.0.settings.rotation,
            now,
        )
        .await?
        .is_some()
        {
            self.refresh().await?;
        }
        // The change feed is kept a day (a replica cut off longer reloads whole).
        self.0
            .store
            .prune_changes(now - super::refresh::FEED_KEPT.as_secs() as i64)
            .await?;
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
