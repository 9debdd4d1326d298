//! `/v1/secrets`: a secret as read, the body of a write, and a version written.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use castellan_core::secret_store::SecretValue;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Invalid;

/// A version as written or read, without its value (`PUT /v1/secrets/{name}`'s answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    /// The secret's name.
    pub name: String,
    /// The version.
    pub version: i64,
    /// When it was written (seconds since the epoch).
    pub created_at: i64,
}

/// `GET /v1/secrets/{name}`'s answer, also what the agent and `castellan secret get --server` read.
/// `value_base64` always; `value` too when the bytes are UTF-8. `Debug` hides both. Fields added to
/// the answer later are ignored by readers of this version.
#[derive(Clone, Serialize, Deserialize)]
pub struct SecretJson {
    /// The secret's name.
    pub name: String,
    /// The version.
    pub version: i64,
    /// When it was written.
    pub created_at: i64,
    /// The value, base64 (standard alphabet, padded).
    pub value_base64: String,
    /// The value as text, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl std::fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretJson")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl SecretJson {
    /// The answer for version `meta` of a secret holding `bytes`.
    pub fn new(meta: &SecretMeta, bytes: &[u8]) -> Self {
        Self {
            name: meta.name.clone(),
            version: meta.version,
            created_at: meta.created_at,
            value_base64: B64.encode(bytes),
            value: std::str::from_utf8(bytes).ok().map(str::to_owned),
        }
    }

    /// The value's bytes (from `value_base64`, which must agree with `value` when both are given).
    pub fn decode(&self) -> Result<SecretValue, Invalid> {
        let bytes = decode_base64(&self.value_base64)?;
        if let Some(text) = &self.value
            && text.as_bytes() != bytes.as_slice()
        {
            return Err(Invalid("`value` and `value_base64` differ".into()));
        }
        Ok(SecretValue::new(bytes))
    }
}

/// `PUT /v1/secrets/{name}`'s body: the value as text or as base64 (exactly one), and optionally the
/// version the writer expects to replace (`0`: the secret must not exist yet). Fields in alphabetical
/// order: the bytes the CLI sent before this type existed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// Write only if the newest version is this one (check-and-set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<i64>,
    /// The value as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Zeroizing<String>>,
    /// The value, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret")
            .field("cas", &self.cas)
            .finish_non_exhaustive()
    }
}

impl PutSecret {
    /// The body writing `bytes` (as base64), with check-and-set `cas`.
    pub fn base64(bytes: &[u8], cas: Option<i64>) -> Self {
        Self {
            value: None,
            value_base64: Some(Zeroizing::new(B64.encode(bytes))),
            cas,
        }
    }

    /// The value's bytes.
    pub fn bytes(&self) -> Result<SecretValue, Invalid> {
        let bytes = match (&self.value, &self.value_base64) {
            (Some(text), None) => Zeroizing::new(text.as_bytes().to_vec()),
            (None, Some(b64)) => decode_base64(b64.trim())?,
            _ => {
                return Err(Invalid(
                    "give exactly one of `value` (text) and `value_base64`".into(),
                ));
            }
        };
        Ok(SecretValue::new(bytes))
    }
}

fn decode_base64(text: &str) -> Result<Zeroizing<Vec<u8>>, Invalid> {
    B64.decode(text)
        .map(Zeroizing::new)
        .map_err(|_| Invalid("`value_base64` is not valid base64".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_body_is_what_the_cli_sent_before() {
        let body = serde_json::to_string(&PutSecret::base64(b"pw", Some(3))).expect("json");
        assert_eq!(body, r#"{"cas":3,"value_base64":"cHc="}"#);
        let body = serde_json::to_string(&PutSecret::base64(b"pw", None)).expect("json");
        assert_eq!(body, r#"{"value_base64":"cHc="}"#);
    }
}
