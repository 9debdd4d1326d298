//! Three replicas on one PostgreSQL, a browser and an app whose requests go round-robin across them
//! (what a load balancer in front of the pods does): the person signs in once and is never sent back
//! to the login page, the refresh family rotates across replicas, and every token verifies against
//! every replica's JWKS. The founding incident, where each pod had its own key and session, is this
//! test failing.

use std::time::Duration;

use axum::http::StatusCode;
use castellan_core::{Clock, SystemClock};
use castellan_server::clients::{AppRegistration, NewClient, create_client};
use castellan_server::users::NewUser;
use castellan_store::testing;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use zeroize::Zeroizing;

use super::feed::{initialized, replica};
use super::signin::{Browser, VERIFIER, authorize_url, query_of, token};

const ISS: &str = "http://castellan.test";

fn verifies(jwks: &[u8], token: &str, aud: &str) -> Value {
    let jwks: Value = serde_json::from_slice(jwks).expect("jwks");
    let header = jsonwebtoken::decode_header(token).expect("header");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .expect("the token's kid is in this replica's JWKS");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
    let mut v = Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[ISS]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).expect("dk"), &v)
        .expect("verifies")
        .claims
}

#[tokio::test]
async fn postgres_three_replicas_one_sign_in_never_a_second_login_page() {
    let Some(url) = testing::fresh_postgres_database("signin_three_replicas").await else {
        return;
    };
    let (store, master) = initialized(&url).await;
    let now = SystemClock.now();
    let app = create_client(
        &store,
        NewClient {
            name: "web".into(),
            scopes: vec!["invoices:read".into()],
            audience: Some("api".into()),
            token_ttl_secs: None,
            cert_names: Vec::new(),
            app: Some(AppRegistration {
                grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                redirect_uris: vec!["https://app.example/cb".into()],
                ..Default::default()
            }),
        },
        86400,
        now,
    )
    .await
    .expect("app");
    let web = (app.client.client_id.clone(), app.client_secret.clone());
    castellan_server::users::create_user(
        &store,
        NewUser {
            name: "alice".into(),
            email: None,
            password: Some(Zeroizing::new("correct horse battery".into())),
            groups: vec![],
            claims: Default::default(),
            require_mfa: false,
        },
        &castellan_server::signin::Hashing::with_params(
            castellan_core::signin::password::HashParams::default(),
            1,
        ),
        now,
    )
    .await
    .expect("user");
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&url, &master, Duration::from_secs(60)).await);
    }
    let jwks: Vec<Vec<u8>> = replicas.iter().map(|r| r.jwks_bytes().to_vec()).collect();
    assert!(
        jwks.windows(2).all(|w| w[0] == w[1]),
        "one key ring: byte-identical JWKS"
    );

    // The login page from one replica, the form posted to the next.
    let mut b = Browser::default();
    let page = b.get(&replicas[0], &authorize_url(&web.0, &[])).await;
    assert_eq!(page.status, StatusCode::OK);
    let r = b
        .sign_in(&replicas[1], &page, "alice", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let first_code = query_of(&r.location())["code"].clone();

    let exchange = |code: String, i: usize| {
        let state = replicas[i % 3].clone();
        let web = web.clone();
        async move {
            token(
                &state,
                (&web.0, Some(&web.1)),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", "https://app.example/cb"),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await
        }
    };
    let t = exchange(first_code, 2).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let mut refresh = t.json()["refresh_token"].as_str().expect("rt").to_owned();

    // 100 authorization requests spread over the three: each answered from the session.
    let mut login_pages = 0;
    for i in 0..100 {
        let r = b.get(&replicas[i % 3], &authorize_url(&web.0, &[])).await;
        if r.status != StatusCode::SEE_OTHER {
            login_pages += 1;
            continue;
        }
        let code = query_of(&r.location())["code"].clone();
        // Every tenth code is exchanged on yet another replica, and its tokens checked everywhere.
        if i % 10 == 0 {
            let t = exchange(code, i + 1).await;
            assert_eq!(t.status, StatusCode::OK, "{}", t.body);
            let t = t.json();
            for j in &jwks {
                verifies(j, t["access_token"].as_str().expect("at"), "api");
                verifies(j, t["id_token"].as_str().expect("id"), &web.0);
            }
        }
    }
    assert_eq!(login_pages, 0, "sent back to the login page");

    // 30 refreshes of one family, round-robin.
    for i in 0..30 {
        let r = token(
            &replicas[i % 3],
            (&web.0, Some(&web.1)),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "refresh {i}: {}", r.body);
        let r = r.json();
        for j in &jwks {
            verifies(j, r["access_token"].as_str().expect("at"), "api");
        }
        refresh = r["refresh_token"].as_str().expect("rt").to_owned();
    }

    // Logout on one replica ends the session on the others at once.
    let out = b.get(&replicas[0], "/oauth2/logout").await;
    let csrf = out.field("csrf");
    let done = b
        .post(&replicas[0], "/oauth2/logout", &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    for r in &replicas {
        let page = b.get(r, &authorize_url(&web.0, &[])).await;
        assert_eq!(page.status, StatusCode::OK, "signed out everywhere");
    }
}
