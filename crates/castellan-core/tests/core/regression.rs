//! Tests named after the bug they pin: each was found by a property in `robustness.rs`, fixed, and
//! kept here so the bug cannot come back unnoticed.

use super::*;

/// Regression (found by the properties above, fixed): `check_token` on a token whose `exp` is `i64::MIN` (or a float like `-1e300`,
/// which the doctor saturates to `i64::MIN`) panics in debug builds with "attempt to subtract with
/// overflow" at `span(now - exp)` in `doctor/token.rs` `check_claims` (release builds wrap and print
/// a nonsense duration). The signature does not matter: the claims are judged either way, and
/// `check_jwks` with a token reaches the same code.
#[test]
fn finding_check_token_panics_on_a_very_negative_exp() {
    // eyJhbGciOiJFUzI1NiJ9 = {"alg":"ES256"}; the payload is {"exp":-1e300}; the signature is junk.
    let token = format!(
        "eyJhbGciOiJFUzI1NiJ9.{}.c2ln",
        B64.encode(br#"{"exp":-1e300}"#)
    );
    let _ = check_token(&token, None, &TokenExpectations::default(), NOW);
    let token = format!(
        "eyJhbGciOiJFUzI1NiJ9.{}.c2ln",
        B64.encode(format!(r#"{{"exp":{}}}"#, i64::MIN))
    );
    let _ = check_jwks(&[], Some(&token), NOW);
}

/// Regression (found by the properties above, fixed): the fixture's ES256 key published with `"alg": "RSA-OAEP"` (or `""`, or any other
/// string jsonwebtoken maps to `KeyAlgorithm::UNKNOWN_ALGORITHM` or to an encryption algorithm):
/// `check_token` and `check_jwks` find no error and report `signature-valid`. In
/// `doctor/token.rs` `verify_with`, `key_alg.to_string().parse::<Algorithm>()` fails for such an
/// alg, so the alg check is skipped and the token's own `alg` is trusted; castellan-verify refuses
/// the same key (`unknown alg`), so the doctor says "verifies" where Castellan's verifier fails.
#[test]
fn finding_doctor_accepts_a_jwk_with_an_unknown_alg() {
    for alg in ["RSA-OAEP", "none", ""] {
        let mut jwk = fx().jwk.clone();
        jwk["alg"] = Value::from(alg);
        let doc = jwks_doc(&jwk);
        let findings = check_token(&fx().token, Some(&doc), &expectations(), NOW);
        assert!(has_errors(&findings), "alg {alg:?}: {findings:#?}");
        let findings = check_jwks(std::slice::from_ref(&doc), Some(&fx().token), NOW);
        assert!(has_errors(&findings), "alg {alg:?}: {findings:#?}");
    }
}

/// Regression (found by the properties above, fixed): an explicitly requested common name of 65 characters is refused ("longer than 64
/// characters"), but the same name as a DNS SAN with no common name requested is accepted and
/// becomes the subject CN of the issued certificate (`profile/mod.rs` `check_names`:
/// `None => out.dns.first().cloned()` skips `check_cn`). RFC 5280 bounds the CN at 64 characters.
#[test]
fn finding_a_long_dns_name_becomes_an_overlong_common_name() {
    let name = format!("{}.example.com", "a".repeat(53)); // 65 characters
    let profile = Profile::builtin("server").expect("profile");
    assert!(
        profile
            .check_names(Some(&name), std::slice::from_ref(&name), &[], &[])
            .is_err(),
        "a requested 65-character CN is refused"
    );
    let req = IssueRequest {
        dns_names: vec![name.clone()],
        ttl_secs: Some(3600),
        ..IssueRequest::default()
    };
    // Refusing the request is fine too; issuing it must not give a CN over 64 characters.
    if let Ok(set) = fx().issuer.issue(&profile, &req, NOW) {
        let cn = pki::parse_cert_der(&set.cert_der)
            .expect("parse")
            .common_name;
        assert!(
            cn.as_deref().is_none_or(|c| c.chars().count() <= 64),
            "issued with a CN of {} characters",
            name.len()
        );
    }
}
