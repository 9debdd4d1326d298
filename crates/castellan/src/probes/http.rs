//! HTTP probes: JWKS documents (from URLs or files) and a server's health endpoints.

use std::time::Duration;

use anyhow::{Context, Result};
use castellan_core::doctor::service::HttpAnswer;
use castellan_core::doctor::token::JwksDoc;

use super::error_chain;

/// The doctor's HTTP client: 10 seconds per request.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("HTTP client")
}

/// A JWKS from a URL (a bare server URL gets /.well-known/jwks.json) or a file.
pub async fn fetch_jwks(client: &reqwest::Client, source: &str) -> JwksDoc {
    if !is_url(source) {
        let body = std::fs::read(source).map_err(|e| format!("cannot read the file: {e}"));
        return JwksDoc {
            source: source.to_owned(),
            body,
        };
    }
    let url = match reqwest::Url::parse(source) {
        Ok(u) if u.path() == "/" || u.path().is_empty() => {
            format!("{}/.well-known/jwks.json", source.trim_end_matches('/'))
        }
        _ => source.to_owned(),
    };
    let body = async {
        let r = client.get(&url).send().await.map_err(|e| error_chain(&e))?;
        let status = r.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        r.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| error_chain(&e))
    }
    .await;
    JwksDoc { source: url, body }
}

/// Whether `source` names a URL (not a file).
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The JWKS at `source` fetched `times` times in turn, each over a fresh connection (a new client,
/// so no connection is reused and a load balancer picks a replica each time). A file is read once.
pub async fn sample_jwks(source: &str, times: u32) -> Vec<JwksDoc> {
    let times = if is_url(source) { times.max(1) } else { 1 };
    let mut docs = Vec::new();
    for _ in 0..times {
        let doc = match client() {
            Ok(c) => fetch_jwks(&c, source).await,
            Err(e) => JwksDoc {
                source: source.to_owned(),
                body: Err(format!("{e:#}")),
            },
        };
        docs.push(doc);
    }
    docs
}

/// The JWKS of every source, fetched concurrently, in the order given (a fetch that panicked is left
/// out).
pub async fn fetch_all(client: &reqwest::Client, urls: &[String]) -> Vec<JwksDoc> {
    let mut set = tokio::task::JoinSet::new();
    for (i, u) in urls.iter().enumerate() {
        let (c, u) = (client.clone(), u.clone());
        set.spawn(async move { (i, fetch_jwks(&c, &u).await) });
    }
    let mut docs: Vec<(usize, JwksDoc)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(d) = r {
            docs.push(d);
        }
    }
    docs.sort_by_key(|(i, _)| *i);
    docs.into_iter().map(|(_, d)| d).collect()
}

/// `GET url`: its status, or why there was no answer.
pub async fn get(client: &reqwest::Client, url: &str) -> Result<HttpAnswer, String> {
    match client.get(url).send().await {
        Ok(r) => Ok(HttpAnswer {
            success: r.status().is_success(),
            status: r.status().to_string(),
        }),
        Err(e) => Err(error_chain(&e)),
    }
}
