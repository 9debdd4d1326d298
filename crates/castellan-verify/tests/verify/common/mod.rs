//! Shared test fixtures: keys and tokens from castellan-core, hand-built hostile tokens, a JWKS server
//! on 127.0.0.1 that counts its requests, and an in-memory fetcher that counts its calls.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use castellan_core::token::{AccessClaims, sign_access_token};
use castellan_core::token::{Alg, SigningKey};
use castellan_verify::{
    BoxFuture, DEFAULT_FETCH_TIMEOUT, FetchError, Fetched, HttpFetcher, JwksFetcher, ManualClock,
    Verifier, VerifierBuilder,
};
use serde_json::{Value, json};

pub const ISS: &str = "https://castellan.test";
pub const AUD: &str = "billing-api";
pub const NOW: i64 = 1_800_000_000;

pub fn key(alg: Alg) -> Arc<SigningKey> {
    Arc::new(SigningKey::generate(alg, None).expect("key").0)
}

pub fn jwks(keys: &[&SigningKey]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }))
        .expect("jwks")
}

/// Claims that pass: issued at `now`, valid for five minutes.
pub fn claims(now: i64) -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        sub: "cl_billing".into(),
        aud: AUD.into(),
        exp: now + 300,
        iat: now,
        nbf: now,
        jti: "jti-1".into(),
        client_id: "cl_billing".into(),
        scope: "invoices:read invoices:write".into(),
    }
}

/// A Castellan token, as the server signs it.
pub fn token(key: &SigningKey, claims: &AccessClaims) -> String {
    sign_access_token(key, claims).expect("sign")
}

/// The header Castellan writes for `key`.
pub fn header_for(key: &SigningKey) -> Value {
    json!({ "alg": key.alg().as_str(), "kid": key.kid(), "typ": "at+jwt" })
}

/// Any header and payload, signed by `key`: for tokens Castellan would never issue.
pub fn sign_parts(key: &SigningKey, header: &Value, payload: &Value) -> String {
    sign_raw(
        key,
        &serde_json::to_vec(header).expect("header"),
        &serde_json::to_vec(payload).expect("payload"),
    )
}

/// Header and payload bytes exactly as given (for JSON that serde would never write), signed by `key`.
pub fn sign_raw(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let mut token = B64.encode(header);
    token.push('.');
    token.push_str(&B64.encode(payload));
    let signature = key.sign(token.as_bytes()).expect("sign");
    token.push('.');
    token.push_str(&B64.encode(signature));
    token
}

pub fn claims_json(now: i64) -> Value {
    serde_json::to_value(claims(now)).expect("claims")
}

/// What the JWKS server answers; tests change it while it runs.
pub struct ServerState {
    pub body: Mutex<Vec<u8>>,
    /// 200 serves `body`; anything else is answered with that status and no keys.
    pub status: AtomicU16,
    /// `Cache-Control: max-age`; `u64::MAX` sends no `Cache-Control`.
    pub max_age: AtomicU64,
    pub delay_ms: AtomicU64,
    /// Send an ETag and answer a matching `If-None-Match` with 304.
    pub etag: AtomicBool,
    /// Requests answered (all of them, whatever the status).
    pub hits: AtomicUsize,
    pub not_modified: AtomicUsize,
    /// Where a 302 points, when `status` is 302.
    pub location: Mutex<String>,
}

pub struct JwksServer {
    pub url: String,
    pub base: String,
    pub state: Arc<ServerState>,
}

impl JwksServer {
    pub async fn start(body: Vec<u8>) -> Self {
        let state = Arc::new(ServerState {
            body: Mutex::new(body),
            status: AtomicU16::new(200),
            max_age: AtomicU64::new(300),
            delay_ms: AtomicU64::new(0),
            etag: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            location: Mutex::new(String::new()),
        });
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = format!("http://{addr}");
        Self {
            url: format!("{base}/.well-known/jwks.json"),
            base,
            state,
        }
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.state.body.lock().expect("lock") = jwks(keys);
    }

    pub fn set_body(&self, body: &[u8]) {
        *self.state.body.lock().expect("lock") = body.to_vec();
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    pub fn set_max_age(&self, secs: Option<u64>) {
        self.state
            .max_age
            .store(secs.unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

async fn serve_jwks(state: State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    let mut response = answer(state, headers).await;
    // One connection per fetch: under paused time a kept-alive connection could be closed by a
    // server timer that a time jump fires, just as the next fetch picks it from the pool.
    response
        .headers_mut()
        .insert(header::CONNECTION, "close".parse().expect("value"));
    response
}

async fn answer(State(s): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = s.status.load(Ordering::SeqCst);
    if status == 302 {
        let location = s.location.lock().expect("lock").clone();
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    if status != 200 {
        return (
            StatusCode::from_u16(status).expect("status"),
            "JWKS is down",
        )
            .into_response();
    }
    let body = s.body.lock().expect("lock").clone();
    let mut response = body.clone().into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("value"),
    );
    let max_age = s.max_age.load(Ordering::SeqCst);
    if max_age != u64::MAX {
        h.insert(
            header::CACHE_CONTROL,
            format!("public, max-age={max_age}").parse().expect("value"),
        );
    }
    if s.etag.load(Ordering::SeqCst) {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let etag = format!("\"{}\"", B64.encode(&digest.as_ref()[..12]));
        if headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes())
        {
            s.not_modified.fetch_add(1, Ordering::SeqCst);
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                format!("max-age={max_age}").parse().expect("value"),
            );
            return r;
        }
        response
            .headers_mut()
            .insert(header::ETAG, etag.parse().expect("value"));
    }
    response
}

/// An in-memory JWKS that counts fetches and can be slow or failing.
pub struct MemoryFetcher {
    pub body: Mutex<Vec<u8>>,
    pub calls: AtomicUsize,
    pub fail: AtomicBool,
    pub delay: Mutex<Duration>,
    pub max_age: Mutex<Option<Duration>>,
}

impl MemoryFetcher {
    pub fn new(body: Vec<u8>) -> Arc<Self> {
        Arc::new(Self {
            body: Mutex::new(body),
            calls: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            delay: Mutex::new(Duration::ZERO),
            max_age: Mutex::new(Some(Duration::from_secs(300))),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.body.lock().expect("lock") = jwks(keys);
    }
}

impl JwksFetcher for MemoryFetcher {
    fn fetch<'a>(&'a self, _etag: Option<&'a str>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let delay = *self.delay.lock().expect("lock");
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(FetchError::new("memory fetcher told to fail"));
            }
            Ok(Fetched::Keys {
                body: self.body.lock().expect("lock").clone(),
                max_age: *self.max_age.lock().expect("lock"),
                etag: None,
            })
        })
    }
}

/// A builder for tokens from [`ISS`] to [`AUD`], on a manual clock at [`NOW`].
pub fn builder(url: &str, clock: &Arc<ManualClock>) -> VerifierBuilder {
    Verifier::builder(ISS, AUD, url).clock(clock.clone())
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(NOW))
}

/// Like [`builder`], fetching over HTTP from `url` in a way that works under tokio's paused time
/// (`#[tokio::test(start_paused = true)]`), which is what moves the cache times and the cool-down.
pub fn paused_builder(url: &str, clock: &Arc<ManualClock>) -> VerifierBuilder {
    let http = HttpFetcher::new(url, DEFAULT_FETCH_TIMEOUT).expect("fetcher");
    builder(url, clock).fetcher(Arc::new(HoldTime(http)))
}

/// Lets `secs` pass on both clocks: the wall clock that judges `exp`/`nbf`, and tokio's paused
/// monotonic clock that judges cache times and the cool-down.
pub async fn pass(clock: &ManualClock, secs: u64) {
    clock.advance(i64::try_from(secs).expect("secs"));
    tokio::time::advance(Duration::from_secs(secs)).await;
}

/// A fetcher that stops paused time from jumping while the inner fetch runs.
///
/// Paused time jumps to the next timer whenever the runtime parks and nothing was woken. A loopback
/// fetch waits on sockets: one park that comes up empty before the kernel reports a socket ready
/// would jump to, and fire, the fetch timeout. Tokio never auto-advances while a blocking task is in
/// flight, so one is held for the length of the fetch. (Harmless without paused time.)
pub struct HoldTime<F>(pub F);

impl<F: JwksFetcher> JwksFetcher for HoldTime<F> {
    fn fetch<'a>(&'a self, etag: Option<&'a str>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            // Dropped when the fetch ends or is cancelled, which lets the blocking task finish.
            let (release, held) = std::sync::mpsc::channel::<()>();
            let hold = tokio::task::spawn_blocking(move || {
                let _ = held.recv();
            });
            let result = self.0.fetch(etag).await;
            drop(release);
            let _ = hold.await;
            result
        })
    }
}

/// A random kid-looking string.
pub fn random_kid() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("rand");
    B64.encode(bytes)
}
