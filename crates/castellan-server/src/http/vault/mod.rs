//! The Vault-shaped API (issue 20): the part of HashiCorp Vault's HTTP API that External Secrets,
//! cert-manager, Spring Cloud Vault, hvac and scripts use, answered over Castellan's own use cases
//! (secrets, PKI, clients, trusted issuers). It holds no policy: scopes, name bounds and verification
//! are the service layer's, exactly as for the native `/v1` API.
//!
//! Which requests are Vault's (docs/vault-compat.md): with `vault.path_prefix` set, everything under
//! `{prefix}/v1/`. With the default (no prefix) the paths are shared with the native API, and a
//! request under `/v1/` is Vault's when it carries `X-Vault-Token` or `X-Vault-Request` (Vault's
//! clients send one on every request that needs a token), or when its path is one the native API does
//! not have (`auth/...`, `sys/health`, `sys/mounts`, the KV mount, the PKI mount's public paths).
//! Everything else is native: a native client (Bearer token) is never answered in Vault's shape, and a
//! Vault client never in the native one.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ServiceError;
use crate::state::AppState;
use crate::vault_tokens::{self, VaultSettings};

mod auth;
mod kv;
mod pki;
mod sys;

pub use crate::config::vault::NATIVE_AREAS;

/// Where a request goes: `None` for the native API, else the Vault path after `/v1/` (still
/// percent-encoded).
fn vault_path<'a>(v: &VaultSettings, headers: &HeaderMap, path: &'a str) -> Option<&'a str> {
    if !v.enabled {
        return None;
    }
    let rest = path
        .strip_prefix(v.path_prefix.as_str())?
        .strip_prefix("/v1/")?;
    if !v.path_prefix.is_empty()
        || headers.contains_key("x-vault-token")
        || headers.contains_key("x-vault-request")
    {
        return Some(rest);
    }
    let first = rest.split('/').next().unwrap_or_default();
    let vault_only = first == "auth"
        || rest == "sys/health"
        || rest == "sys/seal-status"
        || rest == "sys/mounts"
        || rest.starts_with("sys/internal/ui/mounts/")
        || (first == v.kv_mount && !NATIVE_AREAS.contains(&first))
        || (first == v.pki_mount && !NATIVE_AREAS.contains(&first))
        || pki::is_public_path(v, rest);
    vault_only.then_some(rest)
}

/// The middleware in front of the router: Vault's requests are answered here, the rest passed on.
pub(crate) async fn dispatch(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let rest =
        vault_path(state.vault().settings(), req.headers(), req.uri().path()).map(str::to_owned);
    let Some(rest) = rest else {
        return next.run(req).await;
    };
    let resp = match handle(&state, req, &rest).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics().request("vault", resp.status().as_u16());
    resp
}

/// A Vault request, parsed: method (`LIST` also for `GET ?list=true`), decoded path segments, query,
/// headers and body.
pub(crate) struct VaultRequest {
    pub(crate) method: Method,
    pub(crate) segments: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: axum::body::Bytes,
}

impl VaultRequest {
    /// The JSON body as `T` (an empty body is `{}`), strictly.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, VaultError> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body)
            .map_err(|e| VaultError::bad_request(format!("the request body: {e}")))
    }

    /// A query parameter.
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the method is a write (Vault's clients send POST or PUT alike).
    pub(crate) fn is_write(&self) -> bool {
        self.method == Method::POST || self.method == Method::PUT
    }
}

/// Decodes one path: percent-decoded as a whole (so `%2F` is a `/`, exactly as Vault reads it), UTF-8
/// strictly, split on `/`.
fn segments(rest: &str) -> Result<Vec<String>, VaultError> {
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| VaultError::bad_request("the path is not UTF-8".to_owned()))?;
    Ok(decoded.split('/').map(str::to_owned).collect())
}

async fn handle(state: &AppState, req: Request, rest: &str) -> Result<Response, VaultError> {
    let segments = segments(rest)?;
    let (parts, body) = req.into_parts();
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let body = axum::body::to_bytes(body, super::MAX_BODY)
        .await
        .map_err(|_| {
            VaultError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            )
        })?;
    let mut method = parts.method;
    if method == Method::GET && query.iter().any(|(k, v)| k == "list" && v == "true") {
        method = Method::from_bytes(b"LIST").map_err(|_| VaultError::internal())?;
    }
    let r = VaultRequest {
        method,
        segments,
        query,
        headers: parts.headers,
        body,
    };
    let v = state.vault().settings();
    let segs: Vec<&str> = r.segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["sys", ..] => sys::route(state, &r, &segs[1..]).await,
        ["auth", ..] => auth::route(state, &r, v, &segs[1..]).await,
        [m, rest @ ..] if *m == v.kv_mount => kv::route(state, &r, rest).await,
        [m, rest @ ..] if *m == v.pki_mount => pki::route(state, &r, rest).await,
        _ => Err(VaultError::no_route(rest)),
    }
}

/// The caller of a Vault request: its `X-Vault-Token` (or `Authorization: Bearer`), live, and the
/// claims it acts with. Anything else is Vault's 403 `permission denied`.
pub(crate) async fn caller(
    state: &AppState,
    r: &VaultRequest,
) -> Result<
    (
        std::sync::Arc<castellan_store::VaultTokenRow>,
        std::sync::Arc<castellan_core::token::AccessClaims>,
    ),
    VaultError,
> {
    let token = r
        .headers
        .get("x-vault-token")
        .or_else(|| r.headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
        .unwrap_or_default();
    let row = vault_tokens::lookup(state, token)
        .await?
        .ok_or_else(|| VaultError::forbidden("permission denied".to_owned()))?;
    let claims = vault_tokens::claims(state, &row).await?.ok_or_else(|| {
        VaultError::forbidden("permission denied: the token's client no longer exists".to_owned())
    })?;
    Ok((row, claims))
}

/// Vault's answer around `data`.
pub(crate) fn data_response(data: Value) -> Response {
    envelope(data, Value::Null)
}

/// Vault's answer around `data`, serialized straight from its type (the KV read, a hot path).
pub(crate) fn typed_response<T: serde::Serialize>(data: &T) -> Response {
    #[derive(serde::Serialize)]
    struct Envelope<'a, T> {
        request_id: String,
        lease_id: &'static str,
        renewable: bool,
        lease_duration: i64,
        data: &'a T,
        wrap_info: Option<()>,
        warnings: Option<()>,
        auth: Option<()>,
    }
    let body = Envelope {
        request_id: castellan_core::secret::random_id("", 16).unwrap_or_default(),
        lease_id: "",
        renewable: false,
        lease_duration: 0,
        data,
        wrap_info: None,
        warnings: None,
        auth: None,
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// Vault's answer: the fields every response carries, `data` and `auth`.
pub(crate) fn envelope(data: Value, auth: Value) -> Response {
    let request_id = castellan_core::secret::random_id("", 16).unwrap_or_default();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "request_id": request_id,
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": data,
            "wrap_info": null,
            "warnings": null,
            "auth": auth,
        })),
    )
        .into_response()
}

/// RFC 3339 in UTC with nanoseconds, as Vault writes times.
pub(crate) fn vault_time(unix: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_nanos(t).to_string()
}

/// An error in Vault's shape: `{"errors": [...]}` with Vault's status codes.
#[derive(Debug)]
pub(crate) struct VaultError {
    status: StatusCode,
    errors: Vec<String>,
}

impl VaultError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![message.into()],
        }
    }

    pub(crate) fn bad_request(message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn forbidden(message: String) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// Vault's 404 for a secret that is not there: no message at all.
    pub(crate) fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            errors: Vec::new(),
        }
    }

    /// A path outside the subset Castellan answers.
    pub(crate) fn no_route(path: &str) -> Self {
        let shown: String = path
            .chars()
            .take(200)
            .collect::<String>()
            .escape_default()
            .to_string();
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no handler for route \"{shown}\". route entry not found."),
        )
    }

    /// A known path with a method it does not take, or an operation Castellan does not offer.
    pub(crate) fn unsupported() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "1 error occurred:\n\t* unsupported operation\n\n",
        )
    }

    pub(crate) fn unsupported_because(why: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("1 error occurred:\n\t* unsupported operation: {why}\n\n"),
        )
    }

    pub(crate) fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(json!({"errors": self.errors}))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<ServiceError> for VaultError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(_) => VaultError::not_found(),
            // Vault answers a failed check-and-set with 400.
            ServiceError::Precondition(m) => VaultError::bad_request(format!(
                "check-and-set parameter did not match the current version: {m}"
            )),
            ServiceError::Forbidden(m) => VaultError::forbidden(format!("permission denied: {m}")),
            other => {
                // The native API's mapping decides the status and a message safe to show.
                let api = super::ApiError::from(other);
                let status = match api.status() {
                    StatusCode::CONFLICT => StatusCode::BAD_REQUEST,
                    s => s,
                };
                VaultError::new(status, api.message().to_owned())
            }
        }
    }
}

impl From<super::ApiError> for VaultError {
    fn from(api: super::ApiError) -> Self {
        let status = match api.status() {
            StatusCode::UNAUTHORIZED => StatusCode::FORBIDDEN,
            s => s,
        };
        VaultError::new(status, api.message().to_owned())
    }
}

/// An empty 204, as Vault answers writes that return nothing.
pub(crate) fn no_content() -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_times_are_rfc3339_utc() {
        assert_eq!(vault_time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(vault_time(1_700_000_000), "2023-11-14T22:13:20.000000000Z");
        assert_eq!(vault_time(951_782_400), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn native_requests_stay_native_and_vault_requests_are_told_apart() {
        let v = VaultSettings::default();
        let none = HeaderMap::new();
        let mut vault = HeaderMap::new();
        vault.insert("x-vault-token", "t".parse().unwrap());
        assert_eq!(vault_path(&v, &none, "/v1/pki/issue/server"), None);
        assert_eq!(vault_path(&v, &none, "/v1/secrets/a"), None);
        assert_eq!(vault_path(&v, &none, "/v1/sys/status"), None);
        assert_eq!(
            vault_path(&v, &vault, "/v1/pki/issue/server"),
            Some("pki/issue/server")
        );
        assert_eq!(
            vault_path(&v, &none, "/v1/secret/data/a"),
            Some("secret/data/a")
        );
        assert_eq!(vault_path(&v, &none, "/v1/sys/health"), Some("sys/health"));
        assert_eq!(
            vault_path(&v, &none, "/v1/auth/approle/login"),
            Some("auth/approle/login")
        );
        assert_eq!(vault_path(&v, &none, "/v1/pki/ca/pem"), Some("pki/ca/pem"));
        for native in [
            "/v1/pki/crl",
            "/v1/pki/ca",
            "/v1/pki/crl.pem",
            "/v1/pki/certs",
            "/v1/pki/revoke",
        ] {
            assert_eq!(vault_path(&v, &none, native), None, "{native}");
        }
        assert_eq!(vault_path(&v, &vault, "/oauth2/token"), None);
        let prefixed = VaultSettings {
            path_prefix: "/vault".into(),
            ..VaultSettings::default()
        };
        assert_eq!(vault_path(&prefixed, &vault, "/v1/pki/issue/server"), None);
        assert_eq!(
            vault_path(&prefixed, &none, "/vault/v1/pki/issue/server"),
            Some("pki/issue/server")
        );
        let off = VaultSettings {
            enabled: false,
            ..VaultSettings::default()
        };
        assert_eq!(vault_path(&off, &vault, "/v1/secret/data/a"), None);
    }
}
