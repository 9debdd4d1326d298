//! Unit tests of the doctor's pure checks (the end-to-end tests are in crates/castellan/tests/doctor).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::chain::{ChainRequest, check_chain, check_presented};
use super::files::{Acl, AclTag, FileFacts, Found, Identity, Stat, check_file, mode_string};
use super::tls::{AfterHandshake, Outcome, TlsObservation, alert_name, check_tls};
use super::token::{JwksDoc, TokenExpectations, check_jwks, check_token};
use super::{Finding, Input, Severity, codes, has_errors};
use crate::pki::Purpose;

const NOW: i64 = 1_800_000_000;

fn codes_of(f: &[Finding]) -> Vec<&'static str> {
    f.iter().map(|f| f.code).collect()
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.use_authority_key_identifier_extension = true;
    p.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 86_400).expect("t");
    p.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + 365 * 86_400).expect("t");
    p
}

fn root(cn: &str) -> Ca {
    let mut params = ca_params(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    let pem = params.self_signed(&key).expect("root").pem();
    Ca { params, key, pem }
}

fn below(parent: &Ca, cn: &str) -> Ca {
    let params = ca_params(cn);
    let key = KeyPair::generate().expect("key");
    let pem = params
        .signed_by(&key, &Issuer::from_params(&parent.params, &parent.key))
        .expect("int")
        .pem();
    Ca { params, key, pem }
}

/// A server leaf for `localhost`; returns (cert PEM, key PEM).
fn leaf(issuer: &Ca, not_after: i64) -> (String, String) {
    leaf_valid(issuer, NOW - 3600, not_after)
}

/// A server leaf for `localhost` valid from `not_before` to `not_after`.
fn leaf_valid(issuer: &Ca, not_before: i64, not_after: i64) -> (String, String) {
    let mut p = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).expect("t");
    p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("t");
    let key = KeyPair::generate().expect("key");
    let pem = p
        .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
        .expect("leaf")
        .pem();
    (pem, key.serialize_pem())
}

fn chain(cert: &str, key: Option<&str>, ca: Option<&str>, host: Option<&str>) -> Vec<Finding> {
    check_chain(&ChainRequest {
        cert: Input::new("chain.pem", cert.as_bytes()),
        key: key.map(|k| Input::new("key.pem", k.as_bytes())),
        ca: ca.map(|c| Input::new("root.pem", c.as_bytes())),
        host,
        purpose: Some(Purpose::Server),
        now: NOW,
    })
}

#[test]
fn a_sound_chain_is_ok_and_the_causes_of_unknown_issuer_are_told_apart() {
    let r = root("Root A");
    let i = below(&r, "Intermediate A");
    let (l, k) = leaf(&i, NOW + 30 * 86_400);
    let full = format!("{l}{}", i.pem);

    let ok = chain(&full, Some(&k), Some(&r.pem), Some("localhost"));
    assert!(!has_errors(&ok), "{ok:#?}");
    assert!(codes_of(&ok).contains(&codes::CHAIN_OK));

    // Leaf alone: the intermediate is missing (not the root).
    let f = chain(&l, None, Some(&r.pem), None);
    assert_eq!(codes_of(&f), vec![codes::MISSING_INTERMEDIATE], "{f:#?}");
    assert!(f[0].message.contains("CN=Intermediate A") && f[0].message.contains("key id"));

    // Leaf alone, with the bundle: still missing for strict clients.
    let bundle = format!("{}{}", r.pem, i.pem);
    let f = chain(&l, None, Some(&bundle), None);
    assert!(
        codes_of(&f).contains(&codes::MISSING_INTERMEDIATE),
        "{f:#?}"
    );
    assert!(f[0].message.contains("trust only the root"));

    // The whole chain against another root: untrusted root (not a missing intermediate).
    let other = root("Root B");
    let f = chain(&full, None, Some(&other.pem), None);
    assert_eq!(codes_of(&f), vec![codes::UNTRUSTED_ROOT], "{f:#?}");

    // A re-created root with the same name: untrusted root, said so.
    let again = root("Root A");
    let f = chain(&full, None, Some(&again.pem), None);
    assert_eq!(codes_of(&f), vec![codes::UNTRUSTED_ROOT], "{f:#?}");
    assert!(
        f[0].message.contains("different CA with that name"),
        "{}",
        f[0].message
    );
}

#[test]
fn a_short_lived_certificate_is_expiring_only_in_the_last_third_of_its_life() {
    let r = root("Root");
    let i = below(&r, "Intermediate");
    let expiring = |not_before: i64, not_after: i64| {
        let (l, _) = leaf_valid(&i, not_before, not_after);
        let f = chain(&format!("{l}{}", i.pem), None, Some(&r.pem), None);
        codes_of(&f).contains(&codes::EXPIRING_SOON)
    };
    // A day-long certificate: 20 h left is early in its life, 4 h left is past its renewal point.
    assert!(!expiring(NOW - 4 * 3600, NOW + 20 * 3600));
    assert!(expiring(NOW - 20 * 3600, NOW + 4 * 3600));
    // A 90-day certificate: a week before its end, as before.
    assert!(!expiring(NOW - 82 * 86_400, NOW + 8 * 86_400));
    assert!(expiring(NOW - 84 * 86_400, NOW + 6 * 86_400));
}

#[test]
fn expiry_host_and_key_are_each_named() {
    let r = root("Root");
    let i = below(&r, "Intermediate");
    let (l, _) = leaf(&i, NOW - 60);
    let f = chain(
        &format!("{l}{}", i.pem),
        None,
        Some(&r.pem),
        Some("example.org"),
    );
    let c = codes_of(&f);
    assert!(
        c.contains(&codes::EXPIRED) && c.contains(&codes::HOSTNAME_MISMATCH),
        "{f:#?}"
    );

    let (l, _) = leaf_valid(&i, NOW - 60 * 86_400, NOW + 3 * 86_400);
    let other = KeyPair::generate().expect("key").serialize_pem();
    let f = chain(&format!("{l}{}", i.pem), Some(&other), Some(&r.pem), None);
    let c = codes_of(&f);
    assert!(
        c.contains(&codes::EXPIRING_SOON) && c.contains(&codes::KEY_MISMATCH),
        "{f:#?}"
    );
}

#[test]
fn garbage_is_a_finding() {
    for bytes in [
        &b""[..],
        b"not pem",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMIIB",
        &[0x30, 0x82, 0x01, 0x00, 0xff, 0xfe][..],
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ] {
        let f = check_chain(&ChainRequest {
            cert: Input::new("x.pem", bytes),
            key: Some(Input::new("k.pem", bytes)),
            ca: Some(Input::new("ca.pem", bytes)),
            host: Some("localhost"),
            purpose: None,
            now: NOW,
        });
        assert!(has_errors(&f), "{bytes:?}");
        assert!(
            f.iter()
                .all(|x| x.code == codes::PEM_INVALID || x.code == codes::KEY_INVALID),
            "{f:#?}"
        );
    }
}

#[test]
fn input_debug_never_shows_the_bytes() {
    let i = Input::new("key.pem", b"-----BEGIN PRIVATE KEY-----secret");
    let d = format!("{i:?}");
    assert!(d.contains("key.pem") && !d.contains("secret"), "{d}");
}

fn st(mode: u32, uid: u32, gid: u32, is_dir: bool) -> Stat {
    Stat {
        mode,
        uid,
        gid,
        is_dir,
        acl: None,
    }
}

/// The `system.posix_acl_access` bytes Linux stores for these (tag, rwx, id) entries.
fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

/// The same bytes for an ACL written as getfacl prints it: `user::rw-,user:1000:r--,group::r--,…`.
fn acl_bytes(text: &str) -> Vec<u8> {
    let entries: Vec<(u16, u16, u32)> = text
        .split(',')
        .map(|e| {
            let [kind, id, perm] = e.split(':').collect::<Vec<_>>()[..] else {
                panic!("entry {e}")
            };
            let named = !id.is_empty();
            let tag = match (kind, named) {
                ("user", false) => 0x01,
                ("user", true) => 0x02,
                ("group", false) => 0x04,
                ("group", true) => 0x08,
                ("mask", false) => 0x10,
                ("other", false) => 0x20,
                _ => panic!("entry {e}"),
            };
            let bits = perm
                .chars()
                .zip([4, 2, 1])
                .map(|(c, b)| if c == '-' { 0 } else { b })
                .sum();
            (tag, bits, id.parse().unwrap_or(u32::MAX))
        })
        .collect();
    acl_xattr(&entries)
}

/// `stat` of a path with an ACL: the group bits of its mode are the ACL's mask, as Linux reports.
fn st_acl(mode: u32, uid: u32, gid: u32, is_dir: bool, acl: &str) -> Stat {
    Stat {
        acl: Some(Acl::from_xattr(&acl_bytes(acl)).expect("valid ACL")),
        ..st(mode, uid, gid, is_dir)
    }
}

fn service() -> Identity {
    Identity {
        uid: 1000,
        gids: vec![1000, 50],
        label: "uid 1000 (mosquitto)".to_owned(),
    }
}

fn facts(parents: Vec<(String, Stat)>, file: Stat, is_key: bool) -> FileFacts {
    FileFacts {
        path: "/etc/mq/certs/key.pem".to_owned(),
        parents,
        found: Found::Exists(file),
        is_key,
    }
}

/// `/` and `/etc`, both 0755 root: the directories above the files the tests judge.
fn etc_dirs() -> Vec<(String, Stat)> {
    vec![
        ("/".to_owned(), st(0o755, 0, 0, true)),
        ("/etc".to_owned(), st(0o755, 0, 0, true)),
    ]
}

#[test]
fn file_permissions_follow_owner_group_other_classes() {
    // Owner 1000, 0600: readable by it.
    let f = check_file(
        &facts(etc_dirs(), st(0o600, 1000, 1000, false), true),
        &service(),
        Some(1000),
    );
    assert_eq!(codes_of(&f), vec![codes::FILE_OK]);
    // Root's 0600 key: not readable by the service.
    let f = check_file(
        &facts(etc_dirs(), st(0o600, 0, 0, false), true),
        &service(),
        Some(1000),
    );
    assert_eq!(codes_of(&f), vec![codes::NOT_READABLE]);
    // Group 50 with 0640: readable through the group, and group-readable keys are a warning.
    let f = check_file(
        &facts(etc_dirs(), st(0o640, 0, 50, false), true),
        &service(),
        None,
    );
    assert_eq!(codes_of(&f), vec![codes::KEY_TOO_OPEN, codes::FILE_OK]);
    assert_eq!(f[0].severity, Severity::Warning);
    // World-readable key: an error.
    let f = check_file(
        &facts(etc_dirs(), st(0o644, 1000, 1000, false), true),
        &service(),
        None,
    );
    assert_eq!(f[0].code, codes::KEY_TOO_OPEN);
    assert_eq!(f[0].severity, Severity::Error);
    // The owner's bits apply to the owner even when "others" could read (0044).
    let f = check_file(
        &facts(etc_dirs(), st(0o044, 1000, 7, false), false),
        &service(),
        None,
    );
    assert_eq!(codes_of(&f), vec![codes::NOT_READABLE]);
    // A parent without x for the service: chmod 644 dir/*.
    let mut d = etc_dirs();
    d.push(("/etc/mq/certs".to_owned(), st(0o644, 0, 0, true)));
    let f = check_file(&facts(d, st(0o644, 0, 0, false), false), &service(), None);
    assert_eq!(codes_of(&f), vec![codes::DIR_NOT_SEARCHABLE]);
    assert!(f[0].fix.contains("chmod o+x /etc/mq/certs"), "{}", f[0].fix);
    // Root reads anything.
    let root = Identity {
        uid: 0,
        gids: vec![0],
        label: "root".to_owned(),
    };
    let f = check_file(
        &facts(etc_dirs(), st(0o000, 5, 5, false), false),
        &root,
        None,
    );
    assert_eq!(codes_of(&f), vec![codes::FILE_OK]);
    // Owned by a third account.
    let f = check_file(
        &facts(etc_dirs(), st(0o644, 1234, 1234, false), false),
        &service(),
        Some(1000),
    );
    assert_eq!(codes_of(&f), vec![codes::WRONG_OWNER, codes::FILE_OK]);
    // Missing.
    let mut m = facts(etc_dirs(), st(0, 0, 0, false), false);
    m.found = Found::Missing("/etc/mq".to_owned());
    let f = check_file(&m, &service(), None);
    assert_eq!(codes_of(&f), vec![codes::FILE_MISSING]);
    assert!(f[0].message.contains("/etc/mq does not exist"));
}

#[test]
fn acl_attribute_is_parsed_strictly() {
    let acl = Acl::from_xattr(&acl_bytes(
        "user::rw-,user:1883:r--,group::r--,mask::r--,other::---",
    ))
    .expect("parse");
    assert_eq!(acl.entries().len(), 5);
    assert_eq!(acl.entries()[1].tag, AclTag::User(1883));
    assert_eq!(acl.entries()[1].perm, 4);
    let refused = |bytes: Vec<u8>, why: &str| {
        let e = Acl::from_xattr(&bytes).expect_err(why);
        assert!(!e.is_empty(), "{why}");
    };
    let ok = acl_bytes("user::rw-,group::r--,other::---");
    let mut v3 = ok.clone();
    v3[0] = 3;
    refused(v3, "version 3");
    refused(ok[..ok.len() - 1].to_vec(), "torn entry");
    refused(acl_xattr(&[]), "no entries");
    refused(vec![2, 0], "short header");
    let (no_id, owner, group, other) = (
        u32::MAX,
        (0x01, 6, u32::MAX),
        (0x04, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    );
    refused(
        acl_xattr(&[owner, (0x40, 4, 1), group, other]),
        "unknown tag",
    );
    refused(
        acl_xattr(&[(0x01, 8, no_id), group, other]),
        "bits beyond rwx",
    );
    refused(
        acl_xattr(&[owner, (0x02, 4, no_id), group, (0x10, 4, no_id), other]),
        "a named user without an id",
    );
    refused(acl_bytes("user::rw-,group::r--"), "no other entry");
    refused(
        acl_bytes("user::rw-,user:7:r--,group::r--,other::---"),
        "named entry without a mask",
    );
    refused(
        acl_bytes("user::rw-,user:7:r--,user:7:---,group::r--,mask::r--,other::---"),
        "a named user twice",
    );
}

#[test]
fn an_acl_decides_over_the_mode_bits() {
    let judge =
        |file: Stat, is_key: bool| check_file(&facts(etc_dirs(), file, is_key), &service(), None);
    // 0644 says anyone reads; the entry for uid 1000 says no (other's r does not apply to a named user).
    let denied = st_acl(
        0o644,
        0,
        0,
        false,
        "user::rw-,user:1000:---,group::r--,mask::r--,other::r--",
    );
    assert_eq!(mode_string(&denied), "-rw-r--r--+");
    let f = judge(denied, false);
    assert_eq!(codes_of(&f), vec![codes::NOT_READABLE]);
    assert!(
        f[0].message.contains("user:1000:---"),
        "names the entry: {}",
        f[0].message
    );
    assert!(
        f[0].fix
            .contains("setfacl -m u:1000:r /etc/mq/certs/key.pem"),
        "{}",
        f[0].fix
    );
    // Root's key, 0600 by its mode; an entry lets uid 1000 read it, which is reported as sharing.
    let f = judge(
        st_acl(
            0o640,
            0,
            0,
            false,
            "user::rw-,user:1000:r--,group::---,mask::r--,other::---",
        ),
        true,
    );
    assert_eq!(codes_of(&f), vec![codes::KEY_TOO_OPEN, codes::FILE_OK]);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(f[0].message.contains("user:1000:r--"), "{}", f[0].message);
    // (what, mode, owner uid, ACL, findings) for files the service does not own.
    let cases: [(&str, u32, u32, &str, &[&str]); 4] = [
        (
            "the mask caps a named entry: rw- under mask --- grants nothing",
            0o600,
            0,
            "user::rw-,user:1000:rw-,group::---,mask::---,other::---",
            &[codes::NOT_READABLE],
        ),
        (
            "a named group of the service's (50) grants read, not being in the owning group (0)",
            0o640,
            0,
            "user::rw-,group::---,group:50:r--,mask::r--,other::---",
            &[codes::FILE_OK],
        ),
        (
            "a member of a matching group is judged by the groups alone: other's r does not apply",
            0o604,
            0,
            "user::rw-,group::---,group:50:---,mask::---,other::r--",
            &[codes::NOT_READABLE],
        ),
        (
            "the owner gets the owner entry, whatever a named entry for its uid says",
            0o600,
            1000,
            "user::rw-,user:1000:---,group::---,mask::---,other::---",
            &[codes::FILE_OK],
        ),
    ];
    for (what, mode, uid, acl, want) in cases {
        let f = judge(st_acl(mode, uid, 0, false, acl), false);
        assert_eq!(codes_of(&f), want, "{what}");
    }
    // A directory whose ACL gives the service r but not x: it cannot be entered.
    let mut d = etc_dirs();
    d.push((
        "/etc/mq/certs".to_owned(),
        st_acl(
            0o750,
            0,
            0,
            true,
            "user::rwx,user:1000:r--,group::r-x,mask::r-x,other::---",
        ),
    ));
    let f = check_file(&facts(d, st(0o644, 0, 0, false), false), &service(), None);
    assert_eq!(codes_of(&f), vec![codes::DIR_NOT_SEARCHABLE]);
    assert!(
        f[0].fix.contains("setfacl -m u:1000:x /etc/mq/certs"),
        "{}",
        f[0].fix
    );
    // Root is not bound by ACLs.
    let root = Identity {
        uid: 0,
        gids: vec![0],
        label: "root".to_owned(),
    };
    let none = st_acl(0o000, 5, 5, false, "user::---,group::---,other::---");
    let f = check_file(&facts(etc_dirs(), none, false), &root, None);
    assert_eq!(codes_of(&f), vec![codes::FILE_OK]);
}

fn obs(outcome: Outcome, sent: bool) -> TlsObservation {
    TlsObservation {
        endpoint: "broker:8883".to_owned(),
        server_name: "broker".to_owned(),
        presented: Vec::new(),
        client_cert_requested: true,
        acceptable_cas: Vec::new(),
        client_cert_sent: sent,
        negotiated: None,
        outcome,
    }
}

#[test]
fn tls_alerts_are_interpreted() {
    assert_eq!(alert_name(48), "unknown ca");
    assert_eq!(alert_name(116), "certificate required");
    let done = |a| Outcome::Completed {
        after: AfterHandshake::Alert(a),
    };
    let f = check_tls(&obs(done(116), false), None, NOW);
    assert_eq!(codes_of(&f), vec![codes::CLIENT_CERT_REQUIRED]);
    let f = check_tls(&obs(done(48), true), None, NOW);
    assert_eq!(codes_of(&f), vec![codes::CLIENT_CERT_REJECTED]);
    assert!(f[0].message.contains("`unknown ca`"));
    // TLS 1.2: the alert ends the handshake itself.
    let f = check_tls(
        &obs(
            Outcome::HandshakeFailed {
                alert: Some(42),
                error: "received fatal alert: BadCertificate".to_owned(),
            },
            true,
        ),
        None,
        NOW,
    );
    assert_eq!(codes_of(&f), vec![codes::CLIENT_CERT_REJECTED]);
    let mut o = obs(
        Outcome::HandshakeFailed {
            alert: Some(70),
            error: "x".to_owned(),
        },
        false,
    );
    o.client_cert_requested = false;
    assert_eq!(
        codes_of(&check_tls(&o, None, NOW)),
        vec![codes::TLS_HANDSHAKE_FAILED]
    );
    let f = check_tls(
        &obs(Outcome::ConnectFailed("refused".to_owned()), false),
        None,
        NOW,
    );
    assert_eq!(codes_of(&f), vec![codes::CONNECT_FAILED]);
    let f = check_tls(
        &obs(
            Outcome::Completed {
                after: AfterHandshake::Quiet,
            },
            true,
        ),
        None,
        NOW,
    );
    assert_eq!(
        codes_of(&f),
        vec![codes::CLIENT_CERT_ACCEPTED, codes::TLS_CONNECTED]
    );
}

#[test]
fn presented_chains_are_judged_like_files() {
    let r = root("Root");
    let i = below(&r, "Intermediate");
    let (l, _) = leaf(&i, NOW + 30 * 86_400);
    let der = |p: &str| pem::parse(p).expect("pem").into_contents();
    let f = check_presented(
        "broker:8883",
        &[der(&l)],
        Some(Input::new("root.pem", r.pem.as_bytes())),
        Some("localhost"),
        Purpose::Server,
        NOW,
    );
    assert_eq!(codes_of(&f), vec![codes::MISSING_INTERMEDIATE]);
    assert!(f[0].fix.contains("certfile chain.pem"));
    let f = check_presented(
        "broker:8883",
        &[der(&l), der(&i.pem)],
        Some(Input::new("root.pem", r.pem.as_bytes())),
        Some("localhost"),
        Purpose::Server,
        NOW,
    );
    assert!(!has_errors(&f), "{f:#?}");
}

fn signed_token(claims: serde_json::Value) -> (String, String) {
    let (key, _) = crate::token::SigningKey::generate(crate::token::Alg::ES256, None).expect("key");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = serde_json::json!({"alg": "ES256", "kid": key.kid(), "typ": "at+jwt"});
    let mut t = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = key.sign(t.as_bytes()).expect("sign");
    t.push('.');
    t.push_str(&b64.encode(sig));
    let jwks = serde_json::json!({"keys": [key.jwk()]}).to_string();
    (t, jwks)
}

#[test]
fn tokens_are_judged_claim_by_claim() {
    let (t, jwks) = signed_token(serde_json::json!({
        "iss": "https://a", "aud": ["x", "y"], "exp": NOW + 60, "nbf": NOW - 1, "iat": NOW - 1
    }));
    let doc = JwksDoc {
        source: "jwks.json".to_owned(),
        body: Ok(jwks.into_bytes()),
    };
    let expect = TokenExpectations {
        issuer: Some("https://a"),
        audience: Some("y"),
        leeway: 0,
    };
    let f = check_token(&t, Some(&doc), &expect, NOW);
    assert_eq!(codes_of(&f), vec![codes::SIGNATURE_VALID], "{f:#?}");
    // Later, with other expectations: every problem gets its own code.
    let expect = TokenExpectations {
        issuer: Some("https://b"),
        audience: Some("z"),
        leeway: 5,
    };
    let f = check_token(&t, Some(&doc), &expect, NOW + 3600);
    assert_eq!(
        codes_of(&f),
        vec![
            codes::SIGNATURE_VALID,
            codes::TOKEN_EXPIRED,
            codes::ISSUER_MISMATCH,
            codes::AUDIENCE_MISMATCH
        ]
    );
    // Unsigned.
    let none = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIn0",
        t.split('.').nth(1).expect("payload")
    );
    let f = check_token(&none, Some(&doc), &TokenExpectations::default(), NOW);
    assert_eq!(codes_of(&f), vec![codes::ALG_NOT_ALLOWED]);
    let f = check_token("garbage", None, &TokenExpectations::default(), NOW);
    assert_eq!(codes_of(&f), vec![codes::TOKEN_MALFORMED]);
}

#[test]
fn jwks_divergence_names_replicas_and_kids() {
    let (t, a) = signed_token(serde_json::json!({"exp": NOW + 60}));
    let (_, b) = signed_token(serde_json::json!({"exp": NOW + 60}));
    let doc = |s: &str, body: &str| JwksDoc {
        source: s.to_owned(),
        body: Ok(body.as_bytes().to_vec()),
    };
    let f = check_jwks(&[doc("http://a", &a), doc("http://a2", &a)], None, NOW);
    assert_eq!(codes_of(&f), vec![codes::JWKS_CONSISTENT]);
    let f = check_jwks(
        &[
            doc("http://a", &a),
            doc("http://b", &b),
            doc("http://c", "nope"),
        ],
        Some(&t),
        NOW,
    );
    let c = codes_of(&f);
    assert!(c.contains(&codes::JWKS_INVALID), "{f:#?}");
    let div = f
        .iter()
        .find(|x| x.code == codes::JWKS_DIVERGENCE)
        .expect("divergence");
    assert!(div.message.contains("http://a") && div.message.contains("http://b"));
    let v = f
        .iter()
        .find(|x| x.code == codes::TOKEN_VERIFIES)
        .expect("verifies");
    assert!(v.message.contains("not against http://b"), "{}", v.message);
    let f = check_jwks(&[doc("http://b", &b)], Some(&t), NOW);
    assert!(codes_of(&f).contains(&codes::UNKNOWN_KID), "{f:#?}");
    let f = check_jwks(
        &[JwksDoc {
            source: "http://down".to_owned(),
            body: Err("connection refused".to_owned()),
        }],
        None,
        NOW,
    );
    assert_eq!(codes_of(&f), vec![codes::JWKS_UNREACHABLE]);
}

/// Issue 21 item 9: what the doctor prints as text cannot drive the terminal.
#[test]
fn terminal_safe_escapes_control_and_bidi_characters_only() {
    use super::terminal_safe;
    assert_eq!(terminal_safe("CN=web.example, é ✓"), "CN=web.example, é ✓");
    assert!(matches!(
        terminal_safe("plain"),
        std::borrow::Cow::Borrowed(_)
    ));
    assert_eq!(
        terminal_safe("evil\u{1b}]0;pwned\u{7}\u{1b}[2J"),
        "evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"
    );
    assert_eq!(
        terminal_safe("a\nb\r\u{7f}\u{9b}"),
        "a\\u{a}b\\u{d}\\u{7f}\\u{9b}"
    );
    assert_eq!(terminal_safe("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
    let all: String = (0u32..0x2100).filter_map(char::from_u32).collect();
    assert!(!terminal_safe(&all).chars().any(|c| c.is_control()));
}
