//! The credential file: `{client_id, client_secret, token_endpoint}`, mode 0600.

use std::path::Path;

/// The credential file `castellan init` and `castellan client create --out` write, and the CLI and
/// the agent read.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct CredentialFile {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The token endpoint it was made for, if known.
    #[serde(default)]
    pub token_endpoint: Option<String>,
}

/// Without the secret: a `{:?}` in an error or a log line must not leak it.
impl std::fmt::Debug for CredentialFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialFile")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token_endpoint", &self.token_endpoint)
            .finish()
    }
}

/// Why a credential file could not be read; each caller words it for its users.
#[derive(Debug)]
pub enum CredentialError {
    /// The file could not be read.
    Read(std::io::Error),
    /// It is not a credential file.
    Parse(serde_json::Error),
}

impl std::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(e) => e.fmt(f),
            Self::Parse(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CredentialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read(e) => Some(e),
            Self::Parse(e) => Some(e),
        }
    }
}

impl CredentialFile {
    /// Reads and parses the credential file at `path`.
    pub fn read(path: &Path) -> Result<Self, CredentialError> {
        let text =
            zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(CredentialError::Read)?);
        serde_json::from_str(&text).map_err(CredentialError::Parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_file_never_shows_its_secret_in_debug() {
        let file = CredentialFile {
            client_id: "agent".into(),
            client_secret: "s3cr3t-value".into(),
            token_endpoint: None,
        };
        let text = format!("{file:?} {file:#?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains("agent") && text.contains("redacted"),
            "{text}"
        );
    }
}
