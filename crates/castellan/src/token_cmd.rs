//! `castellan token`: an access token for a credential file, for curl and scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::common::CredentialFile;
use crate::remote::request_token;

/// Arguments of `castellan token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Credential file (client_id, client_secret, token_endpoint), as `castellan init` writes the admin's.
    #[arg(long, value_name = "FILE")]
    pub credential: PathBuf,
    /// The server to ask, e.g. http://127.0.0.1:8270 (default: the credential's token_endpoint).
    #[arg(long, env = "CASTELLAN_SERVER")]
    pub server: Option<String>,
    /// A scope to ask for (repeat for several; default: every scope of the client).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Print the whole token response (access_token, token_type, expires_in, scope) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the token (or the response) on stdout.
pub async fn run(args: TokenArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.credential)
        .with_context(|| format!("reading {}", args.credential.display()))?;
    let cred: CredentialFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a credential file (JSON with client_id and client_secret)",
            args.credential.display()
        )
    })?;
    let endpoint = match (&args.server, &cred.token_endpoint) {
        (Some(server), _) => format!("{}/oauth2/token", server.trim_end_matches('/')),
        (None, Some(endpoint)) => endpoint.clone(),
        (None, None) => bail!(
            "{} names no token_endpoint: pass --server URL",
            args.credential.display()
        ),
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let scope = (!args.scopes.is_empty()).then(|| args.scopes.join(" "));
    let body = request_token(&http, &endpoint, &cred, scope.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else if let Some(token) = body["access_token"].as_str() {
        println!("{token}");
    }
    Ok(ExitCode::SUCCESS)
}
