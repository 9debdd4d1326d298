//! Issue 22: the audit trail. Each /v1 call is exactly one event with its actor, object and result;
//! the chain verifies and names the event that was edited, removed or moved; no secret reaches a sink;
//! a failing sink refuses secret reads under fail-closed and not under best-effort; three replicas on
//! one PostgreSQL write their own chains at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use castellan_core::Clock;
use castellan_core::audit::{AuditEvent, BreakKind};
use castellan_core::envelope::MasterKey;
use castellan_core::token::Alg;
use castellan_server::audit::AuditSettings;
use castellan_server::audit::verify::verify_store;
use castellan_server::clients::NewClient;
use castellan_server::http::router;
use castellan_server::init::InitOptions;
use castellan_server::state::{AppState, Settings};
use castellan_store::{AuditFilter, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

const ISS: &str = "http://castellan.test";

struct Fix {
    _dir: tempfile::TempDir,
    url: String,
    store: Store,
    master: Arc<MasterKey>,
    clock: Arc<castellan_core::ManualClock>,
    /// An admin client and a client with `secrets:read` for `app/` only.
    admin: (String, String),
    reader: (String, String),
}

async fn fix(pg: Option<String>) -> Fix {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = pg.unwrap_or_else(|| castellan_store::sqlite_url(&dir.path().join("t.db")));
    let store = Store::connect(&url).await.expect("store");
    let (master, _) = MasterKey::generate().expect("mk");
    let clock = Arc::new(castellan_core::ManualClock::new(1_800_000_000));
    let out = castellan_server::init::initialize(
        &store,
        &master,
        clock.now(),
        &InitOptions {
            alg: Alg::ES256,
            key_type: None,
            root_key_offline: false,
        },
    )
    .await
    .expect("init");
    let admin = out.admin.expect("created");
    let reader = castellan_server::clients::create_client(
        &store,
        NewClient {
            name: "reader".into(),
            scopes: vec!["secrets:read:app".into()],
            audience: None,
            token_ttl_secs: None,
            app: None,
            cert_names: Vec::new(),
        },
        86400,
        clock.now(),
    )
    .await
    .expect("client");
    Fix {
        _dir: dir,
        url,
        store,
        master: Arc::new(master),
        clock,
        admin: (admin.client_id, admin.client_secret.to_string()),
        reader: (reader.client.client_id, reader.client_secret),
    }
}

fn settings(replica: &str) -> Settings {
    Settings {
        issuer: ISS.into(),
        jwks_max_age_secs: 300,
        default_ttl_secs: 900,
        max_ttl_secs: 86400,
        replica_id: replica.into(),
        refresh_interval: Duration::from_secs(60),
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

impl Fix {
    async fn state(&self, replica: &str, audit: AuditSettings) -> AppState {
        AppState::load_with_audit(
            self.store.clone(),
            self.master.clone(),
            self.clock.clone(),
            settings(replica),
            audit,
        )
        .await
        .expect("state")
    }
}

async fn send(state: &AppState, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let body = to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body")
        .to_vec();
    (status, body)
}

async fn token(state: &AppState, (id, secret): &(String, String)) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let (status, body) = send(
        state,
        Request::post("/oauth2/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .body(Body::from("grant_type=client_credentials"))
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<Value>(&body).expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

fn req(method: &str, uri: &str, bearer: &str, body: Option<Value>) -> Request<Body> {
    let b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"));
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request")
}

async fn events(store: &Store, replica: &str) -> Vec<AuditEvent> {
    store
        .audit_events(&AuditFilter {
            replica: Some(replica.into()),
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("events")
}

/// The /v1 events of `replica`, by action.
fn v1(events: &[AuditEvent]) -> Vec<&AuditEvent> {
    events
        .iter()
        .filter(|e| e.action.contains(" /v1/"))
        .collect()
}

/// Secret writes and reads, a refusal for a missing scope, a bad token, a certificate: each one event.
async fn one_event_per_call(f: &Fix, state: &AppState, replica: &str) -> Vec<String> {
    let admin = token(state, &f.admin).await;
    let reader = token(state, &f.reader).await;
    let value = "s3cr3t-value-never-logged-4711";
    let (s, _) = send(
        state,
        req(
            "PUT",
            "/v1/secrets/app/db",
            &admin,
            Some(json!({"value": value})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = send(state, req("GET", "/v1/secrets/app/db", &reader, None)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains(value));
    let (s, _) = send(state, req("GET", "/v1/secrets/other/x", &reader, None)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = send(state, req("GET", "/v1/sys/status", "not-a-token", None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = send(
        state,
        req(
            "POST",
            "/v1/pki/issue/server",
            &admin,
            Some(json!({"dns_names": ["broker.example"]})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let issued: Value = serde_json::from_slice(&body).expect("json");
    state.audit().flush().await;
    let all = events(&f.store, replica).await;
    let v1 = v1(&all);
    assert_eq!(v1.len(), 5, "{v1:#?}");
    let (a, r) = (
        format!("client:{}", f.admin.0),
        format!("client:{}", f.reader.0),
    );
    assert_eq!(
        (v1[0].action.as_str(), v1[0].actor.as_str()),
        ("PUT /v1/secrets/{*name}", a.as_str())
    );
    assert_eq!(
        (v1[0].object.as_str(), v1[0].result.as_str()),
        ("secret app/db v1", "allowed")
    );
    assert_eq!(
        (v1[1].action.as_str(), v1[1].actor.as_str()),
        ("GET /v1/secrets/{*name}", r.as_str())
    );
    assert_eq!(
        (v1[1].object.as_str(), v1[1].result.as_str()),
        ("secret app/db v1", "allowed")
    );
    assert_eq!(
        (v1[2].actor.as_str(), v1[2].object.as_str()),
        (r.as_str(), "name=other/x")
    );
    assert_eq!(v1[2].result, "denied");
    assert!(v1[2].reason.contains("secrets:read"), "{}", v1[2].reason);
    assert_eq!(
        (v1[3].actor.as_str(), v1[3].result.as_str()),
        ("anonymous", "denied")
    );
    assert_eq!(v1[3].action, "GET /v1/sys/status");
    let serial = issued["serial"].as_str().unwrap_or_default();
    assert_eq!(
        v1[4].object,
        format!("certificate {serial} broker.example"),
        "{issued}"
    );
    // The token requests are counted per client: one token.issue event each, count 1.
    let tokens: Vec<_> = all.iter().filter(|e| e.action == "token.issue").collect();
    assert_eq!(tokens.len(), 2, "{tokens:#?}");
    for e in &tokens {
        let d: Value = serde_json::from_str(&e.detail).expect("detail");
        assert_eq!(d["count"], 1);
    }
    vec![
        value.to_owned(),
        admin,
        reader,
        f.admin.1.clone(),
        f.reader.1.clone(),
        issued["key_pem"].as_str().unwrap_or("").to_owned(),
    ]
}

async fn each_v1_call_is_one_event(pg: Option<String>) {
    let f = fix(pg).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("audit.jsonl");
    let state = f
        .state(
            "r1",
            AuditSettings {
                file: Some(file.clone()),
                ..Default::default()
            },
        )
        .await;
    let secrets = one_event_per_call(&f, &state, "r1").await;
    let report = verify_store(&f.store, Some(&state.jwks_bytes()))
        .await
        .expect("verify");
    assert!(report.ok(), "{report:#?}");
    assert!(report.checkpoints_verified >= 1, "{report:#?}");
    let file_report = castellan_server::audit::verify::verify_file(
        &file,
        Some(&f.store),
        Some(&state.jwks_bytes()),
    )
    .await
    .expect("file");
    assert!(file_report.ok(), "{file_report:#?}");
    // No secret value, client secret, token or private key in either sink.
    let stream = std::fs::read_to_string(&file).expect("stream");
    let stored = serde_json::to_string(&events(&f.store, "r1").await).expect("json");
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let probe = s.lines().nth(1).unwrap_or(s);
        assert!(!stream.contains(probe), "the stream holds a secret");
        assert!(!stored.contains(probe), "the store holds a secret");
    }
}

#[tokio::test]
async fn each_v1_call_is_one_event_sqlite() {
    each_v1_call_is_one_event(None).await;
}

#[tokio::test]
async fn each_v1_call_is_one_event_postgres() {
    if let Some(url) = castellan_store::testing::fresh_postgres_database("audit_one_event").await {
        each_v1_call_is_one_event(Some(url)).await;
    }
}

#[tokio::test]
async fn an_edited_removed_or_moved_event_is_named() {
    let f = fix(None).await;
    // Only the flushes below write: no timed token counts or checkpoints while the rows are edited.
    let settings = AuditSettings {
        flush_interval: std::time::Duration::from_secs(3600),
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..AuditSettings::default()
    };
    let state = f.state("r1", settings).await;
    let admin = token(&state, &f.admin).await;
    for i in 0..6 {
        let (s, _) = send(
            &state,
            req("GET", &format!("/v1/secrets/x{i}"), &admin, None),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    state.audit().flush().await;
    let jwks = state.jwks_bytes();
    assert!(verify_store(&f.store, Some(&jwks)).await.expect("v").ok());
    // By seq: events are listed by time, and the writer's own token count (created when the writer
    // links it) can be linked between events created before it.
    let original = events(&f.store, "r1")
        .await
        .into_iter()
        .find(|e| e.seq == 3)
        .expect("r1#3")
        .object;
    let run = |sql: &str| {
        let (url, sql) = (f.url.clone(), sql.to_owned());
        async move { castellan_store::testing::execute(&url, &sql).await }
    };
    let first_break = || async {
        let r = verify_store(&f.store, Some(&jwks)).await.expect("v");
        let b = r.problems.first().expect("a problem").clone();
        (b.event, b.kind)
    };
    run("UPDATE audit_events SET object = 'name=elsewhere' WHERE replica_id = 'r1' AND seq = 3")
        .await;
    assert_eq!(first_break().await, ("r1#3".to_owned(), BreakKind::Altered));
    run(&format!(
        "UPDATE audit_events SET object = '{original}' WHERE replica_id = 'r1' AND seq = 3"
    ))
    .await;
    let r = verify_store(&f.store, Some(&jwks)).await.expect("v");
    assert!(r.ok(), "restored: {r:#?}");
    run("UPDATE audit_events SET seq = -4 WHERE replica_id = 'r1' AND seq = 4").await;
    run("UPDATE audit_events SET seq = 4 WHERE replica_id = 'r1' AND seq = 5").await;
    run("UPDATE audit_events SET seq = 5 WHERE replica_id = 'r1' AND seq = -4").await;
    assert_eq!(
        first_break().await,
        ("r1#4".to_owned(), BreakKind::Reordered)
    );
    run("UPDATE audit_events SET seq = -4 WHERE replica_id = 'r1' AND seq = 4").await;
    run("UPDATE audit_events SET seq = 4 WHERE replica_id = 'r1' AND seq = 5").await;
    run("UPDATE audit_events SET seq = 5 WHERE replica_id = 'r1' AND seq = -4").await;
    run("DELETE FROM audit_events WHERE replica_id = 'r1' AND seq = 2").await;
    assert_eq!(first_break().await, ("r1#2".to_owned(), BreakKind::Removed));
    // The newest events removed: the checkpoint still names them.
    let f2 = fix(None).await;
    let st2 = f2.state("r2", AuditSettings::default()).await;
    let t = token(&st2, &f2.admin).await;
    for _ in 0..3 {
        send(&st2, req("GET", "/v1/secrets/y", &t, None)).await;
    }
    st2.audit().flush().await;
    let last = events(&f2.store, "r2")
        .await
        .iter()
        .map(|e| e.seq)
        .max()
        .expect("events");
    castellan_store::testing::execute(
        &f2.url,
        &format!("DELETE FROM audit_events WHERE replica_id = 'r2' AND seq = {last}"),
    )
    .await;
    let r = verify_store(&f2.store, Some(&st2.jwks_bytes()))
        .await
        .expect("v");
    assert_eq!(
        r.problems.first().map(|b| b.event.clone()),
        Some(format!("r2#{last}")),
        "{r:#?}"
    );
}

/// Replica r1 of `f` writing its trail to the store and to a JSON-lines file (in the returned
/// directory).
async fn streaming(f: &Fix) -> (tempfile::TempDir, std::path::PathBuf, AppState) {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("audit.jsonl");
    let state = f
        .state(
            "r1",
            AuditSettings {
                file: Some(file.clone()),
                ..Default::default()
            },
        )
        .await;
    (dir, file, state)
}

#[tokio::test]
async fn a_truncated_stream_file_is_found() {
    let f = fix(None).await;
    let (_dir, file, state) = streaming(&f).await;
    let admin = token(&state, &f.admin).await;
    for i in 0..4 {
        send(
            &state,
            req("GET", &format!("/v1/secrets/x{i}"), &admin, None),
        )
        .await;
    }
    state.audit().flush().await;
    let verify = || castellan_server::audit::verify::verify_file(&file, Some(&f.store), None);
    assert!(verify().await.expect("v").ok());
    let text = std::fs::read_to_string(&file).expect("read");
    let events_only: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("{\"checkpoint\""))
        .collect();
    // Cut inside the last event's line.
    let body: String = events_only.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, &body[..body.len() - 30]).expect("write");
    let r = verify().await.expect("v");
    let n = events_only.len();
    assert_eq!(
        r.problems.first().map(|b| b.event.clone()),
        Some(format!("r1#{n}")),
        "{r:#?}"
    );
    // Whole lines removed from the end: the store's chain reaches further.
    let whole: String = events_only[..2].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, whole).expect("write");
    let r = verify().await.expect("v");
    assert_eq!(
        r.problems.first().map(|b| (b.event.clone(), b.kind)),
        Some(("r1#3".to_owned(), BreakKind::Removed)),
        "{r:#?}"
    );
}

/// `audit verify` against a replica that keeps writing events and checkpoints: an untouched trail
/// verifies every time, in the store and in the stream file (a verifier that read the events before
/// the checkpoints, or the file before the store's head, saw a checkpoint or head beyond what it had
/// read and called an event removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_verifies_while_its_replica_keeps_writing() {
    let f = fix(None).await;
    let (_dir, file, state) = streaming(&f).await;
    let admin = token(&state, &f.admin).await;
    let jwks = state.jwks_bytes();
    // The file exists once the first events are written.
    send(&state, req("GET", "/v1/secrets/first", &admin, None)).await;
    state.audit().flush().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                send(
                    &state,
                    req("GET", &format!("/v1/secrets/w{n}"), &admin, None),
                )
                .await;
                // Every flush writes a checkpoint of the new head.
                state.audit().flush().await;
                n += 1;
            }
            n
        })
    };
    for round in 0..40 {
        let r = verify_store(&f.store, Some(&jwks)).await.expect("v");
        assert!(r.ok(), "round {round}, store: {r:#?}");
        let r = castellan_server::audit::verify::verify_file(&file, Some(&f.store), Some(&jwks))
            .await
            .expect("v");
        assert!(r.ok(), "round {round}, file: {r:#?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.expect("writer");
    assert!(
        written >= 10,
        "the replica wrote while it was verified: {written}"
    );
}

/// A sink that fails: the store refuses audit rows (a trigger), or the stream file cannot be written.
async fn failing_sink(fail_closed: bool, store_fails: bool) {
    let f = fix(None).await;
    let file = if store_fails {
        None
    } else {
        Some(std::path::PathBuf::from("/dev/full"))
    };
    let state = f
        .state(
            "r1",
            AuditSettings {
                fail_closed,
                file,
                ..Default::default()
            },
        )
        .await;
    let admin = token(&state, &f.admin).await;
    let value =
        castellan_core::secret_store::SecretValue::new(zeroize::Zeroizing::new(b"v".to_vec()));
    castellan_server::secrets::put(&f.store, &f.master, "app/db", &value, None, f.clock.now())
        .await
        .expect("put");
    if store_fails {
        castellan_store::testing::execute(
            &f.url,
            "CREATE TRIGGER audit_read_only BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'read-only'); END;",
        )
        .await;
    }
    let (s, body) = send(&state, req("GET", "/v1/secrets/app/db", &admin, None)).await;
    let text = String::from_utf8_lossy(&body).to_string();
    if fail_closed {
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(
            text.contains("audit_unavailable") && !text.contains("\"value\""),
            "{text}"
        );
    } else {
        assert_eq!(s, StatusCode::OK, "{text}");
    }
    state.audit().flush().await;
    let (_, metrics) = send(
        &state,
        Request::get("/metrics").body(Body::empty()).expect("req"),
    )
    .await;
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("castellan_audit_write_failures_total "))
        .and_then(|n| n.parse().ok())
        .expect("the failure counter");
    assert!(failures >= 1, "{metrics}");
}

#[tokio::test]
async fn a_read_only_store_refuses_secret_reads_when_fail_closed() {
    failing_sink(true, true).await;
}

#[tokio::test]
async fn a_read_only_store_allows_secret_reads_when_best_effort() {
    failing_sink(false, true).await;
}

#[tokio::test]
async fn an_unwritable_file_refuses_secret_reads_when_fail_closed() {
    failing_sink(true, false).await;
}

#[tokio::test]
async fn an_unwritable_file_allows_secret_reads_when_best_effort() {
    failing_sink(false, false).await;
}

#[tokio::test]
async fn three_replicas_write_their_chains_at_once_on_postgres() {
    let Some(url) = castellan_store::testing::fresh_postgres_database("audit_replicas").await
    else {
        return;
    };
    let f = fix(Some(url)).await;
    let mut states = Vec::new();
    for r in ["r1", "r2", "r3"] {
        states.push(f.state(r, AuditSettings::default()).await);
    }
    let admin = token(&states[0], &f.admin).await;
    let mut tasks = Vec::new();
    for (i, st) in states.iter().enumerate() {
        let (st, admin) = (st.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..40 {
                let name = format!("/v1/secrets/app/r{i}-{n}");
                let (s, _) =
                    send(&st, req("PUT", &name, &admin, Some(json!({"value": "v"})))).await;
                assert_eq!(s, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for (i, st) in states.iter().enumerate() {
        st.audit().flush().await;
        let evs = events(&f.store, &format!("r{}", i + 1)).await;
        let puts: Vec<_> = v1(&evs);
        assert_eq!(puts.len(), 40, "replica r{}", i + 1);
        assert!(
            puts.iter()
                .all(|e| e.object.starts_with(&format!("secret app/r{i}-")))
        );
    }
    let report = verify_store(&f.store, Some(&states[0].jwks_bytes()))
        .await
        .expect("verify");
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.chains.len(), 3, "{report:#?}");
}

/// A failed and a successful sign-in: one `signin.login` event each, with the user and the result;
/// neither password appears anywhere in the trail.
#[tokio::test]
async fn a_sign_in_and_a_failed_one_are_one_event_each_sqlite() {
    a_sign_in_and_a_failed_one_are_one_event_each(None).await;
}

#[tokio::test]
async fn a_sign_in_and_a_failed_one_are_one_event_each_postgres() {
    if let Some(url) = castellan_store::testing::fresh_postgres_database("audit_signin").await {
        a_sign_in_and_a_failed_one_are_one_event_each(Some(url)).await;
    }
}

async fn a_sign_in_and_a_failed_one_are_one_event_each(pg: Option<String>) {
    let f = crate::signin::fixture_on(pg).await;
    let mut b = crate::signin::Browser::default();
    let page = b
        .get(&f.state, &crate::signin::authorize_url(&f.web.0, &[]))
        .await;
    let r = b
        .sign_in(&f.state, &page, "alice", "not-alices-password-123")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the form again");
    let page = b
        .get(&f.state, &crate::signin::authorize_url(&f.web.0, &[]))
        .await;
    let r = b
        .sign_in(&f.state, &page, "alice", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    f.state.audit().flush().await;
    let all = events(f.state.store(), "r1").await;
    let logins: Vec<_> = all.iter().filter(|e| e.action == "signin.login").collect();
    assert_eq!(logins.len(), 2, "{logins:#?}");
    assert_eq!(
        (logins[0].result.as_str(), logins[1].result.as_str()),
        ("denied", "allowed")
    );
    assert_eq!(logins[0].actor, logins[1].actor);
    assert!(
        logins[1].actor.starts_with("user:usr_") || logins[1].actor.starts_with("user:"),
        "{}",
        logins[1].actor
    );
    let text = serde_json::to_string(&all).expect("json");
    assert!(!text.contains("not-alices-password-123") && !text.contains("correct horse battery"));
}
