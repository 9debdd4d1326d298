//! Issue 18 through `oneshot`: a client's audiences (`audience`/`resource`, `invalid_target`), the
//! signing API (`POST /v1/tokens/sign`) with each policy rule refused by name, its tokens verified by
//! PyJWT and node `jose` against the JWKS of every replica (PostgreSQL and a SQLite file), and token
//! exchange (RFC 8693): scopes never grow, `act` names the service, the policy decides which tokens
//! may be exchanged and for what.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use castellan_core::envelope::MasterKey;
use castellan_core::token::Alg;
use castellan_core::{Clock, SystemClock};
use castellan_server::client_policies::{ClientPolicySpec, set_policy};
use castellan_server::clients::{NewClient, create_client};
use castellan_server::http::router;
use castellan_server::init::InitOptions;
use castellan_server::state::AppState;
use castellan_store::{Store, testing};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::feed::replica;
use super::signin::{Browser, Fixture, code_for, fixture, token};

const ISS: &str = "http://castellan.test";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

async fn initialized_rs256(url: &str) -> (Store, Arc<MasterKey>) {
    let store = Store::connect(url).await.expect("store");
    let (master, _) = MasterKey::generate().expect("mk");
    castellan_server::init::initialize(
        &store,
        &master,
        SystemClock.now(),
        &InitOptions {
            alg: Alg::RS256,
            key_type: None,
            root_key_offline: false,
        },
    )
    .await
    .expect("init");
    (store, Arc::new(master))
}

async fn client(
    store: &Store,
    name: &str,
    scopes: &[&str],
    audience: Option<&str>,
) -> (String, String) {
    let c = create_client(
        store,
        NewClient {
            name: name.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            audience: audience.map(str::to_owned),
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

async fn call(state: &AppState, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let body = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn cc_token(
    state: &AppState,
    c: &(String, String),
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    let r = token(state, (&c.0, Some(&c.1)), &form).await;
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

async fn bearer_for(state: &AppState, c: &(String, String)) -> String {
    let (s, t) = cc_token(state, c, &[]).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    t["access_token"].as_str().expect("at").to_owned()
}

async fn sign(state: &AppState, bearer: &str, body: Value) -> (StatusCode, Value) {
    call(
        state,
        Request::post("/v1/tokens/sign")
            .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("req"),
    )
    .await
}

fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let p = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .expect("b64"),
    )
    .expect("json")
}

fn verifies(jwks: &[u8], token: &str, aud: &str) -> Value {
    let jwks: Value = serde_json::from_slice(jwks).expect("jwks");
    let header = jsonwebtoken::decode_header(token).expect("header");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .expect("the token's kid is published");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
    let mut v = Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[ISS]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).expect("dk"), &v)
        .expect("verifies")
        .claims
}

fn policy(
    store: &Store,
    id: &str,
    spec: ClientPolicySpec,
) -> impl std::future::Future<Output = ()> {
    let (store, id) = (store.clone(), id.to_owned());
    async move {
        set_policy(&store, &id, Some(&spec), 86400)
            .await
            .expect("policy");
    }
}

/// A client's default audience, the audiences its policy allows (by `audience` or `resource`), and
/// `invalid_target` for any other; a client without an audience keeps the issuer (Castellan's API).
#[tokio::test]
async fn token_requests_pick_an_allowed_audience_or_get_invalid_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = castellan_store::sqlite_url(&dir.path().join("a.db"));
    let (store, master) = initialized_rs256(&url).await;
    let svc = client(&store, "svc", &["orders:read"], Some("https://orders")).await;
    let plain = client(&store, "plain", &["orders:read"], None).await;
    policy(
        &store,
        &svc.0,
        ClientPolicySpec {
            audiences: vec!["https://billing".into(), "urn:ledger".into()],
            ..Default::default()
        },
    )
    .await;
    let state = replica(&url, &master, Duration::from_secs(60)).await;
    let jwks = state.jwks_bytes().to_vec();
    let aud_of = |t: &Value| claims_of(t["access_token"].as_str().expect("at"))["aud"].clone();

    let (s, t) = cc_token(&state, &svc, &[]).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(aud_of(&t), "https://orders", "the default audience");
    let (s, t) = cc_token(&state, &svc, &[("resource", "https://billing")]).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    verifies(
        &jwks,
        t["access_token"].as_str().expect("at"),
        "https://billing",
    );
    let (s, t) = cc_token(&state, &svc, &[("audience", "urn:ledger")]).await;
    assert_eq!((s, aud_of(&t)), (StatusCode::OK, json!("urn:ledger")));
    let (s, t) = cc_token(&state, &svc, &[("audience", "https://orders")]).await;
    assert_eq!((s, aud_of(&t)), (StatusCode::OK, json!("https://orders")));
    for bad in ["https://evil", ISS, "https://billing/x"] {
        let (s, t) = cc_token(&state, &svc, &[("resource", bad)]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {t}");
        assert_eq!(t["error"], "invalid_target", "{bad}");
    }
    let (s, t) = cc_token(
        &state,
        &svc,
        &[("resource", "https://billing"), ("audience", "urn:ledger")],
    )
    .await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );

    // A client created without an audience: its tokens stay for Castellan's own API.
    let (s, t) = cc_token(&state, &plain, &[]).await;
    assert_eq!((s, aud_of(&t)), (StatusCode::OK, json!(ISS)));
    let (s, t) = cc_token(&state, &plain, &[("resource", "https://orders")]).await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_target"))
    );
}

fn signer_policy() -> ClientPolicySpec {
    ClientPolicySpec {
        audiences: vec!["https://orders".into()],
        sign_max_ttl_secs: Some(600),
        sign_claims: vec!["roles".into(), "tenant".into()],
        sign_sub: Some("user:*".into()),
        sign_typ: Some("at+jwt".into()),
        exchange_from: Vec::new(),
    }
}

/// Every rule of the policy, broken once each, is refused with 403 and its name; a caller without
/// `tokens:sign` is 403; a client with the scope but no policy is 403 `policy`.
#[tokio::test]
async fn the_signing_api_refuses_each_rule_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = castellan_store::sqlite_url(&dir.path().join("s.db"));
    let (store, master) = initialized_rs256(&url).await;
    let signer = client(&store, "signer", &["tokens:sign"], None).await;
    let bare = client(&store, "bare", &["tokens:sign"], None).await;
    let reader = client(&store, "reader", &["orders:read"], None).await;
    policy(&store, &signer.0, signer_policy()).await;
    policy(&store, &reader.0, signer_policy()).await;
    let state = replica(&url, &master, Duration::from_secs(60)).await;
    let bearer = bearer_for(&state, &signer).await;
    let ok = json!({"sub": "user:42", "aud": "https://orders", "lifetime_secs": 300,
                    "claims": {"roles": ["buyer"], "tenant": "t1"}});

    let (s, v) = sign(&state, &bearer, ok.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let t = v["token"].as_str().expect("token");
    let c = verifies(&state.jwks_bytes(), t, "https://orders");
    assert_eq!(c["sub"], "user:42");
    assert_eq!(c["roles"], json!(["buyer"]));
    assert_eq!(c["tenant"], "t1");
    assert_eq!(c["iss"], ISS);
    assert_eq!(
        c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat"),
        300
    );
    assert_eq!(c["nbf"], c["iat"]);
    assert_eq!(c["jti"], v["jti"]);
    assert_eq!(c["client_id"], signer.0.as_str());
    assert!(
        c.get("scope").is_none(),
        "a signed token never carries scope"
    );
    let header = jsonwebtoken::decode_header(t).expect("header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), v["kid"].as_str());
    // The current key of the ring: the one a client_credentials token is signed with now.
    let current = jsonwebtoken::decode_header(&bearer).expect("h").kid;
    assert_eq!(header.kid, current);
    // Its audit event names the signed token by jti, for whom and with which key; never the token.
    state.audit().flush().await;
    let signed = store
        .audit_events(&castellan_store::AuditFilter {
            action: Some("POST /v1/tokens/sign".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(signed.len(), 1, "{signed:#?}");
    let e = &signed[0];
    assert_eq!(
        e.object,
        format!("token {}", v["jti"].as_str().expect("jti"))
    );
    assert_eq!(e.actor, format!("client:{}", signer.0));
    let detail: Value = serde_json::from_str(&e.detail).expect("detail");
    assert_eq!(detail["sub"], "user:42");
    assert_eq!(detail["aud"], "https://orders");
    assert_eq!(detail["kid"], v["kid"]);
    assert!(!serde_json::to_string(e).expect("json").contains(t));
    // Without a lifetime: the policy's maximum.
    let (s, v) = sign(
        &state,
        &bearer,
        json!({"sub": "user:1", "aud": "https://orders"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let c = claims_of(v["token"].as_str().expect("t"));
    assert_eq!(
        c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat"),
        600
    );

    let with = |k: &str, val: Value| {
        let mut b = ok.clone();
        b[k] = val;
        b
    };
    for (body, rule) in [
        (with("aud", json!("https://evil")), "audience"),
        (with("aud", json!(ISS)), "audience"),
        (with("lifetime_secs", json!(601)), "lifetime"),
        (with("claims", json!({"email": "a@b"})), "claims"),
        (
            with("claims", json!({"exp": 9_999_999_999u64})),
            "registered-claim",
        ),
        (
            with("claims", json!({"iss": "https://other"})),
            "registered-claim",
        ),
        (
            with("claims", json!({"scope": "admin"})),
            "registered-claim",
        ),
        (with("sub", json!("admin:1")), "sub"),
        (with("sub", json!("xuser:1")), "sub"),
        (with("typ", json!("JWT")), "typ"),
    ] {
        let (s, v) = sign(&state, &bearer, body.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}: {v}");
        assert_eq!(v["error"]["rule"], rule, "{body}: {v}");
        assert_eq!(v["error"]["code"], "policy_violation");
        assert!(
            v["error"]["message"]
                .as_str()
                .expect("m")
                .starts_with(&format!("rule `{rule}`"))
        );
    }
    // A malformed request is 400, an unknown field too.
    let (s, _) = sign(&state, &bearer, with("lifetime_secs", json!(0))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = sign(&state, &bearer, with("iss", json!("x"))).await;
    assert!(s.is_client_error(), "an unknown field is refused: {s}");

    // Without tokens:sign (a policy does not make up for the scope): 403.
    let (s, v) = sign(&state, &bearer_for(&state, &reader).await, ok.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .contains("tokens:sign"),
        "{v}"
    );
    // The scope without a policy: 403, rule `policy`.
    let (s, v) = sign(&state, &bearer_for(&state, &bare).await, ok.clone()).await;
    assert_eq!(
        (s, v["error"]["rule"].clone()),
        (StatusCode::FORBIDDEN, json!("policy"))
    );
    // No token at all: 401.
    let (s, _) = call(
        &state,
        Request::post("/v1/tokens/sign")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(ok.to_string()))
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A signed token is not one of Castellan's own access tokens, even with the issuer's audience
    // allowed: /v1 refuses it.
    let (s, v) = sign(&state, &bearer, ok.clone()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &state,
        Request::get("/v1/clients")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", v["token"].as_str().expect("t")),
            )
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Where `.ci/run` installs node packages (`npm install --prefix DIR openid-client@6 jose@6`).
fn npm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CASTELLAN_NPM_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/castellan-npm"))
        })?;
    if dir.join("node_modules/jose").is_dir() {
        return Some(dir);
    }
    let why = format!(
        "node jose is not installed in {} (bash .ci/run installs it)",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

/// PyJWT and node jose, each against one replica's JWKS (a file, as a verifier caches it).
fn independent_verifiers(
    work: &Path,
    npm: &Path,
    jwks: &[u8],
    token: &str,
    aud: &str,
) -> (Value, Value) {
    let jwks_file = work.join("jwks.json");
    std::fs::write(&jwks_file, jwks).expect("write jwks");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = Command::new("python3")
        .arg(manifest.join("../castellan/tests/castellan/verify_jwt.py"))
        .args([jwks_file.to_str().expect("p"), token, aud, ISS])
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "PyJWT: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let script = work.join("verify_jose.mjs");
    if !script.exists() {
        std::fs::copy(manifest.join("tests/server/verify_jose.mjs"), &script).expect("copy");
        std::os::unix::fs::symlink(npm.join("node_modules"), work.join("node_modules"))
            .expect("link");
    }
    let node = Command::new("node")
        .arg(&script)
        .args([jwks_file.to_str().expect("p"), token, aud, ISS])
        .output()
        .expect("node");
    assert!(
        node.status.success(),
        "jose: {}",
        String::from_utf8_lossy(&node.stderr)
    );
    (
        serde_json::from_slice(&py.stdout).expect("PyJWT's claims"),
        serde_json::from_slice(&node.stdout).expect("jose's answer"),
    )
}

/// Two replicas on one store: the policy set through one (`PUT /v1/clients/{id}/policy`) reaches the
/// other through the change feed; tokens signed on each verify with PyJWT and jose against the JWKS
/// of every replica.
async fn replicas_sign_and_every_jwks_verifies(url: &str, refresh: Duration) {
    let Some(npm) = npm_dir() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let (store, master) = initialized_rs256(url).await;
    let admin = client(&store, "ops", &["clients:admin"], None).await;
    let signer = client(&store, "legacy-auth", &["tokens:sign"], None).await;
    let replicas = vec![
        replica(url, &master, refresh).await,
        replica(url, &master, refresh).await,
    ];
    let _refreshing: Vec<_> = replicas.iter().map(|r| r.spawn_refresh()).collect();
    // Let PostgreSQL's listeners connect.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin_bearer = bearer_for(&replicas[0], &admin).await;
    let (s, v) = call(
        &replicas[0],
        Request::put(format!("/v1/clients/{}/policy", signer.0))
            .header(header::AUTHORIZATION, format!("Bearer {admin_bearer}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                serde_json::to_string(&signer_policy()).expect("json"),
            ))
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["audiences"], json!(["https://orders"]));
    let body = json!({"sub": "user:7", "aud": "https://orders", "claims": {"tenant": "t9"}});
    // The other replica learns the policy from the feed, without a restart.
    let deadline = Instant::now() + Duration::from_secs(20);
    let bearer = bearer_for(&replicas[1], &signer).await;
    loop {
        let (s, v) = sign(&replicas[1], &bearer, body.clone()).await;
        if s == StatusCode::OK {
            break;
        }
        assert_eq!(v["error"]["rule"], "policy", "{v}");
        assert!(Instant::now() < deadline, "replica 1 never saw the policy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jwks: Vec<Vec<u8>> = replicas.iter().map(|r| r.jwks_bytes().to_vec()).collect();
    assert_eq!(jwks[0], jwks[1], "one key ring: byte-identical JWKS");
    for (i, r) in replicas.iter().enumerate() {
        let (s, v) = sign(r, &bearer_for(r, &signer).await, body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let t = v["token"].as_str().expect("t");
        for j in &jwks {
            let (py, jose) = independent_verifiers(work.path(), &npm, j, t, "https://orders");
            assert_eq!(py["sub"], "user:7", "replica {i}");
            assert_eq!(py["tenant"], "t9");
            assert_eq!(jose["payload"]["jti"], v["jti"]);
            assert_eq!(jose["header"]["typ"], "at+jwt");
            assert_eq!(jose["header"]["alg"], "RS256");
        }
        // The wrong audience is refused by both (they check what they are told to).
        let jwks_file = work.path().join("jwks.json");
        let py = Command::new("python3")
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../castellan/tests/castellan/verify_jwt.py"),
            )
            .args([jwks_file.to_str().expect("p"), t, "https://billing", ISS])
            .output()
            .expect("python3");
        assert!(!py.status.success(), "PyJWT must refuse another audience");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_sign_and_every_jwks_verifies_with_pyjwt_and_jose() {
    let Some(url) = testing::fresh_postgres_database("signing_replicas").await else {
        return;
    };
    replicas_sign_and_every_jwks_verifies(&url, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replicas_sign_and_every_jwks_verifies_with_pyjwt_and_jose() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = castellan_store::sqlite_url(&dir.path().join("r.db"));
    replicas_sign_and_every_jwks_verifies(&url, Duration::from_millis(200)).await;
}

/// alice's access token for the `web` app (audience `api`, scopes openid profile email invoices:read).
async fn alice_token(f: &Fixture) -> String {
    let mut b = Browser::default();
    let code = code_for(f, &mut b, &f.web.0).await;
    let r = token(
        &f.state,
        (&f.web.0, Some(&f.web.1)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://app.example/cb"),
            ("code_verifier", super::signin::VERIFIER),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["access_token"].as_str().expect("at").to_owned()
}

async fn exchange(
    f: &Fixture,
    c: &(String, String),
    subject: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", AT),
    ];
    form.extend_from_slice(extra);
    let r = token(&f.state, (&c.0, Some(&c.1)), &form).await;
    (
        r.status,
        serde_json::from_str(&r.body).unwrap_or(Value::Null),
    )
}

/// RFC 8693: the service holding alice's token (audience `api`) exchanges it for a token for the
/// ledger: same or fewer scopes, `act` naming the service, only what its policy allows.
#[tokio::test]
async fn token_exchange_narrows_scopes_names_the_actor_and_follows_the_policy() {
    let f = fixture().await;
    let store = f.state.store().clone();
    let gateway = client(&store, "gateway", &["ledger:call"], Some("api")).await;
    let other = client(&store, "other", &["ledger:call"], None).await;
    let nopolicy = client(&store, "nopolicy", &["ledger:call"], Some("api")).await;
    policy(
        &store,
        &gateway.0,
        ClientPolicySpec {
            audiences: vec!["https://ledger".into(), "https://audit".into()],
            exchange_from: vec!["api".into()],
            ..Default::default()
        },
    )
    .await;
    policy(
        &store,
        &other.0,
        ClientPolicySpec {
            audiences: vec!["https://ledger".into()],
            exchange_from: vec!["https://elsewhere".into()],
            ..Default::default()
        },
    )
    .await;
    f.state.refresh().await.expect("refresh");
    let subject = alice_token(&f).await;
    let alice = claims_of(&subject);
    assert_eq!(alice["aud"], "api");

    let (s, t) = exchange(
        &f,
        &gateway,
        &subject,
        &[("audience", "https://ledger"), ("scope", "invoices:read")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["issued_token_type"], AT);
    assert_eq!(t["token_type"], "Bearer");
    let c = verifies(
        &f.state.jwks_bytes(),
        t["access_token"].as_str().expect("at"),
        "https://ledger",
    );
    assert_eq!(c["sub"], alice["sub"], "still alice");
    assert_eq!(c["scope"], "invoices:read");
    assert_eq!(c["act"], json!({"sub": gateway.0}));
    assert_eq!(c["client_id"], gateway.0.as_str());
    assert!(
        c["exp"].as_i64() <= alice["exp"].as_i64(),
        "never outlives the subject token"
    );
    // No scope asked: the subject token's, no more.
    let (s, t) = exchange(&f, &gateway, &subject, &[("resource", "https://audit")]).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(
        claims_of(t["access_token"].as_str().expect("at"))["scope"],
        alice["scope"]
    );
    let exchanged = t["access_token"].as_str().expect("at").to_owned();

    // Scopes never grow: one alice's token lacks, even one the gateway itself holds.
    for scope in ["invoices:write", "ledger:call", "invoices:read admin"] {
        let (s, t) = exchange(
            &f,
            &gateway,
            &subject,
            &[("audience", "https://ledger"), ("scope", scope)],
        )
        .await;
        assert_eq!(
            (s, t["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("invalid_scope")),
            "{scope}"
        );
    }
    // A target outside the policy.
    let (s, t) = exchange(&f, &gateway, &subject, &[("audience", "https://evil")]).await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_target"))
    );
    // A token of another audience (the ledger's) cannot be exchanged where the policy allows only `api`.
    let (s, t) = exchange(&f, &gateway, &exchanged, &[("audience", "https://ledger")]).await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant")),
        "{t}"
    );
    // A client whose policy exchanges other audiences' tokens: refused for alice's.
    let (s, t) = exchange(&f, &other, &subject, &[("audience", "https://ledger")]).await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant")),
        "{t}"
    );
    // A client without a policy exchanges nothing.
    let (s, t) = exchange(&f, &nopolicy, &subject, &[]).await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("unauthorized_client")),
        "{t}"
    );
    // Not a token of this issuer, or the wrong type.
    let (s, t) = exchange(&f, &gateway, "e30.e30.e30", &[]).await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );
    let r = token(
        &f.state,
        (&gateway.0, Some(&gateway.1)),
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", &subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_request");
    // An expired subject token is not live.
    f.clock.advance(3600 * 24);
    let (s, t) = exchange(&f, &gateway, &subject, &[("audience", "https://ledger")]).await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );
}

/// The person-facing grants keep the app's default audience: another one is `invalid_target`.
#[tokio::test]
async fn authorization_code_with_another_resource_is_invalid_target() {
    let f = fixture().await;
    let mut b = Browser::default();
    let code = code_for(&f, &mut b, &f.web.0).await;
    let r = token(
        &f.state,
        (&f.web.0, Some(&f.web.1)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://app.example/cb"),
            ("code_verifier", super::signin::VERIFIER),
            ("resource", "https://elsewhere"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_target");
}
