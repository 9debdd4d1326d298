//! The bare `castellan doctor` on a PostgreSQL store: sound, the wrong master key, a database that was
//! never initialized, and no database at all.

use super::doctor;
use crate::support;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn fresh_database(name: &str) -> Option<String> {
    block_on(castellan_store::testing::fresh_postgres_database(name))
}

/// The doctor only looks: a store whose schema lacks one of this binary's migrations is reported (and
/// left lacking it), and one a newer Castellan migrated is reported and still checked.
#[test]
fn the_doctor_never_migrates_and_says_where_the_schema_stands() {
    use castellan_store::testing::{execute, query_i64};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    support::ok(&["init", "--data-dir", "d"], dir);
    let url = format!("sqlite://{}", dir.join("d/castellan.db").display());
    doctor(&["--data-dir", "d"], dir).expect_clean("a fresh store");

    // As a store of the version before migration 4 looks.
    block_on(execute(
        &url,
        "DROP TABLE secret_heads; DELETE FROM schema_migrations WHERE version = 4",
    ));
    let r = doctor(&["--data-dir", "d"], dir);
    let f = r.expect("store-schema-behind", 0);
    assert_eq!(f["severity"], "warning", "{}", r.dump());
    assert!(
        f["message"].as_str().is_some_and(|m| m.contains('4')),
        "{}",
        r.dump()
    );
    assert!(
        !r.has("keyring-ok"),
        "checks ran on a schema they do not fit"
    );
    assert_eq!(r.status, 0, "{}", r.dump());
    let heads = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'secret_heads'";
    assert_eq!(block_on(query_i64(&url, heads)), 0, "the doctor migrated");
    assert_eq!(
        block_on(query_i64(
            &url,
            "SELECT COUNT(*) FROM schema_migrations WHERE version = 4"
        )),
        0
    );

    // Any other command opens the store as a server would, migrating it: the doctor is clean again.
    support::ok(&["pki", "list", "--data-dir", "d"], dir);
    assert_eq!(block_on(query_i64(&url, heads)), 1);
    doctor(&["--data-dir", "d"], dir).expect_clean("a migrated store");

    // Migrated by a newer Castellan: said so, and the checks still run.
    block_on(execute(
        &url,
        "INSERT INTO schema_migrations (version) VALUES (9999)",
    ));
    let r = doctor(&["--data-dir", "d"], dir);
    let f = r.expect("store-schema-newer", 0);
    assert!(
        f["message"].as_str().is_some_and(|m| m.contains("9999")),
        "{}",
        r.dump()
    );
    r.expect("keyring-ok", 0);
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

    // A database nobody ran `castellan init` against: said so, and left as it was (the doctor runs
    // no DDL; it used to create the whole schema there).
    let r = doctor(&["--database-url", &empty, "--master-key-file", key], dir);
    let f = r.expect("store-not-initialized", 1);
    assert!(
        f["fix"]
            .as_str()
            .is_some_and(|s| s.contains("castellan init")),
        "{f}"
    );
    let tables = block_on(castellan_store::testing::query_i64(
        &empty,
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    ));
    assert_eq!(
        tables, 0,
        "the doctor created tables in a database it only looked at"
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
