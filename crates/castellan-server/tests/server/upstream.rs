//! Sign-in through an upstream identity provider, through `oneshot`, against a fake provider served
//! on 127.0.0.1 by the test (discovery, JWKS, a token endpoint that checks PKCE and the client's
//! secret, and ID tokens signed with an ES256 key the test made). The happy path, the stable `sub`,
//! a sign-in started on one replica and finished on another, and every refusal: tampered, foreign
//! issuer, audience, nonce, expiry, algorithm, allow-list, unverified e-mail, missing pre-created
//! user, replay and another browser's callback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use castellan_core::Clock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use castellan_core::signin::pkce;
use castellan_server::config::IdentityProviderConfig;
use castellan_server::config::identity_provider::{ClaimMapping, FirstSignin};
use castellan_server::signin::upstream::UpstreamProviders;
use castellan_server::signin::upstream_provider::UpstreamProvider;
use castellan_server::state::AppState;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::signin::{Browser, Fixture, Resp, VERIFIER, authorize_url, fixture, query_of, token};

const CLIENT_ID: &str = "castellan-at-corp";
const CLIENT_SECRET: &str = "s3cret-of-castellan-at-corp";
const CB: &str = "https://app.example/cb";
const CALLBACK: &str = "http://castellan.test/signin/upstream/callback";

/// What the fake provider does with the next code.
#[derive(Clone, Default)]
struct Grant {
    nonce: String,
    challenge: String,
    /// Claims replacing (or, with `null`, removing) the defaults.
    claims: serde_json::Map<String, Value>,
    /// Flip a character of the payload after signing.
    tamper: bool,
    /// Sign with HS256 and the client secret instead.
    hmac: bool,
}

struct Fake {
    base: String,
    key: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    codes: Mutex<HashMap<String, Grant>>,
    /// The time its tokens are issued at.
    now: AtomicI64,
    /// Refusals the token endpoint gave, for the test to read.
    refused: Mutex<Vec<String>>,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

async fn discovery(State(f): State<Arc<Fake>>) -> Json<Value> {
    Json(json!({
        "issuer": f.base,
        "authorization_endpoint": format!("{}/authorize", f.base),
        "token_endpoint": format!("{}/token", f.base),
        "jwks_uri": format!("{}/jwks", f.base),
    }))
}

async fn jwks(State(f): State<Arc<Fake>>) -> Json<Value> {
    let p = f.key.public_key().as_ref();
    Json(json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "fake-1", "use": "sig", "alg": "ES256",
        "x": b64(&p[1..33]), "y": b64(&p[33..65]),
    }]}))
}

async fn token_endpoint(
    State(f): State<Arc<Fake>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let refuse = |why: &str| {
        f.refused.lock().expect("lock").push(why.to_owned());
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return refuse("client authentication");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || form.get("redirect_uri").map(String::as_str) != Some(CALLBACK)
    {
        return refuse("grant_type or redirect_uri");
    }
    let Some(g) = form
        .get("code")
        .and_then(|c| f.codes.lock().expect("lock").remove(c))
    else {
        return refuse("unknown code");
    };
    if !pkce::verify(
        form.get("code_verifier")
            .map(String::as_str)
            .unwrap_or_default(),
        &g.challenge,
    ) {
        return refuse("PKCE");
    }
    let now = f.now.load(Ordering::Relaxed);
    let mut claims = json!({
        "iss": f.base, "aud": CLIENT_ID, "sub": "corp-0001",
        "iat": now, "exp": now + 300, "nonce": g.nonce,
        "preferred_username": "carol", "email": "carol@corp.example", "email_verified": true,
        "groups": ["eng", "oncall"],
    });
    for (k, v) in g.claims {
        if v.is_null() {
            claims.as_object_mut().expect("obj").remove(&k);
        } else {
            claims[k] = v;
        }
    }
    let mut jwt = if g.hmac {
        jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
        )
    } else {
        let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some("fake-1".into());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(&f.pkcs8))
    }
    .expect("sign");
    if g.tamper {
        // Another subject in the payload, the signature kept.
        let parts: Vec<&str> = jwt.split('.').collect();
        let mut payload: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .expect("b64"),
        )
        .expect("json");
        payload["preferred_username"] = json!("admin");
        jwt = format!(
            "{}.{}.{}",
            parts[0],
            b64(payload.to_string().as_bytes()),
            parts[2]
        );
    }
    (
        StatusCode::OK,
        Json(json!({"access_token": "at", "token_type": "Bearer", "id_token": jwt})),
    )
}

/// Starts the fake provider; returns it (its base URL in `base`).
async fn fake_provider() -> Arc<Fake> {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let fake = Arc::new(Fake {
        base,
        key,
        pkcs8: doc.as_ref().to_vec(),
        codes: Mutex::new(HashMap::new()),
        now: AtomicI64::new(1_800_000_000),
        refused: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        // The same document under another issuer's path: it names `base`, not `base/other`.
        .route("/other/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token_endpoint))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake
}

fn provider_config(issuer: &str, first: FirstSignin) -> IdentityProviderConfig {
    IdentityProviderConfig {
        name: "corp".into(),
        display_name: Some("Corp SSO".into()),
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret_file: "unused".into(),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        claims: ClaimMapping {
            groups: Some("groups".into()),
            ..ClaimMapping::default()
        },
        allowed_email_domains: vec!["corp.example".into()],
        allowed_subjects: vec!["partner-77".into()],
        first_signin: first,
        ca_file: None,
        algorithms: None,
    }
}

fn with_provider(state: &AppState, fake: &Fake, first: FirstSignin) {
    let p = UpstreamProvider::new(
        provider_config(&fake.base, first),
        Zeroizing::new(CLIENT_SECRET.into()),
    )
    .expect("provider");
    state
        .set_upstream_providers(Arc::new(UpstreamProviders::new(vec![p])))
        .expect("set");
}

async fn setup(first: FirstSignin) -> (Fixture, Arc<Fake>) {
    let fake = fake_provider().await;
    let f = fixture().await;
    with_provider(&f.state, &fake, first);
    (f, fake)
}

/// The login page, then "Continue with Corp SSO": returns the provider's authorization URL's query.
async fn go_upstream(
    state: &AppState,
    b: &mut Browser,
    client_id: &str,
) -> HashMap<String, String> {
    let page = b.get(state, &authorize_url(client_id, &[])).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Continue with Corp SSO"),
        "{}",
        page.body
    );
    let csrf = page.field("csrf");
    let request = page.field("request");
    let r = b
        .post(
            state,
            "/signin/upstream/corp",
            &[("csrf", &csrf), ("request", &request)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().contains("/authorize?"), "{}", r.location());
    query_of(&r.location())
}

/// The provider sends the browser back with a code that yields an ID token shaped by `g`.
async fn come_back(
    state: &AppState,
    b: &mut Browser,
    fake: &Fake,
    up: &HashMap<String, String>,
    mut g: Grant,
) -> Resp {
    if g.nonce.is_empty() {
        g.nonce = up["nonce"].clone();
    }
    g.challenge = up["code_challenge"].clone();
    let code = format!(
        "code-{}",
        fake.codes.lock().expect("lock").len() + rand_suffix()
    );
    fake.codes.lock().expect("lock").insert(code.clone(), g);
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("code", code.as_str()),
            ("state", up["state"].as_str()),
            ("iss", fake.base.as_str()),
        ])
        .finish();
    b.get(state, &format!("/signin/upstream/callback?{q}"))
        .await
}

fn rand_suffix() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 1000
}

fn claims(pairs: &[(&str, Value)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Exchanges Castellan's code and returns the ID token's claims (unverified: the sign-in tests
/// verify Castellan's tokens; here only `sub` matters).
async fn id_token_sub(f: &Fixture, r: &Resp) -> String {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with(CB), "{}", r.location());
    let q = query_of(&r.location());
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
    let t = token(
        &f.state,
        (&f.web.0, Some(&f.web.1)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let id = t.json()["id_token"].as_str().expect("id_token").to_owned();
    let payload = id.split('.').nth(1).expect("payload");
    let c: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64"),
    )
    .expect("json");
    c["sub"].as_str().expect("sub").to_owned()
}

#[tokio::test]
async fn first_upstream_sign_in_creates_the_user_and_the_sub_stays_the_same() {
    let (f, fake) = setup(FirstSignin::Create).await;
    let mut b = Browser::default();
    let up = go_upstream(&f.state, &mut b, &f.web.0).await;
    assert_eq!(up["client_id"], CLIENT_ID);
    assert_eq!(up["redirect_uri"], CALLBACK);
    assert_eq!(up["response_type"], "code");
    assert_eq!(up["code_challenge_method"], "S256");
    assert!(up["scope"].split(' ').any(|s| s == "openid"));
    assert!(up["state"].len() >= 43 && up["nonce"].len() >= 43);
    assert!(
        b.cookies.contains_key("castellan_upstream"),
        "the state is bound to this browser"
    );
    let r = come_back(&f.state, &mut b, &fake, &up, Grant::default()).await;
    let sub = id_token_sub(&f, &r).await;
    assert!(
        fake.refused.lock().expect("lock").is_empty(),
        "PKCE and client auth held"
    );
    let u = f
        .state
        .store()
        .user_by_name("carol")
        .await
        .expect("store")
        .expect("created");
    assert_eq!(sub, u.user_id);
    assert_eq!(u.email.as_deref(), Some("carol@corp.example"));
    assert_eq!(u.groups, "eng oncall");
    assert!(u.password_hash.is_none());
    assert!(
        !b.cookies.contains_key("castellan_upstream"),
        "the state cookie is cleared"
    );

    // Signed out (a new browser), signed in again: the same user, the same sub.
    let mut b2 = Browser::default();
    let up = go_upstream(&f.state, &mut b2, &f.web.0).await;
    let r = come_back(&f.state, &mut b2, &fake, &up, Grant::default()).await;
    assert_eq!(id_token_sub(&f, &r).await, sub);
    assert_eq!(
        f.state.store().users().await.expect("users").len(),
        2,
        "alice and carol only"
    );
}

#[tokio::test]
async fn postgres_a_sign_in_started_on_one_replica_finishes_on_another() {
    let Some(url) =
        castellan_store::testing::fresh_postgres_database("upstream_two_replicas").await
    else {
        return;
    };
    let fake = fake_provider().await;
    fake.now
        .store(castellan_core::SystemClock.now(), Ordering::Relaxed);
    let (store, master) = super::feed::initialized(&url).await;
    let web = castellan_server::clients::create_client(
        &store,
        castellan_server::clients::NewClient {
            name: "web".into(),
            scopes: vec!["invoices:read".into()],
            audience: Some("api".into()),
            token_ttl_secs: None,
            cert_names: Vec::new(),
            app: Some(castellan_server::clients::AppRegistration {
                grant_types: vec!["authorization_code".into()],
                redirect_uris: vec![CB.into()],
                ..Default::default()
            }),
        },
        86400,
        castellan_core::SystemClock.now(),
    )
    .await
    .expect("web");
    let one = super::feed::replica(&url, &master, std::time::Duration::from_secs(60)).await;
    let two = super::feed::replica(&url, &master, std::time::Duration::from_secs(60)).await;
    with_provider(&one, &fake, FirstSignin::Create);
    with_provider(&two, &fake, FirstSignin::Create);
    let mut b = Browser::default();
    let up = go_upstream(&one, &mut b, &web.client.client_id).await;
    let r = come_back(&two, &mut b, &fake, &up, Grant::default()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with(CB), "{}", r.location());
    let u = two
        .store()
        .user_by_name("carol")
        .await
        .expect("store")
        .expect("created");
    // Replayed against the first replica: taken already.
    let mut replay = Browser::default();
    replay.cookies = b.cookies.clone();
    replay
        .cookies
        .insert("castellan_upstream".into(), up["state"].clone());
    let r = come_back(&one, &mut replay, &fake, &up, Grant::default()).await;
    refused(&r, StatusCode::BAD_REQUEST, "already finished");
    assert_eq!(
        one.store()
            .upstream_link("corp", "corp-0001")
            .await
            .expect("link"),
        Some(u.user_id)
    );
}

/// A refusal page: the status, and its message contains `says`; no session, no code.
fn refused(r: &Resp, status: StatusCode, says: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(r.body.contains("Sign-in did not succeed"), "{}", r.body);
    assert!(r.body.contains(says), "wanted {says:?} in {}", r.body);
    assert!(r.headers.get("location").is_none());
}

#[tokio::test]
async fn every_bad_id_token_is_refused_with_a_page_that_says_why() {
    let (f, fake) = setup(FirstSignin::Create).await;
    let cases: Vec<(&str, Grant, StatusCode, &str)> = vec![
        (
            "tampered",
            Grant {
                tamper: true,
                ..Grant::default()
            },
            StatusCode::BAD_REQUEST,
            "signature does not verify",
        ),
        (
            "wrong nonce",
            Grant {
                nonce: "another-sign-in".into(),
                ..Grant::default()
            },
            StatusCode::BAD_REQUEST,
            "nonce differs",
        ),
        (
            "no nonce",
            Grant {
                claims: claims(&[("nonce", Value::Null)]),
                ..Grant::default()
            },
            StatusCode::BAD_REQUEST,
            "nonce differs",
        ),
        (
            "wrong issuer",
            Grant {
                claims: claims(&[("iss", json!("https://evil.example"))]),
                ..Grant::default()
            },
            StatusCode::BAD_REQUEST,
            "another issuer",
        ),
        (
            "wrong audience",
            Grant {
                claims: claims(&[("aud", json!("someone-else"))]),
                ..Grant::default()
            },
            StatusCode::BAD_REQUEST,
            "another client",
        ),
        (
            "several audiences, no azp",
            Grant {
                claims: claims(&[("aud", json!([CLIENT_ID, "other"]))]),
                ..Grant::default()
            },
            StatusCode::BAD_REQUEST,
            "another client",
        ),
        (
            "expired",
            Grant {
                claims: claims(&[("exp", json!(1_799_999_000i64))]),
                ..Grant::default()
            },
            StatusCode::BAD_REQUEST,
            "expired",
        ),
        (
            "HS256 with the client secret",
            Grant {
                hmac: true,
                ..Grant::default()
            },
            StatusCode::BAD_REQUEST,
            "algorithm",
        ),
        (
            "domain outside the allow-list",
            Grant {
                claims: claims(&[("email", json!("mallory@evil.example"))]),
                ..Grant::default()
            },
            StatusCode::FORBIDDEN,
            "evil.example",
        ),
        (
            "unverified e-mail",
            Grant {
                claims: claims(&[("email_verified", json!(false))]),
                ..Grant::default()
            },
            StatusCode::FORBIDDEN,
            "not verified",
        ),
        (
            "no usable name",
            Grant {
                claims: claims(&[("preferred_username", json!("a b"))]),
                ..Grant::default()
            },
            StatusCode::BAD_REQUEST,
            "preferred_username",
        ),
        (
            "a name taken by a local user",
            Grant {
                claims: claims(&[("preferred_username", json!("alice"))]),
                ..Grant::default()
            },
            StatusCode::FORBIDDEN,
            "exists already",
        ),
    ];
    for (what, g, status, says) in cases {
        let mut b = Browser::default();
        let up = go_upstream(&f.state, &mut b, &f.web.0).await;
        let r = come_back(&f.state, &mut b, &fake, &up, g).await;
        refused(&r, status, says);
        assert!(
            !b.cookies.contains_key("castellan_session"),
            "{what}: no session"
        );
        // The page offers a new sign-in for the same app.
        assert!(
            r.body.contains("Sign in again")
                && r.body.contains("href=\"&#x2f;oauth2&#x2f;authorize?"),
            "{what}: {}",
            r.body
        );
    }
    assert!(
        f.state
            .store()
            .user_by_name("carol")
            .await
            .expect("store")
            .is_none(),
        "nobody was created"
    );
    assert!(
        f.state
            .store()
            .user_by_name("admin")
            .await
            .expect("store")
            .is_none()
    );

    // A listed subject gets in without an allowed domain.
    let mut b = Browser::default();
    let up = go_upstream(&f.state, &mut b, &f.web.0).await;
    let g = Grant {
        claims: claims(&[
            ("sub", json!("partner-77")),
            ("email", json!("p@partner.example")),
            ("preferred_username", json!("partner")),
        ]),
        ..Grant::default()
    };
    let r = come_back(&f.state, &mut b, &fake, &up, g).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

#[tokio::test]
async fn a_callback_is_used_once_and_only_in_the_browser_that_started_it() {
    let (f, fake) = setup(FirstSignin::Create).await;
    // Another browser (the victim of login CSRF) is handed the attacker's callback URL.
    let mut attacker = Browser::default();
    let up = go_upstream(&f.state, &mut attacker, &f.web.0).await;
    let mut victim = Browser::default();
    let r = come_back(&f.state, &mut victim, &fake, &up, Grant::default()).await;
    refused(&r, StatusCode::BAD_REQUEST, "another browser");
    // The browser that started it finishes it once; a replay finds nothing.
    let mut b = Browser::default();
    let up = go_upstream(&f.state, &mut b, &f.web.0).await;
    let replay = b.clone();
    let r = come_back(&f.state, &mut b, &fake, &up, Grant::default()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut replay = replay;
    let r = come_back(&f.state, &mut replay, &fake, &up, Grant::default()).await;
    refused(&r, StatusCode::BAD_REQUEST, "already finished");
    // A sign-in left at the provider past its lifetime has expired.
    let mut b = Browser::default();
    let up = go_upstream(&f.state, &mut b, &f.web.0).await;
    f.clock.advance(601);
    let r = come_back(&f.state, &mut b, &fake, &up, Grant::default()).await;
    refused(&r, StatusCode::BAD_REQUEST, "expired");
    // A refusal from the provider itself.
    let mut b = Browser::default();
    let up = go_upstream(&f.state, &mut b, &f.web.0).await;
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("error", "access_denied"), ("state", up["state"].as_str())])
        .finish();
    let r = b
        .get(&f.state, &format!("/signin/upstream/callback?{q}"))
        .await;
    refused(&r, StatusCode::BAD_REQUEST, "access_denied");
}

#[tokio::test]
async fn existing_mode_needs_a_pre_created_user_and_links_it() {
    let (f, fake) = setup(FirstSignin::Existing).await;
    let mut b = Browser::default();
    let up = go_upstream(&f.state, &mut b, &f.web.0).await;
    let r = come_back(&f.state, &mut b, &fake, &up, Grant::default()).await;
    refused(&r, StatusCode::FORBIDDEN, "no account here for");
    assert!(
        f.state
            .store()
            .user_by_name("carol")
            .await
            .expect("store")
            .is_none()
    );
    // alice exists: an upstream subject named alice is linked to her, once.
    let alice = f
        .state
        .store()
        .user_by_name("alice")
        .await
        .expect("store")
        .expect("alice");
    let g = || Grant {
        claims: claims(&[("preferred_username", json!("alice"))]),
        ..Grant::default()
    };
    let mut b = Browser::default();
    let up = go_upstream(&f.state, &mut b, &f.web.0).await;
    let r = come_back(&f.state, &mut b, &fake, &up, g()).await;
    assert_eq!(id_token_sub(&f, &r).await, alice.user_id);
    // Another upstream subject calling itself alice does not get her account.
    let mut b = Browser::default();
    let up = go_upstream(&f.state, &mut b, &f.web.0).await;
    let mut other = g();
    other.claims.insert("sub".into(), json!("corp-9999"));
    let r = come_back(&f.state, &mut b, &fake, &up, other).await;
    refused(&r, StatusCode::FORBIDDEN, "not linked");
}

#[tokio::test]
async fn the_login_page_without_providers_offers_none() {
    let f = fixture().await;
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    assert!(!page.body.contains("Continue with"));
    let r = b
        .post(
            &f.state,
            "/signin/upstream/corp",
            &[
                ("csrf", &page.field("csrf")),
                ("request", &page.field("request")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_or_names_another_issuer_is_a_502_page() {
    let fake = fake_provider().await;
    for issuer in [
        // Nothing listens there.
        format!("http://127.0.0.1:{}", free_port()),
        // Its discovery document names `fake.base`, not this.
        format!("{}/other", fake.base),
    ] {
        let f = fixture().await;
        let p = UpstreamProvider::new(
            provider_config(&issuer, FirstSignin::Create),
            Zeroizing::new(CLIENT_SECRET.into()),
        )
        .expect("provider");
        f.state
            .set_upstream_providers(Arc::new(UpstreamProviders::new(vec![p])))
            .expect("set");
        let mut b = Browser::default();
        let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
        let r = b
            .post(
                &f.state,
                "/signin/upstream/corp",
                &[
                    ("csrf", &page.field("csrf")),
                    ("request", &page.field("request")),
                ],
            )
            .await;
        refused(&r, StatusCode::BAD_GATEWAY, "could not be reached");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
