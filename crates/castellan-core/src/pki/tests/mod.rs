//! Tests of the whole module: issuance, verification (webpki and the `openssl` CLI), CSRs, import, CRLs.

mod ca_paths;
mod hierarchy;
mod import;
mod leaves;
mod refusals;
mod revocation;
mod signing_requests;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::{CertificateDer, ServerName};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::*;
use crate::clock::{Clock, SystemClock};

/// The fixture hierarchy, made once: real time, because the `openssl` CLI checks validity against
/// the system clock.
fn fixture() -> &'static (NewCa, Issuer, i64) {
    static CA: OnceLock<(NewCa, Issuer, i64)> = OnceLock::new();
    CA.get_or_init(|| {
        let now = SystemClock.now();
        let ca = create_ca(&CaOptions::root(), &CaOptions::intermediate(), now).expect("create ca");
        let issuer = Issuer::from_ca(&ca.root, &ca.intermediate)
            .expect("issuer")
            .with_crl_url("http://castellan.test/v1/pki/crl")
            .expect("crl url");
        (ca, issuer, now)
    })
}

fn issuer() -> &'static Issuer {
    &fixture().1
}

fn now() -> i64 {
    fixture().2
}

fn builtin(name: &str) -> Profile {
    Profile::builtin(name).expect("builtin")
}

fn mqtt_profile() -> Profile {
    Profile {
        name: "mqtt".into(),
        purpose: Purpose::Server,
        allowed_dns: vec!["*.svc.local".into(), "broker.local".into()],
        allowed_ips: vec!["10.0.0.0/8".into()],
        allowed_uris: vec!["spiffe://castellan.test/mqtt/*".into()],
        allowed_common_names: vec![],
        max_ttl_secs: 7 * 86_400,
        default_ttl_secs: Some(86_400),
        key_types: vec![KeyType::P256, KeyType::Ed25519],
        default_key_type: KeyType::P256,
        bounds: None,
    }
}

fn request(dns: &[&str], ips: &[&str]) -> IssueRequest {
    IssueRequest {
        dns_names: dns.iter().map(|s| (*s).to_owned()).collect(),
        ip_addresses: ips.iter().map(|s| s.parse().expect("ip")).collect(),
        ..IssueRequest::default()
    }
}

fn x509(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).expect("parse").1
}

fn der_of(pem_text: &str) -> Vec<CertificateDer<'static>> {
    pem::parse_many(pem_text)
        .expect("pem")
        .into_iter()
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect()
}

fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("subject key identifier")
}

fn aki(cert: &X509Certificate<'_>) -> Vec<u8> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("authority key identifier")
}

/// Runs `openssl` in `dir`; returns success and the combined output.
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// webpki, directly: the leaf with the fixture's root as the only anchor and the given intermediates.
fn webpki_verify(
    leaf: &[u8],
    intermediates: &[CertificateDer<'static>],
    usage: KeyUsage,
) -> Result<(), webpki::Error> {
    let (ca, _, now) = fixture();
    let root = CertificateDer::from(ca.root.cert_der.clone());
    let anchors = [webpki::anchor_from_trusted_cert(&root).expect("anchor")];
    let leaf = CertificateDer::from(leaf.to_vec());
    let ee = EndEntityCert::try_from(&leaf).expect("ee");
    let time = unix_time(*now).expect("time");
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        intermediates,
        time,
        usage,
        None,
        None,
    )
    .map(|_| ())
}

fn intermediate_der() -> Vec<CertificateDer<'static>> {
    vec![CertificateDer::from(
        fixture().0.intermediate.cert_der.clone(),
    )]
}

fn rcgen_csr(dns: &[&str], cn: Option<&str>) -> (String, KeyPair) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params =
        CertificateParams::new(dns.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name = DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (csr, key)
}

/// The same CSR with the last byte of its signature flipped.
fn tamper(csr_pem: &str) -> String {
    let mut der = pem::parse(csr_pem).expect("pem").into_contents();
    if let Some(last) = der.last_mut() {
        *last ^= 0x01;
    }
    pem_encode("CERTIFICATE REQUEST", &der)
}

/// A CA certificate made with rcgen directly (the tests need hierarchies `create_ca` does not make).
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn test_ca(
    cn: &str,
    not_before: i64,
    not_after: i64,
    constraints: Option<rcgen::NameConstraints>,
    parent: Option<&TestCa>,
) -> TestCa {
    test_ca_with(cn, not_before, not_after, parent, |params| {
        params.name_constraints = constraints;
    })
}

/// [`test_ca`] with the parameters adjusted by `adjust` before signing.
fn test_ca_with(
    cn: &str,
    not_before: i64,
    not_after: i64,
    parent: Option<&TestCa>,
    adjust: impl FnOnce(&mut CertificateParams),
) -> TestCa {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.not_before = datetime(not_before).expect("time");
    params.not_after = datetime(not_after).expect("time");
    adjust(&mut params);
    let cert = match parent {
        None => params.self_signed(&key),
        Some(p) => {
            let issuer = rcgen::Issuer::from_ca_cert_der(p.cert.der(), &p.key).expect("issuer");
            params.signed_by(&key, &issuer)
        }
    }
    .expect("sign");
    TestCa { cert, key }
}
