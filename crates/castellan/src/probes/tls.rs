//! A TLS client that records what a server shows: the chain it presents, whether it asks for a client
//! certificate (and for which CAs), the alert it answers with, and what it does once the handshake is
//! done. It accepts any chain (to record it; the doctor judges it strictly afterwards) but still
//! verifies the handshake signatures, so the server proves it holds the key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use castellan_core::doctor::tls::{AfterHandshake, ClientKeyUnusable, Outcome, TlsObservation};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

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

/// The crypto provider the probe's client uses (rustls on aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client credentials for rustls from a certificate (chain) and key file's contents.
pub fn client_key(
    provider: &CryptoProvider,
    cert: &[u8],
    key: &[u8],
) -> Result<Arc<CertifiedKey>, ClientKeyUnusable> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .filter_map(Result::ok)
        .collect();
    let key_der = PrivateKeyDer::from_pem_slice(key).ok();
    let (Some(key_der), false) = (key_der, certs.is_empty()) else {
        return Err(ClientKeyUnusable::NotLoaded);
    };
    match provider.key_provider.load_private_key(key_der) {
        Ok(signing) => Ok(Arc::new(CertifiedKey::new(certs, signing))),
        Err(e) => Err(ClientKeyUnusable::Refused(e.to_string())),
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` as given, for findings.
    pub endpoint: String,
    /// The host to connect to.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The name sent as SNI and checked against the certificate.
    pub server_name: String,
    /// How long to wait for the connection, and for the handshake.
    pub timeout: Duration,
}

/// Connects to `target`, presenting `key` as the client certificate when the server asks for one, and
/// records what happened; errors only when `target.server_name` is no valid server name or the client
/// cannot be set up.
pub async fn observe(
    provider: Arc<CryptoProvider>,
    target: &Target,
    key: Option<Arc<CertifiedKey>>,
) -> Result<TlsObservation> {
    let sni = target.server_name.clone();
    let server_name = ServerName::try_from(sni.clone())
        .map_err(|e| anyhow::anyhow!("`{sni}` is not a valid server name: {e}"))?;
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
    let limit = target.timeout.max(Duration::from_secs(1));

    let mut negotiated = None;
    let outcome = match tokio::time::timeout(
        limit,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    {
        Err(_) => Outcome::ConnectFailed(format!("no answer within {}s", limit.as_secs())),
        Ok(Err(e)) => Outcome::ConnectFailed(e.to_string()),
        Ok(Ok(tcp)) => match tokio::time::timeout(limit, connector.connect(server_name, tcp)).await
        {
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
                negotiated = Some(negotiated_text(&stream));
                let requested = auth.seen.lock().map(|s| s.requested).unwrap_or(false);
                let after = if requested {
                    after_handshake(&mut stream).await
                } else {
                    AfterHandshake::Quiet
                };
                Outcome::Completed { after }
            }
        },
    };
    let seen = auth.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let presented = recorder.chain.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(TlsObservation {
        endpoint: target.endpoint.clone(),
        server_name: sni,
        presented,
        client_cert_requested: seen.requested,
        acceptable_cas: seen.hints,
        client_cert_sent: seen.sent,
        negotiated,
        outcome,
    })
}

/// `TLSv1_3, TLS13_AES_256_GCM_SHA384`: the version and cipher suite negotiated.
fn negotiated_text(stream: &TlsStream<TcpStream>) -> String {
    let (_, conn) = stream.get_ref();
    format!(
        "{}, {}",
        conn.protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("?"),
        conn.negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("?")
    )
}

/// A TLS 1.3 server judges the client certificate after the client's side of the handshake is done;
/// its verdict arrives as an alert on the first read.
async fn after_handshake(stream: &mut TlsStream<TcpStream>) -> AfterHandshake {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_millis(1200), stream.read(&mut buf)).await {
        Err(_) => AfterHandshake::Quiet,
        Ok(Ok(0)) => AfterHandshake::Closed,
        Ok(Ok(_)) => AfterHandshake::Data,
        Ok(Err(e)) => match alert_of(&e) {
            Some(al) => AfterHandshake::Alert(al),
            None => AfterHandshake::Error(rustls_error_text(&e)),
        },
    }
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
