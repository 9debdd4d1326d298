//! Management commands against a running server (`--server URL`), authenticated with an access token.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use castellan_server::clients::{ClientInfo, CreatedClient, NewClient};
use clap::Args;

use crate::common::CredentialFile;

/// How to reach a running server.
#[derive(Debug, Args, Clone, Default)]
pub struct RemoteArgs {
    /// Act through a running server instead of the store, e.g. http://127.0.0.1:8270.
    #[arg(long, env = "CASTELLAN_SERVER")]
    pub server: Option<String>,
    /// Access token for --server.
    #[arg(long, env = "CASTELLAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Credential file (client_id, client_secret) to get a token from --server.
    #[arg(long)]
    pub credential: Option<PathBuf>,
    /// For an https:// --server: trust only the certificates in this PEM file, e.g. the root.pem of
    /// `castellan pki ca --out DIR` when the server serves with its own CA [default: the system's roots].
    #[arg(long, value_name = "FILE", env = "CASTELLAN_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// An authenticated client of the /v1 API.
pub struct Remote {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl RemoteArgs {
    /// `None` when no --server was given (act on the store).
    pub async fn client(&self) -> Result<Option<Remote>> {
        let Some(base) = self
            .server
            .as_deref()
            .map(|s| s.trim_end_matches('/').to_owned())
        else {
            return Ok(None);
        };
        let http = http_client(self.ca_file.as_deref())?;
        let token = match (&self.token, &self.credential) {
            (Some(t), _) => t.clone(),
            (None, Some(path)) => fetch_token(&http, &base, &CredentialFile::read(path)?).await?,
            (None, None) => {
                bail!("--server needs --token (or CASTELLAN_TOKEN) or --credential FILE")
            }
        };
        Ok(Some(Remote { http, base, token }))
    }
}

/// The HTTP client of the CLI's calls to a server; with `ca_file`, HTTPS trusts its certificates alone.
pub fn http_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    if let Some(ca) = ca_file {
        builder = castellan_agent::http::trust_only(builder, ca)
            .map_err(|e| anyhow::anyhow!("--ca-file {e}"))?;
    }
    Ok(builder.build()?)
}

/// A request that got no answer, with the reason and, when the server's certificate was not trusted,
/// what to do about it.
fn unanswered(e: &reqwest::Error, target: &str) -> anyhow::Error {
    let cause = castellan_agent::http::innermost(e);
    if cause.contains("certificate") || cause.contains("UnknownIssuer") {
        anyhow::anyhow!(
            "cannot reach {target}: {cause} (if it serves with Castellan's own CA, pass --ca-file with \
             the root.pem of `castellan pki ca --out DIR`)"
        )
    } else {
        anyhow::anyhow!("cannot reach {target}: {cause}")
    }
}

/// Gets an access token with the client_credentials grant.
pub async fn fetch_token(
    http: &reqwest::Client,
    base: &str,
    cred: &CredentialFile,
) -> Result<String> {
    let body = request_token(http, &format!("{base}/oauth2/token"), cred, None).await?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token in the response")
}

/// The token endpoint's whole answer for `cred` (client_secret_basic), optionally asking for `scope`.
pub async fn request_token(
    http: &reqwest::Client,
    endpoint: &str,
    cred: &CredentialFile,
    scope: Option<&str>,
) -> Result<serde_json::Value> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let resp = http
        .post(endpoint)
        .basic_auth(&cred.client_id, Some(&cred.client_secret))
        .form(&form)
        .send()
        .await
        .map_err(|e| unanswered(&e, &format!("the token endpoint {endpoint}")))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("{endpoint} did not answer with JSON ({status})"))?;
    if !status.is_success() {
        bail!(
            "the server refused the request: {} ({})",
            body["error"].as_str().unwrap_or("no error code"),
            body["error_description"]
                .as_str()
                .unwrap_or("no description")
        );
    }
    if body["access_token"].as_str().is_none() {
        bail!("no access_token in the answer of {endpoint}");
    }
    Ok(body)
}

impl Remote {
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| unanswered(&e, &self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or("error");
        let msg = body["error"]["message"].as_str().unwrap_or("no details");
        bail!("the server answered {status} ({code}): {msg}")
    }

    /// POSTs JSON to `path` and decodes the answer.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// Sends JSON to `path` with `method` and decodes the answer.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        Ok(self
            .call(
                self.http
                    .request(method, format!("{}{path}", self.base))
                    .json(body),
            )
            .await?
            .json()
            .await?)
    }

    /// DELETEs `path`.
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.call(self.http.delete(format!("{}{path}", self.base)))
            .await?;
        Ok(())
    }

    /// GETs `path` and decodes the answer.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self
            .call(self.http.get(format!("{}{path}", self.base)))
            .await?
            .json()
            .await?)
    }

    pub async fn create_client(&self, req: &NewClient) -> Result<CreatedClient> {
        let body = serde_json::json!({
            "name": req.name, "scopes": req.scopes, "audience": req.audience, "token_ttl_secs": req.token_ttl_secs,
        });
        self.post("/v1/clients", &body).await
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientInfo>> {
        #[derive(serde::Deserialize)]
        struct List {
            clients: Vec<ClientInfo>,
        }
        Ok(self.get::<List>("/v1/clients").await?.clients)
    }

    pub async fn delete_client(&self, id: &str) -> Result<()> {
        self.delete(&format!("/v1/clients/{id}")).await
    }
}
