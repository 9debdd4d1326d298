//! The rejection suite: tokens an attacker would try, each refused for the right reason, without
//! crashes and without making the verifier fetch more than the cool-down allows.

use std::sync::Arc;

use crate::common::*;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use castellan_core::token::{Alg, SigningKey};
use castellan_verify::{Error, ManualClock, Verifier};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

struct Setup {
    server: JwksServer,
    clock: Arc<ManualClock>,
    verifier: Verifier,
    rsa: Arc<SigningKey>,
    rsa_der: Vec<u8>,
    ec: Arc<SigningKey>,
    ed: Arc<SigningKey>,
}

async fn setup() -> Setup {
    let (rsa, rsa_der) = SigningKey::generate(Alg::RS256, None).expect("rsa");
    let rsa = Arc::new(rsa);
    let (ec, ed) = (key(Alg::ES256), key(Alg::EdDSA));
    let server = JwksServer::start(jwks(&[&rsa, &ec, &ed])).await;
    let clock = clock();
    // Over HTTP, and fit for paused time: the tests that count fetches per cool-down move it.
    let verifier = paused_builder(&server.url, &clock)
        .build()
        .expect("verifier");
    // Warm the cache, so every count below starts from one fetch.
    verifier.refresh().await.expect("first fetch");
    assert_eq!(server.hits(), 1);
    Setup {
        server,
        clock,
        verifier,
        rsa,
        rsa_der: rsa_der.to_vec(),
        ec,
        ed,
    }
}

fn b64json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).expect("json"))
}

#[tokio::test]
async fn alg_none_is_refused_in_every_spelling() {
    let s = setup().await;
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let header = json!({"alg": alg, "kid": s.rsa.kid(), "typ": "at+jwt"});
        let payload = claims_json(NOW);
        for signature in ["", "c2lnbmF0dXJl"] {
            let t = format!("{}.{}.{signature}", b64json(&header), b64json(&payload));
            assert_eq!(
                s.verifier.verify(&t).await,
                Err(Error::AlgNotAllowed { alg: alg.into() }),
                "alg {alg:?}, signature {signature:?}"
            );
        }
    }
    // No alg at all, or alg of the wrong JSON type.
    for header in [
        json!({"kid": s.rsa.kid(), "typ": "at+jwt"}),
        json!({"alg": null, "kid": s.rsa.kid()}),
        json!({"alg": ["RS256"], "kid": s.rsa.kid()}),
    ] {
        let t = format!("{}.{}.", b64json(&header), b64json(&claims_json(NOW)));
        assert!(matches!(
            s.verifier.verify(&t).await,
            Err(Error::Malformed(_))
        ));
    }
    assert_eq!(s.server.hits(), 1, "refused before any key lookup");
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let s = setup().await;
    let public = aws_lc_rs::rsa::KeyPair::from_pkcs8(&s.rsa_der).expect("rsa");
    let pkcs1 = public.public_key().as_ref().to_vec();
    let spki = public
        .public_key()
        .as_der()
        .expect("spki")
        .as_ref()
        .to_vec();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD
            .encode(&spki)
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let jwk = s.rsa.jwk();
    let n = B64.decode(jwk.n.as_deref().expect("n")).expect("n bytes");
    let jwk_json = serde_json::to_vec(jwk).expect("jwk json");
    let secrets: [(&str, &[u8]); 6] = [
        ("PEM", pem.as_bytes()),
        ("PEM without newline", pem.trim_end().as_bytes()),
        ("SPKI DER", &spki),
        ("PKCS#1 DER", &pkcs1),
        ("modulus", &n),
        ("JWK JSON", &jwk_json),
    ];
    for (what, secret) in secrets {
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS384,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let mut header = Header::new(alg);
            header.kid = Some(s.rsa.kid().to_owned());
            header.typ = Some("at+jwt".into());
            let t = jsonwebtoken::encode(&header, &claims(NOW), &EncodingKey::from_secret(secret))
                .expect("encode");
            assert_eq!(
                s.verifier.verify(&t).await,
                Err(Error::AlgNotAllowed {
                    alg: format!("{alg:?}")
                }),
                "{alg:?} keyed with the RSA {what}"
            );
        }
    }
    assert_eq!(s.server.hits(), 1);
}

#[tokio::test]
async fn alg_must_be_the_one_the_jwk_declares() {
    let s = setup().await;
    // Each key's kid with another asymmetric alg in the header, signed by a key of that other alg.
    let cases: [(&SigningKey, &SigningKey); 4] = [
        (&s.ec, &s.rsa), // header ES256, kid of the RSA key
        (&s.rsa, &s.ec),
        (&s.ed, &s.ec),
        (&s.ec, &s.ed),
    ];
    for (signer, victim) in cases {
        let header = json!({"alg": signer.alg().as_str(), "kid": victim.kid(), "typ": "at+jwt"});
        let t = sign_parts(signer, &header, &claims_json(NOW));
        assert_eq!(
            s.verifier.verify(&t).await,
            Err(Error::AlgNotAllowed {
                alg: signer.alg().as_str().into()
            })
        );
    }
    // Algorithms jsonwebtoken knows but this crate does not accept.
    for alg in ["PS256", "RS512", "ES384"] {
        let header = json!({"alg": alg, "kid": s.rsa.kid(), "typ": "at+jwt"});
        let t = sign_parts(&s.rsa, &header, &claims_json(NOW));
        assert_eq!(
            s.verifier.verify(&t).await,
            Err(Error::AlgNotAllowed { alg: alg.into() })
        );
    }
    assert_eq!(s.server.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn path_and_sql_kids_are_unknown_without_a_fetch_storm() {
    let s = setup().await;
    let long = "A".repeat(4000);
    let kids = [
        "../../etc/passwd",
        "/etc/passwd",
        "..\\..\\windows\\win.ini",
        "' OR 1=1 --",
        "'; DROP TABLE keys; --",
        "\0",
        "kid\r\nX-Injected: 1",
        "%2e%2e%2f",
        "🔑",
        long.as_str(),
        "",
    ];
    for kid in kids {
        let mut header = header_for(&s.rsa);
        header["kid"] = json!(kid);
        let t = sign_parts(&s.rsa, &header, &claims_json(NOW));
        match s.verifier.verify(&t).await {
            Err(Error::UnknownKid { kid: shown }) => {
                assert!(shown.chars().count() <= 65, "error shows a short prefix");
                assert!(!shown.contains('\n') && !shown.contains('\0'), "escaped");
            }
            other => panic!("kid {:?}: {other:?}", kid.get(..20).unwrap_or(kid)),
        }
    }
    // All within the cool-down after the first fetch: not a single extra fetch.
    assert_eq!(s.server.hits(), 1);
    // After the cool-down, one more fetch at most for the whole lot.
    pass(&s.clock, 31).await;
    for kid in kids {
        let mut header = header_for(&s.rsa);
        header["kid"] = json!(kid);
        let t = sign_parts(&s.rsa, &header, &claims_json(NOW + 31));
        assert!(matches!(
            s.verifier.verify(&t).await,
            Err(Error::UnknownKid { .. })
        ));
    }
    assert_eq!(s.server.hits(), 2);
    // The genuine key still works.
    assert!(
        s.verifier
            .verify(&token(&s.rsa, &claims(NOW + 31)))
            .await
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn thousand_random_kids_cause_at_most_one_fetch_per_cooldown() {
    let s = setup().await;
    let forge = |kid: &str, now: i64| {
        let mut header = header_for(&s.ed);
        header["kid"] = json!(kid);
        sign_parts(&s.ed, &header, &claims_json(now))
    };
    // Inside the cool-down of the first fetch: none.
    for _ in 0..1000 {
        let t = forge(&random_kid(), NOW);
        assert!(matches!(
            s.verifier.verify(&t).await,
            Err(Error::UnknownKid { .. })
        ));
    }
    assert_eq!(s.server.hits(), 1);
    // Each later cool-down window: exactly one, sequential or concurrent.
    for window in 1..=3 {
        pass(&s.clock, 30).await;
        let now = NOW + 30 * window;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let v = s.verifier.clone();
            let t = forge(&random_kid(), now);
            tasks.spawn(async move { v.verify(&t).await });
        }
        while let Some(result) = tasks.join_next().await {
            assert!(matches!(
                result.expect("task"),
                Err(Error::UnknownKid { .. })
            ));
        }
        assert_eq!(s.server.hits(), 1 + window as usize, "window {window}");
    }
}

#[tokio::test(start_paused = true)]
async fn jku_x5u_jwk_and_x5c_headers_are_never_used() {
    let s = setup().await;
    let attacker = key(Alg::RS256);
    let evil = JwksServer::start(jwks(&[&attacker])).await;
    let attacker_jwk = serde_json::to_value(attacker.jwk()).expect("jwk");
    let decoys = [
        ("jku", json!(evil.url)),
        ("x5u", json!(format!("{}/.well-known/jwks.json", evil.base))),
        ("jwk", attacker_jwk),
        ("x5c", json!([STANDARD.encode(b"not a certificate")])),
    ];
    for (member, value) in decoys {
        // The attacker's own kid: not in the configured JWKS.
        let mut header = header_for(&attacker);
        header[member] = value.clone();
        let t = sign_parts(&attacker, &header, &claims_json(NOW));
        assert!(
            matches!(s.verifier.verify(&t).await, Err(Error::UnknownKid { .. })),
            "{member} with the attacker's kid"
        );
        // The genuine kid, signed by the attacker: the genuine key says no.
        let mut header = header_for(&s.rsa);
        header[member] = value;
        let t = sign_parts(&attacker, &header, &claims_json(NOW));
        assert_eq!(
            s.verifier.verify(&t).await,
            Err(Error::BadSignature),
            "{member} with the genuine kid"
        );
    }
    // Past the cool-down the verifier refetches, from the configured URL only.
    pass(&s.clock, 31).await;
    let mut header = header_for(&attacker);
    header["jku"] = json!(evil.url);
    let t = sign_parts(&attacker, &header, &claims_json(NOW + 31));
    assert!(matches!(
        s.verifier.verify(&t).await,
        Err(Error::UnknownKid { .. })
    ));
    assert_eq!(s.server.hits(), 2);
    assert_eq!(evil.hits(), 0, "the jku/x5u server was never contacted");
}

#[tokio::test]
async fn expired_not_yet_valid_wrong_iss_wrong_aud() {
    let s = setup().await;
    let k = &s.ec;
    let mut c = claims(NOW);
    c.exp = NOW - 3600;
    assert_eq!(
        s.verifier.verify(&token(k, &c)).await,
        Err(Error::Expired {
            exp: NOW - 3600,
            now: NOW
        })
    );
    let mut c = claims(NOW);
    c.nbf = NOW + 3600;
    c.exp = NOW + 7200;
    assert_eq!(
        s.verifier.verify(&token(k, &c)).await,
        Err(Error::NotYetValid {
            nbf: NOW + 3600,
            now: NOW
        })
    );
    for iss in [
        "https://evil.test",
        "https://castellan.test/",
        "HTTPS://castellan.test",
        "",
    ] {
        let mut c = claims(NOW);
        c.iss = iss.into();
        assert_eq!(
            s.verifier.verify(&token(k, &c)).await,
            Err(Error::WrongIssuer),
            "{iss:?}"
        );
    }
    for aud in ["other-api", "billing-api ", "BILLING-API", ""] {
        let mut c = claims(NOW);
        c.aud = aud.into();
        assert_eq!(
            s.verifier.verify(&token(k, &c)).await,
            Err(Error::WrongAudience),
            "{aud:?}"
        );
    }
    let mut payload = claims_json(NOW);
    payload["aud"] = json!(["other-api", "reports"]);
    assert_eq!(
        s.verifier
            .verify(&sign_parts(k, &header_for(k), &payload))
            .await,
        Err(Error::WrongAudience)
    );
    // An issuer given as an array is not a StringOrURI: malformed, even if it holds the issuer.
    let mut payload = claims_json(NOW);
    payload["iss"] = json!([ISS]);
    assert!(matches!(
        s.verifier
            .verify(&sign_parts(k, &header_for(k), &payload))
            .await,
        Err(Error::Malformed(_))
    ));
    // Claim problems of a forged token are never reported: the signature fails first.
    let mut c = claims(NOW);
    c.exp = NOW - 3600;
    c.iss = "https://evil.test".into();
    let forged = sign_parts(
        &key(Alg::ES256),
        &header_for(k),
        &serde_json::to_value(&c).expect("c"),
    );
    assert_eq!(s.verifier.verify(&forged).await, Err(Error::BadSignature));
}

#[tokio::test]
async fn missing_claims_and_kid() {
    let s = setup().await;
    let k = &s.ed;
    for claim in ["iss", "sub", "aud", "exp"] {
        let mut payload = claims_json(NOW);
        payload.as_object_mut().expect("object").remove(claim);
        assert_eq!(
            s.verifier
                .verify(&sign_parts(k, &header_for(k), &payload))
                .await,
            Err(Error::MissingClaim(claim)),
        );
    }
    let mut header = header_for(k);
    header.as_object_mut().expect("object").remove("kid");
    assert_eq!(
        s.verifier
            .verify(&sign_parts(k, &header, &claims_json(NOW)))
            .await,
        Err(Error::MissingKid)
    );
    // exp as a string is not a NumericDate.
    let mut payload = claims_json(NOW);
    payload["exp"] = json!("4000000000");
    assert!(matches!(
        s.verifier
            .verify(&sign_parts(k, &header_for(k), &payload))
            .await,
        Err(Error::Malformed(_))
    ));
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let s = setup().await;
    // Garbage that any parser would call malformed: refused for its size alone.
    for filler in ["A", "{", ".", "\u{0}"] {
        let t = filler.repeat(8 * 1024 + 1);
        assert_eq!(
            s.verifier.verify(&t).await,
            Err(Error::TokenTooLarge {
                len: 8193,
                max: 8192
            })
        );
    }
    // At the limit, the same garbage reaches the parser.
    assert!(matches!(
        s.verifier.verify(&"A".repeat(8192)).await,
        Err(Error::Malformed(_))
    ));
    // A genuine token that is too big (a large claim) is refused too, unless the limit is raised.
    let mut payload = claims_json(NOW);
    payload["padding"] = json!("x".repeat(9000));
    let big = sign_parts(&s.rsa, &header_for(&s.rsa), &payload);
    assert!(matches!(
        s.verifier.verify(&big).await,
        Err(Error::TokenTooLarge { .. })
    ));
    let roomy = builder(&s.server.url, &s.clock)
        .max_token_size(64 * 1024)
        .build()
        .expect("verifier");
    assert!(roomy.verify(&big).await.is_ok());
}

#[tokio::test]
async fn crit_headers_are_refused() {
    let s = setup().await;
    let k = &s.rsa;
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!([]),
        json!("b64"),
        json!(1),
    ] {
        let mut header = header_for(k);
        header["crit"] = crit.clone();
        header["exp"] = json!(NOW);
        header["b64"] = json!(true);
        let t = sign_parts(k, &header, &claims_json(NOW));
        assert_eq!(
            s.verifier.verify(&t).await,
            Err(Error::CritUnsupported),
            "crit {crit}"
        );
    }
}

#[tokio::test]
async fn bad_signatures_and_malformed_tokens() {
    let s = setup().await;
    for k in [&s.rsa, &s.ec, &s.ed] {
        let genuine = token(k, &claims(NOW));
        let parts: Vec<&str> = genuine.split('.').collect();
        // Another payload under the genuine signature.
        let mut c = claims(NOW);
        c.scope = "admin".into();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            b64json(&serde_json::to_value(&c).expect("c")),
            parts[2]
        );
        assert_eq!(s.verifier.verify(&swapped).await, Err(Error::BadSignature));
        // A flipped signature bit, an empty signature, a truncated one.
        let mut sig = B64.decode(parts[2]).expect("sig");
        sig[0] ^= 1;
        for bad in [B64.encode(&sig), String::new(), parts[2][..10].to_owned()] {
            let t = format!("{}.{}.{bad}", parts[0], parts[1]);
            assert!(
                matches!(
                    s.verifier.verify(&t).await,
                    Err(Error::BadSignature | Error::Malformed(_))
                ),
                "{:?}",
                k.alg()
            );
        }
        // Signed by another key of the same type under this kid.
        let other = key(k.alg());
        let t = sign_parts(&other, &header_for(k), &claims_json(NOW));
        assert_eq!(s.verifier.verify(&t).await, Err(Error::BadSignature));
    }
    let good = token(&s.ed, &claims(NOW));
    for t in [
        String::new(),
        "abc".into(),
        "a.b".into(),
        "..".into(),
        format!("{good}.extra"),
        format!("{}.e30.c2ln", B64.encode("not json")),
        format!("{}.{}", B64.encode("{\"alg\":\"EdDSA\"}"), "e30"),
    ] {
        assert!(
            matches!(s.verifier.verify(&t).await, Err(Error::Malformed(_))),
            "{t:?}"
        );
    }
    // A payload that is not even base64url: the signature is checked first, and fails.
    let t = format!("{}.!!!.c2ln", good.split('.').next().unwrap_or(""));
    assert_eq!(s.verifier.verify(&t).await, Err(Error::BadSignature));
    // A payload that is not JSON, under a valid signature.
    let mut input = format!("{}.{}", b64json(&header_for(&s.ed)), B64.encode("not json"));
    let sig = s.ed.sign(input.as_bytes()).expect("sign");
    input.push('.');
    input.push_str(&B64.encode(sig));
    assert!(matches!(
        s.verifier.verify(&input).await,
        Err(Error::Malformed(_))
    ));
    assert_eq!(s.server.hits(), 1);
}
