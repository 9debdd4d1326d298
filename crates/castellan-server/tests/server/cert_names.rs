//! Issue 21, item 4: what a `pki:issue` token may be issued. The attack cases (the API's own name, an
//! MQTT identity outside the client's patterns, `*.co.uk`) are refused with a clear error; a client's
//! patterns are intersected with the profile's; per-profile scopes; `--dev` keeps the default profiles
//! working; outside it a client without patterns is told which flag to use. The openssl CLI reads the
//! SANs of an issued certificate.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use castellan_core::envelope::MasterKey;
use castellan_core::pki::{Profile, Purpose};
use castellan_core::token::Alg;
use castellan_core::{Clock, SystemClock};
use castellan_server::cert_names::CertNamePolicy;
use castellan_server::http::router;
use castellan_server::init::InitOptions;
use castellan_server::state::AppState;
use castellan_store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::feed::settings;

/// The API's own name and address (its TLS names).
const OWN_NAME: &str = "castellan.corp.internal";
const OWN_IP: &str = "10.9.9.9";

struct Env {
    _dir: tempfile::TempDir,
    state: AppState,
    admin: String,
}

async fn env(dev: bool) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("n.db"))
        .await
        .expect("store");
    let (master, _) = MasterKey::generate().expect("mk");
    let out = castellan_server::init::initialize(
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
    let admin = out.admin.expect("admin");
    let mut s = settings(Duration::from_secs(60));
    // An MQTT broker profile as an operator would configure it.
    let mqtt = Profile {
        allowed_dns: vec!["*.mqtt.svc".into(), "**.svc.local".into()],
        allowed_ips: vec!["10.0.0.0/8".into()],
        allowed_common_names: vec!["*".into()],
        ..Profile::allow_all("mqtt", Purpose::Peer)
    };
    s.profiles = Arc::new(castellan_core::pki::Profiles::new(vec![mqtt]).expect("profiles"));
    s.cert_names = CertNamePolicy {
        dev,
        castellan_names: vec![OWN_NAME.into(), OWN_IP.into()],
        issue_castellan_names: false,
    };
    let state = AppState::load(store, Arc::new(master), Arc::new(SystemClock), s)
        .await
        .expect("state");
    let admin = token(&state, &admin.client_id, &admin.client_secret).await;
    Env {
        _dir: dir,
        state,
        admin,
    }
}

async fn send(
    state: &AppState,
    method: &str,
    path: &str,
    bearer: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn token(state: &AppState, id: &str, secret: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let req = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {auth}"))
        .body(Body::from("grant_type=client_credentials"))
        .expect("request");
    let resp = router(state.clone()).oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let b = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let v: Value = serde_json::from_slice(&b).expect("json");
    v["access_token"].as_str().expect("token").to_owned()
}

/// Creates a client through `POST /v1/clients` with `bearer` and returns a token for it.
async fn client(e: &Env, bearer: &str, name: &str, scopes: &[&str], cert_names: &[&str]) -> String {
    let (s, b) = send(
        &e.state,
        "POST",
        "/v1/clients",
        bearer,
        json!({"name": name, "scopes": scopes, "cert_names": cert_names}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let listed: Vec<String> = serde_json::from_value(b["cert_names"].clone()).expect("cert_names");
    assert_eq!(listed.len(), cert_names.len(), "{b}");
    token(
        &e.state,
        b["client_id"].as_str().expect("id"),
        b["client_secret"].as_str().expect("secret"),
    )
    .await
}

async fn issue(e: &Env, bearer: &str, profile: &str, body: Value) -> (StatusCode, Value) {
    send(
        &e.state,
        "POST",
        &format!("/v1/pki/issue/{profile}"),
        bearer,
        body,
    )
    .await
}

fn refused(got: &(StatusCode, Value), status: StatusCode, code: &str, words: &[&str]) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    let msg = got.1["error"]["message"].as_str().expect("message");
    for w in words {
        assert!(msg.contains(w), "`{w}` missing from: {msg}");
    }
}

/// The SANs of a PEM certificate, as the openssl CLI prints them.
fn openssl_sans(cert_pem: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, cert_pem).expect("write");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&path)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn a_client_is_issued_only_names_inside_its_patterns_and_the_profile() {
    let e = env(false).await;
    let app = client(
        &e,
        &e.admin,
        "sensor-app",
        &["pki:issue"],
        &["*.mqtt.svc", "ip:10.1.0.0/16"],
    )
    .await;

    let ok = issue(
        &e,
        &app,
        "mqtt",
        json!({"dns_names": ["s1.mqtt.svc"], "ip_addresses": ["10.1.2.3"]}),
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    let sans = openssl_sans(ok.1["cert_pem"].as_str().expect("cert"));
    assert!(sans.contains("DNS:s1.mqtt.svc"), "{sans}");
    assert!(sans.contains("IP Address:10.1.2.3"), "{sans}");
    assert!(
        !sans.contains("10.9.9.9") && !sans.contains(OWN_NAME),
        "{sans}"
    );

    // An MQTT identity outside the client's patterns, though the profile allows it: another
    // service's name, another block, another client's identity as the common name.
    refused(
        &issue(
            &e,
            &app,
            "mqtt",
            json!({"dns_names": ["billing.svc.local"]}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "name-not-allowed-for-client",
        &["billing.svc.local", "client `sensor-app`", "*.mqtt.svc"],
    );
    refused(
        &issue(&e, &app, "mqtt", json!({"ip_addresses": ["10.2.0.1"]})).await,
        StatusCode::BAD_REQUEST,
        "name-not-allowed-for-client",
        &["10.2.0.1", "10.1.0.0/16"],
    );
    refused(
        &issue(
            &e,
            &app,
            "mqtt",
            json!({"common_name": "emqx-admin", "dns_names": ["s1.mqtt.svc"]}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "name-not-allowed-for-client",
        &["emqx-admin"],
    );
    // `*.co.uk` from the built-in profile (which allows every name).
    refused(
        &issue(&e, &app, "server", json!({"dns_names": ["*.co.uk"]})).await,
        StatusCode::BAD_REQUEST,
        "name-not-allowed-for-client",
        &["*.co.uk"],
    );
    // Its own patterns never widen the profile.
    let wide = client(&e, &e.admin, "wide", &["pki:issue"], &["**.example.com"]).await;
    refused(
        &issue(&e, &wide, "mqtt", json!({"dns_names": ["a.example.com"]})).await,
        StatusCode::BAD_REQUEST,
        "san-not-allowed",
        &["profile `mqtt`"],
    );
    // A CSR is bounded the same way.
    let (_key, csr) =
        castellan_core::pki::new_key_and_csr(castellan_core::KeyType::P256, Some("s2.mqtt.svc"))
            .expect("csr");
    refused(
        &send(
            &e.state,
            "POST",
            "/v1/pki/sign/mqtt",
            &app,
            json!({"csr": csr, "dns_names": ["billing.svc.local"]}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "name-not-allowed-for-client",
        &["billing.svc.local"],
    );
}

#[tokio::test]
async fn the_apis_own_names_are_refused_to_everyone_admin_included() {
    let e = env(false).await;
    let greedy = client(
        &e,
        &e.admin,
        "greedy",
        &["pki:issue"],
        &["**.internal", "ip:10.0.0.0/8"],
    )
    .await;
    for (who, bearer) in [
        ("a client whose patterns cover it", &greedy),
        ("admin", &e.admin),
    ] {
        for body in [
            json!({"dns_names": [OWN_NAME]}),
            json!({"dns_names": ["*.corp.internal"]}),
            json!({"ip_addresses": [OWN_IP]}),
        ] {
            let got = issue(&e, bearer, "server", body.clone()).await;
            assert_eq!(got.0, StatusCode::BAD_REQUEST, "{who} {body}: {}", got.1);
            refused(
                &got,
                StatusCode::BAD_REQUEST,
                "name-reserved",
                &["own API", "pki.issue_castellan_names"],
            );
        }
    }
    // admin is bounded by the profile alone otherwise.
    let ok = issue(
        &e,
        &e.admin,
        "server",
        json!({"dns_names": ["anything.example"]}),
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
}

#[tokio::test]
async fn outside_dev_a_client_without_patterns_is_told_the_flag_and_in_dev_the_defaults_work() {
    let e = env(false).await;
    let bare = client(&e, &e.admin, "bare", &["pki:issue"], &[]).await;
    refused(
        &issue(&e, &bare, "server", json!({"dns_names": ["app.example"]})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        &["client `bare`", "--cert-name", "cert_names"],
    );

    let dev = env(true).await;
    let bare = client(&dev, &dev.admin, "bare", &["pki:issue"], &[]).await;
    for profile in ["server", "client", "peer"] {
        let got = issue(
            &dev,
            &bare,
            profile,
            json!({"dns_names": ["app.example"], "ip_addresses": ["127.0.0.1"]}),
        )
        .await;
        assert_eq!(got.0, StatusCode::OK, "{profile}: {}", got.1);
    }
    // Castellan's own names stay refused in --dev.
    refused(
        &issue(&dev, &bare, "server", json!({"dns_names": [OWN_NAME]})).await,
        StatusCode::BAD_REQUEST,
        "name-reserved",
        &[OWN_NAME],
    );
}

#[tokio::test]
async fn scopes_per_profile_and_patterns_given_only_within_ones_own() {
    let e = env(false).await;
    let only_client = client(
        &e,
        &e.admin,
        "devices",
        &["pki:issue:client"],
        &["**.devices.svc.local"],
    )
    .await;
    let ok = issue(
        &e,
        &only_client,
        "client",
        json!({"dns_names": ["d1.devices.svc.local"]}),
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    refused(
        &issue(
            &e,
            &only_client,
            "server",
            json!({"dns_names": ["d1.devices.svc.local"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        &["pki:issue:server"],
    );

    // A delegate (clients:admin and pki:issue, bounded to its team) gives narrower patterns only.
    let delegate = client(
        &e,
        &e.admin,
        "team-lead",
        &["clients:admin", "pki:issue"],
        &["**.team.svc.local"],
    )
    .await;
    client(
        &e,
        &delegate,
        "team-app",
        &["pki:issue"],
        &["a.team.svc.local"],
    )
    .await;
    for wider in ["*", "**.svc.local", "ip:10.0.0.0/8"] {
        let (s, b) = send(
            &e.state,
            "POST",
            "/v1/clients",
            &delegate,
            json!({"name": "escape", "scopes": ["pki:issue"], "cert_names": [wider]}),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{wider}: {b}");
    }
    let (s, b) = send(
        &e.state,
        "POST",
        "/v1/clients",
        &e.admin,
        json!({"name": "typo", "scopes": ["pki:issue"], "cert_names": ["dns:Bad Name"]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}
