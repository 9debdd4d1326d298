//! The HTTP API through `oneshot`, without a socket: token endpoint errors, JWKS caching, /v1 auth.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use castellan_core::envelope::MasterKey;
use castellan_core::token::Alg;
use castellan_core::{Clock, ManualClock};
use castellan_server::clients::NewClient;
use castellan_server::http::router;
use castellan_server::init::InitOptions;
use castellan_server::state::{AppState, Settings};
use castellan_store::Store;
use serde_json::Value;
use tower::ServiceExt;

const ISS: &str = "http://castellan.test";

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    state: AppState,
    client_id: String,
    secret: String,
    admin_id: String,
    admin_secret: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("t.db"))
        .await
        .expect("store");
    let (master, _) = MasterKey::generate().expect("mk");
    let clock = Arc::new(ManualClock::new(1_800_000_000));
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
    let created = castellan_server::clients::create_client(
        &store,
        NewClient {
            name: "svc".into(),
            scopes: vec!["read".into(), "write".into()],
            audience: Some("api".into()),
            token_ttl_secs: None,
            app: None,
            cert_names: Vec::new(),
        },
        86400,
        clock.now(),
    )
    .await
    .expect("client");
    let settings = Settings {
        issuer: ISS.into(),
        jwks_max_age_secs: 300,
        default_ttl_secs: 900,
        max_ttl_secs: 86400,
        replica_id: "r1".into(),
        refresh_interval: Duration::from_secs(60),
        profiles: Arc::new(castellan_core::pki::Profiles::new(Vec::new()).expect("profiles")),
        crl_validity_secs: 86400,
        crl_url: None,
        rotation: castellan_server::config::Config::default()
            .rotation_policy()
            .expect("policy"),
        signin: Default::default(),
        cert_names: castellan_server::cert_names::CertNamePolicy::default(),
    };
    let state = AppState::load(store, Arc::new(master), clock.clone(), settings)
        .await
        .expect("state");
    Fixture {
        _dir: dir,
        clock,
        state,
        client_id: created.client.client_id,
        secret: created.client_secret,
        admin_id: admin.client_id,
        admin_secret: admin.client_secret.to_string(),
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

async fn send(
    state: &AppState,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body")
        .to_vec();
    (status, headers, body)
}

fn token_req(auth: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    b.body(body.into()).expect("request")
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn client_credentials_basic_and_post_issue_rfc9068_tokens() {
    let f = fixture().await;
    let (s, h, b) = send(
        &f.state,
        token_req(
            Some(&basic(&f.client_id, &f.secret)),
            "grant_type=client_credentials&scope=read",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let v = json(&b);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "read");
    assert_eq!(v["expires_in"], 900);
    let token = v["access_token"].as_str().expect("token");
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);

    // Verify against the served JWKS with jsonwebtoken.
    let (_, _, jwks) = send(
        &f.state,
        Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&jwks).expect("jwks");
    let jwk = set
        .find(header.kid.as_deref().expect("kid"))
        .expect("kid published");
    let mut val = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    val.set_audience(&["api"]);
    val.set_issuer(&[ISS]);
    // The fixture clock is in 2027; judge expiry relative to it.
    val.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("dk"),
        &val,
    )
    .expect("verifies");
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
    ] {
        assert!(data.claims.get(claim).is_some(), "missing claim {claim}");
    }
    assert_eq!(
        data.claims["exp"].as_i64().expect("exp") - data.claims["iat"].as_i64().expect("iat"),
        900
    );

    // client_secret_post, no scope: all of the client's scopes.
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        f.client_id, f.secret
    );
    let (s, _, b) = send(&f.state, token_req(None, body)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["scope"], "read write");
}

#[tokio::test]
async fn token_endpoint_rejects_bad_input_with_oauth_errors() {
    let f = fixture().await;
    let good = basic(&f.client_id, &f.secret);

    // Wrong secret: 401 invalid_client with WWW-Authenticate.
    let (s, h, b) = send(
        &f.state,
        token_req(
            Some(&basic(&f.client_id, "wrong")),
            "grant_type=client_credentials",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&b)["error"], "invalid_client");
    assert!(h.get(header::WWW_AUTHENTICATE).is_some());
    // Unknown client and no credentials at all: the same.
    let (s, _, b) = send(
        &f.state,
        token_req(
            Some(&basic("cl_nobody", &f.secret)),
            "grant_type=client_credentials",
        ),
    )
    .await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let (s, _, b) = send(&f.state, token_req(None, "grant_type=client_credentials")).await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );

    // Unknown grant.
    let (s, _, b) = send(
        &f.state,
        token_req(Some(&good), "grant_type=password&username=a&password=b"),
    )
    .await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::BAD_REQUEST, "unsupported_grant_type".into())
    );
    // A scope the client may not have.
    let (s, _, b) = send(
        &f.state,
        token_req(
            Some(&good),
            "grant_type=client_credentials&scope=read%20admin",
        ),
    )
    .await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::BAD_REQUEST, "invalid_scope".into())
    );
    // Malformed: missing grant, repeated parameter, wrong content type, not UTF-8, two auth methods.
    let (s, _, b) = send(&f.state, token_req(Some(&good), "scope=read")).await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let (s, _, b) = send(
        &f.state,
        token_req(
            Some(&good),
            "grant_type=client_credentials&grant_type=client_credentials",
        ),
    )
    .await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let req = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, &good)
        .body(Body::from("{\"grant_type\":\"client_credentials\"}"))
        .expect("req");
    let (s, _, b) = send(&f.state, req).await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let (s, _, b) = send(
        &f.state,
        token_req(Some(&good), vec![0xff, 0xfe, b'=', 0x80]),
    )
    .await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        f.client_id, f.secret
    );
    let (s, _, b) = send(&f.state, token_req(Some(&good), body)).await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let (s, _, b) = send(
        &f.state,
        token_req(Some("Basic !!!notbase64"), "grant_type=client_credentials"),
    )
    .await;
    assert_eq!(
        (s, json(&b)["error"].clone()),
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );

    // Over 64 KiB: 413, still JSON.
    let big = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(70 * 1024)
    );
    let (s, _, b) = send(&f.state, token_req(Some(&good), big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(&b)["error"], "invalid_request");
}

#[tokio::test]
async fn jwks_has_cache_headers_and_etag_gives_304() {
    let f = fixture().await;
    let (s, h, b) = send(
        &f.state,
        Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=300");
    let etag = h[header::ETAG].clone();
    let v = json(&b);
    let key = &v["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "ES256");
    let req = Request::get("/.well-known/jwks.json")
        .header(header::IF_NONE_MATCH, etag.clone())
        .body(Body::empty())
        .expect("req");
    let (s, h, b) = send(&f.state, req).await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    assert!(b.is_empty());
    assert_eq!(h[header::ETAG], etag);
    let req = Request::get("/.well-known/jwks.json")
        .header(header::IF_NONE_MATCH, "\"other\"")
        .body(Body::empty())
        .expect("req");
    assert_eq!(send(&f.state, req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn discovery_health_and_metrics() {
    let f = fixture().await;
    let (s, _, b) = send(
        &f.state,
        Request::get("/.well-known/openid-configuration")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = json(&b);
    assert_eq!(v["issuer"], ISS);
    assert_eq!(v["jwks_uri"], format!("{ISS}/.well-known/jwks.json"));
    assert_eq!(v["token_endpoint"], format!("{ISS}/oauth2/token"));
    assert_eq!(
        v["grant_types_supported"],
        // Issue 18 adds token exchange (RFC 8693).
        serde_json::json!([
            "authorization_code",
            "client_credentials",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    assert_eq!(
        v["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        send(
            &f.state,
            Request::get("/healthz").body(Body::empty()).expect("req")
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        send(
            &f.state,
            Request::get("/readyz").body(Body::empty()).expect("req")
        )
        .await
        .0,
        StatusCode::OK
    );

    send(
        &f.state,
        token_req(
            Some(&basic(&f.client_id, &f.secret)),
            "grant_type=client_credentials",
        ),
    )
    .await;
    send(
        &f.state,
        token_req(
            Some(&basic(&f.client_id, "bad")),
            "grant_type=client_credentials",
        ),
    )
    .await;
    let (_, _, b) = send(
        &f.state,
        Request::get("/metrics").body(Body::empty()).expect("req"),
    )
    .await;
    let text = String::from_utf8(b).expect("utf8");
    assert!(
        text.contains("castellan_tokens_issued_total{alg=\"ES256\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("castellan_http_requests_total{route=\"/oauth2/token\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("castellan_http_requests_total{route=\"/oauth2/token\",status=\"401\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "castellan_keyring_info{{fingerprint=\"{}\"",
            f.state.fingerprint()
        )),
        "{text}"
    );
}

async fn admin_token(f: &Fixture) -> String {
    let (s, _, b) = send(
        &f.state,
        token_req(
            Some(&basic(&f.admin_id, &f.admin_secret)),
            "grant_type=client_credentials",
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    json(&b)["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn v1_requires_a_castellan_token_with_the_right_scope() {
    let f = fixture().await;
    // No token, garbage token.
    let (s, _, b) = send(
        &f.state,
        Request::get("/v1/sys/status")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&b)["error"]["code"], "unauthorized");
    let req = Request::get("/v1/sys/status")
        .header(header::AUTHORIZATION, "Bearer a.b.c")
        .body(Body::empty())
        .expect("req");
    assert_eq!(send(&f.state, req).await.0, StatusCode::UNAUTHORIZED);
    // A token for another audience (the svc client's tokens are for `api`) is refused.
    let (_, _, b) = send(
        &f.state,
        token_req(
            Some(&basic(&f.client_id, &f.secret)),
            "grant_type=client_credentials",
        ),
    )
    .await;
    let svc_token = json(&b)["access_token"].as_str().expect("t").to_owned();
    let req = Request::get("/v1/sys/status")
        .header(header::AUTHORIZATION, format!("Bearer {svc_token}"))
        .body(Body::empty())
        .expect("req");
    assert_eq!(send(&f.state, req).await.0, StatusCode::UNAUTHORIZED);

    let admin = admin_token(&f).await;
    let req = Request::get("/v1/sys/status")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::empty())
        .expect("req");
    let (s, _, b) = send(&f.state, req).await;
    assert_eq!(s, StatusCode::OK);
    let v = json(&b);
    assert_eq!(v["store"], "sqlite");
    assert_eq!(v["replica_id"], "r1");
    assert_eq!(v["keyring_fingerprint"], f.state.fingerprint());
    assert!(v["current_kid"].is_string());

    // Create a client through the API; it can get a token at once; a duplicate name is 409; bad body 400.
    let body = serde_json::json!({"name": "new", "scopes": ["x"]}).to_string();
    let req = Request::post("/v1/clients")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.clone()))
        .expect("req");
    let (s, _, b) = send(&f.state, req).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    let created = json(&b);
    let (id, secret) = (
        created["client_id"].as_str().expect("id"),
        created["client_secret"].as_str().expect("secret"),
    );
    let (s, _, _) = send(
        &f.state,
        token_req(Some(&basic(id, secret)), "grant_type=client_credentials"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let req = Request::post("/v1/clients")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("req");
    let (s, _, b) = send(&f.state, req).await;
    assert_eq!(
        (s, json(&b)["error"]["code"].clone()),
        (StatusCode::CONFLICT, "conflict".into())
    );
    let req = Request::post("/v1/clients")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": 5}"))
        .expect("req");
    let (s, _, b) = send(&f.state, req).await;
    assert_eq!(
        (s, json(&b)["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );

    // Delete it: its credentials stop working.
    let req = Request::delete(format!("/v1/clients/{id}"))
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::empty())
        .expect("req");
    assert_eq!(send(&f.state, req).await.0, StatusCode::NO_CONTENT);
    let (s, _, _) = send(
        &f.state,
        token_req(Some(&basic(id, secret)), "grant_type=client_credentials"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// The server remembers a verified access token (by its digest) until it expires or its key ring
/// changes; each request still checks the time and the scope, and a revoked key ends its tokens.
#[tokio::test]
async fn a_remembered_token_still_expires_and_dies_with_its_key() {
    let f = fixture().await;
    let get = |token: &str| {
        Request::get("/v1/sys/status")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("req")
    };
    let admin = admin_token(&f).await;
    for _ in 0..3 {
        assert_eq!(send(&f.state, get(&admin)).await.0, StatusCode::OK);
    }
    // A forged signature is not taken for the remembered token.
    let mut forged = admin.clone();
    let last = forged.pop().expect("char");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        send(&f.state, get(&forged)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The scope is checked on every request, remembered or not.
    let (_, _, b) = send(
        &f.state,
        token_req(
            Some(&basic(&f.client_id, &f.secret)),
            "grant_type=client_credentials&scope=read",
        ),
    )
    .await;
    let svc = json(&b)["access_token"].as_str().expect("token").to_owned();
    // (That token is for another audience: refused before it could be remembered, every time.)
    for _ in 0..2 {
        assert_eq!(send(&f.state, get(&svc)).await.0, StatusCode::UNAUTHORIZED);
    }

    // Past its expiry (900 s, plus the 60 s leeway), the remembered token is refused.
    f.clock.advance(901 + 60);
    let (s, _, b) = send(&f.state, get(&admin)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        json(&b)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{}",
        String::from_utf8_lossy(&b)
    );

    // A fresh token, remembered; then its key is replaced and revoked: the token stops working.
    let before = admin_token(&f).await;
    assert_eq!(send(&f.state, get(&before)).await.0, StatusCode::OK);
    let old_kid = jsonwebtoken::decode_header(&before)
        .expect("header")
        .kid
        .expect("kid");
    let req = Request::post("/v1/keys/rotate")
        .header(header::AUTHORIZATION, format!("Bearer {before}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"now": true}"#))
        .expect("req");
    let (s, _, b) = send(&f.state, req).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let after = admin_token(&f).await;
    assert_ne!(
        jsonwebtoken::decode_header(&after).expect("header").kid,
        Some(old_kid.clone())
    );
    let req = Request::post(format!("/v1/keys/{old_kid}/revoke"))
        .header(header::AUTHORIZATION, format!("Bearer {after}"))
        .body(Body::empty())
        .expect("req");
    let (s, _, b) = send(&f.state, req).await;
    assert!(s.is_success(), "{s}: {}", String::from_utf8_lossy(&b));
    assert_eq!(
        send(&f.state, get(&before)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&f.state, get(&after)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_client_created_elsewhere_is_found_without_waiting_for_refresh() {
    let f = fixture().await;
    // Created directly on the store (as the CLI or another replica would) after the state was loaded.
    let (s, b) = client_and_token(&f, new_client("late", &["x"], Some(60)), 86400).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["expires_in"], 60);
}

#[tokio::test]
async fn a_deleted_client_s_tokens_stop_working_at_once() {
    let f = fixture().await;
    let token = token_with_scopes(&f, "leaky", &["secrets:read"]).await;
    let (s, _, _) = secret_call(&f, "GET", "/v1/secrets", &token, None).await;
    assert_eq!(s, StatusCode::OK);
    let admin = admin_token(&f).await;
    let (s, _, _) = secret_call(&f, "DELETE", "/v1/clients/leaky", &admin, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // The token is still signed, unexpired and remembered as verified; its client is gone.
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets", &token, None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert!(
        json(&b)["error"]["message"]
            .as_str()
            .expect("message")
            .contains("no longer exists")
    );

    // Deleted on the store (the CLI, another replica): refused once this replica has refreshed.
    let token = token_with_scopes(&f, "elsewhere", &["secrets:read"]).await;
    assert!(
        f.state
            .store()
            .delete_client("elsewhere")
            .await
            .expect("delete")
    );
    f.state.refresh().await.expect("refresh");
    let (s, _, _) = secret_call(&f, "GET", "/v1/secrets", &token, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn clients_admin_gives_only_the_castellan_scopes_it_holds() {
    let f = fixture().await;
    let registrar =
        token_with_scopes(&f, "registrar", &["clients:admin", "secrets:read:team"]).await;
    let admin = admin_token(&f).await;
    let create = |token: &str, name: &str, scopes: &[&str]| {
        let body = serde_json::json!({"name": name, "scopes": scopes});
        let (token, f) = (token.to_owned(), &f);
        async move { secret_call(f, "POST", "/v1/clients", &token, Some(body)).await }
    };
    let cases: &[(&[&str], StatusCode)] = &[
        (&["invoices:read"], StatusCode::CREATED),
        (&["clients:admin"], StatusCode::CREATED),
        (&["secrets:read:team"], StatusCode::CREATED),
        (&["secrets:read:team/mqtt"], StatusCode::CREATED),
        (&["admin"], StatusCode::FORBIDDEN),
        (&["keys:admin"], StatusCode::FORBIDDEN),
        (&["pki:issue"], StatusCode::FORBIDDEN),
        (&["secrets:read"], StatusCode::FORBIDDEN),
        (&["secrets:read:teamx"], StatusCode::FORBIDDEN),
        (&["secrets:write:team"], StatusCode::FORBIDDEN),
        (&["invoices:read", "admin"], StatusCode::FORBIDDEN),
    ];
    for (i, (scopes, want)) in cases.iter().enumerate() {
        let (s, _, b) = create(&registrar, &format!("c{i}"), scopes).await;
        assert_eq!(s, *want, "{scopes:?}: {}", String::from_utf8_lossy(&b));
        if *want == StatusCode::FORBIDDEN {
            assert_eq!(json(&b)["error"]["code"], "forbidden");
        }
    }
    // Nothing refused was created; admin gives anything.
    let names: Vec<String> = castellan_server::clients::list_clients(f.state.store())
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(!names.iter().any(|n| n == "c4" || n == "c10"), "{names:?}");
    let (s, _, _) = create(&admin, "root2", &["admin"]).await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn importing_a_signing_key_takes_admin_not_just_keys_admin() {
    let f = fixture().await;
    let keys_admin = token_with_scopes(&f, "keyman", &["keys:admin"]).await;
    let (_, der) = castellan_core::token::SigningKey::generate(Alg::RS256, None).expect("key");
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()));
    let body = serde_json::json!({"pem": pem, "state": "retired"});
    let (s, _, b) = secret_call(
        &f,
        "POST",
        "/v1/keys/import",
        &keys_admin,
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&b));
    let (s, _, _) = secret_call(&f, "GET", "/v1/keys", &keys_admin, None).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "keys:admin still lists, rotates and revokes"
    );
    let admin = admin_token(&f).await;
    let (s, _, b) = secret_call(&f, "POST", "/v1/keys/import", &admin, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
}

#[tokio::test]
async fn a_token_never_outlives_the_maximum_in_force_now() {
    let f = fixture().await;
    // Created when the maximum was ten days; the server's maximum is now one day.
    let (s, b) = client_and_token(
        &f,
        new_client("old-policy", &["x"], Some(5 * 86400)),
        10 * 86400,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["expires_in"], 86400);
}

#[tokio::test]
async fn the_crl_is_rebuilt_before_next_update_by_the_lease_holder_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("t.db"))
        .await
        .expect("store");
    let (master, _) = MasterKey::generate().expect("mk");
    let master = Arc::new(master);
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    castellan_server::init::initialize(
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
    let settings = |replica: &str| Settings {
        issuer: ISS.into(),
        jwks_max_age_secs: 300,
        default_ttl_secs: 900,
        max_ttl_secs: 86400,
        replica_id: replica.into(),
        refresh_interval: Duration::from_secs(60),
        profiles: Arc::new(castellan_core::pki::Profiles::new(Vec::new()).expect("profiles")),
        crl_validity_secs: 3600,
        crl_url: None,
        rotation: castellan_server::config::Config::default()
            .rotation_policy()
            .expect("policy"),
        signin: Default::default(),
        cert_names: castellan_server::cert_names::CertNamePolicy::default(),
    };
    let a = AppState::load(store.clone(), master.clone(), clock.clone(), settings("a"))
        .await
        .expect("a");
    let b = AppState::load(store.clone(), master.clone(), clock.clone(), settings("b"))
        .await
        .expect("b");
    let ca_id = store.active_ca().await.expect("ca").expect("present").id;
    assert!(a.run_jobs().await.expect("jobs"), "a takes the lease");
    assert!(
        !b.run_jobs().await.expect("jobs"),
        "b does not run jobs while a holds the lease"
    );
    let first = store.latest_crl(&ca_id).await.expect("crl").expect("built");
    assert_eq!(first.next_update - first.this_update, 3600);
    // Before half the validity: kept. After: rebuilt with the next number.
    clock.advance(1700);
    a.run_jobs().await.expect("jobs");
    assert_eq!(
        store
            .latest_crl(&ca_id)
            .await
            .expect("crl")
            .expect("crl")
            .crl_number,
        first.crl_number
    );
    clock.advance(200);
    a.run_jobs().await.expect("jobs");
    let second = store.latest_crl(&ca_id).await.expect("crl").expect("crl");
    assert_eq!(second.crl_number, first.crl_number + 1);
    assert!(second.next_update > first.next_update);
    // a stops (its lease lapses): b takes over.
    clock.advance(91);
    assert!(
        b.run_jobs().await.expect("jobs"),
        "b takes over an expired lease"
    );
}

// ---- /v1/secrets --------------------------------------------------------------------------------

/// A client with `scopes`, and an access token for it.
async fn token_with_scopes(f: &Fixture, name: &str, scopes: &[&str]) -> String {
    let (s, b) = client_and_token(f, new_client(name, scopes, None), 86400).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["access_token"].as_str().expect("token").to_owned()
}

fn new_client(name: &str, scopes: &[&str], token_ttl_secs: Option<i64>) -> NewClient {
    NewClient {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        audience: None,
        token_ttl_secs,
        app: None,
        cert_names: Vec::new(),
    }
}

/// A client created on the store directly (as the CLI or another replica would) when the maximum
/// token lifetime was `max_ttl_secs`, and the token endpoint's answer to its credentials.
async fn client_and_token(f: &Fixture, req: NewClient, max_ttl_secs: i64) -> (StatusCode, Value) {
    let created =
        castellan_server::clients::create_client(f.state.store(), req, max_ttl_secs, f.clock.now())
            .await
            .expect("client");
    let (s, _, b) = send(
        &f.state,
        token_req(
            Some(&basic(&created.client.client_id, &created.client_secret)),
            "grant_type=client_credentials",
        ),
    )
    .await;
    (s, json(&b))
}

async fn secret_call(
    f: &Fixture,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    };
    send(&f.state, req.expect("request")).await
}

#[tokio::test]
async fn secrets_are_versioned_scoped_and_never_stored_in_the_clear() {
    let f = fixture().await;
    let reader = token_with_scopes(&f, "reader", &["secrets:read"]).await;
    let writer = token_with_scopes(&f, "writer", &["secrets:write"]).await;
    let other = token_with_scopes(&f, "other", &["pki:issue"]).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let marker = format!("pw-{}", hex::encode(rand_bytes()));
    let binary: Vec<u8> = [&[0u8, 0xff, 0xfe][..], marker.as_bytes()].concat();

    // Scopes: write needs secrets:write, read needs secrets:read; neither implies the other.
    let put = |v: Value| Some(v);
    let (s, _, _) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/mqtt/pw",
        &other,
        put(serde_json::json!({"value": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/mqtt/pw",
        &reader,
        put(serde_json::json!({"value": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, _, b) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/mqtt/pw",
        &writer,
        put(serde_json::json!({"value": marker})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["version"], 1);
    assert_eq!(json(&b)["name"], "mqtt/pw");
    assert!(
        !String::from_utf8_lossy(&b).contains(&marker),
        "a write does not echo the value"
    );
    let (s, _, b) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/mqtt/pw",
        &writer,
        put(serde_json::json!({"value_base64": b64.encode(&binary)})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["version"], 2);

    for t in [&writer, &other] {
        let (s, _, _) = secret_call(&f, "GET", "/v1/secrets/mqtt/pw", t, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (s, h, b) = secret_call(&f, "GET", "/v1/secrets/mqtt/pw", &reader, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let v = json(&b);
    assert_eq!(v["version"], 2);
    assert_eq!(
        b64.decode(v["value_base64"].as_str().expect("b64"))
            .expect("decode"),
        binary
    );
    assert!(
        v.get("value").is_none(),
        "bytes that are not UTF-8 have no text form: {v}"
    );
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets/mqtt/pw?version=1", &reader, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["value"], marker.as_str());
    assert_eq!(json(&b)["value_base64"], b64.encode(&marker));

    // Check-and-set: a stale writer is refused and nothing is written; the right version goes through.
    let (s, _, b) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/mqtt/pw",
        &writer,
        put(serde_json::json!({"value": "stale", "cas": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&b));
    assert!(
        json(&b)["error"]["message"]
            .as_str()
            .expect("m")
            .contains("version 2")
    );
    let (s, _, b) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/mqtt/pw",
        &writer,
        put(serde_json::json!({"value": "fresh", "cas": 2})),
    )
    .await;
    assert_eq!(
        (s, json(&b)["version"].clone()),
        (StatusCode::OK, Value::from(3))
    );
    let (s, _, _) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/app/new",
        &writer,
        put(serde_json::json!({"value": "v", "cas": 0})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/app/new",
        &writer,
        put(serde_json::json!({"value": "v", "cas": 0})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "cas 0 means: must not exist yet");

    // The list names secrets and versions, never a value.
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets", &reader, None).await;
    assert_eq!(s, StatusCode::OK);
    let list = json(&b);
    assert_eq!(list["secrets"][0]["name"], "app/new");
    assert_eq!(list["secrets"][1]["name"], "mqtt/pw");
    assert_eq!(list["secrets"][1]["version"], 3);
    assert_eq!(list["secrets"][1]["versions"], 3);
    assert!(!String::from_utf8_lossy(&b).contains("fresh"));

    // The value is nowhere in the store's files in the clear (database and write-ahead log).
    for entry in std::fs::read_dir(f._dir.path()).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        for needle in [marker.as_bytes(), &binary[..]] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext in the store"
            );
        }
    }

    // Only the newest 10 versions are kept.
    for i in 0..10 {
        let (s, _, _) = secret_call(
            &f,
            "PUT",
            "/v1/secrets/mqtt/pw",
            &writer,
            put(serde_json::json!({"value": format!("v{i}")})),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _, _) = secret_call(&f, "GET", "/v1/secrets/mqtt/pw?version=3", &reader, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "version 3 of 13 was destroyed");
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets/mqtt/pw?version=4", &reader, None).await;
    assert_eq!(
        (s, json(&b)["value"].clone()),
        (StatusCode::OK, Value::from("v0"))
    );

    // Delete destroys every version.
    let (s, _, _) = secret_call(&f, "DELETE", "/v1/secrets/mqtt/pw", &reader, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = secret_call(&f, "DELETE", "/v1/secrets/mqtt/pw", &writer, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for uri in ["/v1/secrets/mqtt/pw", "/v1/secrets/mqtt/pw?version=13"] {
        let (s, _, b) = secret_call(&f, "GET", uri, &reader, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(json(&b)["error"]["code"], "not_found");
    }
    let (s, _, _) = secret_call(&f, "DELETE", "/v1/secrets/mqtt/pw", &writer, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Written again, it goes on after its last version: `cas: 0` (it does not exist) succeeds, and
    // version 1 (an old value's number) still names nothing.
    let (s, _, b) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/mqtt/pw",
        &writer,
        Some(serde_json::json!({"value": "new life", "cas": 0})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["version"], 14);
    let (s, _, _) = secret_call(&f, "GET", "/v1/secrets/mqtt/pw?version=1", &reader, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

fn rand_bytes() -> [u8; 12] {
    let mut b = [0u8; 12];
    aws_lc_rs::rand::fill(&mut b).expect("rand");
    b
}

#[tokio::test]
async fn bad_secret_input_is_refused_with_json_and_writes_nothing() {
    let f = fixture().await;
    let writer = token_with_scopes(&f, "writer", &["secrets:write", "secrets:read"]).await;
    let big = "x".repeat(castellan_core::secret_store::MAX_VALUE_BYTES + 1);
    let cases: Vec<(&str, Value, StatusCode)> = vec![
        (
            "/v1/secrets/a/../b",
            serde_json::json!({"value": "v"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/secrets/a%20b",
            serde_json::json!({"value": "v"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/secrets/ok",
            serde_json::json!({"value": "v", "value_base64": "dg=="}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/secrets/ok",
            serde_json::json!({}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/secrets/ok",
            serde_json::json!({"value": ""}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/secrets/ok",
            serde_json::json!({"value": big}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/secrets/ok",
            serde_json::json!({"value_base64": "not base64!"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/secrets/ok",
            serde_json::json!({"value": "v", "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/secrets/ok",
            serde_json::json!({"value": "v", "cas": -1}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (uri, body, want) in cases {
        let (s, h, b) = secret_call(&f, "PUT", uri, &writer, Some(body.clone())).await;
        assert_eq!(s, want, "{uri} {body}: {}", String::from_utf8_lossy(&b));
        assert_eq!(h[header::CONTENT_TYPE], "application/json", "{uri}");
        assert!(json(&b)["error"]["message"].is_string(), "{uri}");
    }
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets", &writer, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        json(&b)["secrets"],
        serde_json::json!([]),
        "nothing was written"
    );
    for uri in ["/v1/secrets/ok?version=abc", "/v1/secrets/ok?other=1"] {
        let (s, _, _) = secret_call(&f, "GET", uri, &writer, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
    }
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_name_does_not_open() {
    let f = fixture().await;
    let token = token_with_scopes(&f, "rw", &["secrets:read", "secrets:write"]).await;
    let (s, _, _) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/a",
        &token,
        Some(serde_json::json!({"value": "alpha-secret"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Someone with write access to the database copies a's ciphertext under the name b.
    let store = f.state.store();
    let mut row = store.secret("a", None).await.expect("get").expect("row");
    row.name = "b".into();
    store.add_secret_version(&row, 10).await.expect("copy");
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets/b", &token, None).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert!(!String::from_utf8_lossy(&b).contains("alpha"));
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets/a", &token, None).await;
    assert_eq!(
        (s, json(&b)["value"].clone()),
        (StatusCode::OK, Value::from("alpha-secret"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_without_cas_each_get_their_own_version() {
    let f = Arc::new(fixture().await);
    let token = Arc::new(token_with_scopes(&f, "rw", &["secrets:read", "secrets:write"]).await);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (f, token) = (f.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let (s, _, b) = secret_call(
                &f,
                "PUT",
                "/v1/secrets/shared",
                &token,
                Some(serde_json::json!({"value": format!("w{i}")})),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
            json(&b)["version"].as_i64().expect("version")
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("task"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=16).collect::<Vec<i64>>());
}

#[tokio::test]
async fn prefix_scopes_confine_a_client_to_its_own_secrets() {
    let f = fixture().await;
    let admin = admin_token(&f).await;
    for name in ["mqtt/broker", "mqtt/app", "mqttx/other", "app/db"] {
        let (s, _, _) = secret_call(
            &f,
            "PUT",
            &format!("/v1/secrets/{name}"),
            &admin,
            Some(serde_json::json!({"value": format!("v-{name}")})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{name}");
    }
    // The broker's agent: read under mqtt/ only, write nothing.
    let broker = token_with_scopes(&f, "broker", &["secrets:read:mqtt"]).await;
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets/mqtt/broker", &broker, None).await;
    assert_eq!(
        (s, json(&b)["value"].clone()),
        (StatusCode::OK, Value::from("v-mqtt/broker"))
    );
    for name in ["mqttx/other", "app/db", "nonexistent"] {
        let (s, _, b) = secret_call(&f, "GET", &format!("/v1/secrets/{name}"), &broker, None).await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "{name}: a name outside the prefix is refused, existing or not"
        );
        assert!(!String::from_utf8_lossy(&b).contains("v-"), "{name}");
    }
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets", &broker, None).await;
    assert_eq!(s, StatusCode::OK);
    let listed: Vec<String> = json(&b)["secrets"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(
        listed,
        ["mqtt/app", "mqtt/broker"],
        "the list shows only what the token may read"
    );
    let (s, _, _) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/mqtt/broker",
        &broker,
        Some(serde_json::json!({"value": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "read does not imply write");

    // A writer confined to app/: writes and deletes there only.
    let app = token_with_scopes(&f, "app-writer", &["secrets:write:app"]).await;
    let (s, _, _) = secret_call(
        &f,
        "PUT",
        "/v1/secrets/app/db",
        &app,
        Some(serde_json::json!({"value": "new"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for (method, body) in [
        ("PUT", Some(serde_json::json!({"value": "x"}))),
        ("DELETE", None),
    ] {
        let (s, _, _) = secret_call(&f, method, "/v1/secrets/mqtt/broker", &app, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method}");
    }
    let (s, _, _) = secret_call(&f, "GET", "/v1/secrets", &app, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no read scope at all: no list");
    let (s, _, _) = secret_call(&f, "DELETE", "/v1/secrets/app/db", &app, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// docs/api.md names every route of the router (read from the source, so a new route cannot be
/// forgotten there).
#[test]
fn every_route_is_documented() {
    // Every module of the HTTP side, so a route in a new one cannot be forgotten either.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut source = String::new();
    let mut dirs = vec![dir];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/http") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                source += &std::fs::read_to_string(&path).expect("read");
            }
        }
    }
    let doc = include_str!("../../../../docs/api.md");
    let mut routes = Vec::new();
    for (i, _) in source.match_indices(".route(") {
        let rest = &source[i + ".route(".len()..];
        let start = rest.find('"').expect("a path literal") + 1;
        let end = start + rest[start..].find('"').expect("closing quote");
        routes.push(rest[start..end].to_owned());
    }
    assert!(routes.len() > 20, "found {routes:?}");
    // The doc writes `{name}` for the wildcard `{*name}`.
    for r in routes {
        let shown = r.replace("{*", "{");
        assert!(
            doc.contains(&format!("{shown}`")),
            "docs/api.md does not document {r}"
        );
    }
}

/// Arbitrary requests against every route (the route's own method or another one; hostile path
/// segments; arbitrary bytes, or JSON built from the API's own field names with values of any type; no
/// token, a garbage one or the admin's): the server never answers 500, and every error answer is JSON
/// that names an error.
#[test]
fn no_request_makes_the_api_fail_or_answer_an_error_without_json() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let f = rt.block_on(fixture());
    let admin = rt.block_on(admin_token(&f));
    let routes: &[(&str, &str)] = &[
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/.well-known/openid-configuration"),
        ("POST", "/oauth2/token"),
        ("GET", "/readyz"),
        ("GET", "/v1/sys/status"),
        ("GET", "/v1/clients"),
        ("POST", "/v1/clients"),
        ("DELETE", "/v1/clients/{}"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/keys/plan"),
        ("POST", "/v1/keys/import"),
        ("POST", "/v1/keys/{}/revoke"),
        ("POST", "/v1/pki/issue/{}"),
        ("POST", "/v1/pki/sign/{}"),
        ("GET", "/v1/pki/ca"),
        ("POST", "/v1/pki/revoke"),
        ("GET", "/v1/pki/certs?{}"),
        ("GET", "/v1/pki/crl"),
        ("GET", "/v1/secrets"),
        ("GET", "/v1/secrets/{}"),
        ("PUT", "/v1/secrets/{}"),
        ("DELETE", "/v1/secrets/{}"),
        ("GET", "/v1/secrets/app/{}?version=1"),
    ];
    let fields = [
        "value",
        "value_base64",
        "cas",
        "name",
        "scopes",
        "audience",
        "token_ttl_secs",
        "csr",
        "serial",
        "reason",
        "now",
        "pem",
        "state",
        "common_name",
        "dns_names",
        "ip_addresses",
        "uris",
        "ttl_secs",
        "key_type",
        "grant_type",
        "scope",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|x| serde_json::json!(x)),
        ".{0,40}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        )),
        Just(serde_json::Value::from("p-256")),
        Just(serde_json::Value::from("server")),
    ];
    let value = leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    let object = prop::collection::btree_map(prop::sample::select(fields.to_vec()), value, 0..5)
        .prop_map(|m| {
            serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                .to_string()
                .into_bytes()
        });
    let body = prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..200),
        object,
        "(grant_type=client_credentials|scope=[ -~]{0,20}|client_id=[ -~]{0,10})(&[a-z_]{1,10}=[ -~]{0,10}){0,3}"
            .prop_map(String::into_bytes),
    ];
    let segment = prop_oneof![
        "[a-z0-9._-]{1,12}",
        "[a-z]{1,6}/[a-z]{1,6}",
        Just("..".to_owned()),
        Just("%00".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("server".to_owned()),
        Just("expiring_within=-1".to_owned()),
        Just("expiring_within=99999999999999999999".to_owned()),
        "[a-zA-Z0-9%]{0,300}",
    ];
    let strategy = (
        prop::sample::select(routes.to_vec()),
        prop::option::weighted(
            0.15,
            prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ),
        segment,
        body,
        prop::sample::select(vec![0u8, 1, 2]),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &strategy,
            |((method, path), other_method, seg, body, auth, json_type)| {
                let uri = path.replace("{}", &seg);
                let mut b = Request::builder()
                    .method(other_method.unwrap_or(method))
                    .uri(&uri)
                    .header(
                        header::CONTENT_TYPE,
                        if json_type {
                            "application/json"
                        } else {
                            "application/x-www-form-urlencoded"
                        },
                    );
                match auth {
                    1 => b = b.header(header::AUTHORIZATION, format!("Bearer {admin}")),
                    2 => b = b.header(header::AUTHORIZATION, "Bearer e30.e30.AAAA"),
                    _ => {}
                }
                let Ok(req) = b.body(Body::from(body)) else {
                    return Ok(()); // a URI the HTTP layer itself refuses never reaches the router
                };
                let (status, headers, answer) = rt.block_on(send(&f.state, req));
                prop_assert!(
                    status != StatusCode::INTERNAL_SERVER_ERROR,
                    "{} {uri}: 500 {}",
                    other_method.unwrap_or(method),
                    String::from_utf8_lossy(&answer)
                );
                if status.is_client_error() || status.is_server_error() {
                    let ct = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
                    prop_assert!(
                        ct.starts_with("application/json") && !v["error"].is_null(),
                        "{} {uri}: {status} with {ct:?}: {:?}",
                        other_method.unwrap_or(method),
                        String::from_utf8_lossy(&answer)
                    );
                }
                Ok(())
            },
        )
        .expect("every answer is sound");
}

#[tokio::test]
async fn a_wrong_method_or_a_path_that_is_not_utf8_is_a_json_error() {
    let f = fixture().await;
    let (s, h, b) = send(
        &f.state,
        Request::post("/.well-known/jwks.json")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json(&b)["error"]["code"], "method_not_allowed");
    let allow = h
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(allow.contains("GET"), "Allow: {allow:?}");
    let admin = admin_token(&f).await;
    let (s, _, b) = secret_call(&f, "GET", "/v1/secrets/%80", &admin, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(json(&b)["error"]["code"], "invalid_request");
}

/// Issue 21 items 6 and 11: the `/v1` bearer check reads `typ` as the media type RFC 9068 allows
/// (`application/at+jwt`, any case) and refuses a `crit` header it does not understand (RFC 7515
/// §4.1.11), also when it is `null` or its name is escaped. The tokens are signed by a key imported
/// into the ring, so only the header differs from a token the server itself issues.
#[tokio::test]
async fn the_v1_bearer_check_reads_typ_as_a_media_type_and_refuses_crit() {
    let f = fixture().await;
    let (key, der) = castellan_core::token::SigningKey::generate(Alg::RS256, None).expect("key");
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()));
    let admin = admin_token(&f).await;
    let body = serde_json::json!({"pem": pem, "state": "retired"});
    let (s, _, b) = secret_call(&f, "POST", "/v1/keys/import", &admin, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let kid = json(&b)["kid"].as_str().expect("kid").to_owned();

    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = f.clock.now();
    let claims = serde_json::json!({
        "iss": ISS, "sub": f.admin_id, "aud": ISS, "exp": now + 300, "iat": now, "nbf": now,
        "jti": "t1", "client_id": f.admin_id, "scope": "admin",
    });
    let sign = |header: &str| {
        let input = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = key.sign(input.as_bytes()).expect("sign");
        format!("{input}.{}", b64(&sig))
    };
    let call = |token: String| {
        let f = &f;
        async move { secret_call(f, "GET", "/v1/keys", &token, None).await.0 }
    };
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "AT+JWT",
        "Application/At+Jwt",
    ] {
        let token = sign(&format!(r#"{{"alg":"RS256","kid":"{kid}","typ":"{typ}"}}"#));
        assert_eq!(call(token).await, StatusCode::OK, "typ {typ:?} is accepted");
    }
    for typ in ["JWT", "application/jwt", "at+jwt2", "xapplication/at+jwt"] {
        let token = sign(&format!(r#"{{"alg":"RS256","kid":"{kid}","typ":"{typ}"}}"#));
        assert_eq!(
            call(token).await,
            StatusCode::UNAUTHORIZED,
            "typ {typ:?} is refused"
        );
    }
    for crit in [
        r#""crit":["exp"]"#,
        r#""crit":null"#,
        r#""cr\u0069t":["exp"]"#,
    ] {
        let token = sign(&format!(
            r#"{{"alg":"RS256","kid":"{kid}","typ":"at+jwt",{crit},"exp":1}}"#
        ));
        assert_eq!(
            call(token).await,
            StatusCode::UNAUTHORIZED,
            "{crit} is refused"
        );
    }
}

/// Issue 21 item 5: deleting mirrors creating. `clients:admin` alone cannot delete a client holding
/// Castellan's own scopes it does not hold (the bootstrap admin, a `keys:admin` client), by id or by
/// name; it deletes application clients and those whose scopes it holds; `admin` deletes anything.
#[tokio::test]
async fn clients_admin_deletes_only_clients_whose_castellan_scopes_it_holds() {
    let f = fixture().await;
    let registrar = token_with_scopes(&f, "registrar", &["clients:admin"]).await;
    let make = |name: &str, scopes: &[&str]| {
        let req = new_client(name, scopes, None);
        let store = f.state.store().clone();
        let now = f.clock.now();
        async move {
            castellan_server::clients::create_client(&store, req, 86400, now)
                .await
                .expect("client")
                .client
                .client_id
        }
    };
    let keyman = make("keyman", &["keys:admin"]).await;
    let app = make("app", &["invoices:read"]).await;
    let peer = make("peer", &["clients:admin"]).await;
    let delete = |token: &str, who: &str| {
        let (token, uri, f) = (token.to_owned(), format!("/v1/clients/{who}"), &f);
        async move { secret_call(f, "DELETE", &uri, &token, None).await }
    };
    for who in [f.admin_id.as_str(), keyman.as_str(), "keyman"] {
        let (s, _, b) = delete(&registrar, who).await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "{who}: {}",
            String::from_utf8_lossy(&b)
        );
        assert_eq!(json(&b)["error"]["code"], "forbidden");
    }
    let store = f.state.store();
    assert!(
        store.client(&f.admin_id).await.expect("read").is_some(),
        "the admin remains"
    );
    assert!(
        store.client(&keyman).await.expect("read").is_some(),
        "keyman remains"
    );
    for who in [app.as_str(), "peer"] {
        let (s, _, b) = delete(&registrar, who).await;
        assert_eq!(
            s,
            StatusCode::NO_CONTENT,
            "{who}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    assert!(store.client(&app).await.expect("read").is_none());
    assert!(store.client(&peer).await.expect("read").is_none());
    let (s, _, _) = delete(&registrar, "nobody").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let admin = admin_token(&f).await;
    let (s, _, _) = delete(&admin, &keyman).await;
    assert_eq!(
        s,
        StatusCode::NO_CONTENT,
        "admin deletes a keys:admin client"
    );
}
