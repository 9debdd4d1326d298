//! Management commands against a running server (`--server URL`), authenticated with an access token.

use std::path::PathBuf;

use anyhow::{Result, bail};
use castellan_wire::client::{self, TokenError, api_error, error_json};
use castellan_wire::clients::ClientList;
use castellan_wire::{ClientInfo, CreatedClient, CredentialFile, NewClient, TokenAnswer};
use clap::Args;

use crate::common::read_credential;

/// How to reach a running server.
#[derive(Debug, Args, Clone, Default)]
pub struct RemoteArgs {
    /// Act through a running server instead of the store, e.g. http://127.0.0.1:8270.
    #[arg(long, env = "CASTELLAN_SERVER", hide_env_values = true)]
    pub server: Option<String>,
    /// Access token for --server.
    #[arg(long, env = "CASTELLAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Credential file (client_id, client_secret) to get a token from --server.
    #[arg(long)]
    pub credential: Option<PathBuf>,
    /// For an https:// --server: trust only the certificates in this PEM file, e.g. the root.pem of
    /// `castellan pki ca --out DIR` when the server serves with its own CA [default: the system's roots].
    #[arg(
        long,
        value_name = "FILE",
        env = "CASTELLAN_CA_FILE",
        hide_env_values = true
    )]
    pub ca_file: Option<PathBuf>,
}

/// An authenticated client of the /v1 API.
pub struct Remote {
    http: reqwest::Client,
    base: String,
    /// `None` for a public endpoint called without credentials.
    token: Option<String>,
}

impl RemoteArgs {
    /// `None` when no --server was given (act on the store).
    pub async fn client(&self) -> Result<Option<Remote>> {
        self.connect(true).await
    }

    /// Like [`RemoteArgs::client`] for a public endpoint (`/v1/pki/ca`): a token or credential is
    /// used when given, and not asked for.
    pub async fn public_client(&self) -> Result<Option<Remote>> {
        self.connect(false).await
    }

    async fn connect(&self, needs_token: bool) -> Result<Option<Remote>> {
        let Some(base) = self
            .server
            .as_deref()
            .map(|s| s.trim_end_matches('/').to_owned())
        else {
            return Ok(None);
        };
        let http = http_client(self.ca_file.as_deref())?;
        let token = match (&self.token, &self.credential) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(fetch_token(&http, &base, &read_credential(path)?).await?),
            (None, None) if !needs_token => None,
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
        builder = client::trust_only(builder, ca).map_err(|e| anyhow::anyhow!("--ca-file {e}"))?;
    }
    Ok(builder.build()?)
}

/// A request that got no answer, with the reason and, when the server's certificate was not trusted,
/// what to do about it.
fn unanswered(e: &reqwest::Error, target: &str) -> anyhow::Error {
    let cause = client::innermost(e);
    if client::is_untrusted_certificate(&cause) {
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
    let answer = request_token(http, &format!("{base}/oauth2/token"), cred, None).await?;
    Ok(answer.access_token)
}

/// The token endpoint's whole answer for `cred` (client_secret_basic), optionally asking for `scope`.
pub async fn request_token(
    http: &reqwest::Client,
    endpoint: &str,
    cred: &CredentialFile,
    scope: Option<&str>,
) -> Result<TokenAnswer> {
    client::request_token(http, endpoint, &cred.client_id, &cred.client_secret, scope)
        .await
        .map_err(|e| match e {
            TokenError::Unreachable(e) => unanswered(&e, &format!("the token endpoint {endpoint}")),
            TokenError::Refused { status, body: None } => {
                anyhow::anyhow!("{endpoint} did not answer with JSON ({status})")
            }
            TokenError::Refused {
                body: Some(body), ..
            } => anyhow::anyhow!(
                "the server refused the request: {} ({})",
                body["error"].as_str().unwrap_or("no error code"),
                body["error_description"]
                    .as_str()
                    .unwrap_or("no description")
            ),
            TokenError::Unreadable { status, error } => anyhow::Error::new(error)
                .context(format!("{endpoint} did not answer with JSON ({status})")),
            TokenError::NoAccessToken => {
                anyhow::anyhow!("no access_token in the answer of {endpoint}")
            }
        })
}

impl Remote {
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| unanswered(&e, &self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = error_json(resp).await;
        let (code, msg) = api_error(&body);
        bail!("the server answered {status} ({code}): {msg}")
    }

    /// POSTs JSON to `path` and decodes the answer.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T> {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// Sends JSON to `path` with `method` and decodes the answer.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
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

    /// Sends JSON to `path` with `method`, expecting an answer without a body.
    pub async fn send_empty(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<()> {
        self.call(
            self.http
                .request(method, format!("{}{path}", self.base))
                .json(body),
        )
        .await?;
        Ok(())
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
        self.post("/v1/clients", req).await
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientInfo>> {
        Ok(self.get::<ClientList>("/v1/clients").await?.clients)
    }

    pub async fn delete_client(&self, id: &str) -> Result<()> {
        self.delete(&format!("/v1/clients/{id}")).await
    }
}
