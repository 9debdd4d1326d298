//! Tests named after the bug they pin: each was found by a property in `robustness.rs`, fixed, and
//! kept here so the bug cannot come back unnoticed.

use super::*;

/// Regression (found by the properties above, fixed): a correctly signed token whose header carries `"crit": null` (or whose claims
/// carry `"nbf": null` or `"iat": null`) verifies. jsonwebtoken's `Header::crit` and the crate's
/// `RawClaims::nbf`/`iat` are `Option`s, and serde reads `null` as `None`, so `check_header`'s
/// `header.crit.is_some()` and the nbf check never see the member. Low impact (null lists no
/// extension and sets no not-before time), but the token is malformed and is accepted.
#[test]
fn finding_null_crit_nbf_or_iat_is_accepted() {
    let key = &fx().keys[0];
    let mut accepted = Vec::new();
    for (member, in_header) in [("crit", true), ("nbf", false), ("iat", false)] {
        let mut header = json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "at+jwt"});
        let mut payload = json!({"iss": ISS, "sub": "s", "aud": AUD, "exp": NOW + 300});
        if in_header {
            header[member] = Value::Null;
        } else {
            payload[member] = Value::Null;
        }
        if verify(&sign_parts(key, &header, &payload)).is_ok() {
            accepted.push(member);
        }
    }
    assert!(accepted.is_empty(), "accepted with a null {accepted:?}");
}
