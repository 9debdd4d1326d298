//! The agent itself: one pass over every certificate and secret, and when the next one is due.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use castellan_core::pki::{self, IssueRequest, KeyType};
use castellan_files::OutFile;

use crate::disk::{
    check_names, current_files, open_if_holds, remove_stale, reusable, write_error, write_set,
};
use crate::reload::run_reload;
use crate::{
    AgentConfig, AgentError, Backend, CertSpec, Delivery, PassReport, SecretDelivery, SecretSpec,
    Status, backoff, renew_at,
};

/// The agent.
pub struct Agent<B: Backend> {
    cfg: AgentConfig,
    pub(crate) backend: B,
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
        let (uid, gid) = spec.owner_ids();
        let owner = (uid.is_some() || gid.is_some()).then_some((uid, gid));
        let bytes = fetched.value.expose();
        remove_stale(&spec.path);
        if let Some(file) = open_if_holds(&spec.path, bytes) {
            file.fix(&spec.path, spec.mode, uid, gid);
            return Ok(SecretDelivery::Unchanged {
                version: fetched.version,
            });
        }
        castellan_files::write_set(&[OutFile {
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
    pub(crate) fn is_issued(&self) -> bool {
        matches!(self, Delivery::Issued { .. })
    }
}

impl SecretDelivery {
    pub(crate) fn is_written(&self) -> bool {
        matches!(self, SecretDelivery::Written { .. })
    }
}

/// The files of an entry changed in a way its consumer must be told of: new files were written, or a
/// write failed after replacing all of them (only the fsync of the directory failed). A set replaced
/// only in part is not reloaded: it does not verify, and the next pass issues again.
pub(crate) fn changed<T>(r: &Result<T, AgentError>, written: fn(&T) -> bool) -> bool {
    match r {
        Ok(d) => written(d),
        Err(AgentError::PartialWrite {
            replaced, total, ..
        }) => replaced == total,
        Err(_) => false,
    }
}
