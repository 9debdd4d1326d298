//! Issued leaves: their extensions, purposes, names and key types, as webpki and openssl see them.

use super::*;

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
