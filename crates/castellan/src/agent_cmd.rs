//! `castellan agent` and `castellan dev up|down`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use castellan_agent::{
    Agent, AgentConfig, AgentError, Backend, Delivery, FetchedSecret, HttpBackend, PassReport,
    SecretDelivery, unix_now,
};
use castellan_core::envelope::MasterKey;
use castellan_core::pki::{IssueRequest, Profiles};
use castellan_core::token::Alg;
use castellan_server::config::Config;
use castellan_server::error::ServiceError;
use castellan_server::init::InitOptions;
use castellan_server::pki::{self as svc, LoadedCa};
use castellan_store::Store;
use castellan_wire::SetJson;
use clap::{Args, Subcommand};

use crate::common;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The agent configuration (TOML): server, credential_file (or auth = "kubernetes" and token_file:
    /// a projected service-account token, read again for every sign-in), [[certificate]] and [[secret]] entries.
    #[arg(long)]
    config: PathBuf,
    /// One pass, then exit: status 0 when every certificate and secret is delivered, 1 otherwise.
    #[arg(long)]
    once: bool,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CASTELLAN_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        b.json().flatten_event(true).try_init()
    } else {
        b.try_init()
    };
}

fn report(results: &PassReport) -> bool {
    for (name, r) in &results.certificates {
        match r {
            Ok(Delivery::Reused { serial }) => {
                println!("{name}: valid files reused (serial {serial})")
            }
            Ok(Delivery::Issued { serial }) => {
                println!("{name}: issued and written (serial {serial})")
            }
            Err(e) => eprintln!("error: {name}: {e}"),
        }
    }
    // Names and versions only: a secret's value is never printed.
    for (name, r) in &results.secrets {
        match r {
            Ok(SecretDelivery::Unchanged { version }) => {
                println!("secret {name}: file up to date (version {version})")
            }
            Ok(SecretDelivery::Written { version }) => {
                println!("secret {name}: written (version {version})")
            }
            Err(e) => eprintln!("error: secret {name}: {e}"),
        }
    }
    for (command, r) in &results.reloads {
        if let Err(e) = r {
            eprintln!("error: reload command `{command}`: {e}");
        }
    }
    results.all_ok()
}

pub async fn agent(args: AgentArgs) -> Result<ExitCode> {
    let cfg = AgentConfig::from_file(&args.config)?;
    init_logging(args.log_format == "json");
    let backend = HttpBackend::for_config(&cfg)?;
    let listen = cfg.listen;
    let agent = Agent::new(cfg, backend);
    if args.once {
        let ok = report(&agent.pass(unix_now()).await);
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if let Some(addr) = listen {
        let status = agent.status();
        tokio::spawn(async move {
            if let Err(e) = castellan_agent::serve_metrics(addr, status).await {
                tracing::error!(%addr, error = %e, "cannot serve metrics");
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let results = agent.pass(unix_now()).await;
        for (name, r) in results.certificates {
            if let Err(e) = r {
                tracing::warn!(certificate = %name, error = %e, "delivery failed");
            }
        }
        for (name, r) in results.secrets {
            if let Err(e) = r {
                tracing::warn!(secret = %name, error = %e, "delivery failed");
            }
        }
        let wake = agent.next_wake(unix_now());
        tracing::info!(next_pass_in = %humantime::format_duration(Duration::from_secs(wake.as_secs())), "waiting");
        tokio::select! {
            _ = tokio::time::sleep(wake) => {}
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("agent stopped");
    Ok(ExitCode::SUCCESS)
}

// ---- dev ----------------------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Initialize the embedded store if needed, issue the certificates listed in castellan-dev.toml
    /// into ./certs/<name>/ (valid ones are reused), write the secrets it lists (`[[secret]]`, put
    /// with `castellan secret put` first), start the server in the background and wait (at most
    /// 30 s) until it answers /readyz.
    Up {
        /// The dev configuration; created with a broker and an app certificate when missing.
        #[arg(long, default_value = "castellan-dev.toml")]
        config: PathBuf,
        /// Listen address of the server, instead of the configuration's `listen` (127.0.0.1:8270).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Directory of the store, master key and admin credential, instead of the configuration's
        /// `data_dir` (castellan-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Stop the server `dev up` started. The store and certificates stay for the next `dev up`.
    Down {
        /// The dev configuration.
        #[arg(long, default_value = "castellan-dev.toml")]
        config: PathBuf,
        /// The data directory `dev up --data-dir` was given.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DevConfig {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_listen")]
    listen: std::net::SocketAddr,
    #[serde(default = "default_certs_dir")]
    certs_dir: PathBuf,
    #[serde(default, rename = "certificate")]
    certificates: Vec<castellan_agent::CertSpec>,
    /// Secrets of the store written to files (`castellan secret put NAME` first).
    #[serde(default, rename = "secret")]
    secrets: Vec<castellan_agent::SecretSpec>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("castellan-data")
}
fn default_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 8270))
}
fn default_certs_dir() -> PathBuf {
    PathBuf::from("certs")
}

const STARTER: &str = r#"# castellan dev up: a local Castellan with the certificates a broker and an app need.
# data_dir = "castellan-data"      # the embedded store, master key and admin credential
# listen = "127.0.0.1:8270"
# certs_dir = "certs"              # each certificate goes to certs/<name>/

[[certificate]]
name = "broker"                    # e.g. Mosquitto: certfile chain.pem, keyfile key.pem, cafile ca-bundle.pem
profile = "server"
common_name = "localhost"
dns = ["localhost"]
ip = ["127.0.0.1"]
ttl = "720h"
# A broker that runs as its own user must be able to read key.pem (0600, owned by whoever runs
# `dev up`). Mosquitto started as root drops to the `mosquitto` user and then cannot read a key
# owned by root: give the files to that user (run `dev up` as root; names or numbers):
# owner = "mosquitto:mosquitto"

[[certificate]]
name = "app"                       # the client: certfile chain.pem, keyfile key.pem, cafile root.pem
profile = "client"
common_name = "app"
ttl = "720h"

# Secrets of the store, written to files (mode 0600 unless `mode` says otherwise). Put the value first:
#   castellan secret put mqtt/broker-password --data-dir castellan-data --generate 24
# [[secret]]
# name = "mqtt/broker-password"
# path = "certs/broker/password"
"#;

/// Reads and parses a dev configuration (no defaults from the command line yet).
fn read_dev_config(path: &Path) -> Result<DevConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `castellan config check` of a dev configuration: parsed and checked as `dev up` would, nothing
/// written. Returns what it delivers, for the message.
pub fn check_dev_config(path: &Path) -> Result<String> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let dev = load_dev_config(path, None, None)?;
    let server = format!("http://{}", dev.listen);
    let agent = dev_agent_config(&dev, server, dev.data_dir.join("admin-credential.json"));
    if !(dev.certificates.is_empty() && dev.secrets.is_empty()) {
        agent
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(format!(
        "dev configuration: {} certificate(s), {} secret(s), server at {}, store in {}",
        dev.certificates.len(),
        dev.secrets.len(),
        dev.listen,
        dev.data_dir.display()
    ))
}

/// The agent `dev up` runs once over the store: the dev configuration's certificates and secrets.
fn dev_agent_config(dev: &DevConfig, server: String, cred_path: PathBuf) -> AgentConfig {
    AgentConfig {
        server,
        ca_file: None,
        auth: castellan_agent::config::AuthMethod::ClientSecret,
        credential_file: Some(cred_path),
        token_file: None,
        status_file: None,
        listen: None,
        ca_check_interval: Duration::from_secs(300),
        secret_check_interval: castellan_agent::config::default_secret_check(),
        reload_timeout: castellan_agent::config::default_reload_timeout(),
        certificates: dev.certificates.clone(),
        secrets: dev.secrets.clone(),
    }
}

/// The dev configuration with the command line's `--data-dir` and `--listen` over its own.
fn load_dev_config(
    path: &Path,
    data_dir: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
) -> Result<DevConfig> {
    if !path.exists() {
        std::fs::write(path, STARTER).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote a starter {} (a broker and an app certificate)",
            path.display()
        );
    }
    let mut cfg = read_dev_config(path)?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = listen {
        cfg.listen = l;
    }
    for c in &mut cfg.certificates {
        if c.dir.as_os_str().is_empty() {
            c.dir = cfg.certs_dir.join(&c.name);
        }
    }
    Ok(cfg)
}

/// Issues and reads secrets straight from the store (no server needed): what `dev up` uses.
struct LocalBackend {
    store: Store,
    /// Where the store is, for the message about a secret not put yet.
    data_dir: PathBuf,
    master: MasterKey,
    ca: LoadedCa,
    profiles: Profiles,
}

impl Backend for LocalBackend {
    async fn ca_bundle(&self) -> Result<String, AgentError> {
        Ok(self.ca.issuer.ca_bundle_pem().to_owned())
    }
    async fn sign(
        &self,
        profile: &str,
        csr_pem: &str,
        req: &IssueRequest,
    ) -> Result<SetJson, AgentError> {
        svc::sign_csr(
            &self.store,
            &self.ca,
            &self.profiles,
            profile,
            csr_pem,
            req,
            unix_now(),
        )
        .await
        .map(|s| SetJson::from(&s))
        .map_err(|e| AgentError::Server(e.to_string()))
    }
    async fn issue(&self, profile: &str, req: &IssueRequest) -> Result<SetJson, AgentError> {
        svc::issue(
            &self.store,
            &self.ca,
            &self.profiles,
            profile,
            req,
            unix_now(),
        )
        .await
        .map(|s| SetJson::from(&s))
        .map_err(|e| AgentError::Server(e.to_string()))
    }
    async fn secret(&self, name: &str) -> Result<Option<FetchedSecret>, AgentError> {
        match castellan_server::secrets::get(&self.store, &self.master, name, None).await {
            Ok(s) => Ok(Some(FetchedSecret {
                version: s.meta.version,
                value: s.value,
            })),
            // No server runs yet: the secret is missing from the local store, and the way to put it
            // there is said (the agent's own message would send the user to a server).
            Err(ServiceError::NotFound(_)) => Err(AgentError::Server(format!(
                "not in the store in {dir} yet (`dev up` reads it there, before any server runs): \
                 put it with `castellan secret put {name} --data-dir {dir} --generate 24` (or from \
                 a file with --file FILE), then run `castellan dev up` again; its file was left as it is",
                dir = self.data_dir.display()
            ))),
            Err(e) => Err(AgentError::Server(e.to_string())),
        }
    }
}

/// Says which delivered certificates' and secrets' files now belong to another user than the one
/// running `dev up` (their `owner`, `uid` or `gid`).
fn say_reowned(dev: &DevConfig, results: &PassReport) {
    use castellan_files::owner::{Owner, describe};
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user of this process.
    let me = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    let differs = |o: Owner| o.uid.is_some_and(|u| u != me) || o.gid.is_some();
    for (name, r) in &results.certificates {
        let Some(spec) = dev.certificates.iter().find(|c| &c.name == name) else {
            continue;
        };
        let key = spec.resolved_files().into_iter().find(|f| f.role == "key");
        if let (Ok(_), Some(f)) = (r, key) {
            let owner = Owner {
                uid: f.uid,
                gid: f.gid,
            };
            if differs(owner) {
                println!(
                    "{name}: files re-owned to {} (key.pem mode {:04o})",
                    describe(owner),
                    f.mode
                );
            }
        }
    }
    for (name, r) in &results.secrets {
        let Some(spec) = dev.secrets.iter().find(|s| &s.name == name) else {
            continue;
        };
        let (uid, gid) = spec.owner_ids();
        if r.is_ok() && differs(Owner { uid, gid }) {
            println!(
                "secret {name}: file re-owned to {}",
                describe(Owner { uid, gid })
            );
        }
    }
}

fn pid_file(cfg: &DevConfig) -> PathBuf {
    cfg.data_dir.join("castellan.pid")
}

/// The pid in the pid file, when that process is the server `dev up` started for this data dir.
/// Anything else (a stale pid file whose pid now belongs to another process, after a reboot say) is
/// not ours to signal.
fn running_pid(cfg: &DevConfig) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(cfg))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let exe = std::env::current_exe().ok()?;
    is_our_server(Path::new(&format!("/proc/{pid}")), &exe, &cfg.data_dir).then_some(pid)
}

/// The process of `proc_dir` (`/proc/PID`) runs `exe` (this very binary) as `serve --data-dir
/// <data_dir>`, the way `dev up` starts it.
fn is_our_server(proc_dir: &Path, exe: &Path, data_dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let data_dir = data_dir.as_os_str().as_bytes();
    let serves_ours = args.get(1) == Some(&&b"serve"[..])
        && args
            .windows(2)
            .any(|w| w[0] == b"--data-dir" && w[1] == data_dir);
    if !serves_ours {
        return false;
    }
    // The same file; or the same path, when an upgrade has replaced the binary since it started
    // (the kernel then shows the old one's path with " (deleted)").
    let its_exe = proc_dir.join("exe");
    let same_file = match (std::fs::metadata(&its_exe), std::fs::metadata(exe)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    let undeleted = |p: &Path| {
        let b = p.as_os_str().as_bytes();
        b.strip_suffix(b" (deleted)").unwrap_or(b).to_vec()
    };
    same_file || std::fs::read_link(&its_exe).is_ok_and(|p| undeleted(&p) == undeleted(exe))
}

pub async fn dev(cmd: DevCommand) -> Result<ExitCode> {
    match cmd {
        DevCommand::Up {
            config,
            listen,
            data_dir,
        } => dev_up(&config, data_dir, listen).await,
        DevCommand::Down { config, data_dir } => {
            let cfg = load_dev_config(&config, data_dir, None)?;
            let Some(pid) = running_pid(&cfg) else {
                println!("no castellan server from `dev up` is running");
                let _ = std::fs::remove_file(pid_file(&cfg));
                return Ok(ExitCode::SUCCESS);
            };
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = std::fs::remove_file(pid_file(&cfg));
            println!(
                "stopped the castellan server (pid {pid}); the store and certificates are kept"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn dev_up(
    config: &Path,
    data_dir: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
) -> Result<ExitCode> {
    let data_dir_flag = data_dir.clone();
    let dev = load_dev_config(config, data_dir, listen)?;
    let cfg = Config {
        data_dir: dev.data_dir.clone(),
        listen: dev.listen,
        ..Config::default()
    };
    let store = common::open_store(&cfg).await?;
    let master: MasterKey = common::load_master_key(&cfg, true)?;
    let init = castellan_server::init::initialize(
        &store,
        &master,
        unix_now(),
        &InitOptions {
            alg: Alg::RS256,
            key_type: None,
            root_key_offline: false,
        },
    )
    .await?;
    let cred_path = cfg.data_dir.join("admin-credential.json");
    match init.admin {
        Some(cred) => {
            common::write_credential(&cred_path, &cred, &cfg.issuer())?;
            println!(
                "initialized the store in {} (admin credential: {}, mode 0600)",
                cfg.data_dir.display(),
                cred_path.display()
            );
        }
        None => println!("reusing the store in {}", cfg.data_dir.display()),
    }
    if !dev.certificates.is_empty() || !dev.secrets.is_empty() {
        let agent_cfg = dev_agent_config(&dev, cfg.issuer(), cred_path.clone());
        agent_cfg
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
        let backend = LocalBackend {
            ca: svc::load_ca(&store, &master, None).await?,
            profiles: cfg.profiles()?,
            store: store.clone(),
            data_dir: cfg.data_dir.clone(),
            master,
        };
        let agent = Agent::new(agent_cfg, backend);
        let results = agent.pass(unix_now()).await;
        let delivered = report(&results);
        say_reowned(&dev, &results);
        if !delivered {
            bail!("some certificates or secrets could not be delivered");
        }
    }
    store.close().await;

    let url = cfg.issuer();
    if let Some(pid) = running_pid(&dev) {
        println!("the server is already running (pid {pid}) at {url}");
        return Ok(ExitCode::SUCCESS);
    }
    crate::dev_server::check_port_free(dev.listen)?;
    let mut started = crate::dev_server::spawn(&dev.data_dir, dev.listen)?;
    std::fs::write(pid_file(&dev), started.child.id().to_string())?;
    if let Err(e) = started.wait_ready(&url).await {
        let _ = std::fs::remove_file(pid_file(&dev));
        return Err(e);
    }
    let (child, log_path) = (&started.child, &started.log_path);
    println!(
        "castellan is running at {url} (pid {}, log {})",
        child.id(),
        log_path.display()
    );
    let down = match &data_dir_flag {
        Some(d) => format!("castellan dev down --data-dir {}", d.display()),
        None => "castellan dev down".to_owned(),
    };
    println!(
        "certificates are in {}/<name>/; stop with `{down}`",
        dev.certs_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/proc/PID` whose `exe` links to `exe` and whose command line is `args`.
    fn fake_proc(dir: &Path, exe: &Path, args: &[&str]) -> PathBuf {
        let proc_dir = dir.join("proc");
        let _ = std::fs::remove_dir_all(&proc_dir);
        std::fs::create_dir(&proc_dir).expect("mkdir");
        std::os::unix::fs::symlink(exe, proc_dir.join("exe")).expect("exe link");
        let mut cmdline = args.join("\0");
        cmdline.push('\0');
        std::fs::write(proc_dir.join("cmdline"), cmdline).expect("cmdline");
        proc_dir
    }

    #[test]
    fn only_this_binary_serving_this_data_dir_is_the_dev_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let me = d.join("castellan");
        let other = d.join("sleep");
        std::fs::write(&me, b"binary").expect("me");
        std::fs::write(&other, b"another binary").expect("other");
        let ours = [
            "castellan",
            "serve",
            "--data-dir",
            "castellan-data",
            "--listen",
            "x",
        ];
        let data = Path::new("castellan-data");
        assert!(is_our_server(&fake_proc(d, &me, &ours), &me, data));
        // A pid reused by another program, even one whose command line says `serve` and names the
        // data dir.
        assert!(!is_our_server(&fake_proc(d, &other, &ours), &me, data));
        // This binary, but doing something else or serving another data dir.
        for args in [
            &["castellan", "agent", "--config", "serve"][..],
            &["castellan", "serve", "--data-dir", "elsewhere"],
            &["castellan", "serve", "--data-dir", "castellan-data2"],
        ] {
            assert!(
                !is_our_server(&fake_proc(d, &me, args), &me, data),
                "{args:?}"
            );
        }
        // The binary was upgraded in place since the server started.
        std::fs::rename(&me, d.join("old")).expect("move");
        std::fs::write(&me, b"new binary").expect("new");
        let proc_dir = fake_proc(d, Path::new(&format!("{} (deleted)", me.display())), &ours);
        assert!(is_our_server(&proc_dir, &me, data));
        assert!(!is_our_server(&proc_dir, &other, data));
        assert!(!is_our_server(&d.join("no-such-proc"), &me, data));
    }
}
