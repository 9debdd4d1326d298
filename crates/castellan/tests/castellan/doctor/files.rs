//! `doctor files`: what a service user can reach and read, judged from modes and owners.
//!
//! The user judged is given with --uid/--gid, so the tests need no second account: as root they chown
//! the fixtures to made-up uids; as anyone else they judge a made-up uid against files they own.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::doctor;
use super::fixtures::Pki;

/// The uid that owns files the tests create, and a different uid to judge them for.
fn ids(dir: &Path) -> (u32, u32) {
    let me = std::fs::metadata(dir).expect("stat").uid();
    let service = if me == 0 { 4242 } else { me + 1 };
    (me, service)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(path: &Path, uid: u32, gid: u32) -> bool {
    std::process::Command::new("chown")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// A set in `dir/tls` readable by the service user: dir 0755, cert 0644, key 0600 owned by it (or,
/// when the tests cannot chown, 0644 for the cert and the key owned by us).
fn service_set(dir: &Path, service: u32) -> Pki {
    let tls = dir.join("tls");
    let pki = Pki::new(&tls);
    chmod(&tls, 0o755);
    chmod(&tls.join("chain.pem"), 0o644);
    chmod(&tls.join("key.pem"), 0o600);
    chown(&tls.join("key.pem"), service, service);
    pki
}

fn as_service(service: u32) -> Vec<String> {
    vec![
        "--uid".to_owned(),
        service.to_string(),
        "--gid".to_owned(),
        service.to_string(),
    ]
}

fn files_args(paths: &[&str], extra: &[String]) -> Vec<String> {
    let mut v = vec!["files".to_owned()];
    v.extend(paths.iter().map(|p| (*p).to_owned()));
    v.extend(extra.iter().cloned());
    v
}

#[test]
fn a_readable_layout_reports_no_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    let (me, service) = ids(tmp.path());
    if me != 0 {
        eprintln!("a_readable_layout_reports_no_problem: needs root to chown the key; skipped");
        assert!(
            !super::under_ci() || me == 0,
            "run the doctor tests as root under CI"
        );
        return;
    }
    let pki = service_set(tmp.path(), service);
    let r = doctor(
        &files_args(
            &[&pki.path("chain.pem"), &pki.path("key.pem")],
            &as_service(service),
        ),
        tmp.path(),
    );
    r.expect_clean("readable layout");
    r.expect("file-ok", 0);
}

#[test]
fn file_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = doctor(&files_args(&["tls/nope.pem"], &[]), tmp.path());
    let f = r.expect("file-missing", 1);
    assert!(
        f["message"]
            .as_str()
            .expect("m")
            .contains("No such file or directory")
    );
}

#[test]
fn not_readable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    let (me, service) = ids(tmp.path());
    let pki = Pki::new(&tmp.path().join("tls"));
    chmod(&tmp.path().join("tls"), 0o755);
    // The key stays with its creator, mode 0600: the service user cannot read it.
    chmod(&tmp.path().join("tls/key.pem"), 0o600);
    let r = doctor(
        &files_args(&[&pki.path("key.pem")], &as_service(service)),
        tmp.path(),
    );
    let f = r.expect("not-readable", 1);
    let msg = f["message"].as_str().expect("m");
    assert!(msg.contains("permission denied"), "{msg}");
    assert!(msg.contains(&format!("uid {me}")), "names the owner: {msg}");
    assert!(
        f["fix"]
            .as_str()
            .expect("f")
            .contains(&format!("chown {service}"))
    );
}

#[test]
fn dir_not_searchable_after_chmod_644_star() {
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    let (_, service) = ids(tmp.path());
    let pki = Pki::new(&tmp.path().join("etc/broker/certs"));
    for p in ["etc", "etc/broker", "etc/broker/certs"] {
        chmod(&tmp.path().join(p), 0o755);
    }
    // `chmod 644 broker/*` turned the certs directory into drw-r--r--.
    chmod(&tmp.path().join("etc/broker/certs"), 0o644);
    chmod(&tmp.path().join("etc/broker/certs/chain.pem"), 0o644);
    let r = doctor(
        &files_args(
            &[&pki.path("chain.pem"), &pki.path("root.pem")],
            &as_service(service),
        ),
        tmp.path(),
    );
    let f = r.expect("dir-not-searchable", 1);
    let certs_dir = tmp.path().join("etc/broker/certs").display().to_string();
    assert_eq!(f["subject"], certs_dir.as_str());
    assert!(f["fix"].as_str().expect("f").contains("+x"));
    assert!(
        f["message"]
            .as_str()
            .expect("m")
            .contains("permission denied")
    );
    // One finding for the directory, though two files sit below it.
    assert_eq!(
        r.codes()
            .iter()
            .filter(|c| *c == "dir-not-searchable")
            .count(),
        1
    );
}

#[test]
fn key_too_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    let pki = Pki::new(&tmp.path().join("tls"));
    chmod(&tmp.path().join("tls"), 0o755);
    chmod(&tmp.path().join("tls/key.pem"), 0o644);
    let r = doctor(&files_args(&[&pki.path("key.pem")], &[]), tmp.path());
    let f = r.expect("key-too-open", 1);
    assert_eq!(f["severity"], "error");
    assert!(f["fix"].as_str().expect("f").contains("chmod 600"));
    // Group-readable is a warning; the certificate itself (0644) is fine.
    chmod(&tmp.path().join("tls/key.pem"), 0o640);
    let r = doctor(
        &files_args(&[&pki.path("key.pem"), &pki.path("chain.pem")], &[]),
        tmp.path(),
    );
    assert_eq!(r.expect("key-too-open", 0)["severity"], "warning");
    assert_eq!(r.codes().iter().filter(|c| *c == "key-too-open").count(), 1);
}

#[test]
fn wrong_owner() {
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    let (me, service) = ids(tmp.path());
    let pki = Pki::new(&tmp.path().join("tls"));
    chmod(&tmp.path().join("tls"), 0o755);
    chmod(&tmp.path().join("tls/chain.pem"), 0o644);
    if me == 0 {
        // Owned by some third account rather than the service user or root.
        assert!(chown(&tmp.path().join("tls/chain.pem"), 5151, 5151));
    }
    let r = doctor(
        &files_args(&[&pki.path("chain.pem")], &as_service(service)),
        tmp.path(),
    );
    let f = r.expect("wrong-owner", 0);
    assert!(
        f["fix"]
            .as_str()
            .expect("f")
            .contains(&format!("chown {service}"))
    );
}

/// Runs `setfacl`; `false` when it is not installed (outside CI; `.ci/run` installs it).
fn setfacl(args: &[&str]) -> bool {
    match std::process::Command::new("setfacl").args(args).status() {
        Ok(s) => {
            assert!(s.success(), "setfacl {args:?} failed");
            true
        }
        Err(_) => {
            assert!(
                !super::under_ci(),
                "setfacl (Debian package acl) is required under CI"
            );
            false
        }
    }
}

/// Whether the kernel lets `uid` (group `uid`, no other groups) read `path`: `setpriv … cat` as that
/// user. `None` unless the tests run as root.
fn kernel_reads(path: &str, uid: u32) -> Option<bool> {
    let id = uid.to_string();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &id,
            "--regid",
            &id,
            "--clear-groups",
            "cat",
            path,
        ])
        .output()
        .ok()?;
    let denied = String::from_utf8_lossy(&out.stderr).contains("Permission denied");
    (out.status.success() || denied).then_some(out.status.success())
}

/// The doctor's verdict on `path` for `uid` must be the kernel's, where the kernel can be asked.
fn agrees_with_kernel(r: &super::Report, path: &str, uid: u32) {
    if let Some(reads) = kernel_reads(path, uid) {
        let doctor_reads = r.has("file-ok");
        assert_eq!(
            doctor_reads,
            reads,
            "the kernel {} uid {uid} read {path}; the doctor said:\n{}",
            if reads { "lets" } else { "does not let" },
            r.dump()
        );
    }
}

#[test]
fn an_acl_decides_who_reads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    let (me, service) = ids(tmp.path());
    let pki = Pki::new(&tmp.path().join("tls"));
    let (tls, chain, key) = (
        tmp.path().join("tls"),
        pki.path("chain.pem"),
        pki.path("key.pem"),
    );
    chmod(&tls, 0o755);
    chmod(Path::new(&chain), 0o644);
    chmod(Path::new(&key), 0o600);
    // 0644 says everyone reads the chain; an ACL entry for the service user says no.
    if !setfacl(&["-m", &format!("u:{service}:---"), &chain]) {
        eprintln!("an_acl_decides_who_reads: setfacl is not installed; skipped");
        return;
    }
    let r = doctor(&files_args(&[&chain], &as_service(service)), tmp.path());
    agrees_with_kernel(&r, &chain, service);
    let f = r.expect("not-readable", 1);
    let msg = f["message"].as_str().expect("m");
    assert!(
        msg.contains(&format!("user:{service}:---")),
        "names the entry: {msg}"
    );
    assert!(
        f["fix"]
            .as_str()
            .expect("f")
            .contains(&format!("setfacl -m u:{service}:r {chain}")),
        "{}",
        r.dump()
    );
    // Following the fix makes it readable.
    setfacl(&["-m", &format!("u:{service}:r"), &chain]);
    let r = doctor(&files_args(&[&chain], &as_service(service)), tmp.path());
    agrees_with_kernel(&r, &chain, service);
    if me == 0 {
        r.expect_clean("the ACL now grants read");
    } else {
        // Files we own are not the service's: only the owner warning may remain.
        assert!(r.has("file-ok") && r.errors().is_empty(), "{}", r.dump());
    }
    // The key is 0600 and not the service's: an ACL entry lets the service read it, and the doctor
    // says so, as sharing a key (a warning), not as a failure.
    setfacl(&["-m", &format!("u:{service}:r"), &key]);
    let r = doctor(&files_args(&[&key], &as_service(service)), tmp.path());
    agrees_with_kernel(&r, &key, service);
    assert!(r.has("file-ok"), "{}", r.dump());
    let w = r.expect("key-too-open", 0);
    assert_eq!(w["severity"], "warning");
    assert!(
        w["message"]
            .as_str()
            .expect("m")
            .contains(&format!("user:{service}:r--")),
        "{}",
        r.dump()
    );
    // The directory: an ACL entry gives the service r but not x, so it cannot be entered.
    setfacl(&[
        "-m",
        &format!("u:{service}:r"),
        tls.to_str().expect("utf-8"),
    ]);
    let r = doctor(&files_args(&[&chain], &as_service(service)), tmp.path());
    agrees_with_kernel(&r, &chain, service);
    let f = r.expect("dir-not-searchable", 1);
    assert!(
        f["fix"]
            .as_str()
            .expect("f")
            .contains(&format!("setfacl -m u:{service}:x")),
        "{}",
        r.dump()
    );
}

/// The id `getent DATABASE NAME` gives (an independent resolver: NSS), if any.
fn getent_id(database: &str, name: &str) -> Option<u32> {
    let out = std::process::Command::new("getent")
        .args([database, name])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|s| s.trim().parse().ok())
}

#[test]
fn issue_23_user_and_group_by_name() {
    let (Some(nobody), Some(nogroup)) =
        (getent_id("passwd", "nobody"), getent_id("group", "nogroup"))
    else {
        assert!(!super::under_ci(), "no nobody/nogroup accounts");
        eprintln!("skipped: no nobody/nogroup accounts");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    let pki = Pki::new(&tmp.path().join("tls"));
    chmod(&tmp.path().join("tls"), 0o755);
    let cert = pki.path("chain.pem");
    chmod(Path::new(&cert), 0o640);
    if !chown(Path::new(&cert), 0, nogroup) {
        assert!(!super::under_ci(), "cannot chown as root");
        eprintln!("skipped: cannot chown");
        return;
    }
    // Group nogroup may read the 0640 file; the names resolve to the numbers getent gives.
    let by_name = doctor(
        &files_args(
            &[&cert],
            &[
                "--user".into(),
                "nobody".into(),
                "--group".into(),
                "nogroup".into(),
            ],
        ),
        tmp.path(),
    );
    assert_eq!(by_name.status, 0, "{}", by_name.dump());
    assert!(!by_name.has("not-readable"), "{}", by_name.dump());
    // --user alone takes the user's primary group from /etc/passwd (nogroup for nobody on Debian).
    let by_number = doctor(&files_args(&[&cert], &as_service(nobody)), tmp.path());
    assert_eq!(by_number.codes(), by_name.codes(), "{}", by_number.dump());
    // In group root, nobody cannot read it, and the message names the user.
    let r = doctor(
        &files_args(
            &[&cert],
            &[
                "--user".into(),
                "nobody".into(),
                "--group".into(),
                "root".into(),
            ],
        ),
        tmp.path(),
    );
    let msg = r.expect("not-readable", 1)["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains(&format!("uid {nobody} (nobody)")), "{msg}");
    // An unknown name: the doctor cannot run, and says why.
    let r = doctor(
        &files_args(&[&cert], &["--user".into(), "no-such-user-23".into()]),
        tmp.path(),
    );
    assert_eq!(r.status, 2);
    assert!(
        r.stderr.contains("there is no user `no-such-user-23`"),
        "{}",
        r.stderr
    );
    let r = doctor(
        &files_args(&[&cert], &["--group".into(), "no-such-group-23".into()]),
        tmp.path(),
    );
    assert_eq!(r.status, 2);
    assert!(
        r.stderr.contains("there is no group `no-such-group-23`"),
        "{}",
        r.stderr
    );
}
