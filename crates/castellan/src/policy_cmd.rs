//! `castellan client policy CLIENT …`: a client's token policy (issue 18) — the audiences it may
//! have tokens for, the bounds of the signing API, the tokens it may exchange — on the store or
//! through --server.

use std::process::ExitCode;

use anyhow::{Context, Result};
use castellan_wire::sign::ClientPolicySpec;
use clap::Args;

use crate::Target;
use crate::common;

/// Arguments of `client policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Client id or name.
    pub client: String,
    /// An audience it may have tokens for besides its default one (repeat): `audience`/`resource`
    /// on token requests, the signing API's `aud`, a token exchange's target.
    #[arg(long = "allow-audience", value_name = "AUD")]
    pub audiences: Vec<String>,
    /// The signing API's longest lifetime, e.g. 10m (default: tokens.default_ttl).
    #[arg(long, value_name = "DURATION")]
    pub sign_max_ttl: Option<String>,
    /// An extra claim name signed tokens may carry (repeat); registered claims never.
    #[arg(long = "sign-claim", value_name = "NAME")]
    pub sign_claims: Vec<String>,
    /// The `sub` pattern of signed tokens, `*` for any run of characters (default: the client's id).
    #[arg(long, value_name = "PATTERN")]
    pub sign_sub: Option<String>,
    /// The `typ` of signed tokens: at+jwt (default) or JWT.
    #[arg(long, value_name = "TYP")]
    pub sign_typ: Option<String>,
    /// An audience of the access tokens it may exchange (RFC 8693, repeat).
    #[arg(long = "exchange-from", value_name = "AUD")]
    pub exchange_from: Vec<String>,
    /// Remove the client's policy.
    #[arg(long, conflicts_with_all = ["audiences", "sign_max_ttl", "sign_claims", "sign_sub", "sign_typ", "exchange_from"])]
    pub remove: bool,
    #[command(flatten)]
    pub target: Target,
}

/// Sets (or removes) the policy and prints it as stored.
pub async fn run(args: PolicyArgs) -> Result<ExitCode> {
    let sign_max_ttl_secs = args
        .sign_max_ttl
        .as_deref()
        .map(|t| castellan_core::duration::parse_duration(t).map(|d| d.as_secs() as i64))
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--sign-max-ttl")?;
    let spec = (!args.remove).then(|| ClientPolicySpec {
        audiences: args.audiences,
        sign_max_ttl_secs,
        sign_claims: args.sign_claims,
        sign_sub: args.sign_sub,
        sign_typ: args.sign_typ,
        exchange_from: args.exchange_from,
    });
    let path = format!("/v1/clients/{}/policy", args.client);
    let stored: Option<ClientPolicySpec> = if let Some(remote) = args.target.remote.client().await?
    {
        match &spec {
            Some(spec) => remote.send_json(reqwest::Method::PUT, &path, spec).await?,
            None => {
                remote.delete(&path).await?;
                None
            }
        }
    } else {
        let cfg = args.target.store.config()?;
        let store = common::open_store(&cfg).await?;
        castellan_server::client_policies::set_policy(
            &store,
            &args.client,
            spec.as_ref(),
            cfg.tokens.max_ttl.as_secs() as i64,
        )
        .await?
    };
    match stored {
        Some(p) => println!("{}", serde_json::to_string_pretty(&p)?),
        None => println!("removed the policy of client {}", args.client),
    }
    Ok(ExitCode::SUCCESS)
}
