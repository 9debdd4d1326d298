//! Tokens Castellan issues verify, for every algorithm, with keys fetched over real HTTP.

use crate::common::*;
use castellan_core::token::Alg;
use castellan_core::token::{KeyRing, RingKey};
use castellan_verify::{DEFAULT_FETCH_TIMEOUT, Error, HttpFetcher, Verifier};
use serde_json::json;

#[tokio::test]
async fn rs256_es256_eddsa_tokens_verify_from_a_key_ring_jwks() {
    let keys: Vec<_> = Alg::ALL.iter().map(|a| key(*a)).collect();
    // The JWKS exactly as Castellan serves it: a KeyRing's bytes.
    let ring = KeyRing::new(
        keys.iter()
            .map(|k| RingKey {
                key: k.clone(),
                activate_at: NOW - 10,
                remove_at: None,
            })
            .collect(),
    )
    .expect("ring");
    let server = JwksServer::start(ring.jwks().to_vec()).await;
    let clock = clock();
    let verifier = builder(&server.url, &clock).build().expect("verifier");
    for k in &keys {
        let claims = claims(NOW);
        let verified = verifier
            .verify(&token(k, &claims))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", k.alg()));
        assert_eq!(verified.iss, ISS);
        assert_eq!(verified.sub, claims.sub);
        assert_eq!(verified.aud, vec![AUD.to_owned()]);
        assert_eq!(verified.exp, claims.exp);
        assert_eq!(verified.iat, Some(NOW));
        assert_eq!(verified.nbf, Some(NOW));
        assert_eq!(verified.jti.as_deref(), Some("jti-1"));
        assert_eq!(verified.client_id.as_deref(), Some("cl_billing"));
        assert!(verified.has_scope("invoices:write"));
        assert!(verified.extra.is_empty());
    }
    let mut kids: Vec<String> = keys.iter().map(|k| k.kid().to_owned()).collect();
    kids.sort();
    assert_eq!(verifier.cached_kids(), kids);
    // One fetch served all three (the background task's first fetch or the first token's).
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn leeway_edges_of_exp_and_nbf() {
    let k = key(Alg::EdDSA);
    let server = JwksServer::start(jwks(&[&k])).await;
    let clock = clock();
    let verifier = builder(&server.url, &clock).build().expect("verifier");
    let with = |exp: i64, nbf: i64| {
        let mut c = claims(NOW);
        c.exp = exp;
        c.nbf = nbf;
        token(&k, &c)
    };
    // Default leeway 60 s: valid while now < exp + 60 and now >= nbf - 60.
    assert!(verifier.verify(&with(NOW - 59, NOW)).await.is_ok());
    assert_eq!(
        verifier.verify(&with(NOW - 60, NOW)).await,
        Err(Error::Expired {
            exp: NOW - 60,
            now: NOW
        })
    );
    assert!(verifier.verify(&with(NOW + 300, NOW + 60)).await.is_ok());
    assert_eq!(
        verifier.verify(&with(NOW + 300, NOW + 61)).await,
        Err(Error::NotYetValid {
            nbf: NOW + 61,
            now: NOW
        })
    );
    // The injected clock decides, not the system clock (NOW is in 2027; a year on, the token is old).
    let t = with(NOW + 300, NOW);
    clock.advance(300 + 60);
    assert!(matches!(
        verifier.verify(&t).await,
        Err(Error::Expired { .. })
    ));
}

#[tokio::test]
async fn zero_leeway_and_custom_audiences_and_types() {
    let k = key(Alg::ES256);
    let server = JwksServer::start(jwks(&[&k])).await;
    let clock = clock();
    let verifier = builder(&server.url, &clock)
        .leeway(std::time::Duration::ZERO)
        .audience("reports-api")
        .build()
        .expect("verifier");
    let mut c = claims(NOW);
    c.exp = NOW + 1;
    assert!(verifier.verify(&token(&k, &c)).await.is_ok());
    c.exp = NOW;
    assert!(matches!(
        verifier.verify(&token(&k, &c)).await,
        Err(Error::Expired { .. })
    ));

    // aud as an array holding one accepted audience among others; the second configured audience.
    let mut payload = claims_json(NOW);
    payload["aud"] = json!(["other", "reports-api"]);
    let v = verifier
        .verify(&sign_parts(&k, &header_for(&k), &payload))
        .await
        .expect("array aud");
    assert_eq!(v.aud, ["other", "reports-api"]);

    // at+jwt in its other spellings is accepted by default; extra claims are kept.
    for typ in ["application/at+jwt", "AT+JWT", "Application/At+Jwt"] {
        let mut header = header_for(&k);
        header["typ"] = json!(typ);
        let mut payload = claims_json(NOW);
        payload["tenant"] = json!({"id": 7});
        let v = verifier
            .verify(&sign_parts(&k, &header, &payload))
            .await
            .expect(typ);
        assert_eq!(v.extra["tenant"]["id"], 7);
    }

    // A missing typ only when allowed.
    let mut header = header_for(&k);
    header.as_object_mut().expect("object").remove("typ");
    let untyped = sign_parts(&k, &header, &claims_json(NOW));
    assert_eq!(
        verifier.verify(&untyped).await,
        Err(Error::WrongType { typ: None })
    );
    let lenient = builder(&server.url, &clock)
        .allow_missing_typ(true)
        .build()
        .expect("lenient");
    assert!(lenient.verify(&untyped).await.is_ok());
}

/// RFC 9068 §4: a resource server MUST refuse a `typ` other than `at+jwt`, so by default a token
/// typed `JWT` (an ID token, say, or any other JWT from the same issuer) is refused.
#[tokio::test]
async fn typ_jwt_is_refused_by_default_and_accepted_only_when_opted_in() {
    let k = key(Alg::EdDSA);
    let server = JwksServer::start(jwks(&[&k])).await;
    let clock = clock();
    let verifier = builder(&server.url, &clock).build().expect("verifier");
    let opted_in = builder(&server.url, &clock)
        .accepted_types(["at+jwt", "JWT"])
        .build()
        .expect("opted in");
    for typ in ["JWT", "jwt", "application/jwt"] {
        let mut header = header_for(&k);
        header["typ"] = json!(typ);
        let t = sign_parts(&k, &header, &claims_json(NOW));
        assert_eq!(
            verifier.verify(&t).await,
            Err(Error::WrongType {
                typ: Some(typ.into())
            }),
            "{typ} by default"
        );
        assert!(opted_in.verify(&t).await.is_ok(), "{typ} when opted in");
    }
    // The opt-in adds JWT; at+jwt stays accepted.
    assert!(opted_in.verify(&token(&k, &claims(NOW))).await.is_ok());
}

#[tokio::test]
async fn builder_refuses_unsafe_or_empty_settings() {
    let k = key(Alg::EdDSA);
    let clock = clock();
    for url in [
        "http://auth.example.com/.well-known/jwks.json",
        "ftp://127.0.0.1/jwks.json",
        "not a url",
    ] {
        assert!(
            matches!(builder(url, &clock).build(), Err(Error::Config(_))),
            "{url}"
        );
    }
    assert!(
        builder("http://auth.example.com/jwks.json", &clock)
            .insecure_allow_http(true)
            .build()
            .is_ok()
    );
    for url in [
        "https://auth.example.com/jwks.json",
        "http://localhost:8270/jwks.json",
        "http://[::1]:8270/jwks.json",
        "http://127.0.0.2/jwks.json",
    ] {
        assert!(builder(url, &clock).build().is_ok(), "{url}");
        assert!(
            HttpFetcher::new(url, DEFAULT_FETCH_TIMEOUT).is_ok(),
            "{url}"
        );
    }
    // A fetcher built directly follows the same rule (it has no opt-in for plain HTTP).
    for url in [
        "http://auth.example.com/.well-known/jwks.json",
        "http://127.0.0.1.example.com/jwks.json",
        "ftp://127.0.0.1/jwks.json",
        "not a url",
    ] {
        assert!(
            matches!(
                HttpFetcher::new(url, DEFAULT_FETCH_TIMEOUT),
                Err(Error::Config(_))
            ),
            "{url}"
        );
    }
    assert!(matches!(
        Verifier::builder("", AUD, "https://a/jwks").build(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Verifier::builder(ISS, "", "https://a/jwks").build(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        builder("https://a/jwks", &clock)
            .cache_time_bounds(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(5)
            )
            .build(),
        Err(Error::Config(_))
    ));
    // A memory fetcher needs no URL policy.
    let fetcher = MemoryFetcher::new(jwks(&[&k]));
    let v = builder("memory:", &clock)
        .fetcher(fetcher.clone())
        .build()
        .expect("memory");
    assert!(v.verify(&token(&k, &claims(NOW))).await.is_ok());
    assert_eq!(fetcher.calls(), 1);
}

#[test]
fn build_outside_a_tokio_runtime_is_a_config_error() {
    let err = Verifier::builder(ISS, AUD, "https://a/jwks").build();
    assert!(matches!(err, Err(Error::Config(m)) if m.contains("Tokio")));
}
