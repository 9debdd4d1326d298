//! A tower layer for axum: requests need a valid `Authorization: Bearer` access token.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::Response;

use crate::fetch::BoxFuture;
use crate::{Error, Verifier};

/// Wraps services in [`RequireToken`].
///
/// ```no_run
/// # fn demo(verifier: castellan_verify::Verifier) {
/// use axum::{Extension, Router, routing::get};
/// use castellan_verify::{Claims, VerifyLayer};
///
/// async fn hello(Extension(claims): Extension<Claims>) -> String {
///     format!("hello {}", claims.sub)
/// }
/// let app: Router = Router::new()
///     .route("/hello", get(hello))
///     .route_layer(VerifyLayer::new(verifier));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    verifier: Verifier,
    realm: Option<Arc<str>>,
}

impl VerifyLayer {
    /// A layer that verifies with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            realm: None,
        }
    }

    /// Adds `realm="..."` to the `WWW-Authenticate` challenges. Quotes and backslashes are dropped.
    pub fn realm(mut self, realm: &str) -> Self {
        let clean: String = realm
            .chars()
            .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
            .collect();
        self.realm = Some(clean.into());
        self
    }
}

impl<S> tower_layer::Layer<S> for VerifyLayer {
    type Service = RequireToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireToken {
            inner,
            verifier: self.verifier.clone(),
            realm: self.realm.clone(),
        }
    }
}

/// Verifies the bearer token of each request before passing it on, with the [`Claims`](crate::Claims)
/// in the request extensions (`Extension<Claims>` in a handler).
///
/// Answers (RFC 6750 §3):
/// - no `Authorization: Bearer` header: 401 with `WWW-Authenticate: Bearer`, no error code;
/// - a token that fails verification: 401 with
///   `WWW-Authenticate: Bearer error="invalid_token", error_description="..."` (a fixed phrase per
///   [`Error`] variant, never the token's content);
/// - more than one `Authorization` header: 400 with `error="invalid_request"`;
/// - no keys could ever be fetched ([`Error::JwksUnavailable`]): 503 with `Retry-After`, since the
///   token may well be good and a new one would not help.
#[derive(Debug, Clone)]
pub struct RequireToken<S> {
    inner: S,
    verifier: Verifier,
    realm: Option<Arc<str>>,
}

impl<S, B> tower_service::Service<Request<B>> for RequireToken<S>
where
    S: tower_service::Service<Request<B>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was not polled ready stays here; the ready one serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let realm = self.realm.clone();
        Box::pin(async move {
            let verified = match bearer_token(request.headers()) {
                Bearer::Missing => return Ok(challenge(realm.as_deref(), None)),
                Bearer::Repeated => {
                    return Ok(challenge(
                        realm.as_deref(),
                        Some(("invalid_request", "more than one Authorization header")),
                    ));
                }
                Bearer::Garbled => Err(Error::Malformed("bearer token syntax")),
                Bearer::Token(token) => verifier.verify(token).await,
            };
            match verified {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(error) => Ok(rejection(realm.as_deref(), &error)),
            }
        })
    }
}

enum Bearer<'a> {
    Missing,
    Repeated,
    Garbled,
    Token(&'a str),
}

fn bearer_token(headers: &HeaderMap) -> Bearer<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Bearer::Missing;
    };
    if values.next().is_some() {
        return Bearer::Repeated;
    }
    let Ok(value) = value.to_str() else {
        return Bearer::Garbled;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, ...) carries no bearer token: the request is unauthenticated.
        return Bearer::Missing;
    }
    let token = rest.trim_matches(' ');
    // RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
    {
        return Bearer::Garbled;
    }
    Bearer::Token(token)
}

/// The fixed `error_description` for a verification error (plain ASCII, no quotes).
pub fn error_description(error: &Error) -> &'static str {
    match error {
        Error::TokenTooLarge { .. } => "token too large",
        Error::Malformed(_) => "malformed token",
        Error::AlgNotAllowed { .. } => "signing algorithm not allowed",
        Error::CritUnsupported => "unsupported critical header",
        Error::WrongType { .. } => "wrong token type",
        Error::MissingKid | Error::UnknownKid { .. } => "unknown signing key",
        Error::BadSignature => "invalid signature",
        Error::Expired { .. } => "token expired",
        Error::NotYetValid { .. } => "token not yet valid",
        Error::WrongIssuer => "wrong issuer",
        Error::WrongAudience => "wrong audience",
        Error::MissingClaim(_) => "required claim missing",
        Error::JwksUnavailable(_) => "signing keys unavailable",
        Error::Config(_) => "verifier misconfigured",
    }
}

fn rejection(realm: Option<&str>, error: &Error) -> Response {
    match error {
        Error::JwksUnavailable(_) => {
            let mut response = Response::new(Body::from("signing keys unavailable\n"));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
        Error::Config(_) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
        _ => challenge(realm, Some(("invalid_token", error_description(error)))),
    }
}

fn challenge(realm: Option<&str>, error: Option<(&str, &str)>) -> Response {
    let mut value = String::from("Bearer");
    let mut sep = " ";
    if let Some(realm) = realm {
        value.push_str(&format!("{sep}realm=\"{realm}\""));
        sep = ", ";
    }
    let status = match error {
        Some((code, description)) => {
            value.push_str(&format!(
                "{sep}error=\"{code}\", error_description=\"{description}\""
            ));
            if code == "invalid_request" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNAUTHORIZED
            }
        }
        None => StatusCode::UNAUTHORIZED,
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    // Built from fixed phrases and a realm reduced to visible ASCII: always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn bearer_parsing() {
        assert!(matches!(bearer_token(&headers(&[])), Bearer::Missing));
        assert!(matches!(
            bearer_token(&headers(&["Basic Zm9vOmJhcg=="])),
            Bearer::Missing
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer a.b.c", "Bearer d.e.f"])),
            Bearer::Repeated
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer"])),
            Bearer::Garbled
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer a\"b"])),
            Bearer::Garbled
        ));
        assert!(matches!(
            bearer_token(&headers(&["bearer   ab.cd-_.x=="])),
            Bearer::Token("ab.cd-_.x==")
        ));
    }

    #[test]
    fn challenges_are_valid_header_values() {
        let r = challenge(
            Some("api"),
            Some(("invalid_token", error_description(&Error::BadSignature))),
        );
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"invalid signature\""
        );
        let r = challenge(None, None);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
    }
}
