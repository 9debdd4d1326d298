//! The agent's HTTP backend: client credentials → access token (cached) → the /v1/pki and /v1/secrets
//! APIs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use castellan_core::pki::IssueRequest;
use castellan_wire::client::{self, TokenError, api_error, error_json, read_body, read_json};
use castellan_wire::{CaJson, CredentialError, CredentialFile, SecretJson, SetJson, SignBody};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::config::{AgentConfig, AuthMethod, DEFAULT_TOKEN_FILE};
use crate::{AgentError, Backend, FetchedSecret};

fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, AgentError> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5));
    if let Some(ca) = ca_file {
        builder = client::trust_only(builder, ca)
            .map_err(|e| AgentError::Config(format!("ca_file {e}")))?;
    }
    builder
        .build()
        .map_err(|e| AgentError::Server(e.to_string()))
}

/// How the backend signs in.
enum SignIn {
    /// A client id and secret (client_secret_basic).
    Secret {
        client_id: String,
        client_secret: Zeroizing<String>,
    },
    /// A projected service-account token, read from this file for every token request.
    Kubernetes { token_file: PathBuf },
}

/// The longest token file read (a projected token is about 1 KiB).
const MAX_TOKEN_FILE_BYTES: u64 = 16 * 1024;

/// Talks to a Castellan server.
pub struct HttpBackend {
    http: reqwest::Client,
    base: String,
    sign_in: SignIn,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBackend")
            .field("base", &self.base)
            .field(
                "client_id",
                &match &self.sign_in {
                    SignIn::Secret { client_id, .. } => client_id.as_str(),
                    SignIn::Kubernetes { .. } => "(service-account token)",
                },
            )
            .finish_non_exhaustive()
    }
}

impl HttpBackend {
    /// A backend for the configuration's server, signing in as its `auth` says.
    pub fn for_config(cfg: &AgentConfig) -> Result<Self, AgentError> {
        match (cfg.auth, &cfg.credential_file) {
            (AuthMethod::ClientSecret, Some(f)) => {
                Self::new(&cfg.server, f, cfg.ca_file.as_deref())
            }
            (AuthMethod::ClientSecret, None) => {
                Err(AgentError::Config("credential_file is required".into()))
            }
            (AuthMethod::Kubernetes, _) => {
                let token_file = cfg
                    .token_file
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE));
                Ok(Self {
                    http: http_client(cfg.ca_file.as_deref())?,
                    base: cfg.server.trim_end_matches('/').to_owned(),
                    sign_in: SignIn::Kubernetes { token_file },
                    token: Mutex::new(None),
                })
            }
        }
    }

    /// A backend for `server`, authenticating with the credential file; an `https://` server is
    /// trusted through the certificates of `ca_file` alone when it is given (the system's roots
    /// otherwise).
    pub fn new(
        server: &str,
        credential_file: &Path,
        ca_file: Option<&Path>,
    ) -> Result<Self, AgentError> {
        let cred = CredentialFile::read(credential_file).map_err(|e| {
            AgentError::Config(match e {
                CredentialError::Read(e) => {
                    format!("credential_file {}: {e}", credential_file.display())
                }
                CredentialError::Parse(e) => format!(
                    "credential_file {}: expected {{\"client_id\", \"client_secret\"}}: {e}",
                    credential_file.display()
                ),
            })
        })?;
        Ok(Self {
            http: http_client(ca_file)?,
            base: server.trim_end_matches('/').to_owned(),
            sign_in: SignIn::Secret {
                client_id: cred.client_id,
                client_secret: Zeroizing::new(cred.client_secret),
            },
            token: Mutex::new(None),
        })
    }

    /// The projected token as it is in the file now (the kubelet replaces it as it rotates).
    async fn read_token_file(path: &Path) -> Result<Zeroizing<String>, AgentError> {
        let bad = |e: String| AgentError::Server(format!("token_file {}: {e}", path.display()));
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| bad(e.to_string()))?;
        if meta.len() > MAX_TOKEN_FILE_BYTES {
            return Err(bad(format!("over {MAX_TOKEN_FILE_BYTES} bytes")));
        }
        let text = Zeroizing::new(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| bad(e.to_string()))?,
        );
        let token = Zeroizing::new(text.trim().to_owned());
        if token.is_empty() {
            return Err(bad("empty".into()));
        }
        Ok(token)
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
        let endpoint = format!("{}/oauth2/token", self.base);
        let answer = match &self.sign_in {
            SignIn::Secret {
                client_id,
                client_secret,
            } => client::request_token(&self.http, &endpoint, client_id, client_secret, None).await,
            SignIn::Kubernetes { token_file } => {
                let assertion = Self::read_token_file(token_file).await?;
                client::request_token_with_assertion(&self.http, &endpoint, &assertion, None).await
            }
        }
        .map_err(|e| match e {
            TokenError::Unreachable(e) => self.unreachable(&e),
            TokenError::Refused { status, body } => AgentError::Server(format!(
                "the server refused the agent's credential ({status}: {})",
                body.as_ref()
                    .and_then(|b| b["error_description"].as_str())
                    .unwrap_or("no details")
            )),
            TokenError::Unreadable { error, .. } => AgentError::Server(error.to_string()),
            TokenError::NoAccessToken => AgentError::Server("no access_token in the answer".into()),
        })?;
        let expires_in = answer.expires_in.and_then(|e| u64::try_from(e).ok());
        let token = answer.access_token.clone();
        *slot = Some((
            answer.access_token,
            token_good_until(Instant::now(), expires_in),
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

    async fn post(&self, path: &str, body: &impl serde::Serialize) -> Result<SetJson, AgentError> {
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

/// The JSON answer of a successful request, read within the size limit.
async fn json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    what: &str,
) -> Result<T, AgentError> {
    read_json(resp, what)
        .await
        .map_err(|e| AgentError::Server(e.to_string()))
}

/// When a cached access token is renewed: 30 s before it expires (`expires_in`, 60 s when the answer
/// has none), and at the latest after a day, whatever the server says (a huge `expires_in` would
/// overflow the clock).
fn token_good_until(now: Instant, expires_in: Option<u64>) -> Instant {
    let secs = expires_in.unwrap_or(60).saturating_sub(30).clamp(1, 86_400);
    now + Duration::from_secs(secs)
}

fn refused(what: &str, status: reqwest::StatusCode, v: &serde_json::Value) -> AgentError {
    let (code, message) = api_error(v);
    AgentError::Server(format!(
        "the server refused {what} ({status}, {code}): {message}"
    ))
}

/// What a failed request's innermost cause says, with a hint when it is the server's certificate that
/// was not trusted.
fn root_cause(e: &reqwest::Error) -> String {
    let msg = client::innermost(e);
    if client::is_untrusted_certificate(&msg) {
        format!(
            "{msg} (trust Castellan's CA with `ca_file`, e.g. the root.pem of `castellan pki ca --out DIR`)"
        )
    } else {
        msg
    }
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
        let ca: CaJson = json(resp, "GET /v1/pki/ca").await?;
        ca.ca_bundle_pem
            .ok_or_else(|| AgentError::Server("no ca_bundle_pem in /v1/pki/ca".into()))
    }

    async fn sign(
        &self,
        profile: &str,
        csr_pem: &str,
        req: &IssueRequest,
    ) -> Result<SetJson, AgentError> {
        self.post(
            &format!("/v1/pki/sign/{profile}"),
            &SignBody::new(csr_pem, req),
        )
        .await
    }

    async fn issue(&self, profile: &str, req: &IssueRequest) -> Result<SetJson, AgentError> {
        // As a map (sorted keys): the bytes the agent has always sent.
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
        let body = read_body(resp, &what, client::MAX_ANSWER_BYTES)
            .await
            .map_err(|e| AgentError::Server(e.to_string()))?;
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
