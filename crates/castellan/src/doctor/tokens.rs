//! `castellan doctor jwks` and `castellan doctor token`: fetch key sets, read a token, judge them.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use castellan::probes::{http, read_judged};
use castellan_core::doctor::service::http_client_failed;
use castellan_core::doctor::token::TokenExpectations;
use castellan_core::doctor::{self, Finding, codes};

use super::args::{JwksArgs, TokenArgs};
use crate::common::now;

/// Fetches every JWKS and compares them (and, with a token, which can verify it); one URL is
/// fetched `--samples` times over fresh connections and its key sets compared.
pub(super) async fn jwks(a: &JwksArgs) -> Vec<Finding> {
    if let [one] = a.urls.as_slice()
        && http::is_url(one)
    {
        let docs = http::sample_jwks(one, a.samples).await;
        let url = docs.first().map_or(one.clone(), |d| d.source.clone());
        return doctor::sampling::check_jwks_sampled(&url, &docs, a.token.as_deref(), now());
    }
    let client = match http::client() {
        Ok(c) => c,
        Err(e) => {
            return vec![http_client_failed(
                codes::JWKS_UNREACHABLE,
                "HTTP",
                &format!("{e:#}"),
            )];
        }
    };
    let docs = http::fetch_all(&client, &a.urls).await;
    doctor::token::check_jwks(&docs, a.token.as_deref(), now())
}

/// Reads the token (argument, stdin or file), fetches the JWKS when given one, and judges the token.
pub(super) async fn token(a: &TokenArgs) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let text = if a.token == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the token from stdin")?;
        s
    } else if let Some(file) = a.token.strip_prefix('@') {
        match read_judged(Path::new(file), &mut out) {
            Some(b) => String::from_utf8_lossy(&b).into_owned(),
            None => return Ok(out),
        }
    } else {
        a.token.clone()
    };
    let docs = match &a.jwks {
        Some(src) => http::sample_jwks(src, a.samples).await,
        None => Vec::new(),
    };
    let expect = TokenExpectations {
        issuer: a.issuer.as_deref(),
        audience: a.audience.as_deref(),
        leeway: a.leeway,
    };
    let url = docs.first().map(|d| d.source.clone()).unwrap_or_default();
    out.extend(doctor::sampling::check_token_sampled(
        &text,
        &url,
        &docs,
        &expect,
        now(),
    ));
    Ok(out)
}
