//! The key cache: max-age within bounds, the unknown-kid refetch and its cool-down, single flight,
//! keeping good keys when fetches fail, ETags, the background task, wall-clock steps.
//!
//! Cache times and the cool-down run on tokio's monotonic clock: the tests that move them run on
//! paused time (`start_paused`, [`pass`]) and fetch through [`paused_builder`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;
use castellan_core::token::Alg;
use castellan_verify::{Error, ManualClock, SystemClock, Verifier};

/// A verifier that has fetched `server`'s JWKS, served with a cache time of `max_age` seconds, and
/// refetches for an unknown kid at most once per `cooldown` seconds.
async fn fetched(server: &JwksServer, max_age: u64, cooldown: u64) -> (Arc<ManualClock>, Verifier) {
    server.set_max_age(Some(max_age));
    let clock = clock();
    let verifier = paused_builder(&server.url, &clock)
        .unknown_kid_cooldown(Duration::from_secs(cooldown))
        .build()
        .expect("verifier");
    verifier.refresh().await.expect("fetch");
    (clock, verifier)
}

#[tokio::test(start_paused = true)]
async fn a_key_added_to_the_jwks_is_picked_up_when_max_age_runs_out() {
    let (a, b) = (key(Alg::ES256), key(Alg::ES256));
    let server = JwksServer::start(jwks(&[&a])).await;
    // A cool-down longer than the cache time, so only the cache time can cause the refetch.
    let (clock, verifier) = fetched(&server, 120, 3600).await;
    server.set_keys(&[&a, &b]);
    let tb = token(&b, &claims(NOW + 100));
    assert!(matches!(
        verifier.verify(&tb).await,
        Err(Error::UnknownKid { .. })
    ));
    pass(&clock, 119).await;
    assert!(matches!(
        verifier.verify(&tb).await,
        Err(Error::UnknownKid { .. })
    ));
    assert_eq!(server.hits(), 1, "fresh for 120 s: no refetch");
    pass(&clock, 1).await;
    let claims = verifier.verify(&tb).await.expect("b after max-age");
    assert_eq!(claims.sub, "cl_billing");
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn max_age_is_clamped_to_the_bounds() {
    let (a, b, c) = (key(Alg::EdDSA), key(Alg::EdDSA), key(Alg::EdDSA));
    let server = JwksServer::start(jwks(&[&a])).await;
    let clock = clock();
    let verifier = paused_builder(&server.url, &clock)
        .unknown_kid_cooldown(Duration::from_secs(10 * 24 * 3600))
        .cache_time_bounds(Duration::from_secs(60), Duration::from_secs(3600))
        .build()
        .expect("verifier");
    // max-age=5 is raised to the 60 s minimum.
    server.set_max_age(Some(5));
    verifier.refresh().await.expect("fetch");
    server.set_keys(&[&a, &b]);
    pass(&clock, 30).await;
    assert!(matches!(
        verifier.verify(&token(&b, &claims(NOW + 30))).await,
        Err(Error::UnknownKid { .. })
    ));
    assert_eq!(server.hits(), 1);
    pass(&clock, 30).await;
    assert!(verifier.verify(&token(&b, &claims(NOW + 60))).await.is_ok());
    assert_eq!(server.hits(), 2);
    // max-age of a year is lowered to the one-hour maximum.
    server.set_max_age(Some(365 * 24 * 3600));
    verifier.refresh().await.expect("fetch");
    assert_eq!(server.hits(), 3);
    server.set_keys(&[&a, &b, &c]);
    pass(&clock, 3599).await;
    let tc = token(&c, &claims(NOW + 60 + 3600));
    assert!(matches!(
        verifier.verify(&tc).await,
        Err(Error::UnknownKid { .. })
    ));
    pass(&clock, 1).await;
    assert!(verifier.verify(&tc).await.is_ok());
    assert_eq!(server.hits(), 4);
    // No Cache-Control at all: the default cache time (5 min, within the bounds).
    server.set_max_age(None);
    let d = key(Alg::EdDSA);
    verifier.refresh().await.expect("fetch");
    server.set_keys(&[&a, &d]);
    pass(&clock, 299).await;
    let td = token(&d, &claims(NOW + 60 + 3600 + 299));
    assert!(verifier.verify(&td).await.is_err());
    pass(&clock, 1).await;
    assert!(verifier.verify(&td).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_unknown_kid_refetches_once_the_cooldown_has_passed() {
    let (a, b) = (key(Alg::RS256), key(Alg::RS256));
    let server = JwksServer::start(jwks(&[&a])).await;
    let (clock, verifier) = fetched(&server, 24 * 3600, 45).await;
    server.set_keys(&[&a, &b]);
    let tb = token(&b, &claims(NOW + 45));
    pass(&clock, 44).await;
    assert!(matches!(
        verifier.verify(&tb).await,
        Err(Error::UnknownKid { .. })
    ));
    assert_eq!(server.hits(), 1);
    pass(&clock, 1).await;
    assert!(verifier.verify(&tb).await.is_ok());
    assert_eq!(server.hits(), 2);
    // The refetch restarted the cool-down.
    let c = key(Alg::RS256);
    server.set_keys(&[&a, &b, &c]);
    let tc = token(&c, &claims(NOW + 45));
    assert!(verifier.verify(&tc).await.is_err());
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_step_back_does_not_hold_off_the_unknown_kid_refetch() {
    let (a, b) = (key(Alg::ES256), key(Alg::ES256));
    let server = JwksServer::start(jwks(&[&a])).await;
    let (clock, verifier) = fetched(&server, 24 * 3600, 30).await;
    server.set_keys(&[&a, &b]);
    // NTP (or an operator) steps the wall clock back an hour; then the cool-down passes.
    clock.advance(-3600);
    let tb = token(&b, &claims(NOW - 3600 + 30));
    pass(&clock, 29).await;
    assert!(matches!(
        verifier.verify(&tb).await,
        Err(Error::UnknownKid { .. })
    ));
    assert_eq!(server.hits(), 1, "still inside the cool-down");
    pass(&clock, 1).await;
    assert!(verifier.verify(&tb).await.is_ok());
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_step_back_does_not_extend_the_cache_time() {
    let (a, b) = (key(Alg::EdDSA), key(Alg::EdDSA));
    let server = JwksServer::start(jwks(&[&a])).await;
    // A cool-down longer than the cache time, so only the cache time can cause the refetch.
    let (clock, verifier) = fetched(&server, 120, 3600).await;
    server.set_keys(&[&a, &b]);
    clock.advance(-3600);
    pass(&clock, 120).await;
    let tb = token(&b, &claims(NOW - 3600 + 120));
    assert!(
        verifier.verify(&tb).await.is_ok(),
        "stale after 120 s, whatever the wall clock says"
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_verifications_with_a_new_kid_share_one_fetch() {
    let (a, b) = (key(Alg::ES256), key(Alg::ES256));
    let fetcher = MemoryFetcher::new(jwks(&[&a]));
    let clock = clock();
    // Paused time needs a current-thread runtime: a short cool-down on real time instead.
    let cooldown = Duration::from_millis(100);
    let verifier = builder("memory:", &clock)
        .fetcher(fetcher.clone())
        .background_refresh(false)
        .unknown_kid_cooldown(cooldown)
        .build()
        .expect("verifier");
    // No keys yet: 200 concurrent callers, one fetch.
    *fetcher.delay.lock().expect("lock") = Duration::from_millis(200);
    let ta = token(&a, &claims(NOW));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (v, t) = (verifier.clone(), ta.clone());
        tasks.spawn(async move { v.verify(&t).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("verifies");
    }
    assert_eq!(fetcher.calls(), 1);
    // A new kid after the cool-down: 200 concurrent callers, one more fetch, all succeed.
    fetcher.set_keys(&[&a, &b]);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let tb = token(&b, &claims(NOW));
    for _ in 0..200 {
        let (v, t) = (verifier.clone(), tb.clone());
        tasks.spawn(async move { v.verify(&t).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("verifies");
    }
    assert_eq!(fetcher.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_over_http_and_a_dropped_caller_does_not_cancel_the_fetch() {
    let (a, b) = (key(Alg::EdDSA), key(Alg::EdDSA));
    let server = JwksServer::start(jwks(&[&a])).await;
    let clock = clock();
    // Paused time needs a current-thread runtime: a short cool-down on real time instead.
    let cooldown = Duration::from_millis(100);
    let verifier = builder(&server.url, &clock)
        .background_refresh(false)
        .unknown_kid_cooldown(cooldown)
        .build()
        .expect("verifier");
    verifier.refresh().await.expect("fetch");
    server.set_keys(&[&a, &b]);
    server.state.delay_ms.store(300, Ordering::SeqCst);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let tb = token(&b, &claims(NOW));
    // The first caller gives up after 50 ms, while its fetch is under way.
    let gave_up = tokio::time::timeout(Duration::from_millis(50), verifier.verify(&tb)).await;
    assert!(gave_up.is_err());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (v, t) = (verifier.clone(), tb.clone());
        tasks.spawn(async move { v.verify(&t).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("verifies");
    }
    assert_eq!(
        server.hits(),
        2,
        "the abandoned fetch finished and served everyone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_jwks_never_wipes_the_cached_keys() {
    let a = key(Alg::RS256);
    let server = JwksServer::start(jwks(&[&a])).await;
    server.set_max_age(Some(60));
    let clock = clock();
    // No background task: only the stale verification below may start the refetch it counts.
    let verifier = paused_builder(&server.url, &clock)
        .background_refresh(false)
        .build()
        .expect("verifier");
    verifier.refresh().await.expect("fetch");
    let kids = verifier.cached_kids();
    for (status, body) in [
        (500, None),
        (404, None),
        (200, Some(&b"<html>maintenance</html>"[..])),
        (200, Some(&br#"{"keys":[]}"#[..])),
        (
            200,
            Some(&br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h","alg":"HS256"}]}"#[..]),
        ),
    ] {
        server.set_status(status);
        if let Some(body) = body {
            server.set_body(body);
        }
        pass(&clock, 61).await;
        let hits = server.hits();
        // A stale cache still verifies at once, and refreshes behind the request.
        let c = claims(clock_now(&clock));
        assert!(verifier.verify(&token(&a, &c)).await.is_ok());
        // A forced refresh reports the failure; the keys stay.
        assert!(matches!(
            verifier.refresh().await,
            Err(Error::JwksUnavailable(_))
        ));
        assert!(server.hits() > hits);
        assert_eq!(
            verifier.cached_kids(),
            kids,
            "status {status}, body {body:?}"
        );
        assert!(verifier.verify(&token(&a, &c)).await.is_ok());
    }
    // The JWKS comes back: the next fetch replaces the keys.
    let b = key(Alg::RS256);
    server.set_status(200);
    server.set_keys(&[&b]);
    verifier.refresh().await.expect("fetch");
    assert_eq!(verifier.cached_kids(), [b.kid().to_owned()]);
}

fn clock_now(clock: &castellan_verify::ManualClock) -> i64 {
    use castellan_verify::Clock;
    clock.now()
}

#[tokio::test(start_paused = true)]
async fn no_keys_ever_fetched_is_jwks_unavailable_and_retries_are_rate_limited() {
    let a = key(Alg::ES256);
    let server = JwksServer::start(jwks(&[&a])).await;
    server.set_status(503);
    let clock = clock();
    let verifier = paused_builder(&server.url, &clock)
        .background_refresh(false)
        .build()
        .expect("verifier");
    let t = token(&a, &claims(NOW));
    let err = verifier.verify(&t).await.expect_err("no keys");
    assert!(
        matches!(&err, Error::JwksUnavailable(m) if m.contains("503")),
        "{err}"
    );
    for _ in 0..50 {
        assert!(matches!(
            verifier.verify(&t).await,
            Err(Error::JwksUnavailable(_))
        ));
    }
    assert_eq!(server.hits(), 1, "no fetch storm while the JWKS is down");
    server.set_status(200);
    pass(&clock, 30).await;
    assert!(verifier.verify(&t).await.is_ok());
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_slow_jwks_times_out_and_redirects_are_not_followed() {
    let a = key(Alg::EdDSA);
    let server = JwksServer::start(jwks(&[&a])).await;
    server.state.delay_ms.store(5_000, Ordering::SeqCst);
    let clock = clock();
    let verifier = builder(&server.url, &clock)
        .http_timeout(Duration::from_millis(300))
        .background_refresh(false)
        .build()
        .expect("verifier");
    let started = std::time::Instant::now();
    assert!(matches!(
        verifier.refresh().await,
        Err(Error::JwksUnavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));

    let elsewhere = JwksServer::start(jwks(&[&a])).await;
    server.state.delay_ms.store(0, Ordering::SeqCst);
    server.set_status(302);
    *server.state.location.lock().expect("lock") = elsewhere.url.clone();
    assert!(matches!(
        verifier.refresh().await,
        Err(Error::JwksUnavailable(m)) if m.contains("302")
    ));
    assert_eq!(elsewhere.hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn etag_revalidation_keeps_the_keys_and_restarts_the_cache_time() {
    let (a, b) = (key(Alg::ES256), key(Alg::ES256));
    let server = JwksServer::start(jwks(&[&a])).await;
    server.state.etag.store(true, Ordering::SeqCst);
    let (clock, verifier) = fetched(&server, 60, 3600).await;
    verifier.refresh().await.expect("revalidate");
    assert_eq!(server.state.not_modified.load(Ordering::SeqCst), 1);
    assert!(verifier.verify(&token(&a, &claims(NOW))).await.is_ok());
    // The 304 restarted the cache time; a changed document is fetched in full after it.
    server.set_keys(&[&a, &b]);
    pass(&clock, 60).await;
    let tb = token(&b, &claims(NOW + 60));
    assert!(verifier.verify(&tb).await.is_ok());
    assert_eq!(server.hits(), 3);
    assert_eq!(server.state.not_modified.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_background_task_refreshes_and_stops_with_the_verifier() {
    let a = key(Alg::EdDSA);
    let server = JwksServer::start(jwks(&[&a])).await;
    server.set_max_age(Some(1));
    let verifier = Verifier::builder(ISS, AUD, &server.url)
        .clock(Arc::new(SystemClock))
        .cache_time_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .build()
        .expect("verifier");
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let hits = server.hits();
    assert!(
        (2..=4).contains(&hits),
        "a fetch at start and one per second: {hits}"
    );
    assert_eq!(verifier.cached_kids(), [a.kid().to_owned()]);
    let clone = verifier.clone();
    drop(verifier);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(server.hits() > hits, "a clone keeps the task alive");
    drop(clone);
    // Let a fetch that was under way at the drop reach the server before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_drop = server.hits();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(
        server.hits(),
        after_drop,
        "no fetch after the last clone is dropped"
    );

    // stop_background_refresh stops it while the verifier lives on.
    let verifier = Verifier::builder(ISS, AUD, &server.url)
        .cache_time_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .build()
        .expect("verifier");
    verifier.refresh().await.expect("fetch");
    verifier.stop_background_refresh();
    let stopped = server.hits();
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(server.hits(), stopped);
}
