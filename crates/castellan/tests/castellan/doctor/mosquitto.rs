//! `doctor tls` against a real Mosquitto TLS listener (mutual TLS), started by the test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::doctor;
use super::fixtures::{Ca, LeafSpec, Pki};

/// The broker binary, or `None` with a printed reason (a failure under CI).
fn mosquitto(test: &str) -> Option<PathBuf> {
    let candidates = [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ];
    match candidates.iter().map(PathBuf::from).find(|p| p.is_file()) {
        Some(p) => Some(p),
        None => {
            let why = "mosquitto is not installed (Debian: apt-get install mosquitto)";
            assert!(!super::under_ci(), "{test}: {why}");
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

/// `mosquitto -c FILE` with one mutual-TLS listener; killed on drop.
struct Broker {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Broker {
    fn start(exe: &Path, dir: &Path, certfile: &str, keyfile: &str, cafile: &str) -> Broker {
        Self::start_with(exe, dir, certfile, keyfile, cafile, "")
    }

    /// With extra listener settings.
    fn start_with(
        exe: &Path,
        dir: &Path,
        certfile: &str,
        keyfile: &str,
        cafile: &str,
        extra: &str,
    ) -> Broker {
        let port = crate::support::free_port();
        // `user root`: started as root, Mosquitto would otherwise drop to the `mosquitto` user, which
        // cannot read the temp dir; started as anyone else it ignores the option.
        let conf = format!(
            "user root\npersistence false\nlog_dest stderr\nallow_anonymous true\n\
             listener {port} 127.0.0.1\nrequire_certificate true\n\
             certfile {certfile}\nkeyfile {keyfile}\ncafile {cafile}\n{extra}"
        );
        let conf_path = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(&conf_path, conf).expect("config");
        let log = dir.join(format!("mosquitto-{port}.log"));
        let child = Command::new(exe)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn mosquitto");
        let mut b = Broker { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = b.child.try_wait() {
                panic!("mosquitto exited with {st}: {}", b.log_text());
            }
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto does not listen: {}",
                b.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PKI plus a client certificate from it (`client-chain.pem`, `client-key.pem`).
fn setup(dir: &Path) -> Pki {
    let pki = Pki::new(dir);
    let client = pki.int.leaf(&LeafSpec::client("device-1"));
    pki.write("client-chain.pem", format!("{}{}", client.pem, pki.int.pem));
    pki.write("client-key.pem", &client.key_pem);
    pki
}

#[test]
fn mosquitto_presenting_the_leaf_alone_is_a_missing_intermediate() {
    let Some(exe) = mosquitto("mosquitto_presenting_the_leaf_alone_is_a_missing_intermediate")
    else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = setup(tmp.path());
    // The classic mistake: certfile cert.pem instead of chain.pem.
    let b = Broker::start(
        &exe,
        tmp.path(),
        &pki.path("cert.pem"),
        &pki.path("key.pem"),
        &pki.path("root.pem"),
    );
    let r = doctor(
        &[
            "tls",
            &b.addr(),
            "--ca",
            &pki.path("root.pem"),
            "--cert",
            &pki.path("client-chain.pem"),
            "--key",
            &pki.path("client-key.pem"),
        ],
        tmp.path(),
    );
    let f = r.expect("missing-intermediate", 1);
    assert!(
        f["fix"]
            .as_str()
            .expect("fix")
            .contains("certfile chain.pem"),
        "{f}"
    );
    assert!(!r.has("untrusted-root"), "{}", r.dump());
    // The broker itself accepts our client certificate: only the server side is broken.
    r.expect("client-cert-accepted", 1);
}

#[test]
fn mosquitto_good_setup_and_client_certificate_verdicts() {
    let Some(exe) = mosquitto("mosquitto_good_setup_and_client_certificate_verdicts") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = setup(tmp.path());
    let b = Broker::start(
        &exe,
        tmp.path(),
        &pki.path("chain.pem"),
        &pki.path("key.pem"),
        &pki.path("root.pem"),
    );
    let root = pki.path("root.pem");
    let r = doctor(
        &[
            "tls",
            &b.addr(),
            "--ca",
            &root,
            "--cert",
            &pki.path("client-chain.pem"),
            "--key",
            &pki.path("client-key.pem"),
        ],
        tmp.path(),
    );
    r.expect_clean(&format!("good Mosquitto setup\n{}", b.log_text()));
    r.expect("client-cert-accepted", 0);

    // Without a client certificate: required.
    let r = doctor(&["tls", &b.addr(), "--ca", &root], tmp.path());
    r.expect("client-cert-required", 1);

    // A client certificate from a CA the broker does not trust: `unknown ca`.
    let stranger = Ca::root("Stranger Root CA").leaf(&LeafSpec::client("intruder"));
    let cert = pki.write("stranger.pem", &stranger.pem);
    let key = pki.write("stranger-key.pem", &stranger.key_pem);
    let r = doctor(
        &[
            "tls",
            &b.addr(),
            "--ca",
            &root,
            "--cert",
            &cert,
            "--key",
            &key,
        ],
        tmp.path(),
    );
    let f = r.expect("client-cert-rejected", 1);
    assert!(
        f["message"].as_str().expect("m").contains("unknown ca"),
        "{f}"
    );
}

#[test]
fn mosquitto_without_a_common_cipher_fails_the_handshake_with_its_alert() {
    let Some(exe) =
        mosquitto("mosquitto_without_a_common_cipher_fails_the_handshake_with_its_alert")
    else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = setup(tmp.path());
    // Only a CBC/SHA-1 suite (TLS 1.2) and AES-CCM (TLS 1.3): rustls offers neither.
    let b = Broker::start_with(
        &exe,
        tmp.path(),
        &pki.path("chain.pem"),
        &pki.path("key.pem"),
        &pki.path("root.pem"),
        "ciphers ECDHE-ECDSA-AES128-SHA\nciphers_tls1.3 TLS_AES_128_CCM_SHA256\n",
    );
    let r = doctor(
        &["tls", &b.addr(), "--ca", &pki.path("root.pem")],
        tmp.path(),
    );
    let f = r.expect("tls-handshake-failed", 1);
    assert!(
        f["message"]
            .as_str()
            .expect("m")
            .contains("`handshake failure`"),
        "{f}\n{}",
        b.log_text()
    );
}
