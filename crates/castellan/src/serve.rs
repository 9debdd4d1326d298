//! `castellan serve`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use castellan_core::SystemClock;
use castellan_core::token::Alg;
use castellan_server::config::{Config, LogFormat, TlsMode};
use castellan_server::error::ServiceError;
use castellan_server::http;
use castellan_server::init::InitOptions;
use castellan_server::state::{AppState, Settings};
use castellan_server::tls::{self, TlsListener};
use clap::Args;

use crate::common::{self, StoreArgs, now};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Development mode: initialize an empty embedded store (and a master key) by itself.
    #[arg(long)]
    dev: bool,
    /// Address to bind [env: CASTELLAN_LISTEN] [default: 127.0.0.1:8270].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Public URL, the token issuer; replicas must share it [env: CASTELLAN_PUBLIC_URL].
    #[arg(long)]
    public_url: Option<String>,
    /// Log format [env: CASTELLAN_LOG_FORMAT] [default: text].
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Log filter, e.g. info or debug [env: CASTELLAN_LOG_LEVEL].
    #[arg(long)]
    log_level: Option<String>,
    /// Name of this replica in /v1/sys/status [env: CASTELLAN_REPLICA_ID].
    #[arg(long)]
    replica_id: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM, leaf first), re-read when it changes; needs
    /// --tls-key [env: CASTELLAN_TLS_CERT_FILE].
    #[arg(long, requires = "tls_key", conflicts_with = "tls_self_issued")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM) [env: CASTELLAN_TLS_KEY_FILE].
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve HTTPS with a certificate this replica issues itself from the store's CA (key in memory
    /// only, renewed at two thirds of its lifetime); clients trust the CA's root.pem [env:
    /// CASTELLAN_TLS_MODE=self-issued].
    #[arg(long)]
    tls_self_issued: bool,
    /// A DNS name or IP address for --tls-self-issued (repeat it) [env: CASTELLAN_TLS_NAMES, comma-
    /// separated] [default: the public URL's host and the listen address].
    #[arg(long = "tls-name", value_name = "NAME")]
    tls_names: Vec<String>,
}

fn config(args: &ServeArgs) -> Result<Config> {
    let mut cfg = args.store.config()?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(u) = &args.public_url {
        cfg.public_url = Some(u.clone());
    }
    if let Some(f) = &args.log_format {
        cfg.log_format = if f == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
    }
    if let Some(l) = &args.log_level {
        cfg.log_level = l.clone();
    }
    if let Some(r) = &args.replica_id {
        cfg.replica_id = Some(r.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        cfg.tls.mode = TlsMode::Files;
        cfg.tls.cert_file = Some(cert.clone());
        cfg.tls.key_file = Some(key.clone());
    }
    if args.tls_self_issued {
        cfg.tls.mode = TlsMode::SelfIssued;
    }
    if !args.tls_names.is_empty() {
        cfg.tls.names = args.tls_names.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let cfg = config(&args)?;
    init_logging(&cfg);
    let store = common::open_store(&cfg).await?;
    if !args.dev && !castellan_server::init::is_initialized(&store).await? {
        return fail(ServiceError::NotInitialized);
    }
    let master = common::load_master_key(&cfg, args.dev)?;
    if args.dev {
        let outcome = castellan_server::init::initialize(
            &store,
            &master,
            now(),
            &InitOptions {
                alg: Alg::RS256,
                key_type: None,
                root_key_offline: false,
            },
        )
        .await;
        match outcome {
            Ok(o) => {
                if let Some(cred) = o.admin {
                    let path = cfg.data_dir.join("admin-credential.json");
                    common::write_credential(&path, &cred, &cfg.issuer())?;
                    tracing::info!(path = %path.display(), "dev mode: initialized the store; admin credential written (mode 0600)");
                } else {
                    tracing::info!(
                        "dev mode: the store is initialized already; reusing its key ring"
                    );
                }
            }
            Err(e) => return fail(e),
        }
    }
    let replica_id = cfg.replica_id.clone().unwrap_or_else(default_replica_id);
    let settings = Settings {
        issuer: cfg.issuer(),
        jwks_max_age_secs: cfg.tokens.jwks_max_age.as_secs(),
        default_ttl_secs: cfg.tokens.default_ttl.as_secs() as i64,
        max_ttl_secs: cfg.tokens.max_ttl.as_secs() as i64,
        replica_id: replica_id.clone(),
        refresh_interval: cfg.store.refresh_interval,
        profiles: Arc::new(cfg.profiles()?),
        crl_validity_secs: cfg.pki.crl_validity.as_secs(),
        crl_url: cfg.crl_url(),
        rotation: cfg.rotation_policy()?,
        signin: cfg.signin.settings()?,
        cert_names: castellan_server::cert_names::CertNamePolicy {
            dev: args.dev,
            castellan_names: cfg.castellan_names(),
            issue_castellan_names: cfg.pki.issue_castellan_names,
        },
    };
    let audit = cfg.audit.settings()?;
    let state = match AppState::load_with_audit(
        store,
        Arc::new(master),
        Arc::new(SystemClock),
        settings,
        audit,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if !cfg.trusted_issuer.is_empty() {
        let trusted = Arc::new(castellan_server::assertion::TrustedIssuers::new(
            &cfg.trusted_issuer,
        )?);
        state.set_trusted_issuers(trusted.clone())?;
        // The keys are fetched once now; a failure is logged and the fetch retried when a token comes.
        tokio::spawn(async move { trusted.warm_up().await });
    }
    if !cfg.identity_provider.is_empty() {
        state.set_upstream_providers(std::sync::Arc::new(upstream_providers(&cfg)?))?;
    }
    state.set_vault(cfg.vault.settings(cfg.tokens.max_ttl)?)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    // The listener's certificate, before anything is served: a bad pair is a start-up refusal.
    let tls = match cfg.tls_source()? {
        Some(source) => match tls::start(&source, &state).await {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    tracing::info!(
        %addr,
        issuer = %cfg.issuer(),
        store = state.store().kind().as_str(),
        replica_id,
        fingerprint = %state.fingerprint(),
        tls = tls.is_some(),
        "castellan is serving"
    );
    castellan_server::audit::events::config_accepted(&state, &cfg, args.dev).await?;
    let refresher = state.spawn_refresh();
    let jobs = state.spawn_jobs();
    let probe = state.spawn_store_probe();
    let router = http::router(state.clone());
    let limits = cfg.http_limits();
    match tls {
        Some((cert, keeper)) => {
            let listener = TlsListener::new(listener, tls::server_config(cert)?)?;
            castellan_server::listen::serve(listener, router, limits, shutdown_signal()).await;
            keeper.abort();
        }
        None => {
            // Answers are small and written whole: send them at once rather than wait for Nagle's
            // algorithm.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY: {e}");
                }
            });
            castellan_server::listen::serve(listener, router, limits, shutdown_signal()).await;
        }
    }
    state.audit().flush().await;
    refresher.abort();
    jobs.abort();
    probe.abort();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Start-up refusals exit with status 2 and say why.
fn fail(e: ServiceError) -> Result<ExitCode> {
    match e {
        ServiceError::NotInitialized | ServiceError::MasterKeyMismatch { .. } => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
        other => Err(other.into()),
    }
}

fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// The `[[identity_provider]]` entries, each with its client secret read from its file.
fn upstream_providers(
    cfg: &castellan_server::config::Config,
) -> anyhow::Result<castellan_server::signin::upstream::UpstreamProviders> {
    use castellan_server::signin::upstream_provider::UpstreamProvider;
    let mut list = Vec::new();
    for e in &cfg.identity_provider {
        let at = |m: String| anyhow::anyhow!("identity_provider `{}`: {m}", e.name);
        let secret = UpstreamProvider::read_secret(e).map_err(at)?;
        list.push(UpstreamProvider::new(e.clone(), secret).map_err(at)?);
    }
    Ok(castellan_server::signin::upstream::UpstreamProviders::new(
        list,
    ))
}
