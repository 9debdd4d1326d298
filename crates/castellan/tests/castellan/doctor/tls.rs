//! `doctor tls` against a rustls server started in this process (tokio-rustls on 127.0.0.1:0), one
//! misconfiguration per test, plus the connection-level failures.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::AsyncReadExt;

use super::doctor;
use super::fixtures::{Ca, LeafSpec, Pki};

/// A TLS server presenting `chain_pem`; with `client_ca_pem`, client certificates chaining to it are
/// required. Stops when dropped.
pub struct TlsServer {
    pub port: u16,
    rt: Option<tokio::runtime::Runtime>,
}

impl TlsServer {
    pub fn start(chain_pem: &str, key_pem: &str, client_ca_pem: Option<&str>) -> TlsServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("certs");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca_pem {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.expect("ca cert")).expect("add root");
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(certs, key).expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 64];
                        let _ =
                            tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
                    }
                });
            }
        });
        TlsServer { port, rt: Some(rt) }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn tls_args(addr: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["tls".to_owned(), addr.to_owned()];
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

#[test]
fn a_good_server_reports_no_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(tmp.path());
    let s = TlsServer::start(
        &format!("{}{}", pki.leaf.pem, pki.int.pem),
        &pki.leaf.key_pem,
        None,
    );
    let r = doctor(
        &tls_args(&s.addr(), &["--ca", &pki.path("root.pem")]),
        tmp.path(),
    );
    r.expect_clean("good rustls server");
    r.expect("tls-connected", 0);
    r.expect("chain-ok", 0);
    // With the SNI name instead of the IP.
    let r = doctor(
        &tls_args(
            &s.addr(),
            &["--ca", &pki.path("root.pem"), "--servername", "localhost"],
        ),
        tmp.path(),
    );
    r.expect_clean("good rustls server by name");
    let r = doctor(
        &tls_args(
            &s.addr(),
            &[
                "--ca",
                &pki.path("root.pem"),
                "--servername",
                "broker.example",
            ],
        ),
        tmp.path(),
    );
    r.expect("hostname-mismatch", 1);
}

#[test]
fn leaf_without_intermediate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(tmp.path());
    let s = TlsServer::start(&pki.leaf.pem, &pki.leaf.key_pem, None);
    let r = doctor(
        &tls_args(&s.addr(), &["--ca", &pki.path("root.pem")]),
        tmp.path(),
    );
    let f = r.expect("missing-intermediate", 1);
    assert_eq!(f["subject"], s.addr().as_str());
    let fix = f["fix"].as_str().expect("fix");
    assert!(fix.contains("chain.pem"), "{fix}");
    assert!(
        f["message"]
            .as_str()
            .expect("m")
            .contains("CN=Fixture Intermediate CA")
    );
    assert!(!r.has("untrusted-root"), "{}", r.dump());
    // A client given the whole bundle gets by; the doctor still flags it for strict clients.
    let r = doctor(
        &tls_args(&s.addr(), &["--ca", &pki.path("ca-bundle.pem")]),
        tmp.path(),
    );
    r.expect("missing-intermediate", 1);
}

#[test]
fn wrong_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(tmp.path());
    let other = Ca::root("Some Other Root CA");
    let other_path = pki.write("other-root.pem", &other.pem);
    let s = TlsServer::start(
        &format!("{}{}", pki.leaf.pem, pki.int.pem),
        &pki.leaf.key_pem,
        None,
    );
    let r = doctor(&tls_args(&s.addr(), &["--ca", &other_path]), tmp.path());
    r.expect("untrusted-root", 1);
    assert!(!r.has("missing-intermediate"), "{}", r.dump());
}

#[test]
fn expired_server_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(tmp.path());
    let leaf = pki.int.leaf(&LeafSpec {
        not_before_days: -30,
        not_after_days: -1,
        ..LeafSpec::server()
    });
    let s = TlsServer::start(&format!("{}{}", leaf.pem, pki.int.pem), &leaf.key_pem, None);
    let r = doctor(
        &tls_args(&s.addr(), &["--ca", &pki.path("root.pem")]),
        tmp.path(),
    );
    r.expect("expired", 1);
}

#[test]
fn client_cert_required() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(tmp.path());
    let s = TlsServer::start(
        &format!("{}{}", pki.leaf.pem, pki.int.pem),
        &pki.leaf.key_pem,
        Some(&pki.root.pem),
    );
    let r = doctor(
        &tls_args(&s.addr(), &["--ca", &pki.path("root.pem")]),
        tmp.path(),
    );
    let f = r.expect("client-cert-required", 1);
    assert!(
        f["message"]
            .as_str()
            .expect("m")
            .contains("certificate required"),
        "{f}"
    );
    assert!(
        f["message"]
            .as_str()
            .expect("m")
            .contains("Fixture Root CA"),
        "names the CAs it accepts: {f}"
    );
}

#[test]
fn client_cert_rejected_and_accepted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(tmp.path());
    let s = TlsServer::start(
        &format!("{}{}", pki.leaf.pem, pki.int.pem),
        &pki.leaf.key_pem,
        Some(&pki.root.pem),
    );
    // A client certificate from another CA: `unknown ca`.
    let stranger_root = Ca::root("Stranger Root CA");
    let stranger = stranger_root.leaf(&LeafSpec::client("intruder"));
    let cert = pki.write("stranger.pem", &stranger.pem);
    let key = pki.write("stranger-key.pem", &stranger.key_pem);
    let r = doctor(
        &tls_args(
            &s.addr(),
            &[
                "--ca",
                &pki.path("root.pem"),
                "--cert",
                &cert,
                "--key",
                &key,
            ],
        ),
        tmp.path(),
    );
    let f = r.expect("client-cert-rejected", 1);
    assert!(
        f["message"].as_str().expect("m").contains("`unknown ca`"),
        "{f}"
    );

    // A client certificate from the server's own PKI, sent with its intermediate: accepted.
    let good = pki.int.leaf(&LeafSpec::client("device-1"));
    let cert = pki.write("client-chain.pem", format!("{}{}", good.pem, pki.int.pem));
    let key = pki.write("client-key.pem", &good.key_pem);
    let r = doctor(
        &tls_args(
            &s.addr(),
            &[
                "--ca",
                &pki.path("root.pem"),
                "--cert",
                &cert,
                "--key",
                &key,
            ],
        ),
        tmp.path(),
    );
    r.expect_clean("accepted client certificate");
    r.expect("client-cert-accepted", 0);
}

#[test]
fn connect_failed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = crate::support::free_port();
    let r = doctor(&tls_args(&format!("127.0.0.1:{port}"), &[]), tmp.path());
    r.expect("connect-failed", 1);
}

#[test]
fn tls_handshake_failed_on_a_plain_tcp_port() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let r = doctor(&tls_args(&format!("127.0.0.1:{port}"), &[]), tmp.path());
    r.expect("tls-handshake-failed", 1);
}
