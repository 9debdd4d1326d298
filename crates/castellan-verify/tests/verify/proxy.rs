//! A loopback JWKS URL is fetched directly, never through a proxy from the environment: reqwest
//! would otherwise hand `http://127.0.0.1/...` to whatever `HTTP_PROXY`/`ALL_PROXY` names, and the
//! proxy could answer with its own keys.
//!
//! Environment variables are process-wide and the tests of a binary run in parallel threads, so the
//! one test here re-runs itself in a child process with the proxy variables set (and nothing in
//! this process changes its environment).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use castellan_core::token::Alg;
use castellan_verify::{HttpFetcher, JwksFetcher};

const CHILD: &str = "CASTELLAN_VERIFY_PROXY_TEST_CHILD";
const TEST: &str = "proxy::a_loopback_jwks_is_fetched_directly_whatever_the_proxy_variables_say";

#[test]
fn a_loopback_jwks_is_fetched_directly_whatever_the_proxy_variables_say() {
    if std::env::var_os(CHILD).is_some() {
        return fetch_with_proxies_set();
    }
    // A port nothing listens on: any request sent to the proxy fails to connect.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1");
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        child.env(name, &proxy);
    }
    // An inherited NO_PROXY=127.0.0.1 would make the test pass without the fix.
    for name in ["NO_PROXY", "no_proxy", "REQUEST_METHOD"] {
        child.env_remove(name);
    }
    let out = child.output().expect("run the child");
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The child ran the test (a filter matching nothing also exits 0).
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn fetch_with_proxies_set() {
    assert!(
        std::env::var_os("ALL_PROXY").is_some(),
        "the proxy variables are set"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let a = key(Alg::EdDSA);
        let server = JwksServer::start(jwks(&[&a])).await;
        // Through the builder's own fetcher.
        let clock = clock();
        let verifier = builder(&server.url, &clock)
            .background_refresh(false)
            .http_timeout(Duration::from_secs(5))
            .build()
            .expect("verifier");
        verifier
            .refresh()
            .await
            .expect("fetched directly, not via the dead proxy");
        assert!(verifier.verify(&token(&a, &claims(NOW))).await.is_ok());
        assert_eq!(server.hits(), 1);
        // And through an HttpFetcher built directly.
        let fetcher: Arc<dyn JwksFetcher> = Arc::new(
            HttpFetcher::new(
                &server.url.replace("127.0.0.1", "localhost"),
                Duration::from_secs(5),
            )
            .expect("fetcher"),
        );
        fetcher.fetch(None).await.expect("fetched directly");
        assert_eq!(server.hits(), 2);
    });
}
