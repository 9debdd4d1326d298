//! The claims of a verified access token.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The claims of a verified Castellan access token (RFC 9068 profile).
///
/// `iss`, `sub`, `aud` and `exp` are always present in a token that verified; the other registered
/// claims are optional here so tokens from other RFC 9068 issuers fit too (Castellan always sets them).
/// Claims this struct does not name are kept in [`extra`](Claims::extra).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the Castellan server's public URL.
    pub iss: String,
    /// Subject: for `client_credentials` tokens, the client id.
    pub sub: String,
    /// Audiences (a JSON string or array in the token; always a list here).
    #[serde(
        deserialize_with = "one_or_many",
        serialize_with = "string_if_one",
        default
    )]
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The client the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Every other claim, as JSON.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    /// The scopes, split on spaces.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    /// True when the token carries `scope` (an exact match of one space-separated entry).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

/// A string or an array of strings, read straight from the JSON (an untagged enum would buffer it).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;
    impl<'de> serde::de::Visitor<'de> for OneOrMany {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(vec![v])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
            while let Some(s) = seq.next_element::<String>()? {
                all.push(s);
            }
            Ok(all)
        }
    }
    d.deserialize_any(OneOrMany)
}

fn string_if_one<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

/// What the signed payload is read into: every registered claim optional, so that a missing one is
/// reported by name (by [`RawClaims::into_claims`]) rather than as a JSON error.
#[derive(Deserialize)]
pub(crate) struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default, deserialize_with = "opt_one_or_many")]
    aud: Option<Vec<String>>,
    // A time claim that is present must be a number: `null` is refused, not read as absent.
    #[serde(default, deserialize_with = "present_i64")]
    exp: Option<i64>,
    #[serde(default, deserialize_with = "present_i64")]
    iat: Option<i64>,
    #[serde(default, deserialize_with = "present_i64")]
    nbf: Option<i64>,
    jti: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

fn present_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    i64::deserialize(d).map(Some)
}

fn opt_one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    one_or_many(d).map(Some)
}

impl RawClaims {
    /// The claims, or the name of the first required claim that is missing.
    pub(crate) fn into_claims(self) -> Result<Claims, &'static str> {
        Ok(Claims {
            iss: self.iss.ok_or("iss")?,
            sub: self.sub.ok_or("sub")?,
            aud: self.aud.ok_or("aud")?,
            exp: self.exp.ok_or("exp")?,
            iat: self.iat,
            nbf: self.nbf,
            jti: self.jti,
            client_id: self.client_id,
            scope: self.scope,
            extra: self.extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aud_string_or_array_and_extra_claims() {
        let c: Claims = serde_json::from_str(
            r#"{"iss":"i","sub":"s","aud":"a","exp":5,"scope":"x  y","tenant":"t1"}"#,
        )
        .expect("parse");
        assert_eq!(c.aud, vec!["a".to_owned()]);
        assert_eq!(c.extra.get("tenant"), Some(&serde_json::json!("t1")));
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["x", "y"]);
        assert!(c.has_scope("y") && !c.has_scope("x y"));
        let back = serde_json::to_value(&c).expect("json");
        assert_eq!(back["aud"], "a");
        let c: Claims =
            serde_json::from_str(r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":5}"#).expect("p");
        assert_eq!(c.aud.len(), 2);
        assert_eq!(serde_json::to_value(&c).expect("json")["aud"][1], "b");
    }

    #[test]
    fn raw_claims_name_the_missing_claim() {
        let r: RawClaims = serde_json::from_str(r#"{"iss":"i","aud":"a","exp":5}"#).expect("p");
        assert_eq!(r.into_claims().err(), Some("sub"));
    }
}
