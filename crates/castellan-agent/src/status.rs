//! The agent's status: per certificate expiry, last success and last error, per secret the version
//! delivered, last success and last error — as a JSON file and as Prometheus metrics. Never a secret's
//! value: names and versions only.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One certificate's status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertStatus {
    /// Serial of the delivered certificate.
    pub serial: Option<String>,
    /// Its notAfter.
    pub not_after: Option<i64>,
    /// When it will be renewed.
    pub renew_at: Option<i64>,
    /// Last successful pass.
    pub last_success: Option<i64>,
    /// Last error, if the last pass failed.
    pub last_error: Option<String>,
    /// When it failed.
    pub last_error_at: Option<i64>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Certificates issued by this process.
    pub issued: u64,
}

/// One secret's status (never its value).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecretStatus {
    /// The file it is delivered to.
    pub path: Option<String>,
    /// The version the file holds, as of the last successful pass.
    pub version: Option<i64>,
    /// Last successful pass.
    pub last_success: Option<i64>,
    /// Last error, if the last pass failed.
    pub last_error: Option<String>,
    /// When it failed.
    pub last_error_at: Option<i64>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Times this process wrote the file.
    pub written: u64,
}

/// Every certificate's and secret's status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// By certificate name.
    pub certificates: BTreeMap<String, CertStatus>,
    /// By secret name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretStatus>,
}

impl Status {
    /// Writes the status file atomically (0644).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        json.push(b'\n');
        castellan_files::write_atomic(path, &json, 0o644, None)
    }

    /// The Prometheus exposition text.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, value: &dyn Fn(&CertStatus) -> Option<f64>| {
            gauge(
                &mut out,
                name,
                help,
                "certificate",
                &self.certificates,
                value,
            );
        };
        metric(
            "castellan_agent_certificate_expiry_timestamp_seconds",
            "notAfter of the delivered certificate.",
            &|s| s.not_after.map(|v| v as f64),
        );
        metric(
            "castellan_agent_renewal_timestamp_seconds",
            "When the certificate will be renewed.",
            &|s| s.renew_at.map(|v| v as f64),
        );
        metric(
            "castellan_agent_last_success_timestamp_seconds",
            "Last successful delivery pass.",
            &|s| s.last_success.map(|v| v as f64),
        );
        metric(
            "castellan_agent_last_pass_failed",
            "1 when the last pass for the certificate failed.",
            &|s| Some(if s.last_error.is_some() { 1.0 } else { 0.0 }),
        );
        metric(
            "castellan_agent_issued",
            "Certificates issued by this agent process.",
            &|s| Some(s.issued as f64),
        );
        let mut metric = |name: &str, help: &str, value: &dyn Fn(&SecretStatus) -> Option<f64>| {
            // Secret metrics only appear once secrets are configured.
            if !self.secrets.is_empty() {
                gauge(&mut out, name, help, "secret", &self.secrets, value);
            }
        };
        metric(
            "castellan_agent_secret_version",
            "Version of the secret the file holds.",
            &|s| s.version.map(|v| v as f64),
        );
        metric(
            "castellan_agent_secret_last_success_timestamp_seconds",
            "Last successful delivery pass for the secret.",
            &|s| s.last_success.map(|v| v as f64),
        );
        metric(
            "castellan_agent_secret_last_pass_failed",
            "1 when the last pass for the secret failed.",
            &|s| Some(if s.last_error.is_some() { 1.0 } else { 0.0 }),
        );
        metric(
            "castellan_agent_secret_consecutive_failures",
            "Failed passes for the secret since its last success.",
            &|s| Some(f64::from(s.consecutive_failures)),
        );
        metric(
            "castellan_agent_secret_written",
            "Times this agent process wrote the secret's file.",
            &|s| Some(s.written as f64),
        );
        out
    }
}

/// One gauge: its HELP and TYPE lines, then a sample per entry that has a value, labelled by name.
fn gauge<S>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    entries: &BTreeMap<String, S>,
    value: &dyn Fn(&S) -> Option<f64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (key, s) in entries {
        if let Some(v) = value(s) {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{}\"}} {v}",
                key.replace(['"', '\\', '\n'], "_")
            );
        }
    }
}
