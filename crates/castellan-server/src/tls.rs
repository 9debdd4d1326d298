//! HTTPS for Castellan's own API (`[tls]`).
//!
//! The API carries client secrets, access tokens, server-made private keys and secret values, so a
//! deployment that is not behind a TLS-terminating proxy should not serve it in plain HTTP. Two sources
//! for the listener's certificate:
//! - **files**: a chain (leaf first) and its key, from any PKI (for example written by `castellan pki
//!   issue --out` or the agent); checked at start (the key matches, the leaf is valid now) and re-read
//!   when they change, keeping the previous certificate while the new pair is inconsistent (an agent
//!   replaces the two files one after the other);
//! - **self-issued**: each replica issues its own server certificate from the store's issuing CA at
//!   start, holds its key in memory only (never written), records it like every issued certificate and
//!   renews it at two thirds of its lifetime, or within seconds when the issuing CA changes (`pki
//!   import-ca`). Clients trust the CA's `root.pem`. This key only proves
//!   the replica's name in the TLS handshake; clients trust the shared CA, not the key, so it is not a
//!   key "for one process alone" in the sense of the token key ring.
//!
//! Handshakes run in their own tasks, each bounded in time, so a client that never finishes its
//! handshake cannot hold up the others.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use castellan_core::pki::{CertInfo, parse_cert_der};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsSource;
use crate::state::AppState;

/// Why the listener's certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("TLS: cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The certificate or key is unusable; the message says why (never the key's bytes).
    #[error("TLS: {0}")]
    Invalid(String),
    /// The self-issued certificate could not be issued.
    #[error("TLS: issuing this replica's certificate: {0}")]
    Issue(String),
}

/// The certificate the listener presents, swapped whole when it is renewed or reloaded.
pub struct CurrentCert {
    inner: RwLock<(Arc<CertifiedKey>, CertInfo)>,
}

impl std::fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = self.info();
        f.debug_struct("CurrentCert")
            .field("serial", &info.serial_hex)
            .field("not_after", &info.not_after)
            .finish_non_exhaustive()
    }
}

impl CurrentCert {
    fn new(key: Arc<CertifiedKey>, info: CertInfo) -> Self {
        Self {
            inner: RwLock::new((key, info)),
        }
    }

    fn get(&self) -> (Arc<CertifiedKey>, CertInfo) {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// What the leaf presented now is: serial, names, validity.
    pub fn info(&self) -> CertInfo {
        self.get().1
    }

    fn replace(&self, key: Arc<CertifiedKey>, info: CertInfo, state: &AppState) {
        state.tls_certificate_presented(info.not_after);
        tracing::info!(
            serial = %info.serial_hex,
            not_after = info.not_after,
            "TLS: presenting a new certificate"
        );
        match self.inner.write() {
            Ok(mut g) => *g = (key, info),
            Err(p) => *p.into_inner() = (key, info),
        }
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get().0)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM chain (leaf first) and a PEM key, and checks that they belong together and that the leaf
/// is valid at `now`. Errors name the file and never show the key.
pub fn load_pair(
    chain_pem: &[u8],
    key_pem: &[u8],
    now: i64,
    what: &str,
) -> Result<(Arc<CertifiedKey>, CertInfo), TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid(format!("{what}: the certificate file is not PEM ({e})")))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Invalid(format!(
            "{what}: the certificate file holds no CERTIFICATE block"
        )));
    };
    let info = parse_cert_der(leaf).map_err(|e| TlsError::Invalid(format!("{what}: {e}")))?;
    if info.is_ca {
        return Err(TlsError::Invalid(format!(
            "{what}: the first certificate is a CA ({}); the file must start with the server's own certificate",
            info.subject
        )));
    }
    if now < info.not_before || now > info.not_after {
        return Err(TlsError::Invalid(format!(
            "{what}: the certificate {} is not valid now (valid from {} to {}, unix seconds)",
            info.subject, info.not_before, info.not_after
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| {
        TlsError::Invalid(format!(
            "{what}: the key file holds no PEM private key (PKCS#8, SEC1 or PKCS#1)"
        ))
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Invalid(format!(
            "{what}: the key does not match the certificate {}",
            info.subject
        )),
        _ => TlsError::Invalid(format!("{what}: unusable key or certificate ({e})")),
    })?;
    Ok((Arc::new(certified), info))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The rustls configuration of the listener: TLS 1.2 and 1.3, HTTP/1.1 by ALPN, no client certificates.
pub fn server_config(cert: Arc<CurrentCert>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Loads (or issues) the first certificate and starts the task that keeps it current: the files are
/// re-read when they change; a self-issued certificate is renewed at two thirds of its lifetime.
pub async fn start(
    source: &TlsSource,
    state: &AppState,
) -> Result<(Arc<CurrentCert>, tokio::task::JoinHandle<()>), TlsError> {
    match source.clone() {
        TlsSource::Files {
            cert,
            key,
            reload_interval,
        } => {
            let what = cert.display().to_string();
            let (chain_bytes, key_bytes) = (read(&cert)?, read(&key)?);
            let (certified, info) = load_pair(&chain_bytes, &key_bytes, state.now(), &what)?;
            state.tls_certificate_presented(info.not_after);
            let current = Arc::new(CurrentCert::new(certified, info));
            let keep = current.clone();
            let state = state.clone();
            let task = tokio::spawn(async move {
                let mut seen = (chain_bytes, key_bytes);
                loop {
                    tokio::time::sleep(reload_interval).await;
                    let (Ok(c), Ok(k)) = (read(&cert), read(&key)) else {
                        tracing::warn!(file = %what, "TLS: cannot read the certificate or key file; still presenting the previous certificate");
                        continue;
                    };
                    if (&c, &k) == (&seen.0, &seen.1) {
                        continue;
                    }
                    match load_pair(&c, &k, state.now(), &what) {
                        Ok((certified, info)) => {
                            keep.replace(certified, info, &state);
                            seen = (c, k);
                        }
                        // Most often the two files are being replaced one after the other: the next
                        // check sees the finished pair.
                        Err(e) => tracing::warn!("{e}; still presenting the previous certificate"),
                    }
                }
            });
            Ok((current, task))
        }
        TlsSource::SelfIssued {
            dns_names,
            ip_addresses,
            ttl,
        } => {
            let issue = move |state: AppState| {
                let (dns, ips) = (dns_names.clone(), ip_addresses.clone());
                async move {
                    let ca_id = state.issuing_ca_id();
                    let set = state
                        .issue_own_certificate(dns, ips, ttl.as_secs())
                        .await
                        .map_err(|e| TlsError::Issue(e.to_string()))?;
                    let key = set
                        .key_pem
                        .as_ref()
                        .ok_or_else(|| TlsError::Issue("no key in the issued set".into()))?;
                    let (certified, info) = load_pair(
                        set.chain_pem.as_bytes(),
                        key.as_bytes(),
                        state.now(),
                        "this replica's certificate",
                    )?;
                    tracing::info!(serial = %info.serial_hex, names = ?info.dns_names, ips = ?info.ip_addresses, "TLS: issued this replica's certificate");
                    Ok::<_, TlsError>((certified, info, ca_id))
                }
            };
            let (certified, info, mut issued_by) = issue(state.clone()).await?;
            state.tls_certificate_presented(info.not_after);
            let current = Arc::new(CurrentCert::new(certified, info));
            let keep = current.clone();
            let state = state.clone();
            let task = tokio::spawn(async move {
                loop {
                    let info = keep.info();
                    // Wake at the renewal point, and often enough to follow a change of the issuing
                    // CA (`pki import-ca`): clients may stop trusting the old one.
                    tokio::time::sleep(
                        renew_in(info.not_before, info.not_after, state.now()).min(CA_CHECK),
                    )
                    .await;
                    let due = renew_in(info.not_before, info.not_after, state.now()).is_zero();
                    if !due && state.issuing_ca_id() == issued_by {
                        continue;
                    }
                    match issue(state.clone()).await {
                        Ok((certified, info, ca_id)) => {
                            issued_by = ca_id;
                            keep.replace(certified, info, &state);
                        }
                        Err(e) => {
                            tracing::warn!("{e}; retrying in 10s");
                            tokio::time::sleep(Duration::from_secs(10)).await;
                        }
                    }
                }
            });
            Ok((current, task))
        }
    }
}

/// How long until a certificate valid from `not_before` to `not_after` is renewed: at two thirds of its
/// lifetime, or now when that point has passed.
pub fn renew_in(not_before: i64, not_after: i64, now: i64) -> Duration {
    let at = not_before.saturating_add(not_after.saturating_sub(not_before) / 3 * 2);
    Duration::from_secs(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
}

/// How often a self-issued certificate's issuer is compared with the CA the replica issues with now.
const CA_CHECK: Duration = Duration::from_secs(5);

/// How long a client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more wait for their turn in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 1024;

/// A listener that hands axum connections whose TLS handshake has completed.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Accepts TCP connections on `tcp` and runs each handshake in its own task.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY: {e}");
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let done =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    drop(permit);
                    match done {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            acceptor: task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime_and_never_in_the_past() {
        assert_eq!(renew_in(1000, 1900, 1000), Duration::from_secs(600));
        assert_eq!(renew_in(1000, 1900, 1500), Duration::from_secs(100));
        assert_eq!(renew_in(1000, 1900, 1600), Duration::ZERO);
        assert_eq!(renew_in(1000, 1900, 5000), Duration::ZERO);
        assert_eq!(renew_in(i64::MIN, i64::MAX, 0), Duration::ZERO);
    }
}
