//! The upstream sign-in tables on both backends: a sign-in under way is taken once and not after it
//! expired; a user created at a first sign-in and its link are written both or neither; a subject is
//! linked once; links go with their user.

use castellan_store::{Store, StoreError, UpstreamLoginRow, UserRow};

fn user(id: &str, name: &str) -> UserRow {
    UserRow {
        user_id: id.into(),
        name: name.into(),
        email: Some(format!("{name}@corp.example")),
        password_hash: None,
        groups: "eng".into(),
        claims: "{}".into(),
        disabled_at: None,
        totp_dek_id: None,
        totp_sealed: None,
        totp_required: false,
        created_at: 100,
        updated_at: 100,
    }
}

fn login(state_hash: &[u8], expires_at: i64) -> UpstreamLoginRow {
    UpstreamLoginRow {
        state_hash: state_hash.to_vec(),
        provider: "corp".into(),
        nonce: "n".into(),
        pkce_verifier: "v".repeat(43),
        request: "client_id=x".into(),
        created_at: 100,
        expires_at,
        used_at: None,
    }
}

async fn upstream(store: &Store) {
    store
        .add_upstream_login(&login(b"s1", 700))
        .await
        .expect("add");
    store
        .add_upstream_login(&login(b"s2", 700))
        .await
        .expect("add");
    let taken = store
        .take_upstream_login(b"s1", 200)
        .await
        .expect("take")
        .expect("there");
    assert_eq!(taken.nonce, "n");
    assert_eq!(taken.request, "client_id=x");
    assert_eq!(taken.used_at, Some(200));
    assert!(
        store
            .take_upstream_login(b"s1", 201)
            .await
            .expect("take")
            .is_none(),
        "once"
    );
    assert!(
        store
            .take_upstream_login(b"s2", 700)
            .await
            .expect("take")
            .is_none(),
        "expired"
    );
    assert!(
        store
            .take_upstream_login(b"nope", 200)
            .await
            .expect("take")
            .is_none()
    );
    assert_eq!(
        store
            .prune_upstream_logins(700 + 3601, 3600)
            .await
            .expect("prune"),
        2
    );

    store
        .add_upstream_user(&user("usr_1", "carol"), "corp", "sub-1")
        .await
        .expect("created");
    assert_eq!(
        store
            .upstream_link("corp", "sub-1")
            .await
            .expect("link")
            .as_deref(),
        Some("usr_1")
    );
    assert!(
        store
            .upstream_link("other", "sub-1")
            .await
            .expect("link")
            .is_none()
    );
    assert!(
        store
            .upstream_linked_user("corp", "usr_1")
            .await
            .expect("linked")
    );
    // A taken name: no user, no link.
    let e = store
        .add_upstream_user(&user("usr_2", "carol"), "corp", "sub-2")
        .await
        .expect_err("name taken");
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert!(
        store
            .upstream_link("corp", "sub-2")
            .await
            .expect("link")
            .is_none()
    );
    // A linked subject: no second user.
    let e = store
        .add_upstream_user(&user("usr_3", "carol2"), "corp", "sub-1")
        .await
        .expect_err("linked");
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert!(
        store.user("usr_3").await.expect("user").is_none(),
        "rolled back"
    );
    assert!(matches!(
        store.link_upstream("corp", "sub-1", "usr_1", 300).await,
        Err(StoreError::Conflict(_))
    ));
    // Links go with the user.
    assert!(store.delete_user("usr_1").await.expect("delete"));
    assert!(
        store
            .upstream_link("corp", "sub-1")
            .await
            .expect("link")
            .is_none()
    );
}

#[tokio::test]
async fn sqlite_upstream_sign_in_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("u.db"))
        .await
        .expect("open");
    upstream(&store).await;
}

#[tokio::test]
async fn postgres_upstream_sign_in_tables() {
    let Some(url) = castellan_store::testing::fresh_postgres_database("upstream_tables").await
    else {
        return;
    };
    let store = Store::connect(&url).await.expect("connect");
    upstream(&store).await;
}
