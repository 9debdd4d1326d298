//! The `castellan` binary: parse the command line, call the service layer, render the result.
#![forbid(unsafe_code)]

mod agent_cmd;
mod audit_cmd;
mod client_cred;
mod common;
mod config_cmd;
mod dev_server;
mod doctor;
mod keys_cmd;
mod pki_cmd;
mod policy_cmd;
mod remote;
mod secret_cmd;
mod serve;
mod sign_cmd;
mod token_cmd;
mod user_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use castellan_core::KeyType;
use castellan_core::token::Alg;
use castellan_files::Reserved;
use castellan_server::init::InitOptions;
use castellan_wire::NewClient;
use clap::{Args, Parser, Subcommand};

use crate::common::{StoreArgs, now};

/// Castellan: one trust service for mTLS certificates and JWT access tokens, with one key ring shared
/// by every replica.
#[derive(Debug, Parser)]
#[command(name = "castellan", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (token endpoint, JWKS, discovery, /v1 API).
    ///
    /// Without --dev the store must have been initialized with `castellan init`; a store without a key
    /// ring makes the server exit with status 2 (it never creates a signing key for itself alone).
    Serve(serve::ServeArgs),
    /// Initialize a store once: token key ring, data key and an admin client credential.
    ///
    /// Running it again changes nothing and says so. Concurrent runs against one store create exactly
    /// one key ring. The admin credential is written to a 0600 file, never printed.
    Init(InitArgs),
    /// Create, list and delete OAuth clients: services, and apps that sign people in (directly on
    /// the store, or through --server).
    #[command(subcommand)]
    Client(ClientCommand),
    /// People who sign in: create, list, show, passwd, disable, enable, delete (on the store, or
    /// through --server with the `users:admin` scope).
    #[command(subcommand)]
    User(user_cmd::UserCommand),
    /// The token key ring: list, plan, rotate (scheduled or --now), revoke, import.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Certificates for mTLS: issue, sign CSRs, CA, revoke, list, import a CA.
    #[command(subcommand)]
    Pki(pki_cmd::PkiCommand),
    /// Secrets, sealed at rest: put (from stdin or a file), get, list, delete (on the store or --server).
    #[command(subcommand)]
    Secret(secret_cmd::SecretCommand),
    /// Deliver certificates to files and keep them fresh (atomic writes, exact modes, reload).
    Agent(agent_cmd::AgentArgs),
    /// A one-command local environment: store, certificates for a broker and an app, and the server.
    #[command(subcommand)]
    Dev(agent_cmd::DevCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Name the root cause of broken chains, TLS endpoints, file layouts, JWKS and tokens.
    Doctor(doctor::DoctorArgs),
    /// Print an access token for a credential file (client_credentials grant).
    ///
    /// For curl and scripts: `curl -H "Authorization: Bearer $(castellan token --credential
    /// castellan-data/admin-credential.json)" http://127.0.0.1:8270/v1/sys/status`.
    Token(token_cmd::TokenArgs),
    /// The audit trail: list events, verify the hash chains and signed checkpoints.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
}

#[derive(Debug, Args)]
struct InitArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Token signing algorithm.
    #[arg(long, default_value = "RS256", value_parser = ["RS256", "ES256", "EdDSA"])]
    alg: String,
    /// Key type for the algorithm (RS256: rsa-2048, rsa-3072, rsa-4096; ES256: p-256; EdDSA: ed25519).
    #[arg(long)]
    key_type: Option<String>,
    /// Where to write the admin credential (default: <data-dir>/admin-credential.json, mode 0600);
    /// `-` prints it on standard output (and the messages on standard error). A path that is not a
    /// regular file (a symlink such as /dev/stdout, a device, a pipe) is refused, never replaced.
    #[arg(long)]
    admin_credential_out: Option<PathBuf>,
    /// Keep the root CA key offline: write it to DIR/root-key.pem (mode 0600) and do not store it.
    #[arg(long, value_name = "DIR")]
    root_key_out: Option<PathBuf>,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Create a client and print its id and secret once.
    Create {
        /// A unique name (letters, digits, '-', '_', '.').
        name: String,
        /// A scope the client may ask for (repeat for several). Apps that sign people in may also
        /// ask for openid, profile, email, groups and offline_access.
        #[arg(long = "scope", required_unless_present = "grants", num_args = 1..)]
        scopes: Vec<String>,
        /// A grant type for an app that signs people in: authorization_code, refresh_token,
        /// client_credentials (repeat; default: client_credentials alone).
        #[arg(long = "grant", value_name = "GRANT", num_args = 1..)]
        grants: Vec<String>,
        /// An exact redirect URI of the app (repeat). https, http on a loopback host, or a
        /// private-use scheme (com.example.app:/cb); a loopback IP (127.0.0.1, [::1]) accepts any port.
        #[arg(long = "redirect-uri", value_name = "URL", num_args = 1..)]
        redirect_uris: Vec<String>,
        /// Where RP-initiated logout may send the browser back to (repeat).
        #[arg(long = "post-logout-redirect-uri", value_name = "URL", num_args = 1..)]
        post_logout_redirect_uris: Vec<String>,
        /// A public client (a browser or native app): no secret; PKCE is its proof.
        #[arg(long)]
        public: bool,
        /// Its users must sign in with a second factor (TOTP).
        #[arg(long)]
        require_mfa: bool,
        /// A user claim its access tokens carry: groups, email, preferred_username, or a name given
        /// with `user create --claim` (repeat).
        #[arg(long = "user-claim", value_name = "CLAIM", num_args = 1..)]
        user_claims: Vec<String>,
        /// The `aud` of its tokens (default: the issuer).
        #[arg(long)]
        audience: Option<String>,
        /// Token lifetime, e.g. 15m or 1h (default: tokens.default_ttl).
        #[arg(long)]
        token_ttl: Option<String>,
        /// A certificate name the client may be issued, within the profile's patterns (repeat for
        /// several): `dns:*.svc.local` (or just `*.svc.local`), `ip:10.0.0.0/8`, `uri:spiffe://c/ns/a/*`.
        /// Outside `serve --dev`, a `pki:issue` client without any is issued nothing.
        #[arg(long = "cert-name", value_name = "PATTERN")]
        cert_names: Vec<String>,
        /// Print JSON: the client with its secret and token endpoint, which `castellan token
        /// --credential` accepts as a credential file.
        #[arg(long)]
        json: bool,
        /// Also write its credential file (client_id, client_secret, token_endpoint) here, mode 0600,
        /// for `castellan token --credential FILE` or an agent's `credential_file`.
        #[arg(long, value_name = "FILE")]
        credential_out: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// List clients.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Set a client's token policy: audiences it may have tokens for, the signing API's bounds
    /// (lifetime, claims, sub pattern, typ), the tokens it may exchange.
    Policy(policy_cmd::PolicyArgs),
    /// Delete a client by id or name.
    Delete {
        /// Client id or name.
        client: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where a management command acts: on the store directly (default), or on a running server.
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub remote: remote::RemoteArgs,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file: a server's, an agent's or a dev one (told apart by its keys,
    /// or --kind); names the bad field and its line.
    Check {
        /// The TOML file.
        file: PathBuf,
        /// Which program reads it (default: guessed: `server =` or `credential_file =` is an
        /// agent's; certificates or secrets without a server, a dev one; else a server's).
        #[arg(long, value_enum)]
        kind: Option<config_cmd::Kind>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Init(args) => init(args).await,
        Command::Client(cmd) => client(cmd).await,
        Command::User(cmd) => user_cmd::run(cmd).await,
        Command::Pki(cmd) => pki_cmd::run(cmd).await,
        Command::Secret(cmd) => secret_cmd::run(cmd).await,
        Command::Agent(args) => agent_cmd::agent(args).await,
        Command::Dev(cmd) => agent_cmd::dev(cmd).await,
        Command::Keys(cmd) => keys_cmd::run(cmd).await,
        Command::Doctor(args) => Ok(doctor::run(args).await),
        Command::Token(args) => token_cmd::run(args).await,
        Command::Audit(cmd) => audit_cmd::run(cmd).await,
        Command::Config(ConfigCommand::Check { file, kind }) => config_cmd::check(&file, kind),
    }
}

/// Hides a password in a database URL.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn init(args: InitArgs) -> Result<ExitCode> {
    let cfg = args.store.config()?;
    let alg: Alg = args.alg.parse()?;
    let key_type: Option<KeyType> = args
        .key_type
        .as_deref()
        .map(KeyType::parse_signing)
        .transpose()?;
    let store = common::open_store(&cfg).await?;
    let master = common::load_master_key(&cfg, true)?;
    // Once init commits, the admin credential and an offline root key exist only in memory until
    // they are written: both files are reserved (temp files created beside them) before the store is
    // touched, so that a missing directory, a permission or a directory in the way fails now, with
    // nothing committed. Dropped unused (already initialized), they leave nothing behind.
    let cred_path = args
        .admin_credential_out
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("admin-credential.json"));
    // `-`: the credential is the only thing on standard output, so `init ... > cred.json` or a pipe
    // gets exactly the JSON; the messages go to standard error.
    let to_stdout = cred_path.as_os_str() == "-";
    let say = |line: String| {
        if to_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let cred_file = if to_stdout {
        None
    } else {
        Some(Reserved::new(&cred_path, 0o600).with_context(|| {
            format!(
                "cannot write the admin credential to {}",
                cred_path.display()
            )
        })?)
    };
    let root_key_file = args
        .root_key_out
        .as_ref()
        .map(|dir| {
            let path = dir.join("root-key.pem");
            Reserved::new(&path, 0o600)
                .map(|file| (path, file))
                .with_context(|| format!("--root-key-out {} is not writable", dir.display()))
        })
        .transpose()?;
    let opts = InitOptions {
        alg,
        key_type,
        root_key_offline: args.root_key_out.is_some(),
    };
    let outcome = castellan_server::init::initialize(&store, &master, now(), &opts).await?;
    match outcome.admin {
        None => {
            say(format!(
                "already initialized: the store at {} has its key ring; nothing changed",
                redact_url(&cfg.store_url())
            ));
        }
        Some(cred) => {
            common::audited(&store, "init", format!("admin client {}", cred.client_id)).await?;
            say(format!(
                "initialized {} ({} key ring, root and intermediate CA)",
                redact_url(&cfg.store_url()),
                alg
            ));
            // The root key first: unlike a credential, it can never be made again.
            if let (Some((key_path, file)), Some(root_key)) = (root_key_file, &outcome.root_key_pem)
            {
                file.commit(root_key.as_bytes())
                    .with_context(|| format!("writing {}", key_path.display()))?;
                say(format!(
                    "root CA key written to {} (mode 0600) and not stored: keep it offline",
                    key_path.display()
                ));
            }
            let json = common::credential_json(&cred, &cfg.issuer())?;
            match cred_file {
                Some(file) => {
                    file.commit(&json)
                        .with_context(|| format!("writing {}", cred_path.display()))?;
                    say(format!(
                        "admin credential written to {} (mode 0600)",
                        cred_path.display()
                    ));
                }
                None => {
                    use std::io::Write as _;
                    let mut out = std::io::stdout().lock();
                    out.write_all(&json)
                        .and_then(|()| out.flush())
                        .context("writing the admin credential to standard output")?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn client(cmd: ClientCommand) -> Result<ExitCode> {
    match cmd {
        ClientCommand::Create {
            name,
            scopes,
            audience,
            token_ttl,
            cert_names,
            json,
            credential_out,
            target,
            grants,
            redirect_uris,
            post_logout_redirect_uris,
            public,
            require_mfa,
            user_claims,
        } => {
            let app = (!grants.is_empty()
                || !redirect_uris.is_empty()
                || public
                || require_mfa
                || !user_claims.is_empty()
                || !post_logout_redirect_uris.is_empty())
            .then(|| castellan_wire::clients::AppRegistration {
                grant_types: if grants.is_empty() {
                    vec!["authorization_code".into()]
                } else {
                    grants
                },
                redirect_uris,
                post_logout_redirect_uris,
                public,
                require_mfa,
                user_claims,
            });
            let token_ttl_secs = token_ttl
                .as_deref()
                .map(|t| castellan_core::duration::parse_duration(t).map(|d| d.as_secs() as i64))
                .transpose()
                .map_err(anyhow::Error::msg)
                .context("--token-ttl")?;
            let req = NewClient {
                name,
                scopes,
                audience,
                token_ttl_secs,
                app,
                cert_names,
            };
            let public = req.app.as_ref().is_some_and(|a| a.public);
            let cred_file = client_cred::reserve(credential_out.as_deref(), public)?;
            let (created, endpoint) = if let Some(remote) = target.remote.client().await? {
                let base = target.remote.server.clone().unwrap_or_default();
                (
                    remote.create_client(&req).await?,
                    client_cred::token_endpoint(&base),
                )
            } else {
                let cfg = target.store.config()?;
                let store = common::open_store(&cfg).await?;
                let created = castellan_server::clients::create_client(
                    &store,
                    req,
                    cfg.tokens.max_ttl.as_secs() as i64,
                    now(),
                )
                .await?;
                common::audited(
                    &store,
                    "client.create",
                    format!("client {}", created.client.client_id),
                )
                .await?;
                (created, client_cred::token_endpoint(&cfg.issuer()))
            };
            if let (Some(file), Some(path)) = (cred_file, &credential_out) {
                client_cred::write(file, path, &created, &endpoint)?;
                eprintln!("credential written to {} (mode 0600)", path.display());
            }
            if json {
                println!(
                    "{}",
                    client_cred::created_json(&created, &endpoint)?.as_str()
                );
            } else {
                println!("client_id:     {}", created.client.client_id);
                if created.client_secret.is_empty() {
                    println!("client_secret: (none: a public client)");
                } else {
                    println!("client_secret: {}", created.client_secret);
                }
                println!("scopes:        {}", created.client.scopes.join(" "));
                if !created.client.cert_names.is_empty() {
                    println!("cert names:    {}", created.client.cert_names.join(" "));
                }
                eprintln!("The secret is shown once and stored only as a hash: keep it now.");
            }
        }
        ClientCommand::List { json, target } => {
            let clients = if let Some(remote) = target.remote.client().await? {
                remote.list_clients().await?
            } else {
                let cfg = target.store.config()?;
                castellan_server::clients::list_clients(&common::open_store(&cfg).await?).await?
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"clients": clients}))?
                );
            } else {
                println!("{:<28} {:<24} {:<8} SCOPES", "CLIENT_ID", "NAME", "TTL");
                for c in clients {
                    let ttl = if c.token_ttl_secs > 0 {
                        format!("{}s", c.token_ttl_secs)
                    } else {
                        "default".into()
                    };
                    println!(
                        "{:<28} {:<24} {:<8} {}",
                        c.client_id,
                        c.name,
                        ttl,
                        c.scopes.join(" ")
                    );
                }
            }
        }
        ClientCommand::Policy(args) => return policy_cmd::run(args).await,
        ClientCommand::Delete { client, target } => {
            if let Some(remote) = target.remote.client().await? {
                remote.delete_client(&client).await?;
            } else {
                let cfg = target.store.config()?;
                let store = common::open_store(&cfg).await?;
                castellan_server::clients::delete_client(&store, &client).await?;
                common::audited(&store, "client.delete", format!("client {client}")).await?;
            }
            println!("deleted client {client}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks over every command (duplicate flags, bad defaults), which it
    /// otherwise runs only when that command is parsed.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
