//! One conformance suite, run against SQLite and PostgreSQL.

use castellan_store::{
    CaRow, CertBatcher, CertRow, ClientApp, ClientPolicy, ClientRow, CrlRow, DataKeyRow,
    InitBundle, MasterKeyCheck, NamesExpiry, Revocation, SecretRow, SecretSummary, SigningKeyRow,
    Store, StoreError, StoreKind,
};

fn bundle(tag: &str) -> InitBundle {
    InitBundle {
        master_key_check: format!("check-{tag}"),
        data_key: DataKeyRow {
            id: format!("dk-{tag}"),
            wrapped: vec![1, 2, 3, 0, 255],
            created_at: 10,
        },
        signing_key: SigningKeyRow {
            kid: format!("kid-{tag}"),
            alg: "ES256".into(),
            dek_id: format!("dk-{tag}"),
            sealed_key: vec![9; 40],
            activate_at: 100,
            remove_at: None,
            revoked_at: None,
            created_at: 100,
        },
        admin_client: client(&format!("admin-{tag}"), &format!("cid-{tag}")),
        meta: vec![("issuer".into(), "http://x".into())],
        ca: ca(&format!("ca-{tag}"), &format!("dk-{tag}"), 50),
    }
}

fn ca(id: &str, dek: &str, created_at: i64) -> CaRow {
    CaRow {
        id: id.into(),
        ca_cert_pem: format!("PEM {id}"),
        intermediates_pem: String::new(),
        root_pem: "ROOT".into(),
        dek_id: dek.into(),
        sealed_key: vec![4; 20],
        root_sealed_key: None,
        created_at,
    }
}

fn cert(serial: &str, not_after: i64) -> CertRow {
    CertRow {
        serial: serial.into(),
        ca_id: "ca-1".into(),
        profile: "server".into(),
        common_name: Some("emqx".into()),
        sans: "dns:emqx".into(),
        not_before: 0,
        not_after,
        cert_pem: "PEM".into(),
        revoked_at: None,
        revocation_reason: None,
        created_at: 1,
    }
}

fn client(name: &str, id: &str) -> ClientRow {
    ClientRow {
        client_id: id.into(),
        name: name.into(),
        secret_hash: vec![7; 32],
        scopes: "a b".into(),
        audience: Some("aud".into()),
        token_ttl_secs: 900,
        created_at: 5,
        app: ClientApp::default(),
        cert_names: (name == "svc-a").then(|| "dns:*.svc.local ip:10.0.0.0/8".into()),
        policy: None,
    }
}

async fn conformance(store: Store) {
    assert_eq!(
        store.check_master_key("check-1").await.expect("check"),
        MasterKeyCheck::Uninitialized
    );
    assert!(store.initialize(&bundle("1")).await.expect("init"));
    // A second init changes nothing, whatever it carries.
    assert!(!store.initialize(&bundle("2")).await.expect("init again"));
    assert_eq!(
        store.check_master_key("check-1").await.expect("check"),
        MasterKeyCheck::Matches
    );
    assert_eq!(
        store.check_master_key("check-2").await.expect("check"),
        MasterKeyCheck::Mismatch
    );
    assert_eq!(
        store.meta("issuer").await.expect("meta").as_deref(),
        Some("http://x")
    );

    let dks = store.data_keys().await.expect("dks");
    assert_eq!(dks.len(), 1);
    assert_eq!(dks[0].wrapped, vec![1, 2, 3, 0, 255]);

    let keys = store.published_signing_keys(150).await.expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid, "kid-1");
    assert_eq!(keys[0].remove_at, None);

    // Keys past remove_at or revoked are not published.
    let mut k2 = bundle("1").signing_key;
    k2.kid = "kid-removed".into();
    k2.remove_at = Some(120);
    store.add_signing_key(&k2).await.expect("add");
    let mut k3 = k2.clone();
    k3.kid = "kid-revoked".into();
    k3.remove_at = None;
    k3.revoked_at = Some(110);
    store.add_signing_key(&k3).await.expect("add");
    let kids: Vec<String> = store
        .published_signing_keys(110)
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec!["kid-1", "kid-removed"]);
    let kids: Vec<String> = store
        .published_signing_keys(120)
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec!["kid-1"]);
    assert!(matches!(
        store.add_signing_key(&k2).await,
        Err(StoreError::Conflict(_))
    ));

    // Clients: unique names, lookup, delete by id or name.
    store
        .add_client(&client("svc-a", "cid-a"))
        .await
        .expect("add a");
    store
        .add_client(&client("svc-b", "cid-b"))
        .await
        .expect("add b");
    assert!(matches!(
        store.add_client(&client("svc-a", "cid-other")).await,
        Err(StoreError::Conflict(_))
    ));
    let a = store.client("cid-a").await.expect("get").expect("present");
    assert_eq!(a.audience.as_deref(), Some("aud"));
    assert_eq!(a.secret_hash, vec![7; 32]);
    assert_eq!(
        a.cert_names.as_deref(),
        Some("dns:*.svc.local ip:10.0.0.0/8")
    );
    let b = store.client("cid-b").await.expect("get").expect("present");
    assert_eq!(b.cert_names, None, "no patterns given, none read");
    // A token policy: set, read back with the client, replaced, removed; none for an unknown client.
    assert_eq!(b.policy, None);
    let policy = ClientPolicy {
        audiences: "https://api.a https://api.b".into(),
        sign_max_ttl_secs: 600,
        sign_claims: "tenant roles".into(),
        sign_sub: "user:*".into(),
        sign_typ: "JWT".into(),
        exchange_from: "https://api.a".into(),
    };
    assert!(
        store
            .set_client_policy("cid-b", Some(&policy))
            .await
            .expect("set")
    );
    let b = store.client("cid-b").await.expect("get").expect("present");
    assert_eq!(b.policy.as_ref(), Some(&policy));
    let narrower = ClientPolicy {
        audiences: "https://api.b".into(),
        ..policy.clone()
    };
    assert!(
        store
            .set_client_policy("cid-b", Some(&narrower))
            .await
            .expect("replace")
    );
    let b = store.client("cid-b").await.expect("get").expect("present");
    assert_eq!(b.policy.as_ref(), Some(&narrower));
    assert!(
        store
            .set_client_policy("cid-b", None)
            .await
            .expect("remove")
    );
    assert_eq!(
        store
            .client("cid-b")
            .await
            .expect("get")
            .expect("present")
            .policy,
        None
    );
    assert!(
        !store
            .set_client_policy("nope", Some(&policy))
            .await
            .expect("unknown")
    );
    heartbeats(&store).await;
    assert!(store.client("nope").await.expect("get").is_none());
    let names: Vec<String> = store
        .clients()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["admin-1", "svc-a", "svc-b"]);
    assert!(store.delete_client("svc-a").await.expect("delete"));
    assert!(store.delete_client("cid-b").await.expect("delete"));
    assert!(!store.delete_client("cid-b").await.expect("delete again"));
    // A name that is another client's id (an older store allowed it): one call deletes one client,
    // the one with that id.
    store
        .add_client(&client("twin", "cid-t"))
        .await
        .expect("add");
    store
        .add_client(&client("cid-t", "cid-u"))
        .await
        .expect("add");
    assert!(store.delete_client("cid-t").await.expect("delete"));
    assert!(store.client("cid-t").await.expect("get").is_none());
    assert!(
        store.client("cid-u").await.expect("get").is_some(),
        "the other client stays"
    );
    assert!(store.delete_client("cid-t").await.expect("by name now"));
    assert!(store.client("cid-u").await.expect("get").is_none());
    store.ping().await.expect("ping");

    // CAs: the newest issues.
    assert_eq!(
        store.active_ca().await.expect("ca").expect("present").id,
        "ca-1"
    );
    store
        .add_ca(&ca("ca-new", "dk-1", 60))
        .await
        .expect("add ca");
    assert_eq!(
        store.active_ca().await.expect("ca").expect("present").id,
        "ca-new"
    );

    // Certificates: listing by expiry, revocation once, revoked list without expired ones.
    store.add_certificate(&cert("aa", 1000)).await.expect("add");
    store.add_certificate(&cert("bb", 500)).await.expect("add");
    assert!(matches!(
        store.add_certificate(&cert("aa", 1)).await,
        Err(StoreError::Conflict(_))
    ));
    let serials: Vec<String> = store
        .certificates(None)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.serial)
        .collect();
    assert_eq!(serials, vec!["bb", "aa"]);
    let soon: Vec<String> = store
        .certificates(Some(600))
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.serial)
        .collect();
    assert_eq!(soon, vec!["bb"]);
    assert_eq!(
        store
            .revoke_certificate("aa", 700, Some("keyCompromise"))
            .await
            .expect("revoke"),
        Revocation::Revoked
    );
    assert_eq!(
        store
            .revoke_certificate("aa", 800, None)
            .await
            .expect("revoke"),
        Revocation::AlreadyRevoked
    );
    assert_eq!(
        store
            .revoke_certificate("zz", 800, None)
            .await
            .expect("revoke"),
        Revocation::NotFound
    );
    store
        .revoke_certificate("bb", 450, None)
        .await
        .expect("revoke");
    let aa = store
        .certificate("aa")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (aa.revoked_at, aa.revocation_reason.as_deref()),
        (Some(700), Some("keyCompromise"))
    );
    let revoked: Vec<String> = store
        .revoked_certificates("ca-1", 600)
        .await
        .expect("revoked")
        .into_iter()
        .map(|c| c.serial)
        .collect();
    assert_eq!(revoked, vec!["aa"], "expired certificates leave the CRL");

    // Several certificates in one statement: all or none.
    let many: Vec<CertRow> = (0..70)
        .map(|i| cert(&format!("m{i:03}"), 5000 + i))
        .collect();
    store.add_certificates(&many).await.expect("add many");
    for row in [&many[0], &many[35], &many[69]] {
        assert_eq!(
            store.certificate(&row.serial).await.expect("get").as_ref(),
            Some(row),
            "every column of every row is stored"
        );
    }
    let clash = vec![cert("n1", 9000), cert("m010", 9000), cert("n2", 9000)];
    assert!(matches!(
        store.add_certificates(&clash).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store.certificate("n1").await.expect("get").is_none(),
        "none of a failed batch"
    );
    assert!(store.add_certificates(&Vec::<CertRow>::new()).await.is_ok());

    // Group commit: concurrent adds are all committed; a repeated serial fails alone.
    let batcher = CertBatcher::spawn(store.clone());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let b = batcher.clone();
        let serial = if i == 100 {
            "m001".to_owned()
        } else {
            format!("g{i:03}")
        };
        tasks.push(tokio::spawn(async move {
            (i, b.add(cert(&serial, 7000)).await)
        }));
    }
    for t in tasks {
        let (i, result) = t.await.expect("task");
        if i == 100 {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        } else {
            result.unwrap_or_else(|e| panic!("row {i}: {e}"));
            assert!(
                store
                    .certificate(&format!("g{i:03}"))
                    .await
                    .expect("get")
                    .is_some()
            );
        }
    }
    let listed = store.certificates(None).await.expect("list");
    assert_eq!(
        listed.len(),
        2 + 70 + 199,
        "aa, bb, m000..m069, 199 of g000..g199"
    );
    newest_expiry(&store).await;

    // CRLs: numbers are claimed once; the newest is served.
    let crl = |n: i64| CrlRow {
        ca_id: "ca-1".into(),
        crl_number: n,
        der: vec![n as u8],
        pem: format!("crl {n}"),
        this_update: n,
        next_update: n + 10,
    };
    assert!(store.latest_crl("ca-1").await.expect("crl").is_none());
    assert!(store.add_crl(&crl(1)).await.expect("add"));
    assert!(!store.add_crl(&crl(1)).await.expect("add again"));
    assert!(store.add_crl(&crl(2)).await.expect("add"));
    assert_eq!(
        store
            .latest_crl("ca-1")
            .await
            .expect("crl")
            .expect("present")
            .crl_number,
        2
    );

    secrets(&store).await;
    rewrap(&store).await;

    // Leases: one holder at a time until expiry; the holder renews.
    assert!(store.try_lease("job", "r1", 100, 30).await.expect("lease"));
    assert!(!store.try_lease("job", "r2", 110, 30).await.expect("lease"));
    assert!(store.try_lease("job", "r1", 120, 30).await.expect("renew"));
    assert!(!store.try_lease("job", "r2", 149, 30).await.expect("lease"));
    assert!(
        store
            .try_lease("job", "r2", 150, 30)
            .await
            .expect("expired lease is taken")
    );
}

/// The newest expiry per set of names (profile `ops`, apart from the rows above): revoked certificates
/// do not count, and certificates for other names are a group of their own.
async fn heartbeats(store: &Store) {
    let hb = |id: &str, at: i64, fp: &str| castellan_store::Heartbeat {
        replica_id: id.into(),
        seen_at_ms: at,
        every_ms: 2000,
        fingerprint: fp.into(),
        kids: "k1 k2".into(),
    };
    store.beat(&hb("r1", 1000, "f1")).await.expect("beat");
    store.beat(&hb("r2", 5000, "f1")).await.expect("beat");
    store
        .beat(&hb("r1", 6000, "f2"))
        .await
        .expect("a later beat replaces");
    assert_eq!(
        store.heartbeats_since(5500, 100).await.expect("since"),
        vec![hb("r1", 6000, "f2")]
    );
    assert_eq!(store.heartbeats_since(0, 100).await.expect("all").len(), 2);
    assert_eq!(store.prune_heartbeats(5500).await.expect("prune"), 1);
    assert_eq!(store.heartbeats_since(0, 100).await.expect("all").len(), 1);
    store.prune_heartbeats(i64::MAX).await.expect("prune");
}

async fn newest_expiry(store: &Store) {
    let ops = |serial: &str, not_after: i64| CertRow {
        profile: "ops".into(),
        ..cert(serial, not_after)
    };
    let mut revoked = ops("o3", 5_000);
    revoked.revoked_at = Some(10);
    let other = CertRow {
        common_name: None,
        sans: "dns:other".into(),
        ..ops("o4", 700)
    };
    for c in [ops("o1", 300), ops("o2", 900), revoked, other] {
        store.add_certificate(&c).await.expect("add");
    }
    let mut newest: Vec<NamesExpiry> = store
        .newest_expiry_by_names()
        .await
        .expect("newest")
        .into_iter()
        .filter(|n| n.profile == "ops")
        .collect();
    newest.sort_by_key(|n| n.newest_not_after);
    assert_eq!(
        newest,
        vec![
            NamesExpiry {
                profile: "ops".into(),
                common_name: None,
                sans: "dns:other".into(),
                newest_not_after: 700,
            },
            NamesExpiry {
                profile: "ops".into(),
                common_name: Some("emqx".into()),
                sans: "dns:emqx".into(),
                newest_not_after: 900,
            },
        ]
    );
}

fn secret(name: &str, version: i64, value: &[u8]) -> SecretRow {
    SecretRow {
        name: name.into(),
        version,
        dek_id: "dk-1".into(),
        sealed_value: value.to_vec(),
        created_at: 1000 + version,
    }
}

/// Versions, the newest by default, a taken version refused, pruning to `keep`, listing without values,
/// deletion of every version; a value must belong to an existing data key.
async fn secrets(store: &Store) {
    assert_eq!(
        store.latest_secret_version("app/db").await.expect("latest"),
        None
    );
    assert_eq!(store.secret("app/db", None).await.expect("get"), None);
    for v in 1..=4 {
        store
            .add_secret_version(&secret("app/db", v, &[v as u8; 3]), 3)
            .await
            .expect("add");
    }
    store
        .add_secret_version(&secret("mqtt/pw", 1, b"\x00\xffbytes"), 3)
        .await
        .expect("add other");
    assert_eq!(
        store.latest_secret_version("app/db").await.expect("latest"),
        Some(4)
    );
    let newest = store
        .secret("app/db", None)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (newest.version, newest.sealed_value.clone()),
        (4, vec![4u8; 3])
    );
    assert_eq!(newest.created_at, 1004);
    assert_eq!(
        store
            .secret("app/db", Some(2))
            .await
            .expect("v2")
            .expect("kept")
            .sealed_value,
        vec![2u8; 3]
    );
    // keep = 3: version 1 was destroyed when version 4 was written.
    assert_eq!(store.secret("app/db", Some(1)).await.expect("v1"), None);
    assert_eq!(
        store
            .secret("mqtt/pw", None)
            .await
            .expect("bytes")
            .expect("present")
            .sealed_value,
        b"\x00\xffbytes".to_vec()
    );
    // A concurrent writer that took version 4 first: conflict, nothing replaced.
    let err = store
        .add_secret_version(&secret("app/db", 4, b"late"), 3)
        .await
        .expect_err("taken version");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store
            .secret("app/db", Some(4))
            .await
            .expect("v4")
            .expect("kept")
            .sealed_value,
        vec![4u8; 3]
    );
    // A value sealed by a data key the store does not hold is refused.
    let mut orphan = secret("x", 1, b"v");
    orphan.dek_id = "dk-missing".into();
    assert!(store.add_secret_version(&orphan, 3).await.is_err());

    assert_eq!(
        store.secrets().await.expect("list"),
        vec![
            SecretSummary {
                name: "app/db".into(),
                version: 4,
                versions: 3,
                updated_at: 1004
            },
            SecretSummary {
                name: "mqtt/pw".into(),
                version: 1,
                versions: 1,
                updated_at: 1001
            },
        ]
    );
    // Debug never shows the sealed bytes.
    assert!(!format!("{newest:?}").contains("sealed_value"));

    assert!(store.delete_secret("app/db").await.expect("delete"));
    assert!(!store.delete_secret("app/db").await.expect("delete again"));
    assert_eq!(store.secret("app/db", Some(3)).await.expect("gone"), None);
    assert_eq!(
        store.latest_secret_version("app/db").await.expect("latest"),
        None
    );
    // A name written again after deletion goes on above every version it ever had: a version number
    // never names two values, and a writer that read the deleted secret cannot take a newer one's.
    assert_eq!(
        store
            .highest_secret_version("app/db")
            .await
            .expect("highest"),
        4
    );
    assert_eq!(
        store
            .highest_secret_version("never")
            .await
            .expect("highest"),
        0
    );
    let err = store
        .add_secret_version(&secret("app/db", 1, b"again"), 3)
        .await
        .expect_err("version 1 was given before");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    store
        .add_secret_version(&secret("app/db", 5, b"again"), 3)
        .await
        .expect("re-add above");
    assert_eq!(
        store.latest_secret_version("app/db").await.expect("latest"),
        Some(5)
    );
}

/// A master key change re-wraps every data key and swaps the check value at once, or changes nothing.
async fn rewrap(store: &Store) {
    let mut rows = store.data_keys().await.expect("dks");
    for r in &mut rows {
        r.wrapped = vec![7, 7, 7];
    }
    // Not the store's check value: nothing changes.
    let err = store
        .rewrap_data_keys("check-2", "check-new", &rows)
        .await
        .expect_err("stale check value");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // Not every data key: nothing changes.
    let err = store
        .rewrap_data_keys("check-1", "check-new", &rows[..0])
        .await
        .expect_err("missing a data key");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store.check_master_key("check-1").await.expect("check"),
        MasterKeyCheck::Matches,
        "a refused change left the check value"
    );
    assert_eq!(
        store.data_keys().await.expect("dks")[0].wrapped,
        vec![1, 2, 3, 0, 255]
    );

    store
        .rewrap_data_keys("check-1", "check-new", &rows)
        .await
        .expect("rewrap");
    assert_eq!(
        store.check_master_key("check-new").await.expect("check"),
        MasterKeyCheck::Matches
    );
    assert_eq!(
        store.data_keys().await.expect("dks")[0].wrapped,
        vec![7, 7, 7]
    );
    // A process still holding the old master key cannot add a data key under it.
    let late = DataKeyRow {
        id: "dk-late".into(),
        wrapped: vec![9],
        created_at: 50,
    };
    let err = store
        .add_data_key(&late, "check-1")
        .await
        .expect_err("old master key");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.data_keys().await.expect("dks").len(), rows.len());
    // And back, so the rest of the suite (and the reopening test) sees the original key.
    let mut back = rows.clone();
    back[0].wrapped = vec![1, 2, 3, 0, 255];
    store
        .rewrap_data_keys("check-new", "check-1", &back)
        .await
        .expect("rewrap back");
    store
        .add_data_key(&late, "check-1")
        .await
        .expect("the current master key adds");
    assert_eq!(store.data_keys().await.expect("dks").len(), rows.len() + 1);
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("c.db"))
        .await
        .expect("open");
    assert_eq!(store.kind(), StoreKind::Sqlite);
    conformance(store.clone()).await;
    store.close().await;
    // Reopening applies no migration twice and keeps the data.
    let again = Store::open_sqlite(&dir.path().join("c.db"))
        .await
        .expect("reopen");
    assert_eq!(
        again.check_master_key("check-1").await.expect("check"),
        MasterKeyCheck::Matches
    );
}

#[tokio::test]
async fn postgres_conformance() {
    let Some(url) = castellan_store::testing::fresh_postgres_database("postgres_conformance").await
    else {
        return;
    };
    let store = Store::connect(&url).await.expect("connect");
    assert_eq!(store.kind(), StoreKind::Postgres);
    conformance(store.clone()).await;
    let again = Store::connect(&url).await.expect("reconnect");
    assert_eq!(
        again.check_master_key("check-1").await.expect("check"),
        MasterKeyCheck::Matches
    );
}

#[tokio::test]
async fn concurrent_initialize_has_one_winner_on_both_backends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut urls = vec![format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("race.db").display()
    )];
    if let Some(pg) =
        castellan_store::testing::fresh_postgres_database("concurrent_initialize").await
    {
        urls.push(pg);
    }
    for url in urls {
        let mut tasks = Vec::new();
        for i in 0..5 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let store = Store::connect(&url).await.expect("connect");
                store
                    .initialize(&bundle(&i.to_string()))
                    .await
                    .expect("initialize")
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.expect("join"));
        }
        assert_eq!(winners, 1, "{url}");
        let store = Store::connect(&url).await.expect("connect");
        assert_eq!(
            store
                .published_signing_keys(1000)
                .await
                .expect("keys")
                .len(),
            1
        );
        assert_eq!(store.data_keys().await.expect("dks").len(), 1);
    }
}

/// The certificate writer takes SQLite's checkpoints out of its commits; they must still let the
/// write-ahead log start over, or it would grow with every certificate ever issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_certificate_writer_keeps_the_log_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.db");
    let store = Store::open_sqlite(&path).await.expect("open");
    assert!(store.initialize(&bundle("1")).await.expect("init"));
    let batcher = CertBatcher::spawn(store.clone());
    let pem = "x".repeat(2048);
    const ROWS: usize = 16_384;
    for wave in 0..ROWS / 256 {
        let mut tasks = Vec::new();
        for i in 0..256 {
            let (b, mut row) = (batcher.clone(), cert(&format!("w{wave:02}-{i:03}"), 9000));
            row.cert_pem = pem.clone();
            tasks.push(tokio::spawn(async move { b.add(row).await }));
        }
        for t in tasks {
            t.await.expect("task").expect("committed");
        }
    }
    assert_eq!(store.certificates(None).await.expect("list").len(), ROWS);
    // With checkpoints that never complete, the log holds every row: ≈ 75 MiB here; bounded, ≈ 4 MiB
    // (the limit leaves room for a slow fsync on a busy machine, during which the writer goes on).
    let wal = std::fs::metadata(dir.path().join("w.db-wal"))
        .expect("the log exists while the store is open")
        .len();
    assert!(
        wal < 32 << 20,
        "write-ahead log of {wal} bytes after {ROWS} rows"
    );
    store.close().await;
}

/// The writer keeps one connection; when the database drops it (a restart, a failover, an idle
/// timeout), the next certificate must still be recorded, not answered with an error.
#[tokio::test]
async fn postgres_certificate_writer_survives_its_connection_being_killed() {
    use sqlx::Connection;
    let Some(url) = castellan_store::testing::fresh_postgres_database(
        "postgres_certificate_writer_survives_its_connection_being_killed",
    )
    .await
    else {
        return;
    };
    let store = Store::connect(&url).await.expect("connect");
    assert!(store.initialize(&bundle("1")).await.expect("init"));
    let batcher = CertBatcher::spawn(store.clone());
    batcher.add(cert("k1", 9000)).await.expect("first row");
    let mut admin = sqlx::postgres::PgConnection::connect(&url)
        .await
        .expect("admin connection");
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate the store's sessions");
    assert!(!killed.is_empty(), "the writer's session was there to kill");
    // pg_terminate_backend only signals: wait until the sessions are gone.
    for _ in 0..100 {
        let (left,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut admin)
        .await
        .expect("count sessions");
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    batcher
        .add(cert("k2", 9000))
        .await
        .expect("recorded on a new connection");
    assert!(store.certificate("k2").await.expect("get").is_some());
    let _ = admin.close().await;
}

/// An upgrade starts several processes on one SQLite file with a migration pending (here: the record
/// of the last one removed; every migration is idempotent): each applies or skips it, none fails with
/// "database is locked".
#[tokio::test]
async fn sqlite_processes_started_together_all_open_a_store_with_a_pending_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.db");
    for round in 0..5 {
        let store = Store::open_sqlite(&path).await.expect("open");
        sqlx_pending_last_migration(&path).await;
        store.close().await;
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { Store::open_sqlite(&path).await.map(|_| ()) })
            })
            .collect();
        for open in opens {
            let r = open.await.expect("join");
            assert!(r.is_ok(), "round {round}: {:?}", r.err());
        }
    }
}

async fn sqlx_pending_last_migration(path: &std::path::Path) {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             c.execute('DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)'); c.commit()",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A data directory whose name holds `%`, `?`, `#` or `%20` opens exactly that file, not a decoded or
/// truncated name.
#[tokio::test]
async fn sqlite_opens_the_file_named_even_with_url_characters_in_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let odd = dir.path().join("a%20b?c#d");
    std::fs::create_dir(&odd).expect("dir");
    let file = odd.join("castellan.db");
    let store = Store::open_sqlite(&file).await.expect("open");
    store.ping().await.expect("ping");
    store.close().await;
    assert!(file.is_file(), "the database is at {}", file.display());
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        entries,
        vec![std::ffi::OsString::from("a%20b?c#d")],
        "nothing else was created"
    );
}

/// Issue 21 item 8: names, scopes, secret hashes and the certificate inventory are not for other
/// local users. A new SQLite store's directory is 0700 and its files (the database and its write-ahead
/// log) 0600 whatever the umask; an existing database left 0644 by an older version is narrowed.
#[tokio::test]
async fn sqlite_store_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = data.join("castellan.db");
    let store = Store::open_sqlite(&file).await.expect("open");
    store.add_client(&client("svc", "c1")).await.expect("write");
    assert_eq!(mode(&data), 0o700, "the directory it created");
    assert_eq!(mode(&file), 0o600, "the database");
    let wal = data.join("castellan.db-wal");
    assert!(wal.exists(), "WAL mode keeps a log");
    assert_eq!(mode(&wal), 0o600, "the write-ahead log");
    store.close().await;

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = Store::open_sqlite(&file).await.expect("reopen");
    assert_eq!(mode(&file), 0o600, "an existing 0644 database is narrowed");
    assert!(
        store.client("c1").await.expect("read").is_some(),
        "and still holds its rows"
    );
    store.close().await;
}
