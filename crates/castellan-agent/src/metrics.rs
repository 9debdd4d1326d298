//! The agent's local status endpoint: `GET /metrics` (Prometheus text), served with hyper alone.
//!
//! It answers as the axum router it replaces did: `/metrics` for GET and HEAD, 405 with
//! `allow: GET,HEAD` for another method, 404 with an empty body for any other path.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::Status;

/// Serves `/metrics` for the agent's status.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    status: Arc<Mutex<Status>>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // A connection that failed before it was accepted is that client's problem; anything
                // else (out of file descriptors, say) gets a second before the next try.
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) {
                    tracing::debug!(error = %e, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let status = status.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = respond(&req, &status);
                async move { Ok::<_, Infallible>(answer) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "a metrics connection ended with an error");
            }
        });
    }
}

/// The answer to `req`.
fn respond<B>(req: &Request<B>, status: &Mutex<Status>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return answer(StatusCode::NOT_FOUND, Bytes::new());
    }
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut resp = answer(StatusCode::METHOD_NOT_ALLOWED, Bytes::new());
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
        return resp;
    }
    let text = status.lock().map(|s| s.prometheus()).unwrap_or_default();
    let length = HeaderValue::from(text.len());
    let mut resp = answer(
        StatusCode::OK,
        if head { Bytes::new() } else { text.into() },
    );
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, length);
    resp
}

fn answer(code: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = code;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str) -> Request<()> {
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = path.parse().expect("uri");
        req
    }

    #[test]
    fn metrics_answers_get_and_head_and_nothing_else() {
        let status = Mutex::new(Status::default());
        let ok = respond(&request(Method::GET, "/metrics?x=1"), &status);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            ok.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let head = respond(&request(Method::HEAD, "/metrics"), &status);
        assert_eq!(head.status(), StatusCode::OK);
        let post = respond(&request(Method::POST, "/metrics"), &status);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[header::ALLOW], "GET,HEAD");
        for path in ["/", "/metrics/", "/other"] {
            let r = respond(&request(Method::GET, path), &status);
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
}
