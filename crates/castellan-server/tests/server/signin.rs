//! Sign-in for people through `oneshot`: the authorization code flow with PKCE, the login page,
//! sessions, refresh rotation and reuse, logout, revocation, introspection, and the attacks each
//! refused with nothing issued. A small browser here keeps cookies and reads the forms back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use castellan_core::envelope::MasterKey;
use castellan_core::signin::pkce;
use castellan_core::token::Alg;
use castellan_core::{Clock, ManualClock};
use castellan_server::clients::{AppRegistration, NewClient};
use castellan_server::http::router;
use castellan_server::init::InitOptions;
use castellan_server::signin::SigninSettings;
use castellan_server::state::AppState;
use castellan_server::users::NewUser;
use castellan_store::Store;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use tower::ServiceExt;
use zeroize::Zeroizing;

const ISS: &str = "http://castellan.test";
const CB: &str = "https://app.example/cb";
const PASSWORD: &str = "correct horse battery";

pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) state: AppState,
    /// A confidential app with refresh tokens.
    pub(crate) web: (String, String),
    /// A public app (no secret).
    pub(crate) spa: String,
    /// A client allowed to introspect.
    pub(crate) api: (String, String),
}

pub(crate) fn fast_signin() -> SigninSettings {
    let mut s = SigninSettings::default();
    s.password.memory_kib = 8192;
    s.password.iterations = 1;
    s.throttle.per_account = 5;
    s.throttle.per_address = 50;
    s
}

async fn app(
    store: &Store,
    name: &str,
    public: bool,
    grants: &[&str],
    now: i64,
) -> (String, String) {
    let c = castellan_server::clients::create_client(
        store,
        NewClient {
            name: name.into(),
            scopes: vec!["invoices:read".into()],
            audience: Some("api".into()),
            token_ttl_secs: None,
            cert_names: Vec::new(),
            app: Some(AppRegistration {
                grant_types: grants.iter().map(|g| (*g).to_owned()).collect(),
                redirect_uris: vec![CB.into(), "http://127.0.0.1/native".into()],
                post_logout_redirect_uris: vec!["https://app.example/bye".into()],
                public,
                require_mfa: false,
                user_claims: vec!["groups".into(), "team".into()],
            }),
        },
        86400,
        now,
    )
    .await
    .expect("app");
    (c.client.client_id, c.client_secret)
}

pub(crate) async fn fixture() -> Fixture {
    fixture_on(None).await
}

/// The fixture on PostgreSQL at `pg` (a fresh database), or on SQLite in a temporary directory.
pub(crate) async fn fixture_on(pg: Option<String>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = match pg {
        Some(url) => Store::connect(&url).await.expect("store"),
        None => Store::open_sqlite(&dir.path().join("t.db"))
            .await
            .expect("store"),
    };
    let (master, _) = MasterKey::generate().expect("mk");
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    castellan_server::init::initialize(
        &store,
        &master,
        clock.now(),
        &InitOptions {
            alg: Alg::ES256,
            key_type: None,
            root_key_offline: false,
        },
    )
    .await
    .expect("init");
    let signin = fast_signin();
    let web = app(
        &store,
        "web",
        false,
        &["authorization_code", "refresh_token"],
        clock.now(),
    )
    .await;
    let spa = app(
        &store,
        "spa",
        true,
        &["authorization_code", "refresh_token"],
        clock.now(),
    )
    .await
    .0;
    let api = castellan_server::clients::create_client(
        &store,
        NewClient {
            name: "api".into(),
            scopes: vec!["tokens:introspect".into()],
            audience: None,
            token_ttl_secs: None,
            app: None,
            cert_names: Vec::new(),
        },
        86400,
        clock.now(),
    )
    .await
    .expect("api");
    castellan_server::users::create_user(
        &store,
        NewUser {
            name: "alice".into(),
            email: Some("alice@example.com".into()),
            password: Some(Zeroizing::new(PASSWORD.into())),
            groups: vec!["admins".into(), "dev".into()],
            claims: [("team".to_owned(), "payments".to_owned())].into(),
            require_mfa: false,
        },
        &castellan_server::signin::Hashing::new(&signin),
        clock.now(),
    )
    .await
    .expect("user");
    let mut settings = super::feed::settings(Duration::from_secs(60));
    settings.replica_id = "r1".into();
    settings.signin = signin;
    let state = AppState::load(store, Arc::new(master), clock.clone(), settings)
        .await
        .expect("state");
    Fixture {
        _dir: dir,
        clock,
        state,
        web,
        spa,
        api: (api.client.client_id, api.client_secret),
    }
}

/// What a response was.
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The value of a hidden field of the page's form, unescaped.
    pub(crate) fn field(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body))
            + needle.len();
        let end = start + self.body[start..].find('"').expect("end");
        unescape(&self.body[start..end])
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Reverses minijinja's HTML escaping (a test reads back what a browser would submit).
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A browser: a cookie jar in front of the router.
#[derive(Default, Clone)]
pub(crate) struct Browser {
    pub(crate) cookies: HashMap<String, String>,
}

impl Browser {
    pub(crate) async fn send(&mut self, state: &AppState, mut req: Request<Body>) -> Resp {
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.headers_mut()
                .insert(header::COOKIE, c.join("; ").parse().expect("cookie"));
        }
        let resp = router(state.clone()).oneshot(req).await.expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        for v in headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().expect("ascii");
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').expect("cookie kv");
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
        let body = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub(crate) async fn get(&mut self, state: &AppState, uri: &str) -> Resp {
        self.send(state, Request::get(uri).body(Body::empty()).expect("req"))
            .await
    }

    pub(crate) async fn post(
        &mut self,
        state: &AppState,
        uri: &str,
        form: &[(&str, &str)],
    ) -> Resp {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            state,
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .expect("req"),
        )
        .await
    }

    /// Signs in on the login page `page` shows.
    pub(crate) async fn sign_in(
        &mut self,
        state: &AppState,
        page: &Resp,
        user: &str,
        pw: &str,
    ) -> Resp {
        let csrf = page.field("csrf");
        let request = page.field("request");
        self.post(
            state,
            "/signin",
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("username", user),
                ("password", pw),
            ],
        )
        .await
    }
}

pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub(crate) fn authorize_url(client_id: &str, extra: &[(&str, &str)]) -> String {
    let challenge = pkce::challenge_of(VERIFIER);
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CB),
        ("scope", "openid profile email invoices:read"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in extra {
        seen.push(k);
        q.append_pair(k, v);
    }
    let s = q.finish();
    // Later pairs with the same name replace earlier ones (so a test can alter a parameter).
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(s.as_bytes()) {
        out.retain(|(ok, _)| ok != &*k);
        out.push((k.into_owned(), v.into_owned()));
    }
    let out: Vec<(String, String)> = out.into_iter().filter(|(_, v)| v != "<drop>").collect();
    format!(
        "/oauth2/authorize?{}",
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(out)
            .finish()
    )
}

/// The query parameters of a redirect.
pub(crate) fn query_of(location: &str) -> HashMap<String, String> {
    let q = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// POST /oauth2/token as a confidential client (`secret` given) or a public one.
pub(crate) async fn token(
    state: &AppState,
    client: (&str, Option<&str>),
    form: &[(&str, &str)],
) -> Resp {
    let mut pairs: Vec<(&str, &str)> = form.to_vec();
    let mut req = Request::post("/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    match client.1 {
        Some(secret) => req = req.header(header::AUTHORIZATION, basic(client.0, secret)),
        None => pairs.push(("client_id", client.0)),
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    Browser::default()
        .send(state, req.body(Body::from(body)).expect("req"))
        .await
}

/// Signs alice in through the authorization endpoint and returns the code.
pub(crate) async fn code_for(f: &Fixture, b: &mut Browser, client_id: &str) -> String {
    let page = b.get(&f.state, &authorize_url(client_id, &[])).await;
    let r = if page.status == StatusCode::OK {
        b.sign_in(&f.state, &page, "alice", PASSWORD).await
    } else {
        page
    };
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let q = query_of(&r.location());
    assert!(r.location().starts_with(CB), "{}", r.location());
    q.get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code: {}", r.location()))
}

async fn exchange(f: &Fixture, code: &str) -> Resp {
    token(
        &f.state,
        (&f.web.0, Some(&f.web.1)),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

fn verify_jwt(f: &Fixture, token: &str, aud: &str) -> Value {
    let jwks: Value = serde_json::from_slice(&f.state.jwks_bytes()).expect("jwks");
    let header = jsonwebtoken::decode_header(token).expect("header");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .expect("kid in JWKS");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
    let mut v = Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[ISS]);
    v.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).expect("dk"), &v)
        .expect("verifies")
        .claims
}

#[tokio::test]
async fn a_person_signs_in_and_the_app_gets_verified_tokens() {
    let f = fixture().await;
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(page.body.contains("name=\"username\"") && page.body.contains("name=\"password\""));
    assert!(
        page.body.contains("<label for=\"username\">"),
        "labelled fields"
    );
    assert!(page.body.contains("web"), "names the app");
    let r = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let q = query_of(&r.location());
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], ISS);
    assert!(b.cookies.contains_key("castellan_session"));
    let set_cookie: Vec<&str> = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("a"))
        .collect();
    assert!(
        set_cookie
            .iter()
            .any(|c| c.starts_with("castellan_session=")
                && c.contains("HttpOnly")
                && c.contains("SameSite=Lax")),
        "{set_cookie:?}"
    );

    let t = exchange(&f, &q["code"]).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let t = t.json();
    let at = verify_jwt(&f, t["access_token"].as_str().expect("at"), "api");
    assert!(at["sub"].as_str().expect("sub").starts_with("usr_"));
    assert_eq!(at["client_id"], f.web.0.as_str());
    assert_eq!(at["scope"], "openid profile email invoices:read");
    assert_eq!(at["groups"], serde_json::json!(["admins", "dev"]));
    assert_eq!(at["team"], "payments");
    let id = verify_jwt(&f, t["id_token"].as_str().expect("id"), &f.web.0);
    assert_eq!(id["sub"], at["sub"]);
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["sid"], at["sid"]);
    assert_eq!(id["auth_time"], f.clock.now());
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["email"], "alice@example.com");
    assert!(t["refresh_token"].as_str().is_some_and(|r| r.len() >= 43));

    // The session signs the next request in without the page.
    let again = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    assert!(query_of(&again.location()).contains_key("code"));

    // userinfo with the access token.
    let mut ui = Browser::default();
    let u = ui
        .send(
            &f.state,
            Request::get("/oauth2/userinfo")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", t["access_token"].as_str().expect("at")),
                )
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    let u = u.json();
    assert_eq!(u["sub"], at["sub"]);
    assert_eq!(u["preferred_username"], "alice");
    assert_eq!(u["email"], "alice@example.com");
}

#[tokio::test]
async fn a_public_client_uses_pkce_without_a_secret() {
    let f = fixture().await;
    let mut b = Browser::default();
    let code = code_for(&f, &mut b, &f.spa).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", VERIFIER),
    ];
    let t = token(&f.state, (&f.spa, None), &form).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    // A public client cannot use client_credentials, and a confidential one must send its secret.
    let cc = token(
        &f.state,
        (&f.spa, None),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(cc.status, StatusCode::BAD_REQUEST, "{}", cc.body);
    let code = code_for(&f, &mut b, &f.web.0).await;
    let no_secret = token(
        &f.state,
        (&f.web.0, None),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(
        no_secret.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        no_secret.body
    );
    assert_eq!(no_secret.json()["error"], "invalid_client");
}

#[tokio::test]
async fn pkce_is_required_and_checked() {
    let f = fixture().await;
    let mut b = Browser::default();
    for (extra, what) in [
        (vec![("code_challenge_method", "plain")], "plain"),
        (vec![("code_challenge", "<drop>")], "missing challenge"),
        (vec![("code_challenge_method", "<drop>")], "missing method"),
    ] {
        let r = b.get(&f.state, &authorize_url(&f.web.0, &extra)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{what}: {}", r.body);
        let q = query_of(&r.location());
        assert_eq!(q["error"], "invalid_request", "{what}");
        assert!(!q.contains_key("code"), "{what}");
    }
    let code = code_for(&f, &mut b, &f.web.0).await;
    let web = (f.web.0.as_str(), Some(f.web.1.as_str()));
    let missing = token(
        &f.state,
        web,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!(
        missing.json()["error"],
        "invalid_request",
        "{}",
        missing.body
    );
    let wrong = token(
        &f.state,
        web,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", &"x".repeat(50)),
        ],
    )
    .await;
    assert_eq!(wrong.json()["error"], "invalid_grant", "{}", wrong.body);
    // The challenge itself as the verifier (what `plain` would accept) fails too.
    let plain = token(
        &f.state,
        web,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", &pkce::challenge_of(VERIFIER)),
        ],
    )
    .await;
    assert_eq!(plain.json()["error"], "invalid_grant", "{}", plain.body);
    // The right verifier still works: failed attempts did not burn the code.
    assert_eq!(exchange(&f, &code).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unregistered_or_altered_redirect_uris_get_a_page_never_a_redirect() {
    let f = fixture().await;
    let mut b = Browser::default();
    for uri in [
        "https://evil.example/cb",
        "https://app.example/cb/extra",
        "https://app.example/cb?x=1",
        "https://app.example/c",
        "http://app.example/cb",
    ] {
        let r = b
            .get(&f.state, &authorize_url(&f.web.0, &[("redirect_uri", uri)]))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(r.headers.get(header::LOCATION).is_none(), "{uri}");
        assert!(r.body.contains("redirect_uri"), "{uri}: {}", r.body);
    }
    let r = b.get(&f.state, &authorize_url("cl_nope", &[])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.headers.get(header::LOCATION).is_none());
    // A loopback redirect URI accepts any port (RFC 8252), and only that.
    let r = b
        .get(
            &f.state,
            &authorize_url(
                &f.web.0,
                &[("redirect_uri", "http://127.0.0.1:53117/native")],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "loopback port: {}", r.body);
}

#[tokio::test]
async fn a_reused_code_fails_and_revokes_what_it_issued() {
    let f = fixture().await;
    let mut b = Browser::default();
    let code = code_for(&f, &mut b, &f.web.0).await;
    let first = exchange(&f, &code).await.json();
    let rt = first["refresh_token"].as_str().expect("rt").to_owned();
    let second = exchange(&f, &code).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.json()["error"], "invalid_grant");
    let r = token(
        &f.state,
        (&f.web.0, Some(&f.web.1)),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "the first exchange's refresh token is revoked: {}",
        r.body
    );
}

#[tokio::test]
async fn a_code_from_another_client_or_redirect_is_refused() {
    let f = fixture().await;
    let mut b = Browser::default();
    let code = code_for(&f, &mut b, &f.spa).await;
    // The confidential app presents the public app's code.
    assert_eq!(exchange(&f, &code).await.json()["error"], "invalid_grant");
    let other_redirect = token(
        &f.state,
        (&f.spa, None),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1/native"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(other_redirect.json()["error"], "invalid_grant");
    // An expired code.
    let code = code_for(&f, &mut b, &f.web.0).await;
    f.clock.advance(61);
    assert_eq!(exchange(&f, &code).await.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let f = fixture().await;
    let mut b = Browser::default();
    let code = code_for(&f, &mut b, &f.web.0).await;
    let first = exchange(&f, &code).await.json();
    let rt1 = first["refresh_token"].as_str().expect("rt").to_owned();
    let first_id = verify_jwt(&f, first["id_token"].as_str().expect("id"), &f.web.0);
    let web = (f.web.0.as_str(), Some(f.web.1.as_str()));
    let r = token(
        &f.state,
        web,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = r.json();
    let rt2 = r["refresh_token"].as_str().expect("rt2").to_owned();
    assert_ne!(rt1, rt2);
    verify_jwt(&f, r["access_token"].as_str().expect("at"), "api");
    // A new ID token (OpenID Connect Core §12.2): the same person, session and sign-in time, no nonce.
    let id = verify_jwt(
        &f,
        r["id_token"].as_str().expect("a new ID token"),
        &f.web.0,
    );
    for claim in ["iss", "sub", "aud", "auth_time", "sid"] {
        assert_eq!(id[claim], first_id[claim], "{claim}");
    }
    assert!(id.get("nonce").is_none(), "{id}");
    // Narrowing the scope works; widening does not.
    let rt3 = {
        let n = token(
            &f.state,
            web,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt2),
                ("scope", "openid"),
            ],
        )
        .await;
        assert_eq!(n.status, StatusCode::OK, "{}", n.body);
        assert_eq!(n.json()["scope"], "openid");
        n.json()["refresh_token"].as_str().expect("rt3").to_owned()
    };
    // Another client cannot use it (and does not burn it).
    let spa = token(
        &f.state,
        (&f.spa, None),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt3)],
    )
    .await;
    assert_eq!(spa.json()["error"], "invalid_grant");
    // Reuse of a rotated token: refused, and the newest token of the family fails too.
    let reuse = token(
        &f.state,
        web,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    let newest = token(
        &f.state,
        web,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt3)],
    )
    .await;
    assert_eq!(newest.json()["error"], "invalid_grant", "{}", newest.body);
}

#[tokio::test]
async fn refresh_tokens_expire_when_idle() {
    let f = fixture().await;
    let mut b = Browser::default();
    let code = code_for(&f, &mut b, &f.web.0).await;
    let rt = exchange(&f, &code).await.json()["refresh_token"]
        .as_str()
        .expect("rt")
        .to_owned();
    f.clock.advance(7 * 86_400 + 1);
    let r = token(
        &f.state,
        (&f.web.0, Some(&f.web.1)),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused() {
    let f = fixture().await;
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    let request = page.field("request");
    for csrf in ["", "A".repeat(43).as_str()] {
        let r = b
            .post(
                &f.state,
                "/signin",
                &[
                    ("csrf", csrf),
                    ("request", &request),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(!b.cookies.contains_key("castellan_session"));
    }
    // Without the CSRF cookie at all (another site's form), even the right field value fails.
    let csrf = page.field("csrf");
    let mut other = Browser::default();
    let r = other
        .post(
            &f.state,
            "/signin",
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn prompt_and_max_age_are_honoured() {
    let f = fixture().await;
    let mut b = Browser::default();
    let none = b
        .get(&f.state, &authorize_url(&f.web.0, &[("prompt", "none")]))
        .await;
    assert_eq!(none.status, StatusCode::SEE_OTHER);
    assert_eq!(query_of(&none.location())["error"], "login_required");
    code_for(&f, &mut b, &f.web.0).await;
    let none = b
        .get(&f.state, &authorize_url(&f.web.0, &[("prompt", "none")]))
        .await;
    assert!(
        query_of(&none.location()).contains_key("code"),
        "a session answers prompt=none"
    );
    let login = b
        .get(&f.state, &authorize_url(&f.web.0, &[("prompt", "login")]))
        .await;
    assert_eq!(login.status, StatusCode::OK, "prompt=login shows the page");
    assert!(login.body.contains("name=\"password\""));
    f.clock.advance(120);
    let old = b
        .get(&f.state, &authorize_url(&f.web.0, &[("max_age", "60")]))
        .await;
    assert_eq!(
        old.status,
        StatusCode::OK,
        "a sign-in older than max_age asks again"
    );
    let fresh_enough = b
        .get(&f.state, &authorize_url(&f.web.0, &[("max_age", "600")]))
        .await;
    assert_eq!(fresh_enough.status, StatusCode::SEE_OTHER);
    let r = b.sign_in(&f.state, &old, "alice", PASSWORD).await;
    let code = query_of(&r.location())["code"].clone();
    let id = exchange(&f, &code).await.json();
    let claims = verify_jwt(&f, id["id_token"].as_str().expect("id"), &f.web.0);
    assert_eq!(claims["auth_time"], f.clock.now(), "the new sign-in's time");
}

#[tokio::test]
async fn a_failed_sign_in_says_so_without_saying_which() {
    let f = fixture().await;
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    let wrong_pw = b.sign_in(&f.state, &page, "alice", "wrong password").await;
    let no_user = b
        .sign_in(&f.state, &page, "mallory", "wrong password")
        .await;
    assert_eq!(wrong_pw.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_user.status, StatusCode::UNAUTHORIZED);
    let msg = |r: &Resp| {
        r.body[r.body.find("id=\"error\"").expect("error")..]
            .split('<')
            .next()
            .expect("m")
            .to_owned()
    };
    assert_eq!(msg(&wrong_pw), msg(&no_user));
    assert!(!b.cookies.contains_key("castellan_session"));
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_is_throttled_and_the_user_signs_in_after_the_window() {
    let f = fixture().await;
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    for _ in 0..5 {
        assert_eq!(
            b.sign_in(&f.state, &page, "alice", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let throttled = b.sign_in(&f.state, &page, "alice", "guess").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key(header::RETRY_AFTER));
    assert!(
        throttled.body.contains("try again in"),
        "{}",
        throttled.body
    );
    // Within the window even the right password waits.
    let right = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    f.clock.advance(61);
    let right = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(
        right.status,
        StatusCode::SEE_OTHER,
        "after the window: {}",
        right.body
    );
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_refresh_tokens() {
    let f = fixture().await;
    let mut b = Browser::default();
    let code = code_for(&f, &mut b, &f.web.0).await;
    let rt = exchange(&f, &code).await.json()["refresh_token"]
        .as_str()
        .expect("rt")
        .to_owned();
    castellan_server::users::set_disabled(f.state.store(), "alice", true, f.clock.now())
        .await
        .expect("disable");
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the session no longer signs in"
    );
    let r = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("disabled"));
    let refreshed = token(
        &f.state,
        (&f.web.0, Some(&f.web.1)),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(refreshed.json()["error"], "invalid_grant");
    castellan_server::users::set_disabled(f.state.store(), "alice", false, f.clock.now())
        .await
        .expect("enable");
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    assert_eq!(
        b.sign_in(&f.state, &page, "alice", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn logout_ends_the_session_and_returns_only_to_registered_uris() {
    let f = fixture().await;
    let mut b = Browser::default();
    let code = code_for(&f, &mut b, &f.web.0).await;
    let t = exchange(&f, &code).await.json();
    let id_token = t["id_token"].as_str().expect("id").to_owned();
    let bad = b
        .get(&f.state, &format!("/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri=https://evil.example/"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.headers.get(header::LOCATION).is_none());
    // Without a hint the person confirms; a link alone does not sign them out.
    let confirm = b.get(&f.state, "/oauth2/logout").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(b.cookies.contains_key("castellan_session"));
    let out = b
        .get(
            &f.state,
            &format!("/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri=https://app.example/bye&state=s2"),
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert_eq!(out.location(), "https://app.example/bye?state=s2");
    assert!(!b.cookies.contains_key("castellan_session"));
    // The session's refresh tokens and access tokens end with it.
    let rt = t["refresh_token"].as_str().expect("rt");
    let r = token(
        &f.state,
        (&f.web.0, Some(&f.web.1)),
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    let intro = token_endpoint_call(
        &f,
        "/oauth2/introspect",
        (&f.api.0, &f.api.1),
        t["access_token"].as_str().expect("at"),
    )
    .await;
    assert_eq!(intro.json()["active"], false, "{}", intro.body);
}

async fn token_endpoint_call(f: &Fixture, path: &str, client: (&str, &str), token: &str) -> Resp {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", token)])
        .finish();
    Browser::default()
        .send(
            &f.state,
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::AUTHORIZATION, basic(client.0, client.1))
                .body(Body::from(body))
                .expect("req"),
        )
        .await
}

#[tokio::test]
async fn revocation_and_introspection() {
    let f = fixture().await;
    let mut b = Browser::default();
    let code = code_for(&f, &mut b, &f.web.0).await;
    let t = exchange(&f, &code).await.json();
    let at = t["access_token"].as_str().expect("at");
    let rt = t["refresh_token"].as_str().expect("rt");
    // Only a client holding tokens:introspect may introspect.
    let denied = token_endpoint_call(&f, "/oauth2/introspect", (&f.web.0, &f.web.1), at).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let i = token_endpoint_call(&f, "/oauth2/introspect", (&f.api.0, &f.api.1), at)
        .await
        .json();
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], f.web.0.as_str());
    assert_eq!(i["token_type"], "Bearer");
    let i = token_endpoint_call(&f, "/oauth2/introspect", (&f.api.0, &f.api.1), rt)
        .await
        .json();
    assert_eq!(i["active"], true);
    assert_eq!(i["token_type"], "refresh_token");
    let garbage = token_endpoint_call(&f, "/oauth2/introspect", (&f.api.0, &f.api.1), "nope")
        .await
        .json();
    assert_eq!(garbage, serde_json::json!({"active": false}));
    // Another client's revocation of the token does nothing; the owner's revokes the family.
    let other = token_endpoint_call(&f, "/oauth2/revoke", (&f.api.0, &f.api.1), rt).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(
        token_endpoint_call(&f, "/oauth2/introspect", (&f.api.0, &f.api.1), rt)
            .await
            .json()["active"],
        true
    );
    let mine = token_endpoint_call(&f, "/oauth2/revoke", (&f.web.0, &f.web.1), rt).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(
        token_endpoint_call(&f, "/oauth2/introspect", (&f.api.0, &f.api.1), rt)
            .await
            .json()["active"],
        false
    );
    let r = token(
        &f.state,
        (&f.web.0, Some(&f.web.1)),
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn discovery_lists_exactly_what_exists() {
    let f = fixture().await;
    let d = Browser::default()
        .get(&f.state, "/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    for (k, path) in [
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("userinfo_endpoint", "/oauth2/userinfo"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("introspection_endpoint", "/oauth2/introspect"),
        ("end_session_endpoint", "/oauth2/logout"),
    ] {
        assert_eq!(d[k], format!("{ISS}{path}"), "{k}");
        let p = path.to_owned();
        // Each listed endpoint exists (answers something other than 404).
        let r = Browser::default().get(&f.state, &p).await;
        assert_ne!(r.status, StatusCode::NOT_FOUND, "{k}");
    }
}

#[tokio::test]
async fn a_user_enrols_totp_and_then_needs_it_a_recovery_code_works_once() {
    let f = fixture().await;
    let mut b = Browser::default();
    code_for(&f, &mut b, &f.web.0).await;
    let enrol = b.get(&f.state, "/account?enrol=totp").await;
    assert_eq!(enrol.status, StatusCode::OK, "{}", enrol.body);
    assert!(enrol.body.contains("<svg"), "a QR code");
    let secret = enrol.field("secret");
    let raw = castellan_core::signin::totp::decode(&secret).expect("base32 secret");
    let csrf = enrol.field("csrf");
    let wrong = b
        .post(
            &f.state,
            "/account/totp",
            &[("csrf", &csrf), ("secret", &secret), ("code", "000000")],
        )
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::BAD_REQUEST,
        "a wrong code does not enrol"
    );
    let code = castellan_core::signin::totp::code_at(&raw, f.clock.now()).expect("code");
    let done = b
        .post(
            &f.state,
            "/account/totp",
            &[("csrf", &csrf), ("secret", &secret), ("code", &code)],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let list = &done.body[done.body.find("id=\"recovery-codes\"").expect("codes")..];
    let recovery: Vec<String> = list
        .split("<code>")
        .skip(1)
        .map(|s| s.split('<').next().expect("c").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    // A new sign-in now asks for the second factor.
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    let second = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert!(second.body.contains("name=\"code\""));
    let post_code = |b: &mut Browser, code: String| {
        let csrf = second.field("csrf");
        let request = second.field("request");
        let state = f.state.clone();
        let mut b = b.clone();
        async move {
            let r = b
                .post(
                    &state,
                    "/signin/totp",
                    &[("csrf", &csrf), ("request", &request), ("code", &code)],
                )
                .await;
            (b, r)
        }
    };
    // The pending session does not authorize on its own.
    let pending = b
        .get(&f.state, &authorize_url(&f.web.0, &[("prompt", "none")]))
        .await;
    assert_eq!(query_of(&pending.location())["error"], "login_required");
    let (b2, r) = post_code(&mut b, "123456".into()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a wrong TOTP code");
    b = b2;
    f.clock.advance(30);
    let (b2, r) = post_code(&mut b, recovery[0].clone()).await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "a recovery code: {}",
        r.body
    );
    let id = exchange(&f, &query_of(&r.location())["code"]).await.json();
    let claims = verify_jwt(&f, id["id_token"].as_str().expect("id"), &f.web.0);
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
    drop(b2);
    // The same recovery code a second time fails; the app's TOTP code works.
    let mut b = Browser::default();
    let page = b.get(&f.state, &authorize_url(&f.web.0, &[])).await;
    let second = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    let csrf = second.field("csrf");
    let request = second.field("request");
    let again = b
        .post(
            &f.state,
            "/signin/totp",
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("code", &recovery[0]),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    let code = castellan_core::signin::totp::code_at(&raw, f.clock.now()).expect("code");
    let ok = b
        .post(
            &f.state,
            "/signin/totp",
            &[("csrf", &csrf), ("request", &request), ("code", &code)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
}

#[tokio::test]
async fn an_app_that_requires_a_second_factor_refuses_a_password_alone() {
    let f = fixture().await;
    let strict = castellan_server::clients::create_client(
        f.state.store(),
        NewClient {
            name: "strict".into(),
            scopes: vec![],
            audience: None,
            token_ttl_secs: None,
            cert_names: Vec::new(),
            app: Some(AppRegistration {
                grant_types: vec!["authorization_code".into()],
                redirect_uris: vec![CB.into()],
                require_mfa: true,
                ..Default::default()
            }),
        },
        86400,
        f.clock.now(),
    )
    .await
    .expect("app");
    f.state.refresh().await.expect("refresh");
    let mut b = Browser::default();
    let page = b
        .get(
            &f.state,
            &authorize_url(&strict.client.client_id, &[("scope", "openid")]),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let r = b.sign_in(&f.state, &page, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("second factor"));
    assert!(r.headers.get(header::LOCATION).is_none(), "no code issued");
}
