//! Reading certificates (x509-parser): serial, names, validity, SANs and key identifiers.

use std::net::IpAddr;

use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::{PkiError, certs_from_pem};

/// What the rest of Castellan needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// The serial number, lowercase hex without leading zero bytes.
    pub serial_hex: String,
    /// The subject distinguished name, for display (`O=Castellan, CN=…`).
    pub subject: String,
    /// The issuer distinguished name, for display.
    pub issuer: String,
    /// The subject common name, if any.
    pub common_name: Option<String>,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// URI subject alternative names.
    pub uris: Vec<String>,
    /// basicConstraints CA:true.
    pub is_ca: bool,
    /// Subject and issuer names are equal (a root, usually).
    pub self_issued: bool,
    /// The subject key identifier, lowercase hex.
    pub subject_key_id: Option<String>,
    /// The authority key identifier's keyIdentifier, lowercase hex.
    pub authority_key_id: Option<String>,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256_fingerprint: String,
}

/// Reads the first certificate of a PEM text (every block must be a certificate).
pub fn parse_cert_pem(pem: &str) -> Result<CertInfo, PkiError> {
    let certs = certs_from_pem(pem, "certificate")?;
    let first = certs.first().ok_or_else(|| PkiError::MalformedPem {
        what: "certificate".to_owned(),
        reason: "no certificate".to_owned(),
    })?;
    parse_cert_der(first)
}

/// Reads every certificate of a PEM text, in order.
pub fn parse_certs_pem(pem: &str) -> Result<Vec<CertInfo>, PkiError> {
    certs_from_pem(pem, "certificates")?
        .iter()
        .map(|c| parse_cert_der(c))
        .collect()
}

/// Reads a DER certificate.
pub fn parse_cert_der(der: &[u8]) -> Result<CertInfo, PkiError> {
    let cert = x509(der, "certificate")?;
    let mut info = CertInfo {
        serial_hex: serial_hex(cert.raw_serial()),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_name: common_name(&cert),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        is_ca: cert.is_ca(),
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
        subject_key_id: None,
        authority_key_id: None,
        sha256_fingerprint: hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => info.dns_names.push((*d).to_owned()),
                        GeneralName::URI(u) => info.uris.push((*u).to_owned()),
                        GeneralName::IPAddress(b) => {
                            if let Some(ip) = ip_from_bytes(b) {
                                info.ip_addresses.push(ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::SubjectKeyIdentifier(k) => {
                info.subject_key_id = Some(hex::encode(k.0))
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                info.authority_key_id = a.key_identifier.as_ref().map(|k| hex::encode(k.0));
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Parses DER with x509-parser, refusing trailing bytes; `what` names the input in errors.
pub(crate) fn x509<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, PkiError> {
    let malformed = |reason: String| PkiError::MalformedCertificate {
        what: what.to_owned(),
        reason,
    };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after the certificate".to_owned()));
    }
    Ok(cert)
}

/// The first common name of the subject.
pub(crate) fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// The subject for messages: the common name, else the whole distinguished name.
pub(crate) fn display_subject(cert: &X509Certificate<'_>) -> String {
    common_name(cert).unwrap_or_else(|| cert.subject().to_string())
}

/// The subject key identifier extension's value.
pub(crate) fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

/// An IP SAN's bytes (4 or 16) as an address.
pub(crate) fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A serial's INTEGER bytes as lowercase hex, without leading zero bytes (at least one byte kept).
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}
