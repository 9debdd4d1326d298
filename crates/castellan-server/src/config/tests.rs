use super::*;

#[test]
fn example_file_parses_and_matches_defaults() {
    let text = include_str!("../../../../castellan.example.toml");
    let cfg = Config::from_toml("castellan.example.toml", text).expect("example parses");
    let d = Config::default();
    assert_eq!(cfg.listen, d.listen);
    assert_eq!(cfg.tokens.default_ttl, d.tokens.default_ttl);
    assert_eq!(cfg.tokens.jwks_max_age, d.tokens.jwks_max_age);
    assert_eq!(cfg.store.refresh_interval, d.store.refresh_interval);
    assert_eq!(cfg.tls.mode, d.tls.mode);
    assert_eq!(cfg.tls.ttl, d.tls.ttl);
    assert_eq!(cfg.tls.reload_interval, d.tls.reload_interval);
    // Every environment variable is documented in the example.
    for (var, _) in ENV_VARS {
        assert!(
            text.contains(var),
            "{var} is not documented in castellan.example.toml"
        );
    }
}

#[test]
fn bad_fields_are_named_with_their_line() {
    let err = Config::from_toml(
        "c.toml",
        "listen = \"127.0.0.1:1\"\n\n[tokens]\ndefault_tll = \"5m\"\n",
    )
    .expect_err("unknown field");
    let msg = err.to_string();
    assert!(
        msg.contains("default_tll") && msg.contains("line 4"),
        "{msg}"
    );
    let err = Config::from_toml("c.toml", "[tokens]\njwks_max_age = \"soon\"\n")
        .expect_err("bad duration");
    let msg = err.to_string();
    assert!(
        msg.contains("jwks_max_age") && msg.contains("line 2"),
        "{msg}"
    );
    let err = Config::from_toml("c.toml", "public_url = \"ftp://x\"\n").expect_err("bad url");
    assert!(err.to_string().contains("public_url"));
}

#[test]
fn rotation_windows_that_cannot_work_are_refused_with_the_reason() {
    let err = Config::from_toml(
        "c.toml",
        "[tokens]\njwks_max_age = \"1h\"\n[keys]\nprepublish = \"90m\"\n",
    )
    .expect_err("prepublish < 2 x max-age");
    assert!(
        err.to_string().contains("twice tokens.jwks_max_age"),
        "{err}"
    );
    let err = Config::from_toml(
        "c.toml",
        "[tokens]\nmax_ttl = \"48h\"\ndefault_ttl = \"1h\"\n[keys]\nretire_after = \"24h\"\n",
    )
    .expect_err("retire_after too short");
    assert!(err.to_string().contains("retire_after"), "{err}");
    assert!(Config::default().rotation_policy().is_ok());
}

#[test]
fn environment_overrides_file() {
    let mut cfg = Config::from_toml("c.toml", "log_format = \"text\"\n").expect("parse");
    let env: HashMap<String, String> = [
        ("CASTELLAN_LOG_FORMAT".to_owned(), "json".to_owned()),
        ("CASTELLAN_TOKENS_DEFAULT_TTL".to_owned(), "5m".to_owned()),
        (
            "CASTELLAN_DATABASE_URL".to_owned(),
            "postgres://db/x".to_owned(),
        ),
    ]
    .into();
    cfg.apply_env(&env).expect("env");
    assert_eq!(cfg.log_format, LogFormat::Json);
    assert_eq!(cfg.tokens.default_ttl, Duration::from_secs(300));
    assert_eq!(cfg.store_url(), "postgres://db/x");
    let bad: HashMap<String, String> = [("CASTELLAN_LISTEN".to_owned(), "nope".to_owned())].into();
    let err = cfg.apply_env(&bad).expect_err("bad listen");
    assert!(err.to_string().contains("CASTELLAN_LISTEN"));
}

#[test]
fn tls_names_default_to_the_public_host_and_a_specific_listen_address() {
    let source = |toml: &str| Config::from_toml("c.toml", toml).map(|c| c.tls_source());
    let names = |toml: &str| match source(toml) {
        Ok(Ok(Some(TlsSource::SelfIssued {
            dns_names,
            ip_addresses,
            ..
        }))) => (
            dns_names,
            ip_addresses
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>(),
        ),
        other => panic!("{toml}: {other:?}"),
    };
    assert_eq!(
        names("[tls]\nmode = \"self-issued\"\n"),
        (vec!["localhost".to_owned()], vec!["127.0.0.1".to_owned()])
    );
    assert_eq!(
        names(
            "listen = \"0.0.0.0:8270\"\npublic_url = \"https://Auth.Internal:8443\"\n[tls]\nmode = \"self-issued\"\n"
        ),
        (vec!["auth.internal".to_owned()], vec![])
    );
    assert_eq!(
        names(
            "listen = \"[::]:8270\"\npublic_url = \"https://[fd00::1]:8443\"\n[tls]\nmode = \"self-issued\"\n"
        ),
        (vec![], vec!["fd00::1".to_owned()])
    );
    assert_eq!(
        names(
            "listen = \"10.0.0.5:8270\"\n[tls]\nmode = \"self-issued\"\nnames = [\"castellan\", \"10.0.0.5\", \"CASTELLAN\"]\n"
        ),
        (vec!["castellan".to_owned()], vec!["10.0.0.5".to_owned()])
    );
    // Refused: no name to give, a name that is none, a TTL out of bounds, files without both files.
    for (toml, field) in [
        (
            "listen = \"0.0.0.0:1\"\n[tls]\nmode = \"self-issued\"\n",
            "tls.names",
        ),
        (
            "[tls]\nmode = \"self-issued\"\nnames = [\"a b\"]\n",
            "tls.names",
        ),
        (
            "[tls]\nmode = \"self-issued\"\nnames = [\"-a.b\"]\n",
            "tls.names",
        ),
        ("[tls]\nmode = \"self-issued\"\nttl = \"5s\"\n", "tls.ttl"),
        ("[tls]\nmode = \"self-issued\"\nttl = \"91d\"\n", "tls.ttl"),
        ("[tls]\nmode = \"files\"\ncert_file = \"c.pem\"\n", "tls"),
        (
            "public_url = \"http://x\"\n[tls]\nmode = \"files\"\ncert_file = \"c\"\nkey_file = \"k\"\n",
            "public_url",
        ),
        ("[tls]\nmode = \"on\"\n", "mode"),
    ] {
        let err = Config::from_toml("c.toml", toml).expect_err(toml);
        assert!(err.to_string().contains(field), "{toml}: {err}");
    }
    assert!(matches!(source(""), Ok(Ok(None))));
    let files = Config::from_toml(
        "c.toml",
        "[tls]\nmode = \"files\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n",
    )
    .expect("files");
    assert!(files.issuer().starts_with("https://"), "{}", files.issuer());
    assert!(Config::default().issuer().starts_with("http://"));
}

#[test]
fn tls_settings_come_from_the_environment_too() {
    let mut cfg = Config::default();
    let env: HashMap<String, String> = [
        ("CASTELLAN_TLS_MODE", "self-issued"),
        ("CASTELLAN_TLS_NAMES", "castellan, 10.1.2.3,,"),
        ("CASTELLAN_TLS_TTL", "48h"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    cfg.apply_env(&env).expect("env");
    assert_eq!(
        cfg.tls_source().expect("source"),
        Some(TlsSource::SelfIssued {
            dns_names: vec!["castellan".into()],
            ip_addresses: vec!["10.1.2.3".parse().expect("ip")],
            ttl: Duration::from_secs(48 * 3600),
        })
    );
    let bad: HashMap<String, String> = [("CASTELLAN_TLS_MODE".to_owned(), "yes".to_owned())].into();
    let err = Config::default().apply_env(&bad).expect_err("bad mode");
    assert!(err.to_string().contains("CASTELLAN_TLS_MODE"), "{err}");
}
