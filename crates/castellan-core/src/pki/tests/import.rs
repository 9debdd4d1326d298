//! Importing an operator's CA.

use super::*;

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
