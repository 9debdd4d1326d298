//! `castellan doctor` end to end: every finding code from a setup the fixture generator builds, no
//! false alarms on good sets (rcgen-, Castellan- and openssl-made), TLS against an in-process rustls
//! server and a real Mosquitto broker, JWKS against real `castellan serve` processes, and garbage
//! input that must become findings, never crashes.

use crate::support;

mod balanced;
mod chain;
mod compose;
mod files;
mod fixtures;
mod jwks;
mod mosquitto;
mod store;
mod tls;
mod token;
mod verifiers;

use std::path::Path;

use serde_json::Value;

/// What one `castellan doctor … --json` run returned.
pub struct Report {
    pub status: i32,
    pub findings: Vec<Value>,
    pub stderr: String,
}

impl Report {
    /// The codes found, in order.
    pub fn codes(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|f| f["code"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The finding with `code`, or a panic that shows everything found.
    pub fn get(&self, code: &str) -> &Value {
        self.findings
            .iter()
            .find(|f| f["code"] == code)
            .unwrap_or_else(|| panic!("no `{code}` finding in:\n{}", self.dump()))
    }

    pub fn has(&self, code: &str) -> bool {
        self.findings.iter().any(|f| f["code"] == code)
    }

    /// Error-severity findings.
    pub fn errors(&self) -> Vec<&Value> {
        self.findings
            .iter()
            .filter(|f| f["severity"] == "error")
            .collect()
    }

    pub fn warnings(&self) -> Vec<&Value> {
        self.findings
            .iter()
            .filter(|f| f["severity"] == "warning")
            .collect()
    }

    pub fn dump(&self) -> String {
        format!(
            "status {}\n{}\nstderr: {}",
            self.status,
            serde_json::to_string_pretty(&self.findings).unwrap_or_default(),
            self.stderr
        )
    }

    /// Asserts the exit status and that `code` was found; returns that finding.
    pub fn expect(&self, code: &str, status: i32) -> &Value {
        assert_eq!(
            self.status,
            status,
            "exit status for `{code}`:\n{}",
            self.dump()
        );
        let f = self.get(code);
        for field in ["severity", "subject", "message", "fix"] {
            assert!(
                f[field].as_str().is_some_and(|s| !s.is_empty()),
                "`{code}` lacks {field}: {f}"
            );
        }
        f
    }

    /// Asserts a clean bill: exit 0, no error and no warning.
    pub fn expect_clean(&self, what: &str) {
        assert_eq!(self.status, 0, "{what}:\n{}", self.dump());
        assert!(
            self.errors().is_empty() && self.warnings().is_empty(),
            "{what}: false alarm:\n{}",
            self.dump()
        );
    }
}

/// Runs `castellan doctor ARGS --json` in `cwd`.
pub fn doctor<S: AsRef<str>>(args: &[S], cwd: &Path) -> Report {
    let mut all: Vec<&str> = vec!["doctor"];
    all.extend(args.iter().map(|a| a.as_ref()));
    all.push("--json");
    let out = support::run(&all, cwd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = out.status.code().unwrap_or(-1);
    assert!(
        status == 0 || status == 1 || status == 2,
        "castellan {all:?} crashed ({status}): {stderr}"
    );
    let findings = if status == 2 {
        Vec::new()
    } else {
        let v: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("castellan {all:?}: not JSON ({e}):\n{stdout}\n{stderr}"));
        v["findings"].as_array().cloned().expect("findings array")
    };
    Report {
        status,
        findings,
        stderr,
    }
}

/// Whether `CI` is set (missing tools then fail instead of skipping).
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}
