//! The judgments about a Castellan server or store, on inputs like those the probes hand over.

use std::collections::HashMap;

use super::*;
use crate::doctor::Severity;

const NOW: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

/// A certificate of `life` seconds that ends `left` seconds from now.
fn issued(serial: &str, life: i64, left: i64) -> IssuedCert {
    IssuedCert {
        serial: serial.to_owned(),
        profile: "server".to_owned(),
        common_name: Some(format!("{serial}.example")),
        sans: format!("DNS:{serial}.example"),
        not_before: NOW + left - life,
        not_after: NOW + left,
        revoked: false,
    }
}

#[test]
fn renewal_is_missed_only_in_the_last_third_and_without_a_later_certificate() {
    // 30 days of life: the last third is 10 days, below the 14-day cap.
    let c = issued("a", 30 * DAY, 9 * DAY);
    assert!(renewal_missed(&c, None, NOW));
    assert!(
        renewal_missed(&c, Some(c.not_after), NOW),
        "itself is the newest"
    );
    assert!(!renewal_missed(&c, Some(c.not_after + DAY), NOW), "renewed");
    let early = issued("b", 30 * DAY, 11 * DAY);
    assert!(
        !renewal_missed(&early, None, NOW),
        "still in its first two thirds"
    );
    // 90 days: the last third (30 days) is capped at 14 days.
    assert!(!renewal_missed(&issued("c", 90 * DAY, 15 * DAY), None, NOW));
    assert!(renewal_missed(&issued("d", 90 * DAY, 13 * DAY), None, NOW));
    // A day-long certificate: only its last 8 hours.
    assert!(!renewal_missed(&issued("e", DAY, 9 * HOUR), None, NOW));
    assert!(renewal_missed(&issued("f", DAY, 7 * HOUR), None, NOW));
    // Expired or revoked certificates are not renewals to do.
    assert!(!renewal_missed(&issued("g", 30 * DAY, -HOUR), None, NOW));
    let revoked = IssuedCert {
        revoked: true,
        ..issued("h", 30 * DAY, DAY)
    };
    assert!(!renewal_missed(&revoked, None, NOW));
}

#[test]
fn unrenewed_certificates_are_named_with_hours_left_at_most_twenty() {
    let due = issued("01ab", 30 * DAY, 50 * HOUR);
    let replaced = issued("02cd", 30 * DAY, 20 * HOUR);
    let fresh = issued("03ef", 30 * DAY, 20 * DAY);
    let mut newest = HashMap::new();
    newest.insert(replaced.names(), replaced.not_after + 30 * DAY);
    let f = check_unrenewed(&[due.clone(), replaced, fresh], &newest, NOW);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].code, codes::CERTIFICATE_EXPIRING);
    assert_eq!(f[0].severity, Severity::Warning);
    assert_eq!(f[0].subject, "serial 01ab");
    assert!(
        f[0].message
            .starts_with("the certificate for `01ab.example` (profile server) expires in 50 hours"),
        "{}",
        f[0].message
    );
    // Without a common name, the SANs name it.
    let anonymous = IssuedCert {
        common_name: None,
        ..due
    };
    let f = check_unrenewed(&[anonymous], &HashMap::new(), NOW);
    assert!(
        f[0].message.contains("`DNS:01ab.example`"),
        "{}",
        f[0].message
    );

    let many: Vec<IssuedCert> = (0..25)
        .map(|i| issued(&format!("{i:02x}"), 30 * DAY, DAY))
        .collect();
    assert_eq!(
        check_unrenewed(&many, &HashMap::new(), NOW).len(),
        UNRENEWED_SHOWN
    );
}

#[test]
fn the_issuing_ca_is_reported_in_its_last_ninety_days_only() {
    let f = ca_expiry(NOW + 30 * DAY + HOUR, NOW).expect("30 days left");
    assert_eq!(f.code, codes::CERTIFICATE_EXPIRING);
    assert_eq!(f.subject, "store CA");
    assert!(f.message.contains("expires in 30 days"), "{}", f.message);
    assert!(ca_expiry(NOW + 89 * DAY, NOW).is_some());
    assert!(ca_expiry(NOW + 90 * DAY, NOW).is_none());
    assert!(ca_expiry(NOW + 400 * DAY, NOW).is_none());
    // Expired: the chain check says so, not this one.
    assert!(ca_expiry(NOW - DAY, NOW).is_none());
    assert!(ca_expiry(NOW, NOW).is_none());
}

#[test]
fn a_store_without_a_ca_is_a_warning() {
    let f = check_store_ca("db", None, NOW);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].code, codes::CA_MISSING);
    assert_eq!(f[0].severity, Severity::Warning);
}

#[test]
fn the_schema_decides_whether_the_store_checks_run() {
    let mut out = Vec::new();
    let none = SchemaFacts {
        applied: &[],
        missing: &[1, 2],
        unknown: &[],
    };
    assert!(!check_schema("db", &none, "1.2.3", &mut out));
    assert_eq!(out[0].code, codes::STORE_NOT_INITIALIZED);

    let mut out = Vec::new();
    let newer = SchemaFacts {
        applied: &[1, 2, 9],
        missing: &[],
        unknown: &[9],
    };
    assert!(
        check_schema("db", &newer, "1.2.3", &mut out),
        "a newer schema is read anyway"
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].code, codes::STORE_SCHEMA_NEWER);
    assert!(
        out[0].message.contains("version(s) 9 are unknown"),
        "{}",
        out[0].message
    );
    assert!(
        out[0].message.contains("version 1.2.3"),
        "{}",
        out[0].message
    );

    let mut out = Vec::new();
    let behind = SchemaFacts {
        applied: &[1],
        missing: &[2, 3],
        unknown: &[],
    };
    assert!(!check_schema("db", &behind, "1.2.3", &mut out));
    assert_eq!(out[0].code, codes::STORE_SCHEMA_BEHIND);
    assert!(
        out[0].message.contains("migration(s) 2, 3"),
        "{}",
        out[0].message
    );

    let mut out = Vec::new();
    let current = SchemaFacts {
        applied: &[1, 2],
        missing: &[],
        unknown: &[],
    };
    assert!(check_schema("db", &current, "1.2.3", &mut out));
    assert!(out.is_empty());
}

#[test]
fn the_published_jwks_must_hold_a_key() {
    let doc = |body: &str| JwksDoc {
        source: "http://s/.well-known/jwks.json".to_owned(),
        body: Ok(body.as_bytes().to_vec()),
    };
    let empty = check_published_jwks(&doc(r#"{"keys":[]}"#), NOW);
    assert_eq!(empty.len(), 1);
    assert_eq!(empty[0].code, codes::KEYRING_NOT_LOADED);
    assert_eq!(empty[0].severity, Severity::Error);

    let one = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA","use":"sig",
        "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    let ok = check_published_jwks(&doc(one), NOW);
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0].code, codes::KEYRING_OK);
    assert!(ok[0].message.contains("1 key(s)"));

    let unreachable = JwksDoc {
        source: "http://s/.well-known/jwks.json".to_owned(),
        body: Err("HTTP 502".to_owned()),
    };
    let f = check_published_jwks(&unreachable, NOW);
    assert!(f.iter().all(|f| f.code != codes::KEYRING_OK), "{f:?}");
}

#[test]
fn health_and_readiness_answers_are_judged() {
    let ok = Ok(HttpAnswer {
        success: true,
        status: "200 OK".to_owned(),
    });
    let down = Ok(HttpAnswer {
        success: false,
        status: "503 Service Unavailable".to_owned(),
    });
    let mut out = Vec::new();
    assert!(check_healthz("http://s", &ok, &mut out));
    assert!(out.is_empty());
    assert!(check_healthz("http://s", &down, &mut out));
    assert_eq!(out[0].code, codes::SERVER_UNREACHABLE);
    assert!(!check_healthz(
        "http://s",
        &Err("refused".to_owned()),
        &mut out
    ));
    assert!(out[1].message.contains("does not answer: refused"));

    assert!(check_readyz("http://s", &ok).is_none());
    let f = check_readyz("http://s", &down).expect("not ready");
    assert_eq!(f.code, codes::KEYRING_NOT_LOADED);
    assert!(f.message.contains("503 Service Unavailable"));
}

#[test]
fn secrets_that_do_not_open_are_named_and_all_open_is_a_summary() {
    let bad = SecretFailure {
        name: "db-password".to_owned(),
        version: 3,
        error: "authentication failed".to_owned(),
    };
    let f = check_secrets("db", 2, std::slice::from_ref(&bad));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].code, codes::SECRET_UNREADABLE);
    assert_eq!(f[0].subject, "secret db-password");
    assert!(f[0].message.contains("version 3 does not open"));

    let f = check_secrets("db", 2, &[]);
    assert_eq!(f[0].code, codes::SECRETS_OK);
    assert!(
        check_secrets("db", 0, &[]).is_empty(),
        "no secrets, nothing to say"
    );
}

#[test]
fn the_key_ring_is_judged() {
    let f = check_key_ring(
        "db",
        &KeyRingFacts::Loaded {
            keys: 2,
            current: None,
        },
    );
    assert_eq!(f.code, codes::KEYRING_OK);
    assert!(
        f.message
            .contains("2 published key(s), signing with `(none)`")
    );
    let f = check_key_ring("db", &KeyRingFacts::Failed("wrong key".to_owned()));
    assert_eq!(f.code, codes::KEYRING_NOT_LOADED);
    assert_eq!(f.severity, Severity::Error);
    let f = check_key_ring("db", &KeyRingFacts::NoMasterKey("no file".to_owned()));
    assert!(f.message.contains("without the master key: no file"));
}
