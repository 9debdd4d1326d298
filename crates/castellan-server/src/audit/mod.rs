//! The audit trail (issue 22): one event per security-relevant action, recorded from one place.
//!
//! - Every `/v1` call is recorded by one middleware ([`http::record_v1`]): route template, method,
//!   caller (set by [`crate::http::authorize`]), source address, object (the path parameters, or what
//!   the handler names in an `AuditNote`, crate::http::audit_layer), status and, for refusals, the API's error code and message.
//!   An endpoint added later is recorded without any edit of its own.
//! - Actions outside `/v1` (sign-in and sign-out, refresh-token reuse, key rotation, configuration
//!   accepted at start) call [`Auditor::record`] from their service function; the CLI, which changes
//!   the store directly, records with [`record_direct`] on a chain of its own.
//! - Token issuance is **counted per client per interval** ([`Auditor::token_issued`]: one map update
//!   under a lock on the token path, no allocation once a client is known), written as one
//!   `token.issue` event per client per `flush_interval` with the count. One event per token at
//!   thousands per second would make the trail mostly token noise and put a store write behind every
//!   token; the count still answers "which client got tokens, from which replica, when".
//!
//! One writer task per process ([`writer`]) links events into this replica's hash chain, writes
//! them in batches (one transaction per batch) to the store and to the JSON-lines sink, signs a
//! checkpoint periodically with the key ring's signing key, and prunes past the retention. For
//! actions that change state or read secrets the caller waits for the batch to be written
//! (fail-closed: an event that cannot be written makes the action answer 503); `mode = "best-effort"`
//! does not wait.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use castellan_core::audit::{AuditEvent, ChainHead, Outcome};
use castellan_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};

pub mod checkpoint;
pub mod events;
pub mod jsonl;
pub mod verify;
mod writer;

/// How the trail is kept (`[audit]`, see [`crate::config::audit`]).
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Record at all.
    pub enabled: bool,
    /// Refuse (503) state-changing and secret-reading actions whose event cannot be written.
    pub fail_closed: bool,
    /// The JSON-lines stream: a file (appended), `-` for standard output, or none.
    pub file: Option<PathBuf>,
    /// How long events are kept in the store.
    pub retention: Duration,
    /// How often a signed checkpoint is written (when events were written since the last).
    pub checkpoint_interval: Duration,
    /// How often token counts are written.
    pub flush_interval: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            fail_closed: true,
            file: None,
            retention: Duration::from_secs(90 * 86_400),
            checkpoint_interval: Duration::from_secs(300),
            flush_interval: Duration::from_secs(10),
        }
    }
}

/// An event before it is linked into the chain.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// Who (see [`AuditEvent::actor`]).
    pub actor: String,
    /// Source address or `-`.
    pub source: String,
    /// What.
    pub action: String,
    /// The object, by identifiers only.
    pub object: String,
    /// Outcome.
    pub result: Option<Outcome>,
    /// Why denied or failed.
    pub reason: String,
    /// More identifiers (a JSON object) or empty.
    pub detail: String,
}

impl Pending {
    /// An event by `actor` of `action` on `object` that came to `result`.
    pub fn new(
        actor: impl Into<String>,
        action: &str,
        object: impl Into<String>,
        result: Outcome,
    ) -> Self {
        Self {
            actor: actor.into(),
            source: "-".into(),
            action: action.to_owned(),
            object: object.into(),
            result: Some(result),
            ..Self::default()
        }
    }

    /// With a reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// With a source address.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// With details (a JSON object).
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail.to_string();
        self
    }

    fn into_event(self, replica: &str) -> AuditEvent {
        AuditEvent {
            replica: replica.to_owned(),
            seq: 0,
            at_ms: wall_ms(),
            actor: self.actor,
            source: self.source,
            action: self.action,
            object: self.object,
            result: self.result.unwrap_or(Outcome::Allowed).as_str().to_owned(),
            reason: self.reason,
            detail: self.detail,
            prev: String::new(),
            hash: String::new(),
        }
    }
}

/// Milliseconds since the epoch (the trail records real time, whatever clock the service runs on).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why an event could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the audit trail cannot record this action: {0}")]
pub struct AuditError(pub String);

pub(crate) enum Msg {
    Event(AuditEvent, Option<oneshot::Sender<Result<(), String>>>),
    /// Writes what is pending (token counts included) and answers.
    Flush(oneshot::Sender<()>),
}

/// Signs a checkpoint's claims (set once the state exists: the key ring lives there).
pub(crate) type Signer = Box<dyn Fn(&checkpoint::CheckpointClaims) -> Option<String> + Send + Sync>;

/// What the writer and the recorders share.
pub(crate) struct Shared {
    /// The last write failed (cleared by the next that succeeds), with its cause.
    failing: AtomicBool,
    last_failure: Mutex<String>,
    failed_at_ms: std::sync::atomic::AtomicI64,
    write_failures: AtomicU64,
    /// Events recorded, by (action, result), for `/metrics`.
    counts: Mutex<HashMap<(String, &'static str), u64>>,
    /// Tokens issued since the last flush, by client id; and refused token requests.
    tokens: Mutex<HashMap<String, u64>>,
    tokens_refused: AtomicU64,
    signer: OnceLock<Signer>,
}

/// How long after a failed write fail-closed actions are refused without being tried, ms.
pub const REFUSE_FOR_MS: i64 = 500;

/// Client ids counted at once before further ones are counted together as `client:(other)`.
const TOKEN_CLIENTS: usize = 10_000;

/// One process's audit recorder: cheap to call, the writing is the writer task's.
pub struct Auditor {
    tx: mpsc::Sender<Msg>,
    replica: String,
    settings: AuditSettings,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("replica", &self.replica)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Events waiting for the writer at most; past it, events are refused (fail-closed) or dropped and
/// counted as write failures (best-effort).
const QUEUE: usize = 65_536;

impl Auditor {
    /// Starts the writer for `replica`'s chain, continuing where the store's copy of it ends.
    pub async fn start(
        store: Store,
        replica: &str,
        settings: AuditSettings,
    ) -> Result<Self, StoreError> {
        let head = match store.audit_head(replica).await? {
            Some(p) => ChainHead {
                seq: p.seq,
                hash: p.hash,
            },
            None => ChainHead::default(),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            failing: AtomicBool::new(false),
            last_failure: Mutex::new(String::new()),
            failed_at_ms: std::sync::atomic::AtomicI64::new(0),
            write_failures: AtomicU64::new(0),
            counts: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            tokens_refused: AtomicU64::new(0),
            signer: OnceLock::new(),
        });
        if settings.enabled {
            let w = writer::Writer::new(
                store,
                replica.to_owned(),
                settings.clone(),
                shared.clone(),
                head,
            );
            tokio::spawn(w.run(rx));
        }
        Ok(Self {
            tx,
            replica: replica.to_owned(),
            settings,
            shared,
        })
    }

    /// Sets how checkpoints are signed (once).
    pub(crate) fn set_signer(&self, signer: Signer) {
        let _ = self.shared.signer.set(signer);
    }

    /// The settings in force.
    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    /// This replica's chain.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Records an event without waiting for it to be written.
    pub fn record(&self, p: Pending) {
        if !self.settings.enabled {
            return;
        }
        let ev = p.into_event(&self.replica);
        if self.tx.try_send(Msg::Event(ev, None)).is_err() {
            self.failed("the audit queue is full");
        }
    }

    /// Records an event and waits until it is written (fail-closed), or does not wait (best-effort).
    pub async fn record_acked(&self, p: Pending) -> Result<(), AuditError> {
        if !self.settings.enabled {
            return Ok(());
        }
        if !self.settings.fail_closed {
            self.record(p);
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        let ev = p.into_event(&self.replica);
        if self.tx.try_send(Msg::Event(ev, Some(ack))).is_err() {
            self.failed("the audit queue is full");
            return Err(AuditError("the audit queue is full".into()));
        }
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(cause)) => Err(AuditError(cause)),
            Err(_) => Err(AuditError("the audit writer has stopped".into())),
        }
    }

    /// Whether the last write failed less than [`REFUSE_FOR_MS`] ago, and why: a fail-closed action
    /// is then refused before it is done. Past that, the next action finds out again by trying (the
    /// sink may be back).
    pub fn failing(&self) -> Option<String> {
        let recent = wall_ms() - self.shared.failed_at_ms.load(Ordering::Relaxed) < REFUSE_FOR_MS;
        (self.shared.failing.load(Ordering::Relaxed) && recent).then(|| {
            self.shared
                .last_failure
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default()
        })
    }

    fn failed(&self, cause: &str) {
        self.shared.note_failure(cause);
    }

    /// Counts a token issued to `client_id` (see the module's notes).
    pub fn token_issued(&self, client_id: &str) {
        if !self.settings.enabled {
            return;
        }
        if let Ok(mut m) = self.shared.tokens.lock() {
            if let Some(n) = m.get_mut(client_id) {
                *n += 1;
            } else if m.len() < TOKEN_CLIENTS {
                m.insert(client_id.to_owned(), 1);
            } else {
                *m.entry("(other)".to_owned()).or_insert(0) += 1;
            }
        }
    }

    /// Counts a refused token request.
    pub fn token_refused(&self) {
        self.shared.tokens_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes everything pending (token counts included) and returns once it is written: for tests
    /// and shutdown.
    pub async fn flush(&self) {
        if !self.settings.enabled {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The `/metrics` lines: events by action and result, and write failures.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        out.push_str(
            "# HELP castellan_audit_events_total Audit events recorded, by action and result.\n",
        );
        out.push_str("# TYPE castellan_audit_events_total counter\n");
        if let Ok(m) = self.shared.counts.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for ((action, result), n) in rows {
                let _ = writeln!(
                    out,
                    "castellan_audit_events_total{{action=\"{}\",result=\"{result}\"}} {n}",
                    action.replace('\\', "\\\\").replace('"', "\\\"")
                );
            }
        }
        out.push_str("# HELP castellan_audit_write_failures_total Audit events that could not be written (store or stream).\n");
        out.push_str("# TYPE castellan_audit_write_failures_total counter\n");
        let _ = writeln!(
            out,
            "castellan_audit_write_failures_total {}",
            self.shared.write_failures.load(Ordering::Relaxed)
        );
        out
    }
}

impl Shared {
    fn note_failure(&self, cause: &str) {
        self.write_failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.last_failure.lock() {
            cause.clone_into(&mut s);
        }
        self.failed_at_ms.store(wall_ms(), Ordering::Relaxed);
        self.failing.store(true, Ordering::Relaxed);
    }

    fn counted(&self, events: &[AuditEvent]) {
        if let Ok(mut m) = self.counts.lock() {
            for e in events {
                let result = Outcome::parse(&e.result)
                    .unwrap_or(Outcome::Failed)
                    .as_str();
                match m.get_mut(&(e.action.clone(), result)) {
                    Some(n) => *n += 1,
                    None => {
                        m.insert((e.action.clone(), result), 1);
                    }
                }
            }
        }
    }
}

/// Records one event on a chain of its own (the CLI's, named `chain`), directly in the store: for
/// actions that do not go through a server. Retries when another process appended to the same chain
/// at the same moment.
pub async fn record_direct(
    store: &Store,
    chain: &str,
    p: Pending,
) -> Result<AuditEvent, AuditError> {
    let mut last = String::new();
    for attempt in 0..50u64 {
        let head = match store.audit_head(chain).await {
            Ok(Some(pin)) => ChainHead {
                seq: pin.seq,
                hash: pin.hash,
            },
            Ok(None) => ChainHead::default(),
            Err(e) => return Err(AuditError(e.to_string())),
        };
        let mut ev = p.clone().into_event(chain);
        let mut head = head;
        head.link(&mut ev);
        match store.append_audit(std::slice::from_ref(&ev)).await {
            Ok(()) => return Ok(ev),
            Err(StoreError::Conflict(_)) => {
                last = "another process kept writing the same chain".into();
                tokio::time::sleep(Duration::from_millis(5 + attempt * 5)).await;
            }
            Err(e) => return Err(AuditError(e.to_string())),
        }
    }
    Err(AuditError(last))
}

/// The chain name of CLI actions on this host: `cli@HOST`.
pub fn cli_chain() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("cli@{host}")
}
