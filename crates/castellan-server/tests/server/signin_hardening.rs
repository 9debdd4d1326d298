//! Sign-in's second line: a TOTP code passes once (RFC 6238 §5.2), a password hashed with
//! parameters that have since changed is hashed anew at the next sign-in, and the jobs prune the
//! sign-in state that has ended.

use axum::http::StatusCode;
use castellan_core::Clock;
use castellan_core::secret;
use castellan_core::signin::password::{HashParams, hash_password, needs_rehash};
use castellan_core::signin::totp;

use super::signin::{Browser, authorize_url, fixture};

const PASSWORD: &str = "correct horse battery";

/// Posts `code` on the second-factor page `second` shows.
async fn post_code(
    f: &super::signin::Fixture,
    b: &mut Browser,
    second: &super::signin::Resp,
    code: &str,
) -> StatusCode {
    let csrf = second.field("csrf");
    let request = second.field("request");
    b.post(
        &f.state,
        "/signin/totp",
        &[("csrf", &csrf), ("request", &request), ("code", code)],
    )
    .await
    .status
}

/// A fresh browser signed in with the password, at the second-factor page.
async fn at_second_factor(f: &super::signin::Fixture) -> (Browser, super::signin::Resp) {
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    let second = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert!(second.body.contains("name=\"code\""), "{}", second.body);
    (b, second)
}

#[tokio::test]
async fn a_totp_code_passes_once_and_no_older_one_after_it() {
    let f = fixture().await;
    let alice = f
        .state
        .store()
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    let raw = totp::new_secret().expect("secret");
    let code_now = |f: &super::signin::Fixture| totp::code_at(&raw, f.clock.now()).expect("code");
    let enrol_code = code_now(&f);
    castellan_server::signin::account::enrol(&f.state, &alice, &totp::encode(&raw), &enrol_code)
        .await
        .expect("enrol");

    // The code that confirmed the enrolment does not pass a sign-in in the same step.
    let (mut b, second) = at_second_factor(&f).await;
    assert_eq!(
        post_code(&f, &mut b, &second, &enrol_code).await,
        StatusCode::UNAUTHORIZED
    );
    // The next step's code does, once.
    f.clock.advance(30);
    let code = code_now(&f);
    assert_eq!(
        post_code(&f, &mut b, &second, &code).await,
        StatusCode::SEE_OTHER
    );
    let (mut b, second) = at_second_factor(&f).await;
    assert_eq!(
        post_code(&f, &mut b, &second, &code).await,
        StatusCode::UNAUTHORIZED,
        "the same code a second time, within its step"
    );
    // A code of an earlier step (still within the skew) after a newer one passed: refused.
    let earlier = totp::code_at(&raw, f.clock.now() - 30).expect("code");
    assert_eq!(
        post_code(&f, &mut b, &second, &earlier).await,
        StatusCode::UNAUTHORIZED
    );
    f.clock.advance(30);
    assert_eq!(
        post_code(&f, &mut b, &second, &code_now(&f)).await,
        StatusCode::SEE_OTHER,
        "the next step's code"
    );
}

#[tokio::test]
async fn a_password_hashed_with_older_parameters_is_hashed_anew_at_sign_in() {
    let f = fixture().await;
    let store = f.state.store();
    let alice = store
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    let configured = super::signin::fast_signin().password;
    let old = HashParams {
        memory_kib: 9216,
        iterations: 2,
        parallelism: 1,
    };
    let old_hash = hash_password(PASSWORD, &old).expect("hash");
    assert!(needs_rehash(&old_hash, &configured));
    store
        .set_password(&alice.user_id, &old_hash, f.clock.now())
        .await
        .expect("set");
    let hash_now = || async {
        store
            .user_by_name("alice")
            .await
            .expect("store")
            .expect("alice")
            .password_hash
            .expect("hash")
    };

    // A wrong password changes nothing.
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    let r = b.sign_in(&f.state, &page, "alice", "wrong").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(hash_now().await, old_hash);

    // The right one signs in and leaves a hash of the configured parameters, which verifies.
    let r = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let new_hash = hash_now().await;
    assert_ne!(new_hash, old_hash);
    assert!(!needs_rehash(&new_hash, &configured), "{new_hash}");
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    let r = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the new hash verifies");
    assert_eq!(hash_now().await, new_hash, "hashed anew once");
}

#[tokio::test]
async fn the_jobs_prune_sign_in_state_a_day_after_it_ended() {
    let f = fixture().await;
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    let r = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let cookie = b
        .cookies
        .get("castellan_session")
        .expect("session cookie")
        .clone();
    let hash = secret::hash_secret(&cookie);
    let session = || async {
        f.state
            .store()
            .session_by_secret(&hash)
            .await
            .expect("store")
    };
    assert!(f.state.run_jobs().await.expect("jobs"), "holds the lease");
    assert!(session().await.is_some(), "a live session stays");
    let ttl = super::signin::fast_signin().session_ttl_secs;
    f.clock.advance(ttl + 3_600);
    assert!(f.state.run_jobs().await.expect("jobs"));
    assert!(
        session().await.is_some(),
        "an ended session is kept a day (for investigation)"
    );
    f.clock.advance(86_400);
    assert!(f.state.run_jobs().await.expect("jobs"));
    assert!(session().await.is_none(), "pruned a day after it ended");
}
