//! Importing an operator's CA: the CA, its key and its chain are checked, and a test leaf proves the
//! path the way a TLS peer would verify it.

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use zeroize::Zeroizing;

use super::{IssueRequest, Issuer};
use crate::pki::key::load_pkcs8_pem;
use crate::pki::parse::{self, display_subject};
use crate::pki::{PkiError, Profile, Purpose, certs_from_pem, certs_to_pem, one_cert_from_pem};

/// An operator's CA, checked and ready to issue. `Debug` never shows the key.
pub struct ImportedCa {
    /// The issuer built from it.
    pub issuer: Issuer,
    /// The CA's key, PKCS#8 DER: seal it before storing.
    pub key_pkcs8_der: Zeroizing<Vec<u8>>,
    /// The CA's certificate, PEM.
    pub ca_cert_pem: String,
    /// The CA certificates between it and the root (PEM, the CA's issuer first; empty if none).
    pub intermediates_pem: String,
    /// The root, PEM.
    pub root_pem: String,
}

impl std::fmt::Debug for ImportedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedCa")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Checks an operator's CA for use as Castellan's issuing CA and builds the issuer:
///
/// * `ca_cert_pem` is one certificate with basicConstraints CA:true and keyUsage keyCertSign and
///   cRLSign (it signs the CRL);
/// * `ca_key_pem` is its PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`);
/// * `chain_pem` holds its parents up to and including a self-signed root (it may be omitted when the CA
///   is itself a self-signed root); the CA chains to that root by names and signatures;
/// * every certificate of the path is valid at `now`;
/// * a test leaf signed with the key verifies with rustls-webpki against the root, so the path holds for
///   real TLS peers (path length, key usages, algorithms).
pub fn import_ca(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    chain_pem: Option<&str>,
    now: i64,
) -> Result<ImportedCa, PkiError> {
    let ca = one_cert_from_pem(ca_cert_pem, "CA certificate")?;
    let (pair, key_type, key_der) = load_pkcs8_pem(ca_key_pem, "CA key")?;
    let pool = match chain_pem.filter(|c| !c.trim().is_empty()) {
        Some(c) => certs_from_pem(c, "chain")?,
        None => Vec::new(),
    };
    let issuer = Issuer::assemble(ca.clone(), pair, key_type, &pool, None)?;
    check_crl_sign(&parse::x509(&ca, "CA certificate")?)?;

    for cert in std::iter::once(&ca)
        .chain(issuer.intermediates.iter())
        .chain(std::iter::once(&issuer.root))
    {
        let x = parse::x509(cert, "chain")?;
        let (nb, na) = (
            x.validity().not_before.timestamp(),
            x.validity().not_after.timestamp(),
        );
        if now < nb || now > na {
            return Err(PkiError::NotValidNow {
                subject: display_subject(&x),
                now,
                not_before: nb,
                not_after: na,
            });
        }
    }

    // The decisive check: a real leaf from this key must verify for a TLS peer trusting the root. The
    // leaf is one the CA may sign (a name inside its permitted subtrees, a purpose its EKU allows), so
    // what is tested is the path, not the probe.
    let probe = IssueRequest {
        common_name: Some("castellan import check".to_owned()),
        dns_names: vec![probe_dns_name(&issuer.intermediates, &issuer.root)?],
        ttl_secs: Some(u64::try_from((issuer.path_not_after - now).clamp(1, 60)).unwrap_or(1)),
        ..IssueRequest::default()
    };
    let profile = Profile::allow_all("import-check", probe_purpose(&issuer.intermediates)?);
    issuer.issue(&profile, &probe, now).map_err(|e| match e {
        PkiError::VerificationFailed { error, .. } => PkiError::ChainBroken {
            reason: format!(
                "a test certificate signed by this CA does not verify against the root: {error}"
            ),
        },
        other => other,
    })?;

    let intermediates_pem = certs_to_pem(issuer.intermediates.iter().skip(1));
    Ok(ImportedCa {
        ca_cert_pem: issuer.ca_pem.clone(),
        root_pem: issuer.root_pem.clone(),
        intermediates_pem,
        key_pkcs8_der: key_der,
        issuer,
    })
}

/// keyUsage cRLSign, when the CA lists its key usages (`check_is_ca` has made sure it does): the
/// issuing CA signs Castellan's CRLs, and without cRLSign every CRL build fails, so revocation would
/// silently stop working after the import.
fn check_crl_sign(cert: &X509Certificate<'_>) -> Result<(), PkiError> {
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.crl_sign() => Err(PkiError::NotACa {
            subject: display_subject(cert),
            reason: "keyUsage lacks cRLSign, which Castellan needs to sign its certificate revocation list; \
                     reissue the CA with keyUsage keyCertSign and cRLSign"
                .to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The import probe's DNS name: inside the most specific permitted DNS subtree of the path's name
/// constraints, if any (nested constraints narrow down, so the longest base is inside the others).
fn probe_dns_name(
    below_root: &[CertificateDer<'static>],
    root: &CertificateDer<'static>,
) -> Result<String, PkiError> {
    let mut base = String::new();
    for der in below_root.iter().chain(std::iter::once(root)) {
        let x = parse::x509(der, "chain")?;
        // Unreadable constraints: leave them to webpki, which says why.
        let Ok(Some(nc)) = x.name_constraints() else {
            continue;
        };
        for sub in nc.value.permitted_subtrees.iter().flatten() {
            if let GeneralName::DNSName(d) = sub.base {
                let d = d.trim_start_matches('.');
                if d.len() > base.len() {
                    base = d.to_ascii_lowercase();
                }
            }
        }
    }
    Ok(if base.is_empty() {
        "import-check.castellan.invalid".to_owned()
    } else {
        format!("import-check.{base}")
    })
}

/// The import probe's purpose: server authentication unless an extendedKeyUsage of a CA below the root
/// (webpki checks theirs, not the root's) rules it out and allows client authentication.
fn probe_purpose(below_root: &[CertificateDer<'static>]) -> Result<Purpose, PkiError> {
    let (mut server, mut client) = (true, true);
    for der in below_root {
        if let Ok(Some(eku)) = parse::x509(der, "chain")?.extended_key_usage() {
            server &= eku.value.server_auth;
            client &= eku.value.client_auth;
        }
    }
    Ok(if client && !server {
        Purpose::Client
    } else {
        Purpose::Server
    })
}
