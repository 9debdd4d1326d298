//! Prometheus metrics in the text exposition format: requests by route and status, tokens issued by
//! algorithm, and the key ring as an info metric.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use castellan_core::token::Alg;

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By route, then status (looked up by `&str`: no allocation per request once a route is seen).
    requests: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    tokens: [AtomicU64; 3],
    token_errors: AtomicU64,
    /// notAfter of the certificate the HTTPS listener presents (unix seconds); 0 when serving HTTP.
    tls_not_after: AtomicI64,
}

fn alg_index(alg: Alg) -> usize {
    match alg {
        Alg::RS256 => 0,
        Alg::ES256 => 1,
        Alg::EdDSA => 2,
    }
}

impl Metrics {
    /// Counts a request.
    pub fn request(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            let by_status = match m.get_mut(route) {
                Some(s) => s,
                None => m.entry(route.to_owned()).or_default(),
            };
            *by_status.entry(status).or_insert(0) += 1;
        }
    }

    /// Counts an issued token.
    pub fn token_issued(&self, alg: Alg) {
        self.tokens[alg_index(alg)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused token request.
    pub fn token_refused(&self) {
        self.token_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the notAfter of the certificate the HTTPS listener now presents.
    pub fn tls_certificate(&self, not_after: i64) {
        self.tls_not_after.store(not_after, Ordering::Relaxed);
    }

    /// Renders the exposition text.
    pub fn render(
        &self,
        fingerprint: &str,
        current_kid: &str,
        keys: usize,
        store_up: bool,
    ) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP castellan_store_up Whether the store answered its last check (1) or is unreachable (0).\n");
        out.push_str("# TYPE castellan_store_up gauge\n");
        let _ = writeln!(out, "castellan_store_up {}", u8::from(store_up));
        out.push_str("# HELP castellan_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE castellan_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for (route, by_status) in m.iter() {
                for (status, n) in by_status {
                    let _ = writeln!(
                        out,
                        "castellan_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                        escape(route)
                    );
                }
            }
        }
        out.push_str(
            "# HELP castellan_tokens_issued_total Access tokens issued, by signing algorithm.\n",
        );
        out.push_str("# TYPE castellan_tokens_issued_total counter\n");
        for alg in Alg::ALL {
            let n = self.tokens[alg_index(alg)].load(Ordering::Relaxed);
            let _ = writeln!(out, "castellan_tokens_issued_total{{alg=\"{alg}\"}} {n}");
        }
        out.push_str("# HELP castellan_token_requests_refused_total Token requests answered with an OAuth error.\n");
        out.push_str("# TYPE castellan_token_requests_refused_total counter\n");
        let _ = writeln!(
            out,
            "castellan_token_requests_refused_total {}",
            self.token_errors.load(Ordering::Relaxed)
        );
        out.push_str("# HELP castellan_keyring_info The loaded key ring: JWKS fingerprint and signing kid.\n");
        out.push_str("# TYPE castellan_keyring_info gauge\n");
        let _ = writeln!(
            out,
            "castellan_keyring_info{{fingerprint=\"{}\",current_kid=\"{}\",keys=\"{keys}\"}} 1",
            escape(fingerprint),
            escape(current_kid)
        );
        let tls = self.tls_not_after.load(Ordering::Relaxed);
        if tls != 0 {
            out.push_str("# HELP castellan_tls_certificate_not_after_seconds notAfter of the certificate the HTTPS listener presents (unix seconds).\n");
            out.push_str("# TYPE castellan_tls_certificate_not_after_seconds gauge\n");
            let _ = writeln!(out, "castellan_tls_certificate_not_after_seconds {tls}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
