//! Issue 21, item 1: `keys rotate --now` never makes a replica sign with a key another live replica
//! does not publish yet. Three replicas on one PostgreSQL under token load, verified by PyJWT's
//! refetching `PyJWKClient`, see no failure; a replica whose refresh is paused is named, a dead
//! replica's stale heartbeat is ignored.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use castellan_core::envelope::MasterKey;
use castellan_core::token::Alg;
use castellan_core::{Clock, SystemClock};
use castellan_server::clients::{NewClient, create_client};
use castellan_server::emergency::wall_ms;
use castellan_server::http::router;
use castellan_server::init::InitOptions;
use castellan_server::keys::{self, EmergencyOptions};
use castellan_server::state::AppState;
use castellan_store::{Heartbeat, Store};
use tower::ServiceExt;

use super::feed::settings;

const ISSUER: &str = "http://castellan.test";

async fn initialized(url: &str) -> (Store, Arc<MasterKey>, (String, String)) {
    let store = Store::connect(url).await.expect("store");
    let (master, _) = MasterKey::generate().expect("mk");
    let outcome = castellan_server::init::initialize(
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
    let admin = outcome.admin.expect("admin");
    (
        store,
        Arc::new(master),
        (admin.client_id, admin.client_secret.to_string()),
    )
}

async fn replica(url: &str, master: &Arc<MasterKey>, id: &str, refresh: Duration) -> AppState {
    let mut s = settings(refresh);
    s.replica_id = id.into();
    let store = Store::connect(url).await.expect("store");
    AppState::load(store, master.clone(), Arc::new(SystemClock), s)
        .await
        .expect("replica")
}

async fn client(store: &Store, scopes: &[&str]) -> (String, String) {
    let c = create_client(
        store,
        NewClient {
            name: format!("svc-{}", scopes.join("-").replace(':', "_")),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            audience: None,
            token_ttl_secs: None,
            cert_names: Vec::new(),
            app: None,
        },
        86400,
        SystemClock.now(),
    )
    .await
    .expect("client");
    (c.client.client_id, c.client_secret)
}

/// A token from `state` for the client (client_credentials, over the router).
async fn token(state: &AppState, (id, secret): &(String, String)) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let req = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {auth}"))
        .body(Body::from("grant_type=client_credentials"))
        .expect("request");
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["access_token"].as_str().expect("token").to_owned()
}

/// Serves `state` on a local port; returns its JWKS URL.
async fn serve(state: &AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/.well-known/jwks.json")
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

/// A heartbeat as a replica that died a minute ago left it: it must not hold the rotation up.
async fn dead_replica(store: &Store) {
    store
        .beat(&Heartbeat {
            replica_id: "dead-replica".into(),
            seen_at_ms: wall_ms() - 60_000,
            every_ms: 2000,
            fingerprint: "0".repeat(64),
            kids: "an-old-kid".into(),
        })
        .await
        .expect("beat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_under_load_see_no_failure_across_rotate_now_postgres() {
    let Some(url) = castellan_store::testing::fresh_postgres_database("emergency_load").await
    else {
        return;
    };
    let (store, master, _) = initialized(&url).await;
    let svc = client(&store, &["read"]).await;
    // r1 and r2 follow the store's notifications; r3 polls every 1.5 s without them (a replica whose
    // listener is cut off, or on a slow link): it publishes a new key up to 1.5 s after the others.
    let r1 = replica(&url, &master, "r1", Duration::from_secs(2)).await;
    let r2 = replica(&url, &master, "r2", Duration::from_secs(2)).await;
    let r3 = replica(&url, &master, "r3", Duration::from_millis(1500)).await;
    let _t1 = r1.spawn_refresh();
    let _t2 = r2.spawn_refresh();
    let slow = r3.clone();
    let _t3 = tokio::spawn(async move {
        loop {
            slow.refresh().await.expect("refresh");
            slow.heartbeat().await.expect("beat");
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    });
    dead_replica(&store).await;
    let replicas = [r1.clone(), r2.clone(), r3.clone()];
    let mut urls = Vec::new();
    for r in &replicas {
        urls.push(serve(r).await);
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/server/emergency_verifier.py"
    );
    let mut py = Command::new("python3")
        .arg(script)
        .arg(ISSUER)
        .args(&urls)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (pip install 'pyjwt[crypto]')");
    let mut to_py = py.stdin.take().expect("stdin");
    let mut from_py = BufReader::new(py.stdout.take().expect("stdout"));
    let old_kid = kid_of(&token(&r1, &svc).await);

    // Everything that could go wrong at once: each heartbeat of r1 and r2 is already in, r3's within
    // 1.5 s. The rotation starts after a second of load and the load goes on 3 s after it ends.
    let rotated = Arc::new(AtomicBool::new(false));
    let rotation = {
        let (store, master, rotated) = (store.clone(), master.clone(), rotated.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let started = Instant::now();
            let key = keys::rotate_now(
                &store,
                &master,
                &castellan_server::config::Config::default()
                    .rotation_policy()
                    .expect("policy"),
                &SystemClock,
                EmergencyOptions::default(),
            )
            .await
            .expect("rotate --now");
            rotated.store(true, Ordering::SeqCst);
            (key, started.elapsed())
        })
    };
    let (mut ok_old, mut ok_new, mut failures) = (0u32, 0u32, Vec::new());
    let mut after: Option<Instant> = None;
    let mut i = 0usize;
    while after.is_none_or(|t| t.elapsed() < Duration::from_secs(3)) {
        let t = token(&replicas[i % 3], &svc).await;
        i += 1;
        writeln!(to_py, "{t}").expect("to python");
        let mut line = String::new();
        from_py.read_line(&mut line).expect("from python");
        match line.split_whitespace().next() {
            Some("ok") if kid_of(&t) == old_kid => ok_old += 1,
            Some("ok") => ok_new += 1,
            _ => failures.push(line.trim().to_owned()),
        }
        if after.is_none() && rotated.load(Ordering::SeqCst) {
            after = Some(Instant::now());
        }
        assert!(i < 1_000_000, "the load loop never ended");
    }
    drop(to_py);
    let _ = py.wait();
    let (key, took) = rotation.await.expect("rotation");
    assert_eq!(key.state, "current");
    eprintln!(
        "replicas r1 r2 r3 at {urls:?}; old kid {old_kid}, new kid {}",
        key.kid
    );
    assert!(
        failures.is_empty(),
        "{} of {} verifications failed: {:?}",
        failures.len(),
        i,
        &failures[..failures.len().min(5)]
    );
    assert!(
        ok_old > 50 && ok_new > 50,
        "tokens of both keys were verified ({ok_old} old, {ok_new} new)"
    );
    eprintln!(
        "{i} verifications, 0 failures; rotation waited {took:?}; {ok_old} old-key, {ok_new} new-key tokens"
    );
}

/// A replica whose refresh is paused (it is alive: its heartbeat goes on, with the old ring) holds
/// the rotation up; it is named, with what it serves, and the key stays `next` until it catches up
/// or `--force`. A dead replica's stale heartbeat is ignored. Through `/v1/keys/rotate` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_is_named_and_nothing_signs_until_it_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = castellan_store::sqlite_url(&dir.path().join("e.db"));
    let (store, master, admin) = initialized(&url).await;
    let good = replica(&url, &master, "good-replica", Duration::from_millis(200)).await;
    let _refresh = good.spawn_refresh();
    let stuck = replica(&url, &master, "stuck-replica", Duration::from_millis(200)).await;
    let stuck_fp = stuck.fingerprint();
    let beating = {
        let stuck = stuck.clone();
        tokio::spawn(async move {
            loop {
                stuck.heartbeat().await.expect("beat");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    dead_replica(&store).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let policy = castellan_server::config::Config::default()
        .rotation_policy()
        .expect("policy");
    let old = keys::list(&store, SystemClock.now()).await.expect("list")[0]
        .kid
        .clone();
    let short = EmergencyOptions {
        wait: Duration::from_millis(800),
        force: false,
    };
    let err = keys::rotate_now(&store, &master, &policy, &SystemClock, short)
        .await
        .expect_err("a live replica lags");
    let msg = err.to_string();
    assert!(msg.contains("stuck-replica"), "{msg}");
    assert!(msg.contains(&stuck_fp[..16]), "names what it serves: {msg}");
    assert!(!msg.contains("good-replica"), "{msg}");
    assert!(
        !msg.contains("dead-replica"),
        "a dead replica is ignored: {msg}"
    );
    assert!(msg.contains("--force"), "{msg}");
    let listed = keys::list(&store, SystemClock.now()).await.expect("list");
    let pending = listed
        .iter()
        .find(|k| k.state == "next")
        .expect("the new key stays next")
        .kid
        .clone();
    assert_eq!(
        listed
            .iter()
            .find(|k| k.state == "current")
            .expect("cur")
            .kid,
        old,
        "nothing signs with the new key"
    );

    // Through the API: the same refusal, 409, naming the replica.
    let tok = token(&good, &admin).await;
    let req = Request::post("/v1/keys/rotate")
        .header(header::AUTHORIZATION, format!("Bearer {tok}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"now": true, "wait_secs": 1}"#))
        .expect("request");
    let resp = router(good.clone()).oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("stuck-replica"), "{text}");

    // Once it catches up, running it again activates the same key, without --force.
    stuck.refresh().await.expect("refresh");
    let key = keys::rotate_now(&store, &master, &policy, &SystemClock, short)
        .await
        .expect("every live replica has it now");
    assert_eq!(
        (key.kid.as_str(), key.state.as_str()),
        (pending.as_str(), "current")
    );
    beating.abort();

    // --force: a lagging replica is named in the log, and the key signs anyway.
    let frozen = replica(&url, &master, "frozen-replica", Duration::from_millis(200)).await;
    frozen.heartbeat().await.expect("beat");
    let forced = keys::rotate_now(
        &store,
        &master,
        &policy,
        &SystemClock,
        EmergencyOptions {
            wait: Duration::from_millis(300),
            force: true,
        },
    )
    .await
    .expect("forced");
    assert_eq!(forced.state, "current");
    assert_ne!(forced.kid, pending);
    // Two emergency rotations within one second: the later key signs (from the next second at most).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let signing = keys::list(&store, SystemClock.now()).await.expect("list");
    assert_eq!(
        signing
            .iter()
            .find(|k| k.state == "current")
            .expect("current")
            .kid,
        forced.kid
    );
}

/// `keys import --state current` switches as `rotate --now` does: the imported key is published
/// first and signs only once every live replica publishes it. A lagging replica leaves it `next`
/// (named in the error, nothing signs with it, a second import is refused), and `rotate --now`
/// resumes the wait for that same key; a replica that has it makes it sign, under its legacy kid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_current_key_signs_only_once_every_live_replica_publishes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = castellan_store::sqlite_url(&dir.path().join("i.db"));
    let (store, master, svc) = initialized(&url).await;
    let good = replica(&url, &master, "good-replica", Duration::from_millis(200)).await;
    let _refresh = good.spawn_refresh();
    let stuck = replica(&url, &master, "stuck-replica", Duration::from_millis(200)).await;
    let beating = {
        let stuck = stuck.clone();
        tokio::spawn(async move {
            loop {
                stuck.heartbeat().await.expect("beat");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl genrsa");
    assert!(out.status.success());
    let pem = String::from_utf8(out.stdout).expect("pem");
    let policy = castellan_server::config::Config::default()
        .rotation_policy()
        .expect("policy");
    let old = kid_of(&token(&good, &svc).await);
    let short = EmergencyOptions {
        wait: Duration::from_millis(800),
        force: false,
    };
    let import = |wait| {
        keys::import(
            &store,
            &master,
            &pem,
            Some("auth-2019-rsa"),
            keys::ImportAs::Current(wait),
            &policy,
            &SystemClock,
        )
    };
    let msg = import(short).await.expect_err("a live replica lags").to_string();
    assert!(msg.contains("stuck-replica"), "{msg}");
    assert!(msg.contains("keys rotate --now"), "says how to resume: {msg}");
    let listed = keys::list(&store, SystemClock.now()).await.expect("list");
    let imported = listed
        .iter()
        .find(|k| k.kid == "auth-2019-rsa")
        .expect("published");
    assert_eq!(imported.state, "next", "published, not signing");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        kid_of(&token(&good, &svc).await),
        old,
        "nothing signs with a key a live replica does not publish"
    );
    let again = import(short).await.expect_err("a second import");
    assert!(again.to_string().contains("auth-2019-rsa"), "{again}");

    // Once the laggard has it, `rotate --now` finishes the switch to the imported key.
    stuck.refresh().await.expect("refresh");
    let key = keys::rotate_now(&store, &master, &policy, &SystemClock, short)
        .await
        .expect("every live replica has it now");
    assert_eq!(
        (key.kid.as_str(), key.state.as_str()),
        ("auth-2019-rsa", "current")
    );
    beating.abort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while kid_of(&token(&good, &svc).await) != "auth-2019-rsa" {
        assert!(Instant::now() < deadline, "the imported key never signed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
