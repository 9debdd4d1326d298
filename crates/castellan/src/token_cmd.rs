//! `castellan token`: an access token for a credential file, for curl and scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use crate::common::read_credential;
use crate::remote::{http_client, request_token};

/// Arguments of `castellan token`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TokenArgs {
    /// `sign`: a token signed under a client's policy (the signing API).
    #[command(subcommand)]
    pub command: Option<TokenCommand>,
    /// Credential file (client_id, client_secret, token_endpoint), as `castellan init` writes the admin's.
    #[arg(long, value_name = "FILE", required = false)]
    pub credential: Option<PathBuf>,
    /// The server to ask, e.g. http://127.0.0.1:8270 (default: the credential's token_endpoint).
    #[arg(long, env = "CASTELLAN_SERVER", hide_env_values = true)]
    pub server: Option<String>,
    /// A scope to ask for (repeat for several; default: every scope of the client).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// For an https:// server: trust only the certificates in this PEM file (e.g. Castellan's root.pem).
    #[arg(
        long,
        value_name = "FILE",
        env = "CASTELLAN_CA_FILE",
        hide_env_values = true
    )]
    pub ca_file: Option<PathBuf>,
    /// Print the whole token response (access_token, token_type, expires_in, scope) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `castellan token` does besides getting an access token.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Sign a token with the key ring's current key, within a client's policy (the signing API,
    /// `POST /v1/tokens/sign`, scope `tokens:sign`).
    Sign(crate::sign_cmd::SignArgs),
}

/// Prints the token (or the response) on stdout.
pub async fn run(args: TokenArgs) -> Result<ExitCode> {
    if let Some(TokenCommand::Sign(sign)) = args.command {
        return crate::sign_cmd::run(sign).await;
    }
    let Some(credential) = args.credential else {
        bail!("--credential FILE is required (or `castellan token sign …`)");
    };
    let cred = read_credential(&credential)?;
    let endpoint = match (&args.server, &cred.token_endpoint) {
        (Some(server), _) => format!("{}/oauth2/token", server.trim_end_matches('/')),
        (None, Some(endpoint)) => endpoint.clone(),
        (None, None) => bail!(
            "{} names no token_endpoint: pass --server URL",
            credential.display()
        ),
    };
    let http = http_client(args.ca_file.as_deref())?;
    let scope = (!args.scopes.is_empty()).then(|| args.scopes.join(" "));
    let body = request_token(&http, &endpoint, &cred, scope.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!("{}", body.access_token);
    }
    Ok(ExitCode::SUCCESS)
}
