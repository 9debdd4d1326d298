//! A real Mosquitto broker with mutual-TLS listeners (killed on drop), the `mosquitto_pub` /
//! `mosquitto_sub` clients, and a minimal MQTT 3.1.1 client over rustls (CONNECT, CONNACK, PUBLISH at
//! QoS 1, PUBACK, DISCONNECT), so that a second, independent TLS stack judges Castellan's files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Where an executable is: `PATH`, then the sbin directories (`mosquitto` lives in /usr/sbin).
fn find_exe(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `mosquitto` broker, or `None` (with a printed reason) when it or its clients are missing outside
/// CI. Under CI (`CI` set) a missing broker is a failure: `.ci/run` installs it.
pub fn mosquitto(test: &str) -> Option<PathBuf> {
    let found = (
        find_exe("mosquitto"),
        find_exe("mosquitto_pub"),
        find_exe("mosquitto_sub"),
    );
    match found {
        (Some(broker), Some(_), Some(_)) => Some(broker),
        _ => {
            let why = "mosquitto and mosquitto-clients are not installed (Debian: apt-get install \
                       mosquitto mosquitto-clients; `bash .ci/run` does it)";
            assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

/// One TLS listener of the broker: what it presents and what it trusts.
pub struct Listener {
    /// `certfile`: the broker's certificate (chain).
    pub certfile: PathBuf,
    /// `keyfile`.
    pub keyfile: PathBuf,
    /// `cafile`: what client certificates must chain to.
    pub cafile: PathBuf,
    /// `crlfile`, if any.
    pub crlfile: Option<PathBuf>,
}

/// A running `mosquitto -c FILE`, killed on drop.
pub struct Broker {
    child: Child,
    /// One port per listener, in order.
    pub ports: Vec<u16>,
    /// The broker's log (stderr).
    pub log: PathBuf,
}

impl Broker {
    /// Writes a config into `dir` and starts the broker with one mutual-TLS listener per entry on
    /// 127.0.0.1, then waits until every port accepts TCP.
    pub fn start(exe: &Path, dir: &Path, name: &str, listeners: &[Listener]) -> Broker {
        let ports: Vec<u16> = listeners
            .iter()
            .map(|_| crate::support::free_port())
            .collect();
        // `user root`: started as root, Mosquitto would otherwise switch to the `mosquitto` user and
        // could not read the 0700 temp dir; started as anyone else it ignores the option.
        let mut conf = String::from(
            "user root\nper_listener_settings false\nallow_anonymous true\npersistence false\n\
             log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
             log_type information\nconnection_messages true\n",
        );
        for (l, port) in listeners.iter().zip(&ports) {
            conf.push_str(&format!(
                "\nlistener {port} 127.0.0.1\nrequire_certificate true\nuse_identity_as_username false\n\
                 certfile {}\nkeyfile {}\ncafile {}\n",
                l.certfile.display(),
                l.keyfile.display(),
                l.cafile.display()
            ));
            if let Some(crl) = &l.crlfile {
                conf.push_str(&format!("crlfile {}\n", crl.display()));
            }
        }
        let conf_path = dir.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf).expect("write mosquitto config");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(exe)
            .arg("-c")
            .arg(&conf_path)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn mosquitto");
        let mut broker = Broker { child, ports, log };
        broker.wait_listening();
        broker
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for port in self.ports.clone() {
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("mosquitto exited with {status}:\n{}", self.log_text());
                }
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "mosquitto does not listen on {port}:\n{}",
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }

    /// The first listener's port.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log written since byte `from`, once it holds `needle` or after 5 s, whichever comes
    /// first: the broker logs a refused handshake a moment after the client has seen it refused.
    pub fn log_since_once_it_says(&self, from: usize, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let log = self.log_text();
            let since = log.get(from..).unwrap_or_default().to_owned();
            if since.contains(needle) || std::time::Instant::now() > deadline {
                return since;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TLS options of a `mosquitto_pub`/`mosquitto_sub` run.
fn client_tls_args(port: u16, cafile: &Path, cert: &Path, key: &Path) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--cafile",
        &cafile.display().to_string(),
        "--cert",
        &cert.display().to_string(),
        "--key",
        &key.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `mosquitto_pub … -t TOPIC -m MSG` (QoS 1, so success means the broker acknowledged it).
pub fn mosquitto_pub(
    port: u16,
    cafile: &Path,
    cert: &Path,
    key: &Path,
    topic: &str,
    msg: &str,
) -> Output {
    Command::new("mosquitto_pub")
        .args(client_tls_args(port, cafile, cert, key))
        .args(["-q", "1", "-t", topic, "-m", msg])
        .stdin(Stdio::null())
        .output()
        .expect("run mosquitto_pub")
}

/// Starts `mosquitto_sub -C 1 -W 10` on `topic`, then runs `publish` every 200 ms until the subscriber
/// has received one message and exited (a message published before the subscription is active is simply
/// not delivered; `mosquitto_sub` prints nothing on SUBACK that could be awaited through a pipe).
/// Returns the subscriber's exit success, its stdout, and every publish run.
pub fn receive_one(
    port: u16,
    cafile: &Path,
    cert: &Path,
    key: &Path,
    topic: &str,
    mut publish: impl FnMut() -> Output,
) -> (bool, String, Vec<Output>) {
    let mut child = Command::new("mosquitto_sub")
        .args(client_tls_args(port, cafile, cert, key))
        .args(["-q", "1", "-C", "1", "-W", "10", "-t", topic])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto_sub");
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut pubs = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait mosquitto_sub") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        pubs.push(publish());
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    (status.is_some_and(|s| s.success()), out, pubs)
}

/// What the rustls MQTT client trusts and presents.
pub struct Tls<'a> {
    /// PEM file of the trust anchors (every certificate in it is trusted).
    pub trust: &'a Path,
    /// The client certificate chain (PEM) and key (PKCS#8 PEM).
    pub client: Option<(&'a Path, &'a Path)>,
    /// The name the broker's certificate must carry (`localhost` or `127.0.0.1`).
    pub server_name: &'a str,
}

fn tls_config(tls: &Tls<'_>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls.trust).map_err(|e| format!("trust: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("trust: {e}"))?)
            .map_err(|e| format!("trust anchor: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match tls.client {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain)
                .map_err(|e| format!("chain: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("chain: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client cert: {e}"))
        }
    }
}

fn remaining_length(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

fn mqtt_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    p.extend(remaining_length(body.len()));
    p.extend_from_slice(body);
    p
}

/// Connects over mutual TLS with rustls, sends an MQTT 3.1.1 CONNECT and requires CONNACK 0, publishes
/// `payload` to `topic` at QoS 1 and requires the PUBACK, then disconnects. The error names the step and
/// the TLS error (for example the alert the broker sent).
pub fn rustls_publish(port: u16, tls: &Tls<'_>, topic: &str, payload: &str) -> Result<(), String> {
    let config = tls_config(tls)?;
    let name = ServerName::try_from(tls.server_name.to_owned()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("tcp: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, sock);

    // CONNECT: protocol "MQTT" level 4, clean session, keep-alive 30 s, a client id.
    let mut body = mqtt_str("MQTT");
    body.extend([0x04, 0x02, 0x00, 30]);
    body.extend(mqtt_str(&format!("castellan-test-{}", std::process::id())));
    s.write_all(&packet(0x10, &body))
        .and_then(|()| s.flush())
        .map_err(|e| format!("TLS/CONNECT: {e}"))?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack)
        .map_err(|e| format!("TLS/CONNACK: {e}"))?;
    if connack != [0x20, 0x02, 0x00, 0x00] {
        return Err(format!("CONNACK refused: {connack:02x?}"));
    }

    // PUBLISH at QoS 1, packet id 1; the broker must answer PUBACK 1.
    let mut body = mqtt_str(topic);
    body.extend([0x00, 0x01]);
    body.extend_from_slice(payload.as_bytes());
    s.write_all(&packet(0x32, &body))
        .and_then(|()| s.flush())
        .map_err(|e| format!("PUBLISH: {e}"))?;
    let mut puback = [0u8; 4];
    s.read_exact(&mut puback)
        .map_err(|e| format!("PUBACK: {e}"))?;
    if puback != [0x40, 0x02, 0x00, 0x01] {
        return Err(format!("unexpected PUBACK: {puback:02x?}"));
    }
    s.write_all(&[0xe0, 0x00])
        .and_then(|()| s.flush())
        .map_err(|e| format!("DISCONNECT: {e}"))?;
    s.conn.send_close_notify();
    let _ = s.flush();
    Ok(())
}
