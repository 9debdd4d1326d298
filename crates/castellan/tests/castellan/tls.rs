//! HTTPS for Castellan's own API: a certificate the replica issues itself (trusted through the root
//! alone, renewed, its key never written) or one from files (reloaded when they change, an
//! inconsistent pair never served). Checked with OpenSSL's `s_client` and curl, and used by the CLI,
//! the agent and castellan-verify.

use crate::pki_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// What `openssl s_client` saw at `port`, trusting `ca` and checking the name `localhost`.
struct Handshake {
    /// `Verify return code: 0 (ok)` was printed.
    verified: bool,
    /// The certificates the server presented, in order (PEM).
    presented: Vec<String>,
    output: String,
}

fn s_client(port: u16, ca: &Path) -> Handshake {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .args(["-verify_return_error", "-showcerts", "-CAfile"])
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut presented = Vec::new();
    let mut rest = output.as_str();
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end_marker = "-----END CERTIFICATE-----";
        let end = rest[start..].find(end_marker).expect("end of PEM") + start + end_marker.len();
        presented.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    Handshake {
        verified: output.contains("Verify return code: 0 (ok)"),
        presented,
        output,
    }
}

/// `openssl x509 -noout ARG` of a PEM certificate, the value after `=`, lowercase.
fn x509(pem: &str, arg: &str) -> String {
    let text = openssl_x509(pem, &[arg]);
    text.trim()
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap_or(&text)
        .replace(':', "")
        .to_ascii_lowercase()
}

/// What `openssl x509 -noout ARGS` prints for a PEM certificate.
fn openssl_x509(pem: &str, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl x509");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "openssl x509 {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn port_of(server: &Server) -> u16 {
    server
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// `curl ARGS URL`: (exit code, body).
fn curl(args: &[&str], url: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_self_issued_certificate_is_trusted_through_the_root_alone_and_every_client_uses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d", "--alg", "ES256"], d);
    ok(&["pki", "ca", "--data-dir", "d", "--out", "ca"], d);
    let server = Server::start_https(
        &["--data-dir", "d", "--tls-self-issued"],
        d,
        Path::new("ca/root.pem"),
    );
    let port = port_of(&server);
    let root = d.join("ca/root.pem");

    // OpenSSL, trusting the root only: it verifies only if the server sends its intermediate.
    let hs = s_client(port, &root);
    assert!(hs.verified, "{}", hs.output);
    assert_eq!(hs.presented.len(), 2, "leaf + intermediate: {}", hs.output);
    let leaf_serial = x509(&hs.presented[0], "-serial");
    let intermediate = std::fs::read_to_string(d.join("ca/ca-bundle.pem")).expect("bundle");
    assert!(
        intermediate.contains(hs.presented[1].trim()),
        "the second certificate is the intermediate of ca-bundle.pem"
    );
    let ext = openssl_x509(
        &hs.presented[0],
        &["-ext", "extendedKeyUsage,subjectAltName"],
    );
    assert!(
        ext.contains("TLS Web Server Authentication")
            && ext.contains("DNS:localhost")
            && ext.contains("IP Address:127.0.0.1"),
        "{ext}"
    );

    // curl (OpenSSL) with the root; without it the certificate is not trusted; plain HTTP gets no
    // HTTP answer from the HTTPS port.
    let root_arg = root.to_str().expect("utf8");
    let (code, body) = curl(&["--cacert", root_arg], &format!("{}/readyz", server.url));
    assert_eq!(code, 0, "{body}");
    assert!(body.contains("ready"), "{body}");
    let (code, body) = curl(
        &["--cacert", root_arg],
        &format!("https://127.0.0.1:{port}/.well-known/openid-configuration"),
    );
    assert_eq!(code, 0, "{body}");
    let discovery: serde_json::Value = serde_json::from_str(&body).expect("discovery JSON");
    assert_eq!(
        discovery["issuer"],
        format!("https://127.0.0.1:{port}"),
        "the issuer follows the scheme served"
    );
    let (code, _) = curl(&[], &format!("{}/readyz", server.url));
    assert_eq!(
        code, 60,
        "without the root the certificate must not be trusted"
    );
    let (code, body) = curl(&[], &format!("http://127.0.0.1:{port}/healthz"));
    assert_ne!(code, 0, "plain HTTP must not be answered: {body}");

    // The CLI: with --ca-file it works; without, it says what to pass.
    let put = |extra: &[&str]| {
        let mut args = vec![
            "secret",
            "put",
            "tls/check",
            "--server",
            &server.url,
            "--credential",
            "d/admin-credential.json",
        ];
        args.extend_from_slice(extra);
        run_with_stdin(&args, d, b"over-tls")
    };
    let out = put(&["--ca-file", "ca/root.pem"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = put(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("UnknownIssuer") && text(&out).contains("--ca-file"),
        "{}",
        text(&out)
    );
    let got = ok(
        &[
            "secret",
            "get",
            "tls/check",
            "--server",
            &server.url,
            "--credential",
            "d/admin-credential.json",
            "--ca-file",
            "ca/root.pem",
        ],
        d,
    );
    assert_eq!(got, "over-tls");

    // The certificate is recorded like every other, and its key was never written anywhere.
    let list: serde_json::Value =
        serde_json::from_str(&ok(&["pki", "list", "--data-dir", "d", "--json"], d))
            .expect("list JSON");
    let own: Vec<&serde_json::Value> = list["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .filter(|c| c["profile"] == "castellan-tls")
        .collect();
    assert_eq!(own.len(), 1, "{list}");
    assert_eq!(own[0]["serial"], leaf_serial.as_str(), "{list}");
    let (code, metrics) = curl(&["--cacert", root_arg], &format!("{}/metrics", server.url));
    assert_eq!(code, 0, "{metrics}");
    let expiry = format!(
        "castellan_tls_certificate_not_after_seconds {}\n",
        own[0]["not_after"]
    );
    assert!(metrics.contains(&expiry), "{expiry:?} in {metrics}");
    for f in files_under(d) {
        let bytes = std::fs::read(&f).expect("read");
        assert!(
            !String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"),
            "{} holds a PEM private key",
            f.display()
        );
    }

    // The agent: with ca_file it delivers; without, the failure names ca_file.
    let cred = ok(
        &[
            "client",
            "create",
            "agent",
            "--scope",
            "pki:issue",
            "--cert-name",
            "app",
            "--json",
            "--data-dir",
            "d",
        ],
        d,
    );
    std::fs::write(d.join("agent.json"), cred).expect("credential");
    let agent_toml = |ca: &str| {
        format!(
            "server = \"{}\"\n{ca}credential_file = \"agent.json\"\n\n[[certificate]]\nname = \"app\"\nprofile = \"client\"\ncommon_name = \"app\"\nttl = \"24h\"\ndir = \"certs/app\"\n",
            server.url
        )
    };
    std::fs::write(
        d.join("agent.toml"),
        agent_toml("ca_file = \"ca/root.pem\"\n"),
    )
    .expect("toml");
    ok(&["agent", "--config", "agent.toml", "--once"], d);
    assert!(d.join("certs/app/chain.pem").exists());
    std::fs::write(d.join("agent-no-ca.toml"), agent_toml("")).expect("toml");
    let out = run(&["agent", "--config", "agent-no-ca.toml", "--once"], d);
    assert!(!out.status.success());
    assert!(text(&out).contains("ca_file"), "{}", text(&out));

    // castellan-verify fetches the JWKS over HTTPS trusting the root given to it.
    let token = ok(
        &[
            "token",
            "--credential",
            "d/admin-credential.json",
            "--server",
            &server.url,
            "--ca-file",
            "ca/root.pem",
        ],
        d,
    );
    let root_pem = std::fs::read(&root).expect("root");
    let issuer = format!("https://127.0.0.1:{port}");
    let jwks = format!("{}/.well-known/jwks.json", server.url);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let verifier = castellan_verify::Verifier::builder(&issuer, &issuer, &jwks)
            .ca_pem(root_pem)
            .build()
            .expect("verifier");
        let claims = verifier
            .verify(token.trim())
            .await
            .expect("the JWKS is fetched over HTTPS and the token verifies");
        assert_eq!(claims.iss, issuer);
        let untrusting = castellan_verify::Verifier::builder(&issuer, &issuer, &jwks)
            .build()
            .expect("verifier");
        assert!(
            untrusting.verify(token.trim()).await.is_err(),
            "without the root the JWKS cannot be fetched"
        );
    });

    // SIGTERM stops the HTTPS server cleanly, as it does the plain one.
    assert!(server.terminate().success());
}

/// Waits until the server at `port` presents a leaf whose `-serial` differs from `old`.
fn wait_for_new_leaf(port: u16, ca: &Path, old: &str, within: Duration) -> (String, Handshake) {
    let deadline = Instant::now() + within;
    loop {
        let hs = s_client(port, ca);
        if let Some(leaf) = hs.presented.first() {
            let serial = x509(leaf, "-serial");
            if serial != old {
                return (serial, hs);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the certificate was not replaced"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_self_issued_certificate_is_renewed_at_two_thirds_of_its_lifetime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d"], d);
    ok(&["pki", "ca", "--data-dir", "d", "--out", "ca"], d);
    std::fs::write(
        d.join("castellan.toml"),
        "[tls]\nmode = \"self-issued\"\nttl = \"12s\"\nnames = [\"localhost\"]\n",
    )
    .expect("config");
    let server = Server::start_https(
        &["--config", "castellan.toml", "--data-dir", "d"],
        d,
        Path::new("ca/root.pem"),
    );
    let port = port_of(&server);
    let root = d.join("ca/root.pem");
    let first = s_client(port, &root);
    assert!(first.verified, "{}", first.output);
    let started = Instant::now();
    let first_serial = x509(&first.presented[0], "-serial");
    let (second_serial, second) =
        wait_for_new_leaf(port, &root, &first_serial, Duration::from_secs(20));
    // Renewed at 8 s of 12: not right away, and before the old one expired.
    let after = started.elapsed();
    assert!(
        after >= Duration::from_secs(5),
        "renewed too early: {after:?}"
    );
    assert!(second.verified, "{}", second.output);
    assert_ne!(first_serial, second_serial);
    let list = ok(&["pki", "list", "--data-dir", "d", "--json"], d);
    assert!(
        list.contains(&first_serial) && list.contains(&second_serial),
        "{list}"
    );
    let list: serde_json::Value = serde_json::from_str(&list).expect("list JSON");
    let renewed = list["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .find(|c| c["serial"] == second_serial.as_str())
        .expect("the renewed certificate");
    let metrics = reqwest::blocking_client_trusting(&root)
        .get(format!("{}/metrics", server.url))
        .send()
        .expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains(&format!(
            "castellan_tls_certificate_not_after_seconds {}\n",
            renewed["not_after"]
        )),
        "the expiry metric follows the renewal: {metrics}"
    );
    // Only the configured name.
    let ext = openssl_x509(&second.presented[0], &["-ext", "subjectAltName"]);
    assert!(!ext.contains("127.0.0.1"), "{ext}");
}

#[test]
fn a_self_issued_certificate_follows_a_new_issuing_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d"], d);
    ok(&["pki", "ca", "--data-dir", "d", "--out", "ca"], d);
    let server = Server::start_https(
        &["--data-dir", "d", "--tls-self-issued"],
        d,
        Path::new("ca/root.pem"),
    );
    let port = port_of(&server);
    assert!(s_client(port, &d.join("ca/root.pem")).verified);
    // The operator migrates to an intermediate of another PKI (made with the openssl CLI).
    pki_support::import_openssl_ca(d);
    let new_root = d.join("openssl-root.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    let hs = loop {
        let hs = s_client(port, &new_root);
        if hs.verified {
            break hs;
        }
        assert!(
            Instant::now() < deadline,
            "still presenting a certificate of the old CA: {}",
            hs.output
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let imported = std::fs::read_to_string(d.join("openssl-intermediate.pem")).expect("pem");
    assert_eq!(
        openssl_x509(&hs.presented[1], &["-fingerprint", "-sha256"]),
        openssl_x509(&imported, &["-fingerprint", "-sha256"]),
        "the new intermediate is presented"
    );
}

/// `castellan pki issue` of a server set for `localhost` and 127.0.0.1 into `d/out`; its serial.
fn issue_localhost(d: &Path, out: &str) -> String {
    ok(
        &[
            "pki",
            "issue",
            "--data-dir",
            "d",
            "--profile",
            "server",
            "--cn",
            "localhost",
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--ttl",
            "24h",
            "--out",
            out,
        ],
        d,
    );
    x509(
        &std::fs::read_to_string(d.join(out).join("cert.pem")).expect("cert"),
        "-serial",
    )
}

#[test]
fn certificate_files_are_served_and_reloaded_and_an_inconsistent_pair_is_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d"], d);
    ok(&["pki", "ca", "--data-dir", "d", "--out", "ca"], d);
    let issue = |out: &str| issue_localhost(d, out);
    let first = issue("tls");
    let mut child = command(
        &[
            "serve",
            "--data-dir",
            "d",
            "--tls-cert",
            "tls/chain.pem",
            "--tls-key",
            "tls/key.pem",
        ],
        d,
    );
    // The server on its own port, reloading the files every second.
    let port = free_port();
    let log = d.join("serve.log");
    let mut server = child
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("CASTELLAN_TLS_RELOAD_INTERVAL", "1s")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve");
    let root = d.join("ca/root.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    let hs = loop {
        let hs = s_client(port, &root);
        if hs.verified {
            break hs;
        }
        assert!(
            Instant::now() < deadline,
            "not serving: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(x509(&hs.presented[0], "-serial"), first);
    assert_eq!(hs.presented.len(), 2, "chain.pem is presented whole");

    // New files (written atomically by pki issue) are picked up.
    let second = issue("tls");
    assert_ne!(first, second);
    let (now_served, hs) = wait_for_new_leaf(port, &root, &first, Duration::from_secs(10));
    assert_eq!(now_served, second);
    assert!(hs.verified, "{}", hs.output);

    // A key that does not belong to the certificate: the previous pair stays.
    issue("other");
    std::fs::copy(d.join("other/key.pem"), d.join("tls/key.pem")).expect("copy");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("does not match")
    {
        assert!(Instant::now() < deadline, "the mismatch was not reported");
        std::thread::sleep(Duration::from_millis(200));
    }
    let hs = s_client(port, &root);
    assert!(hs.verified, "{}", hs.output);
    assert_eq!(x509(&hs.presented[0], "-serial"), second);
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_server_that_cannot_serve_its_certificate_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d"], d);
    ok(&["pki", "ca", "--data-dir", "d", "--out", "ca"], d);
    for out in ["a", "b"] {
        issue_localhost(d, out);
    }
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--data-dir", "d", "--listen", &listen];
        args.extend_from_slice(extra);
        run(&args, d)
    };
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["--tls-cert", "a/chain.pem", "--tls-key", "b/key.pem"],
            2,
            "does not match",
        ),
        (
            &["--tls-cert", "a/missing.pem", "--tls-key", "a/key.pem"],
            2,
            "cannot read a/missing.pem",
        ),
        (
            &["--tls-cert", "ca/root.pem", "--tls-key", "a/key.pem"],
            2,
            "is a CA",
        ),
        (
            &["--tls-cert", "a/chain.pem", "--tls-key", "a/cert.pem"],
            2,
            "no PEM private key",
        ),
        (&["--tls-cert", "a/chain.pem"], 2, "--tls-key"),
    ];
    for (args, code, says) in cases {
        let out = serve(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        assert!(
            !text(&out).contains("PRIVATE KEY-----"),
            "{args:?}: the key must not be shown"
        );
    }
    // Configurations that cannot work are refused before anything starts.
    for (extra, says) in [
        (
            &["--listen", "0.0.0.0:0", "--tls-self-issued"][..],
            "tls.names",
        ),
        (
            &[
                "--listen",
                &listen,
                "--tls-self-issued",
                "--public-url",
                "http://castellan.internal",
            ],
            "public_url",
        ),
        (
            &[
                "--listen",
                &listen,
                "--tls-self-issued",
                "--tls-name",
                "bad name!",
            ],
            "neither a DNS name",
        ),
    ] {
        let mut args = vec!["serve", "--data-dir", "d"];
        args.extend_from_slice(extra);
        let out = run(&args, d);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
}
