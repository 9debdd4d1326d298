//! The issuing CA: leaves with a generated key or from a CSR, and importing an operator's CA.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use rcgen::string::Ia5String;
use rcgen::{
    CertificateParams, CrlDistributionPoint, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use super::key::{key_matches_spki, load_pkcs8, load_pkcs8_pem};
use super::parse::{self, display_subject, ip_from_bytes};
use super::profile::Names;
use super::verify::{check_leaf, check_names, trust_anchor};
use super::{
    BACKDATE_SECS, KeyType, PkiError, Profile, Purpose, build_err, certs_from_pem, certs_to_pem,
    datetime, one_cert_from_pem, pem_encode,
};

/// The longest chain accepted between an issuing CA and its root.
const MAX_CHAIN: usize = 8;

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
struct UpperPath {
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
    fn new(
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
    fn anchor(&self, purpose: Purpose, now: i64) -> Option<&TrustAnchor<'static>> {
        let done = (!purpose.server_auth() || self.server_auth.load(Ordering::Acquire))
            && (!purpose.client_auth() || self.client_auth.load(Ordering::Acquire));
        let in_time = self.not_before <= now && now <= self.not_after;
        self.issuing_anchor.as_ref().filter(|_| done && in_time)
    }

    fn verified(&self, purpose: Purpose) {
        if purpose.server_auth() {
            self.server_auth.store(true, Ordering::Release);
        }
        if purpose.client_auth() {
            self.client_auth.store(true, Ordering::Release);
        }
    }
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

/// basicConstraints CA:true and keyUsage keyCertSign.
fn check_is_ca(cert: &X509Certificate<'_>) -> Result<(), PkiError> {
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

fn self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
}

/// Walks from the issuing CA to a root through `pool`, by issuer name and signature. With `root`
/// given the walk must end there; otherwise it ends at the first self-signed certificate. Returns the
/// CA certificates below the root (the issuing CA first, none when it is the root) and the root.
fn build_path(
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

/// What Castellan takes from a CSR.
struct Csr {
    spki_der: Vec<u8>,
    key_type: KeyType,
    common_name: Option<String>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    uris: Vec<String>,
    unsupported_san: Option<&'static str>,
}

impl Csr {
    fn parse(pem_text: &str) -> Result<Self, PkiError> {
        let malformed = |reason: String| PkiError::MalformedCsr { reason };
        let blocks =
            pem::parse_many(pem_text).map_err(|e| malformed(format!("malformed PEM: {e}")))?;
        let mut reqs: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|b| matches!(b.tag(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"))
            .map(pem::Pem::into_contents)
            .collect();
        let der = match reqs.len() {
            1 => reqs.remove(0),
            0 => {
                return Err(malformed(
                    "no `-----BEGIN CERTIFICATE REQUEST-----` block found".to_owned(),
                ));
            }
            n => return Err(malformed(format!("expected one CSR, found {n}"))),
        };
        let (rest, csr) =
            X509CertificationRequest::from_der(&der).map_err(|e| malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed("trailing bytes after the CSR".to_owned()));
        }
        match csr.verify_signature() {
            Ok(()) => {}
            Err(X509Error::SignatureVerificationError) => return Err(PkiError::CsrSignature),
            Err(X509Error::SignatureUnsupportedAlgorithm) => {
                return Err(PkiError::UnsupportedCsrKey {
                    reason: format!(
                        "the CSR is signed with an unsupported algorithm ({})",
                        csr.signature_algorithm.algorithm
                    ),
                });
            }
            Err(e) => {
                return Err(malformed(format!(
                    "the CSR's signature cannot be checked: {e}"
                )));
            }
        }
        let info = &csr.certification_request_info;
        let key_type = KeyType::of_spki(&info.subject_pki)
            .map_err(|reason| PkiError::UnsupportedCsrKey { reason })?;
        let mut out = Csr {
            spki_der: info.subject_pki.raw.to_vec(),
            key_type,
            common_name: info
                .subject
                .iter_common_name()
                .next()
                .and_then(|c| c.as_str().ok())
                .map(str::to_owned),
            dns: Vec::new(),
            ips: Vec::new(),
            uris: Vec::new(),
            unsupported_san: None,
        };
        for ext in csr.requested_extensions().into_iter().flatten() {
            match ext {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => out.dns.push((*d).to_owned()),
                            GeneralName::URI(u) => out.uris.push((*u).to_owned()),
                            GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                                Some(ip) => out.ips.push(ip),
                                None => {
                                    return Err(malformed(
                                        "an IP SAN is neither 4 nor 16 bytes".to_owned(),
                                    ));
                                }
                            },
                            GeneralName::RFC822Name(_) => out.unsupported_san = Some("email"),
                            _ => out.unsupported_san = Some("non-DNS/IP/URI"),
                        }
                    }
                }
                ParsedExtension::ParseError { error } => {
                    return Err(malformed(format!(
                        "an extension of the CSR cannot be read: {error}"
                    )));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CustomExtension};

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
