//! Hierarchies deeper than the created one: every CA of the path is checked for every leaf.

use super::*;

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
