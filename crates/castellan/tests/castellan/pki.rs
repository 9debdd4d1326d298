//! Issue 3 (PKI for mTLS), end to end with the real `castellan` binary: issued sets judged by the
//! `openssl` CLI, by a real Mosquitto broker (OpenSSL) and by a rustls MQTT client; bad requests; file
//! modes; CRLs; an offline root key; importing an OpenSSL-made CA; issuing through a server.

use crate::support;

use std::path::{Path, PathBuf};

use crate::pki_support::mqtt::{self, Broker, Listener, Tls};
use crate::pki_support::*;
use crate::support::{Server, ok, run};
use serde_json::json;

/// `castellan init --data-dir NAME` in `dir`; returns the data dir.
fn init(dir: &Path, name: &str) -> PathBuf {
    ok(&["init", "--data-dir", name], dir);
    dir.join(name)
}

/// `castellan pki issue --profile P ARGS --out OUT --data-dir DATA`.
fn issue(dir: &Path, data: &str, profile: &str, args: &[&str], out: &str) -> PathBuf {
    let mut a = vec!["pki", "issue", "--profile", profile];
    a.extend(args);
    a.extend(["--out", out, "--data-dir", data]);
    ok(&a, dir);
    dir.join(out)
}

/// `openssl verify ARGS CERT`: (success, output).
fn verify(dir: &Path, args: &[&str], cert: &Path) -> (bool, String) {
    let mut a = vec!["verify"];
    a.extend(args);
    a.push(cert.to_str().expect("utf-8 path"));
    let out = openssl(&a, dir);
    (out.status.success(), both(&out))
}

/// The value line under an extension header of `openssl x509 -text` (with OpenSSL 1.1's `keyid:`
/// prefix removed).
fn ext_value(text: &str, header: &str) -> String {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim_start().starts_with(header) {
            return lines
                .next()
                .unwrap_or_default()
                .trim()
                .trim_start_matches("keyid:")
                .to_owned();
        }
    }
    panic!("no {header} in:\n{text}");
}

fn x509_text(cert: &Path) -> String {
    openssl_ok(
        &[
            "x509",
            "-in",
            cert.to_str().expect("utf-8 path"),
            "-noout",
            "-text",
        ],
        Path::new("."),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ---- 1. openssl judges the sets ---------------------------------------------------------------

#[test]
fn issued_leaves_verify_with_openssl_only_through_the_intermediate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init(d, "d");
    let srv = issue(
        d,
        "d",
        "server",
        &[
            "--dns",
            "localhost",
            "--dns",
            "api.internal",
            "--ip",
            "127.0.0.1",
            "--ip",
            "::1",
            "--ttl",
            "720h",
        ],
        "srv",
    );
    let cli = issue(
        d,
        "d",
        "client",
        &["--cn", "sensor-1", "--key-type", "p-384"],
        "cli",
    );
    let peer = issue(
        d,
        "d",
        "peer",
        &[
            "--dns",
            "peer.internal",
            "--uri",
            "spiffe://example.org/peer",
            "--key-type",
            "ed25519",
        ],
        "peer",
    );
    let inter = write_intermediate(&srv, "intermediate.pem");

    // The trust anchors are the same in every set; root.pem is the first block of ca-bundle.pem.
    let root_pem = read(srv.join("root.pem"));
    for set in [&srv, &cli, &peer] {
        assert_eq!(listing(set).expect("set"), {
            let mut v = SET_FILES.map(str::to_owned).to_vec();
            v.sort();
            v
        });
        assert_eq!(read(set.join("root.pem")), root_pem);
        let bundle = pem_blocks(&read(set.join("ca-bundle.pem")));
        assert_eq!(bundle[0], root_pem);
        assert_eq!(bundle[1], read(&inter));
        let chain = pem_blocks(&read(set.join("chain.pem")));
        assert_eq!(
            chain[0],
            read(set.join("cert.pem")),
            "chain.pem starts with the leaf"
        );
        assert_eq!(chain[1], read(&inter), "then the intermediate");
        // OpenSSL 3.0 cannot read the Ed25519 key.pem (PKCS#8 v2, see
        // `ed25519_key_pem_is_readable_by_openssl`); the P-256 and P-384 keys are checked here.
        if set != &peer {
            assert_eq!(
                cert_pubkey(&set.join("cert.pem")),
                key_pubkey(&set.join("key.pem")),
                "key.pem is the leaf's key"
            );
        }
    }

    // Root + intermediate: OK. Root alone (the intermediate missing): the classic failure.
    for set in [&srv, &cli, &peer] {
        let cert = set.join("cert.pem");
        let (good, out) = verify(
            d,
            &["-CAfile", "srv/root.pem", "-untrusted", s(&inter)],
            &cert,
        );
        assert!(good, "{out}");
        assert!(out.contains(": OK"), "{out}");
        let (good, out) = verify(d, &["-CAfile", "srv/root.pem"], &cert);
        assert!(!good, "verified without its intermediate: {out}");
        assert!(
            out.contains("unable to get local issuer certificate"),
            "{out}"
        );
        // ca-bundle.pem works whether or not the intermediate is presented.
        let (good, out) = verify(d, &["-CAfile", "srv/ca-bundle.pem"], &cert);
        assert!(good, "{out}");
    }

    // Purposes, as OpenSSL checks them for TLS servers and clients.
    let trust = ["-CAfile", "srv/root.pem", "-untrusted", s(&inter)];
    let purpose = |cert: &Path, p: &str| {
        let mut a = trust.to_vec();
        a.extend(["-purpose", p]);
        verify(d, &a, cert)
    };
    assert!(purpose(&srv.join("cert.pem"), "sslserver").0);
    let (good, out) = purpose(&srv.join("cert.pem"), "sslclient");
    assert!(
        !good && out.contains("unsuitable certificate purpose"),
        "{out}"
    );
    assert!(purpose(&cli.join("cert.pem"), "sslclient").0);
    let (good, out) = purpose(&cli.join("cert.pem"), "sslserver");
    assert!(
        !good && out.contains("unsuitable certificate purpose"),
        "{out}"
    );
    assert!(purpose(&peer.join("cert.pem"), "sslserver").0);
    assert!(purpose(&peer.join("cert.pem"), "sslclient").0);

    // Names, as a TLS client checks them.
    for (flag, name, want) in [
        ("-verify_hostname", "localhost", true),
        ("-verify_hostname", "api.internal", true),
        ("-verify_ip", "127.0.0.1", true),
        ("-verify_ip", "::1", true),
        ("-verify_hostname", "other.internal", false),
        ("-verify_ip", "127.0.0.2", false),
    ] {
        let mut a = trust.to_vec();
        a.extend([flag, name]);
        let (good, out) = verify(d, &a, &srv.join("cert.pem"));
        assert_eq!(good, want, "{flag} {name}: {out}");
    }

    // The extensions.
    let inter_text = x509_text(&inter);
    let inter_ski = ext_value(&inter_text, "X509v3 Subject Key Identifier");
    assert!(
        inter_text.contains("CA:TRUE, pathlen:0"),
        "intermediate basicConstraints:\n{inter_text}"
    );
    assert!(
        inter_text.contains("Certificate Sign, CRL Sign"),
        "{inter_text}"
    );
    let root_text = x509_text(&srv.join("root.pem"));
    assert_eq!(
        ext_value(&inter_text, "X509v3 Authority Key Identifier"),
        ext_value(&root_text, "X509v3 Subject Key Identifier"),
        "the intermediate's AKI is the root's SKI"
    );
    for (set, eku, sans) in [
        (
            &srv,
            "TLS Web Server Authentication",
            "DNS:localhost, DNS:api.internal, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
        ),
        (&cli, "TLS Web Client Authentication", ""),
        (
            &peer,
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "DNS:peer.internal, URI:spiffe://example.org/peer",
        ),
    ] {
        let text = x509_text(&set.join("cert.pem"));
        let ski = ext_value(&text, "X509v3 Subject Key Identifier");
        assert!(ski.len() >= 20 && ski.contains(':'), "SKI: {ski}");
        assert_eq!(
            ext_value(&text, "X509v3 Authority Key Identifier"),
            inter_ski,
            "the leaf's AKI is the intermediate's SKI"
        );
        assert_eq!(ext_value(&text, "X509v3 Basic Constraints"), "CA:FALSE");
        assert_eq!(ext_value(&text, "X509v3 Key Usage"), "Digital Signature");
        assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
        assert_eq!(ext_value(&text, "X509v3 Extended Key Usage"), eku);
        if sans.is_empty() {
            assert!(!text.contains("Subject Alternative Name"), "{text}");
        } else {
            assert_eq!(ext_value(&text, "X509v3 Subject Alternative Name"), sans);
        }
        // A positive serial of exactly 16 bytes.
        let serial = openssl_serial(&set.join("cert.pem"));
        assert_eq!(serial.len(), 32, "serial {serial}");
        assert!(
            serial.as_bytes()[0] < b'8',
            "serial {serial} is not positive"
        );
    }
    assert!(x509_text(&cli.join("cert.pem")).contains("Subject: CN = sensor-1"));
    assert!(x509_text(&cli.join("cert.pem")).contains("NIST CURVE: P-384"));
    assert!(x509_text(&peer.join("cert.pem")).contains("ED25519"));

    // --ttl 720h, backdated by a minute for clock skew.
    let end = openssl_ok(
        &[
            "x509",
            "-in",
            "srv/cert.pem",
            "-noout",
            "-checkend",
            "2591000",
        ],
        d,
    );
    assert!(end.contains("will not expire"), "{end}");
    let out = openssl(
        &[
            "x509",
            "-in",
            "srv/cert.pem",
            "-noout",
            "-checkend",
            "2592100",
        ],
        d,
    );
    assert!(!out.status.success(), "lives longer than 720h");
}

/// Castellan's Ed25519 `key.pem` is PKCS#8 v2 (RFC 5958 OneAsymmetricKey: version 1 plus the public
/// key in `[1]`), as aws-lc-rs generates it through rcgen. OpenSSL 3.0 (`openssl pkey`, and so
/// Mosquitto/EMQX/nginx built on it) and pyca/cryptography 48 refuse it; RSA, P-256 and P-384 keys are
/// PKCS#8 v1 and load fine. Ignored until the product writes PKCS#8 v1 for Ed25519.
#[test]
fn ed25519_key_pem_is_readable_by_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init(d, "d");
    let set = issue(
        d,
        "d",
        "peer",
        &["--dns", "peer.internal", "--key-type", "ed25519"],
        "peer",
    );
    assert_eq!(
        cert_pubkey(&set.join("cert.pem")),
        key_pubkey(&set.join("key.pem")),
        "key.pem is the leaf's key"
    );
}

// ---- 2. a real Mosquitto broker -------------------------------------------------------------------

/// A store with a broker certificate (profile server, localhost + 127.0.0.1) and a client certificate
/// (profile client), plus `root-only.pem` for the broker's `cafile`.
struct MqttPki {
    dir: tempfile::TempDir,
    srv: PathBuf,
    cli: PathBuf,
    root_only: PathBuf,
}

impl MqttPki {
    fn new() -> MqttPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        init(d, "d");
        let srv = issue(
            d,
            "d",
            "server",
            &["--dns", "localhost", "--ip", "127.0.0.1"],
            "srv",
        );
        let cli = issue(d, "d", "client", &["--cn", "sensor-1"], "cli");
        let root_only = d.join("root-only.pem");
        std::fs::copy(srv.join("root.pem"), &root_only).expect("copy root");
        MqttPki {
            dir,
            srv,
            cli,
            root_only,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's listener: presents srv/chain.pem, trusts the root only.
    fn listener(&self, crl: Option<PathBuf>) -> Listener {
        Listener {
            certfile: self.srv.join("chain.pem"),
            keyfile: self.srv.join("key.pem"),
            cafile: self.root_only.clone(),
            crlfile: crl,
        }
    }
}

#[test]
fn mosquitto_delivers_a_message_between_clients_holding_castellan_sets() {
    let Some(exe) = mqtt::mosquitto("mosquitto_delivers_a_message") else {
        return;
    };
    let pki = MqttPki::new();
    let (srv, cli) = (&pki.srv, &pki.cli);
    // Listener 0 trusts the root only; listener 1 trusts ca-bundle.pem.
    let broker = Broker::start(
        &exe,
        pki.path(),
        "broker",
        &[
            pki.listener(None),
            Listener {
                cafile: srv.join("ca-bundle.pem"),
                ..pki.listener(None)
            },
        ],
    );
    let port = broker.port();

    // A subscriber trusting root.pem, a publisher trusting ca-bundle.pem; both present chain.pem.
    let (received, out, pubs) = mqtt::receive_one(
        port,
        &cli.join("root.pem"),
        &cli.join("chain.pem"),
        &cli.join("key.pem"),
        "castellan/test",
        || {
            mqtt::mosquitto_pub(
                port,
                &cli.join("ca-bundle.pem"),
                &cli.join("chain.pem"),
                &cli.join("key.pem"),
                "castellan/test",
                "hello over mTLS",
            )
        },
    );
    for p in &pubs {
        assert!(p.status.success(), "mosquitto_pub: {}", both(p));
    }
    assert!(
        received && out.lines().any(|l| l == "hello over mTLS"),
        "the subscriber did not receive the message: {out}\n{}",
        broker.log_text()
    );
    let out = mqtt::mosquitto_pub(
        port,
        &cli.join("root.pem"),
        &cli.join("chain.pem"),
        &cli.join("key.pem"),
        "castellan/test",
        "again",
    );
    assert!(out.status.success(), "trusting root.pem: {}", both(&out));

    // The leaf alone (cert.pem, no intermediate) to a broker that trusts only the root: OpenSSL in
    // the broker cannot build the chain and refuses the handshake. This is the mistake chain.pem
    // exists to prevent.
    let log_before = broker.log_text().len();
    let out = mqtt::mosquitto_pub(
        port,
        &cli.join("root.pem"),
        &cli.join("cert.pem"),
        &cli.join("key.pem"),
        "castellan/test",
        "leaf only",
    );
    assert!(
        !out.status.success(),
        "the broker accepted a client without its intermediate"
    );
    let log = broker.log_since_once_it_says(log_before, "certificate verify failed");
    assert!(
        log.contains("certificate verify failed"),
        "broker log: {log}"
    );
    // A broker that trusts ca-bundle.pem accepts the leaf alone: it already holds the intermediate.
    let out = mqtt::mosquitto_pub(
        broker.ports[1],
        &cli.join("root.pem"),
        &cli.join("cert.pem"),
        &cli.join("key.pem"),
        "castellan/test",
        "leaf only, bundle broker",
    );
    assert!(out.status.success(), "{}", both(&out));
}

#[test]
fn rustls_mqtt_client_connects_trusting_the_root_or_the_bundle() {
    let Some(exe) = mqtt::mosquitto("rustls_mqtt_client_connects") else {
        return;
    };
    let pki = MqttPki::new();
    let (srv, cli) = (&pki.srv, &pki.cli);
    // Listener 0 presents chain.pem (right); listener 1 presents cert.pem alone (a misconfigured
    // broker that leaves the intermediate out).
    let broker = Broker::start(
        &exe,
        pki.path(),
        "broker",
        &[
            pki.listener(None),
            Listener {
                certfile: srv.join("cert.pem"),
                ..pki.listener(None)
            },
        ],
    );
    let (chain, key) = (cli.join("chain.pem"), cli.join("key.pem"));
    let client = Some((chain.as_path(), key.as_path()));
    let root = cli.join("root.pem");
    let bundle = cli.join("ca-bundle.pem");

    for (trust, name) in [
        (&root, "localhost"),
        (&root, "127.0.0.1"),
        (&bundle, "localhost"),
    ] {
        let tls = Tls {
            trust,
            client,
            server_name: name,
        };
        mqtt::rustls_publish(broker.port(), &tls, "castellan/rustls", "hi").unwrap_or_else(|e| {
            panic!(
                "trusting {} as {name}: {e}\n{}",
                trust.display(),
                broker.log_text()
            )
        });
    }
    // A name the broker's certificate does not carry.
    let err = mqtt::rustls_publish(
        broker.port(),
        &Tls {
            trust: &root,
            client,
            server_name: "broker.example",
        },
        "t",
        "x",
    )
    .expect_err("wrong server name accepted");
    assert!(err.contains("not valid for name"), "{err}");
    // No client certificate: the broker requires one.
    let err = mqtt::rustls_publish(
        broker.port(),
        &Tls {
            trust: &root,
            client: None,
            server_name: "localhost",
        },
        "t",
        "x",
    )
    .expect_err("connected without a client certificate");
    assert!(err.contains("CertificateRequired"), "{err}");

    // The broker presenting its leaf alone: a client trusting the root only cannot build the chain
    // (webpki's UnknownIssuer); one trusting ca-bundle.pem can.
    let err = mqtt::rustls_publish(
        broker.ports[1],
        &Tls {
            trust: &root,
            client,
            server_name: "localhost",
        },
        "t",
        "x",
    )
    .expect_err("verified a leaf without its intermediate");
    assert!(err.contains("UnknownIssuer"), "{err}");
    mqtt::rustls_publish(
        broker.ports[1],
        &Tls {
            trust: &bundle,
            client,
            server_name: "localhost",
        },
        "t",
        "x",
    )
    .expect("ca-bundle.pem works when the intermediate is not sent");
}

/// Issues, with the store's own intermediate CA through the library, a client certificate that was
/// valid for 30 s right after the CA was made, so it has already expired (the CA itself cannot sign
/// anything dated before its own notBefore, so "10 days ago" is not possible with a CA made today).
fn expired_client(data: &Path, out: &Path) -> (i64, i64) {
    let (issuer, row) = store_issuer(data);
    let ca_not_before = castellan_core::pki::parse_cert_pem(&row.ca_cert_pem)
        .expect("CA")
        .not_before;
    let set = issuer
        .issue(
            &castellan_core::pki::Profile::builtin("client").expect("client profile"),
            &castellan_core::pki::IssueRequest {
                common_name: Some("expired-sensor".into()),
                ttl_secs: Some(30),
                ..Default::default()
            },
            ca_not_before + 1,
        )
        .expect("issue");
    assert!(set.not_after < now(), "already expired");
    std::fs::create_dir_all(out).expect("mkdir");
    std::fs::write(out.join("chain.pem"), &set.chain_pem).expect("write");
    std::fs::write(out.join("cert.pem"), &set.cert_pem).expect("write");
    std::fs::write(
        out.join("key.pem"),
        set.key_pem.as_ref().expect("key").as_bytes(),
    )
    .expect("write");
    (set.not_before, set.not_after)
}

#[test]
fn mosquitto_rejects_foreign_expired_and_server_profile_client_certificates() {
    let Some(exe) = mqtt::mosquitto("mosquitto_rejects_bad_client_certificates") else {
        return;
    };
    let pki = MqttPki::new();
    let d = pki.path();
    let cli = &pki.cli;
    // Another Castellan store: another root.
    init(d, "other");
    let foreign = issue(d, "other", "client", &["--cn", "sensor-1"], "foreign");
    // The same CA, expired.
    let expired = d.join("expired");
    let (nb, na) = expired_client(&d.join("d"), &expired);
    // The same CA, profile server (EKU serverAuth only) used as a client certificate.
    let wrong_purpose = issue(d, "d", "server", &["--dns", "sensor-1.internal"], "wrong");

    // What openssl says about each, for the record: the only defect of each is the intended one.
    let inter = write_intermediate(&pki.srv, "intermediate.pem");
    let trust = ["-CAfile", s(&pki.root_only), "-untrusted", s(&inter)];
    let (good, out) = verify(d, &trust, &foreign.join("cert.pem"));
    assert!(
        !good && out.contains("unable to get local issuer certificate"),
        "{out}"
    );
    let (good, out) = verify(d, &trust, &expired.join("cert.pem"));
    assert!(!good && out.contains("certificate has expired"), "{out}");
    let mut at = trust.to_vec();
    let when = ((nb + na) / 2).to_string();
    at.extend(["-attime", &when, "-purpose", "sslclient"]);
    let (good, out) = verify(d, &at, &expired.join("cert.pem"));
    assert!(good, "valid while it lasted: {out}");
    let mut p = trust.to_vec();
    p.extend(["-purpose", "sslclient"]);
    let (good, out) = verify(d, &p, &wrong_purpose.join("cert.pem"));
    assert!(
        !good && out.contains("unsuitable certificate purpose"),
        "{out}"
    );

    let broker = Broker::start(&exe, d, "broker", &[pki.listener(None)]);
    let root = cli.join("root.pem");
    let connect = |set: &Path| {
        let (chain, key) = (set.join("chain.pem"), set.join("key.pem"));
        let tls = Tls {
            trust: &root,
            client: Some((&chain, &key)),
            server_name: "localhost",
        };
        let rustls = mqtt::rustls_publish(broker.port(), &tls, "castellan/r", "x");
        let pub_out = mqtt::mosquitto_pub(broker.port(), &root, &chain, &key, "castellan/p", "x");
        (rustls, pub_out)
    };
    // The control: the good client, through both clients.
    let (r, p) = connect(cli);
    r.expect("the good client");
    assert!(p.status.success(), "{}", both(&p));

    // The broker's TLS alert names each cause.
    for (set, what, alert) in [
        (
            &foreign,
            "a client certificate from another CA",
            "UnknownCA",
        ),
        (
            &expired,
            "an expired client certificate",
            "CertificateExpired",
        ),
        (
            &wrong_purpose,
            "a server-profile certificate as a client certificate",
            "UnsupportedCertificate",
        ),
    ] {
        let before = broker.log_text().len();
        let (r, p) = connect(set);
        let err = r.expect_err(what);
        assert!(
            err.starts_with("TLS/") && err.contains(alert),
            "{what}: expected the alert {alert}: {err}"
        );
        assert!(!p.status.success(), "{what}: mosquitto_pub published");
        let log = broker.log_since_once_it_says(before, "certificate verify failed");
        assert!(
            log.contains("certificate verify failed"),
            "{what}: broker log: {log}"
        );
    }
}

#[test]
fn mosquitto_with_the_castellan_crl_refuses_the_revoked_client_only() {
    let Some(exe) = mqtt::mosquitto("mosquitto_with_the_castellan_crl") else {
        return;
    };
    let pki = MqttPki::new();
    let d = pki.path();
    let revoked = issue(d, "d", "client", &["--cn", "stolen-sensor"], "revoked");
    let serial = openssl_serial(&revoked.join("cert.pem"));
    let out = ok(
        &[
            "pki",
            "revoke",
            &serial,
            "--reason",
            "key-compromise",
            "--data-dir",
            "d",
        ],
        d,
    );
    assert!(out.contains("revoked"), "{out}");
    let server = Server::start(&["--data-dir", "d"], d);
    let crl = Http::new().get(&format!("{}/v1/pki/crl.pem", server.url), None);
    assert_eq!(crl.status, 200);
    let crl_path = d.join("crl.pem");
    std::fs::write(&crl_path, &crl.body).expect("write CRL");

    // Listener 0 checks the CRL; listener 1 does not (the revoked certificate is otherwise fine).
    let broker = Broker::start(
        &exe,
        d,
        "broker",
        &[pki.listener(Some(crl_path)), pki.listener(None)],
    );
    let root = pki.cli.join("root.pem");
    let publish = |port: u16, set: &Path| {
        let (chain, key) = (set.join("chain.pem"), set.join("key.pem"));
        let tls = Tls {
            trust: &root,
            client: Some((&chain, &key)),
            server_name: "localhost",
        };
        let r = mqtt::rustls_publish(port, &tls, "castellan/crl", "x");
        let p = mqtt::mosquitto_pub(port, &root, &chain, &key, "castellan/crl", "x");
        (r, p)
    };
    let (r, p) = publish(broker.ports[1], &revoked);
    r.expect("without the CRL the revoked certificate still connects");
    assert!(p.status.success(), "{}", both(&p));

    let (r, p) = publish(broker.port(), &pki.cli);
    r.unwrap_or_else(|e| {
        panic!(
            "the good client with the CRL in place: {e}\n{}",
            broker.log_text()
        )
    });
    assert!(p.status.success(), "{}", both(&p));

    let before = broker.log_text().len();
    let (r, p) = publish(broker.port(), &revoked);
    let err = r.expect_err("the revoked client connected");
    assert!(err.contains("CertificateRevoked"), "{err}");
    assert!(
        !p.status.success(),
        "mosquitto_pub with a revoked certificate"
    );
    let log = broker.log_text();
    assert!(
        log[before..].contains("certificate verify failed"),
        "broker log: {}",
        &log[before..]
    );
}

// ---- 3. bad input -----------------------------------------------------------------------------------

const MQTT_PROFILE: &str = r#"
[[pki.profiles]]
name = "mqtt"
purpose = "server"
allowed_dns = ["*.mqtt.test"]
max_ttl_secs = 86400
key_types = ["p-256"]
"#;

/// An openssl-made P-256 key and CSR (`CN=app`) in `dir`: (key, csr).
fn openssl_csr(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    openssl_ok(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=app",
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
        ],
        dir,
    );
    (key, csr)
}

/// The CSR with one byte of its signature flipped (the last byte of the DER is inside the signature's
/// `s` integer), PEM again. It still parses; its signature no longer verifies.
fn tampered_csr(dir: &Path, csr: &Path) -> PathBuf {
    let der_path = dir.join("tampered.der");
    openssl_ok(
        &[
            "req",
            "-in",
            s(csr),
            "-outform",
            "DER",
            "-out",
            s(&der_path),
        ],
        dir,
    );
    let mut der = std::fs::read(&der_path).expect("read DER");
    let last = der.len() - 1;
    der[last] ^= 0x01;
    std::fs::write(&der_path, der).expect("write DER");
    let pem = dir.join("tampered.csr");
    openssl_ok(
        &[
            "req",
            "-inform",
            "DER",
            "-in",
            s(&der_path),
            "-out",
            s(&pem),
        ],
        dir,
    );
    let out = openssl(&["req", "-in", s(&pem), "-noout", "-verify"], dir);
    assert!(
        !out.status.success() || !both(&out).contains("verify OK"),
        "openssl still verifies the tampered CSR: {}",
        both(&out)
    );
    pem
}

fn cert_count(http: &Http, url: &str, token: &str) -> usize {
    let r = http.get(&format!("{url}/v1/pki/certs"), Some(token));
    assert_eq!(r.status, 200);
    r.json()["certificates"]
        .as_array()
        .expect("certificates")
        .len()
}

#[test]
fn bad_requests_get_json_errors_and_nothing_is_issued_or_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init(d, "d");
    std::fs::write(d.join("castellan.toml"), MQTT_PROFILE).expect("config");
    let server = Server::start(&["--data-dir", "d", "--config", "castellan.toml"], d);
    let token = admin_token(&server.url, &d.join("d"));
    let http = Http::new();
    let url = |p: &str| format!("{}/v1/pki/{p}", server.url);

    let (_, csr) = openssl_csr(d, "app");
    let good_csr = read(&csr);
    let bad_sig = read(tampered_csr(d, &csr));
    let garbage_b64 =
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAAAAAA\n-----END CERTIFICATE REQUEST-----\n";
    std::fs::write(d.join("garbage.csr"), garbage_b64).expect("write");

    let before = cert_count(&http, &server.url, &token);
    for (path, body, status, code) in [
        (
            "sign/client",
            json!({"csr": "not a CSR"}),
            400,
            "malformed-csr",
        ),
        (
            "sign/client",
            json!({"csr": garbage_b64}),
            400,
            "malformed-csr",
        ),
        (
            "sign/client",
            json!({"csr": bad_sig}),
            400,
            "csr-bad-signature",
        ),
        (
            "issue/mqtt",
            json!({"dns_names": ["broker.other.test"]}),
            400,
            "san-not-allowed",
        ),
        (
            "issue/mqtt",
            json!({"dns_names": ["a.b.mqtt.test"]}),
            400,
            "san-not-allowed",
        ),
        (
            "issue/mqtt",
            json!({"dns_names": ["b.mqtt.test"], "ip_addresses": ["10.0.0.1"]}),
            400,
            "san-not-allowed",
        ),
        (
            "sign/mqtt",
            json!({"csr": good_csr, "dns_names": ["broker.other.test"]}),
            400,
            "san-not-allowed",
        ),
        (
            "issue/mqtt",
            json!({"dns_names": ["b.mqtt.test"], "ttl_secs": 86401}),
            400,
            "ttl-too-long",
        ),
        (
            "issue/server",
            json!({"dns_names": ["x.internal"], "ttl_secs": 91 * 86400}),
            400,
            "ttl-too-long",
        ),
        (
            "issue/mqtt",
            json!({"dns_names": ["b.mqtt.test"], "key_type": "rsa-2048"}),
            400,
            "key-type-not-allowed",
        ),
        (
            "issue/no-such-profile",
            json!({"dns_names": ["b.mqtt.test"]}),
            404,
            "unknown-profile",
        ),
        (
            "sign/no-such-profile",
            json!({"csr": good_csr}),
            404,
            "unknown-profile",
        ),
        (
            "issue/server",
            json!({"dns_names": ["x.internal"], "extra": 1}),
            400,
            "invalid_request",
        ),
    ] {
        let r = http.post_json(&url(path), &token, &body);
        assert_eq!(r.error(status), code, "{path} {body}: {}", r.json());
    }
    let r = http.post_raw(&url("issue/server"), &token, "{not json");
    assert_eq!(r.error(400), "invalid_request");
    assert_eq!(
        cert_count(&http, &server.url, &token),
        before,
        "a refused request recorded a certificate"
    );

    // The same checks pass what they should: the count moves.
    let r = http.post_json(
        &url("issue/mqtt"),
        &token,
        &json!({"dns_names": ["broker.mqtt.test"], "ttl_secs": 86400}),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    let r = http.post_json(
        &url("sign/server"),
        &token,
        &json!({"csr": good_csr, "dns_names": ["app.internal"]}),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    let v = r.json();
    assert!(
        v.get("key_pem").is_none(),
        "a signed CSR comes back without a key"
    );
    std::fs::write(
        d.join("signed-http.pem"),
        v["cert_pem"].as_str().expect("cert"),
    )
    .expect("w");
    assert_eq!(
        cert_pubkey(&d.join("signed-http.pem")),
        key_pubkey(&d.join("app.key"))
    );
    assert_eq!(cert_count(&http, &server.url, &token), before + 2);

    // The CLI, on the store and through the server: a non-zero exit, the reason on stderr, and --out
    // left absent (or, when it existed, empty).
    std::fs::write(d.join("bad-sig.csr"), &bad_sig).expect("write");
    std::fs::create_dir(d.join("existing")).expect("mkdir");
    let store = ["--config", "castellan.toml", "--data-dir", "d"];
    let cred = d.join("d/admin-credential.json");
    let remote = ["--server", &server.url, "--credential", s(&cred)];
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["sign", "--profile", "client", "--csr", "bad-sig.csr"],
            "o-bad-sig",
            "signature",
        ),
        (
            vec!["sign", "--profile", "client", "--csr", "garbage.csr"],
            "o-garbage",
            "malformed certificate signing request",
        ),
        (
            vec!["issue", "--profile", "mqtt", "--dns", "broker.other.test"],
            "o-san",
            "not allowed by profile `mqtt`",
        ),
        (
            vec![
                "issue",
                "--profile",
                "mqtt",
                "--dns",
                "b.mqtt.test",
                "--ttl",
                "25h",
            ],
            "o-ttl",
            "exceeds the maximum",
        ),
        (
            vec!["issue", "--profile", "nope", "--dns", "b.mqtt.test"],
            "o-profile",
            "unknown certificate profile",
        ),
        (
            vec![
                "issue",
                "--profile",
                "mqtt",
                "--dns",
                "b.mqtt.test",
                "--key-type",
                "rsa-2048",
            ],
            "existing",
            "not allowed by profile `mqtt`",
        ),
    ];
    for (args, out_dir, reason) in &cases {
        for target in [&store[..], &remote[..]] {
            let mut a = vec!["pki"];
            a.extend(args);
            a.extend(["--out", out_dir]);
            a.extend(target);
            let out = run(&a, d);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{a:?} succeeded");
            assert!(err.contains(reason), "{a:?}: {err}");
            assert_nothing_written(&d.join(out_dir), &format!("{a:?}"));
        }
    }
    assert!(d.join("existing").is_dir());
    assert_eq!(cert_count(&http, &server.url, &token), before + 2);
}

#[test]
fn pki_sign_certifies_an_openssl_csr_and_the_key_never_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init(d, "d");
    let (key, csr) = openssl_csr(d, "app");
    ok(
        &[
            "pki",
            "sign",
            "--profile",
            "client",
            "--csr",
            s(&csr),
            "--out",
            "signed",
            "--data-dir",
            "d",
        ],
        d,
    );
    let signed = d.join("signed");
    assert_eq!(
        listing(&signed).expect("out"),
        ["ca-bundle.pem", "cert.pem", "chain.pem", "root.pem"],
        "no key.pem for a CSR"
    );
    assert_eq!(cert_pubkey(&signed.join("cert.pem")), key_pubkey(&key));
    let (good, out) = verify(
        d,
        &["-CAfile", "signed/ca-bundle.pem", "-purpose", "sslclient"],
        &signed.join("cert.pem"),
    );
    assert!(good, "{out}");
    let inter = write_intermediate(&signed, "intermediate.pem");
    let (good, out) = verify(
        d,
        &["-CAfile", "signed/root.pem", "-untrusted", s(&inter)],
        &signed.join("cert.pem"),
    );
    assert!(good, "{out}");
    let text = x509_text(&signed.join("cert.pem"));
    assert!(text.contains("Subject: CN = app"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert_eq!(ext_value(&text, "X509v3 Basic Constraints"), "CA:FALSE");

    // A CSR asking to be a CA gets what the profile says, nothing more.
    openssl_ok(
        &[
            "req",
            "-new",
            "-key",
            s(&key),
            "-subj",
            "/CN=app",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "greedy.csr",
        ],
        d,
    );
    ok(
        &[
            "pki",
            "sign",
            "--profile",
            "client",
            "--csr",
            "greedy.csr",
            "--out",
            "greedy",
            "--data-dir",
            "d",
        ],
        d,
    );
    let text = x509_text(&d.join("greedy/cert.pem"));
    assert_eq!(ext_value(&text, "X509v3 Basic Constraints"), "CA:FALSE");
    assert_eq!(ext_value(&text, "X509v3 Key Usage"), "Digital Signature");
}

// ---- 4. file modes ------------------------------------------------------------------------------

/// `castellan ARGS` under a given umask (through sh; the workspace forbids unsafe `pre_exec`).
fn with_umask(umask: &str, args: &[&str], cwd: &Path) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(support::bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("CASTELLAN_DATABASE_URL")
        .env_remove("CASTELLAN_MASTER_KEY_FILE")
        .output()
        .expect("sh");
    assert!(out.status.success(), "{args:?}: {}", both(&out));
}

#[test]
fn out_leaves_an_existing_directory_alone_and_sets_file_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init(d, "d");
    let out = d.join("tls");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let args = [
        "pki",
        "issue",
        "--profile",
        "server",
        "--dns",
        "app.internal",
        "--out",
        "tls",
        "--data-dir",
        "d",
    ];
    let check = |dir: &Path, dir_mode: u32| {
        assert_eq!(mode(dir), dir_mode, "{}", dir.display());
        for f in SET_FILES {
            let want = if f == "key.pem" { 0o600 } else { 0o644 };
            assert_eq!(mode(dir.join(f)), want, "{f}");
        }
        assert_eq!(
            listing(dir).expect("out").len(),
            SET_FILES.len(),
            "no temp files left: {:?}",
            listing(dir)
        );
    };
    with_umask("022", &args, d);
    check(&out, 0o750);
    let first = read(out.join("cert.pem"));
    // Again into the same directory, under a strict umask: the files are replaced, modes unchanged.
    with_umask("077", &args, d);
    check(&out, 0o750);
    assert_ne!(read(out.join("cert.pem")), first, "replaced");
    // Under a loose umask too: the key stays 0600.
    with_umask("000", &args, d);
    check(&out, 0o750);
    // A missing directory (and its missing parent) is created 0755.
    let mut a = args.to_vec();
    a[7] = "new/tls";
    with_umask("022", &a, d);
    check(&d.join("new/tls"), 0o755);
    assert_eq!(mode(d.join("new")), 0o755);
}

// ---- 5. CRL -------------------------------------------------------------------------------------

#[test]
fn crl_parses_with_openssl_lists_revoked_serials_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init(d, "d");
    let a = issue(d, "d", "client", &["--cn", "a"], "a");
    let b = issue(d, "d", "client", &["--cn", "b"], "b");
    let keep = issue(d, "d", "client", &["--cn", "keep"], "keep");
    let (sa, sb, sk) = (
        openssl_serial(&a.join("cert.pem")),
        openssl_serial(&b.join("cert.pem")),
        openssl_serial(&keep.join("cert.pem")),
    );
    let server = Server::start(&["--data-dir", "d"], d);
    let http = Http::new();
    let token = admin_token(&server.url, &d.join("d"));

    // One revocation on the store with the CLI (serial with colons, as openssl -text shows it), one
    // over HTTP.
    let colons: Vec<String> = sa
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let out = ok(
        &[
            "pki",
            "revoke",
            &colons.join(":"),
            "--reason",
            "key-compromise",
            "--data-dir",
            "d",
        ],
        d,
    );
    assert!(out.contains("revoked"), "{out}");
    let r = http.post_json(
        &format!("{}/v1/pki/revoke", server.url),
        &token,
        &serde_json::json!({"serial": sb.to_lowercase(), "reason": "superseded"}),
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["status"], "revoked");
    let again = http.post_json(
        &format!("{}/v1/pki/revoke", server.url),
        &token,
        &serde_json::json!({"serial": sb}),
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["status"], "already_revoked");
    let unknown = http.post_json(
        &format!("{}/v1/pki/revoke", server.url),
        &token,
        &serde_json::json!({"serial": "0123456789abcdef"}),
    );
    assert_eq!(unknown.error(404), "not_found");

    let crl = http.get(&format!("{}/v1/pki/crl", server.url), None);
    assert_eq!(crl.status, 200);
    assert_eq!(crl.content_type, "application/pkix-crl");
    std::fs::write(d.join("crl.der"), &crl.body).expect("write");
    let text = openssl_ok(
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
        d,
    );
    assert!(text.contains(&format!("Serial Number: {sa}")), "{text}");
    assert!(text.contains(&format!("Serial Number: {sb}")), "{text}");
    assert!(
        !text.contains(&sk),
        "an unrevoked serial is listed:\n{text}"
    );
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("Superseded"), "{text}");
    assert!(
        text.contains("Issuer: O = Castellan, CN = Castellan Intermediate CA"),
        "{text}"
    );
    assert!(text.contains("X509v3 CRL Number"), "{text}");
    let out = openssl_ok(
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "crl.der",
            "-CAfile",
            "a/ca-bundle.pem",
            "-noout",
        ],
        d,
    );
    assert!(out.contains("verify OK"), "{out}");

    // The PEM form is the same CRL.
    let pem = http.get(&format!("{}/v1/pki/crl.pem", server.url), None);
    assert_eq!(pem.status, 200);
    std::fs::write(d.join("crl.pem"), &pem.body).expect("write");
    let from_pem = openssl_ok(&["crl", "-in", "crl.pem", "-noout", "-text"], d);
    assert_eq!(from_pem, text);

    // OpenSSL's own revocation check with it.
    let inter = write_intermediate(&a, "intermediate.pem");
    let check = |set: &Path| {
        verify(
            d,
            &[
                "-crl_check",
                "-CRLfile",
                "crl.pem",
                "-CAfile",
                "a/root.pem",
                "-untrusted",
                s(&inter),
            ],
            &set.join("cert.pem"),
        )
    };
    let (good, out) = check(&a);
    assert!(!good && out.contains("certificate revoked"), "{out}");
    let (good, out) = check(&b);
    assert!(!good && out.contains("certificate revoked"), "{out}");
    let (good, out) = check(&keep);
    assert!(good, "{out}");
}

// ---- 6. offline root key --------------------------------------------------------------------------

#[test]
fn init_with_root_key_out_keeps_the_root_key_out_of_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = ok(&["init", "--data-dir", "d", "--root-key-out", "offline"], d);
    assert!(out.contains("root-key.pem"), "{out}");
    let key = d.join("offline/root-key.pem");
    assert_eq!(mode(&key), 0o600);
    assert!(read(&key).starts_with("-----BEGIN PRIVATE KEY-----"));
    let row = active_ca(&d.join("d"));
    assert!(row.root_sealed_key.is_none(), "the root key was stored");
    // It is the root's key.
    ok(&["pki", "ca", "--out", "ca", "--data-dir", "d"], d);
    assert_eq!(cert_pubkey(&d.join("ca/root.pem")), key_pubkey(&key));
    assert_eq!(read(d.join("ca/root.pem")), row.root_pem);

    // Issuance needs only the intermediate.
    let set = issue(d, "d", "server", &["--dns", "app.internal"], "set");
    let inter = write_intermediate(&set, "intermediate.pem");
    let (good, out) = verify(
        d,
        &["-CAfile", "ca/root.pem", "-untrusted", s(&inter)],
        &set.join("cert.pem"),
    );
    assert!(good, "{out}");

    // Without the flag the root key is sealed in the store, and no key file appears.
    ok(&["init", "--data-dir", "online"], d);
    assert!(active_ca(&d.join("online")).root_sealed_key.is_some());
    assert!(!d.join("online/root-key.pem").exists());
}

// ---- 7. import-ca ---------------------------------------------------------------------------------

#[test]
fn import_ca_from_openssl_then_issue_leaves_openssl_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    openssl_pki(d);
    let int_text = x509_text(&d.join("openssl-intermediate.pem"));
    assert!(int_text.contains("CA:TRUE, pathlen:0"), "{int_text}");
    init(d, "d");
    let import = |cert: &str, key: &str| {
        run(
            &[
                "pki",
                "import-ca",
                "--cert",
                cert,
                "--key",
                key,
                "--chain",
                "openssl-root.pem",
                "--data-dir",
                "d",
            ],
            d,
        )
    };

    // A leaf is not a CA: refused, with the reason.
    let out = import("openssl-leaf.pem", "leaf.key");
    assert!(!out.status.success(), "a leaf was imported as a CA");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be used as a CA") && err.contains("leaf"),
        "{err}"
    );
    // A key that is not the CA's: refused.
    let out = import("openssl-intermediate.pem", "leaf.key");
    assert!(!out.status.success(), "a mismatched key was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key"), "{err}");
    // Neither changed the issuing CA.
    let before = issue(d, "d", "server", &["--dns", "a.internal"], "before");
    assert!(
        x509_text(&before.join("cert.pem")).contains("Castellan Intermediate CA"),
        "issuing CA changed by a refused import"
    );

    let out = import("openssl-intermediate.pem", "int.key");
    assert!(out.status.success(), "{}", both(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported"));

    let set = issue(
        d,
        "d",
        "server",
        &["--dns", "mqtt.legacy", "--ip", "10.0.0.7"],
        "set",
    );
    let (good, out) = verify(
        d,
        &[
            "-CAfile",
            "openssl-root.pem",
            "-untrusted",
            "openssl-intermediate.pem",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "mqtt.legacy",
        ],
        &set.join("cert.pem"),
    );
    assert!(good, "{out}");
    let (good, _) = verify(d, &["-CAfile", "openssl-root.pem"], &set.join("cert.pem"));
    assert!(!good, "verified without the intermediate");
    // The set carries the imported hierarchy.
    let fp = |p: &Path| {
        openssl_ok(
            &["x509", "-in", s(p), "-noout", "-fingerprint", "-sha256"],
            d,
        )
    };
    assert_eq!(fp(&set.join("root.pem")), fp(&d.join("openssl-root.pem")));
    let inter = write_intermediate(&set, "imported-intermediate.pem");
    assert_eq!(fp(&inter), fp(&d.join("openssl-intermediate.pem")));
    let (good, out) = verify(d, &["-CAfile", "set/ca-bundle.pem"], &set.join("cert.pem"));
    assert!(good, "{out}");
    let text = x509_text(&set.join("cert.pem"));
    assert!(
        text.contains("Issuer: O = Legacy, CN = Legacy Issuing CA"),
        "{text}"
    );
    assert_eq!(
        ext_value(&text, "X509v3 Authority Key Identifier"),
        ext_value(&int_text, "X509v3 Subject Key Identifier")
    );
}

// ---- 8. through a server --------------------------------------------------------------------------

#[test]
fn issue_through_a_server_with_the_admin_credential_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    init(d, "d");
    let server = Server::start(&["--data-dir", "d"], d);
    let cred = d.join("d/admin-credential.json");
    let remote = ["--server", &server.url, "--credential", s(&cred)];
    let mut a = vec![
        "pki",
        "issue",
        "--profile",
        "peer",
        "--dns",
        "node-1.cluster.internal",
        "--ip",
        "10.1.2.3",
        "--ttl",
        "48h",
        "--out",
        "remote",
        "--json",
    ];
    a.extend(remote);
    let json: serde_json::Value = serde_json::from_str(&ok(&a, d)).expect("--json");
    let set = d.join("remote");
    assert_eq!(listing(&set).expect("out"), {
        let mut v = SET_FILES.map(str::to_owned).to_vec();
        v.sort();
        v
    });
    assert_eq!(mode(set.join("key.pem")), 0o600);
    assert_eq!(
        read(set.join("cert.pem")),
        json["cert_pem"].as_str().expect("pem")
    );
    assert_eq!(
        read(set.join("key.pem")),
        json["key_pem"].as_str().expect("key")
    );
    assert_eq!(json["profile"], "peer");
    assert_eq!(
        json["not_after"].as_i64().expect("nb") - json["not_before"].as_i64().expect("na"),
        48 * 3600 + 60,
        "48h, backdated one minute"
    );
    assert_eq!(
        cert_pubkey(&set.join("cert.pem")),
        key_pubkey(&set.join("key.pem"))
    );
    let inter = write_intermediate(&set, "intermediate.pem");
    for p in ["sslserver", "sslclient"] {
        let (good, out) = verify(
            d,
            &[
                "-CAfile",
                "remote/root.pem",
                "-untrusted",
                s(&inter),
                "-purpose",
                p,
                "-verify_ip",
                "10.1.2.3",
            ],
            &set.join("cert.pem"),
        );
        assert!(good, "{p}: {out}");
    }

    // The same trust anchors as the store's own, and the certificate is listed by serial.
    let mut a = vec!["pki", "ca", "--out", "ca"];
    a.extend(remote);
    ok(&a, d);
    assert_eq!(read(d.join("ca/root.pem")), read(set.join("root.pem")));
    assert_eq!(
        read(d.join("ca/ca-bundle.pem")),
        read(set.join("ca-bundle.pem"))
    );
    assert_eq!(
        read(d.join("ca/root.pem")),
        active_ca(&d.join("d")).root_pem
    );
    // `/v1/pki/ca` is public: the CA files come without a credential too.
    ok(
        &["pki", "ca", "--out", "ca-public", "--server", &server.url],
        d,
    );
    assert_eq!(
        read(d.join("ca-public/root.pem")),
        read(d.join("ca/root.pem"))
    );
    assert_eq!(
        read(d.join("ca-public/ca-bundle.pem")),
        read(d.join("ca/ca-bundle.pem"))
    );
    let mut a = vec!["pki", "list", "--json"];
    a.extend(remote);
    let list: serde_json::Value = serde_json::from_str(&ok(&a, d)).expect("list");
    let serial = openssl_serial(&set.join("cert.pem")).to_lowercase();
    assert_eq!(json["serial"], serial.as_str());
    assert!(
        list["certificates"]
            .as_array()
            .expect("certificates")
            .iter()
            .any(|c| c["serial"] == serial.as_str() && c["profile"] == "peer"),
        "{list}"
    );
    // And a CSR signed through the server.
    let (key, csr) = openssl_csr(d, "app");
    let mut a = vec![
        "pki",
        "sign",
        "--profile",
        "client",
        "--csr",
        s(&csr),
        "--out",
        "signed",
    ];
    a.extend(remote);
    ok(&a, d);
    assert!(!d.join("signed/key.pem").exists());
    assert_eq!(cert_pubkey(&d.join("signed/cert.pem")), key_pubkey(&key));
    let (good, out) = verify(
        d,
        &["-CAfile", "signed/ca-bundle.pem", "-purpose", "sslclient"],
        &d.join("signed/cert.pem"),
    );
    assert!(good, "{out}");
}
