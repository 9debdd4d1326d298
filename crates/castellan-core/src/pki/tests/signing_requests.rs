//! Leaves signed for a certificate signing request.

use super::*;

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
