//! The one error type of this crate.

/// Why a token was rejected, or why the [`Verifier`](crate::Verifier) could not be built or could not
/// judge a token.
///
/// Token problems come before key problems before claim problems in the order the checks run: size,
/// header (`crit`, `alg`, `typ`, `kid`), key lookup, signature, then claims. Claims are only looked at
/// once the signature is good, so a forged token never learns which of its claims would have passed.
///
/// Messages never echo more than a short, escaped prefix of attacker-controlled input (a `kid`, an
/// `alg`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The token is longer than the configured maximum (8 KiB by default). Checked before any parsing.
    #[error("token is {len} bytes, more than the maximum of {max}")]
    TokenTooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },

    /// Not a compact JWS: not three base64url segments, a header or payload that is not JSON, or a
    /// claim of the wrong JSON type.
    #[error("malformed token: {0}")]
    Malformed(&'static str),

    /// The header's `alg` is not allowed: `none`, any HMAC algorithm (`HS*`), an algorithm this crate
    /// does not support, or one that differs from the `alg` the JWK for the `kid` declares.
    #[error("algorithm {alg} is not allowed")]
    AlgNotAllowed {
        /// The header's `alg`, escaped and shortened.
        alg: String,
    },

    /// The header carries `crit` (RFC 7515 §4.1.11). This crate understands no extension, so any
    /// `crit` is rejected.
    #[error("the token names critical header parameters this verifier does not understand")]
    CritUnsupported,

    /// The header's `typ` is not one of the accepted types (`at+jwt` and `JWT` by default), or it is
    /// missing and a `typ` is required.
    #[error("token type {typ:?} is not accepted")]
    WrongType {
        /// The header's `typ`, escaped and shortened; `None` if absent.
        typ: Option<String>,
    },

    /// The header has no `kid`. Castellan always sets one; a token without it is not Castellan's.
    #[error("the token header has no kid")]
    MissingKid,

    /// No key with this `kid` is in the JWKS, even after a refetch (or the refetch was skipped because
    /// one happened less than the cool-down ago).
    #[error("no key with kid {kid} in the JWKS")]
    UnknownKid {
        /// The header's `kid`, escaped and shortened.
        kid: String,
    },

    /// The signature does not verify with the key named by `kid`.
    #[error("bad signature")]
    BadSignature,

    /// `exp` is in the past, beyond the leeway.
    #[error("token expired at {exp} (now {now}, leeway included)")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The verifier's clock.
        now: i64,
    },

    /// `nbf` is in the future, beyond the leeway.
    #[error("token not valid before {nbf} (now {now}, leeway included)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The verifier's clock.
        now: i64,
    },

    /// `iss` is not the configured issuer (compared byte for byte: mind trailing slashes).
    #[error("wrong issuer")]
    WrongIssuer,

    /// None of the token's `aud` values is a configured audience.
    #[error("wrong audience")]
    WrongAudience,

    /// A required claim (`iss`, `sub`, `aud` or `exp`) is absent.
    #[error("required claim {0} is missing")]
    MissingClaim(&'static str),

    /// No keys were ever fetched, and fetching them failed (or was tried less than the cool-down
    /// ago). Once keys have been fetched they are kept when later fetches fail, so this only happens
    /// before the first good fetch.
    #[error("the JWKS is unavailable: {0}")]
    JwksUnavailable(String),

    /// The verifier's configuration is unusable (an empty audience list, a JWKS URL that is not
    /// HTTPS, no Tokio runtime at `build()`, ...).
    #[error("invalid verifier configuration: {0}")]
    Config(String),
}

/// At most 64 characters of untrusted input, escaped, for error messages and logs.
pub(crate) fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}
