//! Emergency rotation (`keys rotate --now`) without a window in which a replica signs with a key that
//! another live replica does not yet publish.
//!
//! 1. The new key is inserted as `next` (published, signing at the usual `prepublish` from now), so
//!    every replica's JWKS gains it at its next refresh: at once on PostgreSQL (the change feed's
//!    notification), within `refresh_interval` otherwise.
//! 2. The rotation waits, at most [`EmergencyOptions::wait`], until every live replica's heartbeat (see
//!    `AppState::heartbeat`) reports a ring that holds the new kid. A heartbeat is live while it is
//!    younger than [`LIVE_BEATS`] of its replica's intervals; an older one is a replica that is gone
//!    and is ignored.
//! 3. Only then is the key's `activate_at` set to now, and replicas switch at their next refresh.
//!
//! A replica that lags past the bound is named (id, fingerprint, when it was last seen). Without
//! `force` nothing signs with the new key: it stays `next` (it signs at its scheduled time like any
//! rotation), and running `rotate --now` again resumes the wait for the same key. With `force` the key
//! signs at once anyway, and verifiers fetching the JWKS from the laggard fail until it refreshes.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use castellan_core::Clock;
use castellan_core::envelope::MasterKey;
use castellan_core::token::rotation::{self, Policy};
use castellan_store::{Heartbeat, Store};

use crate::error::ServiceError;
use crate::keys::{KeyInfo, current_row, info, insert_next, scheduled};

/// How long an emergency rotation waits for the replicas by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// A heartbeat is live while it is younger than this many of its replica's intervals.
pub const LIVE_BEATS: i64 = 3;

/// The shortest interval a heartbeat is judged by (a replica refreshing very often may still be
/// a little late with one beat).
const MIN_EVERY_MS: i64 = 500;

/// The most heartbeats read (replicas of one store).
const MAX_REPLICAS: i64 = 1000;

/// How an emergency rotation treats replicas.
#[derive(Debug, Clone, Copy)]
pub struct EmergencyOptions {
    /// How long to wait for every live replica to publish the new key.
    pub wait: Duration,
    /// Sign with the new key after `wait` even if a replica still does not publish it.
    pub force: bool,
}

impl Default for EmergencyOptions {
    fn default() -> Self {
        Self {
            wait: DEFAULT_WAIT,
            force: false,
        }
    }
}

/// Milliseconds since the epoch on this machine's clock (heartbeats are judged by wall time).
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether a heartbeat recorded by a replica still running (see [`LIVE_BEATS`]).
pub fn is_live(hb: &Heartbeat, now_ms: i64) -> bool {
    now_ms - hb.seen_at_ms <= LIVE_BEATS * hb.every_ms.max(MIN_EVERY_MS)
}

/// The live replicas whose key ring does not hold `kid`.
pub async fn lagging(store: &Store, kid: &str) -> Result<Vec<Heartbeat>, ServiceError> {
    let now_ms = wall_ms();
    // Nothing older than an hour can be live at any interval a replica accepts.
    let beats = store
        .heartbeats_since(now_ms - 3_600_000, MAX_REPLICAS)
        .await?;
    Ok(beats
        .into_iter()
        .filter(|hb| is_live(hb, now_ms) && !hb.kids.split(' ').any(|k| k == kid))
        .collect())
}

fn describe(lagging: &[Heartbeat], kid: &str, now_ms: i64) -> String {
    lagging
        .iter()
        .map(|hb| {
            format!(
                "replica `{}` serves key ring {} ({} key(s), without {kid}; last seen {:.1} s ago)",
                hb.replica_id,
                hb.fingerprint.get(..16).unwrap_or(&hb.fingerprint),
                hb.kids.split(' ').filter(|k| !k.is_empty()).count(),
                (now_ms - hb.seen_at_ms).max(0) as f64 / 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `keys rotate --now`: the emergency path (see the module documentation). Returns the new key, as
/// `current` once it signs.
pub async fn rotate_now(
    store: &Store,
    master: &MasterKey,
    policy: &Policy,
    clock: &dyn Clock,
    opts: EmergencyOptions,
) -> Result<KeyInfo, ServiceError> {
    let now = clock.now();
    let (rows, cur) = current_row(store, now).await?;
    let guard = marker(&cur.kid);
    // A rotation that timed out earlier left its key `next`: wait for that one again.
    let pending = match store.meta(&guard).await? {
        Some(kid) if rows.iter().any(|r| r.kid == kid && r.activate_at > now) => kid,
        Some(_) => {
            return Err(ServiceError::Conflict(format!(
                "an emergency rotation of the current key ({})",
                cur.kid
            )));
        }
        None => {
            let activate_at = now + policy.prepublish;
            let removals = rotation::removals_for(&scheduled(&rows), activate_at, policy);
            insert_next(store, master, &cur, activate_at, removals, &guard, now)
                .await?
                .ok_or_else(|| {
                    ServiceError::Conflict(format!(
                        "an emergency rotation of the current key ({})",
                        cur.kid
                    ))
                })?
        }
    };
    sign_when_published(store, clock, &pending, opts, "castellan keys rotate --now").await
}

/// The marker that guards a pending emergency switch away from the current key `current_kid`: its
/// value is the kid that waits. `keys rotate --now` resumes the wait for that kid, whichever command
/// inserted it (an emergency rotation, or `keys import --state current`).
pub(crate) fn marker(current_kid: &str) -> String {
    format!("emergency:{current_kid}")
}

/// Steps 2 and 3 for a key already published as `next`: waits until every live replica publishes
/// `pending`, then makes it sign. `again` is the command that resumes the wait, for the error.
pub(crate) async fn sign_when_published(
    store: &Store,
    clock: &dyn Clock,
    pending: &str,
    opts: EmergencyOptions,
    again: &str,
) -> Result<KeyInfo, ServiceError> {
    let deadline = Instant::now() + opts.wait;
    loop {
        let late = lagging(store, pending).await?;
        if late.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let what = describe(&late, pending, wall_ms());
            if opts.force {
                tracing::warn!(kid = %pending, lagging = %what, "emergency switch forced: signing with a key a live replica does not publish yet");
                break;
            }
            let next = info(store, pending, clock.now()).await?;
            return Err(ServiceError::Precondition(format!(
                "not signing with {pending} yet: after {:.1} s {what}. The key stays `next` (it signs at {} like a \
                 scheduled rotation); run `{again}` again to wait again, or add --force to sign \
                 with it now anyway",
                opts.wait.as_secs_f64(),
                humantime::format_rfc3339_seconds(
                    UNIX_EPOCH + Duration::from_secs(next.activate_at.max(0).unsigned_abs())
                )
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The key with the latest `activate_at <= now` signs: after a key activated within this same
    // second (a second emergency rotation), this one starts at the next second so it wins the tie.
    let now = clock.now();
    let (_, cur) = current_row(store, now).await?;
    let at = now.max(cur.activate_at + 1);
    if !store.activate_signing_key(pending, at).await? {
        return Err(ServiceError::Conflict(format!(
            "key {pending} was revoked or signs already; a new emergency rotation"
        )));
    }
    tracing::warn!(kid = %pending, at, "emergency switch: the new key signs now");
    info(store, pending, at).await
}
