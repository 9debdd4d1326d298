//! Issue 20: the Vault-shaped API's tokens, on both backends (the secret versions its metadata lists
//! are checked end to end by the hvac test).

use castellan_store::{Store, VaultTokenRow};

async fn vault_tokens(store: &Store) {
    let row = |hash: u8, accessor: &str, expires_at: i64| VaultTokenRow {
        token_hash: vec![hash; 32],
        accessor: accessor.into(),
        client_id: "cl_1".into(),
        scope: "secrets:read:mqtt pki:issue".into(),
        auth_path: "auth/approle/login".into(),
        created_at: 100,
        ttl_secs: 60,
        expires_at,
        max_expires_at: 1000,
    };
    store
        .add_vault_token(&row(1, "a1", 160))
        .await
        .expect("add");
    store
        .add_vault_token(&row(2, "a2", 120))
        .await
        .expect("add");
    assert!(
        store.add_vault_token(&row(1, "a3", 160)).await.is_err(),
        "one row per token"
    );
    assert_eq!(
        store.vault_token(&[1; 32]).await.expect("get"),
        Some(row(1, "a1", 160))
    );
    assert_eq!(store.vault_token(&[9; 32]).await.expect("get"), None);
    assert!(store.renew_vault_token(&[1; 32], 220).await.expect("renew"));
    assert!(!store.renew_vault_token(&[9; 32], 220).await.expect("renew"));
    assert_eq!(
        store
            .vault_token(&[1; 32])
            .await
            .expect("get")
            .map(|r| r.expires_at),
        Some(220)
    );
    // Pruning takes the expired ones only.
    assert_eq!(store.prune_vault_tokens(150).await.expect("prune"), 1);
    assert_eq!(store.vault_token(&[2; 32]).await.expect("get"), None);
    assert!(store.revoke_vault_token(&[1; 32]).await.expect("revoke"));
    assert!(!store.revoke_vault_token(&[1; 32]).await.expect("revoke"));
    assert_eq!(store.vault_token(&[1; 32]).await.expect("get"), None);
}

#[tokio::test]
async fn sqlite_vault_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("v.db"))
        .await
        .expect("open");
    vault_tokens(&store).await;
}

#[tokio::test]
async fn postgres_vault_tokens() {
    let Some(url) = castellan_store::testing::fresh_postgres_database("vault_tokens").await else {
        return;
    };
    let store = Store::connect(&url).await.expect("connect");
    vault_tokens(&store).await;
}
