//! What the doctor reads from one certificate, and how certificates relate: issuer names, key ids,
//! signatures.

use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::super::key_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Index in the presented list.
    Presented(usize),
    /// Index in the CA file.
    Trusted(usize),
}

/// The public key of a certificate, as far as the doctor cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa(usize),
    Ec(Option<String>),
    Ed25519,
    Other(String),
}

/// What the doctor needs to know about one certificate.
pub(super) struct Cert {
    pub(super) der: Vec<u8>,
    pub(super) origin: Origin,
    pub(super) subject_raw: Vec<u8>,
    pub(super) issuer_raw: Vec<u8>,
    /// Display form of the subject DN.
    pub(super) subject: String,
    /// Display form of the issuer DN.
    pub(super) issuer: String,
    pub(super) common_name: Option<String>,
    pub(super) ski: Option<Vec<u8>>,
    pub(super) aki: Option<Vec<u8>>,
    pub(super) is_ca: bool,
    pub(super) path_len: Option<u32>,
    /// `Some(false)` when keyUsage is present without keyCertSign.
    pub(super) key_cert_sign: Option<bool>,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    pub(super) key: KeyKind,
    pub(super) sig_alg: String,
    /// EKU: (serverAuth, clientAuth), `None` without the extension.
    pub(super) eku: Option<(bool, bool)>,
    pub(super) dns: Vec<String>,
    pub(super) ips: Vec<IpAddr>,
}

impl Cert {
    pub(super) fn parse(der: &[u8], origin: Origin) -> Option<Cert> {
        let (_, x) = X509Certificate::from_der(der).ok()?;
        let mut c = Cert {
            der: der.to_vec(),
            origin,
            subject_raw: x.subject().as_raw().to_vec(),
            issuer_raw: x.issuer().as_raw().to_vec(),
            subject: dn_display(&x.subject().to_string()),
            issuer: dn_display(&x.issuer().to_string()),
            common_name: x
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            ski: None,
            aki: None,
            is_ca: false,
            path_len: None,
            key_cert_sign: None,
            not_before: x.validity().not_before.timestamp(),
            not_after: x.validity().not_after.timestamp(),
            key: key_kind(x.public_key()),
            sig_alg: x.signature_algorithm.algorithm.to_id_string(),
            eku: None,
            dns: Vec::new(),
            ips: Vec::new(),
        };
        for ext in x.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => c.ski = Some(k.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    c.aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                ParsedExtension::BasicConstraints(bc) => {
                    c.is_ca = bc.ca;
                    c.path_len = bc.path_len_constraint;
                }
                ParsedExtension::KeyUsage(ku) => c.key_cert_sign = Some(ku.key_cert_sign()),
                ParsedExtension::ExtendedKeyUsage(e) => {
                    c.eku = Some((e.server_auth, e.client_auth))
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for n in &san.general_names {
                        match n {
                            GeneralName::DNSName(d) => c.dns.push((*d).to_owned()),
                            GeneralName::IPAddress(b) => {
                                if let Ok(a) = <[u8; 4]>::try_from(*b) {
                                    c.ips.push(IpAddr::from(a));
                                } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                                    c.ips.push(IpAddr::from(a));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Some(c)
    }

    pub(super) fn self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// `` `DN` (key id AB:CD…) ``
    pub(super) fn describe(&self) -> String {
        match &self.ski {
            Some(k) => format!("`{}` (key id {})", self.subject, key_id(k)),
            None => format!("`{}`", self.subject),
        }
    }

    /// The issuer as this certificate names it: `` `DN` (key id AB:CD…) ``.
    pub(super) fn describe_issuer(&self) -> String {
        match &self.aki {
            Some(k) => format!("`{}` (key id {})", self.issuer, key_id(k)),
            None => format!("`{}`", self.issuer),
        }
    }

    pub(super) fn short(&self) -> String {
        format!(
            "`{}`",
            self.common_name
                .clone()
                .unwrap_or_else(|| self.subject.clone())
        )
    }
}

/// x509-parser prints `CN=a, O=b`; keep it, but never empty.
fn dn_display(s: &str) -> String {
    if s.is_empty() {
        "(empty name)".to_owned()
    } else {
        s.to_owned()
    }
}

fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> KeyKind {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => KeyKind::Rsa(bits(rsa.modulus)),
        Ok(PublicKey::EC(_)) => KeyKind::Ec(
            spki.algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string()),
        ),
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => KeyKind::Ed25519,
        Ok(PublicKey::DSA(_)) => KeyKind::Other("DSA".to_owned()),
        _ => KeyKind::Other(spki.algorithm.algorithm.to_id_string()),
    }
}

/// The bit length of a big-endian unsigned integer.
fn bits(bytes: &[u8]) -> usize {
    match bytes.iter().position(|b| *b != 0) {
        Some(i) => {
            let lead = 8 - bytes[i].leading_zeros() as usize;
            (bytes.len() - i - 1) * 8 + lead
        }
        None => 0,
    }
}

pub(super) const P256: &str = "1.2.840.10045.3.1.7";
pub(super) const P384: &str = "1.3.132.0.34";
pub(super) const P521: &str = "1.3.132.0.35";

/// Signature algorithms clients refuse: MD2, MD5 and SHA-1 based.
pub(super) fn weak_sig_alg(oid: &str) -> Option<&'static str> {
    match oid {
        "1.2.840.113549.1.1.2" => Some("MD2 with RSA"),
        "1.2.840.113549.1.1.4" => Some("MD5 with RSA"),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => Some("SHA-1 with RSA"),
        "1.2.840.10045.4.1" => Some("ECDSA with SHA-1"),
        "1.2.840.10040.4.3" => Some("DSA with SHA-1"),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sig {
    Valid,
    Invalid,
    Unsupported,
}

/// Whether `child`'s signature verifies with `issuer`'s public key (x509-parser on aws-lc-rs).
pub(super) fn signature(child: &Cert, issuer: &Cert) -> Sig {
    let (Ok((_, c)), Ok((_, i))) = (
        X509Certificate::from_der(&child.der),
        X509Certificate::from_der(&issuer.der),
    ) else {
        return Sig::Unsupported;
    };
    match c.verify_signature(Some(i.public_key())) {
        Ok(()) => Sig::Valid,
        Err(X509Error::SignatureVerificationError) => Sig::Invalid,
        Err(_) => Sig::Unsupported,
    }
}

/// `issuer` is the certificate `child` names as its issuer: same name, and the key ids agree when
/// both are present.
pub(super) fn names_issuer(issuer: &Cert, child: &Cert) -> bool {
    issuer.subject_raw == child.issuer_raw
        && match (&child.aki, &issuer.ski) {
            (Some(a), Some(s)) => a == s,
            _ => true,
        }
}

/// Same name as `child`'s issuer, but a different key id.
pub(super) fn same_name_other_key(candidate: &Cert, child: &Cert) -> bool {
    candidate.subject_raw == child.issuer_raw
        && matches!((&child.aki, &candidate.ski), (Some(a), Some(s)) if a != s)
}

/// The same certificate, or the same name with the same public key (a re-issued root).
pub(super) fn same_ca(a: &Cert, b: &Cert) -> bool {
    if a.der == b.der {
        return true;
    }
    let spki = |c: &Cert| {
        X509Certificate::from_der(&c.der)
            .ok()
            .map(|(_, x)| x.public_key().raw.to_vec())
    };
    a.subject_raw == b.subject_raw && spki(a).is_some() && spki(a) == spki(b)
}
