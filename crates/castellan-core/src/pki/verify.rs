//! Verifying a leaf the way a TLS peer would (rustls-webpki), and checking a key against it.

use std::net::IpAddr;

use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;

use super::key::{key_matches_spki, load_pkcs8_pem};
use super::parse::{self, CertInfo, display_subject};
use super::{PkiError, Purpose, certs_from_pem, one_cert_from_pem, unix_time};

/// The PEM texts of an output set, as written to disk or returned by the API.
#[derive(Clone, Copy)]
pub struct SetPems<'a> {
    /// `cert.pem`: the leaf alone.
    pub cert_pem: &'a str,
    /// `chain.pem`: the leaf, then the intermediate(s).
    pub chain_pem: &'a str,
    /// `ca-bundle.pem`: the root and the intermediate(s).
    pub ca_bundle_pem: &'a str,
    /// `root.pem`: the root alone.
    pub root_pem: &'a str,
    /// `key.pem`: the PKCS#8 private key, when the set has one.
    pub key_pem: Option<&'a str>,
}

impl std::fmt::Debug for SetPems<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetPems")
            .field("has_key", &self.key_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Checks an output set before it is used or written, as strictly as rustls would:
///
/// * every file parses; `cert.pem` is one certificate, `root.pem` one self-issued CA certificate;
///   `chain.pem` starts with the leaf; `ca-bundle.pem` contains the root;
/// * the leaf carries the extended key usage(s) of `purpose`;
/// * rustls-webpki verifies the leaf at `now`, with `root.pem` as the only trust anchor, for each usage of
///   `purpose` (both for [`Purpose::Peer`]): once with the intermediates of `chain.pem` (what a peer
///   gets when this side presents its chain) and once with those of `ca-bundle.pem` (what a peer that
///   trusts the bundle can build);
/// * the leaf is valid for each of its DNS and IP SANs (a wildcard SAN is checked with a name it covers);
/// * `key.pem`, when given, is PKCS#8 and its public key is the certificate's.
///
/// Returns what the leaf says about itself.
pub fn verify_set(set: &SetPems<'_>, purpose: Purpose, now: i64) -> Result<CertInfo, PkiError> {
    let leaf = one_cert_from_pem(set.cert_pem, "cert.pem")?;
    let root = one_cert_from_pem(set.root_pem, "root.pem")?;
    let chain = certs_from_pem(set.chain_pem, "chain.pem")?;
    let bundle = certs_from_pem(set.ca_bundle_pem, "ca-bundle.pem")?;
    let mismatch = |reason: &str| PkiError::SetMismatch {
        reason: reason.to_owned(),
    };

    if chain.first() != Some(&leaf) {
        return Err(mismatch(
            "chain.pem does not start with the certificate of cert.pem",
        ));
    }
    if !bundle.contains(&root) {
        return Err(mismatch(
            "ca-bundle.pem does not contain the root of root.pem",
        ));
    }
    if bundle.contains(&leaf) {
        return Err(mismatch("ca-bundle.pem contains the leaf certificate"));
    }
    let root_x = parse::x509(&root, "root.pem")?;
    if !root_x.is_ca() || root_x.subject().as_raw() != root_x.issuer().as_raw() {
        return Err(mismatch("root.pem is not a self-issued CA certificate"));
    }

    let leaf_x = parse::x509(&leaf, "cert.pem")?;
    let info = parse::parse_cert_der(&leaf)?;
    let from_chain: Vec<CertificateDer<'static>> = chain[1..].to_vec();
    let from_bundle: Vec<CertificateDer<'static>> =
        bundle.iter().filter(|c| **c != root).cloned().collect();

    let anchor = trust_anchor(&root, "root.pem")?;
    check_leaf(
        &leaf_x,
        &leaf,
        &from_chain,
        &anchor,
        purpose,
        now,
        "root.pem with the intermediates of chain.pem",
    )?;
    check_leaf(
        &leaf_x,
        &leaf,
        &from_bundle,
        &anchor,
        purpose,
        now,
        "root.pem with the intermediates of ca-bundle.pem",
    )?;
    check_names(&leaf, &info.dns_names, &info.ip_addresses)?;

    if let Some(key_pem) = set.key_pem {
        let (pair, _, _) = load_pkcs8_pem(key_pem, "key.pem")?;
        if !key_matches_spki(&pair, leaf_x.public_key().raw) {
            return Err(PkiError::KeyMismatch {
                subject: display_subject(&leaf_x),
            });
        }
    }
    Ok(info)
}

/// `cert` as a webpki trust anchor (its subject, key and any name constraints).
pub(crate) fn trust_anchor(
    cert: &CertificateDer<'_>,
    what: &str,
) -> Result<TrustAnchor<'static>, PkiError> {
    webpki::anchor_from_trusted_cert(cert)
        .map(|a| a.to_owned())
        .map_err(|e| PkiError::VerificationFailed {
            against: what.to_owned(),
            usage: "a trust anchor",
            error: e.to_string(),
        })
}

/// The purpose's EKUs are present, and webpki verifies the path from `leaf` through `intermediates` to
/// `anchor` for each of them.
pub(crate) fn check_leaf(
    leaf_x: &X509Certificate<'_>,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchor: &TrustAnchor<'_>,
    purpose: Purpose,
    now: i64,
    against: &str,
) -> Result<(), PkiError> {
    let eku = leaf_x.extended_key_usage().ok().flatten().map(|e| e.value);
    let has = |f: fn(&x509_parser::extensions::ExtendedKeyUsage<'_>) -> bool| eku.is_some_and(f);
    if purpose.server_auth() && !has(|e| e.server_auth) {
        return Err(PkiError::PurposeMismatch {
            purpose: purpose.to_string(),
            missing: "serverAuth",
        });
    }
    if purpose.client_auth() && !has(|e| e.client_auth) {
        return Err(PkiError::PurposeMismatch {
            purpose: purpose.to_string(),
            missing: "clientAuth",
        });
    }

    let time = unix_time(now)?;
    let fail = |usage: &'static str, e: webpki::Error| PkiError::VerificationFailed {
        against: against.to_owned(),
        usage,
        error: e.to_string(),
    };
    let anchors = std::slice::from_ref(anchor);
    let ee = EndEntityCert::try_from(leaf).map_err(|e| fail("parsing", e))?;
    let mut usages: Vec<(&'static str, KeyUsage)> = Vec::with_capacity(2);
    if purpose.server_auth() {
        usages.push(("server authentication", KeyUsage::server_auth()));
    }
    if purpose.client_auth() {
        usages.push(("client authentication", KeyUsage::client_auth()));
    }
    for (name, usage) in usages {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            anchors,
            intermediates,
            time,
            usage,
            None,
            None,
        )
        .map_err(|e| fail(name, e))?;
    }
    Ok(())
}

/// The leaf is valid, for a TLS peer, for each DNS name and IP address given.
pub(crate) fn check_names(
    leaf: &CertificateDer<'_>,
    dns: &[String],
    ips: &[IpAddr],
) -> Result<(), PkiError> {
    let ee = EndEntityCert::try_from(leaf).map_err(|e| PkiError::VerificationFailed {
        against: "its own names".to_owned(),
        usage: "parsing",
        error: e.to_string(),
    })?;
    for name in dns {
        // A wildcard is not a reference name; check a name it must cover instead.
        let probe = match name.strip_prefix("*.") {
            Some(rest) => format!("wildcard-probe.{rest}"),
            None => name.clone(),
        };
        let server_name =
            ServerName::try_from(probe.as_str()).map_err(|e| PkiError::NameMismatch {
                name: name.clone(),
                error: e.to_string(),
            })?;
        ee.verify_is_valid_for_subject_name(&server_name)
            .map_err(|e| PkiError::NameMismatch {
                name: name.clone(),
                error: e.to_string(),
            })?;
    }
    for ip in ips {
        ee.verify_is_valid_for_subject_name(&ServerName::IpAddress((*ip).into()))
            .map_err(|e| PkiError::NameMismatch {
                name: ip.to_string(),
                error: e.to_string(),
            })?;
    }
    Ok(())
}
