//! `doctor chain`: one setup per finding code, good sets without false alarms, garbage as findings.

use super::doctor;
use super::fixtures::{self, CHAIN_CODES, Pki, chain_case};
use crate::support;

/// Builds the setup for `code`, runs `doctor chain` on it, and checks the code and the exit status.
fn case(code: &str) -> super::Report {
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = chain_case(code, &tmp.path().join("set"));
    let mut all = vec!["chain".to_owned()];
    all.extend(args);
    let report = doctor(&all, tmp.path());
    let is_error = CHAIN_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, e)| *e)
        .expect("listed code");
    report.expect(code, if is_error { 1 } else { 0 });
    report
}

macro_rules! chain_code {
    ($name:ident, $code:literal) => {
        #[test]
        fn $name() {
            case($code);
        }
    };
}

chain_code!(pem_invalid, "pem-invalid");
chain_code!(private_key_in_cert_file, "private-key-in-cert-file");
chain_code!(chain_order, "chain-order");
chain_code!(self_signed_leaf, "self-signed-leaf");
chain_code!(not_yet_valid, "not-yet-valid");
chain_code!(wrong_purpose, "wrong-purpose");
chain_code!(issuer_not_ca, "issuer-not-ca");
chain_code!(path_length_exceeded, "path-length-exceeded");
chain_code!(duplicate_certificate, "duplicate-certificate");
chain_code!(weak_key, "weak-key");

#[test]
fn every_listed_code_has_a_test() {
    let src = include_str!("chain.rs");
    for (code, _) in CHAIN_CODES {
        assert!(
            src.contains(&format!("\"{code}\")")),
            "no test for chain code {code}"
        );
    }
}

#[test]
fn missing_intermediate_names_the_issuer_its_key_id_and_chain_pem() {
    let r = case("missing-intermediate");
    let f = r.get("missing-intermediate");
    let msg = f["message"].as_str().expect("message");
    let fix = f["fix"].as_str().expect("fix");
    assert!(msg.contains("CN=Fixture Intermediate CA"), "{msg}");
    assert!(msg.contains("key id "), "{msg}");
    assert!(
        msg.contains("unable to get local issuer certificate"),
        "{msg}"
    );
    assert!(msg.contains("CERTIFICATE_VERIFY_FAILED"), "{msg}");
    assert!(fix.contains("chain.pem"), "{fix}");
    assert!(
        f["subject"]
            .as_str()
            .expect("subject")
            .ends_with("cert.pem")
    );
    // The cause is the missing intermediate, not the root (webpki says UnknownIssuer for both).
    assert!(!r.has("untrusted-root"), "{}", r.dump());
}

#[test]
fn missing_intermediate_when_only_the_bundle_supplies_it() {
    // A leaf-only cert file works for clients given the whole bundle, and fails for strict ones.
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(tmp.path());
    let r = doctor(
        &[
            "chain",
            "--cert",
            &pki.path("cert.pem"),
            "--ca",
            &pki.path("ca-bundle.pem"),
        ],
        tmp.path(),
    );
    let f = r.expect("missing-intermediate", 1);
    let msg = f["message"].as_str().expect("message");
    assert!(msg.contains("trust only the root"), "{msg}");
    assert!(!r.has("untrusted-root"), "{}", r.dump());
}

#[test]
fn untrusted_root_is_told_apart_from_a_missing_intermediate() {
    let r = case("untrusted-root");
    let msg = r.get("untrusted-root")["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(
        msg.contains("Fixture Root CA"),
        "names the root the chain needs: {msg}"
    );
    assert!(
        msg.contains("Some Other Root CA"),
        "names what the CA file trusts: {msg}"
    );
    assert!(!r.has("missing-intermediate"), "{}", r.dump());
}

#[test]
fn untrusted_root_when_the_ca_was_recreated_with_the_same_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(tmp.path());
    let again = fixtures::Ca::root("Fixture Root CA");
    let f = pki.write("recreated-root.pem", &again.pem);
    let r = doctor(
        &["chain", "--cert", &pki.path("chain.pem"), "--ca", &f],
        tmp.path(),
    );
    let msg = r.expect("untrusted-root", 1)["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains("different CA with that name"), "{msg}");
    assert!(!r.has("missing-intermediate"));
}

#[test]
fn expired_quotes_openssl() {
    let r = case("expired");
    let msg = r.get("expired")["message"].as_str().expect("m").to_owned();
    assert!(msg.contains("certificate has expired"), "{msg}");
}

#[test]
fn hostname_mismatch_lists_the_names_the_certificate_has() {
    let r = case("hostname-mismatch");
    let msg = r.get("hostname-mismatch")["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(
        msg.contains("`localhost`") && msg.contains("mqtt.example.com"),
        "{msg}"
    );
    assert!(msg.contains("Hostname mismatch"), "{msg}");
}

#[test]
fn key_mismatch_quotes_openssl_and_names_the_key_file() {
    let r = case("key-mismatch");
    let f = r.get("key-mismatch");
    assert!(
        f["message"]
            .as_str()
            .expect("m")
            .contains("key values mismatch")
    );
    assert!(f["subject"].as_str().expect("s").ends_with("other-key.pem"));
}

#[test]
fn signature_invalid_is_not_mistaken_for_a_trust_problem() {
    let r = case("signature-invalid");
    let msg = r.get("signature-invalid")["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains("signature verification failed"), "{msg}");
    assert!(
        !r.has("untrusted-root") && !r.has("missing-intermediate"),
        "{}",
        r.dump()
    );
}

#[test]
fn root_in_chain_is_information_only() {
    let r = case("root-in-chain");
    assert_eq!(r.get("root-in-chain")["severity"], "info");
    assert!(r.errors().is_empty(), "{}", r.dump());
}

#[test]
fn a_chain_with_the_intermediate_twice_is_a_warning() {
    let r = case("duplicate-certificate");
    assert_eq!(r.get("duplicate-certificate")["severity"], "warning");
}

#[test]
fn good_rcgen_set_reports_no_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["chain".to_owned()];
    args.extend(chain_case("good", &tmp.path().join("set")));
    let r = doctor(&args, tmp.path());
    r.expect_clean("good rcgen set");
    r.expect("chain-ok", 0);
    // ca-bundle.pem as the CA file is fine too when the chain is presented.
    let bundle = tmp.path().join("set/ca-bundle.pem").display().to_string();
    let chain = tmp.path().join("set/chain.pem").display().to_string();
    doctor(
        &[
            "chain",
            "--cert",
            &chain,
            "--ca",
            &bundle,
            "--purpose",
            "server",
        ],
        tmp.path(),
    )
    .expect_clean("chain.pem against ca-bundle.pem");
}

#[test]
fn good_castellan_set_reports_no_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    support::ok(&["init", "--data-dir", "d"], dir);
    support::ok(
        &[
            "pki",
            "issue",
            "--profile",
            "server",
            "--cn",
            "broker",
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--out",
            "set",
            "--data-dir",
            "d",
        ],
        dir,
    );
    for ca in ["set/root.pem", "set/ca-bundle.pem"] {
        doctor(
            &[
                "chain",
                "--cert",
                "set/chain.pem",
                "--key",
                "set/key.pem",
                "--ca",
                ca,
                "--host",
                "localhost",
            ],
            dir,
        )
        .expect_clean(&format!("Castellan set against {ca}"));
    }
    doctor(
        &[
            "chain",
            "--cert",
            "set/chain.pem",
            "--ca",
            "set/root.pem",
            "--host",
            "127.0.0.1",
        ],
        dir,
    )
    .expect_clean("Castellan set for its IP SAN");
    support::ok(
        &[
            "pki",
            "issue",
            "--profile",
            "client",
            "--cn",
            "device-7",
            "--out",
            "client",
            "--data-dir",
            "d",
        ],
        dir,
    );
    doctor(
        &[
            "chain",
            "--cert",
            "client/chain.pem",
            "--key",
            "client/key.pem",
            "--ca",
            "client/root.pem",
            "--purpose",
            "client",
        ],
        dir,
    )
    .expect_clean("Castellan client set");
    // The bare doctor on the store: key ring loads, CA chain sound.
    let r = doctor(&["--data-dir", "d"], dir);
    r.expect_clean("bare doctor on a fresh store");
    r.expect("keyring-ok", 0);
}

#[test]
fn good_openssl_set_reports_no_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ossl");
    fixtures::openssl_set(&dir);
    let r = doctor(
        &[
            "chain",
            "--cert",
            "chain.pem",
            "--key",
            "key.pem",
            "--ca",
            "root.pem",
            "--host",
            "localhost",
        ],
        &dir,
    );
    r.expect_clean("openssl-made set");
    // And OpenSSL agrees with the doctor about cert.pem alone.
    let r = doctor(&["chain", "--cert", "cert.pem", "--ca", "root.pem"], &dir);
    r.expect("missing-intermediate", 1);
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", "root.pem", "cert.pem"])
        .current_dir(&dir)
        .output()
        .expect("openssl verify");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unable to get local issuer certificate")
            || String::from_utf8_lossy(&out.stderr)
                .contains("unable to get local issuer certificate"),
        "the string the doctor quotes is the one OpenSSL prints"
    );
}

#[test]
fn garbage_cert_files_are_findings_not_crashes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(&tmp.path().join("set"));
    for (what, path) in fixtures::garbage_cases(tmp.path(), &pki) {
        let r = doctor(
            &["chain", "--cert", &path, "--ca", &pki.path("root.pem")],
            tmp.path(),
        );
        let f = r.expect("pem-invalid", 1);
        assert_eq!(f["subject"], path.as_str(), "{what}");
        if what == "der" {
            assert!(
                f["message"].as_str().expect("m").contains("DER"),
                "{what}: {f}"
            );
        }
        // Garbage as the CA file and as the key file is judged the same way.
        let r = doctor(
            &[
                "chain",
                "--cert",
                &pki.path("chain.pem"),
                "--ca",
                &path,
                "--key",
                &path,
            ],
            tmp.path(),
        );
        assert_eq!(r.status, 1, "{what}: {}", r.dump());
        assert!(r.has("pem-invalid"), "{what}: {}", r.dump());
    }
    // Missing and unreadable inputs.
    let r = doctor(&["chain", "--cert", "nowhere.pem"], tmp.path());
    r.expect("file-missing", 1);
    let r = doctor(&["chain", "--cert", "set"], tmp.path());
    r.expect("not-readable", 1);
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = support::run(&["doctor", "chain"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let out = support::run(&["doctor", "tls", "no-port-here"], tmp.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = support::run(
        &["doctor", "chain", "--cert", "x", "--purpose", "mail"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn human_output_has_one_line_per_finding_and_an_indented_fix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = chain_case("missing-intermediate", &tmp.path().join("set"));
    let mut all = vec!["doctor".to_owned(), "chain".to_owned()];
    all.extend(args);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = support::run(&refs, tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let first = lines.next().expect("a line");
    assert!(
        first.starts_with("error   missing-intermediate  "),
        "{text}"
    );
    assert!(
        lines.next().expect("fix").starts_with("        fix: "),
        "{text}"
    );
}
