//! Issue 6: key rotation with a test clock — the full cycle, races, a lease holder that dies, revoke
//! and import.

use std::sync::Arc;

use castellan_core::envelope::MasterKey;
use castellan_core::token::Alg;
use castellan_core::token::Policy;
use castellan_server::init::InitOptions;
use castellan_server::keys;
use castellan_store::Store;

const T0: i64 = 1_800_000_000;

fn policy() -> Policy {
    Policy {
        rotation_period: 1000,
        prepublish: 100,
        retire_after: 300,
    }
}

async fn setup(store: &Store) -> Arc<MasterKey> {
    let (master, _) = MasterKey::generate().expect("mk");
    castellan_server::init::initialize(
        store,
        &master,
        T0,
        &InitOptions {
            alg: Alg::ES256,
            key_type: None,
            root_key_offline: false,
        },
    )
    .await
    .expect("init");
    Arc::new(master)
}

fn states(list: &[keys::KeyInfo]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|k| (k.kid.clone(), k.state.clone()))
        .collect();
    v.sort();
    v
}

async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("r.db"))
        .await
        .expect("store");
    (dir, store)
}

#[tokio::test]
async fn full_cycle_next_current_retired_removed_at_the_configured_times() {
    let (_d, store) = sqlite().await;
    let master = setup(&store).await;
    let p = policy();
    let first = keys::list(&store, T0).await.expect("list");
    assert_eq!(first.len(), 1);
    let k0 = first[0].kid.clone();
    assert_eq!(first[0].state, "current");

    assert_eq!(
        keys::rotation_job(&store, &master, &p, T0 + 899)
            .await
            .expect("job"),
        None,
        "not due yet"
    );
    let k1 = keys::rotation_job(&store, &master, &p, T0 + 900)
        .await
        .expect("job")
        .expect("inserted");
    assert_eq!(
        keys::rotation_job(&store, &master, &p, T0 + 901)
            .await
            .expect("job"),
        None,
        "one next key"
    );
    let l = keys::list(&store, T0 + 950).await.expect("list");
    assert_eq!(
        states(&l),
        states(&[
            keys::KeyInfo {
                kid: k0.clone(),
                alg: String::new(),
                state: "current".into(),
                activate_at: 0,
                retire_at: None
            },
            keys::KeyInfo {
                kid: k1.clone(),
                alg: String::new(),
                state: "next".into(),
                activate_at: 0,
                retire_at: None
            },
        ])
    );
    let next = l.iter().find(|k| k.kid == k1).expect("k1");
    assert_eq!(next.activate_at, T0 + 1000);
    assert_eq!(
        l.iter().find(|k| k.kid == k0).expect("k0").retire_at,
        Some(T0 + 1300)
    );

    let l = keys::list(&store, T0 + 1000).await.expect("list");
    assert_eq!(l.iter().find(|k| k.kid == k1).expect("k1").state, "current");
    assert_eq!(l.iter().find(|k| k.kid == k0).expect("k0").state, "retired");
    // The key ring served by a replica follows the same times.
    let ring = castellan_server::keys::load_key_ring(&store, &master, T0 + 1000, None)
        .await
        .expect("ring");
    assert_eq!(ring.signing_key(T0 + 999).expect("k").key.kid(), k0);
    assert_eq!(ring.signing_key(T0 + 1000).expect("k").key.kid(), k1);

    let l = keys::list(&store, T0 + 1299).await.expect("list");
    assert_eq!(l.len(), 2, "retired key still published until remove_at");
    let l = keys::list(&store, T0 + 1300).await.expect("list");
    assert_eq!(
        l.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        vec![k1.as_str()],
        "removed at remove_at"
    );

    // The second rotation follows from the new key's activation.
    assert_eq!(
        keys::rotation_job(&store, &master, &p, T0 + 1899)
            .await
            .expect("job"),
        None
    );
    assert!(
        keys::rotation_job(&store, &master, &p, T0 + 1900)
            .await
            .expect("job")
            .is_some()
    );
}

async fn racing_jobs_make_exactly_one_next_key(store: Store) {
    let master = setup(&store).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, master) = (store.clone(), master.clone());
        tasks.push(tokio::spawn(async move {
            keys::rotation_job(&store, &master, &policy(), T0 + 950).await
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        inserted += usize::from(t.await.expect("join").expect("job").is_some());
    }
    assert_eq!(inserted, 1);
    let next = keys::list(&store, T0 + 950)
        .await
        .expect("list")
        .into_iter()
        .filter(|k| k.state == "next")
        .count();
    assert_eq!(next, 1);
}

#[tokio::test]
async fn racing_jobs_make_exactly_one_next_key_sqlite() {
    let (_d, store) = sqlite().await;
    racing_jobs_make_exactly_one_next_key(store).await;
}

#[tokio::test]
async fn racing_jobs_make_exactly_one_next_key_postgres() {
    let Some(url) = castellan_store::testing::fresh_postgres_database("racing_rotation").await
    else {
        return;
    };
    racing_jobs_make_exactly_one_next_key(Store::connect(&url).await.expect("pg")).await;
}

#[tokio::test]
async fn a_lease_holder_killed_mid_rotation_is_taken_over_with_one_next_key() {
    let (_d, store) = sqlite().await;
    let master = setup(&store).await;
    // r1 takes the lease and is killed after committing the next key (the job's only write).
    assert!(
        store
            .try_lease("jobs", "r1", T0 + 900, 90)
            .await
            .expect("lease")
    );
    let k1 = keys::rotation_job(&store, &master, &policy(), T0 + 900)
        .await
        .expect("job")
        .expect("inserted");
    // r2 cannot run jobs while r1's lease is valid, takes over once it expires, and does not add a key.
    assert!(
        !store
            .try_lease("jobs", "r2", T0 + 950, 90)
            .await
            .expect("lease")
    );
    assert!(
        store
            .try_lease("jobs", "r2", T0 + 990, 90)
            .await
            .expect("lease")
    );
    assert_eq!(
        keys::rotation_job(&store, &master, &policy(), T0 + 990)
            .await
            .expect("job"),
        None
    );
    let next: Vec<String> = keys::list(&store, T0 + 990)
        .await
        .expect("list")
        .into_iter()
        .filter(|k| k.state == "next")
        .map(|k| k.kid)
        .collect();
    assert_eq!(next, vec![k1]);

    // A holder killed *before* committing leaves nothing behind; the next holder inserts the key.
    let (_d2, store2) = sqlite().await;
    let master2 = setup(&store2).await;
    assert!(
        store2
            .try_lease("jobs", "r1", T0 + 900, 90)
            .await
            .expect("lease")
    );
    assert!(
        store2
            .try_lease("jobs", "r2", T0 + 990, 90)
            .await
            .expect("lease")
    );
    assert!(
        keys::rotation_job(&store2, &master2, &policy(), T0 + 990)
            .await
            .expect("job")
            .is_some()
    );
    let l = keys::list(&store2, T0 + 990).await.expect("list");
    assert_eq!(l.iter().filter(|k| k.state == "next").count(), 1);
    // Prepublish still holds although the job ran late.
    assert!(
        l.iter()
            .find(|k| k.state == "next")
            .expect("next")
            .activate_at
            >= T0 + 990 + 100
    );
}

#[tokio::test]
async fn scheduled_and_emergency_rotation_and_revoke() {
    let (_d, store) = sqlite().await;
    let master = setup(&store).await;
    let p = policy();
    let k0 = keys::list(&store, T0).await.expect("list")[0].kid.clone();
    // The only signing key cannot be revoked.
    assert!(keys::revoke(&store, &k0, T0 + 10).await.is_err());
    let next = keys::schedule_rotation(&store, &master, &p, T0 + 10)
        .await
        .expect("rotate");
    assert_eq!((next.state.as_str(), next.activate_at), ("next", T0 + 110));
    assert!(
        keys::schedule_rotation(&store, &master, &p, T0 + 11)
            .await
            .is_err(),
        "one next key at a time"
    );
    // No replica has a heartbeat here: nobody to wait for.
    let now_key = keys::rotate_now(
        &store,
        &master,
        &p,
        &castellan_core::ManualClock::new(T0 + 20),
        keys::EmergencyOptions::default(),
    )
    .await
    .expect("rotate now");
    assert_eq!(now_key.state, "current");
    assert_eq!(now_key.activate_at, T0 + 20);
    keys::revoke(&store, &k0, T0 + 21)
        .await
        .expect("revoke the leaked key");
    let kids: Vec<String> = keys::list(&store, T0 + 21)
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert!(!kids.contains(&k0), "a revoked key leaves the JWKS at once");
    let ring = castellan_server::keys::load_key_ring(&store, &master, T0 + 21, None)
        .await
        .expect("ring");
    assert!(ring.get(&k0).is_none());
}

#[tokio::test]
async fn an_imported_legacy_rsa_key_keeps_its_old_tokens_verifying() {
    let (dir, store) = sqlite().await;
    let master = setup(&store).await;
    // A PKCS#1 key, as an environment-variable setup would have it.
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl genrsa");
    assert!(out.status.success());
    let pem = String::from_utf8(out.stdout).expect("pem");
    assert!(pem.contains("BEGIN RSA PRIVATE KEY"));
    let _ = dir;
    // A token the legacy service signed before the migration.
    let legacy = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: None,
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256)
        },
        &serde_json::json!({"sub": "old", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("enc"),
    )
    .expect("sign");
    let at = castellan_core::ManualClock::new(T0 + 5);
    let info = keys::import(
        &store,
        &master,
        &pem,
        None,
        keys::ImportAs::Retired,
        &policy(),
        &at,
    )
    .await
    .expect("import");
    assert_eq!(info.state, "retired");
    assert_eq!(info.retire_at, Some(T0 + 5 + 300));
    let ring = castellan_server::keys::load_key_ring(&store, &master, T0 + 5, None)
        .await
        .expect("ring");
    assert_ne!(
        ring.signing_key(T0 + 5).expect("k").key.kid(),
        info.kid,
        "a retired import does not sign"
    );
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(ring.jwks()).expect("jwks");
    let jwk = set.find(&info.kid).expect("published");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.required_spec_claims.clear();
    v.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(
        &legacy,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("dk"),
        &v,
    )
    .expect("the legacy token verifies against Castellan's JWKS");
    // Importing garbage is a clear error.
    assert!(
        keys::import(
            &store,
            &master,
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
            None,
            keys::ImportAs::Retired,
            &policy(),
            &castellan_core::ManualClock::new(T0)
        )
        .await
        .is_err()
    );
}
