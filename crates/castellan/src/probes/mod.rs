//! The doctor's probes: everything `castellan doctor` reads from the world, and nothing it concludes.
//!
//! Each probe opens, stats, connects or queries, and hands back facts in the types of
//! `castellan_core::doctor` ([`TlsObservation`](castellan_core::doctor::tls::TlsObservation),
//! [`FileFacts`](castellan_core::doctor::files::FileFacts), [`JwksDoc`](castellan_core::doctor::token::JwksDoc),
//! the facts of [`service`](castellan_core::doctor::service)), failures as text. The checks of
//! `castellan_core::doctor` turn those into findings.
//!
//! * [`tls`]: a rustls client that records the chain a server presents and how it treats a client
//!   certificate.
//! * [`files`]: `stat`, POSIX ACLs, `/etc/passwd`, `/etc/group`: who is asking, and what each path is.
//! * [`http`]: JWKS documents and a server's `/healthz` and `/readyz`.
//! * [`store`]: a Castellan store's schema, key ring, secrets and issued certificates.

pub mod files;
pub mod http;
pub mod store;
pub mod tls;

use std::path::Path;

use castellan_core::doctor::Finding;
use castellan_core::doctor::files::read_failure;

/// Reads a file the doctor was asked to judge; what goes wrong is a finding (pushed to `out`).
pub fn read_judged(path: &Path, out: &mut Vec<Finding>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) => {
            out.push(read_failure(
                &path.display().to_string(),
                e.kind(),
                &e.to_string(),
            ));
            None
        }
    }
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
