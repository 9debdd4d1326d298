//! `castellan token sign`: a token signed with the key ring's current key under a client's policy
//! (issue 18), through --server (a credential or token with `tokens:sign`) or on the store
//! (`--client NAME`, with the master key).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use castellan_server::tokens::sign::{SignContext, SignError, sign};
use castellan_wire::sign::{SignRequest, SignedToken};
use clap::Args;
use serde_json::{Map, Value};

use crate::Target;
use crate::common::{self, now};

/// Arguments of `token sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The token's subject.
    #[arg(long)]
    pub sub: String,
    /// The token's audience.
    #[arg(long)]
    pub aud: String,
    /// Its lifetime, e.g. 5m (default: the policy's maximum).
    #[arg(long, value_name = "DURATION")]
    pub lifetime: Option<String>,
    /// An extra claim NAME=VALUE (repeat); VALUE is read as JSON when it parses, else as a string.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// `at+jwt` or `JWT` (default: the policy's).
    #[arg(long)]
    pub typ: Option<String>,
    /// On the store: the client whose policy applies (id or name). With --server, the caller's.
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<String>,
    /// Print the whole answer (token, kid, jti, typ, expires_at) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// Signs and prints the token.
pub async fn run(args: SignArgs) -> Result<ExitCode> {
    let lifetime_secs = args
        .lifetime
        .as_deref()
        .map(|t| castellan_core::duration::parse_duration(t).map(|d| d.as_secs() as i64))
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--lifetime")?;
    let mut claims = Map::new();
    for c in &args.claims {
        let Some((name, value)) = c.split_once('=') else {
            bail!("--claim {c:?}: expected NAME=VALUE");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        claims.insert(name.to_owned(), value);
    }
    let req = SignRequest {
        sub: args.sub,
        aud: args.aud,
        lifetime_secs,
        claims,
        typ: args.typ,
    };
    let signed: SignedToken = if let Some(remote) = args.target.remote.client().await? {
        if args.client.is_some() {
            bail!("--client is for the store: through --server the caller's own policy applies");
        }
        remote.post("/v1/tokens/sign", &req).await?
    } else {
        let Some(client) = args.client else {
            bail!(
                "on the store, name the client whose policy applies with --client (or use --server)"
            );
        };
        on_store(&args.target, &client, req).await?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&signed)?);
    } else {
        println!("{}", signed.token);
    }
    Ok(ExitCode::SUCCESS)
}

async fn on_store(target: &Target, client: &str, req: SignRequest) -> Result<SignedToken> {
    let cfg = target.store.config()?;
    let (store, master) = common::unlocked_store(&cfg).await?;
    let row = store
        .client_by_id_or_name(client)
        .await?
        .with_context(|| format!("no client `{client}`"))?;
    let t = now();
    let ring = castellan_server::keys::load_key_ring(&store, &master, t, None).await?;
    let key = ring.signing_key(t).context("no signing key is active")?;
    let issuer = cfg.issuer();
    let ctx = SignContext {
        issuer: &issuer,
        default_ttl_secs: cfg.tokens.default_ttl.as_secs() as i64,
        max_ttl_secs: cfg.tokens.max_ttl.as_secs() as i64,
        now: t,
    };
    sign(&key.key, &ctx, &row, req).map_err(|e| match e {
        SignError::Refused(rule, m) => {
            anyhow::anyhow!("refused by the policy, rule `{}`: {m}", rule.as_str())
        }
        e => anyhow::anyhow!("{e}"),
    })
}
