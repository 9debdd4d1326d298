//! The created hierarchy: CA extensions, serial numbers, time.

use super::*;

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
