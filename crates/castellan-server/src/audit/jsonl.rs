//! The JSON-lines stream: one event per line (the stored fields, hash included), and checkpoints as
//! `{"checkpoint": {...}}` lines, appended to a file or written to standard output for a log
//! pipeline; and reading such a file back for `audit verify --file`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use castellan_core::audit::AuditEvent;
use castellan_store::AuditCheckpoint;
use serde::{Deserialize, Serialize};

/// A checkpoint as a line of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    /// The chain.
    pub replica: String,
    /// The seq pinned.
    pub seq: i64,
    /// That event's hash.
    pub hash: String,
    /// When it was signed.
    pub at_ms: i64,
    /// The JWS.
    pub jws: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped<T> {
    checkpoint: T,
}

/// Where the stream goes; the file is opened (append, created 0600) when first written and again
/// after a failure.
pub(crate) struct Stream {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Stream {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.path.as_os_str() == "-" {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            return out.flush();
        }
        if self.file.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            self.file = Some(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(&self.path)?,
            );
        }
        let Some(f) = self.file.as_mut() else {
            return Err(std::io::Error::other("no file"));
        };
        let written = f.write_all(bytes).and_then(|()| f.flush());
        if written.is_err() {
            self.file = None;
        }
        written
    }

    pub(crate) fn append_events(&mut self, events: &[AuditEvent]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(events.len() * 400);
        for e in events {
            serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.write_all(&buf)
    }

    pub(crate) fn append_checkpoint(&mut self, c: &AuditCheckpoint) -> std::io::Result<()> {
        let line = Wrapped {
            checkpoint: CheckpointLine {
                replica: c.replica.clone(),
                seq: c.seq,
                hash: c.hash.clone(),
                at_ms: c.at_ms,
                jws: c.jws.clone(),
            },
        };
        let mut buf = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        buf.push(b'\n');
        self.write_all(&buf)
    }
}

/// A stream file read back: events by chain in line order, checkpoints, and the first line that is
/// neither (a cut or edited line) with its number.
#[derive(Debug, Default)]
pub struct StreamFile {
    /// Events by replica, in the order of the file.
    pub events: BTreeMap<String, Vec<AuditEvent>>,
    /// Checkpoint lines.
    pub checkpoints: Vec<CheckpointLine>,
    /// `(line number, the last event before it)` of the first unreadable line.
    pub bad_line: Option<(usize, Option<String>)>,
}

/// Reads a stream file.
pub fn read_stream(path: &Path) -> std::io::Result<StreamFile> {
    let text = std::fs::read(path)?;
    let mut out = StreamFile::default();
    let mut last: Option<String> = None;
    let ends_cut = !text.is_empty() && !text.ends_with(b"\n");
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let n = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        if line.is_empty() && i + 1 == n {
            break;
        }
        let cut = ends_cut && i + 1 == n;
        if !cut && let Ok(e) = serde_json::from_slice::<AuditEvent>(line) {
            last = Some(e.name());
            out.events.entry(e.replica.clone()).or_default().push(e);
            continue;
        }
        if !cut && let Ok(c) = serde_json::from_slice::<Wrapped<CheckpointLine>>(line) {
            out.checkpoints.push(c.checkpoint);
            continue;
        }
        out.bad_line = Some((i + 1, last));
        break;
    }
    Ok(out)
}
