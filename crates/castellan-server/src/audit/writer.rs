//! The writer task: links events into the replica's chain and writes them in batches, to the store
//! (one transaction) and then to the JSON-lines stream; answers the callers that wait; writes token
//! counts, signed checkpoints and prunes past the retention on its tick.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use castellan_core::audit::{AuditEvent, ChainHead, Outcome};
use castellan_store::{AuditCheckpoint, Store};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::CheckpointClaims;
use super::jsonl::Stream;
use super::{AuditSettings, Msg, Pending, Shared};

/// Events per batch at most.
const BATCH: usize = 1024;

pub(super) struct Writer {
    store: Store,
    replica: String,
    settings: AuditSettings,
    shared: Arc<Shared>,
    head: ChainHead,
    stream: Option<Stream>,
    /// The seq of the last checkpoint written (or found at start).
    checkpointed: i64,
    last_checkpoint: Instant,
    last_prune: Option<Instant>,
    token_window_start: i64,
}

type Ack = oneshot::Sender<Result<(), String>>;

impl Writer {
    pub(super) fn new(
        store: Store,
        replica: String,
        settings: AuditSettings,
        shared: Arc<Shared>,
        head: ChainHead,
    ) -> Self {
        let stream = settings.file.clone().map(Stream::new);
        Self {
            checkpointed: head.seq,
            store,
            replica,
            settings,
            shared,
            head,
            stream,
            last_checkpoint: Instant::now(),
            last_prune: None,
            token_window_start: super::wall_ms(),
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut tick =
            tokio::time::interval(self.settings.flush_interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    let mut events = Vec::new();
                    let mut acks: Vec<Ack> = Vec::new();
                    let mut flushes = Vec::new();
                    self.take(m, &mut events, &mut acks, &mut flushes);
                    // Let the tasks ready to run (other calls finishing) queue their events first:
                    // woken by the first event, this task would otherwise run next and write
                    // batches of one (tokio runs a task woken by another right after it).
                    tokio::task::yield_now().await;
                    while events.len() < BATCH {
                        match rx.try_recv() {
                            Ok(m) => self.take(m, &mut events, &mut acks, &mut flushes),
                            Err(_) => break,
                        }
                    }
                    if !flushes.is_empty() {
                        events.extend(self.token_events());
                    }
                    let answer = self.write(events).await;
                    for a in acks {
                        let _ = a.send(answer.clone());
                    }
                    if !flushes.is_empty() {
                        self.checkpoint().await;
                    }
                    for f in flushes {
                        let _ = f.send(());
                    }
                }
                _ = tick.tick() => {
                    let events = self.token_events();
                    let _ = self.write(events).await;
                    if self.last_checkpoint.elapsed() >= self.settings.checkpoint_interval {
                        self.checkpoint().await;
                    }
                    self.prune().await;
                }
            }
        }
        let events = self.token_events();
        let _ = self.write(events).await;
        self.checkpoint().await;
    }

    fn take(
        &self,
        m: Msg,
        events: &mut Vec<AuditEvent>,
        acks: &mut Vec<Ack>,
        flushes: &mut Vec<oneshot::Sender<()>>,
    ) {
        match m {
            Msg::Event(e, ack) => {
                events.push(e);
                if let Some(a) = ack {
                    acks.push(a);
                }
            }
            Msg::Flush(f) => flushes.push(f),
        }
    }

    /// One `token.issue` event per client that was issued tokens since the last, with the count, and
    /// one `token.refused` with the count of refused requests.
    fn token_events(&mut self) -> Vec<AuditEvent> {
        let counts = match self.shared.tokens.lock() {
            Ok(mut m) if !m.is_empty() => std::mem::take(&mut *m),
            _ => Default::default(),
        };
        let refused = self.shared.tokens_refused.swap(0, Ordering::Relaxed);
        let start = self.token_window_start;
        let now = super::wall_ms();
        self.token_window_start = now;
        let mut out: Vec<AuditEvent> = Vec::new();
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort();
        for (client, n) in counts {
            out.push(
                Pending::new(
                    format!("client:{client}"),
                    "token.issue",
                    "",
                    Outcome::Allowed,
                )
                .detail(serde_json::json!({"count": n, "from_ms": start, "to_ms": now}))
                .into_event(&self.replica),
            );
        }
        if refused > 0 {
            out.push(
                Pending::new("anonymous", "token.issue", "", Outcome::Denied)
                    .reason("refused token requests (invalid client, grant or scope)")
                    .detail(serde_json::json!({"count": refused, "from_ms": start, "to_ms": now}))
                    .into_event(&self.replica),
            );
        }
        out
    }

    /// Links and writes `events`: the store first (all or none; on failure the chain is left as it
    /// was), then the stream.
    async fn write(&mut self, mut events: Vec<AuditEvent>) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let before = self.head.clone();
        for e in &mut events {
            self.head.link(e);
        }
        let mut written = self.store.append_audit(&events).await;
        // Another process writes under the same replica id: continue from the chain's end in the
        // store (the chain stays one line; the ids should differ, see `replica_id`).
        for _ in 0..10 {
            if !matches!(written, Err(castellan_store::StoreError::Conflict(_))) {
                break;
            }
            tracing::warn!(replica = %self.replica, "another process writes audit events under this replica id");
            self.head = match self.store.audit_head(&self.replica).await {
                Ok(Some(p)) => ChainHead {
                    seq: p.seq,
                    hash: p.hash,
                },
                _ => before.clone(),
            };
            for e in &mut events {
                self.head.link(e);
            }
            written = self.store.append_audit(&events).await;
        }
        if let Err(e) = written {
            self.head = before;
            let cause = format!("the store did not take the events: {e}");
            tracing::error!(error = %e, events = events.len(), "audit events could not be written to the store");
            for _ in &events {
                self.shared.note_failure(&cause);
            }
            return Err(cause);
        }
        self.shared.counted(&events);
        if let Some(s) = &mut self.stream
            && let Err(e) = s.append_events(&events)
        {
            let cause = format!("the audit stream could not be written: {e}");
            tracing::error!(error = %e, "audit events could not be written to the stream");
            for _ in &events {
                self.shared.note_failure(&cause);
            }
            return Err(cause);
        }
        self.shared.failing.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Signs and writes a checkpoint of the head, when events were written since the last.
    async fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        if self.head.seq == self.checkpointed || self.head.seq == 0 {
            return;
        }
        let claims = CheckpointClaims {
            replica: self.replica.clone(),
            seq: self.head.seq,
            hash: self.head.hash.clone(),
            at_ms: super::wall_ms(),
        };
        let Some(jws) = self.shared.signer.get().and_then(|sign| sign(&claims)) else {
            return;
        };
        let cp = AuditCheckpoint {
            replica: claims.replica,
            seq: claims.seq,
            hash: claims.hash,
            at_ms: claims.at_ms,
            jws,
        };
        match self.store.add_audit_checkpoint(&cp).await {
            Ok(()) => self.checkpointed = cp.seq,
            Err(e) => {
                tracing::error!(error = %e, "an audit checkpoint could not be written");
                self.shared
                    .note_failure("an audit checkpoint could not be written");
                return;
            }
        }
        if let Some(s) = &mut self.stream
            && let Err(e) = s.append_checkpoint(&cp)
        {
            tracing::error!(error = %e, "an audit checkpoint could not be written to the stream");
        }
    }

    /// Removes this chain's events past the retention (at most once a minute).
    async fn prune(&mut self) {
        if self
            .last_prune
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.last_prune = Some(Instant::now());
        let before = super::wall_ms() - self.settings.retention.as_millis() as i64;
        if let Err(e) = self.store.prune_audit(&self.replica, before).await {
            tracing::warn!(error = %e, "pruning the audit trail failed; it runs again later");
        }
    }
}
