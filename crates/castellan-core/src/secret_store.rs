//! The secrets store's rules: what a secret's name may be, how large a value may be, and the context a
//! value is sealed under (see [`crate::envelope`]). Values are opaque bytes; they are sealed before they
//! reach the store and opened only for a caller allowed to read them.

use zeroize::Zeroizing;

/// The largest value, in bytes (a password, a token, a key file, a small config file).
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

/// The longest name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// How many versions of one secret are kept; older ones are destroyed when a new one is written.
pub const KEEP_VERSIONS: i64 = 10;

/// Why a name or value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretInputError {
    /// The name breaks the naming rule.
    #[error(
        "invalid secret name `{0}`: use 1-256 characters, segments of letters, digits, `.`, `_` and `-` separated by single `/` (e.g. `mqtt/broker-password`), no `.` or `..` segment"
    )]
    Name(String),
    /// The value is empty or too large.
    #[error("a secret value must hold 1 to {max} bytes (got {got})", max = MAX_VALUE_BYTES)]
    ValueSize {
        /// Its size.
        got: usize,
    },
}

/// Checks a secret's name: `/`-separated segments of `[A-Za-z0-9._-]`, none empty, `.` or `..`, at
/// most [`MAX_NAME_BYTES`]. Names appear in URLs, logs and file names of tools, so nothing else is
/// allowed: no white space, no control characters, no leading or trailing `/`.
pub fn validate_name(name: &str) -> Result<(), SecretInputError> {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if name.len() > MAX_NAME_BYTES || !name.split('/').all(segment_ok) {
        // Quote at most the allowed length, escaped, so a hostile name cannot flood an error or a log.
        let shown: String = name.chars().take(MAX_NAME_BYTES).collect();
        return Err(SecretInputError::Name(shown.escape_default().to_string()));
    }
    Ok(())
}

/// Checks a value's size.
pub fn validate_value(value: &[u8]) -> Result<(), SecretInputError> {
    if value.is_empty() || value.len() > MAX_VALUE_BYTES {
        return Err(SecretInputError::ValueSize { got: value.len() });
    }
    Ok(())
}

/// The additional authenticated data a version is sealed with: a ciphertext copied to another name or
/// version does not open.
pub fn seal_context(name: &str, version: i64) -> String {
    format!("secret:{name}:{version}")
}

/// What a caller wants to do with a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read a value, or see a name in a list.
    Read,
    /// Write a version, or delete.
    Write,
}

impl Access {
    fn scope(self) -> &'static str {
        match self {
            Access::Read => "secrets:read",
            Access::Write => "secrets:write",
        }
    }
}

/// Whether a token's scopes (space-separated) allow `access` to the secret `name`: `admin`,
/// `secrets:read` / `secrets:write` (every secret), or `secrets:read:PREFIX` / `secrets:write:PREFIX`
/// where PREFIX is the name itself or its leading `/`-separated segments (`secrets:read:mqtt` covers
/// `mqtt` and `mqtt/broker-password`, not `mqttx/a`). A prefix that is not a valid name covers nothing.
pub fn scopes_allow(scopes: &str, access: Access, name: &str) -> bool {
    let base = access.scope();
    scopes.split(' ').any(|s| {
        if s == "admin" || s == base {
            return true;
        }
        let Some(prefix) = s.strip_prefix(base).and_then(|r| r.strip_prefix(':')) else {
            return false;
        };
        validate_name(prefix).is_ok()
            && name
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Whether the scopes allow `access` to at least some secrets (to list the ones they cover).
pub fn scopes_allow_any(scopes: &str, access: Access) -> bool {
    let base = access.scope();
    scopes.split(' ').any(|s| {
        s == "admin"
            || s == base
            || s.strip_prefix(base)
                .and_then(|r| r.strip_prefix(':'))
                .is_some_and(|p| validate_name(p).is_ok())
    })
}

/// A generated value: `bytes` random bytes, as base64url text without padding (usable as a password
/// anywhere: letters, digits, `-` and `_`).
pub fn generate_value(bytes: usize) -> Result<SecretValue, crate::Error> {
    use base64::Engine;
    let mut raw = Zeroizing::new(vec![0u8; bytes]);
    aws_lc_rs::rand::fill(raw.as_mut_slice()).map_err(|_| crate::Error::KeyGeneration)?;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice());
    Ok(SecretValue::new(Zeroizing::new(text.into_bytes())))
}

/// A secret's value. `Debug` shows its length only; the bytes are wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps bytes.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue({} bytes, redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in [
            "a",
            "mqtt/broker-password",
            "App_1/db.url",
            "x/y/z",
            "...a",
            &"a".repeat(256),
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "./a",
            "..",
            "a b",
            "a\nb",
            "a\\b",
            "é",
            "a?b",
            "a%2fb",
            &"a".repeat(257),
        ] {
            assert!(
                matches!(validate_name(bad), Err(SecretInputError::Name(_))),
                "{bad:?}"
            );
        }
        // The refusal quotes a control character escaped, never raw.
        let msg = validate_name("a\u{1b}[2Jb")
            .expect_err("escape")
            .to_string();
        assert!(msg.contains("\\u{1b}") && !msg.contains('\u{1b}'), "{msg}");
    }

    #[test]
    fn values_must_be_between_one_byte_and_the_limit() {
        assert!(validate_value(b"x").is_ok());
        assert!(validate_value(&vec![0u8; MAX_VALUE_BYTES]).is_ok());
        assert_eq!(
            validate_value(b""),
            Err(SecretInputError::ValueSize { got: 0 })
        );
        assert_eq!(
            validate_value(&vec![0u8; MAX_VALUE_BYTES + 1]),
            Err(SecretInputError::ValueSize {
                got: MAX_VALUE_BYTES + 1
            })
        );
    }

    #[test]
    fn generated_values_are_base64url_of_the_size_asked_and_differ() {
        let a = generate_value(32).expect("a");
        let b = generate_value(32).expect("b");
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        );
        assert_ne!(a.expose(), b.expose());
        assert_eq!(generate_value(16).expect("16").expose().len(), 22);
    }

    #[test]
    fn debug_hides_the_value() {
        let v = SecretValue::new(Zeroizing::new(b"hunter2-password".to_vec()));
        let shown = format!("{v:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("16 bytes"), "{shown}");
    }

    #[test]
    fn scopes_cover_every_secret_or_whole_segments_of_a_prefix() {
        use Access::{Read, Write};
        let cases: &[(&str, Access, &str, bool)] = &[
            ("admin", Write, "any/thing", true),
            ("secrets:read", Read, "any/thing", true),
            ("secrets:read", Write, "any/thing", false),
            ("secrets:write", Read, "any/thing", false),
            ("pki:issue secrets:read:mqtt", Read, "mqtt", true),
            ("secrets:read:mqtt", Read, "mqtt/broker-password", true),
            ("secrets:read:mqtt", Read, "mqttx/a", false),
            ("secrets:read:mqtt", Read, "app/mqtt", false),
            ("secrets:read:mqtt/broker", Read, "mqtt/broker/pw", true),
            ("secrets:read:mqtt/broker", Read, "mqtt/brokers", false),
            ("secrets:read:mqtt", Write, "mqtt/pw", false),
            ("secrets:write:app", Write, "app/db", true),
            ("secrets:read:", Read, "a", false),
            ("secrets:read:mqtt/", Read, "mqtt/pw", false),
            ("secrets:read:../x", Read, "../x/y", false),
            ("secrets:readmqtt", Read, "mqtt", false),
            ("secrets:read:*", Read, "a", false),
            ("", Read, "a", false),
        ];
        for &(scopes, access, name, want) in cases {
            assert_eq!(
                scopes_allow(scopes, access, name),
                want,
                "{scopes:?} {access:?} {name}"
            );
        }
        assert!(scopes_allow_any("x secrets:read:mqtt", Read));
        assert!(!scopes_allow_any("secrets:read:mqtt", Write));
        assert!(!scopes_allow_any("secrets:read: secrets:readx", Read));
        assert!(scopes_allow_any("admin", Write));
    }

    #[test]
    fn contexts_differ_by_name_and_version() {
        assert_ne!(seal_context("a", 1), seal_context("a", 2));
        assert_ne!(seal_context("a", 1), seal_context("b", 1));
    }
}
