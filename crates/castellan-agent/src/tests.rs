//! The agent's passes against a backend of secrets held in memory, and the files they leave.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

use castellan_files::SetWriteError;

use super::*;
use crate::agent::changed;
use crate::disk::{Existing, write_error};

/// Secrets from a map; no PKI (these tests declare no certificate).
#[derive(Default)]
struct Fake {
    secrets: Mutex<HashMap<String, (i64, Vec<u8>)>>,
    fail: Mutex<Option<String>>,
}

impl Fake {
    fn put(&self, name: &str, value: &[u8]) {
        let mut m = self.secrets.lock().expect("lock");
        let v = m.get(name).map_or(1, |(v, _)| v + 1);
        m.insert(name.to_owned(), (v, value.to_vec()));
    }
}

impl Backend for Fake {
    async fn ca_bundle(&self) -> Result<String, AgentError> {
        Err(AgentError::Server("no PKI in this test".into()))
    }
    async fn sign(&self, _: &str, _: &str, _: &IssueRequest) -> Result<SetJson, AgentError> {
        Err(AgentError::Server("no PKI in this test".into()))
    }
    async fn issue(&self, _: &str, _: &IssueRequest) -> Result<SetJson, AgentError> {
        Err(AgentError::Server("no PKI in this test".into()))
    }
    async fn secret(&self, name: &str) -> Result<Option<FetchedSecret>, AgentError> {
        if let Some(e) = self.fail.lock().expect("lock").clone() {
            return Err(AgentError::Server(e));
        }
        Ok(self
            .secrets
            .lock()
            .expect("lock")
            .get(name)
            .map(|(version, v)| FetchedSecret {
                version: *version,
                value: SecretValue::new(zeroize::Zeroizing::new(v.clone())),
            }))
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777
}

fn config(d: &Path, secrets: &str) -> AgentConfig {
    let text = format!(
        "server = \"http://127.0.0.1:1\"\ncredential_file = \"x.json\"\nstatus_file = \"{}\"\nsecret_check_interval = \"45s\"\n{secrets}",
        d.join("status.json").display()
    );
    AgentConfig::from_toml("agent.toml", &text).expect("config")
}

const VALUE: &[u8] = b"\x00s3cr3t-\xffvalue";

#[tokio::test]
async fn secrets_are_written_exactly_once_per_change_and_reloaded_once_per_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let existing = d.join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let log = d.join("reloads.log");
    let reload = format!("echo reload >> {}", log.display());
    let cfg = config(
        d,
        &format!(
            "[[secret]]\nname = \"a/pw\"\npath = \"{0}/existing/pw\"\nmode = \"0640\"\nreload = \"{reload}\"\n\
             [[secret]]\nname = \"b\"\npath = \"{0}/new/dir/b\"\nreload = \"{reload}\"\n",
            d.display()
        ),
    );
    let fake = Fake::default();
    fake.put("a/pw", VALUE);
    fake.put("b", b"bee");
    let agent = Agent::new(cfg, fake);
    let reloads = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };

    let r = agent.pass(100).await;
    assert!(
        r.certificates.is_empty(),
        "no CA fetch without certificates"
    );
    assert_eq!(
        r.secrets
            .iter()
            .map(|(n, r)| (n.as_str(), r.as_ref().ok().cloned()))
            .collect::<Vec<_>>(),
        [
            ("a/pw", Some(SecretDelivery::Written { version: 1 })),
            ("b", Some(SecretDelivery::Written { version: 1 }))
        ]
    );
    let pw = existing.join("pw");
    assert_eq!(std::fs::read(&pw).expect("read"), VALUE);
    assert_eq!(mode(&pw), 0o640);
    assert_eq!(
        mode(&existing),
        0o750,
        "an existing directory is never changed"
    );
    assert_eq!(
        mode(&d.join("new/dir")),
        0o755,
        "a missing one is created 0755"
    );
    assert_eq!(mode(&d.join("new/dir/b")), 0o600, "the default mode");
    assert_eq!(reloads(), 1, "one shared command runs once per pass");

    // Nothing changed: no write (same inode), no reload; a wrong mode is put right.
    let inode = std::fs::metadata(&pw).expect("meta").ino();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let r = agent.pass(200).await;
    assert!(
        r.secrets
            .iter()
            .all(|(_, r)| matches!(r, Ok(SecretDelivery::Unchanged { version: 1 }))),
        "{r:?}"
    );
    assert_eq!(std::fs::metadata(&pw).expect("meta").ino(), inode);
    assert_eq!(mode(&pw), 0o640);
    assert_eq!(reloads(), 1);

    // A new version of one secret: that file is rewritten and the command runs once more.
    agent.backend.put("a/pw", b"second");
    let r = agent.pass(300).await;
    assert!(matches!(
        r.secrets[0].1,
        Ok(SecretDelivery::Written { version: 2 })
    ));
    assert!(matches!(
        r.secrets[1].1,
        Ok(SecretDelivery::Unchanged { version: 1 })
    ));
    assert_eq!(std::fs::read(&pw).expect("read"), b"second");
    assert_eq!(mode(&pw), 0o640);
    assert_eq!(reloads(), 2);

    // A file changed on disk behind the agent's back (same size too) is put back.
    std::fs::write(&pw, b"SECOND").expect("tamper");
    let r = agent.pass(400).await;
    assert!(matches!(
        r.secrets[0].1,
        Ok(SecretDelivery::Written { version: 2 })
    ));
    assert_eq!(std::fs::read(&pw).expect("read"), b"second");

    let st = agent.status();
    let st = st.lock().expect("lock");
    let a = &st.secrets["a/pw"];
    assert_eq!(
        (a.version, a.last_success, a.written, a.consecutive_failures),
        (Some(2), Some(400), 3, 0)
    );
    assert_eq!(a.path.as_deref(), Some(pw.to_str().expect("utf-8")));
    assert_eq!(st.secrets["b"].written, 1);
}

#[tokio::test]
async fn a_missing_or_failing_secret_leaves_its_file_and_the_others_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let cfg = config(
        d,
        &format!(
            "[[secret]]\nname = \"gone\"\npath = \"{0}/gone\"\nreload = \"touch {0}/reloaded\"\n\
             [[secret]]\nname = \"here\"\npath = \"{0}/here\"\n",
            d.display()
        ),
    );
    std::fs::write(d.join("gone"), b"old contents").expect("old file");
    std::fs::set_permissions(d.join("gone"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let fake = Fake::default();
    fake.put("here", VALUE);
    let agent = Agent::new(cfg, fake);
    let r = agent.pass(100).await;
    assert!(!r.all_ok());
    let err = r.secrets[0].1.as_ref().expect_err("missing").to_string();
    assert!(
        err.contains("secret `gone` does not exist on the server"),
        "{err}"
    );
    assert!(matches!(
        r.secrets[1].1,
        Ok(SecretDelivery::Written { version: 1 })
    ));
    assert_eq!(
        std::fs::read(d.join("gone")).expect("read"),
        b"old contents"
    );
    assert_eq!(mode(&d.join("gone")), 0o644, "not even its mode is touched");
    assert!(!d.join("reloaded").exists(), "no reload for a failed entry");
    assert_eq!(std::fs::read(d.join("here")).expect("read"), VALUE);

    // The status file names the failure; no value appears in it.
    let text = std::fs::read(d.join("status.json")).expect("status file");
    let st: serde_json::Value = serde_json::from_slice(&text).expect("json");
    assert_eq!(st["secrets"]["gone"]["consecutive_failures"], 1);
    assert!(
        st["secrets"]["gone"]["last_error"]
            .as_str()
            .expect("error")
            .contains("does not exist")
    );
    assert_eq!(st["secrets"]["here"]["version"], 1);
    assert!(st["secrets"]["here"]["last_error"].is_null());
    assert!(
        !text.windows(VALUE.len()).any(|w| w == VALUE)
            && !String::from_utf8_lossy(&text).contains("s3cr3t"),
        "no value in the status file"
    );

    // Failing secrets make the next pass come soon (back-off), then every secret_check_interval.
    assert!(agent.next_wake(100) <= Duration::from_secs(1));
    agent.backend.put("gone", b"back");
    let r = agent.pass(200).await;
    assert!(r.all_ok(), "{r:?}");
    assert_eq!(std::fs::read(d.join("gone")).expect("read"), b"back");
    assert_eq!(mode(&d.join("gone")), 0o600);
    assert!(d.join("reloaded").exists());
    assert_eq!(agent.next_wake(200), Duration::from_secs(45));

    // A server error is that entry's error too, and the files stay.
    *agent.backend.fail.lock().expect("lock") = Some("server down".into());
    let r = agent.pass(300).await;
    assert!(r.secrets.iter().all(|(_, r)| r.is_err()));
    assert_eq!(std::fs::read(d.join("here")).expect("read"), VALUE);
    let st = agent.status();
    let st = st.lock().expect("lock");
    assert_eq!(st.secrets["here"].consecutive_failures, 1);
    assert_eq!(
        st.secrets["here"].version,
        Some(1),
        "the version the file holds"
    );
    assert_eq!(st.secrets["gone"].consecutive_failures, 1);
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test]
async fn a_symlink_in_place_of_a_file_is_replaced_and_what_it_points_to_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // What a user who may write the directory plants: a link to a file (say /etc/shadow) that
    // even holds the right bytes.
    let target = d.join("target");
    std::fs::write(&target, VALUE).expect("target");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o604)).expect("chmod");
    let pw = d.join("pw");
    std::os::unix::fs::symlink(&target, &pw).expect("symlink");
    let cfg = config(
        d,
        &format!(
            "[[secret]]\nname = \"pw\"\npath = \"{}\"\nmode = \"0640\"\n",
            pw.display()
        ),
    );
    let fake = Fake::default();
    fake.put("pw", VALUE);
    let agent = Agent::new(cfg, fake);
    let r = agent.pass(100).await;
    assert!(
        matches!(r.secrets[0].1, Ok(SecretDelivery::Written { version: 1 })),
        "{r:?}"
    );
    assert!(std::fs::symlink_metadata(&pw).expect("meta").is_file());
    assert_eq!(mode(&pw), 0o640);
    assert_eq!(mode(&target), 0o604, "the link's target keeps its mode");
    assert_eq!(std::fs::read(&target).expect("read"), VALUE);
}

#[test]
fn only_a_regular_file_with_one_link_and_at_most_1_mib_is_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("file"), b"pem").expect("file");
    let f = Existing::open(&d.join("file")).expect("a regular file");
    assert_eq!(f.read().expect("read").as_slice(), b"pem");
    std::os::unix::fs::symlink(d.join("file"), d.join("link")).expect("symlink");
    let fifo = d.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    std::fs::write(d.join("big"), vec![b'x'; (MAX_FILE_BYTES + 1) as usize]).expect("big");
    std::fs::write(d.join("one"), b"pem").expect("file");
    std::fs::hard_link(d.join("one"), d.join("two")).expect("hard link");
    for name in ["link", "fifo", "big", "two", "missing", "."] {
        // The FIFO has no writer: a blocking open would never return.
        assert!(Existing::open(&d.join(name)).is_err(), "{name}");
    }
}

#[tokio::test]
async fn a_failed_reload_runs_again_on_the_next_pass_until_it_succeeds_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (marker, log) = (d.join("marker"), d.join("reloads.log"));
    // Fails the first time (and leaves the marker), succeeds from then on.
    let reload = format!(
        "test -e {m} || {{ touch {m}; exit 1; }}; echo ok >> {l}",
        m = marker.display(),
        l = log.display()
    );
    let cfg = config(
        d,
        &format!(
            "[[secret]]\nname = \"pw\"\npath = \"{}/pw\"\nreload = \"{reload}\"\n",
            d.display()
        ),
    );
    let fake = Fake::default();
    fake.put("pw", VALUE);
    let agent = Agent::new(cfg, fake);
    let r = agent.pass(100).await;
    assert!(matches!(r.secrets[0].1, Ok(SecretDelivery::Written { .. })));
    assert!(
        !r.all_ok() && r.reloads.len() == 1 && r.reloads[0].1.is_err(),
        "{r:?}"
    );
    assert!(marker.exists());
    assert_eq!(lines(&log), 0);
    assert!(
        agent.next_wake(100) <= Duration::from_secs(1),
        "retried soon"
    );

    // The file is unchanged now, but its consumer has not been told yet: the reload runs again.
    let r = agent.pass(200).await;
    assert!(matches!(
        r.secrets[0].1,
        Ok(SecretDelivery::Unchanged { .. })
    ));
    assert!(r.all_ok(), "{r:?}");
    assert_eq!(lines(&log), 1);
    assert_eq!(agent.next_wake(200), Duration::from_secs(45));

    // And only once.
    let r = agent.pass(300).await;
    assert!(r.reloads.is_empty(), "{r:?}");
    assert_eq!(lines(&log), 1);
}

#[tokio::test]
async fn a_reload_that_hangs_is_killed_with_what_it_started_and_stays_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let late = d.join("late");
    // A background job of the command: killing `sh` alone would leave it running.
    let reload = format!("(sleep 2; touch {}) & wait", late.display());
    let cfg = config(
        d,
        &format!(
            "reload_timeout = \"1s\"\n[[secret]]\nname = \"pw\"\npath = \"{}/pw\"\nreload = \"{reload}\"\n",
            d.display()
        ),
    );
    let fake = Fake::default();
    fake.put("pw", VALUE);
    let agent = Agent::new(cfg, fake);
    let started = std::time::Instant::now();
    let r = agent.pass(100).await;
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "not waited for"
    );
    let err = r.reloads[0].1.as_ref().expect_err("timed out");
    assert!(err.contains("did not finish within 1s"), "{err}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!late.exists(), "the command's children were killed too");
    assert!(
        agent.next_wake(100) <= Duration::from_secs(1),
        "retried soon"
    );
}

#[tokio::test]
async fn old_temp_files_of_a_delivered_file_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let stale = d.join(".pw.0123456789ab.tmp");
    std::fs::write(&stale, b"a key from before a crash").expect("stale");
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .expect("open")
        .set_modified(hour_ago)
        .expect("mtime");
    let young = d.join(".pw.aaaaaaaaaaaa.tmp");
    std::fs::write(&young, b"a write in progress").expect("young");
    let other = d.join(".other.0123456789ab.tmp");
    std::fs::write(&other, b"not ours").expect("other");
    std::fs::File::options()
        .write(true)
        .open(&other)
        .expect("open")
        .set_modified(hour_ago)
        .expect("mtime");
    let cfg = config(
        d,
        &format!("[[secret]]\nname = \"pw\"\npath = \"{}/pw\"\n", d.display()),
    );
    let fake = Fake::default();
    fake.put("pw", VALUE);
    let agent = Agent::new(cfg, fake);
    assert!(agent.pass(100).await.all_ok());
    assert!(!stale.exists(), "a stale temp file of pw is removed");
    assert!(young.exists() && other.exists());
}

#[test]
fn write_errors_say_whether_the_old_files_are_intact() {
    let err = |replaced| {
        write_error(
            Path::new("certs/x"),
            5,
            SetWriteError {
                error: std::io::Error::other("boom"),
                replaced,
            },
        )
    };
    let none = err(0).to_string();
    assert!(none.contains("the old files are intact"), "{none}");
    let some = err(2);
    assert!(!changed::<Delivery>(&Err(some), Delivery::is_issued));
    let some = err(2).to_string();
    assert!(
        !some.contains("intact") && some.contains("after 2 of 5 had been replaced"),
        "{some}"
    );
    // All replaced, only the durability failed: the consumer is told.
    assert!(changed::<Delivery>(&Err(err(5)), Delivery::is_issued));
}

#[test]
fn impossible_dates_do_not_panic() {
    assert_eq!(
        renew_at(200, 100, "01"),
        200,
        "notAfter before notBefore: renew now"
    );
    for (nb, na) in [
        (i64::MIN, i64::MAX),
        (i64::MAX, i64::MIN),
        (i64::MAX, i64::MAX),
        (0, i64::MAX),
    ] {
        let at = renew_at(nb, na, "02");
        assert!(at >= nb && at <= na.max(nb), "{nb} {na} {at}");
    }
    let at = renew_at(0, 300, "03");
    assert!((170..=230).contains(&at), "{at}");
}

#[test]
fn secret_metrics_have_a_secret_label_and_certificate_lines_are_unchanged() {
    let mut st = Status::default();
    st.certificates.insert(
        "broker".into(),
        CertStatus {
            not_after: Some(10),
            ..CertStatus::default()
        },
    );
    let before = st.prometheus();
    assert!(
        !before.contains("secret"),
        "no secret lines without secrets"
    );
    st.secrets.insert(
        "mqtt/pw".into(),
        SecretStatus {
            version: Some(3),
            last_success: Some(50),
            consecutive_failures: 2,
            last_error: Some("x".into()),
            written: 1,
            ..SecretStatus::default()
        },
    );
    let text = st.prometheus();
    assert!(text.starts_with(&before), "{text}");
    for line in [
        "castellan_agent_secret_version{secret=\"mqtt/pw\"} 3",
        "castellan_agent_secret_last_success_timestamp_seconds{secret=\"mqtt/pw\"} 50",
        "castellan_agent_secret_last_pass_failed{secret=\"mqtt/pw\"} 1",
        "castellan_agent_secret_consecutive_failures{secret=\"mqtt/pw\"} 2",
        "castellan_agent_secret_written{secret=\"mqtt/pw\"} 1",
        "# TYPE castellan_agent_secret_version gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}
