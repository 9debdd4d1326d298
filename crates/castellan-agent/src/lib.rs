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

pub mod config;
pub mod http;
mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use castellan_core::pki::{self, IssueRequest, KeyType, Purpose, SetPems};
use castellan_server::files::{self, OutFile, SetWriteError, remove_stale_temps};
use castellan_server::pki::SetJson;

pub use castellan_core::secret_store::SecretValue;
pub use config::{AgentConfig, CertSpec, SecretSpec};
pub use http::HttpBackend;
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
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A temp file of a delivered file this old is left over from an interrupted write (a write takes
/// well under a second), not a write in progress.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// The agent.
pub struct Agent<B: Backend> {
    cfg: AgentConfig,
    backend: B,
    status: Arc<Mutex<Status>>,
    /// Reload commands whose files changed but which have not yet succeeded since, with their
    /// consecutive failures: each runs again on every pass (passes come with back-off) until it
    /// succeeds, so a consumer is never left on old files because one reload failed.
    pending_reloads: Mutex<BTreeMap<String, u32>>,
}

impl<B: Backend> Agent<B> {
    /// An agent for `cfg` getting certificates from `backend`.
    pub fn new(cfg: AgentConfig, backend: B) -> Self {
        Self {
            cfg,
            backend,
            status: Arc::new(Mutex::new(Status::default())),
            pending_reloads: Mutex::new(BTreeMap::new()),
        }
    }

    /// The shared status (for the metrics endpoint).
    pub fn status(&self) -> Arc<Mutex<Status>> {
        self.status.clone()
    }

    /// One pass over every certificate and secret: reuse what is valid, issue what is missing or due,
    /// fetch every secret and write what changed, reload once per changed command (and once per command
    /// still pending from a failed reload). One entry's failure never stops the others. Returns each
    /// certificate's, secret's and reload's result.
    pub async fn pass(&self, now: i64) -> PassReport {
        let mut results = PassReport::default();
        let mut reloads: BTreeSet<String> = self
            .pending_reloads
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        if !self.cfg.certificates.is_empty() {
            let bundle = self.backend.ca_bundle().await;
            for spec in &self.cfg.certificates {
                let r = match &bundle {
                    Ok(b) => self.deliver(spec, b, now).await,
                    Err(e) => Err(AgentError::Server(e.to_string())),
                };
                if let (Some(cmd), true) = (&spec.reload, changed(&r, Delivery::is_issued)) {
                    reloads.insert(cmd.clone());
                }
                self.record(spec, &r, now);
                results.certificates.push((spec.name.clone(), r));
            }
        }
        for spec in &self.cfg.secrets {
            let r = self.deliver_secret(spec).await;
            if let (Some(cmd), true) = (&spec.reload, changed(&r, SecretDelivery::is_written)) {
                reloads.insert(cmd.clone());
            }
            self.record_secret(spec, &r, now);
            results.secrets.push((spec.name.clone(), r));
        }
        // Debounced: each distinct reload command runs once per pass, after every file is in place.
        // One that fails stays pending until it succeeds.
        for cmd in reloads {
            let r = run_reload(&cmd, self.cfg.reload_timeout).await;
            if let Ok(mut pending) = self.pending_reloads.lock() {
                match r {
                    Ok(()) => {
                        pending.remove(&cmd);
                    }
                    Err(_) => *pending.entry(cmd.clone()).or_default() += 1,
                }
            }
            results.reloads.push((cmd, r));
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

    fn record_secret(&self, spec: &SecretSpec, r: &Result<SecretDelivery, AgentError>, now: i64) {
        if let Ok(mut s) = self.status.lock() {
            let e = s.secrets.entry(spec.name.clone()).or_default();
            e.path = Some(spec.path.display().to_string());
            match r {
                Ok(d) => {
                    let (SecretDelivery::Unchanged { version }
                    | SecretDelivery::Written { version }) = d;
                    e.version = Some(*version);
                    e.last_success = Some(now);
                    e.last_error = None;
                    e.consecutive_failures = 0;
                    if matches!(d, SecretDelivery::Written { .. }) {
                        e.written += 1;
                    }
                }
                Err(err) => {
                    e.last_error = Some(err.to_string());
                    e.last_error_at = Some(now);
                    e.consecutive_failures += 1;
                }
            }
        }
    }

    /// When the next pass should run: the earliest renewal, the next CA check, the next secret check,
    /// or a back-off.
    pub fn next_wake(&self, now: i64) -> Duration {
        let mut wake = self.cfg.ca_check_interval;
        if !self.cfg.secrets.is_empty() {
            wake = wake.min(self.cfg.secret_check_interval);
        }
        let Ok(s) = self.status.lock() else {
            return wake.max(Duration::from_millis(200));
        };
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
        for spec in &self.cfg.secrets {
            let Some(st) = s.secrets.get(&spec.name) else {
                return Duration::from_secs(1);
            };
            if st.consecutive_failures > 0 {
                wake = wake.min(backoff(st.consecutive_failures - 1));
            }
        }
        if let Ok(pending) = self.pending_reloads.lock() {
            for failures in pending.values() {
                wake = wake.min(backoff(failures.saturating_sub(1)));
            }
        }
        wake.max(Duration::from_millis(200))
    }

    /// Fetches the secret and makes its file hold exactly its bytes, with the configured mode and
    /// owner. A missing secret or a failed write leaves the file as it was.
    async fn deliver_secret(&self, spec: &SecretSpec) -> Result<SecretDelivery, AgentError> {
        let fetched = self
            .backend
            .secret(&spec.name)
            .await?
            .ok_or_else(|| AgentError::MissingSecret(spec.name.clone()))?;
        let owner = (spec.uid.is_some() || spec.gid.is_some()).then_some((spec.uid, spec.gid));
        let bytes = fetched.value.expose();
        remove_stale(&spec.path);
        if let Some(file) = open_if_holds(&spec.path, bytes) {
            file.fix(&spec.path, spec.mode, spec.uid, spec.gid);
            return Ok(SecretDelivery::Unchanged {
                version: fetched.version,
            });
        }
        files::write_set(&[OutFile {
            path: spec.path.clone(),
            bytes,
            mode: spec.mode,
            owner,
        }])
        .map_err(|e| write_error(&spec.path, 1, e))?;
        tracing::info!(secret = %spec.name, version = fetched.version, path = %spec.path.display(), "delivered a new secret version");
        Ok(SecretDelivery::Written {
            version: fetched.version,
        })
    }

    async fn deliver(
        &self,
        spec: &CertSpec,
        bundle: &str,
        now: i64,
    ) -> Result<Delivery, AgentError> {
        for f in spec.resolved_files() {
            remove_stale(&f.path);
        }
        if let Some((serial, on_disk)) = reusable(spec, bundle, now) {
            for (f, file) in &on_disk.files {
                file.fix(&f.path, f.mode, f.uid, f.gid);
            }
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

impl Delivery {
    fn is_issued(&self) -> bool {
        matches!(self, Delivery::Issued { .. })
    }
}

impl SecretDelivery {
    fn is_written(&self) -> bool {
        matches!(self, SecretDelivery::Written { .. })
    }
}

/// The files of an entry changed in a way its consumer must be told of: new files were written, or a
/// write failed after replacing all of them (only the fsync of the directory failed). A set replaced
/// only in part is not reloaded: it does not verify, and the next pass issues again.
fn changed<T>(r: &Result<T, AgentError>, written: fn(&T) -> bool) -> bool {
    match r {
        Ok(d) => written(d),
        Err(AgentError::PartialWrite {
            replaced, total, ..
        }) => replaced == total,
        Err(_) => false,
    }
}

fn write_error(what: &Path, total: usize, e: SetWriteError) -> AgentError {
    let message = format!("{}: {}", what.display(), e.error);
    match e.replaced {
        0 => AgentError::Write(message),
        replaced => AgentError::PartialWrite {
            replaced,
            total,
            message,
        },
    }
}

/// Removes what an interrupted write of `path` left behind (its temp files, which may hold a key).
fn remove_stale(path: &Path) {
    match remove_stale_temps(path, STALE_TEMP_AGE) {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(path = %path.display(), removed = n, "removed temp files left by an interrupted write")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove old temp files")
        }
    }
}

/// A file the agent delivered earlier, opened once to be read back and to have its mode and owner
/// put right through that same handle: a path would follow a symlink put in its place, and make a
/// root agent chmod or chown whatever it points at.
struct Existing {
    file: std::fs::File,
    meta: std::fs::Metadata,
}

impl Existing {
    /// Opens `path` when it is a regular file with a single link, of at most `MAX_FILE_BYTES`.
    /// Anything else (a symlink, a FIFO, a device, a hard link to some other file) is not reused: the
    /// entry is written again, and the rename replaces the name itself, never what it pointed to.
    fn open(path: &Path) -> std::io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        // NOFOLLOW: a symlink fails (ELOOP). NONBLOCK: opening a FIFO does not wait for a writer.
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata()?;
        use std::os::unix::fs::MetadataExt;
        if !meta.is_file() || meta.nlink() != 1 || meta.len() > MAX_FILE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is not a regular file of at most 1 MiB with a single link",
                    path.display()
                ),
            ));
        }
        Ok(Self { file, meta })
    }

    /// The content (at most `MAX_FILE_BYTES`: the file may have grown since it was opened).
    fn read(&self) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(
            usize::try_from(self.meta.len()).unwrap_or(0) + 1,
        ));
        (&self.file)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_FILE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "larger than 1 MiB",
            ));
        }
        Ok(buf)
    }

    /// Puts the file's mode and owner right (the file only, never its directory).
    fn fix(&self, path: &Path, mode: u32, uid: Option<u32>, gid: Option<u32>) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = &self.meta;
        let wrong_owner = uid.is_some_and(|u| u != m.uid()) || gid.is_some_and(|g| g != m.gid());
        if wrong_owner && let Err(e) = std::os::unix::fs::fchown(&self.file, uid, gid) {
            tracing::warn!(path = %path.display(), error = %e, "cannot set the file's owner");
        }
        // After the chown, which may have cleared set-id bits of the mode.
        if (wrong_owner || m.mode() & 0o7777 != mode)
            && let Err(e) = self
                .file
                .set_permissions(std::fs::Permissions::from_mode(mode))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot set the file's mode");
        }
    }
}

/// The PEM texts of a set as files on disk, and the files, open.
struct OnDisk {
    cert: String,
    chain: String,
    ca_bundle: String,
    root: String,
    key: String,
    files: Vec<(config::ResolvedFile, Existing)>,
}

fn current_files(spec: &CertSpec) -> std::io::Result<OnDisk> {
    let mut m: HashMap<&str, String> = HashMap::new();
    let mut files = Vec::new();
    for f in spec.resolved_files() {
        let file = Existing::open(&f.path)?;
        let text = String::from_utf8(std::mem::take(&mut *file.read()?))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        m.insert(f.role, text);
        files.push((f, file));
    }
    let mut take = |k: &str| m.remove(k).unwrap_or_default();
    Ok(OnDisk {
        cert: take("cert"),
        chain: take("chain"),
        ca_bundle: take("ca_bundle"),
        root: take("root"),
        key: take("key"),
        files,
    })
}

/// The serial of valid files on disk that need no renewal yet, and those files, if there are such.
fn reusable(spec: &CertSpec, bundle: &str, now: i64) -> Option<(String, OnDisk)> {
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
    (now < renew_at(info.not_before, info.not_after, &info.serial_hex))
        .then_some((info.serial_hex, d))
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
    files::write_set(&out).map_err(|e| write_error(&spec.dir, out.len(), e))
}

/// The file at `path`, open, when it is a regular file holding exactly `bytes` (read only when the
/// size matches).
fn open_if_holds(path: &Path, bytes: &[u8]) -> Option<Existing> {
    let file = Existing::open(path).ok()?;
    if file.meta.len() != bytes.len() as u64 {
        return None;
    }
    file.read()
        .is_ok_and(|on_disk| on_disk.as_slice() == bytes)
        .then_some(file)
}

/// Runs a reload command with `sh -c`, for at most `timeout`: one that hangs is killed, with whatever
/// it started (it runs in a process group of its own), so it cannot stall renewals.
async fn run_reload(cmd: &str, timeout: Duration) -> Result<(), String> {
    let r = run_with_timeout(cmd, timeout).await;
    match &r {
        Ok(()) => tracing::info!(command = cmd, "reload command ran"),
        Err(e) => {
            tracing::warn!(command = cmd, error = %e, "reload command failed; it runs again on the next pass")
        }
    }
    r
}

async fn run_with_timeout(cmd: &str, timeout: Duration) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(format!("it exited with {s}")),
        Ok(Err(e)) => Err(format!("cannot wait for it: {e}")),
        Err(_) => {
            // Not yet waited for, so its pid (and so its group id) is still its own.
            if let Some(group) = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            Err(format!(
                "it did not finish within {}s and was killed",
                timeout.as_secs()
            ))
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    /// Secrets from a map; no PKI (these tests declare no certificate).
    #[derive(Default)]
    struct Fake {
        secrets: Mutex<HashMap<String, (i64, Vec<u8>)>>,
        fail: Mutex<Option<String>>,
    }

    impl Fake {
        fn put(&self, name: &str, value: &[u8]) {
            let mut m = self.secrets.lock().expect("lock");
            let v = m.get(name).map_or(1, |(v, _)| v + 1);
            m.insert(name.to_owned(), (v, value.to_vec()));
        }
    }

    impl Backend for Fake {
        async fn ca_bundle(&self) -> Result<String, AgentError> {
            Err(AgentError::Server("no PKI in this test".into()))
        }
        async fn sign(&self, _: &str, _: &str, _: &IssueRequest) -> Result<SetJson, AgentError> {
            Err(AgentError::Server("no PKI in this test".into()))
        }
        async fn issue(&self, _: &str, _: &IssueRequest) -> Result<SetJson, AgentError> {
            Err(AgentError::Server("no PKI in this test".into()))
        }
        async fn secret(&self, name: &str) -> Result<Option<FetchedSecret>, AgentError> {
            if let Some(e) = self.fail.lock().expect("lock").clone() {
                return Err(AgentError::Server(e));
            }
            Ok(self
                .secrets
                .lock()
                .expect("lock")
                .get(name)
                .map(|(version, v)| FetchedSecret {
                    version: *version,
                    value: SecretValue::new(zeroize::Zeroizing::new(v.clone())),
                }))
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777
    }

    fn config(d: &Path, secrets: &str) -> AgentConfig {
        let text = format!(
            "server = \"http://127.0.0.1:1\"\ncredential_file = \"x.json\"\nstatus_file = \"{}\"\nsecret_check_interval = \"45s\"\n{secrets}",
            d.join("status.json").display()
        );
        AgentConfig::from_toml("agent.toml", &text).expect("config")
    }

    const VALUE: &[u8] = b"\x00s3cr3t-\xffvalue";

    #[tokio::test]
    async fn secrets_are_written_exactly_once_per_change_and_reloaded_once_per_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let existing = d.join("existing");
        std::fs::create_dir(&existing).expect("mkdir");
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        let log = d.join("reloads.log");
        let reload = format!("echo reload >> {}", log.display());
        let cfg = config(
            d,
            &format!(
                "[[secret]]\nname = \"a/pw\"\npath = \"{0}/existing/pw\"\nmode = \"0640\"\nreload = \"{reload}\"\n\
                 [[secret]]\nname = \"b\"\npath = \"{0}/new/dir/b\"\nreload = \"{reload}\"\n",
                d.display()
            ),
        );
        let fake = Fake::default();
        fake.put("a/pw", VALUE);
        fake.put("b", b"bee");
        let agent = Agent::new(cfg, fake);
        let reloads = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .count()
        };

        let r = agent.pass(100).await;
        assert!(
            r.certificates.is_empty(),
            "no CA fetch without certificates"
        );
        assert_eq!(
            r.secrets
                .iter()
                .map(|(n, r)| (n.as_str(), r.as_ref().ok().cloned()))
                .collect::<Vec<_>>(),
            [
                ("a/pw", Some(SecretDelivery::Written { version: 1 })),
                ("b", Some(SecretDelivery::Written { version: 1 }))
            ]
        );
        let pw = existing.join("pw");
        assert_eq!(std::fs::read(&pw).expect("read"), VALUE);
        assert_eq!(mode(&pw), 0o640);
        assert_eq!(
            mode(&existing),
            0o750,
            "an existing directory is never changed"
        );
        assert_eq!(
            mode(&d.join("new/dir")),
            0o755,
            "a missing one is created 0755"
        );
        assert_eq!(mode(&d.join("new/dir/b")), 0o600, "the default mode");
        assert_eq!(reloads(), 1, "one shared command runs once per pass");

        // Nothing changed: no write (same inode), no reload; a wrong mode is put right.
        let inode = std::fs::metadata(&pw).expect("meta").ino();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let r = agent.pass(200).await;
        assert!(
            r.secrets
                .iter()
                .all(|(_, r)| matches!(r, Ok(SecretDelivery::Unchanged { version: 1 }))),
            "{r:?}"
        );
        assert_eq!(std::fs::metadata(&pw).expect("meta").ino(), inode);
        assert_eq!(mode(&pw), 0o640);
        assert_eq!(reloads(), 1);

        // A new version of one secret: that file is rewritten and the command runs once more.
        agent.backend.put("a/pw", b"second");
        let r = agent.pass(300).await;
        assert!(matches!(
            r.secrets[0].1,
            Ok(SecretDelivery::Written { version: 2 })
        ));
        assert!(matches!(
            r.secrets[1].1,
            Ok(SecretDelivery::Unchanged { version: 1 })
        ));
        assert_eq!(std::fs::read(&pw).expect("read"), b"second");
        assert_eq!(mode(&pw), 0o640);
        assert_eq!(reloads(), 2);

        // A file changed on disk behind the agent's back (same size too) is put back.
        std::fs::write(&pw, b"SECOND").expect("tamper");
        let r = agent.pass(400).await;
        assert!(matches!(
            r.secrets[0].1,
            Ok(SecretDelivery::Written { version: 2 })
        ));
        assert_eq!(std::fs::read(&pw).expect("read"), b"second");

        let st = agent.status();
        let st = st.lock().expect("lock");
        let a = &st.secrets["a/pw"];
        assert_eq!(
            (a.version, a.last_success, a.written, a.consecutive_failures),
            (Some(2), Some(400), 3, 0)
        );
        assert_eq!(a.path.as_deref(), Some(pw.to_str().expect("utf-8")));
        assert_eq!(st.secrets["b"].written, 1);
    }

    #[tokio::test]
    async fn a_missing_or_failing_secret_leaves_its_file_and_the_others_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let cfg = config(
            d,
            &format!(
                "[[secret]]\nname = \"gone\"\npath = \"{0}/gone\"\nreload = \"touch {0}/reloaded\"\n\
                 [[secret]]\nname = \"here\"\npath = \"{0}/here\"\n",
                d.display()
            ),
        );
        std::fs::write(d.join("gone"), b"old contents").expect("old file");
        std::fs::set_permissions(d.join("gone"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let fake = Fake::default();
        fake.put("here", VALUE);
        let agent = Agent::new(cfg, fake);
        let r = agent.pass(100).await;
        assert!(!r.all_ok());
        let err = r.secrets[0].1.as_ref().expect_err("missing").to_string();
        assert!(
            err.contains("secret `gone` does not exist on the server"),
            "{err}"
        );
        assert!(matches!(
            r.secrets[1].1,
            Ok(SecretDelivery::Written { version: 1 })
        ));
        assert_eq!(
            std::fs::read(d.join("gone")).expect("read"),
            b"old contents"
        );
        assert_eq!(mode(&d.join("gone")), 0o644, "not even its mode is touched");
        assert!(!d.join("reloaded").exists(), "no reload for a failed entry");
        assert_eq!(std::fs::read(d.join("here")).expect("read"), VALUE);

        // The status file names the failure; no value appears in it.
        let text = std::fs::read(d.join("status.json")).expect("status file");
        let st: serde_json::Value = serde_json::from_slice(&text).expect("json");
        assert_eq!(st["secrets"]["gone"]["consecutive_failures"], 1);
        assert!(
            st["secrets"]["gone"]["last_error"]
                .as_str()
                .expect("error")
                .contains("does not exist")
        );
        assert_eq!(st["secrets"]["here"]["version"], 1);
        assert!(st["secrets"]["here"]["last_error"].is_null());
        assert!(
            !text.windows(VALUE.len()).any(|w| w == VALUE)
                && !String::from_utf8_lossy(&text).contains("s3cr3t"),
            "no value in the status file"
        );

        // Failing secrets make the next pass come soon (back-off), then every secret_check_interval.
        assert!(agent.next_wake(100) <= Duration::from_secs(1));
        agent.backend.put("gone", b"back");
        let r = agent.pass(200).await;
        assert!(r.all_ok(), "{r:?}");
        assert_eq!(std::fs::read(d.join("gone")).expect("read"), b"back");
        assert_eq!(mode(&d.join("gone")), 0o600);
        assert!(d.join("reloaded").exists());
        assert_eq!(agent.next_wake(200), Duration::from_secs(45));

        // A server error is that entry's error too, and the files stay.
        *agent.backend.fail.lock().expect("lock") = Some("server down".into());
        let r = agent.pass(300).await;
        assert!(r.secrets.iter().all(|(_, r)| r.is_err()));
        assert_eq!(std::fs::read(d.join("here")).expect("read"), VALUE);
        let st = agent.status();
        let st = st.lock().expect("lock");
        assert_eq!(st.secrets["here"].consecutive_failures, 1);
        assert_eq!(
            st.secrets["here"].version,
            Some(1),
            "the version the file holds"
        );
        assert_eq!(st.secrets["gone"].consecutive_failures, 1);
    }

    fn lines(p: &Path) -> usize {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    }

    #[tokio::test]
    async fn a_symlink_in_place_of_a_file_is_replaced_and_what_it_points_to_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // What a user who may write the directory plants: a link to a file (say /etc/shadow) that
        // even holds the right bytes.
        let target = d.join("target");
        std::fs::write(&target, VALUE).expect("target");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o604)).expect("chmod");
        let pw = d.join("pw");
        std::os::unix::fs::symlink(&target, &pw).expect("symlink");
        let cfg = config(
            d,
            &format!(
                "[[secret]]\nname = \"pw\"\npath = \"{}\"\nmode = \"0640\"\n",
                pw.display()
            ),
        );
        let fake = Fake::default();
        fake.put("pw", VALUE);
        let agent = Agent::new(cfg, fake);
        let r = agent.pass(100).await;
        assert!(
            matches!(r.secrets[0].1, Ok(SecretDelivery::Written { version: 1 })),
            "{r:?}"
        );
        assert!(std::fs::symlink_metadata(&pw).expect("meta").is_file());
        assert_eq!(mode(&pw), 0o640);
        assert_eq!(mode(&target), 0o604, "the link's target keeps its mode");
        assert_eq!(std::fs::read(&target).expect("read"), VALUE);
    }

    #[test]
    fn only_a_regular_file_with_one_link_and_at_most_1_mib_is_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("file"), b"pem").expect("file");
        let f = Existing::open(&d.join("file")).expect("a regular file");
        assert_eq!(f.read().expect("read").as_slice(), b"pem");
        std::os::unix::fs::symlink(d.join("file"), d.join("link")).expect("symlink");
        let fifo = d.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        std::fs::write(d.join("big"), vec![b'x'; (MAX_FILE_BYTES + 1) as usize]).expect("big");
        std::fs::write(d.join("one"), b"pem").expect("file");
        std::fs::hard_link(d.join("one"), d.join("two")).expect("hard link");
        for name in ["link", "fifo", "big", "two", "missing", "."] {
            // The FIFO has no writer: a blocking open would never return.
            assert!(Existing::open(&d.join(name)).is_err(), "{name}");
        }
    }

    #[tokio::test]
    async fn a_failed_reload_runs_again_on_the_next_pass_until_it_succeeds_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (marker, log) = (d.join("marker"), d.join("reloads.log"));
        // Fails the first time (and leaves the marker), succeeds from then on.
        let reload = format!(
            "test -e {m} || {{ touch {m}; exit 1; }}; echo ok >> {l}",
            m = marker.display(),
            l = log.display()
        );
        let cfg = config(
            d,
            &format!(
                "[[secret]]\nname = \"pw\"\npath = \"{}/pw\"\nreload = \"{reload}\"\n",
                d.display()
            ),
        );
        let fake = Fake::default();
        fake.put("pw", VALUE);
        let agent = Agent::new(cfg, fake);
        let r = agent.pass(100).await;
        assert!(matches!(r.secrets[0].1, Ok(SecretDelivery::Written { .. })));
        assert!(
            !r.all_ok() && r.reloads.len() == 1 && r.reloads[0].1.is_err(),
            "{r:?}"
        );
        assert!(marker.exists());
        assert_eq!(lines(&log), 0);
        assert!(
            agent.next_wake(100) <= Duration::from_secs(1),
            "retried soon"
        );

        // The file is unchanged now, but its consumer has not been told yet: the reload runs again.
        let r = agent.pass(200).await;
        assert!(matches!(
            r.secrets[0].1,
            Ok(SecretDelivery::Unchanged { .. })
        ));
        assert!(r.all_ok(), "{r:?}");
        assert_eq!(lines(&log), 1);
        assert_eq!(agent.next_wake(200), Duration::from_secs(45));

        // And only once.
        let r = agent.pass(300).await;
        assert!(r.reloads.is_empty(), "{r:?}");
        assert_eq!(lines(&log), 1);
    }

    #[tokio::test]
    async fn a_reload_that_hangs_is_killed_with_what_it_started_and_stays_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let late = d.join("late");
        // A background job of the command: killing `sh` alone would leave it running.
        let reload = format!("(sleep 2; touch {}) & wait", late.display());
        let cfg = config(
            d,
            &format!(
                "reload_timeout = \"1s\"\n[[secret]]\nname = \"pw\"\npath = \"{}/pw\"\nreload = \"{reload}\"\n",
                d.display()
            ),
        );
        let fake = Fake::default();
        fake.put("pw", VALUE);
        let agent = Agent::new(cfg, fake);
        let started = std::time::Instant::now();
        let r = agent.pass(100).await;
        assert!(
            started.elapsed() < Duration::from_millis(1900),
            "not waited for"
        );
        let err = r.reloads[0].1.as_ref().expect_err("timed out");
        assert!(err.contains("did not finish within 1s"), "{err}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!late.exists(), "the command's children were killed too");
        assert!(
            agent.next_wake(100) <= Duration::from_secs(1),
            "retried soon"
        );
    }

    #[tokio::test]
    async fn old_temp_files_of_a_delivered_file_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        let stale = d.join(".pw.0123456789ab.tmp");
        std::fs::write(&stale, b"a key from before a crash").expect("stale");
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .expect("open")
            .set_modified(hour_ago)
            .expect("mtime");
        let young = d.join(".pw.aaaaaaaaaaaa.tmp");
        std::fs::write(&young, b"a write in progress").expect("young");
        let other = d.join(".other.0123456789ab.tmp");
        std::fs::write(&other, b"not ours").expect("other");
        std::fs::File::options()
            .write(true)
            .open(&other)
            .expect("open")
            .set_modified(hour_ago)
            .expect("mtime");
        let cfg = config(
            d,
            &format!("[[secret]]\nname = \"pw\"\npath = \"{}/pw\"\n", d.display()),
        );
        let fake = Fake::default();
        fake.put("pw", VALUE);
        let agent = Agent::new(cfg, fake);
        assert!(agent.pass(100).await.all_ok());
        assert!(!stale.exists(), "a stale temp file of pw is removed");
        assert!(young.exists() && other.exists());
    }

    #[test]
    fn write_errors_say_whether_the_old_files_are_intact() {
        let err = |replaced| {
            write_error(
                Path::new("certs/x"),
                5,
                SetWriteError {
                    error: std::io::Error::other("boom"),
                    replaced,
                },
            )
        };
        let none = err(0).to_string();
        assert!(none.contains("the old files are intact"), "{none}");
        let some = err(2);
        assert!(!changed::<Delivery>(&Err(some), Delivery::is_issued));
        let some = err(2).to_string();
        assert!(
            !some.contains("intact") && some.contains("after 2 of 5 had been replaced"),
            "{some}"
        );
        // All replaced, only the durability failed: the consumer is told.
        assert!(changed::<Delivery>(&Err(err(5)), Delivery::is_issued));
    }

    #[test]
    fn impossible_dates_do_not_panic() {
        assert_eq!(
            renew_at(200, 100, "01"),
            200,
            "notAfter before notBefore: renew now"
        );
        for (nb, na) in [
            (i64::MIN, i64::MAX),
            (i64::MAX, i64::MIN),
            (i64::MAX, i64::MAX),
            (0, i64::MAX),
        ] {
            let at = renew_at(nb, na, "02");
            assert!(at >= nb && at <= na.max(nb), "{nb} {na} {at}");
        }
        let at = renew_at(0, 300, "03");
        assert!((170..=230).contains(&at), "{at}");
    }

    #[test]
    fn secret_metrics_have_a_secret_label_and_certificate_lines_are_unchanged() {
        let mut st = Status::default();
        st.certificates.insert(
            "broker".into(),
            CertStatus {
                not_after: Some(10),
                ..CertStatus::default()
            },
        );
        let before = st.prometheus();
        assert!(
            !before.contains("secret"),
            "no secret lines without secrets"
        );
        st.secrets.insert(
            "mqtt/pw".into(),
            SecretStatus {
                version: Some(3),
                last_success: Some(50),
                consecutive_failures: 2,
                last_error: Some("x".into()),
                written: 1,
                ..SecretStatus::default()
            },
        );
        let text = st.prometheus();
        assert!(text.starts_with(&before), "{text}");
        for line in [
            "castellan_agent_secret_version{secret=\"mqtt/pw\"} 3",
            "castellan_agent_secret_last_success_timestamp_seconds{secret=\"mqtt/pw\"} 50",
            "castellan_agent_secret_last_pass_failed{secret=\"mqtt/pw\"} 1",
            "castellan_agent_secret_consecutive_failures{secret=\"mqtt/pw\"} 2",
            "castellan_agent_secret_written{secret=\"mqtt/pw\"} 1",
            "# TYPE castellan_agent_secret_version gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
