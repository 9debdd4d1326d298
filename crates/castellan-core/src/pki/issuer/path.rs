//! The issuing CA's path: checking that a certificate is a CA, walking from the issuing CA to its
//! root, and the part of every leaf's verification that is the same for all of them.

use std::sync::atomic::{AtomicBool, Ordering};

use rustls_pki_types::{CertificateDer, TrustAnchor};
use x509_parser::certificate::X509Certificate;

use crate::pki::parse::{self, display_subject};
use crate::pki::verify::trust_anchor;
use crate::pki::{PkiError, Purpose};

/// The longest chain accepted between an issuing CA and its root.
const MAX_CHAIN: usize = 8;

/// The part of every leaf's path that is the same for all of them: the issuing CA up to the root.
///
/// webpki's verification of `leaf → issuing CA → … → root` is the leaf's own step (its signature by the
/// issuing CA, its validity, usage and names, the issuing CA's name constraints) plus the steps above
/// it, which depend only on those fixed CA certificates, the usage and the time. So the first leaf of
/// each usage is verified along the whole path; once that passed, later leaves of that usage are verified
/// by webpki against the issuing CA as the trust anchor, and the one part of the upper steps that can
/// change — the time — is checked against the CA certificates' validity (outside it, the whole path is
/// verified again and webpki reports why). Not used when a certificate above the issuing CA has name
/// constraints, because those apply to each leaf's names.
pub(super) struct UpperPath {
    /// The issuing CA as a trust anchor; `None` when the root issues (there is no upper part) or a CA
    /// above the issuing one has name constraints (every leaf then gets the whole path).
    issuing_anchor: Option<TrustAnchor<'static>>,
    /// The latest notBefore and earliest notAfter of the CA certificates below the root.
    not_before: i64,
    not_after: i64,
    /// Whether the whole path verified for server (client) authentication with this issuer.
    server_auth: AtomicBool,
    client_auth: AtomicBool,
}

impl UpperPath {
    pub(super) fn new(
        intermediates: &[CertificateDer<'static>],
        root: &X509Certificate<'_>,
    ) -> Result<Self, PkiError> {
        let mut not_before = i64::MIN;
        let mut not_after = i64::MAX;
        // Unreadable constraints count as constraints: the shortcut must never skip something webpki
        // would have looked at.
        let mut constrained = !matches!(root.name_constraints(), Ok(None));
        for (i, der) in intermediates.iter().enumerate() {
            let x = parse::x509(der, "chain")?;
            not_before = not_before.max(x.validity().not_before.timestamp());
            not_after = not_after.min(x.validity().not_after.timestamp());
            // The issuing CA's own constraints travel with it as the anchor.
            if i > 0 && !matches!(x.name_constraints(), Ok(None)) {
                constrained = true;
            }
        }
        let issuing_anchor = match intermediates.first() {
            Some(ca) if !constrained => Some(trust_anchor(ca, "the issuing CA")?),
            _ => None,
        };
        Ok(Self {
            issuing_anchor,
            not_before,
            not_after,
            server_auth: AtomicBool::new(false),
            client_auth: AtomicBool::new(false),
        })
    }

    /// The issuing CA as the anchor for a leaf of `purpose` at `now`, when the upper path is known good.
    pub(super) fn anchor(&self, purpose: Purpose, now: i64) -> Option<&TrustAnchor<'static>> {
        let done = (!purpose.server_auth() || self.server_auth.load(Ordering::Acquire))
            && (!purpose.client_auth() || self.client_auth.load(Ordering::Acquire));
        let in_time = self.not_before <= now && now <= self.not_after;
        self.issuing_anchor.as_ref().filter(|_| done && in_time)
    }

    pub(super) fn verified(&self, purpose: Purpose) {
        if purpose.server_auth() {
            self.server_auth.store(true, Ordering::Release);
        }
        if purpose.client_auth() {
            self.client_auth.store(true, Ordering::Release);
        }
    }
}

/// basicConstraints CA:true and keyUsage keyCertSign.
pub(super) fn check_is_ca(cert: &X509Certificate<'_>) -> Result<(), PkiError> {
    let not_ca = |reason: &str| PkiError::NotACa {
        subject: display_subject(cert),
        reason: reason.to_owned(),
    };
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(_) => {
            return Err(not_ca(
                "basicConstraints does not say CA:TRUE (this looks like a leaf certificate)",
            ));
        }
        Err(e) => return Err(not_ca(&format!("unreadable basicConstraints: {e}"))),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() => Ok(()),
        Ok(Some(_)) => Err(not_ca("keyUsage lacks keyCertSign")),
        Ok(None) => Err(not_ca(
            "it has no keyUsage extension (keyCertSign is required)",
        )),
        Err(e) => Err(not_ca(&format!("unreadable keyUsage: {e}"))),
    }
}

fn self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
}

/// Walks from the issuing CA to a root through `pool`, by issuer name and signature. With `root`
/// given the walk must end there; otherwise it ends at the first self-signed certificate. Returns the
/// CA certificates below the root (the issuing CA first, none when it is the root) and the root.
pub(super) fn build_path(
    ca: &CertificateDer<'static>,
    pool: &[CertificateDer<'static>],
    root: Option<&CertificateDer<'static>>,
) -> Result<(Vec<CertificateDer<'static>>, CertificateDer<'static>), PkiError> {
    let broken = |reason: String| PkiError::ChainBroken { reason };
    if let Some(r) = root {
        let rx = parse::x509(r, "root certificate")?;
        check_is_ca(&rx)?;
        if !self_signed(&rx) {
            return Err(broken(format!(
                "the root `{}` is not self-signed",
                display_subject(&rx)
            )));
        }
    }
    let candidates: Vec<&CertificateDer<'static>> = pool.iter().chain(root).collect();
    let mut path: Vec<CertificateDer<'static>> = Vec::new();
    let mut current = ca.clone();
    loop {
        let cur = parse::x509(&current, "chain")?;
        let is_root = match root {
            Some(r) => current == *r,
            None => self_signed(&cur),
        };
        if is_root {
            return Ok((path, current.clone()));
        }
        if self_signed(&cur) {
            return Err(broken(format!(
                "`{}` chains to the self-signed `{}`, which is not the given root",
                display_subject_der(ca),
                display_subject(&cur)
            )));
        }
        path.push(current.clone());
        if path.len() > MAX_CHAIN {
            return Err(broken(format!(
                "more than {MAX_CHAIN} certificates between the CA and its root"
            )));
        }
        let mut same_name_bad_sig = false;
        let mut parent = None;
        for cand in &candidates {
            if **cand == current || path.contains(cand) {
                continue;
            }
            let px = parse::x509(cand, "chain")?;
            if px.subject().as_raw() != cur.issuer().as_raw() {
                continue;
            }
            if cur.verify_signature(Some(px.public_key())).is_ok() {
                check_is_ca(&px)?;
                parent = Some((*cand).clone());
                break;
            }
            same_name_bad_sig = true;
        }
        match parent {
            Some(p) => current = p,
            None if same_name_bad_sig => {
                return Err(broken(format!(
                    "`{}` names `{}` as its issuer, but its signature does not verify with the key of the certificate \
                     of that name (a different CA with the same name?)",
                    display_subject(&cur),
                    cur.issuer()
                )));
            }
            None => {
                return Err(broken(format!(
                    "no certificate in the chain issued `{}` (its issuer is `{}`); add the missing intermediate or \
                     the root that issued it",
                    display_subject(&cur),
                    cur.issuer()
                )));
            }
        }
    }
}

fn display_subject_der(der: &CertificateDer<'_>) -> String {
    parse::x509(der, "certificate")
        .map(|x| display_subject(&x))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    use super::*;

    /// A root whose nameConstraints cannot be read counts as constrained: the issuing-CA shortcut,
    /// which skips the root's constraints, must not be taken.
    #[test]
    fn unreadable_root_name_constraints_disable_the_shortcut() {
        let ca_params = || {
            let mut p = CertificateParams::default();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p
        };
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut root_params = ca_params();
        root_params
            .distinguished_name
            .push(DnType::CommonName, "Odd Root");
        // id-ce-nameConstraints (2.5.29.30) holding a NULL where a SEQUENCE belongs.
        root_params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[2, 5, 29, 30],
            vec![0x05, 0x00],
        )];
        let root = root_params.self_signed(&root_key).expect("root");
        let issuing_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut issuing_params = ca_params();
        issuing_params
            .distinguished_name
            .push(DnType::CommonName, "Issuing CA");
        let issuing = issuing_params
            .signed_by(&issuing_key, &rcgen::Issuer::new(root_params, &root_key))
            .expect("issuing");

        let root_x = parse::x509(root.der(), "root").expect("root parses");
        assert!(
            root_x.name_constraints().is_err(),
            "the constraints are unreadable"
        );
        let upper = UpperPath::new(&[issuing.der().clone()], &root_x).expect("upper path");
        assert!(upper.issuing_anchor.is_none());
    }
}
