//! Verdicts that hold for every common verifier (issue 23, doctor item 2). Each claim the doctor makes
//! about OpenSSL, Python's ssl or Go is checked here against the real thing: `openssl verify`, a TLS
//! handshake with Python's `ssl` module (verify_ssl.py) and Go's crypto/x509 (x509verify.go, built
//! with Debian's golang-go).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
    SanType,
};

use super::doctor;
use super::fixtures::{Ca, Pki, write};

fn here(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/castellan/doctor")
        .join(name)
}

/// `openssl verify -CAfile CA -untrusted CHAIN [-verify_hostname HOST] LEAF`: (passed, output).
fn openssl_verify(dir: &Path, ca: &str, host: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir)
        .args(["verify", "-CAfile", ca, "-untrusted", "chain.pem"]);
    if let Some(h) = host {
        cmd.args(["-verify_hostname", h]);
    }
    let out = cmd.arg("cert.pem").output().expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Python's ssl as a client of a server presenting chain.pem: (passed, output).
fn python_ssl(dir: &Path, ca: &str, host: &str) -> (bool, String) {
    let out = Command::new("python3")
        .current_dir(dir)
        .arg(here("verify_ssl.py"))
        .args([ca, "chain.pem", "key.pem", host])
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The Go verifier, built once; `None` where Go is not installed (outside CI).
fn go_verifier() -> Option<&'static PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("doctor-x509verify");
        std::fs::create_dir_all(&out_dir).ok()?;
        let bin = out_dir.join("x509verify");
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(here("x509verify.go"))
            .env(
                "GOCACHE",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("gocache"),
            )
            .env("GO111MODULE", "off")
            .status();
        match status {
            Ok(s) if s.success() => Some(bin),
            _ => {
                assert!(
                    !super::under_ci(),
                    "Go (Debian golang-go) is required under CI"
                );
                eprintln!("skipped the Go checks: no Go toolchain");
                None
            }
        }
    })
    .as_ref()
}

/// Go's crypto/x509 verdict: (passed, output); `None` without Go.
fn go_verify(dir: &Path, ca: &str, host: Option<&str>) -> Option<(bool, String)> {
    let bin = go_verifier()?;
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir)
        .args(["-roots", ca, "-chain", "chain.pem"]);
    if let Some(h) = host {
        cmd.args(["-host", h]);
    }
    let out = cmd.output().expect("x509verify");
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

/// JavaTls.java, compiled once; `None` where no JDK is installed (outside CI).
fn java_classes() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("doctor-javatls");
        let status = Command::new("javac")
            .arg("-d")
            .arg(&dir)
            .arg(here("JavaTls.java"))
            .status();
        match status {
            Ok(s) if s.success() => Some(dir),
            _ => {
                assert!(!super::under_ci(), "a JDK (javac) is required under CI");
                eprintln!("skipped the Java checks: no JDK");
                None
            }
        }
    })
    .as_ref()
}

/// Java's TLS client (PKIX, HTTPS endpoint identification) against a Python TLS server presenting
/// chain.pem: (passed, output); `None` without a JDK.
fn java_tls(dir: &Path, ca: &str, host: &str) -> Option<(bool, String)> {
    use std::io::BufRead;
    let classes = java_classes()?;
    let mut server = Command::new("python3")
        .current_dir(dir)
        .arg(here("verify_ssl.py"))
        .args(["--serve", "chain.pem", "key.pem"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 server");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let out = java_client(classes, dir, ca, host, line.trim());
    drop(server.stdin.take());
    let _ = server.wait();
    Some(out)
}

/// JavaTls against 127.0.0.1:`port`: (passed, output).
fn java_client(classes: &Path, dir: &Path, ca: &str, host: &str, port: &str) -> (bool, String) {
    let out = Command::new("java")
        .arg("-cp")
        .arg(classes)
        .args(["JavaTls", ca, host, port])
        .current_dir(dir)
        .output()
        .expect("java");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

fn chain_doctor(dir: &Path, ca: &str, host: &str) -> super::Report {
    doctor(
        &[
            "chain",
            "--cert",
            "chain.pem",
            "--key",
            "key.pem",
            "--ca",
            ca,
            "--host",
            host,
        ],
        dir,
    )
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

/// A leaf (server, for `dns`, CN `cn`) issued by `int`, written with the chain into `dir`.
fn write_leaf(
    dir: &Path,
    root: &Ca,
    int: &Ca,
    cn: &str,
    dns: &[&str],
    critical_oid: Option<&[u64]>,
) {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.subject_alt_names = dns
        .iter()
        .map(|d| SanType::DnsName((*d).try_into().expect("dns")))
        .collect();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    if let Some(oid) = critical_oid {
        let mut ext = CustomExtension::from_oid_content(oid, vec![0x05, 0x00]);
        ext.set_criticality(true);
        p.custom_extensions = vec![ext];
    }
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, &int.issuer()).expect("leaf");
    write(dir, "root.pem", &root.pem);
    write(dir, "int.pem", &int.pem);
    write(dir, "cert.pem", cert.pem());
    write(dir, "chain.pem", format!("{}{}", cert.pem(), int.pem));
    write(dir, "key.pem", key.serialize_pem());
}

#[test]
fn issue_23_an_intermediate_alone_in_the_ca_file_fails_only_in_openssl_clients() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    Pki::new(dir);
    let r = chain_doctor(dir, "int.pem", "localhost");
    let f = r.get("verifiers-disagree");
    let msg = f["message"].as_str().expect("m").to_owned();
    assert_eq!(f["severity"], "warning", "{}", r.dump());
    assert!(!r.has("verification-failed"), "{}", r.dump());

    // The claims, checked: OpenSSL refuses with the message quoted, Python's ssl too, Go accepts.
    let (ok, text) = openssl_verify(dir, "int.pem", None);
    assert!(!ok, "openssl accepted a partial chain: {text}");
    let quoted = "error 2 at 1 depth lookup: unable to get issuer certificate";
    assert!(
        text.contains(quoted) && msg.contains(quoted),
        "{text}\n{msg}"
    );
    let (ok, text) = python_ssl(dir, "int.pem", "localhost");
    assert!(!ok, "Python ssl accepted it: {text}");
    assert!(
        text.contains("unable to get issuer certificate")
            && msg.contains("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get issuer certificate"),
        "{text}\n{msg}"
    );
    if let Some((ok, text)) = go_verify(dir, "int.pem", Some("localhost")) {
        assert!(ok, "Go refused (the doctor says it accepts): {text}");
    }
    if let Some((ok, text)) = java_tls(dir, "int.pem", "localhost") {
        assert!(ok, "Java refused (the doctor says it accepts): {text}");
    }

    // With the root, no disagreement: every verifier accepts, and the doctor says nothing.
    let r = chain_doctor(dir, "root.pem", "localhost");
    r.expect_clean("root as trust file");
    assert!(openssl_verify(dir, "root.pem", None).0);
    assert!(python_ssl(dir, "root.pem", "localhost").0);
    if let Some((ok, text)) = go_verify(dir, "root.pem", Some("localhost")) {
        assert!(ok, "{text}");
    }
}

#[test]
fn issue_23_a_common_name_only_leaf_passes_openssl_and_fails_go_and_webpki() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let root = Ca::root("Verifiers Root");
    let int = root.intermediate("Verifiers Intermediate", Some(0));
    write_leaf(dir, &root, &int, "localhost", &[], None);
    let r = chain_doctor(dir, "root.pem", "localhost");
    r.get("hostname-mismatch");
    let f = r.get("verifiers-disagree");
    let msg = f["message"].as_str().expect("m").to_owned();

    let (ok, text) = openssl_verify(dir, "root.pem", Some("localhost"));
    assert!(ok, "openssl refused a CN-only leaf: {text}");
    let (ok, text) = python_ssl(dir, "root.pem", "localhost");
    assert!(ok, "Python ssl refused a CN-only leaf: {text}");
    if let Some((ok, text)) = java_tls(dir, "root.pem", "localhost") {
        assert!(ok, "Java refused a CN-only leaf: {text}");
    }
    if let Some((ok, text)) = go_verify(dir, "root.pem", Some("localhost")) {
        assert!(!ok, "Go accepted a CN-only leaf");
        assert!(
            msg.contains(&text),
            "the doctor quotes Go's message `{text}`: {msg}"
        );
    }
}

#[test]
fn issue_23_an_unknown_critical_extension_is_named_not_verification_failed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let root = Ca::root("Verifiers Root");
    let int = root.intermediate("Verifiers Intermediate", Some(0));
    write_leaf(
        dir,
        &root,
        &int,
        "localhost",
        &["localhost"],
        Some(&[1, 3, 6, 1, 4, 1, 55555, 7]),
    );
    let r = chain_doctor(dir, "root.pem", "localhost");
    let f = r.expect("critical-extension-unknown", 1);
    let msg = f["message"].as_str().expect("m").to_owned();
    assert!(msg.contains("1.3.6.1.4.1.55555.7"), "{msg}");
    assert!(!r.has("verification-failed"), "{}", r.dump());

    let (ok, text) = openssl_verify(dir, "root.pem", None);
    assert!(
        !ok && text.contains("unhandled critical extension"),
        "{text}"
    );
    assert!(msg.contains("unhandled critical extension"));
    let (ok, text) = python_ssl(dir, "root.pem", "localhost");
    assert!(
        !ok && text.contains("unhandled critical extension"),
        "{text}"
    );
    if let Some((ok, text)) = go_verify(dir, "root.pem", Some("localhost")) {
        assert!(!ok && msg.contains(&text), "Go: `{text}`; doctor: {msg}");
    }
    if let Some((ok, text)) = java_tls(dir, "root.pem", "localhost") {
        let q = "PKIX path validation failed: java.security.cert.CertPathValidatorException: \
                 unrecognized critical extension(s)";
        assert!(
            !ok && text.contains(q) && msg.contains(q),
            "Java: `{text}`; doctor: {msg}"
        );
    }
}

#[test]
fn issue_23_a_name_outside_the_cas_constraints_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let root = Ca::root("Verifiers Root");
    let mut p = CertificateParams::default();
    p.distinguished_name = dn("Constrained Intermediate");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.use_authority_key_identifier_extension = true;
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName("example.com".to_owned())],
        excluded_subtrees: Vec::new(),
    });
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, &root.issuer()).expect("int");
    let int = Ca {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        params: p,
        key,
    };
    write_leaf(dir, &root, &int, "localhost", &["localhost"], None);
    let r = chain_doctor(dir, "root.pem", "localhost");
    let f = r.expect("name-constraint-violated", 1);
    let msg = f["message"].as_str().expect("m").to_owned();
    assert!(
        msg.contains("`localhost`") && msg.contains("example.com"),
        "{msg}"
    );
    assert!(!r.has("verification-failed"), "{}", r.dump());

    let (ok, text) = openssl_verify(dir, "root.pem", None);
    assert!(
        !ok && text.contains("permitted subtree violation"),
        "{text}"
    );
    if let Some((ok, text)) = go_verify(dir, "root.pem", Some("localhost")) {
        assert!(!ok, "Go accepted it");
        assert!(
            text.contains("is not authorized to sign for this name")
                && msg.contains("is not authorized to sign for this name"),
            "Go: `{text}`; doctor: {msg}"
        );
    }
    if let Some((ok, text)) = java_tls(dir, "root.pem", "localhost") {
        let q = "PKIX path validation failed: java.security.cert.CertPathValidatorException: \
                 name constraints check failed";
        assert!(
            !ok && text.contains(q) && msg.contains(q),
            "Java: `{text}`; doctor: {msg}"
        );
    }
    // A leaf inside the constraints: clean.
    write_leaf(
        dir,
        &root,
        &int,
        "mqtt.example.com",
        &["mqtt.example.com"],
        None,
    );
    chain_doctor(dir, "root.pem", "mqtt.example.com").expect_clean("inside the constraints");
    assert!(openssl_verify(dir, "root.pem", None).0);
}

#[test]
fn issue_23_an_authority_key_id_that_is_not_the_issuers_fails_only_in_openssl_clients() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let root = Ca::root("Verifiers Root");
    let int = root.intermediate("Verifiers Intermediate", Some(0));
    // The leaf is signed by the intermediate's key, but names another key id as its authority.
    let mut other = int.params.clone();
    other.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![0xAB; 20]);
    let signer = rcgen::Issuer::from_params(&other, &int.key);
    let mut p = CertificateParams::default();
    p.distinguished_name = dn("localhost");
    p.subject_alt_names = vec![SanType::DnsName("localhost".try_into().expect("dns"))];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, &signer).expect("leaf");
    write(dir, "root.pem", &root.pem);
    write(dir, "cert.pem", cert.pem());
    write(dir, "chain.pem", format!("{}{}", cert.pem(), int.pem));
    write(dir, "key.pem", key.serialize_pem());

    let r = chain_doctor(dir, "root.pem", "localhost");
    let f = r.get("verifiers-disagree");
    let msg = f["message"].as_str().expect("m").to_owned();
    assert!(msg.contains("AB:AB:AB"), "names the key id: {msg}");
    assert!(
        msg.contains("Go crypto/x509 and Java link them by name and signature and accept"),
        "{msg}"
    );

    let (ok, text) = openssl_verify(dir, "root.pem", None);
    assert!(!ok, "openssl accepted it: {text}");
    assert!(
        text.contains("unable to get local issuer certificate"),
        "{text}"
    );
    let (ok, text) = python_ssl(dir, "root.pem", "localhost");
    assert!(
        !ok && text.contains("unable to get local issuer certificate"),
        "{text}"
    );
    if let Some((ok, text)) = go_verify(dir, "root.pem", Some("localhost")) {
        assert!(ok, "Go refused (the doctor says it accepts): {text}");
    }
    if let Some((ok, text)) = java_tls(dir, "root.pem", "localhost") {
        assert!(ok, "Java refused (the doctor says it accepts): {text}");
    }
}

#[test]
fn issue_23_a_sha1_signature_fails_in_go_and_python_but_not_in_java_or_a_bare_openssl_verify() {
    use super::fixtures::openssl;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n\
         authorityKeyIdentifier=keyid\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-subj",
            "/CN=SHA1 Root",
            "-days",
            "5",
            "-sha1",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "5",
            "-sha1",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::copy(dir.join("cert.pem"), dir.join("chain.pem")).expect("copy");

    let r = chain_doctor(dir, "root.pem", "localhost");
    r.get("weak-signature");
    let f = r.get("verifiers-disagree");
    let msg = f["message"].as_str().expect("m").to_owned();
    assert!(msg.contains("SHA-1"), "{msg}");

    let (ok, text) = openssl_verify(dir, "root.pem", None);
    assert!(ok && text.contains("OK"), "bare openssl verify: {text}");
    if let Some((ok, text)) = go_verify(dir, "root.pem", Some("localhost")) {
        let q = "x509: cannot verify signature: insecure algorithm SHA1-RSA";
        assert!(
            !ok && text.contains(q) && msg.contains(q),
            "Go: `{text}`; doctor: {msg}"
        );
    }
    // A TLS server that still presents it (security level 0), and the clients.
    let port = crate::support::free_port().to_string();
    let mut server = Command::new("openssl")
        .current_dir(dir)
        .args(["s_server", "-cert", "cert.pem", "-key", "key.pem", "-quiet"])
        .args([
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok()
    });
    let python = Command::new("python3")
        .current_dir(dir)
        .arg(here("verify_ssl.py"))
        .args(["--client", "root.pem", "localhost", &port])
        .output()
        .expect("python3");
    let java = java_classes().map(|c| java_client(c, dir, "root.pem", "localhost", &port));
    let _ = server.kill();
    let _ = server.wait();
    assert!(up, "openssl s_server did not start");
    let text = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    let q = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: CA signature digest \
             algorithm too weak";
    assert!(
        !python.status.success() && text.contains(q) && msg.contains(q),
        "Python: `{text}`"
    );
    if let Some((ok, text)) = java {
        assert!(ok, "Java refused (the doctor says it accepts): {text}");
    }
}
