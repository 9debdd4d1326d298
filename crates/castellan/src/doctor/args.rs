//! The arguments of the doctor's subcommands.

use std::path::PathBuf;

use castellan_core::pki::Purpose;
use clap::{Args, ValueEnum};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum PurposeArg {
    Server,
    Client,
}

impl From<PurposeArg> for Purpose {
    fn from(p: PurposeArg) -> Purpose {
        match p {
            PurposeArg::Server => Purpose::Server,
            PurposeArg::Client => Purpose::Client,
        }
    }
}

#[derive(Debug, Args)]
pub(super) struct ChainArgs {
    /// The certificate file (PEM): the leaf, then its intermediates (what is presented).
    #[arg(long)]
    pub(super) cert: PathBuf,
    /// The private key file that should belong to the leaf.
    #[arg(long)]
    pub(super) key: Option<PathBuf>,
    /// The CA file peers trust (root.pem, or ca-bundle.pem).
    #[arg(long)]
    pub(super) ca: Option<PathBuf>,
    /// The host name (or IP) clients connect to; implies --purpose server unless given.
    #[arg(long)]
    pub(super) host: Option<String>,
    /// What the certificate is for.
    #[arg(long, value_enum)]
    pub(super) purpose: Option<PurposeArg>,
}

#[derive(Debug, Args)]
pub(super) struct TlsArgs {
    /// HOST:PORT (IPv6: [ADDR]:PORT).
    pub(super) endpoint: String,
    /// The CA file a client trusts.
    #[arg(long)]
    pub(super) ca: Option<PathBuf>,
    /// A client certificate (chain) to present.
    #[arg(long, requires = "key")]
    pub(super) cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, requires = "cert")]
    pub(super) key: Option<PathBuf>,
    /// The name to send as SNI and check the certificate against (default: HOST).
    #[arg(long)]
    pub(super) servername: Option<String>,
    /// Seconds to wait for the connection and the handshake.
    #[arg(long, default_value_t = 10)]
    pub(super) timeout: u64,
}

#[derive(Debug, Args)]
pub(super) struct FilesArgs {
    /// The files.
    #[arg(required = true)]
    pub(super) paths: Vec<PathBuf>,
    /// The user that must read them (default: the user running the doctor); also the expected owner.
    #[arg(long)]
    pub(super) uid: Option<u32>,
    /// Its group (default: the user's primary group).
    #[arg(long)]
    pub(super) gid: Option<u32>,
    /// The user by name (or number), as /etc/passwd or `getent passwd` know it; instead of --uid.
    #[arg(long, conflicts_with = "uid")]
    pub(super) user: Option<String>,
    /// The group by name (or number), as /etc/group or `getent group` know it; instead of --gid.
    #[arg(long, conflicts_with = "gid")]
    pub(super) group: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct ComposeArgs {
    /// The Compose file (docker-compose.yml, compose.yaml).
    pub(super) file: PathBuf,
    /// The `castellan dev up` configuration whose certificates the services read through bind
    /// mounts (default: castellan-dev.toml beside the Compose file, when there is one).
    #[arg(long)]
    pub(super) dev_config: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct JwksArgs {
    /// JWKS URLs (or files), one per replica; a bare server URL gets /.well-known/jwks.json.
    #[arg(required = true)]
    pub(super) urls: Vec<String>,
    /// A token: which replicas can verify it?
    #[arg(long)]
    pub(super) token: Option<String>,
    /// With one URL: how many times to fetch it, each over a fresh connection, to see the replicas
    /// a load balancer spreads requests over.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(super) samples: u32,
}

#[derive(Args)]
pub(super) struct TokenArgs {
    /// The token (`-` reads it from stdin, `@FILE` from a file).
    pub(super) token: String,
    /// The JWKS to verify it with: a URL or a file.
    #[arg(long)]
    pub(super) jwks: Option<String>,
    /// The expected issuer (`iss`).
    #[arg(long)]
    pub(super) issuer: Option<String>,
    /// An audience the token must be for (`aud`).
    #[arg(long)]
    pub(super) audience: Option<String>,
    /// Clock skew tolerated, seconds.
    #[arg(long, default_value_t = 0)]
    pub(super) leeway: u64,
    /// How many times to fetch a --jwks URL, each over a fresh connection (replicas behind a load
    /// balancer).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(super) samples: u32,
}

// Tokens are credentials: `Debug` does not show them.
impl std::fmt::Debug for JwksArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksArgs")
            .field("urls", &self.urls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("samples", &self.samples)
            .finish()
    }
}

impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenArgs")
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}
