//! The HTTP client side of the wire, shared by the CLI and the agent (feature `client`): trusting a
//! CA file, the client_credentials token fetch, answers read within a size bound (and wiped: they may
//! hold a key or a secret), and the API's error answers.

use std::path::Path;

use zeroize::Zeroizing;

use crate::TokenAnswer;

/// The most read of an answer the client bounds: a token, a certificate set or a secret is a few
/// kilobytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

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

/// The innermost cause of a failed request says the server's certificate was not trusted.
pub fn is_untrusted_certificate(cause: &str) -> bool {
    cause.contains("certificate") || cause.contains("UnknownIssuer")
}

/// Why an answer could not be read.
#[derive(Debug)]
pub struct AnswerError {
    what: String,
    kind: AnswerErrorKind,
}

#[derive(Debug)]
enum AnswerErrorKind {
    TooLarge(usize),
    Read(reqwest::Error),
    Json(serde_json::Error),
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = &self.what;
        match &self.kind {
            AnswerErrorKind::TooLarge(max) => write!(
                f,
                "the answer to {what} is larger than {} MiB; refused",
                max >> 20
            ),
            AnswerErrorKind::Read(e) => write!(f, "reading the answer to {what}: {}", innermost(e)),
            AnswerErrorKind::Json(e) => write!(f, "unreadable answer from {what}: {e}"),
        }
    }
}

impl std::error::Error for AnswerError {}

/// The body of `resp`, refused when it is larger than `max` bytes (what is read is wiped when
/// dropped: it may hold a secret or a key). `what` names the request in errors.
pub async fn read_body(
    mut resp: reqwest::Response,
    what: &str,
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, AnswerError> {
    let fail = |kind| AnswerError {
        what: what.to_owned(),
        kind,
    };
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(fail(AnswerErrorKind::TooLarge(max)));
    }
    let mut buf = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail(AnswerErrorKind::Read(e)))?
    {
        if buf.len() + chunk.len() > max {
            return Err(fail(AnswerErrorKind::TooLarge(max)));
        }
        // Reserved ahead so that growing never leaves an unwiped copy behind.
        if buf.capacity() < buf.len() + chunk.len() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (buf.len() + chunk.len()).max(buf.capacity() * 2).min(max),
            ));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The JSON answer of a successful request, read within `MAX_ANSWER_BYTES`.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    what: &str,
) -> Result<T, AnswerError> {
    let bytes = read_body(resp, what, MAX_ANSWER_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|e| AnswerError {
        what: what.to_owned(),
        kind: AnswerErrorKind::Json(e),
    })
}

/// The JSON of an error answer, or `null` when it is none (or too large): only for the message.
pub async fn error_json(resp: reqwest::Response) -> serde_json::Value {
    match read_body(resp, "an error", MAX_ANSWER_BYTES).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// The code and message of a `/v1` error answer (`{"error": {"code", "message"}}`), `error` and
/// `no details` when it has none.
pub fn api_error(v: &serde_json::Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap_or("error"),
        v["error"]["message"].as_str().unwrap_or("no details"),
    )
}

/// Why no token was had; each caller words it for its users.
#[derive(Debug)]
pub enum TokenError {
    /// The request got no answer.
    Unreachable(reqwest::Error),
    /// The endpoint refused; its JSON answer when it had one (RFC 6749 §5.2: `error`,
    /// `error_description`).
    Refused {
        /// The status.
        status: reqwest::StatusCode,
        /// The answer, `None` when it was no JSON (or too large).
        body: Option<serde_json::Value>,
    },
    /// A successful answer that could not be read as JSON.
    Unreadable {
        /// The status.
        status: reqwest::StatusCode,
        /// What went wrong.
        error: AnswerError,
    },
    /// A successful answer without an `access_token`.
    NoAccessToken,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(e) => write!(f, "no answer: {}", innermost(e)),
            Self::Refused { status, .. } => write!(f, "the token endpoint refused ({status})"),
            Self::Unreadable { error, .. } => error.fmt(f),
            Self::NoAccessToken => f.write_str("no access_token in the answer"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Asks `endpoint` (`…/oauth2/token`) for an access token with the client_credentials grant,
/// authenticating with client_secret_basic; with `scope`, only for those scopes.
pub async fn request_token(
    http: &reqwest::Client,
    endpoint: &str,
    client_id: &str,
    client_secret: &str,
    scope: Option<&str>,
) -> Result<TokenAnswer, TokenError> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let req = http
        .post(endpoint)
        .basic_auth(client_id, Some(client_secret))
        .form(&form);
    send_token_request(req).await
}

/// A `client_credentials` token for a client that authenticates with an RFC 7523 client assertion
/// (a Kubernetes service-account token), `client_id` left to the server's mapping.
pub async fn request_token_with_assertion(
    http: &reqwest::Client,
    endpoint: &str,
    assertion: &str,
    scope: Option<&str>,
) -> Result<TokenAnswer, TokenError> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    send_token_request(http.post(endpoint).form(&form)).await
}

async fn send_token_request(req: reqwest::RequestBuilder) -> Result<TokenAnswer, TokenError> {
    let resp = req.send().await.map_err(TokenError::Unreachable)?;
    let status = resp.status();
    let bytes = read_body(resp, "/oauth2/token", MAX_ANSWER_BYTES).await;
    if !status.is_success() {
        let body = bytes
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        return Err(TokenError::Refused { status, body });
    }
    let unreadable = |e| TokenError::Unreadable {
        status,
        error: AnswerError {
            what: "/oauth2/token".into(),
            kind: AnswerErrorKind::Json(e),
        },
    };
    let bytes = bytes.map_err(|error| TokenError::Unreadable { status, error })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(unreadable)?;
    if v["access_token"].as_str().is_none() {
        return Err(TokenError::NoAccessToken);
    }
    serde_json::from_value(v).map_err(unreadable)
}
