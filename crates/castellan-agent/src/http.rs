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
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(AgentError::Server(format!(
                "the server refused the agent's credential ({status}: {})",
                body["error_description"].as_str().unwrap_or("no details")
            )));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| AgentError::Server("no access_token in the answer".into()))?
            .to_owned();
        let ttl = body["expires_in"].as_u64().unwrap_or(60);
        *slot = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(ttl.saturating_sub(30).max(1)),
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
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
            return Err(refused(path, status, &v));
        }
        resp.json()
            .await
            .map_err(|e| AgentError::Server(format!("unreadable answer from {path}: {e}")))
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
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| AgentError::Server(e.to_string()))?;
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
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
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
        let body = zeroize::Zeroizing::new(
            resp.bytes()
                .await
                .map_err(|e| self.unreachable(&e))?
                .to_vec(),
        );
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
