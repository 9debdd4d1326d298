//! `doctor token`: one token per finding code, signed by keys made here, checked against a JWKS file.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use castellan_core::token::{AccessClaims, sign_access_token};
use castellan_core::token::{Alg, SigningKey};

use super::doctor;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn claims() -> AccessClaims {
    let n = now();
    AccessClaims {
        iss: "https://auth.example".to_owned(),
        sub: "billing".to_owned(),
        aud: "invoices".to_owned(),
        exp: n + 600,
        iat: n - 5,
        nbf: n - 5,
        jti: "j1".to_owned(),
        client_id: "billing".to_owned(),
        scope: "invoices:read".to_owned(),
    }
}

struct Keys {
    dir: tempfile::TempDir,
    key: SigningKey,
    jwks: String,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = SigningKey::generate(Alg::ES256, None).expect("key");
    let doc = serde_json::json!({ "keys": [key.jwk()] });
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, doc.to_string()).expect("jwks");
    Keys {
        jwks: jwks.display().to_string(),
        dir,
        key,
    }
}

/// A JWT with the given header and claims, signed by `key` (or with an empty signature).
fn craft(
    header: serde_json::Value,
    claims: &serde_json::Value,
    key: Option<&SigningKey>,
) -> String {
    let mut t = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = key
        .map(|k| k.sign(t.as_bytes()).expect("sign"))
        .unwrap_or_default();
    t.push('.');
    t.push_str(&B64.encode(sig));
    t
}

fn check(k: &Keys, token: &str, extra: &[&str]) -> super::Report {
    let mut args = vec!["token", token, "--jwks", &k.jwks];
    args.extend(extra);
    doctor(&args, k.dir.path())
}

#[test]
fn a_good_token_reports_no_problem() {
    let k = keys();
    let t = sign_access_token(&k.key, &claims()).expect("token");
    let r = check(
        &k,
        &t,
        &["--issuer", "https://auth.example", "--audience", "invoices"],
    );
    r.expect_clean("good token");
    r.expect("signature-valid", 0);
}

#[test]
fn token_expired() {
    let k = keys();
    let t = sign_access_token(
        &k.key,
        &AccessClaims {
            exp: now() - 120,
            ..claims()
        },
    )
    .expect("t");
    let r = check(&k, &t, &[]);
    r.expect("token-expired", 1);
    // Within the leeway it is fine.
    let r = check(&k, &t, &["--leeway", "300"]);
    assert!(!r.has("token-expired"), "{}", r.dump());
}

#[test]
fn token_not_yet_valid() {
    let k = keys();
    let t = sign_access_token(
        &k.key,
        &AccessClaims {
            nbf: now() + 900,
            ..claims()
        },
    )
    .expect("t");
    check(&k, &t, &[]).expect("token-not-yet-valid", 1);
}

#[test]
fn audience_mismatch() {
    let k = keys();
    let t = sign_access_token(&k.key, &claims()).expect("t");
    let f = check(&k, &t, &["--audience", "payments"])
        .expect("audience-mismatch", 1)
        .clone();
    assert!(f["message"].as_str().expect("m").contains("`invoices`"));
}

#[test]
fn issuer_mismatch() {
    let k = keys();
    let t = sign_access_token(&k.key, &claims()).expect("t");
    let r = check(&k, &t, &["--issuer", "https://auth.example/"]);
    let msg = r.expect("issuer-mismatch", 1)["message"]
        .as_str()
        .expect("m")
        .to_owned();
    assert!(msg.contains("trailing slash"), "{msg}");
}

#[test]
fn alg_not_allowed() {
    let k = keys();
    let c = serde_json::to_value(claims()).expect("claims");
    // `alg: none`, unsigned.
    let none = craft(serde_json::json!({"alg": "none", "typ": "JWT"}), &c, None);
    let r = check(&k, &none, &[]);
    assert!(
        r.expect("alg-not-allowed", 1)["message"]
            .as_str()
            .expect("m")
            .contains("none")
    );
    // HMAC with the kid of the published EC key: algorithm confusion.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(k.key.kid().to_owned()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &c,
        &jsonwebtoken::EncodingKey::from_secret(b"the public key, as a secret"),
    )
    .expect("hs256");
    let r = check(&k, &hs, &[]);
    assert!(
        r.expect("alg-not-allowed", 1)["message"]
            .as_str()
            .expect("m")
            .contains("HMAC")
    );
}

#[test]
fn token_malformed() {
    let k = keys();
    for garbage in [
        "not-a-token",
        "a.b",
        "e30.!!!.x",
        "\u{1F600}.\u{1F600}.\u{1F600}",
    ] {
        check(&k, garbage, &[]).expect("token-malformed", 1);
    }
    // From an unreadable file: a finding too.
    let r = doctor(&["token", "@/nonexistent/token.txt"], k.dir.path());
    r.expect("file-missing", 1);
}

#[test]
fn signature_invalid() {
    let k = keys();
    let t = sign_access_token(&k.key, &claims()).expect("t");
    // Another key signs, under the published kid.
    let (other, _) = SigningKey::generate(Alg::ES256, None).expect("key");
    let (head, _) = t.rsplit_once('.').expect("dots");
    let forged = format!(
        "{head}.{}",
        B64.encode(other.sign(head.as_bytes()).expect("sign"))
    );
    let r = check(&k, &forged, &[]);
    assert!(
        r.expect("signature-invalid", 1)["message"]
            .as_str()
            .expect("m")
            .contains("signature verification failed")
    );
}

#[test]
fn unknown_kid() {
    let k = keys();
    let (other, _) = SigningKey::generate(Alg::ES256, None).expect("key");
    let t = sign_access_token(&other, &claims()).expect("t");
    let r = check(&k, &t, &[]);
    let f = r.expect("unknown-kid", 1);
    assert_eq!(f["subject"], other.kid());
    assert!(
        f["message"]
            .as_str()
            .expect("m")
            .contains("a key of its own")
    );
    // Issue 18: an old service's key not imported is named as a cause, with the command.
    assert!(f["message"].as_str().expect("m").contains("not imported"));
    assert!(
        f["fix"]
            .as_str()
            .expect("fix")
            .contains("keys import --pem OLD_KEY.pem --kid LEGACY_KID")
    );
}

#[test]
fn garbage_jwks_is_a_finding() {
    let k = keys();
    std::fs::write(&k.jwks, "<html>not json</html>").expect("write");
    let t = sign_access_token(&k.key, &claims()).expect("t");
    check(&k, &t, &[]).expect("jwks-invalid", 1);
    let r = doctor(
        &["token", &t, "--jwks", "/nonexistent/jwks.json"],
        k.dir.path(),
    );
    r.expect("jwks-unreachable", 1);
}
