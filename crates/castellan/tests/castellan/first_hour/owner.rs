//! Item 5: `pki issue --owner USER[:GROUP] --mode`, names in `dev up`'s `owner`, the starter says
//! when a broker runs as its own user, and "re-owned" is said. Run as root (the tests give files to
//! the system's `daemon` user, uid 1, and read them back as that user with setpriv).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::support::*;

fn root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `cat FILE` as the `daemon` user: what a broker that dropped to its own user can read.
fn daemon_can_read(file: &Path) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=daemon", "--regid=daemon", "--clear-groups", "cat"])
        .arg(file)
        .output()
        .expect("setpriv")
        .status
        .success()
}

#[test]
fn pki_issue_gives_the_files_to_a_named_owner_with_the_key_mode_asked() {
    if !root() {
        eprintln!("skipped: giving files to another user needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(&["init"], d);
    let args = [
        "pki",
        "issue",
        "--profile",
        "server",
        "--dns",
        "localhost",
        "--out",
        "broker",
    ];
    // A root-owned 0600 key: the broker's user cannot read it (the first thing a new user hits).
    ok(&args, d);
    assert!(!daemon_can_read(&d.join("broker/key.pem")));

    let out = run(
        &[&args[..], &["--owner", "daemon:daemon", "--mode", "0640"]].concat(),
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("re-owned the files in broker to daemon:daemon (uid 1, gid 1)"),
        "{stderr}"
    );
    let key = d.join("broker/key.pem");
    let meta = std::fs::metadata(&key).expect("key");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.permissions().mode() & 0o777),
        (1, 1, 0o640)
    );
    for f in ["cert.pem", "chain.pem", "ca-bundle.pem", "root.pem"] {
        assert_eq!(
            std::fs::metadata(d.join("broker").join(f)).expect(f).uid(),
            1,
            "{f}"
        );
    }
    assert!(daemon_can_read(&key), "the named user reads its key");

    // An unknown user is named before anything is issued.
    let before = std::fs::read(&key).expect("key");
    let out = run(&[&args[..], &["--owner", "no-such-user-xyz"]].concat(), d);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--owner") && stderr.contains("no user `no-such-user-xyz`"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&key).expect("key"), before, "nothing written");
    let out = run(
        &[&args[..], &["--owner", "daemon", "--mode", "999"]].concat(),
        d,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mode"));
}

#[test]
fn dev_up_s_starter_shows_owner_and_a_named_owner_is_applied_and_said() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let addr = format!("127.0.0.1:{}", free_port());
    // The starter, written on the first run, tells about brokers that drop to their own user.
    let up = ok(&["dev", "up", "--listen", &addr], d);
    ok(&["dev", "down"], d);
    let starter = std::fs::read_to_string(d.join("castellan-dev.toml")).expect("starter");
    assert!(
        starter.contains("# owner = \"mosquitto:mosquitto\""),
        "{starter}"
    );
    assert!(
        starter.contains("drops to the `mosquitto` user"),
        "{starter}"
    );
    assert!(
        !up.contains("re-owned"),
        "nothing re-owned without an owner: {up}"
    );
    if !root() {
        eprintln!("skipped the re-owning half: it needs root");
        return;
    }
    let cfg = starter.replace(
        "# owner = \"mosquitto:mosquitto\"",
        "owner = \"daemon:daemon\"",
    );
    std::fs::write(d.join("castellan-dev.toml"), cfg).expect("config");
    std::fs::remove_dir_all(d.join("certs")).expect("fresh certificates");
    let up = ok(&["dev", "up", "--listen", &addr], d);
    ok(&["dev", "down"], d);
    assert!(
        up.contains("broker: files re-owned to daemon:daemon (uid 1, gid 1)"),
        "{up}"
    );
    assert!(!up.contains("app: files re-owned"), "{up}");
    let key = d.join("certs/broker/key.pem");
    assert_eq!(std::fs::metadata(&key).expect("key").uid(), 1);
    assert!(daemon_can_read(&key));
    assert_eq!(
        std::fs::metadata(d.join("certs/app/key.pem"))
            .expect("app key")
            .uid(),
        0
    );
}
