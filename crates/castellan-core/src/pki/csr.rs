//! Certificate signing requests: key and CSR generation for the side that keeps its key (the agent:
//! the private key never leaves it), and reading the CSR a leaf is signed for.

use std::net::IpAddr;

use rcgen::{CertificateParams, DistinguishedName, DnType};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use super::parse::ip_from_bytes;
use super::{KeyType, PkiError, build_err};

/// Generates a key of `key_type` and a CSR for it (subject CN `common_name` when given; the SANs are
/// asked for in the signing request, and the profile decides what is granted).
/// Returns the PKCS#8 private key PEM and the CSR PEM.
pub fn new_key_and_csr(
    key_type: KeyType,
    common_name: Option<&str>,
) -> Result<(Zeroizing<String>, String), PkiError> {
    let key = key_type.generate()?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(build_err("CSR parameters"))?;
    let mut dn = DistinguishedName::new();
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(build_err("CSR"))?
        .pem()
        .map_err(build_err("CSR PEM"))?;
    Ok((Zeroizing::new(key.serialize_pem()), csr))
}

/// What Castellan takes from a CSR.
pub(super) struct Csr {
    pub(super) spki_der: Vec<u8>,
    pub(super) key_type: KeyType,
    pub(super) common_name: Option<String>,
    pub(super) dns: Vec<String>,
    pub(super) ips: Vec<IpAddr>,
    pub(super) uris: Vec<String>,
    pub(super) unsupported_san: Option<&'static str>,
}

impl Csr {
    pub(super) fn parse(pem_text: &str) -> Result<Self, PkiError> {
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
    use super::*;
    use crate::pki::{CaOptions, IssueRequest, Issuer, Profile, Purpose, create_ca, verify_set};

    #[test]
    fn a_generated_csr_is_signed_and_the_set_verifies_with_the_local_key() {
        let now = 1_800_000_000;
        let ca = create_ca(&CaOptions::root(), &CaOptions::intermediate(), now).expect("ca");
        let issuer = Issuer::from_ca(&ca.root, &ca.intermediate).expect("issuer");
        for kt in [KeyType::P256, KeyType::Ed25519] {
            let (key_pem, csr_pem) = new_key_and_csr(kt, Some("app")).expect("csr");
            assert!(key_pem.contains("BEGIN PRIVATE KEY"));
            let req = IssueRequest {
                dns_names: vec!["app.internal".into()],
                ttl_secs: Some(3600),
                ..IssueRequest::default()
            };
            let profile = Profile::builtin("client").expect("profile");
            let set = issuer
                .sign_csr(&profile, &csr_pem, &req, now)
                .expect("sign");
            assert!(set.key_pem.is_none());
            let mut pems = set.pems();
            pems.key_pem = Some(&key_pem);
            verify_set(&pems, Purpose::Client, now).expect("the local key matches the certificate");
        }
    }
}
