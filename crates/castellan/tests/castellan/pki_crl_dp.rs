//! Issue 3: with `public_url` configured, issued certificates carry a CRL distribution point that
//! names the server's CRL; without it they carry none.

use std::process::Command;

use crate::support::ok;

fn text(dir: &std::path::Path, cert: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-in", cert, "-noout", "-text"])
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn crl_distribution_point_follows_public_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init", "--data-dir", "d"], d);
    std::fs::write(
        d.join("c.toml"),
        "public_url = \"https://ca.example.test\"\n",
    )
    .expect("config");
    ok(
        &[
            "pki",
            "issue",
            "--config",
            "c.toml",
            "--data-dir",
            "d",
            "--profile",
            "server",
            "--dns",
            "a.test",
            "--out",
            "with",
        ],
        d,
    );
    let t = text(d, "with/cert.pem");
    assert!(
        t.contains("CRL Distribution Points")
            && t.contains("URI:https://ca.example.test/v1/pki/crl"),
        "{t}"
    );
    ok(
        &[
            "pki",
            "issue",
            "--data-dir",
            "d",
            "--profile",
            "server",
            "--dns",
            "a.test",
            "--out",
            "without",
        ],
        d,
    );
    assert!(!text(d, "without/cert.pem").contains("CRL Distribution Points"));
}
