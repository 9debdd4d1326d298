//! Creating Castellan's own CA: a root and the intermediate that signs leaves.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use zeroize::Zeroizing;

use super::key::load_pkcs8;
use super::{
    BACKDATE_SECS, DAY, KeyType, PkiError, build_err, datetime, one_cert_from_pem, parse,
    pem_encode,
};

/// How a CA certificate is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaOptions {
    /// The subject common name.
    pub common_name: String,
    /// The subject organization, if any.
    pub organization: Option<String>,
    /// The CA's key type.
    pub key_type: KeyType,
    /// The lifetime in seconds (an intermediate never outlives its root: it is cut to the root's end).
    pub validity_secs: u64,
}

impl CaOptions {
    /// The root's defaults: `Castellan Root CA`, P-256, 10 years.
    pub fn root() -> Self {
        Self {
            common_name: "Castellan Root CA".to_owned(),
            organization: Some("Castellan".to_owned()),
            key_type: KeyType::P256,
            validity_secs: 3650 * DAY as u64,
        }
    }

    /// The intermediate's defaults: `Castellan Intermediate CA`, P-256, 5 years.
    pub fn intermediate() -> Self {
        Self {
            common_name: "Castellan Intermediate CA".to_owned(),
            organization: Some("Castellan".to_owned()),
            key_type: KeyType::P256,
            validity_secs: 1825 * DAY as u64,
        }
    }

    fn dn(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        if let Some(o) = &self.organization {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        dn.push(DnType::CommonName, self.common_name.as_str());
        dn
    }
}

/// A CA certificate with its private key. `Debug` never shows the key.
pub struct CaCert {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 DER: seal it before storing.
    pub key_pkcs8_der: Zeroizing<Vec<u8>>,
    /// The key type.
    pub key_type: KeyType,
    /// The serial number, lowercase hex.
    pub serial_hex: String,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for CaCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaCert")
            .field("serial_hex", &self.serial_hex)
            .field("key_type", &self.key_type)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A new root and intermediate.
#[derive(Debug)]
pub struct NewCa {
    /// The self-signed root.
    pub root: CaCert,
    /// The intermediate, signed by the root; it signs every leaf.
    pub intermediate: CaCert,
}

/// Creates a root and an intermediate signed by it, both valid from `now` (less [`BACKDATE_SECS`]).
pub fn create_ca(root: &CaOptions, intermediate: &CaOptions, now: i64) -> Result<NewCa, PkiError> {
    let root = create_root_ca(root, now)?;
    let intermediate =
        create_intermediate_ca(&root.cert_pem, &root.key_pkcs8_der, intermediate, now)?;
    Ok(NewCa { root, intermediate })
}

/// Creates a self-signed root CA: basicConstraints CA:true (critical, no path length limit), keyUsage
/// keyCertSign and cRLSign (critical), a subject key identifier and a random 16-byte serial.
pub fn create_root_ca(opts: &CaOptions, now: i64) -> Result<CaCert, PkiError> {
    let key = opts.key_type.generate()?;
    let (params, not_before, not_after) =
        ca_params(opts, IsCa::Ca(BasicConstraints::Unconstrained), now, None)?;
    let cert = params
        .self_signed(&key)
        .map_err(build_err("root CA certificate"))?;
    finish(
        cert.der().to_vec(),
        &key,
        opts.key_type,
        not_before,
        not_after,
    )
}

/// Creates an intermediate CA signed by the given root (PEM certificate, PKCS#8 DER key):
/// basicConstraints CA:true with pathLenConstraint 0 (critical), keyUsage keyCertSign and cRLSign
/// (critical), subject and authority key identifiers. It ends no later than the root.
pub fn create_intermediate_ca(
    root_cert_pem: &str,
    root_key_pkcs8_der: &[u8],
    opts: &CaOptions,
    now: i64,
) -> Result<CaCert, PkiError> {
    let root_der = one_cert_from_pem(root_cert_pem, "root certificate")?;
    let root_info = parse::parse_cert_der(&root_der)?;
    let (root_key, _) = load_pkcs8(root_key_pkcs8_der, "root CA key")?;
    let root_issuer = rcgen::Issuer::from_ca_cert_der(&root_der, root_key)
        .map_err(build_err("root CA issuer"))?;

    let key = opts.key_type.generate()?;
    let (mut params, not_before, not_after) = ca_params(
        opts,
        IsCa::Ca(BasicConstraints::Constrained(0)),
        now,
        Some(root_info.not_after),
    )?;
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &root_issuer)
        .map_err(build_err("intermediate CA certificate"))?;
    finish(
        cert.der().to_vec(),
        &key,
        opts.key_type,
        not_before,
        not_after,
    )
}

fn ca_params(
    opts: &CaOptions,
    is_ca: IsCa,
    now: i64,
    cap: Option<i64>,
) -> Result<(CertificateParams, i64, i64), PkiError> {
    if opts.common_name.trim().is_empty() {
        return Err(PkiError::InvalidName {
            kind: "common name",
            value: opts.common_name.clone(),
            reason: "a CA needs a common name".to_owned(),
        });
    }
    let not_before = now - BACKDATE_SECS;
    let mut not_after = super::add_secs(now, opts.validity_secs)?;
    if let Some(cap) = cap {
        not_after = not_after.min(cap);
    }
    if not_after <= now {
        return Err(PkiError::InvalidTime {
            reason: "the CA would already be expired".to_owned(),
        });
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = opts.dn();
    params.is_ca = is_ca;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&super::new_serial()?));
    params.not_before = datetime(not_before)?;
    params.not_after = datetime(not_after)?;
    Ok((params, not_before, not_after))
}

fn finish(
    der: Vec<u8>,
    key: &KeyPair,
    key_type: KeyType,
    not_before: i64,
    not_after: i64,
) -> Result<CaCert, PkiError> {
    let info = parse::parse_cert_der(&der)?;
    Ok(CaCert {
        cert_pem: pem_encode("CERTIFICATE", &der),
        cert_der: der,
        key_pkcs8_der: Zeroizing::new(key.serialize_der()),
        key_type,
        serial_hex: info.serial_hex,
        not_before,
        not_after,
    })
}
