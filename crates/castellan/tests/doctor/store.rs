//! The bare `castellan doctor` on a PostgreSQL store: sound, the wrong master key, a database that was
//! never initialized, and no database at all.

use crate::{doctor, support};

fn fresh_database(name: &str) -> Option<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(castellan_store::testing::fresh_postgres_database(name))
}

#[test]
fn bare_doctor_on_postgres() {
    let (Some(url), Some(empty)) = (
        fresh_database("doctor_bare_pg"),
        fresh_database("doctor_bare_pg_empty"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let key = support::master_key_file(dir, "master.key");
    let other = support::master_key_file(dir, "other.key");
    let key = key.to_str().expect("path");
    let other = other.to_str().expect("path");
    let out = support::run(
        &["init", "--database-url", &url, "--master-key-file", key],
        dir,
    );
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(dir.join("value"), "doctor-sees-no-plaintext").expect("value");
    support::ok(
        &[
            "secret",
            "put",
            "app/db",
            "--file",
            "value",
            "--database-url",
            &url,
            "--master-key-file",
            key,
        ],
        dir,
    );

    let r = doctor(&["--database-url", &url, "--master-key-file", key], dir);
    r.expect_clean("bare doctor on an initialized PostgreSQL store");
    r.expect("keyring-ok", 0);
    r.expect("secrets-ok", 0);

    // A sealed value altered in the database (one byte of its ciphertext): named, without its value.
    let psql = std::process::Command::new("psql")
        .args([&url, "-qc", "UPDATE secrets SET sealed_value = set_byte(sealed_value, 20, get_byte(sealed_value, 20) # 1)"])
        .output()
        .expect("psql");
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let r = doctor(&["--database-url", &url, "--master-key-file", key], dir);
    let f = r.expect("secret-unreadable", 1);
    assert_eq!(f["subject"], "secret app/db", "{}", r.dump());
    assert!(!r.dump().contains("doctor-sees"), "{}", r.dump());
    assert!(!r.has("secrets-ok"));
    assert!(
        r.get("keyring-ok")["subject"]
            .as_str()
            .is_some_and(|s| s.contains("PostgreSQL")),
        "{}",
        r.dump()
    );

    // Another replica's master key: the key ring cannot be opened, and the doctor says which file.
    let r = doctor(&["--database-url", &url, "--master-key-file", other], dir);
    r.expect("keyring-not-loaded", 1);

    // A database nobody ran `castellan init` against.
    let r = doctor(&["--database-url", &empty, "--master-key-file", key], dir);
    let f = r.expect("store-not-initialized", 1);
    assert!(
        f["fix"]
            .as_str()
            .is_some_and(|s| s.contains("castellan init")),
        "{f}"
    );

    // Nothing listens there.
    let dead = format!(
        "postgres://postgres@127.0.0.1:{}/nothing",
        support::free_port()
    );
    let r = doctor(&["--database-url", &dead, "--master-key-file", key], dir);
    r.expect("store-unreachable", 1);
}

/// The bare doctor reports a certificate as expiring only when its renewal is overdue: in the last
/// third of its lifetime with no later certificate issued for the same names. One the agent replaced
/// (however near its end), one early in a short life, and a revoked one are not reported.
#[test]
fn only_certificates_whose_renewal_is_overdue_are_reported_as_expiring() {
    use castellan_store::{CertRow, Store};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    support::ok(&["init", "--data-dir", "d"], dir);
    let r = doctor(&["--data-dir", "d"], dir);
    r.expect_clean("a fresh store");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    const H: i64 = 3600;
    const DAY: i64 = 86_400;
    let url = format!("sqlite://{}", dir.join("d/castellan.db").display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let store = Store::connect(&url).await.expect("store");
            let ca_id = castellan_server::pki::active_ca_id(&store)
                .await
                .expect("ca")
                .expect("a CA");
            let row = |serial: &str, names: &str, not_before: i64, not_after: i64| CertRow {
                serial: serial.into(),
                ca_id: ca_id.clone(),
                profile: "server".into(),
                common_name: Some(names.into()),
                sans: format!("dns:{names}"),
                not_before,
                not_after,
                cert_pem: "unused by this check".into(),
                revoked_at: None,
                revocation_reason: None,
                created_at: not_before,
            };
            let revoked = CertRow {
                revoked_at: Some(now - H),
                ..row("0d", "revoked", now - 28 * DAY, now + 2 * DAY)
            };
            for c in [
                // Overdue: 30 days of life, 2 left, nothing newer.
                row("0a", "stuck", now - 28 * DAY, now + 2 * DAY),
                // Renewed: 2 days left, but a later certificate exists for the same names.
                row("0b", "renewed", now - 28 * DAY, now + 2 * DAY),
                row("0c", "renewed", now - DAY, now + 29 * DAY),
                // Short-lived and early in its life: 24 h, 20 h left.
                row("0e", "short", now - 4 * H, now + 20 * H),
                // Short-lived and past its renewal point: 24 h, 4 h left.
                row("0f", "short-stuck", now - 20 * H, now + 4 * H),
                revoked,
            ] {
                store.add_certificate(&c).await.expect("add");
            }
            store.close().await;
        });
    let r = doctor(&["--data-dir", "d"], dir);
    let mut reported: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f["code"] == "certificate-expiring")
        .map(|f| f["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    reported.sort();
    assert_eq!(reported, vec!["serial 0a", "serial 0f"], "{}", r.dump());
    assert_eq!(r.status, 0, "a warning is not an error: {}", r.dump());
}
