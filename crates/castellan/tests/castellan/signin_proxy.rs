//! Three `castellan serve` processes on one PostgreSQL behind a real round-robin TCP proxy (what a
//! Kubernetes Service or a load balancer does to the founding incident's pods): a person signs in
//! once, then 100 authorization requests and 30 refreshes, each on a new connection and so spread
//! over all three replicas, are never sent back to the login page, and every token verifies against
//! every replica's own JWKS.

use std::collections::HashMap;

use ::reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::support::proxy::{RoundRobin, host_port};
use crate::support::*;

/// What a minimal browser keeps: its cookies.
#[derive(Default)]
struct Jar(HashMap<String, String>);

impl Jar {
    fn take(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().expect("ascii cookie");
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').expect("name=value");
            if attrs.contains("Max-Age=0") {
                self.0.remove(k);
            } else {
                self.0.insert(k.to_owned(), val.to_owned());
            }
        }
    }
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The value of the hidden form field `name` on an HTML page (minijinja escapes `& < > " ' /`).
fn field(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no field {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    let raw = &rest[..rest.find('"').expect("end quote")];
    raw.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn query(location: &str) -> HashMap<String, String> {
    let q = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// Verifies `token` against the JWKS at `jwks` (one replica's), returning its claims.
fn verifies(jwks: &Value, token: &str, iss: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("header");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .unwrap_or_else(|| panic!("kid {:?} not in {jwks}", header.kid));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[iss]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("key"),
        &v,
    )
    .unwrap_or_else(|e| panic!("{e}: {token}"))
    .claims
}

#[test]
fn three_replicas_behind_a_round_robin_proxy_one_sign_in_never_a_second_login_page() {
    let Some(db) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(castellan_store::testing::fresh_postgres_database(
            "signin_behind_proxy",
        ))
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    // The proxy's address first: it is the issuer every replica is configured with.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy port");
    let iss = format!("http://{}", listener.local_addr().expect("addr"));
    std::fs::write(
        cwd.join("castellan.toml"),
        format!("public_url = \"{iss}\"\n[store]\nrefresh_interval = \"200ms\"\n"),
    )
    .expect("config");
    let mk = master_key_file(cwd, "master.key");
    let common = [
        "--config",
        "castellan.toml",
        "--database-url",
        db.as_str(),
        "--master-key-file",
        mk.to_str().expect("path"),
    ];
    let with = |args: &[&'static str]| -> Vec<&str> {
        args.iter().copied().chain(common.iter().copied()).collect()
    };
    ok(&with(&["init", "--alg", "ES256"]), cwd);
    let created = run_with_stdin(
        &with(&["user", "create", "alice", "--password-stdin"]),
        cwd,
        b"correct horse battery\n",
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let redirect = "https://app.example/cb";
    let app: Value = serde_json::from_str(&ok(
        &with(&[
            "client",
            "create",
            "web",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--redirect-uri",
            redirect,
            "--audience",
            "api",
            "--json",
        ]),
        cwd,
    ))
    .expect("json");
    let id = app["client_id"].as_str().expect("id").to_owned();
    let secret = app["client_secret"].as_str().expect("secret").to_owned();
    let servers: Vec<Server> = (0..3).map(|_| Server::start(&common, cwd)).collect();
    let proxy = RoundRobin::start_on(
        listener,
        servers.iter().map(|s| host_port(&s.url)).collect(),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // No connection reuse: every request is a new connection, so the proxy spreads them.
    let http = ::reqwest::Client::builder()
        .redirect(::reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client");
    let jwks: Vec<Value> = servers
        .iter()
        .map(|s| {
            rt.block_on(async {
                http.get(format!("{}/.well-known/jwks.json", s.url))
                    .send()
                    .await?
                    .json()
                    .await
            })
            .expect("jwks")
        })
        .collect();
    let verify_everywhere = |token: &str, aud: &str| -> Value {
        let claims: Vec<Value> = jwks.iter().map(|j| verifies(j, token, &iss, aud)).collect();
        claims[0].clone()
    };

    rt.block_on(async {
        let mut jar = Jar::default();
        let challenge = castellan_core::signin::pkce::challenge_of(&"v".repeat(50));
        let authorize = format!(
            "{iss}/oauth2/authorize?response_type=code&client_id={id}&redirect_uri={}&scope=openid%20offline_access&state=st&code_challenge={challenge}&code_challenge_method=S256",
            form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
        );
        // The login page, then the sign-in: once.
        let page = http.get(&authorize).send().await.expect("authorize");
        assert_eq!(page.status(), 200);
        jar.take(page.headers());
        let html = page.text().await.expect("page");
        let signed = http
            .post(format!("{iss}/signin"))
            .header("cookie", jar.header())
            .form(&[
                ("csrf", field(&html, "csrf")),
                ("request", field(&html, "request")),
                ("username", "alice".into()),
                ("password", "correct horse battery".into()),
            ])
            .send()
            .await
            .expect("sign in");
        assert_eq!(signed.status(), 303, "{:?}", signed.text().await);
        jar.take(signed.headers());
        let exchange = |code: String| {
            let http = http.clone();
            let (iss, id, secret) = (iss.clone(), id.clone(), secret.clone());
            async move {
                let r = http
                    .post(format!("{iss}/oauth2/token"))
                    .basic_auth(&id, Some(&secret))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", redirect),
                        ("code_verifier", &"v".repeat(50)),
                    ])
                    .send()
                    .await
                    .expect("token");
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.expect("json")
            }
        };
        let first = query(signed.headers()[LOCATION].to_str().expect("location"));
        let mut tokens = exchange(first["code"].clone()).await;
        let sub = verify_everywhere(tokens["id_token"].as_str().expect("id token"), &id)["sub"].clone();

        // 100 authorization requests with the session: each a code, never the login page.
        for n in 0..100 {
            let r = http
                .get(&authorize)
                .header("cookie", jar.header())
                .send()
                .await
                .expect("authorize");
            assert_eq!(r.status(), 303, "request {n} was sent to the login page");
            let q = query(r.headers()[LOCATION].to_str().expect("location"));
            assert_eq!(q["state"], "st");
            if n % 10 == 0 {
                let t = exchange(q["code"].clone()).await;
                let claims = verify_everywhere(t["id_token"].as_str().expect("id"), &id);
                assert_eq!(claims["sub"], sub, "the same person on every replica");
            }
        }
        // 30 refreshes, each rotating the token, each on whichever replica the proxy picks.
        for n in 0..30 {
            let r = http
                .post(format!("{iss}/oauth2/token"))
                .basic_auth(&id, Some(&secret))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", tokens["refresh_token"].as_str().expect("rt")),
                ])
                .send()
                .await
                .expect("refresh");
            let status = r.status();
            let next: Value = r.json().await.expect("json");
            assert_eq!(status, 200, "refresh {n}: {next}");
            assert_ne!(next["refresh_token"], tokens["refresh_token"], "rotated");
            let access = next["access_token"].as_str().expect("access token");
            assert_eq!(verify_everywhere(access, "api")["sub"], sub);
            tokens = next;
        }
    });
    let counts = proxy.counts();
    assert!(
        counts.iter().all(|&c| c >= 40),
        "the proxy spread the requests over all three replicas: {counts:?}"
    );
}
