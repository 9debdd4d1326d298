//! `[audit]`: how the audit trail is kept (issue 22).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration};
use crate::audit::AuditSettings;

/// What happens to an action whose audit event cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditMode {
    /// Actions that change state or read secrets are refused with 503 (the default).
    FailClosed,
    /// They go ahead; the failure is logged and counted in `/metrics`.
    BestEffort,
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Record events at all (default true).
    pub enabled: bool,
    /// `fail-closed` (default) or `best-effort` [env: CASTELLAN_AUDIT_MODE].
    pub mode: AuditMode,
    /// A JSON-lines stream of every event: a file (appended, created 0600) or `-` for standard output
    /// [env: CASTELLAN_AUDIT_FILE]. Default: none (the store alone).
    pub file: Option<PathBuf>,
    /// How long events are kept in the store (default 90d).
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// How often a signed checkpoint of the chain is written (default 5m).
    #[serde(deserialize_with = "duration")]
    pub checkpoint_interval: Duration,
    /// How often token issuance counts are written, one event per client (default 10s).
    #[serde(deserialize_with = "duration")]
    pub token_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        let d = AuditSettings::default();
        Self {
            enabled: d.enabled,
            mode: AuditMode::FailClosed,
            file: None,
            retention: d.retention,
            checkpoint_interval: d.checkpoint_interval,
            token_interval: d.flush_interval,
        }
    }
}

impl AuditConfig {
    /// The settings the server runs with (validated).
    pub fn settings(&self) -> Result<AuditSettings, ConfigError> {
        let invalid = |field: &'static str, message: &str| ConfigError::Invalid {
            field,
            message: message.into(),
        };
        if self.retention < Duration::from_secs(3600) {
            return Err(invalid("audit.retention", "must be at least 1h"));
        }
        if self.checkpoint_interval < Duration::from_secs(1)
            || self.checkpoint_interval > self.retention
        {
            return Err(invalid(
                "audit.checkpoint_interval",
                "must be from 1s to audit.retention",
            ));
        }
        if self.token_interval < Duration::from_millis(100)
            || self.token_interval > Duration::from_secs(3600)
        {
            return Err(invalid("audit.token_interval", "must be from 100ms to 1h"));
        }
        Ok(AuditSettings {
            enabled: self.enabled,
            fail_closed: self.mode == AuditMode::FailClosed,
            file: self.file.clone(),
            retention: self.retention,
            checkpoint_interval: self.checkpoint_interval,
            flush_interval: self.token_interval,
        })
    }

    /// `CASTELLAN_AUDIT_*` variables.
    pub(super) fn apply_env(&mut self, var: &str, value: &str) -> Result<(), ConfigError> {
        match var {
            "CASTELLAN_AUDIT_MODE" => {
                self.mode = match value {
                    "fail-closed" => AuditMode::FailClosed,
                    "best-effort" => AuditMode::BestEffort,
                    _ => {
                        return Err(ConfigError::Env {
                            var: var.into(),
                            message: "expected fail-closed or best-effort".into(),
                        });
                    }
                }
            }
            "CASTELLAN_AUDIT_FILE" => self.file = Some(PathBuf::from(value)),
            _ => {}
        }
        Ok(())
    }
}
