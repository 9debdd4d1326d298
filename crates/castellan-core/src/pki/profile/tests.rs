//! Tests of the profile rules.

use super::*;

#[test]
fn ipv4_mapped_addresses_are_ipv4() {
    let ip = |s: &str| s.parse::<IpAddr>().expect(s);
    // An IPv6 block wide enough to hold the mapped range must not let a mapped address past the
    // IPv4 patterns.
    let p = Profile {
        allowed_ips: vec!["10.0.0.0/8".into(), "::/0".into()],
        ..mqtt()
    };
    p.validate().expect("valid");
    let err = p
        .check_names(None, &[], &[ip("::ffff:192.168.1.1")], &[])
        .expect_err("192.168.1.1 is outside 10.0.0.0/8");
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
    // Accepted addresses are the 4-byte form, deduplicated with the plain spelling, and a CN in
    // either spelling names them.
    let names = p
        .check_names(
            Some("::ffff:10.1.1.1"),
            &[],
            &[ip("::ffff:10.1.1.1"), ip("10.1.1.1")],
            &[],
        )
        .expect("inside 10.0.0.0/8");
    assert_eq!(names.ips, [ip("10.1.1.1")]);
    // Patterns written in the mapped form are the IPv4 block they stand for.
    let mapped = Profile {
        allowed_ips: vec!["::ffff:10.0.0.0/104".into()],
        ..mqtt()
    };
    mapped.validate().expect("valid");
    let names = mapped
        .check_names(None, &[], &[ip("10.2.3.4")], &[])
        .expect("10.2.3.4 is inside ::ffff:10.0.0.0/104");
    assert_eq!(names.ips, [ip("10.2.3.4")]);
    assert!(
        mapped
            .check_names(None, &[], &[ip("11.0.0.1")], &[])
            .is_err()
    );
}

#[test]
fn uri_stars_stay_within_a_segment() {
    let p = "spiffe://c.local/ns/prod/*";
    assert!(uri_glob(p, "spiffe://c.local/ns/prod/web"));
    // Issue 21 item 7: a one-segment star needs at least one character (this once matched).
    assert!(!uri_glob(p, "spiffe://c.local/ns/prod/"));
    assert!(!uri_glob(p, "spiffe://c.local/ns/prod/sa/web"));
    assert!(!uri_glob(p, "spiffe://c.local/ns/dev/web"));
    assert!(uri_glob(
        "spiffe://c.local/ns/*/sa/web",
        "spiffe://c.local/ns/prod/sa/web"
    ));
    assert!(!uri_glob(
        "spiffe://c.local/ns/*/sa/web",
        "spiffe://c.local/ns/a/b/sa/web"
    ));
    assert!(uri_glob(
        "spiffe://c.local/ns/prod/**",
        "spiffe://c.local/ns/prod/sa/web"
    ));
    assert!(uri_glob(
        "spiffe://c.local/**/web",
        "spiffe://c.local/ns/prod/sa/web"
    ));
    assert!(!uri_glob(
        "spiffe://c.local/**/web",
        "spiffe://c.local/ns/prod/sa/api"
    ));
    assert!(uri_glob("urn:device-*-eu", "urn:device-17-eu"));
    assert!(!uri_glob("urn:device-*-eu", "urn:device-17-us"));
    assert!(uri_glob("exact:x", "exact:x"));
    assert!(!uri_glob("exact:x", "exact:xy"));

    let profile = Profile {
        allowed_uris: vec![p.into()],
        ..mqtt()
    };
    profile
        .check_names(None, &[], &[], &["spiffe://c.local/ns/prod/web".into()])
        .expect("one segment");
    let err = profile
        .check_names(None, &[], &[], &["spiffe://c.local/ns/prod/sa/web".into()])
        .expect_err("two segments");
    assert!(
        matches!(
            err,
            PkiError::SanNotAllowed {
                kind: SanKind::Uri,
                ..
            }
        ),
        "{err:?}"
    );
    // Common-name globs keep crossing `/`.
    assert!(glob("device-*", "device-a/b"));
}

#[test]
fn uris_with_two_readings_are_refused() {
    let p = Profile {
        allowed_uris: vec!["spiffe://cluster.local/ns/prod/**".into()],
        ..mqtt()
    };
    let long = format!("spiffe://cluster.local/ns/prod/{}", "a".repeat(2048));
    for bad in [
        "spiffe://cluster.local/ns/prod/../../ns/kube-system/sa/admin",
        "spiffe://cluster.local/ns/prod/./web",
        "spiffe://cluster.local/ns/prod/..",
        "spiffe://cluster.local/ns/prod/%2e%2e/x",
        "spiffe://cluster.local/ns/prod/web?x=1",
        "spiffe://cluster.local/ns/prod/web#frag",
        "spiffe://admin@cluster.local/ns/prod/web",
        "spiffe://cluster.local/ns/prod/a\\b",
        &long,
    ] {
        let err = p
            .check_names(None, &[], &[], &[bad.to_owned()])
            .expect_err(bad);
        assert!(
            matches!(err, PkiError::InvalidName { kind: "URI", .. }),
            "{bad}: {err:?}"
        );
    }
    for good in [
        "spiffe://cluster.local/ns/prod/sa/web",
        "spiffe://cluster.local/ns/prod/sa/web.api",
        "spiffe://cluster.local/ns/prod/...",
        "spiffe://cluster.local/ns/prod/@team",
    ] {
        p.check_names(None, &[], &[], &[good.to_owned()])
            .expect(good);
    }
    let err = check_uri("spiffe://c.local/x?y=1").expect_err("query");
    assert!(err.to_string().contains("queries"), "{err}");
    check_uri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6").expect("urn");
    check_uri("https://[fd00::1]:8443/x").expect("ip literal");
}

fn mqtt() -> Profile {
    Profile {
        name: "mqtt".into(),
        purpose: Purpose::Server,
        allowed_dns: vec!["*.svc.local".into(), "broker.local".into()],
        allowed_ips: vec!["10.0.0.0/8".into()],
        allowed_uris: vec![],
        allowed_common_names: vec![],
        max_ttl_secs: 7 * 86_400,
        default_ttl_secs: None,
        key_types: vec![KeyType::P256, KeyType::Ed25519],
        default_key_type: KeyType::P256,
        bounds: None,
    }
}

#[test]
fn configured_profile_rules() {
    let p = mqtt();
    p.validate().expect("valid");
    assert_eq!(p.check_ttl(None).expect("default"), 7 * 86_400);
    let err = p.check_ttl(Some(8 * 86_400)).expect_err("too long");
    assert_eq!(
        err.to_string(),
        "requested TTL 8d exceeds the maximum of 7d allowed by profile `mqtt`"
    );
    assert!(matches!(p.check_ttl(Some(0)), Err(PkiError::TtlZero)));
    let err = p.check_key_type(Some(KeyType::Rsa2048)).expect_err("rsa");
    assert_eq!(
        err.to_string(),
        "key type rsa-2048 is not allowed by profile `mqtt` (allowed: p-256, ed25519)"
    );

    let names = p
        .check_names(
            None,
            &["A.svc.local".into(), "a.svc.local".into()],
            &["10.1.1.1".parse().expect("ip")],
            &[],
        )
        .expect("names");
    assert_eq!(names.dns, vec!["a.svc.local".to_owned()]);
    assert_eq!(names.common_name.as_deref(), Some("a.svc.local"));

    let err = p
        .check_names(None, &["evil.example".into()], &[], &[])
        .expect_err("san");
    assert_eq!(
        err.to_string(),
        "DNS name `evil.example` is not allowed by profile `mqtt` (allowed: *.svc.local, broker.local)"
    );
    let err = p
        .check_names(None, &[], &["192.168.1.1".parse().expect("ip")], &[])
        .expect_err("ip");
    assert!(matches!(
        err,
        PkiError::SanNotAllowed {
            kind: SanKind::Ip,
            ..
        }
    ));
    let err = p
        .check_names(None, &[], &[], &["spiffe://x/y".into()])
        .expect_err("uri");
    assert!(err.to_string().contains("(allowed: none)"), "{err}");
    let err = p
        .check_names(Some("admin"), &["a.svc.local".into()], &[], &[])
        .expect_err("cn");
    assert!(matches!(err, PkiError::CommonNameNotAllowed { .. }));
    p.check_names(
        Some("10.1.1.1"),
        &[],
        &["10.1.1.1".parse().expect("ip")],
        &[],
    )
    .expect("cn is ip san");
    assert!(matches!(
        p.check_names(None, &[], &[], &[]),
        Err(PkiError::NoSubjectName)
    ));
}

#[test]
fn invalid_profiles_are_refused() {
    let mut p = mqtt();
    p.allowed_dns = vec!["*.Svc.local".into()];
    assert!(matches!(p.validate(), Err(PkiError::InvalidProfile { .. })));
    let mut p = mqtt();
    p.allowed_ips = vec!["10.0.0.1/8".into()];
    assert!(
        p.validate()
            .expect_err("ip")
            .to_string()
            .contains("did you mean 10.0.0.0/8")
    );
    let mut p = mqtt();
    p.default_key_type = KeyType::P384;
    assert!(p.validate().is_err());
    let mut p = mqtt();
    p.default_ttl_secs = Some(30 * 86_400);
    assert!(p.validate().is_err());
    assert!(Profiles::new([mqtt(), mqtt()]).is_err());
}

#[test]
fn profiles_from_config_and_lookup() {
    let p: Profile = serde_json::from_str(
        r#"{"name":"iot","purpose":"client","allowed_common_names":["device-*"],"key_types":["p-256"]}"#,
    )
    .expect("parse");
    assert_eq!(p.max_ttl_secs, BUILTIN_MAX_TTL);
    assert!(p.allowed_dns.is_empty());
    p.check_names(Some("device-1"), &[], &[], &[])
        .expect("cn only");
    assert!(
        serde_json::from_str::<Profile>(r#"{"name":"x","purpose":"server","alowed_dns":[]}"#)
            .is_err()
    );
    let all = Profiles::new([p]).expect("profiles");
    assert_eq!(all.get("iot").expect("iot").purpose, Purpose::Client);
    assert_eq!(all.get("peer").expect("peer").purpose, Purpose::Peer);
    let err = all.get("nope").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown certificate profile `nope` (known: client, iot, peer, server)"
    );
    for b in Profile::builtins() {
        b.validate().expect("builtin valid");
    }
}

fn client_bounds(patterns: &[&str]) -> NameBounds {
    NameBounds {
        owner: "client `app`".into(),
        patterns: Some(ClientPatterns::parse(patterns).expect("patterns")),
        reserved: vec!["castellan.corp.internal".into(), "10.0.0.5".into()],
    }
}

#[test]
fn a_name_must_pass_the_profile_and_the_clients_patterns() {
    let ip = |s: &str| s.parse::<IpAddr>().expect(s);
    // mqtt allows *.svc.local, broker.local and 10.0.0.0/8; the client only a.svc.local and 10.1.0.0/16.
    let p = mqtt().bounded(client_bounds(&["a.svc.local", "ip:10.1.0.0/16"]));
    p.check_names(None, &["a.svc.local".into()], &[ip("10.1.2.3")], &[])
        .expect("inside both");
    let err = p
        .check_names(None, &["b.svc.local".into()], &[], &[])
        .expect_err("the profile allows it, the client does not");
    assert!(matches!(err, PkiError::NameNotAllowed { .. }), "{err}");
    assert!(err.to_string().contains("client `app`"), "{err}");
    assert!(
        p.check_names(None, &[], &[ip("10.2.0.1")], &[]).is_err(),
        "an IP outside the client's block"
    );
    // The client's patterns never widen the profile: a name the client lists but the profile does
    // not allow is still refused by the profile.
    let wide = mqtt().bounded(client_bounds(&["**.example.com"]));
    let err = wide
        .check_names(None, &["x.example.com".into()], &[], &[])
        .expect_err("outside the profile");
    assert!(matches!(err, PkiError::SanNotAllowed { .. }), "{err}");
    // `*.co.uk` under a client bounded to its own zone.
    let builtin =
        Profile::allow_all("server", Purpose::Server).bounded(client_bounds(&["*.svc.local"]));
    assert!(
        builtin
            .check_names(None, &["*.co.uk".into()], &[], &[])
            .is_err()
    );
    // The common name: one of the SANs, or inside the client's DNS patterns.
    assert!(
        builtin
            .check_names(Some("emqx-broker"), &["m.svc.local".into()], &[], &[])
            .is_err(),
        "a common name outside the client's patterns"
    );
    builtin
        .check_names(Some("m.svc.local"), &["m.svc.local".into()], &[], &[])
        .expect("the CN is a SAN");
}

#[test]
fn castellans_own_names_are_never_issued_even_by_a_wildcard() {
    let ip = |s: &str| s.parse::<IpAddr>().expect(s);
    let unbounded = NameBounds {
        owner: "client `app`".into(),
        patterns: None,
        reserved: vec!["castellan.corp.internal".into(), "10.0.0.5".into()],
    };
    let p = Profile::allow_all("server", Purpose::Server).bounded(unbounded);
    for dns in [
        "castellan.corp.internal",
        "CASTELLAN.corp.internal",
        "*.corp.internal",
    ] {
        let err = p.check_names(None, &[dns.into()], &[], &[]).expect_err(dns);
        assert!(matches!(err, PkiError::ReservedName { .. }), "{dns}: {err}");
    }
    assert!(matches!(
        p.check_names(None, &[], &[ip("::ffff:10.0.0.5")], &[]),
        Err(PkiError::ReservedName { .. })
    ));
    assert!(
        p.check_names(Some("castellan.corp.internal"), &[], &[ip("10.0.0.6")], &[])
            .is_err(),
        "as the common name"
    );
    p.check_names(None, &["app.other.internal".into()], &[ip("10.0.0.6")], &[])
        .expect("other names");
}

#[test]
fn client_patterns_parse_strictly() {
    let p = ClientPatterns::parse(&[
        "*.svc.local",
        "10.0.0.0/8",
        "spiffe://c/ns/a/*",
        "uri:urn:x:*",
    ])
    .expect("parse");
    assert_eq!(
        p.to_strings(),
        vec![
            "dns:*.svc.local",
            "ip:10.0.0.0/8",
            "uri:spiffe://c/ns/a/*",
            "uri:urn:x:*"
        ]
    );
    assert_eq!(
        ClientPatterns::parse(&p.to_strings()).expect("round trip"),
        p
    );
    for bad in ["", "dns:A.B", "ip:10.0.0.1/8", "dns:a.*.b", "x y", "dns:"] {
        assert!(ClientPatterns::parse(&[bad]).is_err(), "{bad:?}");
    }
    assert!(ClientPatterns::parse::<&str>(&[]).is_err());
}

#[test]
fn a_client_gives_only_patterns_its_own_cover() {
    let mine =
        ClientPatterns::parse(&["**.svc.local", "ip:10.1.0.0/16", "uri:spiffe://c/a"]).expect("p");
    for ok in [
        "a.svc.local",
        "*.svc.local",
        "**.b.svc.local",
        "10.1.2.0/24",
        "10.1.2.3",
        "uri:spiffe://c/a",
    ] {
        let other = ClientPatterns::parse(&[ok]).expect(ok);
        assert_eq!(mine.first_uncovered(&other), None, "{ok}");
    }
    for wider in [
        "*",
        "svc.local",
        "**.local",
        "10.0.0.0/8",
        "10.2.0.1",
        "uri:spiffe://c/*",
    ] {
        let other = ClientPatterns::parse(&[wider]).expect(wider);
        assert!(mine.first_uncovered(&other).is_some(), "{wider}");
    }
}
