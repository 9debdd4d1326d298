//! `castellan keys change-master-key`: every data key re-wrapped under the new master key at once; the
//! store then opens with the new key only, and everything sealed before (signing keys, the CA key,
//! secrets) still opens.

use std::path::Path;

use crate::support::*;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_master_key_changes_at_once_and_everything_sealed_still_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let old = master_key_file(d, "old.key");
    let new = master_key_file(d, "new.key");
    let (old, new) = (old.to_str().expect("p"), new.to_str().expect("p"));
    let with = |key: &str, args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--data-dir", "d", "--master-key-file", key].map(String::from));
        v
    };
    let run_with = |key: &str, args: &[&str], d: &Path| {
        let v = with(key, args);
        run(&v.iter().map(String::as_str).collect::<Vec<_>>(), d)
    };

    let out = run_with(old, &["init", "--alg", "ES256"], d);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(d.join("value"), "sealed-before-the-change").expect("value");
    let out = run_with(old, &["secret", "put", "app/db", "--file", "value"], d);
    assert!(out.status.success(), "{}", text(&out));
    let server = Server::start(
        &with(old, &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        d,
    );
    let kids_before = jwks_kids(&server.url);
    drop(server);

    // The same key, or a wrong current key: refused, nothing changed.
    let out = run_with(
        old,
        &["keys", "change-master-key", "--new-master-key-file", old],
        d,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is the current one"), "{}", text(&out));
    let out = run_with(
        new,
        &["keys", "change-master-key", "--new-master-key-file", old],
        d,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("master key does not match"),
        "{}",
        text(&out)
    );

    let out = run_with(
        old,
        &["keys", "change-master-key", "--new-master-key-file", new],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("re-wrapped 1 data key"),
        "{}",
        text(&out)
    );

    // The old key no longer opens the store: serve refuses to start and says why.
    let out = run_with(old, &["serve", "--listen", "127.0.0.1:0"], d);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("master key does not match"),
        "{}",
        text(&out)
    );
    let out = run_with(old, &["secret", "get", "app/db"], d);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // The new key opens everything sealed before the change: the token signing key (same kids, a
    // token is issued), the CA key (a certificate is issued), and the secret.
    let server = Server::start(
        &with(new, &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        d,
    );
    assert_eq!(jwks_kids(&server.url), kids_before);
    let cred = std::fs::read_to_string(d.join("d/admin-credential.json")).expect("credential");
    let (id, secret) = credential(&cred);
    assert!(!token(&server.url, &id, &secret).is_empty());
    let out = run_with(new, &["secret", "get", "app/db"], d);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout, b"sealed-before-the-change");
    let out = run_with(
        new,
        &[
            "pki",
            "issue",
            "--profile",
            "server",
            "--dns",
            "svc.internal",
            "--out",
            "certs",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.join("certs/key.pem").exists());
}
