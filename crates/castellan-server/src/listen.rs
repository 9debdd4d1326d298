//! Serving the router on a listener: HTTP/1.1 with time limits and a cap on open connections.
//!
//! `axum::serve` gives hyper no timer, and without one hyper drops its header read timeout: a client
//! that opens a connection and sends nothing (or one byte a minute) holds it, and its file descriptor,
//! for ever. Thousands of those and `accept` fails for everyone. Here every connection gets:
//! - a time limit for each request's headers, which also closes a kept-alive connection that stays
//!   idle that long ([`Limits::header_timeout`]);
//! - a time limit for each request with a body, from its headers to its answer
//!   ([`Limits::request_timeout`]), so a body that trickles in cannot hold the connection either;
//! - a place among at most [`Limits::max_connections`] open at once; beyond that, new connections
//!   wait in the kernel's accept queue.
//!
//! On shutdown no new connection is accepted, requests in progress finish (for at most
//! [`Limits::drain`]), and idle connections are closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::Limits;

/// Serves `router` on `listener` until `shutdown` completes, then drains (see the module's text).
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    L: axum::serve::Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let places = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let place = tokio::select! {
            p = places.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let router = router.clone();
            // The peer's address, for what counts per source (failed sign-ins).
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer.clone()));
            async move {
                // Only a request with a body can be dragged out by its client once its headers are
                // in; the others (most of them: JWKS, health, reads) skip the timer.
                if hyper::body::Body::is_end_stream(req.body()) {
                    router.oneshot(req).await
                } else {
                    tokio::time::timeout(limits.request_timeout, router.oneshot(req))
                        .await
                        .unwrap_or_else(|_| Ok(timed_out(limits.request_timeout)))
                }
            }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(place);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!("requests still in progress after {:?}; stopping anyway", limits.drain);
        }
    }
}

fn timed_out(after: Duration) -> Response {
    let mut resp = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({"error": {
            "code": "timeout",
            "message": format!("the request took longer than {}s", after.as_secs()),
        }})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
