//! Requests and output sets that are refused, each with its own error.

use super::*;

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
