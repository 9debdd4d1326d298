//! `castellan doctor chain`: reads the certificate, key and CA files and judges them.

use castellan::probes::read_judged;
use castellan_core::doctor::{self, ChainRequest, Finding, Input};
use castellan_core::pki::Purpose;

use super::args::ChainArgs;
use crate::common::now;

/// Reads the files (a file that cannot be read is a finding) and judges what could be read.
pub(super) fn run(a: &ChainArgs) -> Vec<Finding> {
    let mut out = Vec::new();
    let names = (
        a.cert.display().to_string(),
        a.key.as_ref().map(|p| p.display().to_string()),
        a.ca.as_ref().map(|p| p.display().to_string()),
    );
    let cert = read_judged(&a.cert, &mut out);
    let key = a.key.as_ref().and_then(|p| read_judged(p, &mut out));
    let ca = a.ca.as_ref().and_then(|p| read_judged(p, &mut out));
    let Some(cert) = cert else {
        return out;
    };
    let purpose = a
        .purpose
        .map(Purpose::from)
        .or(a.host.as_ref().map(|_| Purpose::Server));
    let req = ChainRequest {
        cert: Input::new(&names.0, &cert),
        key: match (&names.1, &key) {
            (Some(n), Some(k)) => Some(Input::new(n, k)),
            _ => None,
        },
        ca: match (&names.2, &ca) {
            (Some(n), Some(c)) => Some(Input::new(n, c)),
            _ => None,
        },
        host: a.host.as_deref(),
        purpose,
        now: now(),
    };
    out.extend(doctor::check_chain(&req));
    out
}
