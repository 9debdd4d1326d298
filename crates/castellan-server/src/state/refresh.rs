//! Following the store: each refresh reads the change feed after the last change applied here and
//! re-reads only the rows it names (a client by id; the key ring or the CA when one of theirs
//! changed), so its cost is the change's, not the store's. On PostgreSQL a notification wakes the
//! refresh at once; the poll every `refresh_interval` stays, and is the only way on SQLite. A gap in
//! the feed (pruned past this replica) or a long cut-off reloads everything once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use castellan_store::{ChangeKind, Heartbeat};

use super::{AppState, load_clients, loaded};
use crate::error::ServiceError;
use crate::pki;

/// Changes read per query.
const BATCH: i64 = 10_000;

/// How long the store keeps changes (pruned by the jobs); a replica that has not read the feed for
/// half of it reloads whole instead.
pub(crate) const FEED_KEPT: Duration = Duration::from_secs(24 * 3600);

/// What a run of the feed asks to re-read.
#[derive(Default)]
struct Touched {
    clients: BTreeSet<String>,
    ring: bool,
    ca: bool,
    /// The feed has a gap after what this replica saw: it was pruned, reload whole.
    gap: bool,
    /// The number of the last change read.
    last: i64,
}

impl AppState {
    /// Brings the cache up to the store: the changes since the last one applied, or everything when
    /// the feed cannot say what changed. One at a time, in order.
    pub async fn refresh(&self) -> Result<(), ServiceError> {
        let _one_at_a_time = self.0.refreshing.lock().await;
        let cut_off = self
            .0
            .caught_up
            .lock()
            .map(|t| t.elapsed() > FEED_KEPT / 2)
            .unwrap_or(true);
        let seen = self.0.seen.load(Ordering::Acquire);
        let touched = if cut_off {
            None
        } else {
            Some(self.read_feed(seen).await?).filter(|t| !t.gap)
        };
        match touched {
            Some(t) => self.apply(t, seen).await?,
            None => self.reload_all().await?,
        }
        if let Ok(mut t) = self.0.caught_up.lock() {
            *t = Instant::now();
        }
        Ok(())
    }

    async fn read_feed(&self, seen: i64) -> Result<Touched, ServiceError> {
        let mut t = Touched {
            last: seen,
            ..Touched::default()
        };
        loop {
            let batch = self.0.store.changes_since(t.last, BATCH).await?;
            if let Some(first) = batch.first()
                && first.seq != t.last + 1
            {
                t.gap = true;
                return Ok(t);
            }
            for c in &batch {
                match c.kind {
                    ChangeKind::Client => {
                        t.clients.insert(c.id.clone());
                    }
                    ChangeKind::Key => t.ring = true,
                    ChangeKind::Ca => t.ca = true,
                    _ => {}
                }
                t.last = c.seq;
            }
            if (batch.len() as i64) < BATCH {
                return Ok(t);
            }
        }
    }

    async fn apply(&self, t: Touched, seen: i64) -> Result<(), ServiceError> {
        let now = self.now();
        // A key past its removal time leaves the published ring without any write to the store.
        let expired = self
            .ring()
            .ring
            .keys()
            .iter()
            .any(|k| k.remove_at.is_some_and(|at| at <= now));
        if t.ring || expired {
            self.reload_ring().await?;
        }
        if t.ca {
            self.reload_ca().await?;
        }
        let mut rows = Vec::with_capacity(t.clients.len());
        for id in t.clients {
            let row = self.0.store.client(&id).await?.map(Arc::new);
            rows.push((id, row));
        }
        let mut map = match self.0.clients.write() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        for (id, row) in rows {
            match row {
                Some(row) => {
                    if let Ok(mut m) = self.0.unknown_clients.lock() {
                        m.remove(&id);
                    }
                    map.insert(id, row);
                }
                None => {
                    map.remove(&id);
                }
            }
        }
        // Under the clients' lock, so a look-up that read the store before this cannot put back
        // what was just removed (see `cache_client_read_at`).
        if t.last != seen {
            self.0.seen.store(t.last, Ordering::Release);
        }
        Ok(())
    }

    /// Everything again: the key ring, every client (streamed) and the CA.
    async fn reload_all(&self) -> Result<(), ServiceError> {
        let head = self.0.store.change_head().await?;
        self.reload_ring().await?;
        self.reload_ca().await?;
        let clients = load_clients(&self.0.store).await?;
        let mut map = match self.0.clients.write() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        *map = clients;
        self.0.seen.store(head, Ordering::Release);
        tracing::info!(clients = map.len(), seq = head, "reloaded the cache whole");
        Ok(())
    }

    async fn reload_ring(&self) -> Result<(), ServiceError> {
        let previous = self.ring();
        let ring = crate::keys::load_key_ring(
            &self.0.store,
            &self.0.master,
            self.0.clock.now(),
            Some(&previous.ring),
        )
        .await?;
        // The JWKS fingerprint does not change when only a key's times do (an emergency rotation
        // moves a published key's activation to now): compare the schedule too.
        let schedule = |r: &castellan_core::token::KeyRing| {
            r.keys()
                .iter()
                .map(|k| (k.key.kid().to_owned(), k.activate_at, k.remove_at))
                .collect::<Vec<_>>()
        };
        if ring.fingerprint() != previous.ring.fingerprint()
            || schedule(&ring) != schedule(&previous.ring)
        {
            tracing::info!(
                fingerprint = ring.fingerprint(),
                keys = ring.keys().len(),
                "key ring changed"
            );
            let l = Arc::new(loaded(ring)?);
            if let Ok(mut w) = self.0.ring.write() {
                *w = l;
            }
        }
        Ok(())
    }

    async fn reload_ca(&self) -> Result<(), ServiceError> {
        if pki::active_ca_id(&self.0.store).await?.as_deref() != Some(self.ca().id.as_str()) {
            let ca = pki::load_ca(
                &self.0.store,
                &self.0.master,
                self.0.settings.crl_url.as_deref(),
            )
            .await?;
            tracing::info!(ca = %ca.id, subject = ca.issuer.ca_subject(), "issuing CA changed");
            if let Ok(mut w) = self.0.ca.write() {
                *w = Arc::new(ca);
            }
        }
        Ok(())
    }

    /// Records this replica's heartbeat in the store (see [`crate::emergency`]): the time, its refresh
    /// interval and the key ring it serves (the JWKS fingerprint and kids). Written when the ring
    /// changed since the last one, else at most twice per `refresh_interval`.
    pub async fn heartbeat(&self) -> Result<(), ServiceError> {
        let ring = self.ring();
        let fingerprint = ring.ring.fingerprint().to_owned();
        let every = self.0.settings.refresh_interval;
        let due = self.0.last_beat.lock().map_or(true, |last| match &*last {
            Some((at, fp)) => *fp != fingerprint || at.elapsed() >= every / 2,
            None => true,
        });
        if !due {
            return Ok(());
        }
        let kids: Vec<&str> = ring.ring.keys().iter().map(|k| k.key.kid()).collect();
        self.0
            .store
            .beat(&Heartbeat {
                replica_id: self.0.settings.replica_id.clone(),
                seen_at_ms: crate::emergency::wall_ms(),
                every_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX),
                fingerprint: fingerprint.clone(),
                kids: kids.join(" "),
            })
            .await?;
        if let Ok(mut last) = self.0.last_beat.lock() {
            *last = Some((Instant::now(), fingerprint));
        }
        Ok(())
    }

    /// Refreshes every `refresh_interval`, and at once when the store signals a change (PostgreSQL),
    /// until the task is aborted; keeps the last good state on error.
    pub fn spawn_refresh(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            // Aborted with this task: the guard drops the listener's task with it.
            let _listener = state.0.store.change_listener().map(|mut listener| {
                let waker = state.clone();
                AbortOnDrop(tokio::spawn(async move {
                    loop {
                        match listener.wait().await {
                            Ok(_) => waker.0.wake.notify_one(),
                            Err(e) => {
                                tracing::debug!(error = %e, "change notifications unavailable; polling")
                            }
                        }
                    }
                }))
            });
            let mut tick = tokio::time::interval(state.0.settings.refresh_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            if let Err(e) = state.heartbeat().await {
                tracing::debug!(error = %e, "heartbeat not recorded");
            }
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = state.0.wake.notified() => {}
                }
                match state.refresh().await {
                    Ok(()) => {
                        if let Err(e) = state.heartbeat().await {
                            tracing::debug!(error = %e, "heartbeat not recorded");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refresh from the store failed; serving the last loaded key ring")
                    }
                }
            }
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
