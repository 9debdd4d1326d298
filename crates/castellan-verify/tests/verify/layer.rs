//! The axum layer: claims in the extensions on success, RFC 6750 challenges on failure.

use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use axum::{Extension, Router};
use castellan_core::token::Alg;
use castellan_verify::{Claims, Verifier, VerifyLayer};
use tower::ServiceExt;

async fn whoami(Extension(claims): Extension<Claims>) -> String {
    format!(
        "{} {} {}",
        claims.sub,
        claims.client_id.as_deref().unwrap_or_default(),
        claims.scopes().collect::<Vec<_>>().join(",")
    )
}

fn app(verifier: Verifier) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route_layer(VerifyLayer::new(verifier))
        .route("/open", get(|| async { "open" }))
}

async fn call(app: &Router, auth: &[&str]) -> (StatusCode, Option<String>, String) {
    let mut request = Request::get("/whoami");
    for value in auth {
        request = request.header(header::AUTHORIZATION, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        challenge,
        String::from_utf8(body.to_vec()).expect("utf8"),
    )
}

fn invalid(description: &str) -> Option<String> {
    Some(format!(
        "Bearer error=\"invalid_token\", error_description=\"{description}\""
    ))
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_its_claims() {
    let k = key(Alg::ES256);
    let server = JwksServer::start(jwks(&[&k])).await;
    let clock = clock();
    let app = app(builder(&server.url, &clock).build().expect("verifier"));
    let t = token(&k, &claims(NOW));
    let (status, challenge, body) = call(&app, &[&format!("Bearer {t}")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(challenge, None);
    assert_eq!(body, "cl_billing cl_billing invoices:read,invoices:write");
    // The scheme is case-insensitive.
    let (status, _, _) = call(&app, &[&format!("bearer {t}")]).await;
    assert_eq!(status, StatusCode::OK);
    // Routes outside the layer stay open.
    let open = app
        .clone()
        .oneshot(Request::get("/open").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(open.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_or_other_scheme_gets_a_bare_bearer_challenge() {
    let k = key(Alg::EdDSA);
    let server = JwksServer::start(jwks(&[&k])).await;
    let clock = clock();
    let app = app(builder(&server.url, &clock).build().expect("verifier"));
    for auth in [&[][..], &["Basic Y2xpZW50OnNlY3JldA=="][..]] {
        let (status, challenge, _) = call(&app, auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{auth:?}");
    }
}

#[tokio::test]
async fn invalid_tokens_get_invalid_token_with_a_description() {
    let (k, stranger) = (key(Alg::RS256), key(Alg::RS256));
    let server = JwksServer::start(jwks(&[&k])).await;
    let clock = clock();
    let app = app(builder(&server.url, &clock).build().expect("verifier"));
    let mut expired = claims(NOW);
    expired.exp = NOW - 3600;
    let mut wrong_aud = claims(NOW);
    wrong_aud.aud = "someone-else".into();
    let forged = sign_parts(&stranger, &header_for(&k), &claims_json(NOW));
    let cases = [
        (token(&k, &expired), "token expired"),
        (token(&k, &wrong_aud), "wrong audience"),
        (forged, "invalid signature"),
        (token(&stranger, &claims(NOW)), "unknown signing key"),
        ("not-a-jwt".to_owned(), "malformed token"),
        ("A".repeat(10_000), "token too large"),
    ];
    for (t, description) in cases {
        let (status, challenge, body) = call(&app, &[&format!("Bearer {t}")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{description}");
        assert_eq!(challenge, invalid(description));
        assert!(body.is_empty(), "no details beyond the header");
    }
    // Syntax the RFC 6750 b64token grammar does not allow, and an empty token.
    for auth in ["Bearer", "Bearer    ", "Bearer a\"b", "Bearer a b"] {
        let (status, challenge, _) = call(&app, &[auth]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth}");
        assert_eq!(challenge, invalid("malformed token"), "{auth}");
    }
    // Two Authorization headers: invalid_request, 400.
    let t = token(&k, &claims(NOW));
    let (status, challenge, _) =
        call(&app, &[&format!("Bearer {t}"), &format!("Bearer {t}")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        challenge.as_deref(),
        Some(
            "Bearer error=\"invalid_request\", error_description=\"more than one Authorization header\""
        )
    );
}

#[tokio::test]
async fn realm_is_included_and_unreachable_keys_are_a_503() {
    let k = key(Alg::ES256);
    let server = JwksServer::start(jwks(&[&k])).await;
    server.set_status(500);
    let clock = clock();
    let verifier = builder(&server.url, &clock).build().expect("verifier");
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route_layer(VerifyLayer::new(verifier).realm("bill\"ing"));
    let (status, challenge, _) = call(&app, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"billing\""));
    // The token may be fine; the service cannot tell without keys.
    let t = token(&k, &claims(NOW));
    let response = app
        .clone()
        .oneshot(
            Request::get("/whoami")
                .header(header::AUTHORIZATION, format!("Bearer {t}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
}
