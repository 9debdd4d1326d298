//! `POST /oauth2/token`: the form, the client's authentication method and RFC 6749 §5.2 errors; the
//! use case itself is [`crate::tokens::issue`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use castellan_wire::TokenAnswer;
use serde_json::json;
use zeroize::Zeroizing;

use super::MAX_BODY;
use crate::assertion::{self, ClientAssertion};
use crate::state::AppState;
use crate::tokens::{self, ClientCredentials, TokenError, TokenRequest};

/// How the client authenticated: a secret, or an RFC 7523 assertion.
enum ClientAuth {
    Secret(ClientCredentials),
    Assertion(ClientAssertion),
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/oauth2/revoke", post(revoke))
        .route("/oauth2/introspect", post(introspect))
}

/// An RFC 6749 §5.2 error.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn oauth(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        status,
        error,
        description: description.into(),
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"castellan\""),
            );
        }
        resp
    }
}

async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut exchanged = false;
    let issued = match client_form(&headers, body) {
        Ok((auth, mut params)) => match (auth, token_request(&mut params)) {
            (_, Err(e)) => Err(e),
            (ClientAuth::Secret(credentials), Ok(req)) => {
                exchanged = req.grant_type == tokens::exchange::GRANT_TYPE;
                tokens::issue(&state, &credentials, &req)
                    .await
                    .map_err(oauth_error)
            }
            (ClientAuth::Assertion(a), Ok(req)) => assertion::issue(&state, &a, &req)
                .await
                .map_err(oauth_error),
        },
        Err(e) => Err(e),
    };
    match issued {
        Ok(t) => {
            let mut body = TokenAnswer::bearer(t.access_token, t.expires_in, t.scope);
            body.id_token = t.id_token;
            body.refresh_token = t.refresh_token.map(|r| r.to_string());
            body.issued_token_type =
                exchanged.then(|| tokens::exchange::ACCESS_TOKEN_TYPE.to_owned());
            (
                [
                    (header::CACHE_CONTROL, "no-store"),
                    (header::PRAGMA, "no-cache"),
                ],
                Json(body),
            )
                .into_response()
        }
        Err(e) => {
            state.metrics().token_refused();
            state.audit().token_refused();
            e.into_response()
        }
    }
}

/// The RFC 6749 §5.2 form of a refusal.
fn oauth_error(e: TokenError) -> OAuthError {
    let (status, error) = match e {
        TokenError::UnsupportedGrantType => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        TokenError::UnauthorizedClient => (StatusCode::BAD_REQUEST, "unauthorized_client"),
        TokenError::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant"),
        TokenError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        TokenError::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
        TokenError::MalformedScope | TokenError::ScopeNotAllowed(_) => {
            (StatusCode::BAD_REQUEST, "invalid_scope")
        }
        TokenError::InvalidTarget(_) => (StatusCode::BAD_REQUEST, "invalid_target"),
        TokenError::NoSigningKey | TokenError::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        TokenError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    oauth(status, error, e.to_string())
}

/// The token request's parameters (the client's credentials taken out).
fn token_request(params: &mut HashMap<String, String>) -> Result<TokenRequest, OAuthError> {
    let grant = params.remove("grant_type").ok_or_else(|| {
        oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        )
    })?;
    // RFC 8693 names the target `audience` (a logical name), RFC 8707 `resource` (a URI): one
    // target per token, so one of the two, once.
    let audience = match (params.remove("audience"), params.remove("resource")) {
        (Some(_), Some(_)) => {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "send audience or resource, not both",
            ));
        }
        (a, r) => a.or(r),
    };
    Ok(TokenRequest {
        grant_type: grant,
        audience,
        subject_token: params.remove("subject_token").map(Zeroizing::new),
        subject_token_type: params.remove("subject_token_type"),
        scope: params.remove("scope"),
        code: params.remove("code"),
        redirect_uri: params.remove("redirect_uri"),
        code_verifier: params.remove("code_verifier"),
        refresh_token: params.remove("refresh_token").map(Zeroizing::new),
    })
}

/// The client's credentials (exactly one authentication method) and the form's other parameters.
fn client_form(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(ClientAuth, HashMap<String, String>), OAuthError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            oauth(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("the body is over {MAX_BODY} bytes"),
            )
        } else {
            oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body could not be read",
            )
        }
    })?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if std::str::from_utf8(&body).is_err() {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not UTF-8",
        ));
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("parameter `{k}` is repeated"),
            ));
        }
    }

    // Client authentication: exactly one method. A public client sends only its `client_id`.
    if let Some(a) = client_assertion(headers, &params)? {
        for k in ["client_id", "client_assertion", "client_assertion_type"] {
            params.remove(k);
        }
        return Ok((ClientAuth::Assertion(a), params));
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .map(parse_basic)
        .transpose()?;
    let secret = params.remove("client_secret");
    let form_id = params.remove("client_id");
    let credentials = match (basic, form_id, secret) {
        (Some(_), _, Some(_)) => {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method, not two",
            ));
        }
        (Some((id, s)), form_id, None) => {
            if form_id.is_some_and(|f| f != id) {
                return Err(oauth(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "client_id differs from the one in the Authorization header",
                ));
            }
            ClientCredentials {
                client_id: id,
                client_secret: Some(Zeroizing::new(s)),
            }
        }
        (None, Some(id), secret) => ClientCredentials {
            client_id: id,
            client_secret: secret.map(Zeroizing::new),
        },
        (None, None, _) => {
            return Err(oauth(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication is required",
            ));
        }
    };
    Ok((ClientAuth::Secret(credentials), params))
}

/// Revocation and introspection take a client's secret (or a public client's id), not an assertion.
fn secret_only(auth: ClientAuth) -> Result<ClientCredentials, OAuthError> {
    match auth {
        ClientAuth::Secret(c) => Ok(c),
        ClientAuth::Assertion(_) => Err(oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "this endpoint takes client_secret_basic, client_secret_post or a public client's id",
        )),
    }
}

/// The client (authenticated) and the `token` of a revocation or introspection form;
/// `confidential`: a public client's id alone is not enough.
async fn token_form(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    confidential: bool,
) -> Result<(std::sync::Arc<castellan_store::ClientRow>, String), OAuthError> {
    let (auth, mut params) = client_form(headers, body)?;
    let credentials = secret_only(auth)?;
    if confidential && credentials.client_secret.is_none() {
        return Err(oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "introspection needs a confidential client",
        ));
    }
    let client = tokens::authenticate(state, &credentials)
        .await
        .map_err(oauth_error)?;
    let token = params.remove("token").ok_or_else(|| {
        oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is missing",
        )
    })?;
    Ok((client, token))
}

async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let (client, token) = token_form(&state, &headers, body, false).await?;
        crate::signin::introspection::revoke(&state, &client, &token)
            .await
            .map_err(oauth_error)
    }
    .await;
    match result {
        Ok(()) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let (client, token) = token_form(&state, &headers, body, true).await?;
        crate::signin::introspection::introspect(&state, &client, &token)
            .await
            .map_err(|e| match e {
                TokenError::ScopeNotAllowed(_) => oauth(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    "the client needs the tokens:introspect scope",
                ),
                e => oauth_error(e),
            })
    }
    .await;
    match result {
        Ok(v) => ([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// An RFC 7523 client assertion from the form, when one is sent (`client_assertion_type` and
/// `client_assertion` together; `client_id` may come with it).
fn client_assertion(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Option<ClientAssertion>, OAuthError> {
    let (kind, jwt) = match (
        params.get("client_assertion_type"),
        params.get("client_assertion"),
    ) {
        (None, None) => return Ok(None),
        (Some(k), Some(j)) => (k, j),
        _ => {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_assertion_type and client_assertion go together",
            ));
        }
    };
    if kind != assertion::JWT_BEARER {
        return Err(oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!("client_assertion_type must be {}", assertion::JWT_BEARER),
        ));
    }
    if headers.contains_key(header::AUTHORIZATION) || params.contains_key("client_secret") {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "use one client authentication method, not two",
        ));
    }
    Ok(Some(ClientAssertion {
        client_id: params.get("client_id").cloned(),
        assertion: Zeroizing::new(jwt.clone()),
    }))
}

fn parse_basic(value: &HeaderValue) -> Result<(String, String), OAuthError> {
    let bad = || {
        oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "malformed Basic authorization header",
        )
    };
    let v = value.to_str().map_err(|_| bad())?;
    let (scheme, rest) = v.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded.
    let dec = |s: &str| {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.to_string())
    };
    Ok((dec(id).ok_or_else(bad)?, dec(secret).ok_or_else(bad)?))
}
