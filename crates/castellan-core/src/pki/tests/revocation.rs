//! Certificate revocation lists.

use super::*;

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
