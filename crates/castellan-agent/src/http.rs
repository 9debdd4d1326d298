//! The agent's HTTP backend: client credentials → access token (cached) → the /v1/pki and /v1/secrets
//! APIs.

use std::path::Path;
use std::time::{Duration, Instant};

use castellan_core::pki::IssueRequest;
use castellan_server::pki::SetJson;
use castellan_server::secrets::SecretJson;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::{AgentError, Backend, FetchedSecret};

/// Talks to a Castellan server.
pub struct HttpBackend {
    http: reqwest::Client,
    base: String,
    client_id: String,
    client_secret: Zeroizing<String>,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBackend")
            .field("base", &self.base)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Cred {
    client_id: String,
    client_secret: String,
}

impl HttpBackend {
    /// A backend for `server`, authenticating with the credential file; an `https://` server is
    /// trusted through the certificates of `ca_file` alone when it is given (the system's roots
    /// otherwise).
    pub fn new(
        server: &str,
        credential_file: &Path,
        ca_file: Option<&Path>,
    ) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(credential_file).map_err(|e| {
            AgentError::Config(format!(
                "credential_file {}: {e}",
                credential_file.display()
            ))
        })?;
        let cred: Cred = serde_json::from_str(&text).map_err(|e| {
            AgentError::Config(format!(
                "credential_file {}: expected {{\"client_id\", \"client_secret\"}}: {e}",
                credential_file.display()
            ))
        })?;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5));
        if let Some(ca) = ca_file {
            builder =
                trust_only(builder, ca).map_err(|e| AgentError::Config(format!("ca_file {e}")))?;
        }
        let http = builder
            .build()
            .map_err(|e| AgentError::Server(e.to_string()))?;
        Ok(Self {
            http,
            base: server.trim_end_matches('/').to_owned(),
            client_id: cred.client_id,
            client_secret: Zeroizing::new(cred.client_secret),
            token: Mutex::new(None),
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> AgentError {
        AgentError::Server(format!(
            "cannot reach the Castellan server at {}: {}",
            self.base,
            root_cause(e)
        ))
    }

    async fn token(&self, renew: bool) -> Result<String, AgentError> {
        let mut slot = self.token.lock().await;
        if let (false, Some((t, until))) = (renew, slot.as_ref())
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let resp = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .basic_auth(&self.client_id, Some(self.client_secret.as_str()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = error_json(resp).await;
            return Err(AgentError::Server(format!(
                "the server refused the agent's credential ({status}: {})",
                body["error_description"].as_str().unwrap_or("no details")
            )));
        }
        let body: serde_json::Value = json(resp, "/oauth2/token").await?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| AgentError::Server("no access_token in the answer".into()))?
            .to_owned();
        *slot = Some((
            token.clone(),
            token_good_until(Instant::now(), body["expires_in"].as_u64()),
        ));
        Ok(token)
    }

    /// Sends the request `build` makes with the access token; a 401 renews the token once.
    async fn authorized(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AgentError> {
        for attempt in 0..2 {
            let token = self.token(attempt > 0).await?;
            let resp = build(&token)
                .send()
                .await
                .map_err(|e| self.unreachable(&e))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                continue;
            }
            return Ok(resp);
        }
        Err(AgentError::Server(
            "the server keeps refusing the agent's token".into(),
        ))
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<SetJson, AgentError> {
        let resp = self
            .authorized(|token| {
                self.http
                    .post(format!("{}{path}", self.base))
                    .bearer_auth(token)
                    .json(body)
            })
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let v = error_json(resp).await;
            return Err(refused(path, status, &v));
        }
        json(resp, path).await
    }
}

/// When a cached access token is renewed: 30 s before it expires (`expires_in`, 60 s when the answer
/// has none), and at the latest after a day, whatever the server says (a huge `expires_in` would
/// overflow the clock).
fn token_good_until(now: Instant, expires_in: Option<u64>) -> Instant {
    let secs = expires_in.unwrap_or(60).saturating_sub(30).clamp(1, 86_400);
    now + Duration::from_secs(secs)
}

/// The most the agent reads of an answer: a certificate set or a secret is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The body of `resp`, refused when it is larger than `MAX_ANSWER_BYTES` (what is read is wiped: it
/// may hold a secret or a key).
async fn body(mut resp: reqwest::Response, what: &str) -> Result<Zeroizing<Vec<u8>>, AgentError> {
    let too_large = || {
        AgentError::Server(format!(
            "the answer to {what} is larger than {} MiB; refused",
            MAX_ANSWER_BYTES >> 20
        ))
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut buf = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        AgentError::Server(format!("reading the answer to {what}: {}", innermost(&e)))
    })? {
        if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        // Reserved ahead so that growing never leaves an unwiped copy behind.
        if buf.capacity() < buf.len() + chunk.len() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (buf.len() + chunk.len())
                    .max(buf.capacity() * 2)
                    .min(MAX_ANSWER_BYTES),
            ));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The JSON answer of a successful request, read within the size limit.
async fn json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    what: &str,
) -> Result<T, AgentError> {
    let bytes = body(resp, what).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AgentError::Server(format!("unreadable answer from {what}: {e}")))
}

/// The JSON of an error answer, or `null` when it is none (or too large): only for the message.
async fn error_json(resp: reqwest::Response) -> serde_json::Value {
    match body(resp, "an error").await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

fn refused(what: &str, status: reqwest::StatusCode, v: &serde_json::Value) -> AgentError {
    AgentError::Server(format!(
        "the server refused {what} ({status}, {}): {}",
        v["error"]["code"].as_str().unwrap_or("error"),
        v["error"]["message"].as_str().unwrap_or("no details")
    ))
}

/// Makes `builder` trust only the certificates of the PEM file `ca_file` for HTTPS (for a Castellan
/// serving with its own CA: the `root.pem` of `castellan pki ca --out DIR`). Errors name the file.
pub fn trust_only(
    builder: reqwest::ClientBuilder,
    ca_file: &Path,
) -> Result<reqwest::ClientBuilder, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not PEM certificates ({e})", ca_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", ca_file.display()));
    }
    Ok(builder.tls_certs_only(certs))
}

/// What a failed request's innermost cause says, with a hint when it is the server's certificate that
/// was not trusted.
fn root_cause(e: &reqwest::Error) -> String {
    let msg = innermost(e);
    if msg.contains("certificate") || msg.contains("UnknownIssuer") {
        format!(
            "{msg} (trust Castellan's CA with `ca_file`, e.g. the root.pem of `castellan pki ca --out DIR`)"
        )
    } else {
        msg
    }
}

/// The innermost cause of `e`.
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

impl Backend for HttpBackend {
    async fn ca_bundle(&self) -> Result<String, AgentError> {
        let resp = self
            .http
            .get(format!("{}/v1/pki/ca", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(AgentError::Server(format!(
                "GET /v1/pki/ca answered {}",
                resp.status()
            )));
        }
        let v: serde_json::Value = json(resp, "GET /v1/pki/ca").await?;
        v["ca_bundle_pem"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AgentError::Server("no ca_bundle_pem in /v1/pki/ca".into()))
    }

    async fn sign(
        &self,
        profile: &str,
        csr_pem: &str,
        req: &IssueRequest,
    ) -> Result<SetJson, AgentError> {
        let mut body = serde_json::to_value(req).map_err(|e| AgentError::Server(e.to_string()))?;
        if let Some(o) = body.as_object_mut() {
            o.retain(|_, v| !v.is_null());
            o.insert("csr".into(), serde_json::Value::String(csr_pem.to_owned()));
        }
        self.post(&format!("/v1/pki/sign/{profile}"), &body).await
    }

    async fn issue(&self, profile: &str, req: &IssueRequest) -> Result<SetJson, AgentError> {
        let body = serde_json::to_value(req).map_err(|e| AgentError::Server(e.to_string()))?;
        self.post(&format!("/v1/pki/issue/{profile}"), &body).await
    }

    async fn secret(&self, name: &str) -> Result<Option<FetchedSecret>, AgentError> {
        // Names are checked by the configuration: `/`-separated segments of [A-Za-z0-9._-], nothing
        // to escape in a URL path.
        let what = format!("GET /v1/secrets/{name}");
        let resp = self
            .authorized(|token| {
                self.http
                    .get(format!("{}/v1/secrets/{name}", self.base))
                    .bearer_auth(token)
            })
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let v = error_json(resp).await;
            return match (status, v["error"]["code"].as_str()) {
                (reqwest::StatusCode::NOT_FOUND, Some("not_found")) => Ok(None),
                // Not the API's own answer: a server without the secrets store (or a proxy).
                (reqwest::StatusCode::NOT_FOUND, _) => Err(AgentError::Server(format!(
                    "the server at {} has no secrets API ({what} answered {status}); is it an older Castellan?",
                    self.base
                ))),
                (reqwest::StatusCode::FORBIDDEN, _)
                    if !v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("secrets:read")) =>
                {
                    Err(AgentError::Server(format!(
                        "{}; the agent's client needs scope secrets:read",
                        refused(&what, status, &v)
                    )))
                }
                _ => Err(refused(&what, status, &v)),
            };
        }
        let body = body(resp, &what).await?;
        // Only the error's position is reported: serde's message may quote a piece of the answer.
        let mut json: SecretJson = serde_json::from_slice(&body).map_err(|e| {
            AgentError::Server(format!(
                "unreadable answer from {what} (not the expected JSON, line {} column {})",
                e.line(),
                e.column()
            ))
        })?;
        let value = json.decode();
        {
            use zeroize::Zeroize;
            json.value_base64.zeroize();
            json.value.zeroize();
        }
        if json.name != name {
            return Err(AgentError::Server(format!(
                "{what} answered with another secret (`{}`)",
                json.name.escape_default()
            )));
        }
        let value =
            value.map_err(|e| AgentError::Server(format!("unreadable answer from {what}: {e}")))?;
        Ok(Some(FetchedSecret {
            version: json.version,
            value,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn any_expires_in_gives_a_renewal_time_without_panicking() {
        let now = Instant::now();
        let after = |secs| now + Duration::from_secs(secs);
        assert_eq!(token_good_until(now, Some(u64::MAX)), after(86_400));
        assert_eq!(token_good_until(now, Some(3600)), after(3570));
        assert_eq!(token_good_until(now, Some(10)), after(1));
        assert_eq!(token_good_until(now, None), after(30));
    }

    /// A server answering every request with `{"ca_bundle_pem": "<pem_len x's>"}`, with a
    /// Content-Length or chunked (no length known ahead).
    async fn server(pem_len: usize, chunked: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut req = [0u8; 4096];
                let _ = conn.read(&mut req).await;
                let body = format!("{{\"ca_bundle_pem\": \"{}\"}}", "x".repeat(pem_len));
                let mut out = Vec::new();
                if chunked {
                    out.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                    );
                    for part in body.as_bytes().chunks(64 * 1024) {
                        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                        out.extend_from_slice(part);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                } else {
                    out.extend_from_slice(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(body.as_bytes());
                }
                // The agent stops reading a too large answer: a broken pipe here is expected.
                let _ = conn.write_all(&out).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn an_answer_over_1_mib_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cred = dir.path().join("agent.json");
        std::fs::write(&cred, r#"{"client_id":"a","client_secret":"b"}"#).expect("cred");
        for chunked in [false, true] {
            let url = server(2 << 20, chunked).await;
            let backend = HttpBackend::new(&url, &cred, None).expect("backend");
            let err = match backend.ca_bundle().await {
                Err(e) => e.to_string(),
                Ok(pem) => panic!("an answer of {} bytes was accepted", pem.len()),
            };
            assert!(
                err.contains("GET /v1/pki/ca") && err.contains("larger than 1 MiB"),
                "chunked {chunked}: {err}"
            );
            let url = server(100, chunked).await;
            let backend = HttpBackend::new(&url, &cred, None).expect("backend");
            assert_eq!(backend.ca_bundle().await.expect("small"), "x".repeat(100));
        }
    }
}
