//! `castellan audit verify`: walks every chain in the store (and, given one, a JSON-lines stream
//! file), checks the signed checkpoints against the key ring's JWKS, and names the first event of
//! each chain that was removed, reordered or altered.

use std::collections::BTreeMap;
use std::path::Path;

use castellan_core::audit::{Break, BreakKind, ChainSummary, Pin, verify_chain};
use castellan_store::{AuditCheckpoint, Store, StoreError};
use serde::Serialize;

use super::checkpoint::{self, Signature};
use super::jsonl;

/// What verification found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The chains that verified.
    pub chains: Vec<ChainSummary>,
    /// The first break of each chain that did not.
    pub problems: Vec<Break>,
    /// What could not be checked (a checkpoint signed by a key removed since).
    pub warnings: Vec<String>,
    /// Checkpoints whose signature verified.
    pub checkpoints_verified: usize,
}

impl Report {
    /// Whether every chain verified.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the checkpoints of one chain; those whose signature does not verify are problems, those
/// of removed keys warnings. Returns the pins of the ones that count.
fn checkpoint_pins(
    replica: &str,
    cps: &[(i64, String, String)],
    jwks: Option<&[u8]>,
    report: &mut Report,
) -> Result<Vec<Pin>, Break> {
    let mut pins = Vec::new();
    for (seq, hash, jws) in cps {
        if let Some(jwks) = jwks {
            match checkpoint::check(jws, jwks) {
                Signature::Valid(_, c) if c.replica == replica && c.seq == *seq && c.hash == *hash => {
                    report.checkpoints_verified += 1;
                }
                Signature::UnknownKey(kid) => report.warnings.push(format!(
                    "checkpoint {replica}#{seq} is signed by key {kid}, no longer published: not checked"
                )),
                Signature::Valid(..) | Signature::Invalid(_) => {
                    return Err(Break {
                        event: format!("{replica}#{seq}"),
                        kind: BreakKind::Altered,
                        message: format!(
                            "the checkpoint of {replica}#{seq} was altered: its signature does not verify over what it says"
                        ),
                    });
                }
            }
        }
        pins.push(Pin {
            seq: *seq,
            hash: hash.clone(),
        });
    }
    Ok(pins)
}

fn cp_rows(cps: &[AuditCheckpoint]) -> Vec<(i64, String, String)> {
    cps.iter()
        .map(|c| (c.seq, c.hash.clone(), c.jws.clone()))
        .collect()
}

/// Verifies every chain of the store. `jwks` (the key ring's, when the caller has it) checks the
/// checkpoints' signatures.
pub async fn verify_store(store: &Store, jwks: Option<&[u8]>) -> Result<Report, StoreError> {
    let mut report = Report::default();
    for replica in store.audit_replicas().await? {
        // Checkpoints first: each is written after the events it pins, so the events read next
        // reach every checkpoint read here even while a replica keeps writing.
        let cps = store.audit_checkpoints(&replica).await?;
        let events = store.audit_chain(&replica).await?;
        // A pruned chain starts after its oldest kept checkpoint.
        let anchor = match (events.first(), cps.first()) {
            (Some(e), Some(c)) if e.seq > 1 && c.seq + 1 == e.seq => Some(Pin {
                seq: c.seq,
                hash: c.hash.clone(),
            }),
            (None, Some(c)) => Some(Pin {
                seq: c.seq,
                hash: c.hash.clone(),
            }),
            _ => None,
        };
        let result = checkpoint_pins(&replica, &cp_rows(&cps), jwks, &mut report)
            .and_then(|pins| verify_chain(&replica, &events, anchor.as_ref(), &pins));
        match result {
            Ok(s) => report.chains.push(s),
            Err(b) => report.problems.push(b),
        }
    }
    Ok(report)
}

/// Verifies a stream file; with `store`, also that it holds every event the store's chains reach
/// (a truncated file is found even when it ends on a whole line).
///
/// A replica appends to the file just after its store commit, so a file read while replicas write
/// can be one batch behind the heads read from the store: a file that does not verify against a
/// store is read again (four times in a second at most) before it is reported.
pub async fn verify_file(
    path: &Path,
    store: Option<&Store>,
    jwks: Option<&[u8]>,
) -> Result<Report, String> {
    let mut attempt = 0;
    loop {
        let report = verify_file_once(path, store, jwks).await?;
        attempt += 1;
        if report.ok() || store.is_none() || attempt == 4 {
            return Ok(report);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn verify_file_once(
    path: &Path,
    store: Option<&Store>,
    jwks: Option<&[u8]>,
) -> Result<Report, String> {
    // The store's heads before the file: a replica appends to the file after its store commit, so
    // the file read next holds every event a head read here reaches, even while replicas write.
    let mut heads: BTreeMap<String, Pin> = BTreeMap::new();
    if let Some(store) = store {
        for replica in store.audit_replicas().await.map_err(|e| e.to_string())? {
            if let Some(h) = store
                .audit_head(&replica)
                .await
                .map_err(|e| e.to_string())?
            {
                heads.insert(replica, h);
            }
        }
    }
    let file =
        jsonl::read_stream(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut report = Report::default();
    let mut cps: BTreeMap<String, Vec<(i64, String, String)>> = BTreeMap::new();
    for c in &file.checkpoints {
        cps.entry(c.replica.clone())
            .or_default()
            .push((c.seq, c.hash.clone(), c.jws.clone()));
    }
    let mut replicas: Vec<String> = file.events.keys().chain(cps.keys()).cloned().collect();
    replicas.extend(heads.keys().cloned());
    replicas.sort();
    replicas.dedup();
    for replica in replicas {
        let events = file.events.get(&replica).cloned().unwrap_or_default();
        let mut pins = match checkpoint_pins(
            &replica,
            cps.get(&replica).map_or(&[][..], |v| v),
            jwks,
            &mut report,
        ) {
            Ok(p) => p,
            Err(b) => {
                report.problems.push(b);
                continue;
            }
        };
        // Only chains the file covers: a replica writing elsewhere is not this file's.
        if let Some(h) = heads
            .get(&replica)
            .filter(|_| !events.is_empty() || cps.contains_key(&replica))
        {
            pins.push(h.clone());
        }
        if let Some((line, last)) = &file.bad_line
            && last
                .as_deref()
                .is_some_and(|l| l.starts_with(&format!("{replica}#")))
        {
            let next = events.last().map_or(1, |e| e.seq + 1);
            report.problems.push(Break {
                event: format!("{replica}#{next}"),
                kind: BreakKind::Removed,
                message: format!(
                    "line {line} of {} is cut short or not an event: the file was truncated or edited after {}",
                    path.display(),
                    last.as_deref().unwrap_or("its start")
                ),
            });
            continue;
        }
        let anchor = events.first().filter(|e| e.seq > 1).map(|e| {
            report.warnings.push(format!(
                "the file's chain {replica} starts at {} (an earlier part is elsewhere)",
                e.name()
            ));
            Pin {
                seq: e.seq - 1,
                hash: e.prev.clone(),
            }
        });
        match verify_chain(&replica, &events, anchor.as_ref(), &pins) {
            Ok(s) => report.chains.push(s),
            Err(b) => report.problems.push(b),
        }
    }
    if let Some((line, None)) = &file.bad_line {
        report.problems.push(Break {
            event: "(first line)".into(),
            kind: BreakKind::Altered,
            message: format!("line {line} of {} is not an event", path.display()),
        });
    }
    Ok(report)
}
