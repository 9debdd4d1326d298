//! `castellan doctor …`: reads files, stats paths, connects to TLS endpoints and fetches JWKS, hands what
//! it saw to the pure checks of `castellan_core::doctor`, and renders the findings.
//!
//! Exit status: 0 when no finding is an error, 1 when one is, 2 when the doctor itself could not run
//! (bad usage, or an input it was not asked to judge could not be read).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use castellan_core::doctor::files::{Acl, FileFacts, Found, Identity, Stat};
use castellan_core::doctor::tls::{AfterHandshake, Outcome, TlsObservation};
use castellan_core::doctor::token::{JwksDoc, TokenExpectations};
use castellan_core::doctor::{self, ChainRequest, Finding, Input, Severity, codes};
use castellan_core::pki::Purpose;
use clap::{Args, Subcommand, ValueEnum};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;

use crate::common::{self, StoreArgs, now};

/// Names the root cause of broken chains, TLS endpoints, file layouts, JWKS and tokens.
///
/// Without a subcommand, checks a Castellan server (--server URL) or store (--data-dir,
/// --database-url): store reachable, key ring loaded, CA chain sound, certificates near expiry.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DoctorArgs {
    #[command(subcommand)]
    command: Option<DoctorCommand>,
    /// Print `{"findings": [...]}` as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// A running Castellan server to check, e.g. http://127.0.0.1:8270.
    #[arg(long)]
    server: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum DoctorCommand {
    /// A certificate file (leaf, optionally followed by its chain), with its key and a CA file.
    Chain(ChainArgs),
    /// A TLS endpoint: the chain it presents, judged as a strict client; with --cert/--key, whether
    /// it accepts that client certificate.
    Tls(TlsArgs),
    /// Files a service must read: existence, readability by a user, searchable parent directories,
    /// key modes, owners; POSIX ACLs where a path has one (SELinux and AppArmor are not judged).
    Files(FilesArgs),
    /// The JWKS several replicas publish: the same keys everywhere? With --token, which of them can
    /// verify it.
    Jwks(JwksArgs),
    /// An access token: shape, algorithm, signature (with --jwks), expiry, issuer, audience.
    Token(TokenArgs),
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PurposeArg {
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
struct ChainArgs {
    /// The certificate file (PEM): the leaf, then its intermediates (what is presented).
    #[arg(long)]
    cert: PathBuf,
    /// The private key file that should belong to the leaf.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The CA file peers trust (root.pem, or ca-bundle.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The host name (or IP) clients connect to; implies --purpose server unless given.
    #[arg(long)]
    host: Option<String>,
    /// What the certificate is for.
    #[arg(long, value_enum)]
    purpose: Option<PurposeArg>,
}

#[derive(Debug, Args)]
struct TlsArgs {
    /// HOST:PORT (IPv6: [ADDR]:PORT).
    endpoint: String,
    /// The CA file a client trusts.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// A client certificate (chain) to present.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// The name to send as SNI and check the certificate against (default: HOST).
    #[arg(long)]
    servername: Option<String>,
    /// Seconds to wait for the connection and the handshake.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct FilesArgs {
    /// The files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The user that must read them (default: the user running the doctor); also the expected owner.
    #[arg(long)]
    uid: Option<u32>,
    /// Its group (default: the user's primary group).
    #[arg(long)]
    gid: Option<u32>,
}

#[derive(Args)]
struct JwksArgs {
    /// JWKS URLs (or files), one per replica; a bare server URL gets /.well-known/jwks.json.
    #[arg(required = true)]
    urls: Vec<String>,
    /// A token: which replicas can verify it?
    #[arg(long)]
    token: Option<String>,
}

#[derive(Args)]
struct TokenArgs {
    /// The token (`-` reads it from stdin, `@FILE` from a file).
    token: String,
    /// The JWKS to verify it with: a URL or a file.
    #[arg(long)]
    jwks: Option<String>,
    /// The expected issuer (`iss`).
    #[arg(long)]
    issuer: Option<String>,
    /// An audience the token must be for (`aud`).
    #[arg(long)]
    audience: Option<String>,
    /// Clock skew tolerated, seconds.
    #[arg(long, default_value_t = 0)]
    leeway: u64,
}

// Tokens are credentials: `Debug` does not show them.
impl std::fmt::Debug for JwksArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksArgs")
            .field("urls", &self.urls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
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
            .finish_non_exhaustive()
    }
}

/// Runs the doctor; never fails: a doctor that cannot run exits with status 2.
pub async fn run(args: DoctorArgs) -> ExitCode {
    let json = args.json;
    let result = match args.command {
        Some(DoctorCommand::Chain(a)) => Ok(chain(&a)),
        Some(DoctorCommand::Tls(a)) => tls(&a).await,
        Some(DoctorCommand::Files(a)) => files(&a),
        Some(DoctorCommand::Jwks(a)) => Ok(jwks(&a).await),
        Some(DoctorCommand::Token(a)) => token(&a).await,
        None => bare(args.server.as_deref(), &args.store).await,
    };
    match result {
        Ok(findings) => {
            if let Err(e) = render(&findings, json) {
                eprintln!("doctor: cannot print the findings: {e}");
                return ExitCode::from(2);
            }
            if doctor::has_errors(&findings) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("doctor: cannot run: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn render(findings: &[Finding], json: bool) -> Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    if json {
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            findings: &'a [Finding],
        }
        writeln!(w, "{}", serde_json::to_string_pretty(&Doc { findings })?)?;
        return Ok(());
    }
    for f in findings {
        writeln!(
            w,
            "{:<7} {}  {}: {}",
            f.severity.as_str(),
            f.code,
            f.subject,
            f.message
        )?;
        writeln!(w, "        fix: {}", f.fix)?;
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let (e, wn) = (count(Severity::Error), count(Severity::Warning));
    if e == 0 && wn == 0 {
        writeln!(w, "no problems found")?;
    } else {
        writeln!(w, "{e} error(s), {wn} warning(s)")?;
    }
    Ok(())
}

/// Reads a file the doctor was asked to judge; what goes wrong is a finding.
fn read_judged(path: &Path, out: &mut Vec<Finding>) -> Option<Vec<u8>> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) => {
            let (code, message, fix) = match e.kind() {
                std::io::ErrorKind::NotFound => (
                    codes::FILE_MISSING,
                    format!("{name} does not exist: `No such file or directory`"),
                    "check the path".to_owned(),
                ),
                std::io::ErrorKind::PermissionDenied => (
                    codes::NOT_READABLE,
                    format!("{name} cannot be read: `permission denied`"),
                    format!(
                        "run `castellan doctor files {name}` to see which permission is missing"
                    ),
                ),
                std::io::ErrorKind::IsADirectory => (
                    codes::NOT_READABLE,
                    format!("{name} is a directory, not a file"),
                    "name the file inside it".to_owned(),
                ),
                _ => (
                    codes::NOT_READABLE,
                    format!("{name} cannot be read: {e}"),
                    "check the path and the file".to_owned(),
                ),
            };
            out.push(Finding::error(code, name, message, fix));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// chain

fn chain(a: &ChainArgs) -> Vec<Finding> {
    let mut out = Vec::new();
    let names = (
        a.cert.display().to_string(),
        a.key.as_ref().map(|p| p.display().to_string()),
        a.ca.as_ref().map(|p| p.display().to_string()),
    );
    let cert = read_judged(&a.cert, &mut out);
    let key = a.key.as_ref().and_then(|p| read_judged(p, &mut out));
    let ca = a.ca.as_ref().and_then(|p| read_judged(p, &mut out));
    let Some(cert) = cert else {
        return out;
    };
    let purpose = a
        .purpose
        .map(Purpose::from)
        .or(a.host.as_ref().map(|_| Purpose::Server));
    let req = ChainRequest {
        cert: Input::new(&names.0, &cert),
        key: match (&names.1, &key) {
            (Some(n), Some(k)) => Some(Input::new(n, k)),
            _ => None,
        },
        ca: match (&names.2, &ca) {
            (Some(n), Some(c)) => Some(Input::new(n, c)),
            _ => None,
        },
        host: a.host.as_deref(),
        purpose,
        now: now(),
    };
    out.extend(doctor::check_chain(&req));
    out
}

// ---------------------------------------------------------------------------------------------
// tls

/// Records the chain the server presents and accepts it, so the doctor can judge it afterwards.
/// The handshake signatures are still verified, so the server proves it holds the key.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut all = vec![end_entity.to_vec()];
        all.extend(intermediates.iter().map(|c| c.to_vec()));
        if let Ok(mut chain) = self.chain.lock() {
            *chain = all;
        }
        // Accepted only to record it: the doctor judges it strictly afterwards.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Presents the client certificate (if any) and records whether the server asked for one and which
/// CAs it named.
struct ClientAuth {
    key: Option<Arc<CertifiedKey>>,
    seen: Mutex<ClientAuthSeen>,
}

#[derive(Debug, Default, Clone)]
struct ClientAuthSeen {
    requested: bool,
    sent: bool,
    hints: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("has_cert", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl ResolvesClientCert for ClientAuth {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let usable = self
            .key
            .as_ref()
            .filter(|k| k.key.choose_scheme(sigschemes).is_some());
        if let Ok(mut seen) = self.seen.lock() {
            seen.requested = true;
            seen.sent = usable.is_some();
            seen.hints = root_hint_subjects.iter().map(|h| h.to_vec()).collect();
        }
        usable.cloned()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// `host:port` (or `[v6]:port`) into its parts.
fn split_endpoint(endpoint: &str) -> Result<(String, u16)> {
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .with_context(|| format!("`{endpoint}`: expected [ADDRESS]:PORT"))?;
        (h.to_owned(), p)
    } else {
        let (h, p) = endpoint
            .rsplit_once(':')
            .with_context(|| format!("`{endpoint}`: expected HOST:PORT"))?;
        (h.to_owned(), p)
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("`{endpoint}`: `{port}` is not a port number"))?;
    if host.is_empty() {
        bail!("`{endpoint}`: the host is empty");
    }
    Ok((host, port))
}

/// The client credentials for rustls, from the judged files; `None` (with findings) when unusable.
fn client_key(
    provider: &CryptoProvider,
    cert_name: &str,
    cert: &[u8],
    key_name: &str,
    key: &[u8],
    out: &mut Vec<Finding>,
) -> Option<Arc<CertifiedKey>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .filter_map(Result::ok)
        .collect();
    let key_der = PrivateKeyDer::from_pem_slice(key).ok();
    let (Some(key_der), false) = (key_der, certs.is_empty()) else {
        out.push(Finding::warning(
            codes::KEY_INVALID,
            format!("{cert_name}, {key_name}"),
            "the client certificate or key cannot be used, so no client certificate was sent",
            "fix the findings about these files first",
        ));
        return None;
    };
    match provider.key_provider.load_private_key(key_der) {
        Ok(signing) => Some(Arc::new(CertifiedKey::new(certs, signing))),
        Err(e) => {
            out.push(Finding::warning(
                codes::KEY_INVALID,
                key_name,
                format!("rustls cannot use the client key ({e}), so no certificate was sent"),
                "use a PKCS#8, SEC1 or PKCS#1 key of a supported type",
            ));
            None
        }
    }
}

async fn tls(a: &TlsArgs) -> Result<Vec<Finding>> {
    let (host, port) = split_endpoint(&a.endpoint)?;
    let endpoint = a.endpoint.clone();
    let sni = a.servername.clone().unwrap_or_else(|| host.clone());
    let server_name = ServerName::try_from(sni.clone())
        .map_err(|e| anyhow::anyhow!("`{sni}` is not a valid server name: {e}"))?;
    let mut out = Vec::new();
    let ca_name = a.ca.as_ref().map(|p| p.display().to_string());
    let ca = a.ca.as_ref().and_then(|p| read_judged(p, &mut out));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

    // The client certificate, judged as files first.
    let mut key: Option<Arc<CertifiedKey>> = None;
    if let (Some(cp), Some(kp)) = (&a.cert, &a.key) {
        let (cn, kn) = (cp.display().to_string(), kp.display().to_string());
        let cert_bytes = read_judged(cp, &mut out);
        let key_bytes = read_judged(kp, &mut out);
        if let (Some(c), Some(k)) = (&cert_bytes, &key_bytes) {
            let req = ChainRequest {
                cert: Input::new(&cn, c),
                key: Some(Input::new(&kn, k)),
                ca: None,
                host: None,
                purpose: Some(Purpose::Client),
                now: now(),
            };
            out.extend(
                doctor::check_chain(&req)
                    .into_iter()
                    .filter(|f| f.code != codes::TRUST_NOT_CHECKED && f.code != codes::CHAIN_OK),
            );
            key = client_key(&provider, &cn, c, &kn, k, &mut out);
        }
    }

    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let auth = Arc::new(ClientAuth {
        key,
        seen: Mutex::new(ClientAuthSeen::default()),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_client_cert_resolver(auth.clone());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let limit = Duration::from_secs(a.timeout.max(1));

    let mut negotiated = None;
    let outcome =
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect((host.as_str(), port)))
            .await
        {
            Err(_) => Outcome::ConnectFailed(format!("no answer within {}s", limit.as_secs())),
            Ok(Err(e)) => Outcome::ConnectFailed(e.to_string()),
            Ok(Ok(tcp)) => {
                match tokio::time::timeout(limit, connector.connect(server_name, tcp)).await {
                    Err(_) => Outcome::HandshakeFailed {
                        alert: None,
                        error: format!(
                            "no TLS answer within {}s (is this a TLS port?)",
                            limit.as_secs()
                        ),
                    },
                    Ok(Err(e)) => Outcome::HandshakeFailed {
                        alert: alert_of(&e),
                        error: rustls_error_text(&e),
                    },
                    Ok(Ok(mut stream)) => {
                        {
                            let (_, conn) = stream.get_ref();
                            negotiated = Some(format!(
                                "{}, {}",
                                conn.protocol_version()
                                    .and_then(|v| v.as_str())
                                    .unwrap_or("?"),
                                conn.negotiated_cipher_suite()
                                    .and_then(|c| c.suite().as_str())
                                    .unwrap_or("?")
                            ));
                        }
                        let requested = auth.seen.lock().map(|s| s.requested).unwrap_or(false);
                        let after = if requested {
                            // A TLS 1.3 server judges the client certificate after the client's side of
                            // the handshake is done; its verdict arrives as an alert on the first read.
                            let mut buf = [0u8; 64];
                            match tokio::time::timeout(
                                Duration::from_millis(1200),
                                stream.read(&mut buf),
                            )
                            .await
                            {
                                Err(_) => AfterHandshake::Quiet,
                                Ok(Ok(0)) => AfterHandshake::Closed,
                                Ok(Ok(_)) => AfterHandshake::Data,
                                Ok(Err(e)) => match alert_of(&e) {
                                    Some(al) => AfterHandshake::Alert(al),
                                    None => AfterHandshake::Error(rustls_error_text(&e)),
                                },
                            }
                        } else {
                            AfterHandshake::Quiet
                        };
                        Outcome::Completed { after }
                    }
                }
            }
        };
    let seen = auth.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let presented = recorder.chain.lock().map(|c| c.clone()).unwrap_or_default();
    let obs = TlsObservation {
        endpoint,
        server_name: sni,
        presented,
        client_cert_requested: seen.requested,
        acceptable_cas: seen.hints,
        client_cert_sent: seen.sent,
        negotiated,
        outcome,
    };
    let ca_input = match (&ca_name, &ca) {
        (Some(n), Some(c)) => Some(Input::new(n, c)),
        _ => None,
    };
    out.extend(doctor::tls::check_tls(&obs, ca_input, now()));
    Ok(out)
}

/// The TLS alert inside an I/O error from tokio-rustls, if the peer sent one.
fn alert_of(e: &std::io::Error) -> Option<u8> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(u8::from(*a)),
        _ => None,
    }
}

fn rustls_error_text(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// files

/// `stat` of `path` and its POSIX access ACL, or why the ACL cannot be read (then nothing can be
/// judged: the mode bits alone might be wrong).
fn stat_of(path: &Path, m: &std::fs::Metadata) -> Result<Stat, String> {
    Ok(Stat {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        is_dir: m.is_dir(),
        acl: access_acl(path)?,
    })
}

/// The access ACL of `path` (following symlinks, like `stat`), `None` where there is none or the
/// filesystem has no ACLs.
fn access_acl(path: &Path) -> Result<Option<Acl>, String> {
    use rustix::io::Errno;
    // 4 + 8 bytes per entry: room for 511 entries, far beyond what setfacl users write.
    let mut buf = vec![0u8; 4096];
    match rustix::fs::getxattr(path, Acl::XATTR, &mut buf[..]) {
        Ok(n) => Acl::from_xattr(&buf[..n])
            .map(Some)
            .map_err(|e| format!("its ACL cannot be read ({e})")),
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(e) => Err(format!("its ACL cannot be read ({e})")),
    }
}

/// `name:x:uid:gid:…` lines of /etc/passwd: the user's name and primary group.
fn passwd_entry(uid: u32) -> Option<(String, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 3 && f[2].parse::<u32>().ok() == Some(uid))
            .then(|| (f[0].to_owned(), f[3].parse().unwrap_or(uid)))
    })
}

/// Supplementary groups of a user name from /etc/group (`name:x:gid:member,member`).
fn supplementary_groups(user: &str) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string("/etc/group") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[3].split(',').any(|m| m == user))
                .then(|| f[2].parse::<u32>().ok())
                .flatten()
        })
        .collect()
}

/// The groups of this process, from /proc/self/status.
fn own_groups() -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let mut gids = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Gid:") {
            gids.extend(
                rest.split_whitespace()
                    .nth(1)
                    .and_then(|g| g.parse::<u32>().ok()),
            );
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            gids.extend(
                rest.split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        }
    }
    gids
}

fn identity(uid: Option<u32>, gid: Option<u32>) -> Result<Identity> {
    let uid = match uid {
        Some(u) => u,
        None => std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .context("cannot tell which user runs the doctor; pass --uid")?,
    };
    let entry = passwd_entry(uid);
    let mut gids = Vec::new();
    if let Some(g) = gid {
        gids.push(g);
    } else if let Some((_, g)) = &entry {
        gids.push(*g);
    }
    if let Some((name, _)) = &entry {
        gids.extend(supplementary_groups(name));
    }
    if gid.is_none() && entry.is_none() {
        gids.extend(own_groups());
    }
    gids.sort_unstable();
    gids.dedup();
    let label = match &entry {
        Some((name, _)) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    };
    Ok(Identity { uid, gids, label })
}

fn file_facts(path: &Path) -> Result<FileFacts> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("the current directory")?
            .join(path)
    };
    let mut ancestors: Vec<&Path> = abs.ancestors().skip(1).collect();
    ancestors.reverse();
    let mut parents = Vec::new();
    let mut found = None;
    for dir in ancestors {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => match stat_of(dir, &m) {
                Ok(st) => parents.push((dir.display().to_string(), st)),
                Err(why) => {
                    found = Some(Found::Unknown(format!("{}: {why}", dir.display())));
                    break;
                }
            },
            Ok(_) => {
                found = Some(Found::Missing(format!(
                    "{} (a file, not a directory)",
                    dir.display()
                )));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                found = Some(Found::Missing(dir.display().to_string()));
                break;
            }
            Err(e) => {
                found = Some(Found::Unknown(format!("{}: {e}", dir.display())));
                break;
            }
        }
    }
    let shown = path.display().to_string();
    let found = match found {
        Some(f) => f,
        None => match std::fs::metadata(&abs) {
            Ok(m) => match stat_of(&abs, &m) {
                Ok(st) => Found::Exists(st),
                Err(why) => Found::Unknown(why),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Missing(shown.clone()),
            Err(e) => Found::Unknown(e.to_string()),
        },
    };
    let is_key = match &found {
        Found::Exists(st) if !st.is_dir => {
            let mut head = Vec::new();
            let read = std::fs::File::open(&abs)
                .and_then(|f| f.take(1 << 20).read_to_end(&mut head))
                .is_ok();
            if read {
                doctor::holds_private_key(&head)
            } else {
                let lower = shown.to_ascii_lowercase();
                lower.contains("key") && (lower.ends_with(".pem") || lower.ends_with(".key"))
            }
        }
        _ => false,
    };
    Ok(FileFacts {
        path: shown,
        parents,
        found,
        is_key,
    })
}

fn files(a: &FilesArgs) -> Result<Vec<Finding>> {
    let who = identity(a.uid, a.gid)?;
    let mut out = Vec::new();
    for p in &a.paths {
        let facts = file_facts(p)?;
        for f in doctor::files::check_file(&facts, &who, a.uid) {
            // One finding per blocked directory, even when several files sit below it.
            if f.code == codes::DIR_NOT_SEARCHABLE
                && out
                    .iter()
                    .any(|o: &Finding| o.code == f.code && o.subject == f.subject)
            {
                continue;
            }
            out.push(f);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// jwks and tokens

fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("HTTP client")
}

/// A JWKS from a URL (a bare server URL gets /.well-known/jwks.json) or a file.
async fn fetch_jwks(client: &reqwest::Client, source: &str) -> JwksDoc {
    let is_url = source.starts_with("http://") || source.starts_with("https://");
    if !is_url {
        let body = std::fs::read(source).map_err(|e| format!("cannot read the file: {e}"));
        return JwksDoc {
            source: source.to_owned(),
            body,
        };
    }
    let url = match reqwest::Url::parse(source) {
        Ok(u) if u.path() == "/" || u.path().is_empty() => {
            format!("{}/.well-known/jwks.json", source.trim_end_matches('/'))
        }
        _ => source.to_owned(),
    };
    let body = async {
        let r = client.get(&url).send().await.map_err(|e| error_chain(&e))?;
        let status = r.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        r.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| error_chain(&e))
    }
    .await;
    JwksDoc { source: url, body }
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn jwks(a: &JwksArgs) -> Vec<Finding> {
    let client = match http() {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::error(
                codes::JWKS_UNREACHABLE,
                "HTTP",
                format!("cannot start an HTTP client: {e:#}"),
                "report this",
            )];
        }
    };
    let docs = futures_join(&client, &a.urls).await;
    doctor::token::check_jwks(&docs, a.token.as_deref(), now())
}

async fn futures_join(client: &reqwest::Client, urls: &[String]) -> Vec<JwksDoc> {
    let mut set = tokio::task::JoinSet::new();
    for (i, u) in urls.iter().enumerate() {
        let (c, u) = (client.clone(), u.clone());
        set.spawn(async move { (i, fetch_jwks(&c, &u).await) });
    }
    let mut docs: Vec<(usize, JwksDoc)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(d) = r {
            docs.push(d);
        }
    }
    docs.sort_by_key(|(i, _)| *i);
    docs.into_iter().map(|(_, d)| d).collect()
}

async fn token(a: &TokenArgs) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let text = if a.token == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the token from stdin")?;
        s
    } else if let Some(file) = a.token.strip_prefix('@') {
        match read_judged(Path::new(file), &mut out) {
            Some(b) => String::from_utf8_lossy(&b).into_owned(),
            None => return Ok(out),
        }
    } else {
        a.token.clone()
    };
    let doc = match &a.jwks {
        Some(src) => Some(fetch_jwks(&http()?, src).await),
        None => None,
    };
    let expect = TokenExpectations {
        issuer: a.issuer.as_deref(),
        audience: a.audience.as_deref(),
        leeway: a.leeway,
    };
    out.extend(doctor::token::check_token(
        &text,
        doc.as_ref(),
        &expect,
        now(),
    ));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// a Castellan server or store

async fn bare(server: Option<&str>, store: &StoreArgs) -> Result<Vec<Finding>> {
    match server {
        Some(url) => Ok(check_server(url.trim_end_matches('/')).await),
        None => check_store(store).await,
    }
}

async fn check_server(base: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let client = match http() {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::error(
                codes::SERVER_UNREACHABLE,
                base,
                format!("cannot start an HTTP client: {e:#}"),
                "report this",
            ));
            return out;
        }
    };
    match client.get(format!("{base}/healthz")).send().await {
        Err(e) => {
            out.push(Finding::error(
                codes::SERVER_UNREACHABLE,
                base,
                format!("{base} does not answer: {}", error_chain(&e)),
                "check that `castellan serve` runs and listens on that address (--listen)",
            ));
            return out;
        }
        Ok(r) if !r.status().is_success() => out.push(Finding::error(
            codes::SERVER_UNREACHABLE,
            base,
            format!("{base}/healthz answers {}", r.status()),
            "check that the URL points at a Castellan server",
        )),
        Ok(_) => {}
    }
    match client.get(format!("{base}/readyz")).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => out.push(Finding::error(
            codes::KEYRING_NOT_LOADED,
            base,
            format!(
                "{base}/readyz answers {}: the server has not loaded its key ring, so it cannot \
                 issue tokens",
                r.status()
            ),
            "check the server's log; the store must have been initialized (castellan init) and \
             the master key must match",
        )),
        Err(e) => out.push(Finding::error(
            codes::SERVER_UNREACHABLE,
            base,
            format!("{base}/readyz: {}", error_chain(&e)),
            "check the server's log",
        )),
    }
    let doc = fetch_jwks(&client, &format!("{base}/.well-known/jwks.json")).await;
    let mut jwks_findings = doctor::token::check_jwks(std::slice::from_ref(&doc), None, now());
    if jwks_findings.is_empty() {
        let keys = doc
            .body
            .as_ref()
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v["keys"].as_array().map(|k| k.len()))
            .unwrap_or(0);
        if keys == 0 {
            jwks_findings.push(Finding::error(
                codes::KEYRING_NOT_LOADED,
                &doc.source,
                "the server publishes no keys: no token it issues can be verified",
                "run castellan init against its store and restart it",
            ));
        } else {
            jwks_findings.push(Finding::info(
                codes::KEYRING_OK,
                &doc.source,
                format!("the server publishes {keys} key(s)"),
                "nothing to do",
            ));
        }
    }
    out.extend(jwks_findings);
    out
}

async fn check_store(args: &StoreArgs) -> Result<Vec<Finding>> {
    let cfg = args.config()?;
    let now = now();
    let mut out = Vec::new();
    let subject = match &cfg.database_url {
        Some(_) => "the PostgreSQL store".to_owned(),
        None => cfg.data_dir.join("castellan.db").display().to_string(),
    };
    if cfg.database_url.is_none() && !cfg.data_dir.join("castellan.db").exists() {
        out.push(Finding::error(
            codes::STORE_NOT_INITIALIZED,
            &subject,
            format!("there is no store at {subject}"),
            "run `castellan init --data-dir DIR` (or pass the --data-dir of the existing store)",
        ));
        return Ok(out);
    }
    // Only look: the doctor never migrates a store (DDL against a database other versions may be
    // serving) or changes its journal mode.
    let store = match castellan_store::Store::connect_unmigrated(
        &cfg.store_url(),
        std::time::Duration::from_secs(3),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            out.push(Finding::error(
                codes::STORE_UNREACHABLE,
                &subject,
                format!("cannot open the store: {}", error_chain(&e)),
                "check --database-url / --data-dir, that the database runs, and its credentials",
            ));
            return Ok(out);
        }
    };
    let result = match schema_checks(&store, &subject, &mut out).await {
        true => store_checks(&cfg, &store, &subject, now, &mut out).await,
        false => Ok(()),
    };
    store.close().await;
    result?;
    Ok(out)
}

/// Judges the store's schema against this binary's migrations; false when the other store checks
/// cannot run on it (no schema, or one this binary's queries would fail on).
async fn schema_checks(
    store: &castellan_store::Store,
    subject: &str,
    out: &mut Vec<Finding>,
) -> bool {
    let schema = match store.schema_status().await {
        Ok(s) => s,
        Err(e) => {
            out.push(Finding::error(
                codes::STORE_UNREACHABLE,
                subject,
                format!("cannot read the store's schema: {}", error_chain(&e)),
                "check the database and its credentials",
            ));
            return false;
        }
    };
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    if schema.applied.is_empty() {
        out.push(Finding::error(
            codes::STORE_NOT_INITIALIZED,
            subject,
            "the database holds no Castellan schema: it was never initialized",
            "run `castellan init` against it",
        ));
        return false;
    }
    if !schema.unknown.is_empty() {
        out.push(Finding::warning(
            codes::STORE_SCHEMA_NEWER,
            subject,
            format!(
                "a newer Castellan migrated this store (schema version(s) {} are unknown to this binary, \
                 version {})",
                list(&schema.unknown),
                env!("CARGO_PKG_VERSION")
            ),
            "run the doctor (and the servers) of the version that migrated it",
        ));
    }
    if !schema.missing.is_empty() {
        out.push(Finding::warning(
            codes::STORE_SCHEMA_BEHIND,
            subject,
            format!(
                "the store's schema lacks migration(s) {} of this binary (version {}); the doctor changes \
                 nothing, so its other store checks were skipped",
                list(&schema.missing),
                env!("CARGO_PKG_VERSION")
            ),
            "start `castellan serve` of this version against the store (it applies them), or keep to the \
             version that serves it now",
        ));
        return false;
    }
    true
}

/// Opens the newest version of every stored secret: one that does not open (altered, or sealed under a
/// data key this master key cannot unwrap) is named; the values are never shown.
/// How long before its end a certificate counts as expiring: the last third of its lifetime (an agent
/// renews at two thirds), at most 14 days.
const EXPIRING_WITHIN: i64 = 14 * 86_400;

/// Certificates in the last third of their lifetime (at most 14 days before their end), not revoked,
/// for whose names no later certificate was issued: renewals that did not happen. A certificate the
/// agent has replaced is not reported, however near its end.
async fn unrenewed(
    store: &castellan_store::Store,
    now: i64,
) -> Result<Vec<castellan_store::CertRow>> {
    let newest: std::collections::HashMap<(String, Option<String>, String), i64> = store
        .newest_expiry_by_names()
        .await?
        .into_iter()
        .map(|n| ((n.profile, n.common_name, n.sans), n.newest_not_after))
        .collect();
    Ok(store
        .certificates(Some(now + EXPIRING_WITHIN))
        .await?
        .into_iter()
        .filter(|c| {
            let last_third = (c.not_after - c.not_before) / 3;
            let key = (c.profile.clone(), c.common_name.clone(), c.sans.clone());
            c.revoked_at.is_none()
                && c.not_after > now
                && c.not_after - now < last_third.min(EXPIRING_WITHIN)
                && newest.get(&key).is_none_or(|n| *n <= c.not_after)
        })
        .collect())
}

async fn secret_checks(
    store: &castellan_store::Store,
    master: &castellan_core::envelope::MasterKey,
    subject: &str,
    out: &mut Vec<Finding>,
) {
    use castellan_server::secrets;
    let list = match secrets::list(store).await {
        Ok(l) => l,
        Err(e) => {
            out.push(Finding::error(
                codes::STORE_UNREACHABLE,
                subject,
                format!("cannot list the secrets: {e}"),
                "check the database",
            ));
            return;
        }
    };
    let mut bad = 0;
    for s in &list {
        if let Err(e) = secrets::get(store, master, &s.name, Some(s.version)).await {
            bad += 1;
            out.push(Finding::error(
                codes::SECRET_UNREADABLE,
                format!("secret {}", s.name),
                format!("version {} does not open: {e}", s.version),
                "write it again (castellan secret put) from its source; if many fail, check the master key and the data_keys table",
            ));
        }
    }
    if bad == 0 && !list.is_empty() {
        out.push(Finding::info(
            codes::SECRETS_OK,
            subject,
            format!("{} secret(s); the newest version of each opens", list.len()),
            "nothing to do",
        ));
    }
}

async fn store_checks(
    cfg: &castellan_server::config::Config,
    store: &castellan_store::Store,
    subject: &str,
    now: i64,
    out: &mut Vec<Finding>,
) -> Result<()> {
    if let Err(e) = store.ping().await {
        out.push(Finding::error(
            codes::STORE_UNREACHABLE,
            subject,
            format!("the store does not answer: {}", error_chain(&e)),
            "check the database",
        ));
        return Ok(());
    }
    if !castellan_server::init::is_initialized(store)
        .await
        .unwrap_or(false)
    {
        out.push(Finding::error(
            codes::STORE_NOT_INITIALIZED,
            subject,
            "the store has never been initialized: it holds no key ring",
            "run `castellan init` against it",
        ));
        return Ok(());
    }
    let master = common::load_master_key(cfg, false);
    match &master {
        Err(e) => out.push(Finding::error(
            codes::KEYRING_NOT_LOADED,
            subject,
            format!("the key ring cannot be loaded without the master key: {e:#}"),
            "pass --master-key-file (the file every replica of this store is given)",
        )),
        Ok(master) => match castellan_server::keys::load_key_ring(store, master, now, None).await {
            Ok(ring) => {
                let current = ring
                    .signing_key(now)
                    .map(|k| k.key.kid().to_owned())
                    .unwrap_or_else(|_| "(none)".to_owned());
                out.push(Finding::info(
                    codes::KEYRING_OK,
                    subject,
                    format!(
                        "the key ring loads: {} published key(s), signing with `{current}`",
                        ring.keys().len()
                    ),
                    "nothing to do",
                ));
            }
            Err(e) => out.push(Finding::error(
                codes::KEYRING_NOT_LOADED,
                subject,
                format!("the key ring cannot be loaded: {e}"),
                "check that the master key is the one the store was initialized with",
            )),
        },
    }
    match store.active_ca().await {
        Ok(None) => out.push(Finding::warning(
            codes::CA_MISSING,
            subject,
            "the store has no CA, so it cannot issue certificates",
            "run `castellan init` (newer versions create the CA) or castellan pki import-ca",
        )),
        Ok(Some(row)) => {
            let presented = format!("{}{}", row.ca_cert_pem, row.intermediates_pem);
            let req = ChainRequest {
                cert: Input::new(
                    "store CA (issuing CA + intermediates)",
                    presented.as_bytes(),
                ),
                key: None,
                ca: Some(Input::new("store root", row.root_pem.as_bytes())),
                host: None,
                purpose: None,
                now,
            };
            out.extend(doctor::check_chain(&req));
            if let Ok(info) = castellan_core::pki::parse_cert_pem(&row.ca_cert_pem) {
                let left = info.not_after - now;
                if left > 0 && left < 90 * 86_400 {
                    out.push(Finding::warning(
                        codes::CERTIFICATE_EXPIRING,
                        "store CA",
                        format!(
                            "the issuing CA certificate expires in {} days; leaves cannot outlive it",
                            left / 86_400
                        ),
                        "plan a new intermediate (castellan pki import-ca) before it expires",
                    ));
                }
            }
        }
        Err(e) => out.push(Finding::error(
            codes::STORE_UNREACHABLE,
            subject,
            format!("cannot read the CA: {e}"),
            "check the database",
        )),
    }
    if let Ok(master) = &master {
        secret_checks(store, master, subject, out).await;
    }
    for c in unrenewed(store, now).await?.iter().take(20) {
        out.push(Finding::warning(
            codes::CERTIFICATE_EXPIRING,
            format!("serial {}", c.serial),
            format!(
                "the certificate for `{}` (profile {}) expires in {} hours, past the point where it \
                 should have been renewed, and no newer certificate was issued for the same names",
                c.common_name.as_deref().unwrap_or(&c.sans),
                c.profile,
                (c.not_after - now) / 3600
            ),
            "renew it (castellan pki issue), or check the agent that should renew it (castellan \
             agent status file and logs)",
        ));
    }
    Ok(())
}
