//! `castellan agent`: keeps certificate and secret files delivered and fresh.
//!
//! For each declared certificate it generates the key locally and has a CSR signed (or, when asked,
//! lets the server generate the key), verifies the set (chain to the root, purpose, names, key match),
//! writes it atomically with exact per-file modes and owners — never touching an existing directory —
//! and runs the reload command once when the content changed. It renews at two thirds of the lifetime
//! (±10% jitter), reuses valid files after a restart, and re-issues when the CA bundle changes.
//!
//! For each declared secret it fetches the newest version (every `secret_check_interval`), and when the
//! file does not hold exactly those bytes writes it the same way (atomic, exact mode and owner on the
//! file only) and runs its reload command. A secret's value never reaches a log, an error or the status.
//!
//! It does not run a server, store anything but the files it delivers and its status file, or decide
//! what a certificate may contain: the profile on the server does.
#![forbid(unsafe_code)]

mod agent;
pub mod config;
mod disk;
pub mod http;
mod metrics;
mod reload;
mod status;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use castellan_core::pki::IssueRequest;
use castellan_wire::SetJson;

pub use agent::Agent;
pub use castellan_core::secret_store::SecretValue;
pub use config::{AgentConfig, CertSpec, SecretSpec};
pub use http::HttpBackend;
pub use metrics::serve_metrics;
pub use status::{CertStatus, SecretStatus, Status};

/// What went wrong, in words that say what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration is invalid (names the field and line).
    #[error("{0}")]
    Config(String),
    /// The server could not be reached or refused the request.
    #[error("{0}")]
    Server(String),
    /// What the server returned does not verify; nothing was written.
    #[error("the certificate set from the server does not verify, nothing was written: {0}")]
    Verify(String),
    /// The files could not be written and none was replaced: the old files are intact.
    #[error("writing the files failed, the old files are intact: {0}")]
    Write(String),
    /// Writing the files failed after some (or all) of them had been replaced. When only some were,
    /// the set on disk mixes new and old files (the key is written last, so it does not verify and
    /// the next pass issues again); when all were, only making that durable failed, and the reload
    /// command runs.
    #[error("writing the files failed after {replaced} of {total} had been replaced: {message}")]
    PartialWrite {
        /// Files renamed into place.
        replaced: usize,
        /// Files in the set.
        total: usize,
        /// What failed.
        message: String,
    },
    /// Key or CSR generation failed.
    #[error("{0}")]
    Pki(#[from] castellan_core::pki::PkiError),
    /// A `[[secret]]` names a secret the server does not have; its file was left as it is.
    #[error("secret `{0}` does not exist on the server; its file was left as it is")]
    MissingSecret(String),
}

/// A secret as fetched: its version and value (`Debug` hides the value).
#[derive(Debug, Clone)]
pub struct FetchedSecret {
    /// The version.
    pub version: i64,
    /// The value.
    pub value: SecretValue,
}

/// Where certificates come from: the HTTP API (the agent) or the store directly (`castellan dev up`).
pub trait Backend: Send + Sync {
    /// The current CA bundle (root + intermediates, PEM).
    fn ca_bundle(&self) -> impl Future<Output = Result<String, AgentError>> + Send;
    /// Signs a CSR under `profile`.
    fn sign(
        &self,
        profile: &str,
        csr_pem: &str,
        req: &IssueRequest,
    ) -> impl Future<Output = Result<SetJson, AgentError>> + Send;
    /// Issues with a server-generated key.
    fn issue(
        &self,
        profile: &str,
        req: &IssueRequest,
    ) -> impl Future<Output = Result<SetJson, AgentError>> + Send;
    /// The newest version of the secret `name`; `None` when the server has no such secret. Needs scope
    /// `secrets:read`.
    fn secret(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<FetchedSecret>, AgentError>> + Send;
}

/// The result of delivering one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Valid files were on disk; nothing was issued.
    Reused {
        /// Serial of the certificate on disk.
        serial: String,
    },
    /// A new certificate was issued and written.
    Issued {
        /// Its serial.
        serial: String,
    },
}

/// The result of delivering one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretDelivery {
    /// The file already held exactly this version's bytes; only its mode and owner were checked.
    Unchanged {
        /// The version.
        version: i64,
    },
    /// The file was written.
    Written {
        /// The version written.
        version: i64,
    },
}

/// What one pass did, per certificate and per secret (in the order of the configuration).
#[derive(Debug, Default)]
pub struct PassReport {
    /// By certificate name.
    pub certificates: Vec<(String, Result<Delivery, AgentError>)>,
    /// By secret name.
    pub secrets: Vec<(String, Result<SecretDelivery, AgentError>)>,
    /// Each reload command run, and why it failed when it did (a failed one runs again next pass).
    pub reloads: Vec<(String, Result<(), String>)>,
}

impl PassReport {
    /// Every certificate and secret was delivered, and every reload command ran.
    pub fn all_ok(&self) -> bool {
        self.certificates.iter().all(|(_, r)| r.is_ok())
            && self.secrets.iter().all(|(_, r)| r.is_ok())
            && self.reloads.iter().all(|(_, r)| r.is_ok())
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    use castellan_core::Clock;
    castellan_core::SystemClock.now()
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at two thirds of its lifetime,
/// moved by up to ±10% of the lifetime. The jitter comes from the serial, so it is stable across
/// restarts and spread across a fleet.
/// Dates that cannot be (a `notAfter` before the `notBefore`, in a file on disk) give `not_before`:
/// renew now.
pub fn renew_at(not_before: i64, not_after: i64, serial: &str) -> i64 {
    let not_after = not_after.max(not_before);
    let lifetime = not_after.saturating_sub(not_before).max(1);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, serial.as_bytes());
    let u = f64::from(digest.as_ref()[0]) / 255.0 * 2.0 - 1.0; // -1..=1
    let at = not_before as f64 + lifetime as f64 * (2.0 / 3.0 + 0.1 * u);
    (at as i64).clamp(not_before, not_after)
}

/// Exponential back-off with full jitter: 1 s, 2 s, 4 s … capped at 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let cap = 2f64.powi(failures.min(9) as i32).min(300.0);
    let mut b = [0u8; 2];
    let r = aws_lc_rs::rand::fill(&mut b)
        .map(|_| f64::from(u16::from_le_bytes(b)) / 65535.0)
        .unwrap_or(0.5);
    Duration::from_secs_f64((cap * (0.5 + r / 2.0)).max(0.5))
}

/// The most the agent reads back from a file it delivers: ample for a PEM set or a secret, and a
/// bound on what a device file put in its place could make it read.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;

/// A temp file of a delivered file this old is left over from an interrupted write (a write takes
/// well under a second), not a write in progress.
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(600);
