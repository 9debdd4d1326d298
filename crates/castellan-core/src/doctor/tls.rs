//! Judging what a TLS handshake showed. The caller connects (recording the chain the server presents,
//! whether it asked for a client certificate, and any alert); this turns it into findings, including
//! the chain checks of [`super::chain`] for what the server presented.

use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use super::chain::check_presented;
use super::{ChainRequest, Finding, Input, check_chain, codes};
use crate::pki::Purpose;

/// What happened after the client's side of the handshake completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterHandshake {
    /// Nothing within the wait: the server accepted the connection.
    Quiet,
    /// The server sent application data.
    Data,
    /// The server closed the connection without an alert.
    Closed,
    /// The server sent this alert (TLS alert number).
    Alert(u8),
    /// Reading failed otherwise.
    Error(String),
}

/// How the connection went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No TCP connection: the reason.
    ConnectFailed(String),
    /// The handshake failed: the alert received (if one was), and the error text.
    HandshakeFailed {
        /// The TLS alert number the server sent, if it sent one.
        alert: Option<u8>,
        /// What the TLS library said.
        error: String,
    },
    /// The handshake completed.
    Completed {
        /// What a read right after the handshake showed.
        after: AfterHandshake,
    },
}

/// What a `doctor tls` connection observed.
#[derive(Debug, Clone)]
pub struct TlsObservation {
    /// `host:port`.
    pub endpoint: String,
    /// The name sent as SNI and checked against the certificate.
    pub server_name: String,
    /// The certificates the server presented, DER, in the order sent (empty if none were seen).
    pub presented: Vec<Vec<u8>>,
    /// The server sent a CertificateRequest.
    pub client_cert_requested: bool,
    /// The CA names (DER distinguished names) the server said it accepts client certificates from.
    pub acceptable_cas: Vec<Vec<u8>>,
    /// A client certificate was sent.
    pub client_cert_sent: bool,
    /// Negotiated protocol version and cipher suite, for the summary.
    pub negotiated: Option<String>,
    /// The outcome.
    pub outcome: Outcome,
}

/// The TLS alert's name as OpenSSL prints it (`unknown ca`, `bad certificate`, …).
pub fn alert_name(alert: u8) -> String {
    let name = match alert {
        0 => "close notify",
        10 => "unexpected message",
        20 => "bad record mac",
        22 => "record overflow",
        40 => "handshake failure",
        42 => "bad certificate",
        43 => "unsupported certificate",
        44 => "certificate revoked",
        45 => "certificate expired",
        46 => "certificate unknown",
        47 => "illegal parameter",
        48 => "unknown ca",
        49 => "access denied",
        50 => "decode error",
        51 => "decrypt error",
        70 => "protocol version",
        71 => "insufficient security",
        80 => "internal error",
        86 => "inappropriate fallback",
        90 => "user canceled",
        109 => "missing extension",
        110 => "unsupported extension",
        112 => "unrecognized name",
        113 => "bad certificate status response",
        115 => "unknown psk identity",
        116 => "certificate required",
        120 => "no application protocol",
        other => return format!("alert {other}"),
    };
    name.to_owned()
}

/// What a rejection alert means for a client certificate.
fn rejection_meaning(alert: u8) -> &'static str {
    match alert {
        48 => {
            "the server does not trust the CA that issued your client certificate (its CA file \
             lacks your CA, or you did not send your intermediate)"
        }
        42 => {
            "the server found your certificate unacceptable (a broken chain, a wrong purpose — no \
             clientAuth —, or a bad signature)"
        }
        43 => "the server does not support this kind of certificate or key",
        44 => "your client certificate has been revoked",
        45 => "your client certificate (or a CA above it) has expired",
        46 => {
            "the server could not accept your certificate for an unspecified reason (often: no \
             clientAuth extended key usage)"
        }
        49 => "the certificate is valid, but the server's access control refused it",
        51 => {
            "the proof of key possession failed: the client key does not belong to the \
             certificate"
        }
        116 => "the server requires a client certificate",
        _ => "the server refused the connection after seeing your certificate",
    }
}

/// Alerts a server sends when a client certificate is missing or refused.
fn is_client_cert_alert(alert: u8) -> bool {
    matches!(alert, 40 | 42 | 43 | 44 | 45 | 46 | 48 | 49 | 51 | 116)
}

fn ca_names(obs: &TlsObservation) -> String {
    let names: Vec<String> = obs
        .acceptable_cas
        .iter()
        .filter_map(|der| X509Name::from_der(der).ok().map(|(_, n)| format!("`{n}`")))
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(
            " The server accepts client certificates issued by: {}.",
            names.join(", ")
        )
    }
}

/// Judges a TLS connection: how it went, what the server presented (against `ca`, when given, as a
/// strict client), and whether it accepted the client certificate.
pub fn check_tls(obs: &TlsObservation, ca: Option<Input<'_>>, now: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    let ep = obs.endpoint.as_str();
    let alert = match &obs.outcome {
        Outcome::ConnectFailed(why) => {
            out.push(Finding::error(
                codes::CONNECT_FAILED,
                ep,
                format!("cannot open a TCP connection to {ep}: {why}"),
                "check the host and port, that the server is running and listening on that \
                 address, and firewalls in between",
            ));
            return out;
        }
        Outcome::HandshakeFailed { alert, .. } => *alert,
        Outcome::Completed { after } => match after {
            AfterHandshake::Alert(a) => Some(*a),
            _ => None,
        },
    };

    if !obs.presented.is_empty() {
        out.extend(check_presented(
            ep,
            &obs.presented,
            ca,
            Some(obs.server_name.as_str()),
            Purpose::Server,
            now,
        ));
    }

    let client_alert = alert.filter(|a| {
        is_client_cert_alert(*a) && (obs.client_cert_requested || obs.client_cert_sent || *a == 116)
    });
    match client_alert {
        Some(a) => out.push(client_cert_alert(obs, a)),
        None => out.extend(handshake_failure(obs, alert)),
    }

    if let Outcome::Completed { after } = &obs.outcome
        && client_alert.is_none()
    {
        completed(obs, after, &mut out);
    }
    out
}

/// The server answered with an alert about the client certificate: it wanted one, or refused the one
/// sent.
fn client_cert_alert(obs: &TlsObservation, a: u8) -> Finding {
    let ep = obs.endpoint.as_str();
    if !obs.client_cert_sent {
        return Finding::error(
            codes::CLIENT_CERT_REQUIRED,
            ep,
            format!(
                "{ep} requires a client certificate and none was sent: the server answered with \
                 the `{}` alert (mutual TLS: Mosquitto `require_certificate true`).{}",
                alert_name(a),
                ca_names(obs)
            ),
            "connect with a client certificate issued by a CA the server trusts: --cert \
             client-chain.pem --key client-key.pem (castellan pki issue --profile client)",
        );
    }
    Finding::error(
        codes::CLIENT_CERT_REJECTED,
        ep,
        format!(
            "{ep} rejected the client certificate with the `{}` alert: {}.{}",
            alert_name(a),
            rejection_meaning(a),
            ca_names(obs)
        ),
        match a {
            48 => "use a client certificate issued by a CA in the server's CA file (or add \
                   your CA's root to it), and send your intermediate: --cert should be the \
                   client's chain.pem"
                .to_owned(),
            45 => "renew the client certificate".to_owned(),
            51 => "use the key that belongs to the client certificate".to_owned(),
            _ => "check the client certificate with castellan doctor chain --cert CERT --key \
                  KEY --ca SERVER-CA --purpose client"
                .to_owned(),
        },
    )
}

/// A handshake that failed for a reason other than the client certificate (an alert, or an error of
/// the client's own); `None` when it did not fail.
fn handshake_failure(obs: &TlsObservation, alert: Option<u8>) -> Option<Finding> {
    let ep = obs.endpoint.as_str();
    if let Some(a) = alert {
        let error = match &obs.outcome {
            Outcome::HandshakeFailed { error, .. } => error.clone(),
            _ => String::new(),
        };
        return Some(Finding::error(
            codes::TLS_HANDSHAKE_FAILED,
            ep,
            format!(
                "the TLS handshake with {ep} failed: the server sent the `{}` alert{}",
                alert_name(a),
                match a {
                    40 => " (no protocol version, cipher suite or signature scheme in \
                           common — or, with TLS 1.2, a client certificate was required)"
                        .to_owned(),
                    70 => " (no TLS version in common)".to_owned(),
                    112 => format!(
                        " (the server has no certificate for the name `{}`)",
                        obs.server_name
                    ),
                    _ if !error.is_empty() => format!(" ({error})"),
                    _ => String::new(),
                }
            ),
            "check the server's TLS settings and log for the reason it gives",
        ));
    }
    if let Outcome::HandshakeFailed { error, .. } = &obs.outcome {
        return Some(Finding::error(
            codes::TLS_HANDSHAKE_FAILED,
            ep,
            format!("the TLS handshake with {ep} failed: {error}"),
            "check that the port speaks TLS (not plain TCP or HTTP) and the server's log",
        ));
    }
    None
}

/// A completed handshake without a client-certificate alert: what became of the client certificate,
/// and the summary.
fn completed(obs: &TlsObservation, after: &AfterHandshake, out: &mut Vec<Finding>) {
    let ep = obs.endpoint.as_str();
    if obs.client_cert_sent {
        match after {
            AfterHandshake::Closed => out.push(Finding::error(
                codes::CLIENT_CERT_REJECTED,
                ep,
                format!(
                    "{ep} closed the connection right after the handshake, without an \
                     alert: it probably refused the client certificate.{}",
                    ca_names(obs)
                ),
                "check the server's log for why it closed the connection",
            )),
            AfterHandshake::Error(e) => out.push(Finding::error(
                codes::CLIENT_CERT_REJECTED,
                ep,
                format!(
                    "{ep} broke the connection right after the handshake ({e}): it \
                     probably refused the client certificate.{}",
                    ca_names(obs)
                ),
                "check the server's log for why it closed the connection",
            )),
            _ => out.push(Finding::info(
                codes::CLIENT_CERT_ACCEPTED,
                ep,
                format!("{ep} accepted the client certificate"),
                "nothing to do",
            )),
        }
    } else if obs.client_cert_requested {
        out.push(Finding::info(
            codes::CLIENT_CERT_ACCEPTED,
            ep,
            format!("{ep} asks for a client certificate but accepts connections without one"),
            "if clients must authenticate, make the certificate mandatory (Mosquitto: \
             require_certificate true)",
        ));
    }
    out.push(Finding::info(
        codes::TLS_CONNECTED,
        ep,
        format!(
            "TLS handshake with {ep} completed{}; the server presented {} certificate(s)",
            obs.negotiated
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            obs.presented.len()
        ),
        "nothing to do",
    ));
}

/// Judges the client certificate and key files before they are presented: as a chain for a TLS client,
/// without the trust summary (the server's CA file decides trust, and the handshake tells).
pub fn check_client_files(cert: Input<'_>, key: Input<'_>, now: i64) -> Vec<Finding> {
    let req = ChainRequest {
        cert,
        key: Some(key),
        ca: None,
        host: None,
        purpose: Some(Purpose::Client),
        now,
    };
    check_chain(&req)
        .into_iter()
        .filter(|f| f.code != codes::TRUST_NOT_CHECKED && f.code != codes::CHAIN_OK)
        .collect()
}

/// Why the TLS client could not use the client certificate and key, so it sent none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeyUnusable {
    /// The certificate file holds no certificate, or the key file no key, the TLS stack can read.
    NotLoaded,
    /// The TLS stack refused the key: why.
    Refused(String),
}

/// The finding for a client certificate or key the TLS client could not use.
pub fn client_key_unusable(cert_name: &str, key_name: &str, why: &ClientKeyUnusable) -> Finding {
    match why {
        ClientKeyUnusable::NotLoaded => Finding::warning(
            codes::KEY_INVALID,
            format!("{cert_name}, {key_name}"),
            "the client certificate or key cannot be used, so no client certificate was sent",
            "fix the findings about these files first",
        ),
        ClientKeyUnusable::Refused(e) => Finding::warning(
            codes::KEY_INVALID,
            key_name,
            format!("rustls cannot use the client key ({e}), so no certificate was sent"),
            "use a PKCS#8, SEC1 or PKCS#1 key of a supported type",
        ),
    }
}

#[cfg(test)]
mod unusable_key_tests {
    use super::*;

    #[test]
    fn an_unusable_client_key_says_no_certificate_was_sent() {
        let f = client_key_unusable("c.pem", "k.pem", &ClientKeyUnusable::NotLoaded);
        assert_eq!(f.code, codes::KEY_INVALID);
        assert_eq!(f.subject, "c.pem, k.pem");
        assert_eq!(f.severity, super::super::Severity::Warning);
        let f = client_key_unusable(
            "c.pem",
            "k.pem",
            &ClientKeyUnusable::Refused("unsupported curve".to_owned()),
        );
        assert_eq!(f.subject, "k.pem");
        assert!(f.message.contains("(unsupported curve)"), "{}", f.message);
    }

    #[test]
    fn unreadable_client_files_are_findings_not_trust_summaries() {
        let f = check_client_files(
            Input::new("c.pem", b"not pem"),
            Input::new("k.pem", b"not pem either"),
            1_800_000_000,
        );
        assert!(f.iter().any(|f| f.code == codes::PEM_INVALID), "{f:?}");
        assert!(
            f.iter().all(|f| f.code != codes::TRUST_NOT_CHECKED),
            "{f:?}"
        );
    }
}
