//! Test support: a fresh PostgreSQL database per test.
//!
//! Tests that need PostgreSQL read the server URL from `CASTELLAN_TEST_DATABASE_URL` (a database the
//! tests may create databases from, e.g. `postgres://postgres@127.0.0.1:5432/postgres`). When it is unset
//! outside CI the test is skipped with a printed reason; under CI (`CI` set) it fails.

use sqlx::Connection;

/// The variable tests read.
pub const ENV: &str = "CASTELLAN_TEST_DATABASE_URL";

/// Creates an empty database and returns its URL, or `None` (skip) when PostgreSQL is not configured.
pub async fn fresh_postgres_database(test: &str) -> Option<String> {
    let Ok(base) = std::env::var(ENV) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{ENV} must be set under CI: the PostgreSQL tests are required"
        );
        eprintln!("skipping {test}: {ENV} is not set (set it to run the PostgreSQL tests)");
        return None;
    };
    let name = castellan_core::secret::random_id("castellan_test_", 6).expect("random");
    let mut conn = sqlx::postgres::PgConnection::connect(&base)
        .await
        .expect("connect to CASTELLAN_TEST_DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let _ = conn.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("URL with a database name");
    Some(format!("{prefix}/{name}"))
}

/// Runs `sql` against the store at `url` (SQLite or PostgreSQL) without opening it as a [`crate::Store`]
/// (no migrations): for tests that change a database behind Castellan's back.
pub async fn execute(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .expect("connect to the test database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .expect("test SQL");
    let _ = conn.close().await;
}

/// The first column of the first row `sql` answers, as an integer (a `COUNT(*)`, say), read from the
/// store at `url` without opening it as a [`crate::Store`].
pub async fn query_i64(url: &str, sql: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .expect("connect to the test database");
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .expect("test SQL");
    let _ = conn.close().await;
    n
}
