//! Audit events and their hash chain (issue 22): pure, no I/O.
//!
//! Each replica writes its own chain: event `seq` n carries `prev`, the hash of event n − 1 of the same
//! replica (the first carries [`GENESIS`]), and `hash`, the SHA-256 of its own fields and `prev`. An
//! edited field changes the hash; a removed event leaves a gap in `seq` or a `prev` nothing matches; a
//! moved event names a predecessor that is elsewhere. [`verify_chain`] walks one replica's events and
//! names the first that breaks the chain. Checkpoints (signed elsewhere) pin `(seq, hash)` so that
//! removing the newest events is found too.
//!
//! An event never holds a secret value, a password, a token or key bytes: tokens are named by `jti`,
//! secrets by name and version. Callers build events from identifiers only.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// `prev` of a replica's first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an action came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Allowed,
    /// Refused by authentication or authorization (the reason says why).
    Denied,
    /// Attempted and failed (bad input, conflict, an error).
    Failed,
}

impl Outcome {
    /// `allowed`, `denied` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    /// Parses [`Outcome::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allowed" => Some(Outcome::Allowed),
            "denied" => Some(Outcome::Denied),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// One recorded event, as stored and as written to the JSON-lines stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// The replica (or CLI) whose chain this is.
    pub replica: String,
    /// Position in that chain, from 1.
    pub seq: i64,
    /// When, milliseconds since the epoch.
    pub at_ms: i64,
    /// Who: `client:ID`, `user:ID via client:ID`, `operator@host` (CLI), `anonymous`, `castellan`.
    pub actor: String,
    /// The source address, or `-`.
    pub source: String,
    /// What: `GET /v1/secrets/{*name}`, `signin.login`, `keys.rotate`…
    pub action: String,
    /// The object: `secret app/db v3`, `certificate 0x… broker.example`, `kid …`; or empty.
    pub object: String,
    /// `allowed`, `denied` or `failed`.
    pub result: String,
    /// Why it was denied or failed (the API's error code and message), or empty.
    pub reason: String,
    /// More identifiers as a JSON object (`{"jti": "…", "status": 200}`), or empty.
    pub detail: String,
    /// The hash of the previous event of this chain ([`GENESIS`] for the first).
    pub prev: String,
    /// SHA-256 of every field above, hex.
    pub hash: String,
}

impl AuditEvent {
    /// The hash of the event's fields (all but `hash`): SHA-256 over each field, length-prefixed, so
    /// no two different events encode alike.
    pub fn compute_hash(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut text = |s: &str| {
            ctx.update(&(s.len() as u64).to_be_bytes());
            ctx.update(s.as_bytes());
        };
        text("castellan-audit-v1");
        text(&self.replica);
        text(&self.seq.to_string());
        text(&self.at_ms.to_string());
        text(&self.actor);
        text(&self.source);
        text(&self.action);
        text(&self.object);
        text(&self.result);
        text(&self.reason);
        text(&self.detail);
        text(&self.prev);
        hex::encode(ctx.finish().as_ref())
    }

    /// `replica#seq`, how reports name an event.
    pub fn name(&self) -> String {
        format!("{}#{}", self.replica, self.seq)
    }
}

/// The end of a chain so far: the last event's seq and hash (0 and [`GENESIS`] before the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The last seq written.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

impl Default for ChainHead {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

impl ChainHead {
    /// Fills in `seq`, `prev` and `hash` of `event` as the next of this chain, and advances.
    pub fn link(&mut self, event: &mut AuditEvent) {
        event.seq = self.seq + 1;
        event.prev = std::mem::take(&mut self.hash);
        event.hash = event.compute_hash();
        self.seq = event.seq;
        self.hash = event.hash.clone();
    }
}

/// How a chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BreakKind {
    /// The event's content does not match its hash (or a checkpoint's).
    Altered,
    /// The event is missing.
    Removed,
    /// The event is not where its chain puts it.
    Reordered,
}

/// The first place a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// `replica#seq` of the event named.
    pub event: String,
    /// What happened to it.
    pub kind: BreakKind,
    /// In plain words.
    pub message: String,
}

/// What a sound chain holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    /// The replica.
    pub replica: String,
    /// Events checked.
    pub events: usize,
    /// The first and last seq checked (0 when none).
    pub first_seq: i64,
    /// The last seq.
    pub last_seq: i64,
}

/// A trusted `(seq, hash)` of a chain: a checkpoint, the anchor left by retention, or the head another
/// copy of the trail knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The seq.
    pub seq: i64,
    /// The hash of that event.
    pub hash: String,
}

/// Walks one replica's events (`events` in the order they were read: by seq from the store, by line
/// from a file) and names the first one that was altered, removed or reordered. `anchor` is where a
/// pruned chain starts (the last removed event's seq and hash); `pins` are checkpoints and known heads
/// the chain must reach and agree with.
pub fn verify_chain(
    replica: &str,
    events: &[AuditEvent],
    anchor: Option<&Pin>,
    pins: &[Pin],
) -> Result<ChainSummary, Break> {
    let name = |seq: i64| format!("{replica}#{seq}");
    let by_hash: HashMap<&str, i64> = events.iter().map(|e| (e.hash.as_str(), e.seq)).collect();
    let seqs: HashSet<i64> = events.iter().map(|e| e.seq).collect();
    let (mut want_seq, mut want_prev) = match anchor {
        Some(p) => (p.seq + 1, p.hash.clone()),
        None => (1, GENESIS.to_owned()),
    };
    let mut hashes: HashMap<i64, &str> = HashMap::new();
    for e in events {
        if e.replica == replica
            && e.compute_hash() != e.hash
            && let Some(was) = moved_from(e, &by_hash)
        {
            return Err(Break {
                event: e.name(),
                kind: BreakKind::Reordered,
                message: format!(
                    "event {} is out of order: it was written as {}",
                    e.name(),
                    name(was)
                ),
            });
        }
        if e.replica != replica || e.compute_hash() != e.hash {
            return Err(Break {
                event: e.name(),
                kind: BreakKind::Altered,
                message: format!(
                    "event {} was altered: its content does not match its hash",
                    e.name()
                ),
            });
        }
        if e.seq != want_seq {
            if seqs.contains(&want_seq) || e.seq < want_seq {
                return Err(Break {
                    event: e.name(),
                    kind: BreakKind::Reordered,
                    message: format!(
                        "event {} is out of order: {} should come first",
                        e.name(),
                        name(want_seq)
                    ),
                });
            }
            return Err(Break {
                event: name(want_seq),
                kind: BreakKind::Removed,
                message: format!(
                    "event {} was removed: {} follows {}",
                    name(want_seq),
                    e.name(),
                    name(want_seq - 1)
                ),
            });
        }
        if e.prev != want_prev {
            let message = match by_hash.get(e.prev.as_str()) {
                Some(other) => format!(
                    "event {} is out of order: it was written after {}, not {}",
                    e.name(),
                    name(*other),
                    name(want_seq - 1)
                ),
                None => format!(
                    "event {} does not follow {}: the event it was written after was removed or replaced",
                    e.name(),
                    name(want_seq - 1)
                ),
            };
            let kind = if by_hash.contains_key(e.prev.as_str()) {
                BreakKind::Reordered
            } else {
                BreakKind::Removed
            };
            return Err(Break {
                event: e.name(),
                kind,
                message,
            });
        }
        hashes.insert(e.seq, &e.hash);
        want_prev = e.hash.clone();
        want_seq += 1;
    }
    let last = want_seq - 1;
    let first = anchor.map_or(1, |p| p.seq + 1);
    for pin in pins {
        if pin.seq > last {
            return Err(Break {
                event: name(last + 1),
                kind: BreakKind::Removed,
                message: format!(
                    "events from {} on were removed: the trail ends at {} but a checkpoint or another copy reaches {}",
                    name(last + 1),
                    name(last),
                    name(pin.seq)
                ),
            });
        }
        if pin.seq >= first && hashes.get(&pin.seq).is_some_and(|h| *h != pin.hash) {
            return Err(Break {
                event: name(pin.seq),
                kind: BreakKind::Altered,
                message: format!(
                    "event {} was altered: its hash differs from the checkpoint's",
                    name(pin.seq)
                ),
            });
        }
    }
    Ok(ChainSummary {
        replica: replica.to_owned(),
        events: events.len(),
        first_seq: if events.is_empty() { 0 } else { first },
        last_seq: last.max(0),
    })
}

/// The seq an event was written with, when only its seq was changed: the one near its stored seq (or
/// after the event its `prev` names) with which its hash matches.
fn moved_from(e: &AuditEvent, by_hash: &HashMap<&str, i64>) -> Option<i64> {
    let after_prev = if e.prev == GENESIS {
        Some(1)
    } else {
        by_hash.get(e.prev.as_str()).map(|s| s + 1)
    };
    let near = (e.seq - 16).max(1)..=(e.seq + 16);
    after_prev
        .into_iter()
        .chain(near)
        .filter(|was| *was != e.seq)
        .find(|was| {
            AuditEvent {
                seq: *was,
                ..e.clone()
            }
            .compute_hash()
                == e.hash
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditEvent> {
        let mut head = ChainHead::default();
        (0..n)
            .map(|i| {
                let mut e = AuditEvent {
                    replica: "r1".into(),
                    seq: 0,
                    at_ms: 1000 + i as i64,
                    actor: "client:cl_a".into(),
                    source: "127.0.0.1".into(),
                    action: "GET /v1/secrets/{*name}".into(),
                    object: format!("secret s{i} v1"),
                    result: "allowed".into(),
                    reason: String::new(),
                    detail: String::new(),
                    prev: String::new(),
                    hash: String::new(),
                };
                head.link(&mut e);
                e
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(5);
        let s = verify_chain("r1", &c, None, &[]).expect("sound");
        assert_eq!((s.events, s.first_seq, s.last_seq), (5, 1, 5));
        let pin = Pin {
            seq: 5,
            hash: c[4].hash.clone(),
        };
        verify_chain("r1", &c, None, &[pin]).expect("pinned");
    }

    #[test]
    fn an_edited_event_is_named() {
        let mut c = chain(5);
        c[2].object = "secret other v1".into();
        let b = verify_chain("r1", &c, None, &[]).expect_err("broken");
        assert_eq!((b.event.as_str(), b.kind), ("r1#3", BreakKind::Altered));
    }

    #[test]
    fn a_removed_event_is_named() {
        let mut c = chain(5);
        c.remove(1);
        let b = verify_chain("r1", &c, None, &[]).expect_err("broken");
        assert_eq!((b.event.as_str(), b.kind), ("r1#2", BreakKind::Removed));
    }

    #[test]
    fn swapped_lines_are_reordered() {
        let mut c = chain(5);
        c.swap(1, 2);
        let b = verify_chain("r1", &c, None, &[]).expect_err("broken");
        assert_eq!((b.event.as_str(), b.kind), ("r1#3", BreakKind::Reordered));
    }

    #[test]
    fn swapped_seqs_are_reordered() {
        let mut c = chain(5);
        let (a, b) = (c[1].seq, c[2].seq);
        c[1].seq = b;
        c[2].seq = a;
        c.sort_by_key(|e| e.seq);
        let br = verify_chain("r1", &c, None, &[]).expect_err("broken");
        assert_eq!((br.event.as_str(), br.kind), ("r1#2", BreakKind::Reordered));
    }

    #[test]
    fn a_removed_tail_is_found_by_a_pin() {
        let c = chain(5);
        let pin = Pin {
            seq: 5,
            hash: c[4].hash.clone(),
        };
        let b = verify_chain("r1", &c[..3], None, &[pin]).expect_err("broken");
        assert_eq!((b.event.as_str(), b.kind), ("r1#4", BreakKind::Removed));
    }

    #[test]
    fn an_anchor_starts_a_pruned_chain() {
        let c = chain(5);
        let anchor = Pin {
            seq: 2,
            hash: c[1].hash.clone(),
        };
        verify_chain("r1", &c[2..], Some(&anchor), &[]).expect("pruned chain");
        assert!(verify_chain("r1", &c[2..], None, &[]).is_err());
    }
}
