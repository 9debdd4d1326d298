//! `castellan agent`: keeps certificate files delivered and fresh.
//!
//! For each declared certificate it generates the key locally and has a CSR signed (or, when asked,
//! lets the server generate the key), verifies the set (chain to the root, purpose, names, key match),
//! writes it atomically with exact per-file modes and owners — never touching an existing directory —
//! and runs the reload command once when the content changed. It renews at two thirds of the lifetime
//! (±10% jitter), reuses valid files after a restart, and re-issues when the CA bundle changes.
//!
//! It does not run a server, store anything but the files it delivers and its status file, or decide
//! what a certificate may contain: the profile on the server does.
#![forbid(unsafe_code)]

pub mod config;
mod http;
mod status;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use castellan_core::pki::{self, IssueRequest, KeyType, Purpose, SetPems};
use castellan_server::files::{OutFile, write_all_atomic};
use castellan_server::pki::SetJson;

pub use config::{AgentConfig, CertSpec};
pub use http::HttpBackend;
pub use status::{CertStatus, Status};

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
    /// The files could not be written; the old files are intact.
    #[error("writing the files failed, the old files are intact: {0}")]
    Write(String),
    /// Key or CSR generation failed.
    #[error("{0}")]
    Pki(#[from] castellan_core::pki::PkiError),
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

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    use castellan_core::Clock;
    castellan_core::SystemClock.now()
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at two thirds of its lifetime,
/// moved by up to ±10% of the lifetime. The jitter comes from the serial, so it is stable across
/// restarts and spread across a fleet.
pub fn renew_at(not_before: i64, not_after: i64, serial: &str) -> i64 {
    let lifetime = (not_after - not_before).max(1);
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

/// The agent.
pub struct Agent<B: Backend> {
    cfg: AgentConfig,
    backend: B,
    status: Arc<Mutex<Status>>,
}

impl<B: Backend> Agent<B> {
    /// An agent for `cfg` getting certificates from `backend`.
    pub fn new(cfg: AgentConfig, backend: B) -> Self {
        Self {
            cfg,
            backend,
            status: Arc::new(Mutex::new(Status::default())),
        }
    }

    /// The shared status (for the metrics endpoint).
    pub fn status(&self) -> Arc<Mutex<Status>> {
        self.status.clone()
    }

    /// One pass over every certificate: reuse what is valid, issue what is missing or due, write,
    /// reload once per changed command. Returns each certificate's result.
    pub async fn pass(&self, now: i64) -> Vec<(String, Result<Delivery, AgentError>)> {
        let bundle = self.backend.ca_bundle().await;
        let mut results = Vec::new();
        let mut reloads: BTreeSet<String> = BTreeSet::new();
        for spec in &self.cfg.certificates {
            let r = match &bundle {
                Ok(b) => self.deliver(spec, b, now).await,
                Err(e) => Err(AgentError::Server(e.to_string())),
            };
            if let (Ok(Delivery::Issued { .. }), Some(cmd)) = (&r, &spec.reload) {
                reloads.insert(cmd.clone());
            }
            self.record(spec, &r, now);
            results.push((spec.name.clone(), r));
        }
        // Debounced: each distinct reload command runs once per pass, after every file is in place.
        for cmd in reloads {
            run_reload(&cmd).await;
        }
        if let Some(path) = &self.cfg.status_file
            && let Ok(s) = self.status.lock()
            && let Err(e) = s.write(path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the status file");
        }
        results
    }

    fn record(&self, spec: &CertSpec, r: &Result<Delivery, AgentError>, now: i64) {
        let info = current_files(spec)
            .ok()
            .and_then(|p| pki::parse_cert_pem(&p.cert).ok());
        if let Ok(mut s) = self.status.lock() {
            let e = s.certificates.entry(spec.name.clone()).or_default();
            match r {
                Ok(d) => {
                    e.last_success = Some(now);
                    e.last_error = None;
                    e.consecutive_failures = 0;
                    if matches!(d, Delivery::Issued { .. }) {
                        e.issued += 1;
                    }
                }
                Err(err) => {
                    e.last_error = Some(err.to_string());
                    e.last_error_at = Some(now);
                    e.consecutive_failures += 1;
                }
            }
            if let Some(i) = info {
                e.renew_at = Some(renew_at(i.not_before, i.not_after, &i.serial_hex));
                e.serial = Some(i.serial_hex);
                e.not_after = Some(i.not_after);
            }
        }
    }

    /// When the next pass should run: the earliest renewal, the next CA check, or a back-off.
    pub fn next_wake(&self, now: i64) -> Duration {
        let ca = self.cfg.ca_check_interval;
        let Ok(s) = self.status.lock() else { return ca };
        let mut wake = ca;
        for spec in &self.cfg.certificates {
            let Some(c) = s.certificates.get(&spec.name) else {
                return Duration::from_secs(1);
            };
            if c.consecutive_failures > 0 {
                wake = wake.min(backoff(c.consecutive_failures - 1));
            } else if let Some(at) = c.renew_at {
                wake = wake.min(Duration::from_secs(
                    u64::try_from((at - now).max(0)).unwrap_or(0),
                ));
            }
        }
        wake.max(Duration::from_millis(200))
    }

    async fn deliver(
        &self,
        spec: &CertSpec,
        bundle: &str,
        now: i64,
    ) -> Result<Delivery, AgentError> {
        if let Some(serial) = reusable(spec, bundle, now) {
            fix_modes(spec);
            return Ok(Delivery::Reused { serial });
        }
        let req = IssueRequest {
            common_name: spec.common_name.clone(),
            dns_names: spec.dns.clone(),
            ip_addresses: spec.ip.clone(),
            uris: spec.uri.clone(),
            ttl_secs: spec.ttl.map(|t| t.as_secs()),
            key_type: spec.key_type,
        };
        let set = if spec.server_generated_key {
            self.backend.issue(&spec.profile, &req).await?
        } else {
            let (key_pem, csr) = pki::new_key_and_csr(
                spec.key_type.unwrap_or(KeyType::P256),
                spec.common_name.as_deref(),
            )?;
            let mut req = req;
            req.key_type = None;
            let mut set = self.backend.sign(&spec.profile, &csr, &req).await?;
            set.key_pem = Some(key_pem.to_string());
            set
        };
        if set.key_pem.is_none() {
            return Err(AgentError::Verify("the server sent no private key".into()));
        }
        pki::verify_set(&set.pems(), set.purpose, now)
            .map_err(|e| AgentError::Verify(e.to_string()))?;
        check_names(spec, &set.cert_pem)?;
        write_set(spec, &set)?;
        tracing::info!(certificate = %spec.name, serial = %set.serial, not_after = set.not_after, "delivered a new certificate");
        Ok(Delivery::Issued { serial: set.serial })
    }
}

/// The PEM texts of a set as files on disk.
struct OnDisk {
    cert: String,
    chain: String,
    ca_bundle: String,
    root: String,
    key: String,
}

fn current_files(spec: &CertSpec) -> std::io::Result<OnDisk> {
    let mut m: HashMap<&str, String> = HashMap::new();
    for f in spec.resolved_files() {
        m.insert(f.role, std::fs::read_to_string(&f.path)?);
    }
    let mut take = |k: &str| m.remove(k).unwrap_or_default();
    Ok(OnDisk {
        cert: take("cert"),
        chain: take("chain"),
        ca_bundle: take("ca_bundle"),
        root: take("root"),
        key: take("key"),
    })
}

/// The serial of valid files on disk that need no renewal yet, if there are such files.
fn reusable(spec: &CertSpec, bundle: &str, now: i64) -> Option<String> {
    let d = current_files(spec).ok()?;
    if d.ca_bundle.trim() != bundle.trim() {
        return None; // the CA changed: consumers need the new bundle and a leaf under it
    }
    let pems = SetPems {
        cert_pem: &d.cert,
        chain_pem: &d.chain,
        ca_bundle_pem: &d.ca_bundle,
        root_pem: &d.root,
        key_pem: Some(&d.key),
    };
    let info = [Purpose::Peer, Purpose::Server, Purpose::Client]
        .into_iter()
        .find_map(|p| pki::verify_set(&pems, p, now).ok())?;
    check_names(spec, &d.cert).ok()?;
    (now < renew_at(info.not_before, info.not_after, &info.serial_hex)).then_some(info.serial_hex)
}

/// The certificate carries exactly the names the spec asks for.
fn check_names(spec: &CertSpec, cert_pem: &str) -> Result<(), AgentError> {
    let info = pki::parse_cert_pem(cert_pem).map_err(|e| AgentError::Verify(e.to_string()))?;
    let want_dns: BTreeSet<String> = spec.dns.iter().map(|d| d.to_ascii_lowercase()).collect();
    let have_dns: BTreeSet<String> = info
        .dns_names
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    let want_ip: BTreeSet<_> = spec.ip.iter().collect();
    let have_ip: BTreeSet<_> = info.ip_addresses.iter().collect();
    let want_uri: BTreeSet<_> = spec.uri.iter().collect();
    let have_uri: BTreeSet<_> = info.uris.iter().collect();
    let cn_ok = spec.common_name.is_none() || spec.common_name == info.common_name;
    if want_dns == have_dns && want_ip == have_ip && want_uri == have_uri && cn_ok {
        Ok(())
    } else {
        Err(AgentError::Verify(format!(
            "the certificate's names differ from what `{}` asks for",
            spec.name
        )))
    }
}

fn write_set(spec: &CertSpec, set: &SetJson) -> Result<(), AgentError> {
    let files = spec.resolved_files();
    let content = |role: &str| -> &[u8] {
        match role {
            "cert" => set.cert_pem.as_bytes(),
            "chain" => set.chain_pem.as_bytes(),
            "ca_bundle" => set.ca_bundle_pem.as_bytes(),
            "root" => set.root_pem.as_bytes(),
            _ => set.key_pem.as_deref().unwrap_or_default().as_bytes(),
        }
    };
    let out: Vec<OutFile<'_>> = files
        .iter()
        .map(|f| OutFile {
            path: f.path.clone(),
            bytes: content(f.role),
            mode: f.mode,
            owner: (f.uid.is_some() || f.gid.is_some()).then_some((f.uid, f.gid)),
        })
        .collect();
    write_all_atomic(&out).map_err(|e| AgentError::Write(format!("{}: {e}", spec.dir.display())))
}

/// Puts modes and owners right on reused files (files only, never the directory).
fn fix_modes(spec: &CertSpec) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for f in spec.resolved_files() {
        let Ok(meta) = std::fs::metadata(&f.path) else {
            continue;
        };
        if meta.permissions().mode() & 0o7777 != f.mode {
            let _ = std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(f.mode));
        }
        let wrong_owner =
            f.uid.is_some_and(|u| u != meta.uid()) || f.gid.is_some_and(|g| g != meta.gid());
        if wrong_owner {
            let _ = std::os::unix::fs::chown(&f.path, f.uid, f.gid);
        }
    }
}

async fn run_reload(cmd: &str) {
    match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .await
    {
        Ok(s) if s.success() => tracing::info!(command = cmd, "reload command ran"),
        Ok(s) => tracing::warn!(command = cmd, status = %s, "reload command failed"),
        Err(e) => tracing::warn!(command = cmd, error = %e, "reload command could not start"),
    }
}

/// Serves `/metrics` for the agent's status.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    status: Arc<Mutex<Status>>,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let status = status.clone();
            async move { status.lock().map(|s| s.prometheus()).unwrap_or_default() }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
