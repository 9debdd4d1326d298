//! An axum service whose `/hello` needs a Castellan access token; `/healthz` is open.
//!
//! ```sh
//! castellan serve --dev &          # issuer and JWKS at http://127.0.0.1:8270
//! ISSUER=http://127.0.0.1:8270 AUDIENCE=http://127.0.0.1:8270 \
//! JWKS_URL=http://127.0.0.1:8270/.well-known/jwks.json \
//!   cargo run -p castellan-verify --example service
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/hello
//! ```
//!
//! Environment: `ISSUER`, `AUDIENCE`, `JWKS_URL` (required); `LISTEN` (default `127.0.0.1:8080`);
//! `INSECURE_ALLOW_HTTP=1` to fetch the JWKS over plain HTTP from a host that is not loopback.

use std::collections::HashMap;

use axum::routing::get;
use axum::{Extension, Json, Router};
use castellan_verify::{Claims, Verifier, VerifyLayer};

/// Everything the service reads from its environment, read in one place.
struct Settings {
    issuer: String,
    audience: String,
    jwks_url: String,
    listen: String,
    allow_http: bool,
}

impl Settings {
    fn from_env(env: &HashMap<String, String>) -> Result<Self, String> {
        let required = |name: &str| {
            env.get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| format!("{name} is not set"))
        };
        Ok(Self {
            issuer: required("ISSUER")?,
            audience: required("AUDIENCE")?,
            jwks_url: required("JWKS_URL")?,
            listen: env
                .get("LISTEN")
                .cloned()
                .unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
            allow_http: env.get("INSECURE_ALLOW_HTTP").is_some_and(|v| v == "1"),
        })
    }
}

fn app(verifier: Verifier) -> Router {
    Router::new()
        .route("/hello", get(hello))
        .route_layer(VerifyLayer::new(verifier).realm("example"))
        .route("/healthz", get(|| async { "ok\n" }))
}

async fn hello(Extension(claims): Extension<Claims>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "hello": claims.sub,
        "client_id": claims.client_id,
        "scopes": claims.scopes().collect::<Vec<_>>(),
        "expires": claims.exp,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_env(&std::env::vars().collect())?;
    let verifier = Verifier::builder(settings.issuer, settings.audience, settings.jwks_url)
        .insecure_allow_http(settings.allow_http)
        .build()?;
    // Not required (keys are fetched when the first token needs them), but a wrong URL shows at once.
    if let Err(e) = verifier.refresh().await {
        eprintln!("warning: {e}");
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(verifier)).await?;
    Ok(())
}
