//! Issue 21 item 2: a store outage fails fast. With the database unreachable (a proxy in front of
//! PostgreSQL, stopped and started again) a write answers 503 with `Retry-After` within a second,
//! tokens for the clients in memory are still issued, `/v1/sys/status` and `/metrics` say the store is
//! down and why, a store opened during the outage names the cause, and writes work again within two
//! seconds of the database's return, without a restart and without losing an acknowledged write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use castellan_core::envelope::MasterKey;
use castellan_core::token::Alg;
use castellan_core::{Clock, SystemClock};
use castellan_server::http::router;
use castellan_server::init::InitOptions;
use castellan_server::state::AppState;
use castellan_store::{Store, testing};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// A TCP proxy to PostgreSQL on a port of its own: `stop` closes the port and cuts every connection
/// through it (the database as the replica sees it is gone), `start` opens the same port again.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn new(upstream: String) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut p = Proxy {
            port,
            upstream,
            tasks: None,
        };
        p.start().await;
        p
    }

    async fn start(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the proxy port again");
        let upstream = self.upstream.clone();
        self.tasks = Some(tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Aborting the accept task drops the listener and the JoinSet, which aborts every connection.
    async fn stop(&mut self) {
        if let Some(t) = self.tasks.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    auth: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, auth);
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request");
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let json = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, json)
}

async fn token(state: &AppState, id: &str, secret: &str) -> (StatusCode, HeaderMap, Value) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let req = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Body::from("grant_type=client_credentials"))
        .expect("request");
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (
        status,
        headers,
        serde_json::from_slice(&bytes).expect("json"),
    )
}

async fn metrics(state: &AppState) -> String {
    let req = Request::get("/metrics")
        .body(Body::empty())
        .expect("request");
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_fails_fast_names_its_cause_and_heals_without_a_restart() {
    let Some(direct) = testing::fresh_postgres_database("outage").await else {
        return;
    };
    let (_, rest) = direct.split_once("://").expect("a URL");
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split('/').next().expect("host").to_owned();
    assert!(hostport.contains(':'), "{} names its port", testing::ENV);
    let mut proxy = Proxy::new(hostport.clone()).await;
    let proxied = direct.replace(&hostport, &format!("127.0.0.1:{}", proxy.port));

    let store = Store::connect(&direct).await.expect("store");
    let (master, _) = MasterKey::generate().expect("mk");
    let admin = castellan_server::init::initialize(
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
    .expect("init")
    .admin
    .expect("admin");
    let replica = AppState::load(
        Store::connect(&proxied)
            .await
            .expect("store through the proxy"),
        Arc::new(master),
        Arc::new(SystemClock),
        super::feed::settings(Duration::from_secs(2)),
    )
    .await
    .expect("replica");
    let _probe = replica.spawn_store_probe();
    let (s, _, t) = token(&replica, &admin.client_id, &admin.client_secret).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let bearer = format!("Bearer {}", t["access_token"].as_str().expect("token"));
    let mut acknowledged = Vec::new();
    let write = |n: usize| {
        let (replica, bearer) = (&replica, &bearer);
        async move {
            let body = serde_json::json!({"name": format!("w{n}"), "scopes": ["read"]});
            let start = Instant::now();
            let (s, h, b) = call(replica, "POST", "/v1/clients", bearer, Some(body)).await;
            (s, h, b, start.elapsed())
        }
    };
    let (s, _, b, _) = write(0).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    acknowledged.push("w0".to_owned());

    // The outage.
    proxy.stop().await;
    let start = Instant::now();
    while replica.store().outage().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the probe never found the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("outage found after {:?}", start.elapsed());
    let mut slowest = Duration::ZERO;
    for n in 1..=20 {
        let (s, h, b, took) = write(n).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "write {n}: {b}");
        assert_eq!(b["error"]["code"], "store_unavailable", "{b}");
        assert_eq!(
            h.get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        slowest = slowest.max(took);
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest refused write took {slowest:?}"
    );
    eprintln!("slowest refused write: {slowest:?}");
    let (s, _, b) = token(&replica, &admin.client_id, &admin.client_secret).await;
    assert_eq!(s, StatusCode::OK, "tokens still come from memory: {b}");
    let (s, _, status) = call(&replica, "GET", "/v1/sys/status", &bearer, None).await;
    assert_eq!(s, StatusCode::OK, "{status}");
    assert_eq!(status["store_reachable"], false, "{status}");
    let cause = status["store_outage"]["cause"]
        .as_str()
        .expect("cause")
        .to_owned();
    assert!(
        cause.contains(&format!("connection refused at 127.0.0.1:{}", proxy.port)),
        "{cause}"
    );
    assert!(metrics(&replica).await.contains("\ncastellan_store_up 0\n"));
    // A CLI or a new replica started now is told why, not that a pool timed out.
    let e = Store::connect_unmigrated(&proxied, Duration::from_secs(1))
        .await
        .expect_err("unreachable");
    assert!(
        e.to_string().contains("connection refused at 127.0.0.1"),
        "{e}"
    );

    // The database returns: writes work again within two seconds, with no restart.
    proxy.start().await;
    let back = Instant::now();
    let mut n = 100;
    loop {
        let (s, _, b, _) = write(n).await;
        if s == StatusCode::CREATED {
            acknowledged.push(format!("w{n}"));
            break;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "writes still refused after {:?}",
            back.elapsed()
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "writes accepted {:?} after the database returned",
        back.elapsed()
    );
    let (_, _, status) = call(&replica, "GET", "/v1/sys/status", &bearer, None).await;
    assert_eq!(status["store_reachable"], true, "{status}");
    assert!(status["store_outage"].is_null(), "{status}");
    assert!(metrics(&replica).await.contains("\ncastellan_store_up 1\n"));
    // Nothing acknowledged was lost; nothing refused was written.
    let names: Vec<String> = store
        .clients()
        .await
        .expect("clients")
        .into_iter()
        .map(|c| c.name)
        .collect();
    for name in &acknowledged {
        assert!(
            names.contains(name),
            "{name} was acknowledged and is in the store"
        );
    }
    assert!(!names.iter().any(|n| n == "w1" || n == "w20"), "{names:?}");
}
