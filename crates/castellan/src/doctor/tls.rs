//! `castellan doctor tls`: connects to an endpoint as a strict client would (presenting a client
//! certificate when given one) and judges what it saw.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use castellan::probes::{read_judged, tls as probe};
use castellan_core::doctor::tls::{check_client_files, check_tls, client_key_unusable};
use castellan_core::doctor::{Finding, Input};

use super::args::TlsArgs;
use crate::common::now;

/// Judges the client certificate files (when given), connects, and judges the connection.
pub(super) async fn run(a: &TlsArgs) -> Result<Vec<Finding>> {
    let (host, port) = split_endpoint(&a.endpoint)?;
    let target = probe::Target {
        endpoint: a.endpoint.clone(),
        server_name: a.servername.clone().unwrap_or_else(|| host.clone()),
        host,
        port,
        timeout: Duration::from_secs(a.timeout),
    };
    let mut out = Vec::new();
    let ca_name = a.ca.as_ref().map(|p| p.display().to_string());
    let ca = a.ca.as_ref().and_then(|p| read_judged(p, &mut out));
    let provider = probe::provider();

    // The client certificate, judged as files first.
    let mut key = None;
    if let (Some(cp), Some(kp)) = (&a.cert, &a.key) {
        let (cn, kn) = (cp.display().to_string(), kp.display().to_string());
        let cert_bytes = read_judged(cp, &mut out);
        let key_bytes = read_judged(kp, &mut out);
        if let (Some(c), Some(k)) = (&cert_bytes, &key_bytes) {
            out.extend(check_client_files(
                Input::new(&cn, c),
                Input::new(&kn, k),
                now(),
            ));
            match probe::client_key(&provider, c, k) {
                Ok(ck) => key = Some(ck),
                Err(why) => out.push(client_key_unusable(&cn, &kn, &why)),
            }
        }
    }

    let obs = probe::observe(provider, &target, key).await?;
    let ca_input = match (&ca_name, &ca) {
        (Some(n), Some(c)) => Some(Input::new(n, c)),
        _ => None,
    };
    out.extend(check_tls(&obs, ca_input, now()));
    Ok(out)
}

/// `host:port` (or `[v6]:port`) into its parts.
fn split_endpoint(endpoint: &str) -> Result<(String, u16)> {
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .with_context(|| format!("`{endpoint}`: expected [ADDRESS]:PORT"))?;
        (h.to_owned(), p)
    } else {
        let (h, p) = endpoint
            .rsplit_once(':')
            .with_context(|| format!("`{endpoint}`: expected HOST:PORT"))?;
        (h.to_owned(), p)
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("`{endpoint}`: `{port}` is not a port number"))?;
    if host.is_empty() {
        bail!("`{endpoint}`: the host is empty");
    }
    Ok((host, port))
}
