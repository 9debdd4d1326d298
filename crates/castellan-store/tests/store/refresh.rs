//! Refresh token rotations written in one batch (`RefreshBatcher`) answer, and leave the store, as
//! the same rotations written one by one (`Store::rotate_refresh`), on SQLite and PostgreSQL.

use castellan_store::{
    CodeRow, GrantRow, Redemption, RefreshBatcher, RefreshRow, RotateRequest, Rotation, Store,
    UserRow,
};

const NOW: i64 = 1_800_000_000;

fn h(tag: &str) -> Vec<u8> {
    castellan_core::secret::hash_secret(tag)
}

fn user() -> UserRow {
    UserRow {
        user_id: "usr_alice".into(),
        name: "alice".into(),
        email: Some("alice@example.com".into()),
        password_hash: None,
        groups: "ops".into(),
        claims: "{}".into(),
        disabled_at: None,
        totp_dek_id: None,
        totp_sealed: None,
        totp_required: false,
        created_at: NOW - 100,
        updated_at: NOW - 100,
    }
}

/// A grant of `client` with its first refresh token `tag`, expiring at `token_exp`.
async fn family(store: &Store, id: &str, client: &str, tag: &str, token_exp: i64) {
    let code = h(&format!("code-{id}"));
    store
        .add_code(&CodeRow {
            code_hash: code.clone(),
            client_id: client.into(),
            user_id: "usr_alice".into(),
            sid: "sid_1".into(),
            redirect_uri: "https://app.example/cb".into(),
            code_challenge: "c".into(),
            scope: "openid".into(),
            nonce: None,
            auth_time: NOW - 50,
            amr: "pwd".into(),
            created_at: NOW - 50,
            expires_at: NOW + 10,
            used_at: None,
            grant_id: None,
        })
        .await
        .expect("code");
    let grant = GrantRow {
        grant_id: id.into(),
        client_id: client.into(),
        user_id: "usr_alice".into(),
        sid: "sid_1".into(),
        scope: "openid".into(),
        auth_time: NOW - 50,
        amr: "pwd".into(),
        created_at: NOW - 50,
        expires_at: NOW + 86_400,
        revoked_at: None,
        revoked_why: None,
    };
    let first = RefreshRow {
        token_hash: h(tag),
        grant_id: id.into(),
        created_at: NOW - 50,
        expires_at: token_exp,
        used_at: None,
    };
    assert_eq!(
        store
            .redeem_code(&code, NOW - 50, &grant, Some(&first))
            .await
            .expect("redeem"),
        Redemption::Redeemed
    );
}

/// The same starting point on each store: six families, one of whose tokens is already rotated.
async fn seed(store: &Store) {
    store.add_user(&user()).await.expect("user");
    family(store, "g_a", "cl_web", "a0", NOW + 600).await;
    family(store, "g_b", "cl_web", "b0", NOW + 600).await;
    family(store, "g_c", "cl_web", "c0", NOW + 600).await;
    family(store, "g_d", "cl_other", "d0", NOW + 600).await;
    family(store, "g_e", "cl_web", "e0", NOW - 1).await; // its token expired, never used
    family(store, "g_f", "cl_other", "f0", NOW + 600).await;
    // g_c's first token is already rotated to c1.
    let r = store
        .rotate_refresh(&h("c0"), &h("c1"), "cl_web", 600, 0, NOW - 100)
        .await
        .expect("rotate");
    assert!(matches!(r, Rotation::Rotated { .. }));
}

/// The requests, in arrival order, with what each tests.
fn requests(grace: i64) -> Vec<RotateRequest> {
    let req = |token: &str, new: &str, client: &str| RotateRequest {
        token_hash: h(token),
        new_hash: h(new),
        client_id: client.into(),
        idle_secs: 600,
        grace_secs: grace,
        now: NOW,
    };
    vec![
        req("a0", "a1", "cl_web"),   // rotates
        req("d0", "d1x", "cl_web"),  // another client's token: refused, not used up
        req("d0", "d1", "cl_other"), // ...so its own client still rotates it
        req("b0", "b1", "cl_web"),   // rotates
        req("b0", "b1y", "cl_web"),  // the same token again: reuse (or, with grace, rotates)
        req("c0", "c1z", "cl_web"),  // rotated before the batch: reuse
        req("c1", "c2", "cl_web"),   // c's newest, after c was revoked: refused
        req("e0", "e1", "cl_web"),   // expired, never used: refused, nothing revoked
        req("nope", "n1", "cl_web"), // unknown
        req("f0", "f1", "cl_web"),   // another client's token, alone: refused, still unused
    ]
}

/// Every token's row and every grant's revocation, to compare two stores.
async fn state(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for t in [
        "a0", "a1", "b0", "b1", "b1y", "c0", "c1", "c1z", "c2", "d0", "d1", "d1x", "e0", "e1",
        "f0", "f1", "n1",
    ] {
        let row = store.refresh_token(&h(t)).await.expect("read");
        out.push(format!(
            "{t}: {:?}",
            row.map(|(r, _)| (r.grant_id, r.expires_at, r.used_at))
        ));
    }
    for g in ["g_a", "g_b", "g_c", "g_d", "g_e", "g_f"] {
        let row = store.grant(g).await.expect("grant").expect("exists");
        out.push(format!("{g}: {:?} {:?}", row.revoked_at, row.revoked_why));
    }
    out
}

fn short(r: &Rotation) -> String {
    match r {
        Rotation::Rotated { grant, user } => format!(
            "rotated {} for {:?}",
            grant.grant_id,
            user.as_ref().map(|u| &u.name)
        ),
        other => format!("{other:?}"),
    }
}

async fn batch_matches_one_by_one(one: Store, batched: Store, grace: i64) {
    seed(&one).await;
    seed(&batched).await;
    let mut alone = Vec::new();
    for r in requests(grace) {
        let a = one
            .rotate_refresh(
                &r.token_hash,
                &r.new_hash,
                &r.client_id,
                r.idle_secs,
                r.grace_secs,
                r.now,
            )
            .await
            .expect("rotate alone");
        alone.push(short(&a));
    }
    // On this (current-thread) runtime every request is queued before the writer runs: one batch.
    let batcher = RefreshBatcher::spawn(batched.clone());
    let together: Vec<String> =
        futures_util::future::join_all(requests(grace).into_iter().map(|r| batcher.rotate(r)))
            .await
            .into_iter()
            .map(|a| short(&a.expect("rotate in the batch")))
            .collect();
    assert_eq!(
        together, alone,
        "the batch answered otherwise (grace {grace})"
    );
    assert_eq!(
        state(&batched).await,
        state(&one).await,
        "the batch left the store otherwise (grace {grace})"
    );
    // What the scenario is about, so that both agreeing on something else cannot pass.
    assert_eq!(alone[0], "rotated g_a for Some(\"alice\")");
    assert_eq!(alone[1], "Invalid");
    assert_eq!(alone[2], "rotated g_d for Some(\"alice\")");
    assert_eq!(alone[5], "Reused");
    assert_eq!(alone[6], "Invalid");
    assert_eq!(alone[7], "Invalid");
    assert_eq!(alone[8], "Invalid");
    assert_eq!(alone[9], "Invalid");
    if grace == 0 {
        assert_eq!(alone[4], "Reused");
    } else {
        assert_eq!(alone[4], "rotated g_b for Some(\"alice\")");
    }
}

async fn sqlite(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open_sqlite(&dir.path().join(name))
        .await
        .expect("open")
}

#[tokio::test]
async fn sqlite_a_batch_of_rotations_is_the_rotations_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    for grace in [0, 30] {
        batch_matches_one_by_one(
            sqlite(&dir, &format!("one-{grace}.db")).await,
            sqlite(&dir, &format!("batched-{grace}.db")).await,
            grace,
        )
        .await;
    }
}

#[tokio::test]
async fn postgres_a_batch_of_rotations_is_the_rotations_one_by_one() {
    for grace in [0, 30] {
        let (Some(a), Some(b)) = (
            castellan_store::testing::fresh_postgres_database("rotations_one").await,
            castellan_store::testing::fresh_postgres_database("rotations_batched").await,
        ) else {
            return;
        };
        batch_matches_one_by_one(
            Store::connect(&a).await.expect("connect"),
            Store::connect(&b).await.expect("connect"),
            grace,
        )
        .await;
    }
}

/// Concurrent refreshes of one family on one store: each token is rotated exactly once, by batches
/// of whatever size the load makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_rotations_each_rotate_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = sqlite(&dir, "c.db").await;
    store.add_user(&user()).await.expect("user");
    for i in 0..50 {
        family(
            &store,
            &format!("g{i}"),
            "cl_web",
            &format!("t{i}-0"),
            NOW + 600,
        )
        .await;
    }
    let batcher = RefreshBatcher::spawn(store.clone());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let b = batcher.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..10 {
                let r = b
                    .rotate(RotateRequest {
                        token_hash: h(&format!("t{i}-{step}")),
                        new_hash: h(&format!("t{i}-{}", step + 1)),
                        client_id: "cl_web".into(),
                        idle_secs: 600,
                        grace_secs: 0,
                        now: NOW,
                    })
                    .await
                    .expect("rotate");
                assert!(matches!(r, Rotation::Rotated { .. }), "t{i}-{step}: {r:?}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for i in 0..50 {
        let (newest, grant) = store
            .refresh_token(&h(&format!("t{i}-10")))
            .await
            .expect("read")
            .expect("the newest token is stored");
        assert_eq!(newest.used_at, None);
        assert_eq!(grant.revoked_at, None);
        let (old, _) = store
            .refresh_token(&h(&format!("t{i}-9")))
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(old.used_at, Some(NOW));
    }
}
