//! Tests of the whole module: issuance, verification (webpki and the `openssl` CLI), CSRs, import, CRLs.

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

#[test]
fn issuer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Issuer>();
    check::<IssuedSet>();
}

#[test]
fn root_and_intermediate_have_the_ca_extensions() {
    let (ca, _, now) = fixture();
    let root = x509(&ca.root.cert_der);
    let int = x509(&ca.intermediate.cert_der);

    let bc = root.basic_constraints().expect("bc").expect("root bc");
    assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
    let ku = root.key_usage().expect("ku").expect("root ku");
    assert!(
        ku.critical
            && ku.value.key_cert_sign()
            && ku.value.crl_sign()
            && !ku.value.digital_signature()
    );
    assert_eq!(root.subject(), root.issuer());
    assert!(root.verify_signature(None).is_ok(), "root is self-signed");
    assert_eq!(ski(&root).len(), 20);
    assert_eq!(root.validity().not_before.timestamp(), now - BACKDATE_SECS);
    assert_eq!(root.validity().not_after.timestamp(), now + 3650 * DAY);

    let bc = int.basic_constraints().expect("bc").expect("int bc");
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = int.key_usage().expect("ku").expect("int ku");
    assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    assert_eq!(aki(&int), ski(&root));
    assert_ne!(ski(&int), ski(&root));
    assert!(int.verify_signature(Some(root.public_key())).is_ok());
    assert_eq!(int.validity().not_after.timestamp(), now + 1825 * DAY);
    assert_eq!(
        parse_cert_der(&ca.intermediate.cert_der)
            .expect("info")
            .common_name
            .as_deref(),
        Some("Castellan Intermediate CA")
    );

    for c in [&root, &int] {
        assert_eq!(c.raw_serial().len(), 16);
        assert!(c.raw_serial()[0] & 0x80 == 0 && c.raw_serial()[0] != 0);
    }
    // The key is PKCS#8 and belongs to the certificate.
    assert!(
        Issuer::new(
            &ca.intermediate.cert_pem,
            &ca.intermediate.key_pkcs8_der,
            &ca.root.cert_pem,
            ""
        )
        .is_ok()
    );
    assert!(!format!("{:?}", ca.root).contains(&hex::encode(&ca.root.key_pkcs8_der[..]))); // Debug hides the key
}

/// Serials sort in the order they were made (the store's index grows at its end) and still carry 80
/// random bits each: a thousand made within the same milliseconds all differ in their random part.
#[test]
fn serials_sort_by_time_and_keep_80_random_bits() {
    let serials: Vec<[u8; 16]> = (0..1000).map(|_| new_serial().expect("serial")).collect();
    let millis = |s: &[u8; 16]| {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&s[..6]);
        u64::from_be_bytes(b)
    };
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    for pair in serials.windows(2) {
        assert!(
            millis(&pair[0]) <= millis(&pair[1]),
            "time prefix goes back"
        );
    }
    let last = serials.last().expect("serials");
    assert!(
        wall.abs_diff(millis(last)) < 5_000,
        "prefix is not the wall clock in ms"
    );
    assert!(
        last[0] != 0 && last[0] & 0x80 == 0,
        "positive, 16 DER bytes"
    );
    let tails: std::collections::HashSet<[u8; 10]> = serials
        .iter()
        .map(|s| s[6..].try_into().expect("10 bytes"))
        .collect();
    assert_eq!(tails.len(), serials.len(), "random parts repeat");
    // Every one of the 80 tail bits takes both values over a thousand serials.
    let (ones, zeros) = serials.iter().fold(([0u8; 10], [0u8; 10]), |(o, z), s| {
        let mut o2 = o;
        let mut z2 = z;
        for i in 0..10 {
            o2[i] |= s[6 + i];
            z2[i] |= !s[6 + i];
        }
        (o2, z2)
    });
    assert_eq!(
        (ones, zeros),
        ([0xff; 10], [0xff; 10]),
        "a tail bit is fixed"
    );
}

#[test]
fn server_leaf_has_every_extension() {
    let set = issuer()
        .issue(
            &builtin("server"),
            &request(&["api.svc.local", "API.svc.local"], &["10.0.0.5", "::1"]),
            now(),
        )
        .expect("issue");
    let leaf = x509(&set.cert_der);
    let int = x509(&fixture().0.intermediate.cert_der);

    // Serial: 16 bytes, positive, nonzero first byte; reported in hex.
    assert_eq!(leaf.raw_serial().len(), 16);
    assert!(leaf.raw_serial()[0] & 0x80 == 0 && leaf.raw_serial()[0] != 0);
    assert_eq!(set.serial_hex, hex::encode(leaf.raw_serial()));
    assert_eq!(set.serial_hex.len(), 32);

    assert_eq!(ski(&leaf).len(), 20);
    assert_eq!(aki(&leaf), ski(&int), "AKI is the intermediate's SKI");
    let bc = leaf.basic_constraints().expect("bc").expect("leaf bc");
    assert!(bc.critical && !bc.value.ca);
    let ku = leaf.key_usage().expect("ku").expect("leaf ku");
    assert!(ku.critical && ku.value.digital_signature());
    assert!(
        !ku.value.key_encipherment() && !ku.value.key_cert_sign(),
        "EC leaf: digitalSignature only"
    );
    let eku = leaf.extended_key_usage().expect("eku").expect("leaf eku");
    assert!(eku.value.server_auth && !eku.value.client_auth);

    let san = leaf
        .subject_alternative_name()
        .expect("san")
        .expect("leaf san");
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(b) => format!("ip:{}", parse::ip_from_bytes(b).expect("ip")),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        ["dns:api.svc.local", "ip:10.0.0.5", "ip:::1"],
        "duplicates removed, lowercased"
    );
    assert_eq!(
        set.common_name.as_deref(),
        Some("api.svc.local"),
        "CN defaults to the first DNS name"
    );

    // Validity: backdated a minute, the profile's default TTL (30 days).
    assert_eq!(set.not_before, now() - BACKDATE_SECS);
    assert_eq!(set.not_after, now() + 30 * DAY);
    assert_eq!(leaf.validity().not_after.timestamp(), set.not_after);

    // CRL distribution point.
    let cdp = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(p) => Some(format!("{p:?}")),
            _ => None,
        })
        .expect("crl distribution points");
    assert!(cdp.contains("http://castellan.test/v1/pki/crl"), "{cdp}");

    // The output files.
    assert_eq!(
        der_of(&set.cert_pem),
        vec![CertificateDer::from(set.cert_der.clone())]
    );
    assert_eq!(der_of(&set.chain_pem).len(), 2);
    assert_eq!(
        der_of(&set.chain_pem)[1].as_ref(),
        &fixture().0.intermediate.cert_der[..]
    );
    assert_eq!(der_of(&set.ca_bundle_pem).len(), 2);
    assert_eq!(
        der_of(&set.ca_bundle_pem)[0].as_ref(),
        &fixture().0.root.cert_der[..]
    );
    assert_eq!(set.root_pem, fixture().0.root.cert_pem);
    let key_pem = set.key_pem.as_ref().expect("key");
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(
        !format!("{set:?}").contains("PRIVATE KEY"),
        "Debug never prints the key"
    );

    // The parsing helpers agree.
    let info = parse_cert_pem(&set.cert_pem).expect("info");
    assert_eq!(info.serial_hex, set.serial_hex);
    assert_eq!(info.common_name.as_deref(), Some("api.svc.local"));
    assert_eq!(info.dns_names, ["api.svc.local"]);
    assert_eq!(
        info.ip_addresses,
        [
            "10.0.0.5".parse::<IpAddr>().expect("ip"),
            "::1".parse().expect("ip")
        ]
    );
    assert_eq!(
        (info.not_before, info.not_after),
        (set.not_before, set.not_after)
    );
    assert!(!info.is_ca && !info.self_issued);
    assert_eq!(info.authority_key_id, Some(hex::encode(ski(&int))));
    assert_eq!(parse_certs_pem(&set.chain_pem).expect("chain").len(), 2);
}

#[test]
fn leaves_verify_for_their_purpose_only() {
    let is = issuer();
    let server = is
        .issue(&builtin("server"), &request(&["s.svc.local"], &[]), now())
        .expect("server");
    let client = is
        .issue(&builtin("client"), &request(&["c.svc.local"], &[]), now())
        .expect("client");
    let peer = is
        .issue(&builtin("peer"), &request(&["p.svc.local"], &[]), now())
        .expect("peer");
    let ints = intermediate_der();

    webpki_verify(&server.cert_der, &ints, KeyUsage::server_auth())
        .expect("server for server auth");
    let err = webpki_verify(&server.cert_der, &ints, KeyUsage::client_auth())
        .expect_err("server for client auth");
    assert!(
        matches!(err, webpki::Error::RequiredEkuNotFoundContext(_)),
        "{err:?}"
    );

    webpki_verify(&client.cert_der, &ints, KeyUsage::client_auth())
        .expect("client for client auth");
    assert!(webpki_verify(&client.cert_der, &ints, KeyUsage::server_auth()).is_err());

    webpki_verify(&peer.cert_der, &ints, KeyUsage::server_auth()).expect("peer as server");
    webpki_verify(&peer.cert_der, &ints, KeyUsage::client_auth()).expect("peer as client");

    // Without the intermediate the path cannot be built.
    let err =
        webpki_verify(&server.cert_der, &[], KeyUsage::server_auth()).expect_err("no intermediate");
    assert!(matches!(err, webpki::Error::UnknownIssuer), "{err:?}");

    // verify_set: the right purpose passes, the wrong one is refused.
    verify_set(&server.pems(), Purpose::Server, now()).expect("server set");
    verify_set(&client.pems(), Purpose::Client, now()).expect("client set");
    verify_set(&peer.pems(), Purpose::Peer, now()).expect("peer set");
    verify_set(&peer.pems(), Purpose::Server, now()).expect("peer set is a server set too");
    assert!(matches!(
        verify_set(&server.pems(), Purpose::Client, now()),
        Err(PkiError::PurposeMismatch {
            missing: "clientAuth",
            ..
        })
    ));
    assert!(matches!(
        verify_set(&client.pems(), Purpose::Peer, now()),
        Err(PkiError::PurposeMismatch { .. })
    ));
}

#[test]
fn leaves_are_valid_for_their_names_only() {
    let set = issuer()
        .issue(
            &builtin("server"),
            &request(&["a.svc.local", "*.wild.svc.local"], &["10.1.2.3"]),
            now(),
        )
        .expect("issue");
    let der = CertificateDer::from(set.cert_der.clone());
    let ee = EndEntityCert::try_from(&der).expect("ee");
    let name = |s: &str| ServerName::try_from(s.to_owned()).expect("name");
    ee.verify_is_valid_for_subject_name(&name("a.svc.local"))
        .expect("a");
    ee.verify_is_valid_for_subject_name(&name("x.wild.svc.local"))
        .expect("covered by the wildcard");
    ee.verify_is_valid_for_subject_name(&name("10.1.2.3"))
        .expect("ip");
    assert!(
        ee.verify_is_valid_for_subject_name(&name("b.svc.local"))
            .is_err()
    );
    assert!(
        ee.verify_is_valid_for_subject_name(&name("x.y.wild.svc.local"))
            .is_err()
    );
    assert!(
        ee.verify_is_valid_for_subject_name(&name("10.1.2.4"))
            .is_err()
    );
    assert!(verify::check_names(&der, &["other.example".to_owned()], &[]).is_err());
    assert!(matches!(
        verify::check_names(&der, &[], &["10.9.9.9".parse().expect("ip")]),
        Err(PkiError::NameMismatch { .. })
    ));
}

#[test]
fn key_types_p384_ed25519_and_rsa() {
    let is = issuer();
    for kt in [KeyType::P384, KeyType::Ed25519] {
        let req = IssueRequest {
            key_type: Some(kt),
            ..request(&["k.svc.local"], &[])
        };
        let set = is.issue(&builtin("peer"), &req, now()).expect("issue");
        assert_eq!(set.key_type, kt);
        verify_set(&set.pems(), Purpose::Peer, now()).expect("verifies");
    }
    // One RSA key (slow to generate): keyEncipherment is added, the key is PKCS#8 RSA-2048.
    let req = IssueRequest {
        key_type: Some(KeyType::Rsa2048),
        ..request(&["rsa.svc.local"], &[])
    };
    let set = is.issue(&builtin("server"), &req, now()).expect("rsa");
    let leaf = x509(&set.cert_der);
    let ku = leaf.key_usage().expect("ku").expect("ku");
    assert!(ku.value.digital_signature() && ku.value.key_encipherment());
    let key_pem = set.key_pem.as_ref().expect("key");
    let (_, kt, _) = key::load_pkcs8_pem(key_pem, "key").expect("pkcs8");
    assert_eq!(kt, KeyType::Rsa2048);
    verify_set(&set.pems(), Purpose::Server, now()).expect("verifies");
}

#[test]
fn openssl_verifies_the_chain_and_needs_the_intermediate() {
    let (ca, is, now) = fixture();
    let set = is
        .issue(
            &builtin("server"),
            &request(&["openssl.svc.local"], &["127.0.0.1"]),
            *now,
        )
        .expect("issue");
    let client = is
        .issue(
            &builtin("client"),
            &request(&["client.svc.local"], &[]),
            *now,
        )
        .expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("root.pem"), &set.root_pem).expect("write");
    std::fs::write(d.join("intermediate.pem"), &ca.intermediate.cert_pem).expect("write");
    std::fs::write(d.join("cert.pem"), &set.cert_pem).expect("write");
    std::fs::write(d.join("chain.pem"), &set.chain_pem).expect("write");
    std::fs::write(d.join("ca-bundle.pem"), &set.ca_bundle_pem).expect("write");
    std::fs::write(d.join("client.pem"), &client.cert_pem).expect("write");
    std::fs::write(
        d.join("key.pem"),
        set.key_pem.as_ref().expect("key").as_bytes(),
    )
    .expect("write");

    let (ok, out) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "cert.pem",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("cert.pem: OK"), "{out}");

    let (ok, out) = openssl(d, &["verify", "-CAfile", "root.pem", "cert.pem"]);
    assert!(!ok, "must fail without the intermediate: {out}");

    // ca-bundle.pem works alone; chain.pem carries the intermediate.
    let (ok, out) = openssl(d, &["verify", "-CAfile", "ca-bundle.pem", "cert.pem"]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "cert.pem",
        ],
    );
    assert!(ok, "{out}");

    // openssl's purpose checks agree with the profile, and with strict X.509 checks on.
    let strict = [
        "verify",
        "-x509_strict",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "intermediate.pem",
        "-purpose",
    ];
    let (ok, out) = openssl(d, &[&strict[..], &["sslserver", "cert.pem"]].concat());
    assert!(ok, "{out}");
    let (ok, out) = openssl(d, &[&strict[..], &["sslclient", "cert.pem"]].concat());
    assert!(
        !ok,
        "a server certificate is not a client certificate: {out}"
    );
    let (ok, out) = openssl(d, &[&strict[..], &["sslclient", "client.pem"]].concat());
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "-verify_hostname",
            "openssl.svc.local",
            "cert.pem",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "-verify_hostname",
            "nope.svc.local",
            "cert.pem",
        ],
    );
    assert!(!ok, "{out}");

    // openssl sees the key as PKCS#8 belonging to the certificate.
    let (ok, pubkey) = openssl(d, &["pkey", "-in", "key.pem", "-pubout"]);
    assert!(ok, "{pubkey}");
    let (ok, cert_pub) = openssl(d, &["x509", "-in", "cert.pem", "-noout", "-pubkey"]);
    assert!(ok, "{cert_pub}");
    assert_eq!(pubkey, cert_pub);
}

#[test]
fn crl_lists_revoked_serials_and_revokes_for_webpki_and_openssl() {
    let (ca, is, now) = fixture();
    let revoked_set = is
        .issue(
            &builtin("server"),
            &request(&["revoked.svc.local"], &[]),
            *now,
        )
        .expect("issue");
    let good_set = is
        .issue(&builtin("server"), &request(&["good.svc.local"], &[]), *now)
        .expect("issue");
    let revoked = [
        RevokedCert {
            serial_hex: revoked_set.serial_hex.clone(),
            revoked_at: now - 10,
            reason: Some(RevocationReason::KeyCompromise),
        },
        RevokedCert {
            serial_hex: "7f00ff".into(),
            revoked_at: now - 5,
            reason: None,
        },
    ];
    let crl = is.build_crl(&revoked, 42, 86_400, *now).expect("crl");
    assert_eq!((crl.this_update, crl.next_update), (*now, now + 86_400));
    assert!(crl.pem.starts_with("-----BEGIN X509 CRL-----"));

    // x509-parser: AKI is the intermediate's SKI; the CRL number; the signature.
    let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(&crl.der)
        .expect("parse crl");
    let int = x509(&ca.intermediate.cert_der);
    let crl_aki = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("crl aki");
    assert_eq!(crl_aki, ski(&int));
    assert_eq!(
        parsed.crl_number().map(|n| n.to_string()),
        Some("42".to_owned())
    );
    assert!(parsed.verify_signature(int.public_key()).is_ok());
    assert_eq!(parsed.iter_revoked_certificates().count(), 2);

    // openssl reads it, lists the serial and the reason, and checks the signature.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("crl.der"), &crl.der).expect("write");
    std::fs::write(d.join("intermediate.pem"), &ca.intermediate.cert_pem).expect("write");
    let (ok, text) = openssl(
        d,
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(&revoked_set.serial_hex.to_uppercase()),
        "{text}"
    );
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("7F00FF"), "{text}");
    let (ok, text) = openssl(
        d,
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "crl.der",
            "-CAfile",
            "intermediate.pem",
            "-noout",
        ],
    );
    assert!(ok && text.contains("verify OK"), "{text}");

    // webpki with the CRL: the revoked leaf is refused, the other one passes.
    let owned = webpki::OwnedCertRevocationList::from_der(&crl.der).expect("webpki crl");
    let crls = [&webpki::CertRevocationList::from(owned)];
    let root = CertificateDer::from(ca.root.cert_der.clone());
    let anchors = [webpki::anchor_from_trusted_cert(&root).expect("anchor")];
    let ints = intermediate_der();
    let check = |der: &[u8]| {
        let leaf = CertificateDer::from(der.to_vec());
        let ee = EndEntityCert::try_from(&leaf).expect("ee");
        let opts = webpki::RevocationOptionsBuilder::new(&crls)
            .expect("crls")
            .with_depth(webpki::RevocationCheckDepth::EndEntity)
            .build();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &ints,
            unix_time(*now).expect("time"),
            KeyUsage::server_auth(),
            Some(opts),
            None,
        )
        .map(|_| ())
    };
    assert!(matches!(
        check(&revoked_set.cert_der),
        Err(webpki::Error::CertRevoked)
    ));
    check(&good_set.cert_der).expect("not revoked");

    assert!(matches!(
        is.build_crl(
            &[RevokedCert {
                serial_hex: "zz".into(),
                revoked_at: *now,
                reason: None
            }],
            1,
            60,
            *now
        ),
        Err(PkiError::InvalidSerial { .. })
    ));
    assert!(is.build_crl(&[], 1, 0, *now).is_err());
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

#[test]
fn csr_names_come_from_the_csr_or_the_request() {
    let is = issuer();
    let (csr, key) = rcgen_csr(&["csr.svc.local", "10.0.0.9"], Some("csr.svc.local"));

    let set = is
        .sign_csr(&mqtt_profile(), &csr, &IssueRequest::default(), now())
        .expect("sign");
    assert!(set.key_pem.is_none());
    assert_eq!(set.dns_names, ["csr.svc.local"]);
    assert_eq!(
        set.ip_addresses,
        ["10.0.0.9".parse::<IpAddr>().expect("ip")]
    );
    assert_eq!(set.common_name.as_deref(), Some("csr.svc.local"));
    assert_eq!(set.not_after, now() + 86_400, "the profile's default TTL");
    let leaf = x509(&set.cert_der);
    assert!(
        key::key_matches_spki(&key, leaf.public_key().raw),
        "the certificate holds the CSR's key"
    );
    let key_pem = key.serialize_pem();
    let pems = SetPems {
        key_pem: Some(&key_pem),
        ..set.pems()
    };
    verify_set(&pems, Purpose::Server, now()).expect("verifies with the CSR's key");

    // The request's SANs replace the CSR's; its CN replaces the subject's.
    let req = IssueRequest {
        common_name: Some("broker.local".into()),
        dns_names: vec!["broker.local".into()],
        ttl_secs: Some(3600),
        ..IssueRequest::default()
    };
    let set = is
        .sign_csr(&mqtt_profile(), &csr, &req, now())
        .expect("sign");
    assert_eq!(set.dns_names, ["broker.local"]);
    assert!(set.ip_addresses.is_empty());
    assert_eq!(set.not_after, now() + 3600);

    // The CSR's own names are checked against the profile too.
    let (bad, _) = rcgen_csr(&["evil.example"], None);
    assert!(matches!(
        is.sign_csr(&mqtt_profile(), &bad, &IssueRequest::default(), now()),
        Err(PkiError::SanNotAllowed {
            kind: SanKind::Dns,
            ..
        })
    ));
    // A key type asked for must be the CSR's.
    let req = IssueRequest {
        key_type: Some(KeyType::Ed25519),
        ..IssueRequest::default()
    };
    assert!(matches!(
        is.sign_csr(&mqtt_profile(), &csr, &req, now()),
        Err(PkiError::CsrKeyTypeMismatch { .. })
    ));
}

#[test]
fn openssl_csr_asking_for_a_ca_gets_a_leaf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ok, out) = openssl(
        d,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "req.pem",
            "-subj",
            "/CN=ossl.svc.local",
            "-addext",
            "subjectAltName=DNS:ossl.svc.local,IP:10.0.0.7",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-addext",
            "subjectKeyIdentifier=hash",
        ],
    );
    assert!(ok, "{out}");
    let csr = std::fs::read_to_string(d.join("req.pem")).expect("read");
    // rcgen's own CSR parser refuses CSRs with extensions it does not model (here the SKI); ours takes
    // what it needs and ignores the rest.
    assert!(rcgen::CertificateSigningRequestParams::from_pem(&csr).is_err());
    let set = issuer()
        .sign_csr(&mqtt_profile(), &csr, &IssueRequest::default(), now())
        .expect("sign");
    let leaf = x509(&set.cert_der);
    assert!(
        !leaf.basic_constraints().expect("bc").expect("bc").value.ca,
        "the profile decides, not the CSR"
    );
    assert!(
        !leaf
            .key_usage()
            .expect("ku")
            .expect("ku")
            .value
            .key_cert_sign()
    );
    assert_eq!(set.dns_names, ["ossl.svc.local"]);
    assert_eq!(
        set.ip_addresses,
        ["10.0.0.7".parse::<IpAddr>().expect("ip")]
    );
    let key = std::fs::read_to_string(d.join("k.pem")).expect("key");
    let pems = SetPems {
        key_pem: Some(&key),
        ..set.pems()
    };
    verify_set(&pems, Purpose::Server, now()).expect("openssl's key matches");
}

#[test]
fn bad_requests_fail_with_distinct_errors() {
    let is = issuer();
    let p = mqtt_profile();
    let (csr, _) = rcgen_csr(&["x.svc.local"], None);

    let malformed = is
        .sign_csr(&p, "not a csr", &IssueRequest::default(), now())
        .expect_err("garbage");
    assert!(
        matches!(malformed, PkiError::MalformedCsr { .. }),
        "{malformed:?}"
    );
    let junk = pem_encode("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00");
    let malformed_der = is
        .sign_csr(&p, &junk, &IssueRequest::default(), now())
        .expect_err("bad der");
    assert!(
        matches!(malformed_der, PkiError::MalformedCsr { .. }),
        "{malformed_der:?}"
    );

    let tampered = tamper(&csr);
    let bad_sig = is
        .sign_csr(&p, &tampered, &IssueRequest::default(), now())
        .expect_err("tampered");
    assert!(matches!(bad_sig, PkiError::CsrSignature), "{bad_sig:?}");
    // rcgen's parser verifies the signature too.
    assert!(matches!(
        rcgen::CertificateSigningRequestParams::from_pem(&tampered),
        Err(rcgen::Error::InvalidCertificationRequestSignature)
    ));
    assert!(rcgen::CertificateSigningRequestParams::from_pem(&csr).is_ok());

    let san = is
        .issue(&p, &request(&["x.other.local"], &[]), now())
        .expect_err("san");
    assert_eq!(
        san.to_string(),
        "DNS name `x.other.local` is not allowed by profile `mqtt` (allowed: *.svc.local, broker.local)"
    );
    let ip = is
        .issue(&p, &request(&["x.svc.local"], &["192.168.0.1"]), now())
        .expect_err("ip");
    assert!(
        ip.to_string()
            .contains("IP address `192.168.0.1` is not allowed by profile `mqtt`"),
        "{ip}"
    );
    let uri_req = IssueRequest {
        uris: vec!["spiffe://castellan.test/db/x".into()],
        ..request(&["x.svc.local"], &[])
    };
    let uri = is.issue(&p, &uri_req, now()).expect_err("uri");
    assert!(matches!(
        uri,
        PkiError::SanNotAllowed {
            kind: SanKind::Uri,
            ..
        }
    ));

    let ttl_req = IssueRequest {
        ttl_secs: Some(8 * 86_400),
        ..request(&["x.svc.local"], &[])
    };
    let ttl = is.issue(&p, &ttl_req, now()).expect_err("ttl");
    assert_eq!(
        ttl.to_string(),
        "requested TTL 8d exceeds the maximum of 7d allowed by profile `mqtt`"
    );

    let unknown = "dsa-1024".parse::<KeyType>().expect_err("unknown");
    assert!(
        unknown
            .to_string()
            .starts_with("unknown key type `dsa-1024`")
    );
    let unknown_json =
        serde_json::from_str::<IssueRequest>(r#"{"key_type":"rsa-1024"}"#).expect_err("json");
    assert!(
        unknown_json.to_string().contains("unknown key type"),
        "{unknown_json}"
    );

    let kt_req = IssueRequest {
        key_type: Some(KeyType::P384),
        ..request(&["x.svc.local"], &[])
    };
    let not_allowed = is.issue(&p, &kt_req, now()).expect_err("key type");
    assert_eq!(
        not_allowed.to_string(),
        "key type p-384 is not allowed by profile `mqtt` (allowed: p-256, ed25519)"
    );
    // …also when the key comes from a CSR.
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
    let mut params = CertificateParams::new(vec!["x.svc.local".to_owned()]).expect("params");
    params.distinguished_name = DistinguishedName::new();
    let p384_csr = params
        .serialize_request(&p384)
        .expect("csr")
        .pem()
        .expect("pem");
    assert!(matches!(
        is.sign_csr(&p, &p384_csr, &IssueRequest::default(), now()),
        Err(PkiError::KeyTypeNotAllowed { .. })
    ));

    let beyond = Profile {
        max_ttl_secs: 20 * 365 * 86_400,
        ..builtin("server")
    };
    let long = IssueRequest {
        ttl_secs: Some(6 * 365 * 86_400),
        ..request(&["x.svc.local"], &[])
    };
    let beyond_err = is.issue(&beyond, &long, now()).expect_err("beyond ca");
    assert!(
        matches!(beyond_err, PkiError::TtlBeyondCa { .. }),
        "{beyond_err:?}"
    );

    let codes: std::collections::BTreeSet<&str> = [
        &malformed,
        &bad_sig,
        &san,
        &ttl,
        &unknown,
        &not_allowed,
        &beyond_err,
    ]
    .iter()
    .map(|e| e.code())
    .collect();
    assert_eq!(
        codes.len(),
        7,
        "each failure has its own variant: {codes:?}"
    );
    assert!(matches!(
        is.issue(&p, &IssueRequest::default(), now()),
        Err(PkiError::NoSubjectName)
    ));
}

#[test]
fn time_comes_from_the_parameter() {
    let (ca, is, now) = fixture();
    let req = IssueRequest {
        ttl_secs: Some(3600),
        ..request(&["t.svc.local"], &[])
    };
    let set = is.issue(&builtin("server"), &req, *now).expect("issue");
    verify_set(&set.pems(), Purpose::Server, now + 3599).expect("valid within its TTL");
    let expired = verify_set(&set.pems(), Purpose::Server, now + 3601).expect_err("expired");
    assert!(expired.to_string().contains("Expired"), "{expired}");
    // Before the CA exists, the CA itself is not valid yet: issuance refuses (verification is mandatory).
    let early = is
        .issue(&builtin("server"), &req, ca.intermediate.not_before - 3600)
        .expect_err("too early");
    assert!(
        matches!(early, PkiError::VerificationFailed { .. }),
        "{early:?}"
    );
    assert!(matches!(
        is.issue(&builtin("server"), &req, -1),
        Err(PkiError::InvalidTime { .. })
    ));
}

#[test]
fn verify_set_catches_broken_sets() {
    let is = issuer();
    let set = is
        .issue(&builtin("server"), &request(&["v.svc.local"], &[]), now())
        .expect("issue");
    let other = is
        .issue(&builtin("server"), &request(&["w.svc.local"], &[]), now())
        .expect("other");
    verify_set(&set.pems(), Purpose::Server, now()).expect("good set");

    let other_key = other.key_pem.as_ref().expect("key");
    let wrong_key = SetPems {
        key_pem: Some(other_key),
        ..set.pems()
    };
    assert!(matches!(
        verify_set(&wrong_key, Purpose::Server, now()),
        Err(PkiError::KeyMismatch { .. })
    ));

    let leaf_only_chain = SetPems {
        chain_pem: &set.cert_pem,
        ..set.pems()
    };
    let err = verify_set(&leaf_only_chain, Purpose::Server, now())
        .expect_err("chain without intermediate");
    assert!(
        matches!(&err, PkiError::VerificationFailed { error, .. } if error.contains("UnknownIssuer")),
        "{err:?}"
    );

    let no_root_bundle = SetPems {
        ca_bundle_pem: &fixture().0.intermediate.cert_pem,
        ..set.pems()
    };
    assert!(matches!(
        verify_set(&no_root_bundle, Purpose::Server, now()),
        Err(PkiError::SetMismatch { .. })
    ));

    let swapped = SetPems {
        cert_pem: &other.cert_pem,
        ..set.pems()
    };
    assert!(matches!(
        verify_set(&swapped, Purpose::Server, now()),
        Err(PkiError::SetMismatch { .. })
    ));

    let other_ca =
        create_ca(&CaOptions::root(), &CaOptions::intermediate(), now()).expect("other ca");
    let foreign_root = SetPems {
        root_pem: &other_ca.root.cert_pem,
        ..set.pems()
    };
    assert!(verify_set(&foreign_root, Purpose::Server, now()).is_err());

    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n";
    let legacy_key = SetPems {
        key_pem: Some(sec1),
        ..set.pems()
    };
    let err = verify_set(&legacy_key, Purpose::Server, now()).expect_err("sec1");
    assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
}

#[test]
fn import_ca_checks_the_ca_the_key_and_the_chain() {
    let (ca, _, now) = fixture();
    let key_pem = pem_encode("PRIVATE KEY", &ca.intermediate.key_pkcs8_der);

    let imported = import_ca(
        &ca.intermediate.cert_pem,
        &key_pem,
        Some(&ca.root.cert_pem),
        *now,
    )
    .expect("import");
    assert_eq!(imported.root_pem, ca.root.cert_pem);
    assert_eq!(imported.intermediates_pem, "");
    assert_eq!(
        &imported.key_pkcs8_der[..],
        &ca.intermediate.key_pkcs8_der[..]
    );
    assert!(!format!("{imported:?}").contains(&key_pem[30..60]));
    let set = imported
        .issuer
        .issue(
            &builtin("server"),
            &request(&["imported.svc.local"], &[]),
            *now,
        )
        .expect("issue");
    verify_set(&set.pems(), Purpose::Server, *now).expect("verifies");

    // A leaf is not a CA.
    let leaf = issuer()
        .issue(&builtin("server"), &request(&["leaf.svc.local"], &[]), *now)
        .expect("leaf");
    let leaf_key = leaf.key_pem.as_ref().expect("key");
    let err =
        import_ca(&leaf.cert_pem, leaf_key, Some(&leaf.ca_bundle_pem), *now).expect_err("leaf");
    assert!(matches!(err, PkiError::NotACa { .. }), "{err:?}");
    assert!(err.to_string().contains("CA:TRUE"), "{err}");

    // The key of another CA.
    let other = create_ca(&CaOptions::root(), &CaOptions::intermediate(), *now).expect("other ca");
    let other_key = pem_encode("PRIVATE KEY", &other.intermediate.key_pkcs8_der);
    let err = import_ca(
        &ca.intermediate.cert_pem,
        &other_key,
        Some(&ca.root.cert_pem),
        *now,
    )
    .expect_err("key");
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err:?}");

    // A chain from another root (same names, different keys).
    let err = import_ca(
        &ca.intermediate.cert_pem,
        &key_pem,
        Some(&other.root.cert_pem),
        *now,
    )
    .expect_err("root");
    assert!(matches!(err, PkiError::ChainBroken { .. }), "{err:?}");
    // A chain with an unrelated root.
    let named = CaOptions {
        common_name: "Elsewhere Root".into(),
        ..CaOptions::root()
    };
    let unrelated = create_root_ca(&named, *now).expect("unrelated");
    let err = import_ca(
        &ca.intermediate.cert_pem,
        &key_pem,
        Some(&unrelated.cert_pem),
        *now,
    )
    .expect_err("unrelated");
    assert!(
        err.to_string()
            .contains("no certificate in the chain issued"),
        "{err}"
    );
    // No chain for an intermediate.
    assert!(matches!(
        import_ca(&ca.intermediate.cert_pem, &key_pem, None, *now),
        Err(PkiError::ChainBroken { .. })
    ));
    // Expired at `now`.
    let err = import_ca(
        &ca.intermediate.cert_pem,
        &key_pem,
        Some(&ca.root.cert_pem),
        now + 6 * 365 * DAY,
    )
    .expect_err("expired");
    assert!(matches!(err, PkiError::NotValidNow { .. }), "{err:?}");
    // Issuer::new applies the same structural checks.
    assert!(matches!(
        Issuer::new(
            &ca.intermediate.cert_pem,
            &other.intermediate.key_pkcs8_der,
            &ca.root.cert_pem,
            ""
        ),
        Err(PkiError::KeyMismatch { .. })
    ));
    assert!(matches!(
        Issuer::new(
            &ca.intermediate.cert_pem,
            &ca.intermediate.key_pkcs8_der,
            &other.root.cert_pem,
            ""
        ),
        Err(PkiError::ChainBroken { .. })
    ));
}

#[test]
fn import_an_openssl_root_with_sha1_key_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ok, out) = openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/O=Elsewhere/CN=Elsewhere CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    assert!(ok, "{out}");
    let cert = std::fs::read_to_string(d.join("ca.pem")).expect("cert");
    let key = std::fs::read_to_string(d.join("ca.key")).expect("key");
    let now = SystemClock.now();
    let imported =
        import_ca(&cert, &key, None, now).expect("import a self-signed CA without a chain");
    let ders = der_of(&cert);
    let ca_x = x509(&ders[0]);
    let ca_ski = ski(&ca_x);

    let set = imported
        .issuer
        .issue(&builtin("client"), &request(&["dev.svc.local"], &[]), now)
        .expect("issue");
    assert_eq!(
        aki(&x509(&set.cert_der)),
        ca_ski,
        "leaf AKI is the CA's own (SHA-1) SKI"
    );
    assert_eq!(
        der_of(&set.chain_pem).len(),
        1,
        "the root issues: the chain is the leaf alone"
    );
    verify_set(&set.pems(), Purpose::Client, now).expect("verifies");

    let crl = imported.issuer.build_crl(&[], 1, 3600, now).expect("crl");
    let (_, parsed) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&crl.der).expect("crl");
    let crl_aki = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("aki");
    assert_eq!(
        crl_aki, ca_ski,
        "CRL AKI is the CA's SKI, not rcgen's own derivation"
    );
}

#[test]
fn serials_are_unique() {
    let is = issuer();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let set = is
            .issue(&builtin("client"), &request(&["s.svc.local"], &[]), now())
            .expect("issue");
        assert!(seen.insert(set.serial_hex));
    }
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

/// Leaves after the first are verified against the issuing CA (its path to the root verified once):
/// that shortcut must still refuse a leaf when a CA above the issuing one is not valid at that time.
#[test]
fn a_ca_above_the_issuing_one_is_checked_for_every_leaf() {
    let now = now();
    let root = test_ca("Upper Root", now - DAY, now + 3650 * DAY, None, None);
    // Valid from tomorrow: before then, the issuing CA is valid and the one above it is not.
    let short = test_ca(
        "Short-lived Intermediate",
        now + DAY,
        now + 30 * DAY,
        None,
        Some(&root),
    );
    let issuing = test_ca("Issuing CA", now - DAY, now + 365 * DAY, None, Some(&short));
    let new_issuer = || {
        Issuer::new(
            &issuing.cert.pem(),
            &issuing.key.serialize_der(),
            &root.cert.pem(),
            &short.cert.pem(),
        )
        .expect("issuer")
    };
    let is = new_issuer();
    let p = builtin("server");
    let req = IssueRequest {
        ttl_secs: Some(DAY as u64),
        ..request(&["a.svc.local"], &[])
    };
    let valid = now + 2 * DAY;
    for _ in 0..3 {
        let set = is
            .issue(&p, &req, valid)
            .expect("issue while every CA is valid");
        verify_set(&set.pems(), Purpose::Server, valid).expect("the set verifies");
    }
    // Today: the issuing CA is valid, the one above it is not yet.
    let err = is
        .issue(&p, &req, now)
        .expect_err("intermediate not valid yet");
    assert!(
        matches!(&err, PkiError::VerificationFailed { error, .. } if error.contains("NotValidYet")),
        "{err:?}"
    );
    // The same answer as an issuer that never took the shortcut.
    let err2 = new_issuer()
        .issue(&p, &req, now)
        .expect_err("intermediate not valid yet");
    assert_eq!(err.to_string(), err2.to_string());
    // 40 days on, the intermediate has expired: no leaf may outlive it, so none is signed.
    let err = is
        .issue(&p, &req, now + 40 * DAY)
        .expect_err("expired intermediate");
    assert!(
        matches!(&err, PkiError::TtlBeyondCa { ca, .. } if ca.contains("Short-lived")),
        "{err:?}"
    );
    // Back in time, the shortcut is used again and the leaf verifies.
    let set = is.issue(&p, &req, valid).expect("issue");
    verify_set(&set.pems(), Purpose::Server, valid).expect("the set verifies");
}

/// Name constraints on a CA above the issuing one apply to each leaf's names, so every leaf is
/// verified along the whole path.
#[test]
fn name_constraints_above_the_issuing_ca_apply_to_every_leaf() {
    let now = now();
    let constraints = rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("svc.local".into())],
        excluded_subtrees: vec![],
    };
    let root = test_ca(
        "Constrained Root",
        now - DAY,
        now + 3650 * DAY,
        Some(constraints),
        None,
    );
    let issuing = test_ca("Issuing CA", now - DAY, now + 365 * DAY, None, Some(&root));
    let is = Issuer::new(
        &issuing.cert.pem(),
        &issuing.key.serialize_der(),
        &root.cert.pem(),
        "",
    )
    .expect("issuer");
    let p = Profile {
        allowed_dns: vec!["*.svc.local".into(), "*.other.test".into()],
        allowed_ips: vec![],
        allowed_uris: vec![],
        ..mqtt_profile()
    };
    for round in 0..3 {
        let set = is
            .issue(&p, &request(&["a.svc.local"], &[]), now)
            .unwrap_or_else(|e| panic!("round {round}: inside the constraints: {e}"));
        verify_set(&set.pems(), Purpose::Server, now).expect("the set verifies");
        let err = is
            .issue(&p, &request(&["b.other.test"], &[]), now)
            .expect_err("outside the root's name constraints");
        assert!(
            matches!(err, PkiError::VerificationFailed { .. }),
            "round {round}: {err:?}"
        );
    }
}

/// `::ffff:a.b.c.d` is matched as a.b.c.d and the certificate carries the 4-byte address, which is
/// what Go, Java and webpki compare against.
#[test]
fn an_ipv4_mapped_address_is_issued_as_ipv4() {
    let set = issuer()
        .issue(
            &mqtt_profile(),
            &request(&["m.svc.local"], &["::ffff:10.0.0.5"]),
            now(),
        )
        .expect("10.0.0.5 is inside 10.0.0.0/8");
    assert_eq!(
        set.ip_addresses,
        ["10.0.0.5".parse::<IpAddr>().expect("ip")]
    );
    let leaf = x509(&set.cert_der);
    let san = leaf.subject_alternative_name().expect("san").expect("san");
    let ips: Vec<&[u8]> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::IPAddress(b) => Some(*b),
            _ => None,
        })
        .collect();
    assert_eq!(ips, [&[10u8, 0, 0, 5][..]]);
    verify_set(&set.pems(), Purpose::Server, now()).expect("verifies");
    let err = issuer()
        .issue(
            &mqtt_profile(),
            &request(&["m.svc.local"], &["::ffff:192.168.1.1"]),
            now(),
        )
        .expect_err("outside 10.0.0.0/8");
    assert!(
        matches!(
            err,
            PkiError::SanNotAllowed {
                kind: SanKind::Ip,
                ..
            }
        ),
        "{err:?}"
    );
}

/// The issuing CA signs the CRL: a CA whose keyUsage lacks cRLSign would import, and then every CRL
/// build would fail.
#[test]
fn import_ca_requires_crl_sign() {
    let now = now();
    let root = test_ca("No-CRL Root", now - DAY, now + 3650 * DAY, None, None);
    let issuing = test_ca_with(
        "No-CRL Issuing CA",
        now - DAY,
        now + 365 * DAY,
        Some(&root),
        |p| {
            p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        },
    );
    let err = import_ca(
        &issuing.cert.pem(),
        &issuing.key.serialize_pem(),
        Some(&root.cert.pem()),
        now,
    )
    .expect_err("no cRLSign");
    assert!(matches!(err, PkiError::NotACa { .. }), "{err:?}");
    assert!(err.to_string().contains("cRLSign"), "{err}");
    // The same CA with cRLSign imports, and its CRL builds.
    let good = test_ca(
        "CRL Issuing CA",
        now - DAY,
        now + 365 * DAY,
        None,
        Some(&root),
    );
    let imported = import_ca(
        &good.cert.pem(),
        &good.key.serialize_pem(),
        Some(&root.cert.pem()),
        now,
    )
    .expect("import");
    imported.issuer.build_crl(&[], 1, 3600, now).expect("crl");
}

/// A leaf must not outlive any CA certificate of its path: not an imported parent intermediate that
/// ends before the issuing CA, nor the root.
#[test]
fn leaves_do_not_outlive_any_ca_of_their_path() {
    let now = now();
    let root = test_ca("Path Root", now - DAY, now + 3650 * DAY, None, None);
    let parent = test_ca("Short Parent", now - DAY, now + 30 * DAY, None, Some(&root));
    let issuing = test_ca(
        "Long Issuing CA",
        now - DAY,
        now + 365 * DAY,
        None,
        Some(&parent),
    );
    let imported = import_ca(
        &issuing.cert.pem(),
        &issuing.key.serialize_pem(),
        Some(&format!("{}{}", parent.cert.pem(), root.cert.pem())),
        now,
    )
    .expect("import");
    let p = builtin("server");
    let ttl = |days: i64| IssueRequest {
        ttl_secs: Some((days * DAY) as u64),
        ..request(&["a.svc.local"], &[])
    };
    let err = imported
        .issuer
        .issue(&p, &ttl(31), now)
        .expect_err("outlives the parent");
    assert!(
        matches!(&err, PkiError::TtlBeyondCa { ca, ca_not_after, .. }
            if ca.contains("Short Parent") && *ca_not_after == now + 30 * DAY),
        "{err:?}"
    );
    let set = imported.issuer.issue(&p, &ttl(30), now).expect("within");
    verify_set(&set.pems(), Purpose::Server, now).expect("verifies");

    // A root that ends before the issuing CA caps leaves too.
    let short_root = test_ca("Short Root", now - DAY, now + 20 * DAY, None, None);
    let under = test_ca(
        "Issuing Under Short Root",
        now - DAY,
        now + 365 * DAY,
        None,
        Some(&short_root),
    );
    let is = Issuer::new(
        &under.cert.pem(),
        &under.key.serialize_der(),
        &short_root.cert.pem(),
        "",
    )
    .expect("issuer");
    let err = is.issue(&p, &ttl(21), now).expect_err("outlives the root");
    assert!(
        matches!(&err, PkiError::TtlBeyondCa { ca, .. } if ca.contains("Short Root")),
        "{err:?}"
    );
    is.issue(&p, &ttl(20), now).expect("within the root");
}

/// The import probe is a leaf the CA may sign: inside its permitted DNS subtree, for the purpose its
/// EKU allows. A server leaf for `import-check.castellan.invalid` would be refused by such CAs and make
/// a sound hierarchy look broken.
#[test]
fn import_ca_accepts_constrained_and_client_only_intermediates() {
    let now = now();
    let root = test_ca("Probe Root", now - DAY, now + 3650 * DAY, None, None);
    let constrained = test_ca(
        "Constrained Issuing CA",
        now - DAY,
        now + 365 * DAY,
        Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("svc.local".into())],
            excluded_subtrees: vec![],
        }),
        Some(&root),
    );
    let imported = import_ca(
        &constrained.cert.pem(),
        &constrained.key.serialize_pem(),
        Some(&root.cert.pem()),
        now,
    )
    .expect("a name-constrained intermediate imports");
    let set = imported
        .issuer
        .issue(&builtin("server"), &request(&["a.svc.local"], &[]), now)
        .expect("inside the constraints");
    verify_set(&set.pems(), Purpose::Server, now).expect("verifies");

    let client_only = test_ca_with(
        "Client Issuing CA",
        now - DAY,
        now + 365 * DAY,
        Some(&root),
        |p| {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        },
    );
    let imported = import_ca(
        &client_only.cert.pem(),
        &client_only.key.serialize_pem(),
        Some(&root.cert.pem()),
        now,
    )
    .expect("a clientAuth-only intermediate imports");
    let set = imported
        .issuer
        .issue(
            &builtin("client"),
            &request(&["device.svc.local"], &[]),
            now,
        )
        .expect("client leaf");
    verify_set(&set.pems(), Purpose::Client, now).expect("verifies");
}

/// Issuance rate, leaf verification included: `cargo test -p castellan-core --release throughput -- --ignored
/// --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn throughput() {
    let is = issuer();
    let (csr, _) = rcgen_csr(&["x.svc.local"], None);
    let p = mqtt_profile();
    let n = 2000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        is.sign_csr(&p, &csr, &IssueRequest::default(), now())
            .expect("sign");
    }
    let csr_rate = n as f64 / t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    for _ in 0..n {
        is.issue(&p, &request(&["x.svc.local"], &[]), now())
            .expect("issue");
    }
    let gen_rate = n as f64 / t.elapsed().as_secs_f64();
    eprintln!("CSR: {csr_rate:.0}/s, generated P-256: {gen_rate:.0}/s");
}
