//! PKI use cases: the CA created at init, issuance (server-generated key or CSR), revocation, CRLs and
//! CA import. Every issued set is verified by the core before it leaves this module.

use std::sync::Arc;

use castellan_core::envelope::{DataKey, MasterKey};
use castellan_core::pki::{
    self, CaOptions, IssueRequest, IssuedSet, Issuer, PkiError, Profile, Profiles,
    RevocationReason, RevokedCert, create_ca,
};
use castellan_core::secret;
use castellan_store::{
    CaRow, CertBatcher, CertRow, CrlRow, DataKeyRow, Revocation, Store, StoreError,
};
pub use castellan_wire::pki::{CertSummary, SetJson};
use zeroize::Zeroizing;

use crate::data_keys;
use crate::error::ServiceError;

fn ca_key_context(id: &str) -> String {
    format!("ca-key:{id}")
}

fn root_key_context(id: &str) -> String {
    format!("ca-root-key:{id}")
}

/// A new root (10 years) and intermediate (5 years, pathLen 0), both keys sealed under `dek`.
/// With `root_offline`, the root key is not sealed into the row but returned as PKCS#8 PEM, once.
pub fn new_ca_row(
    dek: &DataKey,
    root_offline: bool,
    now: i64,
) -> Result<(CaRow, Option<Zeroizing<String>>), ServiceError> {
    let ca = create_ca(&CaOptions::root(), &CaOptions::intermediate(), now)?;
    let id = secret::random_id("ca-", 8)?;
    let sealed_key = dek.seal(&ca_key_context(&id), &ca.intermediate.key_pkcs8_der)?;
    let (root_sealed_key, root_key_pem) = if root_offline {
        let pem = pem::encode_config(
            &pem::Pem::new("PRIVATE KEY", ca.root.key_pkcs8_der.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        (None, Some(Zeroizing::new(pem)))
    } else {
        (
            Some(dek.seal(&root_key_context(&id), &ca.root.key_pkcs8_der)?),
            None,
        )
    };
    let row = CaRow {
        id,
        ca_cert_pem: ca.intermediate.cert_pem.clone(),
        intermediates_pem: String::new(),
        root_pem: ca.root.cert_pem.clone(),
        dek_id: dek.id().to_owned(),
        sealed_key,
        root_sealed_key,
        created_at: now,
    };
    Ok((row, root_key_pem))
}

/// The issuing CA, loaded: its key parsed once.
#[derive(Debug)]
pub struct LoadedCa {
    /// The store id of the CA row.
    pub id: String,
    /// The issuer (shared with the threads that generate RSA keys).
    pub issuer: Arc<Issuer>,
}

/// Loads the issuing CA. `crl_url` (public_url + `/v1/pki/crl`) goes into every leaf when given.
pub async fn load_ca(
    store: &Store,
    master: &MasterKey,
    crl_url: Option<&str>,
) -> Result<LoadedCa, ServiceError> {
    let row = store
        .active_ca()
        .await?
        .ok_or(ServiceError::NotInitialized)?;
    let dek = data_keys::data_key(store, master, &row.dek_id).await?;
    let der = dek.open(&ca_key_context(&row.id), &row.sealed_key)?;
    let mut issuer = Issuer::new(
        &row.ca_cert_pem,
        &der,
        &row.root_pem,
        &row.intermediates_pem,
    )?;
    if let Some(url) = crl_url {
        issuer = issuer.with_crl_url(url)?;
    }
    Ok(LoadedCa {
        id: row.id,
        issuer: Arc::new(issuer),
    })
}

/// The id of the CA that issues now (cheap; lets replicas notice an imported CA).
pub async fn active_ca_id(store: &Store) -> Result<Option<String>, ServiceError> {
    Ok(store.active_ca().await?.map(|r| r.id))
}

fn record(set: &IssuedSet, ca: &LoadedCa, now: i64) -> CertRow {
    let mut sans: Vec<String> = set.dns_names.iter().map(|d| format!("dns:{d}")).collect();
    sans.extend(set.ip_addresses.iter().map(|i| format!("ip:{i}")));
    sans.extend(set.uris.iter().map(|u| format!("uri:{u}")));
    CertRow {
        serial: set.serial_hex.clone(),
        ca_id: ca.id.clone(),
        profile: set.profile.clone(),
        common_name: set.common_name.clone(),
        sans: sans.join(" "),
        not_before: set.not_before,
        not_after: set.not_after,
        cert_pem: set.cert_pem.clone(),
        revoked_at: None,
        revocation_reason: None,
        created_at: now,
    }
}

/// Where issued certificates are recorded: the store itself (one statement each, for the CLI) or the
/// server's group-commit writer. Either way the row is committed before the set is returned.
pub trait CertLog: Sync {
    /// Records `row`.
    fn record(&self, row: CertRow) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl CertLog for Store {
    async fn record(&self, row: CertRow) -> Result<(), StoreError> {
        self.add_certificate(&row).await
    }
}

impl CertLog for CertBatcher {
    fn record(&self, row: CertRow) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.add(row)
    }
}

/// Issues a certificate with a key generated here; the set is verified and recorded.
pub async fn issue(
    log: &impl CertLog,
    ca: &LoadedCa,
    profiles: &Profiles,
    profile: &str,
    req: &IssueRequest,
    now: i64,
) -> Result<IssuedSet, ServiceError> {
    issue_with(log, ca, profiles.get(profile)?, req, now).await
}

/// Issues a certificate with a key generated here under `profile` itself (one not looked up by name,
/// such as the replicas' own TLS certificates); the set is verified and recorded.
pub async fn issue_with(
    log: &impl CertLog,
    ca: &LoadedCa,
    profile: &Profile,
    req: &IssueRequest,
    now: i64,
) -> Result<IssuedSet, ServiceError> {
    let set = if profile.check_key_type(req.key_type)?.is_rsa() {
        // An RSA key takes from ≈60 ms (2048) to seconds (4096) to generate: off the async workers,
        // which serve every other request (tokens, health checks), and a few at a time.
        let _turn = RSA_KEYS
            .acquire()
            .await
            .map_err(|_| PkiError::KeyGeneration)?;
        let (issuer, profile, req) = (ca.issuer.clone(), profile.clone(), req.clone());
        tokio::task::spawn_blocking(move || issuer.issue(&profile, &req, now))
            .await
            .map_err(|_| PkiError::KeyGeneration)??
    } else {
        ca.issuer.issue(profile, req, now)?
    };
    log.record(record(&set, ca, now)).await?;
    Ok(set)
}

/// RSA keys generated at once for requests (each on a thread of its own).
static RSA_KEYS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Signs a CSR (its own signature is checked; the key never leaves its owner); verified and recorded.
pub async fn sign_csr(
    log: &impl CertLog,
    ca: &LoadedCa,
    profiles: &Profiles,
    profile: &str,
    csr_pem: &str,
    req: &IssueRequest,
    now: i64,
) -> Result<IssuedSet, ServiceError> {
    sign_csr_with(log, ca, profiles.get(profile)?, csr_pem, req, now).await
}

/// Signs a CSR under `profile` itself (one already bounded for its caller); verified and recorded.
pub async fn sign_csr_with(
    log: &impl CertLog,
    ca: &LoadedCa,
    profile: &Profile,
    csr_pem: &str,
    req: &IssueRequest,
    now: i64,
) -> Result<IssuedSet, ServiceError> {
    let set = ca.issuer.sign_csr(profile, csr_pem, req, now)?;
    log.record(record(&set, ca, now)).await?;
    Ok(set)
}

/// Normalizes a serial as people paste it (`0A:1B…`, `0x0a1b…`, upper case) to lowercase hex.
pub fn normalize_serial(serial: &str) -> Result<String, ServiceError> {
    let s: String = serial
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ServiceError::Invalid(format!(
            "`{serial}` is not a certificate serial (hex)"
        )));
    }
    Ok(s)
}

/// Revokes a certificate and rebuilds the CRL at once.
pub async fn revoke(
    store: &Store,
    ca: &LoadedCa,
    serial: &str,
    reason: Option<RevocationReason>,
    now: i64,
    crl_validity_secs: u64,
) -> Result<(Revocation, CrlRow), ServiceError> {
    let serial = normalize_serial(serial)?;
    let outcome = store
        .revoke_certificate(&serial, now, reason.map(|r| r.as_str()))
        .await?;
    if outcome == Revocation::NotFound {
        return Err(ServiceError::NotFound(format!("certificate {serial}")));
    }
    let crl = rebuild_crl(store, ca, now, crl_validity_secs).await?;
    Ok((outcome, crl))
}

/// Builds and stores a new CRL for the issuing CA. Racing builders each claim a distinct CRL number.
pub async fn rebuild_crl(
    store: &Store,
    ca: &LoadedCa,
    now: i64,
    validity_secs: u64,
) -> Result<CrlRow, ServiceError> {
    let revoked: Vec<RevokedCert> = store
        .revoked_certificates(&ca.id, now)
        .await?
        .into_iter()
        .map(|c| RevokedCert {
            serial_hex: c.serial,
            revoked_at: c.revoked_at.unwrap_or(now),
            reason: c.revocation_reason.and_then(|r| r.parse().ok()),
        })
        .collect();
    for _ in 0..8 {
        let number = store
            .latest_crl(&ca.id)
            .await?
            .map_or(1, |c| c.crl_number + 1);
        let crl = ca.issuer.build_crl(
            &revoked,
            u64::try_from(number).unwrap_or(1),
            validity_secs,
            now,
        )?;
        let row = CrlRow {
            ca_id: ca.id.clone(),
            crl_number: number,
            der: crl.der,
            pem: crl.pem,
            this_update: crl.this_update,
            next_update: crl.next_update,
        };
        if store.add_crl(&row).await? {
            return Ok(row);
        }
    }
    Err(ServiceError::Conflict(
        "CRL number (too many concurrent CRL builds)".into(),
    ))
}

/// The CRL to serve: the newest, rebuilt first when there is none or fewer than `renew_within_secs`
/// seconds of it are left. The replica that runs the jobs renews it at half its validity; a public GET
/// passes 0 and so rebuilds only a missing or expired one (the jobs replica is gone), so requests from
/// anyone do not sign and write CRLs while the jobs keep it fresh.
pub async fn current_crl(
    store: &Store,
    ca: &LoadedCa,
    now: i64,
    validity_secs: u64,
    renew_within_secs: u64,
) -> Result<CrlRow, ServiceError> {
    match store.latest_crl(&ca.id).await? {
        Some(c)
            if c.next_update.saturating_sub(now)
                > i64::try_from(renew_within_secs).unwrap_or(i64::MAX) =>
        {
            Ok(c)
        }
        _ => rebuild_crl(store, ca, now, validity_secs).await,
    }
}

/// Lists issued certificates, soonest expiry first; with `within_secs`, only those expiring by then.
pub async fn list(
    store: &Store,
    within_secs: Option<i64>,
    now: i64,
) -> Result<Vec<CertSummary>, ServiceError> {
    let before = match within_secs {
        None => None,
        Some(w) => Some(now.checked_add(w).filter(|_| w >= 0).ok_or_else(|| {
            ServiceError::Invalid(format!("expiring within {w} seconds is out of range"))
        })?),
    };
    Ok(store
        .certificates(before)
        .await?
        .into_iter()
        .map(|c| CertSummary {
            serial: c.serial,
            profile: c.profile,
            common_name: c.common_name,
            sans: c.sans.split_whitespace().map(str::to_owned).collect(),
            not_before: c.not_before,
            not_after: c.not_after,
            revoked_at: c.revoked_at,
            revocation_reason: c.revocation_reason,
        })
        .collect())
}

/// Imports an operator's intermediate CA (checked by the core: a CA, key matches, chain verifies); it
/// becomes the issuing CA. Returns the new CA id.
pub async fn import_ca(
    store: &Store,
    master: &MasterKey,
    cert_pem: &str,
    key_pem: &str,
    chain_pem: Option<&str>,
    now: i64,
) -> Result<String, ServiceError> {
    let imported = pki::import_ca(cert_pem, key_pem, chain_pem, now)?;
    let dek = DataKey::generate()?;
    let conflict = |e| match e {
        StoreError::Conflict(what) => ServiceError::Precondition(what),
        other => other.into(),
    };
    store
        .add_data_key(
            &DataKeyRow {
                id: dek.id().to_owned(),
                wrapped: master.wrap(&dek)?,
                created_at: now,
            },
            &master.check_value(),
        )
        .await
        .map_err(conflict)?;
    let id = secret::random_id("ca-", 8)?;
    let row = CaRow {
        id: id.clone(),
        ca_cert_pem: imported.ca_cert_pem.clone(),
        intermediates_pem: imported.intermediates_pem.clone(),
        root_pem: imported.root_pem.clone(),
        dek_id: dek.id().to_owned(),
        sealed_key: dek.seal(&ca_key_context(&id), &imported.key_pkcs8_der)?,
        root_sealed_key: None,
        created_at: now.max(latest_created(store).await? + 1),
    };
    store.add_ca(&row).await?;
    Ok(id)
}

async fn latest_created(store: &Store) -> Result<i64, ServiceError> {
    Ok(store.active_ca().await?.map_or(0, |r| r.created_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use castellan_core::pki::KeyType;
    use castellan_core::token::Alg;

    /// Records nothing and is ready at once, so an issuance that never waits on a thread of its own
    /// finishes within the first poll of its task.
    struct Nowhere;
    impl CertLog for Nowhere {
        async fn record(&self, _row: CertRow) -> Result<(), StoreError> {
            Ok(())
        }
    }

    // One thread runs every task here: an RSA key generated on it would finish the issuing task
    // before the test's own task runs again.
    #[tokio::test(flavor = "current_thread")]
    async fn rsa_keys_are_generated_off_the_async_workers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sqlite(&dir.path().join("t.db"))
            .await
            .expect("store");
        let (master, _) = MasterKey::generate().expect("mk");
        let now = 1_800_000_000;
        crate::init::initialize(
            &store,
            &master,
            now,
            &crate::init::InitOptions {
                alg: Alg::ES256,
                key_type: None,
                root_key_offline: false,
            },
        )
        .await
        .expect("init");
        let ca = Arc::new(load_ca(&store, &master, None).await.expect("ca"));
        let issue = |key_type| {
            let ca = ca.clone();
            tokio::spawn(async move {
                let req = IssueRequest {
                    dns_names: vec!["svc.internal".into()],
                    key_type: Some(key_type),
                    ..IssueRequest::default()
                };
                let profiles = Profiles::new(Vec::new()).expect("profiles");
                issue(&Nowhere, &ca, &profiles, "server", &req, now).await
            })
        };

        let rsa = issue(KeyType::Rsa2048);
        tokio::task::yield_now().await;
        assert!(
            !rsa.is_finished(),
            "the RSA key was generated on the async thread, holding up every other task"
        );
        let set = rsa.await.expect("join").expect("issued");
        assert!(set.key_pem.is_some());

        // The fast key types stay on the async thread (a thread hop would cost more than the key).
        let p256 = issue(KeyType::P256);
        tokio::task::yield_now().await;
        assert!(p256.is_finished());
        p256.await.expect("join").expect("issued");
    }
}
