//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, one step of skew),
//! computed by `totp-rs`; recovery codes.

use totp_rs::{Algorithm, Secret, TOTP};
use zeroize::Zeroizing;

use crate::error::Error;

/// A new TOTP secret (160 random bits, RFC 4226's recommendation).
pub fn new_secret() -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut b = Zeroizing::new(vec![0u8; 20]);
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::KeyGeneration)?;
    Ok(b)
}

/// The secret as authenticator apps take it (base32, no padding).
pub fn encode(secret: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(Secret::Raw(secret.to_vec()).to_encoded().to_string())
}

/// A base32 secret back to bytes (`None` unless it is 160 bits or more).
pub fn decode(b32: &str) -> Option<Zeroizing<Vec<u8>>> {
    Secret::Encoded(b32.trim().to_ascii_uppercase())
        .to_bytes()
        .ok()
        .filter(|b| b.len() >= 20)
        .map(Zeroizing::new)
}

fn totp(secret: &[u8]) -> Option<TOTP> {
    TOTP::new(Algorithm::SHA1, 6, 0, 30, secret.to_vec()).ok()
}

/// The time step (`unix time / 30`) at which `code` is the secret's code, looking at `now`'s step
/// and one either side, newest first; `None` if it is none of them. The caller records the step so
/// that a code is accepted once (RFC 6238 §5.2: a verifier must not accept the second attempt of
/// the same OTP).
pub fn verify(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret)?;
    // `check` compares in constant time; every step is checked whatever matched.
    let mut matched = None;
    for step in [now / 30 + 1, now / 30, now / 30 - 1] {
        let Ok(at) = u64::try_from(step * 30) else {
            continue;
        };
        if t.check(&code, at) && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// The code at `now` (what an authenticator app shows; for tests and the enrolment check).
pub fn code_at(secret: &[u8], now: i64) -> Option<String> {
    totp(secret).map(|t| t.generate(u64::try_from(now).unwrap_or(0)))
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let label: String = form_urlencoded_component(&format!("{issuer}:{account}"));
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        encode(secret).as_str(),
        form_urlencoded_component(issuer)
    )
}

fn form_urlencoded_component(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Ten new recovery codes (80 random bits each, base32 in groups of four) and their SHA-256 hashes.
pub fn recovery_codes() -> Result<(Vec<String>, Vec<Vec<u8>>), Error> {
    let mut codes = Vec::new();
    let mut hashes = Vec::new();
    for _ in 0..10 {
        let mut b = [0u8; 10];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::KeyGeneration)?;
        let raw = Secret::Raw(b.to_vec())
            .to_encoded()
            .to_string()
            .to_ascii_lowercase();
        let grouped: Vec<String> = raw
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let code = grouped.join("-");
        hashes.push(recovery_hash(&code));
        codes.push(code);
    }
    Ok((codes, hashes))
}

/// The stored form of a recovery code (case, spaces and dashes do not matter).
pub fn recovery_hash(code: &str) -> Vec<u8> {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    crate::secret::hash_secret(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B (SHA-1, the 20-byte ASCII secret), cut to 6 digits.
    #[test]
    fn the_rfc_vectors_verify() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
        ] {
            assert_eq!(code_at(secret, t).as_deref(), Some(code));
            assert_eq!(verify(secret, code, t), Some(t / 30));
            // One step of skew either side, not two; the step is the code's, not now's.
            assert_eq!(verify(secret, code, t + 30), Some(t / 30));
            assert_eq!(verify(secret, code, t - 30), Some(t / 30));
            assert_eq!(verify(secret, code, t + 61), None);
        }
        assert_eq!(verify(secret, "28708", 59), None);
        assert_eq!(verify(secret, "abcdef", 59), None);
    }

    #[test]
    fn secrets_and_recovery_codes_round_trip() {
        let s = new_secret().expect("secret");
        assert_eq!(
            decode(&encode(&s)).expect("decode").as_slice(),
            s.as_slice()
        );
        assert!(decode("AAAA").is_none(), "too short");
        let uri = otpauth_uri(&s, "Castellan", "alice");
        assert!(
            uri.starts_with("otpauth://totp/Castellan%3Aalice?secret="),
            "{uri}"
        );
        let (codes, hashes) = recovery_codes().expect("codes");
        assert_eq!(codes.len(), 10);
        assert_eq!(
            recovery_hash(&codes[3].to_uppercase().replace('-', " ")),
            hashes[3]
        );
        assert_ne!(hashes[0], hashes[1]);
    }
}
