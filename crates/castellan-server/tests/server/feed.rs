//! Replicas follow the store through its change feed: what one replica (or the CLI on the store)
//! writes, another applies from the feed alone, on SQLite by polling and on PostgreSQL at the
//! notification, deletes included; a replica that missed notifications or the pruned part of the feed
//! catches up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use castellan_core::envelope::MasterKey;
use castellan_core::token::Alg;
use castellan_core::{Clock, SystemClock};
use castellan_server::clients::{NewClient, create_client, delete_client};
use castellan_server::http::router;
use castellan_server::init::InitOptions;
use castellan_server::state::{AppState, Settings};
use castellan_store::{ChangeKind, Store, testing};
use tower::ServiceExt;

pub(crate) fn settings(refresh: Duration) -> Settings {
    Settings {
        issuer: "http://castellan.test".into(),
        jwks_max_age_secs: 300,
        default_ttl_secs: 900,
        max_ttl_secs: 86400,
        replica_id: "r".into(),
        refresh_interval: refresh,
        profiles: Arc::new(castellan_core::pki::Profiles::new(Vec::new()).expect("profiles")),
        crl_validity_secs: 86400,
        crl_url: None,
        rotation: castellan_server::config::Config::default()
            .rotation_policy()
            .expect("policy"),
        signin: Default::default(),
        cert_names: castellan_server::cert_names::CertNamePolicy::default(),
    }
}

/// An initialized store and a master key.
pub(crate) async fn initialized(url: &str) -> (Store, Arc<MasterKey>) {
    let store = Store::connect(url).await.expect("store");
    let (master, _) = MasterKey::generate().expect("mk");
    castellan_server::init::initialize(
        &store,
        &master,
        SystemClock.now(),
        &InitOptions {
            alg: Alg::ES256,
            key_type: None,
            root_key_offline: false,
        },
    )
    .await
    .expect("init");
    (store, Arc::new(master))
}

pub(crate) async fn replica(url: &str, master: &Arc<MasterKey>, refresh: Duration) -> AppState {
    let store = Store::connect(url).await.expect("store");
    AppState::load(
        store,
        master.clone(),
        Arc::new(SystemClock),
        settings(refresh),
    )
    .await
    .expect("replica")
}

async fn new_client(store: &Store, name: &str) -> (String, String) {
    let c = create_client(
        store,
        NewClient {
            name: name.into(),
            scopes: vec!["read".into()],
            audience: None,
            token_ttl_secs: None,
            app: None,
            cert_names: Vec::new(),
        },
        86400,
        SystemClock.now(),
    )
    .await
    .expect("client");
    (c.client.client_id, c.client_secret)
}

/// The status of a client_credentials request to `state`.
async fn token_status(state: &AppState, id: &str, secret: &str) -> StatusCode {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let req = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {auth}"))
        .body(Body::from("grant_type=client_credentials"))
        .expect("request");
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let _ = to_bytes(resp.into_body(), 1 << 20).await;
    status
}

/// Waits until `state` answers `want` for the client, at most `limit`; returns how long it took.
async fn until(
    state: &AppState,
    id: &str,
    secret: &str,
    want: StatusCode,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = token_status(state, id, secret).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the replica still answers {got}, not {want}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The feed numbers every write to clients, keys and CAs, in order and without gaps, naming the row;
/// pruning keeps the newest. On both backends.
async fn feed_numbers_every_write(url: &str) {
    let (store, _master) = initialized(url).await;
    let head = store.change_head().await.expect("head");
    // init wrote a key, the admin client and a CA.
    let all = store.changes_since(0, 100).await.expect("changes");
    assert_eq!(all.len() as i64, head, "{all:?}");
    for (i, c) in all.iter().enumerate() {
        assert_eq!(c.seq, i as i64 + 1, "numbers are contiguous: {all:?}");
    }
    let kinds: Vec<ChangeKind> = all.iter().map(|c| c.kind).collect();
    for k in [ChangeKind::Key, ChangeKind::Client, ChangeKind::Ca] {
        assert!(kinds.contains(&k), "{k:?} recorded: {all:?}");
    }
    let (id, _) = new_client(&store, "billing").await;
    delete_client(&store, &id).await.expect("delete");
    let after = store.changes_since(head, 100).await.expect("changes");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after
            .iter()
            .all(|c| c.kind == ChangeKind::Client && c.id == id)
    );
    assert_eq!(after[0].seq, head + 1);
    assert_eq!(store.change_head().await.expect("head"), head + 2);
    // Pruning everything keeps the newest, so the head is still known.
    store.prune_changes(i64::MAX).await.expect("prune");
    let left = store.changes_since(0, 100).await.expect("changes");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, head + 2);
}

#[tokio::test]
async fn sqlite_feed_numbers_every_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    feed_numbers_every_write(&castellan_store::sqlite_url(&dir.path().join("c.db"))).await;
}

#[tokio::test]
async fn postgres_feed_numbers_every_write() {
    let Some(url) = testing::fresh_postgres_database("postgres_feed_numbers_every_write").await
    else {
        return;
    };
    feed_numbers_every_write(&url).await;
}

/// Two replicas of one SQLite store, the second polling: a client created and then deleted behind its
/// back (through the store, as the CLI does) is usable and then refused within the poll interval;
/// and when the feed was pruned past what it saw, it reloads whole and still gets it right.
#[tokio::test]
async fn sqlite_replica_follows_creates_and_deletes_by_polling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = castellan_store::sqlite_url(&dir.path().join("c.db"));
    let (store, master) = initialized(&url).await;
    let b = replica(&url, &master, Duration::from_millis(200)).await;
    let _refresh = b.spawn_refresh();
    let (id, secret) = new_client(&store, "billing").await;
    until(&b, &id, &secret, StatusCode::OK, Duration::from_secs(5)).await;
    delete_client(&store, &id).await.expect("delete");
    // Deleted: only the feed can take it out of the replica's memory.
    until(
        &b,
        &id,
        &secret,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(2),
    )
    .await;

    // A gap: the replica saw nothing of what was pruned, so it reloads whole.
    let c = replica(&url, &master, Duration::from_secs(3600)).await;
    let (id2, secret2) = new_client(&store, "orders").await;
    assert_eq!(token_status(&c, &id2, &secret2).await, StatusCode::OK);
    delete_client(&store, &id2).await.expect("delete");
    new_client(&store, "later").await;
    store.prune_changes(i64::MAX).await.expect("prune");
    c.refresh().await.expect("refresh");
    assert_eq!(
        token_status(&c, &id2, &secret2).await,
        StatusCode::UNAUTHORIZED,
        "the pruned delete was applied by the whole reload"
    );
}

/// Two replicas on one PostgreSQL, the second polling only every hour: what the first writes reaches
/// the second within a second through the notification, deletes included; with its listening
/// connection killed (missed notifications), it catches up from the feed when it reconnects.
#[tokio::test]
async fn postgres_replica_sees_changes_within_a_second_without_polling() {
    let Some(url) = testing::fresh_postgres_database("postgres_replica_sees_changes").await else {
        return;
    };
    let (_store, master) = initialized(&url).await;
    let a = replica(&url, &master, Duration::from_secs(3600)).await;
    let b = replica(&url, &master, Duration::from_secs(3600)).await;
    let _refresh = b.spawn_refresh();
    // Let the listener connect.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A new client is found by a look-up on a cache miss anyway; a delete can only come through the
    // feed, so deletes are what show the notification at work.
    let (id, secret) = new_client(a.store(), "billing").await;
    assert_eq!(token_status(&a, &id, &secret).await, StatusCode::OK);
    let seen = until(&b, &id, &secret, StatusCode::OK, Duration::from_secs(5)).await;
    eprintln!("create seen by the other replica after {seen:?}");
    a.store().delete_client(&id).await.expect("delete");
    let gone = until(
        &b,
        &id,
        &secret,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(1),
    )
    .await;
    eprintln!("delete seen by the other replica after {gone:?}");

    // Kill the listening connection, then write at once: the notification is lost, and the
    // reconnection reads the feed.
    let (other, other_secret) = new_client(a.store(), "orders").await;
    assert_eq!(
        token_status(&b, &other, &other_secret).await,
        StatusCode::OK
    );
    let killed = testing::query_i64(
        &url,
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%') AS t",
    )
    .await;
    assert_eq!(killed, 1, "the listening connection was found and killed");
    a.store().delete_client(&other).await.expect("delete");
    let caught = until(
        &b,
        &other,
        &other_secret,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(5),
    )
    .await;
    eprintln!("delete after a lost notification seen after {caught:?}");
}

/// Issue 21 item 3: with the store unreachable, a client this replica has cached still gets tokens
/// (they come from memory), and one it has not cached yet is told to retry (503
/// `temporarily_unavailable`), not that its credentials are wrong (401 `invalid_client`).
#[tokio::test]
async fn a_store_outage_is_503_for_an_uncached_client_not_invalid_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = castellan_store::sqlite_url(&dir.path().join("c.db"));
    let (store, master) = initialized(&url).await;
    let (cached, cached_secret) = new_client(&store, "cached").await;
    let b = replica(&url, &master, Duration::from_secs(3600)).await;
    let (fresh, fresh_secret) = new_client(&store, "fresh").await;
    // The outage: the replica's connections to the store are gone.
    b.store().close().await;
    assert_eq!(
        token_status(&b, &cached, &cached_secret).await,
        StatusCode::OK
    );
    assert_eq!(
        token_status(&b, &fresh, &fresh_secret).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
