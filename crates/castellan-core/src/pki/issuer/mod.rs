//! The issuing CA: leaves with a generated key or from a CSR, and importing an operator's CA.

mod import;
mod path;

use std::net::IpAddr;

use rcgen::string::Ia5String;
use rcgen::{
    CertificateParams, CrlDistributionPoint, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use super::csr::Csr;
use super::key::{key_matches_spki, load_pkcs8};
use super::parse::{self, display_subject};
use super::profile::Names;
use super::verify::{check_leaf, check_names, trust_anchor};
use super::{
    BACKDATE_SECS, KeyType, PkiError, Profile, Purpose, build_err, certs_from_pem, certs_to_pem,
    datetime, one_cert_from_pem, pem_encode,
};

pub use import::{ImportedCa, import_ca};
use path::{UpperPath, build_path, check_is_ca};

/// What a certificate is asked for. Deserializes from the JSON API (unknown fields are refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssueRequest {
    /// The subject common name. When absent, the first DNS name is used (or none).
    pub common_name: Option<String>,
    /// DNS subject alternative names (a leading `*.` asks for a wildcard).
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// URI subject alternative names (for example SPIFFE ids).
    pub uris: Vec<String>,
    /// The lifetime in seconds; the profile's default when absent.
    pub ttl_secs: Option<u64>,
    /// The key type; the profile's default when absent. For a CSR it must be the CSR's key type if given.
    pub key_type: Option<KeyType>,
}

impl IssueRequest {
    fn has_sans(&self) -> bool {
        !self.dns_names.is_empty() || !self.ip_addresses.is_empty() || !self.uris.is_empty()
    }
}

/// A verified output set: everything a server, client or peer needs. `Debug` never shows the key.
#[derive(Clone)]
pub struct IssuedSet {
    /// `cert.pem`: the leaf alone.
    pub cert_pem: String,
    /// `chain.pem`: the leaf, then the intermediate(s) up to (not including) the root.
    pub chain_pem: String,
    /// `ca-bundle.pem`: the root, then the intermediate(s).
    pub ca_bundle_pem: String,
    /// `root.pem`: the root alone.
    pub root_pem: String,
    /// `key.pem`: the PKCS#8 private key; `None` when the certificate was made from a CSR.
    pub key_pem: Option<Zeroizing<String>>,
    /// The leaf, DER.
    pub cert_der: Vec<u8>,
    /// The serial number, lowercase hex (32 digits).
    pub serial_hex: String,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// The profile it was issued under.
    pub profile: String,
    /// The profile's purpose.
    pub purpose: Purpose,
    /// The key type.
    pub key_type: KeyType,
    /// The subject common name.
    pub common_name: Option<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// URI SANs.
    pub uris: Vec<String>,
}

impl IssuedSet {
    /// The PEM texts, for [`super::verify_set`].
    pub fn pems(&self) -> super::SetPems<'_> {
        super::SetPems {
            cert_pem: &self.cert_pem,
            chain_pem: &self.chain_pem,
            ca_bundle_pem: &self.ca_bundle_pem,
            root_pem: &self.root_pem,
            key_pem: self.key_pem.as_ref().map(|k| k.as_str()),
        }
    }
}

impl std::fmt::Debug for IssuedSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSet")
            .field("serial_hex", &self.serial_hex)
            .field("profile", &self.profile)
            .field("common_name", &self.common_name)
            .field("dns_names", &self.dns_names)
            .field("ip_addresses", &self.ip_addresses)
            .field("uris", &self.uris)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_type", &self.key_type)
            .field("has_key", &self.key_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// The issuing CA: its key parsed once, its certificate and the chain up to the root. Build it once and
/// issue many leaves with it (it is `Send + Sync`). `Debug` never shows the key.
pub struct Issuer {
    pub(super) signer: rcgen::Issuer<'static, KeyPair>,
    pub(super) ca_subject: String,
    pub(super) ca_key_id: Option<Vec<u8>>,
    pub(super) ca_not_before: i64,
    pub(super) ca_not_after: i64,
    /// The earliest notAfter of the path (issuing CA, the CAs above it and the root), and whose it is:
    /// no leaf outlives any certificate its chain needs.
    path_not_after: i64,
    path_not_after_subject: String,
    pub(super) ca_key_type: KeyType,
    ca_pem: String,
    /// The issuing CA first, then up to (not including) the root; empty when the root issues.
    intermediates: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
    /// The root as webpki's trust anchor.
    root_anchor: TrustAnchor<'static>,
    upper: UpperPath,
    chain_tail_pem: String,
    ca_bundle_pem: String,
    root_pem: String,
    crl_url: Option<String>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("ca", &self.ca_subject)
            .field("ca_key_type", &self.ca_key_type)
            .field("ca_not_after", &self.ca_not_after)
            .field("chain_len", &(self.intermediates.len() + 1))
            .field("crl_url", &self.crl_url)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Builds the issuer from stored material: the issuing CA's certificate (PEM) and PKCS#8 key (DER),
    /// the root (PEM), and any CA certificates between them (PEM, any order, may be empty).
    ///
    /// Checks that both are CA certificates with keyCertSign, that the key is the CA's, and that the
    /// CA chains to the root by names and signatures. Validity in time is checked at each issuance.
    pub fn new(
        ca_cert_pem: &str,
        ca_key_pkcs8_der: &[u8],
        root_pem: &str,
        intermediates_pem: &str,
    ) -> Result<Self, PkiError> {
        let ca = one_cert_from_pem(ca_cert_pem, "CA certificate")?;
        let root = one_cert_from_pem(root_pem, "root certificate")?;
        let pool = if intermediates_pem.trim().is_empty() {
            Vec::new()
        } else {
            certs_from_pem(intermediates_pem, "intermediate certificates")?
        };
        let (pair, key_type) = load_pkcs8(ca_key_pkcs8_der, "CA key")?;
        Self::assemble(ca, pair, key_type, &pool, Some(root))
    }

    /// Builds the issuer from a freshly created hierarchy (see [`super::create_ca`]).
    pub fn from_ca(root: &super::CaCert, issuing: &super::CaCert) -> Result<Self, PkiError> {
        Self::new(
            &issuing.cert_pem,
            &issuing.key_pkcs8_der,
            &root.cert_pem,
            "",
        )
    }

    /// Puts a CRL distribution point (an `http:` or `https:` URL) in every leaf issued from now on.
    pub fn with_crl_url(mut self, url: &str) -> Result<Self, PkiError> {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url.len() > "https://".len()
            && url.chars().all(|c| c.is_ascii_graphic());
        if !ok {
            return Err(PkiError::InvalidName {
                kind: "CRL URL",
                value: url.to_owned(),
                reason: "expected an http:// or https:// URL of printable ASCII".to_owned(),
            });
        }
        self.crl_url = Some(url.to_owned());
        Ok(self)
    }

    /// The issuing CA's certificate, PEM.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The root alone, PEM (`root.pem`).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The root then the intermediate(s), PEM (`ca-bundle.pem`).
    pub fn ca_bundle_pem(&self) -> &str {
        &self.ca_bundle_pem
    }

    /// The issuing CA's subject, for display.
    pub fn ca_subject(&self) -> &str {
        &self.ca_subject
    }

    /// The issuing CA's notAfter, unix seconds: no leaf outlives it.
    pub fn ca_not_after(&self) -> i64 {
        self.ca_not_after
    }

    /// The issuing CA's key type.
    pub fn ca_key_type(&self) -> KeyType {
        self.ca_key_type
    }

    /// The CRL distribution point put in leaves, if any.
    pub fn crl_url(&self) -> Option<&str> {
        self.crl_url.as_deref()
    }

    /// Issues a leaf with a newly generated key, after checking the request against `profile`.
    ///
    /// The set is verified (see [`super::verify_set`]) before it is returned.
    pub fn issue(
        &self,
        profile: &Profile,
        req: &IssueRequest,
        now: i64,
    ) -> Result<IssuedSet, PkiError> {
        profile.validate()?;
        let key_type = profile.check_key_type(req.key_type)?;
        let ttl = profile.check_ttl(req.ttl_secs)?;
        let names = profile.check_names(
            req.common_name.as_deref(),
            &req.dns_names,
            &req.ip_addresses,
            &req.uris,
        )?;
        // Refuse before generating a key (RSA generation is slow).
        let (not_before, not_after) = self.validity(ttl, now)?;
        let key = key_type.generate()?;
        let key_pem = Zeroizing::new(pem_encode("PRIVATE KEY", key.serialized_der()));
        let key_matches = |spki: &[u8]| key_matches_spki(&key, spki);
        let mut set = self.sign(
            profile,
            &names,
            &key,
            key_matches,
            key_type,
            not_before,
            not_after,
            now,
        )?;
        set.key_pem = Some(key_pem);
        Ok(set)
    }

    /// Issues a leaf for the key of a CSR (PEM, `CERTIFICATE REQUEST`).
    ///
    /// The CSR's signature must verify with its own key (proof of possession), and its key must be a
    /// type the profile allows. Names: the request's common name if given, else the CSR subject's; the
    /// request's SANs if it gives any, else the CSR's (DNS, IP and URI). Whichever are used must pass
    /// the profile. Everything else the CSR asks for (key usages, extended key usages, basic
    /// constraints, other extensions) is ignored: the profile decides.
    pub fn sign_csr(
        &self,
        profile: &Profile,
        csr_pem: &str,
        req: &IssueRequest,
        now: i64,
    ) -> Result<IssuedSet, PkiError> {
        profile.validate()?;
        let csr = Csr::parse(csr_pem)?;
        if let Some(asked) = req.key_type
            && asked != csr.key_type
        {
            return Err(PkiError::CsrKeyTypeMismatch {
                requested: asked.to_string(),
                csr: csr.key_type.to_string(),
            });
        }
        let key_type = profile.check_key_type(Some(csr.key_type))?;
        let ttl = profile.check_ttl(req.ttl_secs)?;
        let cn = req.common_name.as_deref().or(csr.common_name.as_deref());
        let names = if req.has_sans() {
            profile.check_names(cn, &req.dns_names, &req.ip_addresses, &req.uris)?
        } else {
            if let Some(kind) = &csr.unsupported_san {
                return Err(PkiError::MalformedCsr {
                    reason: format!(
                        "the CSR asks for a {kind} subject alternative name, which Castellan does not issue"
                    ),
                });
            }
            profile.check_names(cn, &csr.dns, &csr.ips, &csr.uris)?
        };
        let (not_before, not_after) = self.validity(ttl, now)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der).map_err(|e| {
            PkiError::UnsupportedCsrKey {
                reason: e.to_string(),
            }
        })?;
        self.sign(
            profile,
            &names,
            &public_key,
            |spki: &[u8]| spki_equal(&csr.spki_der, spki),
            key_type,
            not_before,
            not_after,
            now,
        )
    }

    /// notBefore and notAfter of a leaf living `ttl` seconds from `now`, inside the validity of every
    /// CA certificate of its path.
    fn validity(&self, ttl: u64, now: i64) -> Result<(i64, i64), PkiError> {
        // Backdate to absorb clock skew, but never by more than a tenth of the lifetime, so short-lived
        // certificates keep their renewal point (two thirds of the lifetime) in the future.
        let backdate = BACKDATE_SECS.min(i64::try_from(ttl / 10).unwrap_or(BACKDATE_SECS));
        let not_before = (now - backdate).max(self.ca_not_before);
        let not_after = super::add_secs(now, ttl)?;
        if not_after > self.path_not_after {
            return Err(PkiError::TtlBeyondCa {
                not_after,
                ca: self.path_not_after_subject.clone(),
                ca_not_after: self.path_not_after,
            });
        }
        Ok((not_before, not_after))
    }

    /// webpki's verification of a new leaf up to the root (see [`UpperPath`] for when the issuing CA is
    /// the anchor).
    fn verify_leaf(
        &self,
        leaf: &X509Certificate<'_>,
        der: &CertificateDer<'_>,
        purpose: Purpose,
        now: i64,
    ) -> Result<(), PkiError> {
        if let Some(anchor) = self.upper.anchor(purpose, now) {
            return check_leaf(
                leaf,
                der,
                &[],
                anchor,
                purpose,
                now,
                "the issuing CA (its path to the root verified with this issuer's first leaf)",
            );
        }
        check_leaf(
            leaf,
            der,
            &self.intermediates,
            &self.root_anchor,
            purpose,
            now,
            "the CA's own root and chain",
        )?;
        self.upper.verified(purpose);
        Ok(())
    }

    /// Builds, signs and verifies a leaf for `public_key`; `key_matches` judges the certificate's key
    /// (its SubjectPublicKeyInfo, DER).
    #[allow(clippy::too_many_arguments)]
    fn sign(
        &self,
        profile: &Profile,
        names: &Names,
        public_key: &impl PublicKeyData,
        key_matches: impl FnOnce(&[u8]) -> bool,
        key_type: KeyType,
        not_before: i64,
        not_after: i64,
        now: i64,
    ) -> Result<IssuedSet, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(cn) = &names.common_name {
            dn.push(DnType::CommonName, cn.as_str());
        }
        params.distinguished_name = dn;
        let ia5 = |kind: &'static str, s: &str| {
            Ia5String::try_from(s).map_err(|e| PkiError::InvalidName {
                kind,
                value: s.to_owned(),
                reason: e.to_string(),
            })
        };
        let mut sans = Vec::with_capacity(names.dns.len() + names.ips.len() + names.uris.len());
        for d in &names.dns {
            sans.push(SanType::DnsName(ia5("DNS name", d)?));
        }
        for ip in &names.ips {
            sans.push(SanType::IpAddress(*ip));
        }
        for u in &names.uris {
            sans.push(SanType::URI(ia5("URI", u)?));
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = if key_type.is_rsa() {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        params.extended_key_usages = profile.purpose.ekus();
        params.use_authority_key_identifier_extension = true;
        let serial = super::new_serial()?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = datetime(not_before)?;
        params.not_after = datetime(not_after)?;
        if let Some(url) = &self.crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        let cert = params
            .signed_by(public_key, &self.signer)
            .map_err(build_err("certificate"))?;
        let der: &CertificateDer<'static> = cert.der();

        // Mandatory: verify as a TLS peer would, before anything leaves this function.
        let leaf = parse::x509(der, "issued certificate")?;
        if !key_matches(leaf.public_key().raw) {
            return Err(PkiError::KeyMismatch {
                subject: display_subject(&leaf),
            });
        }
        self.verify_leaf(&leaf, der, profile.purpose, now)?;
        check_names(der, &names.dns, &names.ips)?;

        let cert_pem = pem_encode("CERTIFICATE", der);
        Ok(IssuedSet {
            chain_pem: format!("{cert_pem}{}", self.chain_tail_pem),
            cert_pem,
            ca_bundle_pem: self.ca_bundle_pem.clone(),
            root_pem: self.root_pem.clone(),
            key_pem: None,
            cert_der: der.to_vec(),
            serial_hex: hex::encode(serial),
            not_before,
            not_after,
            profile: profile.name.clone(),
            purpose: profile.purpose,
            key_type,
            common_name: names.common_name.clone(),
            dns_names: names.dns.clone(),
            ip_addresses: names.ips.clone(),
            uris: names.uris.clone(),
        })
    }

    /// Checks the issuing CA and the chain, and puts the issuer together.
    fn assemble(
        ca: CertificateDer<'static>,
        pair: KeyPair,
        key_type: KeyType,
        pool: &[CertificateDer<'static>],
        root: Option<CertificateDer<'static>>,
    ) -> Result<Self, PkiError> {
        let ca_x = parse::x509(&ca, "CA certificate")?;
        check_is_ca(&ca_x)?;
        if !key_matches_spki(&pair, ca_x.public_key().raw) {
            return Err(PkiError::KeyMismatch {
                subject: display_subject(&ca_x),
            });
        }
        let (intermediates, root) = build_path(&ca, pool, root.as_ref())?;
        let root_anchor = trust_anchor(&root, "the root")?;
        let upper = UpperPath::new(&intermediates, &parse::x509(&root, "root certificate")?)?;
        // An imported parent (or root) may expire before the issuing CA: a leaf living past it would
        // stop verifying while its own notAfter still says it is good.
        let (mut path_not_after, mut path_not_after_subject) = (i64::MAX, String::new());
        for cert in intermediates.iter().chain(std::iter::once(&root)) {
            let x = parse::x509(cert, "chain")?;
            let na = x.validity().not_after.timestamp();
            if na < path_not_after {
                (path_not_after, path_not_after_subject) = (na, display_subject(&x));
            }
        }
        let ca_subject = display_subject(&ca_x);
        let ca_key_id = parse::subject_key_id(&ca_x);
        let ca_not_before = ca_x.validity().not_before.timestamp();
        let ca_not_after = ca_x.validity().not_after.timestamp();
        drop(ca_x);
        let signer = rcgen::Issuer::from_ca_cert_der(&ca, pair).map_err(build_err("issuer"))?;
        let root_pem = pem_encode("CERTIFICATE", &root);
        let chain_tail_pem = certs_to_pem(&intermediates);
        let ca_bundle_pem = format!("{root_pem}{}", certs_to_pem(intermediates.iter().rev()));
        Ok(Self {
            signer,
            ca_subject,
            ca_key_id,
            ca_not_before,
            ca_not_after,
            path_not_after,
            path_not_after_subject,
            ca_key_type: key_type,
            ca_pem: pem_encode("CERTIFICATE", &ca),
            intermediates,
            root,
            root_anchor,
            upper,
            chain_tail_pem,
            ca_bundle_pem,
            root_pem,
            crl_url: None,
        })
    }
}

/// Whether two DER SubjectPublicKeyInfo values hold the same key.
fn spki_equal(a: &[u8], b: &[u8]) -> bool {
    match (
        SubjectPublicKeyInfo::from_der(a),
        SubjectPublicKeyInfo::from_der(b),
    ) {
        (Ok((_, a)), Ok((_, b))) => {
            a.algorithm == b.algorithm && a.subject_public_key.data == b.subject_public_key.data
        }
        _ => false,
    }
}
