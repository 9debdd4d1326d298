//! `[vault]`: the Vault-shaped API (issue 20, docs/vault-compat.md): whether it answers, under which
//! path prefix, and the names of its mounts.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration};

fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// `[vault]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// Answer Vault's API at all.
    pub enabled: bool,
    /// What comes before Vault's `/v1` ("" — the default — answers at Vault's own paths, `/v1/...`,
    /// beside the native API; "/vault" answers at `/vault/v1/...`, the address clients are given being
    /// `https://castellan.example/vault`).
    pub path_prefix: String,
    /// The KV version 2 mount.
    pub kv_mount: String,
    /// The PKI mount.
    pub pki_mount: String,
    /// The AppRole login mount.
    pub approle_mount: String,
    /// The Kubernetes login mount.
    pub kubernetes_mount: String,
    /// The JWT login mount.
    pub jwt_mount: String,
    /// Lifetime of a Vault token (a renewal extends it by this much; never beyond `tokens.max_ttl` from
    /// login); unset: one hour, or `tokens.max_ttl` when that is shorter. A Kubernetes or JWT login's
    /// `token_ttl` of its `[[trusted_issuer]]`, when it has one, is used instead.
    #[serde(deserialize_with = "optional_duration")]
    pub token_ttl: Option<Duration>,
}

impl Default for VaultConfig {
    fn default() -> Self {
        let d = VaultSettings::default();
        Self {
            enabled: d.enabled,
            path_prefix: d.path_prefix,
            kv_mount: d.kv_mount,
            pki_mount: d.pki_mount,
            approle_mount: d.approle_mount,
            kubernetes_mount: d.kubernetes_mount,
            jwt_mount: d.jwt_mount,
            token_ttl: None,
        }
    }
}

fn mount_ok(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl VaultConfig {
    /// Checks the names and gives the settings the server runs with.
    pub fn settings(&self, max_ttl: Duration) -> Result<VaultSettings, ConfigError> {
        let bad = |field: &'static str, message: String| ConfigError::Invalid { field, message };
        let p = &self.path_prefix;
        if !p.is_empty()
            && (!p.starts_with('/') || p.ends_with('/') || !p[1..].split('/').all(mount_ok))
        {
            return Err(bad(
                "vault.path_prefix",
                format!("`{p}` must be empty or a path such as /vault (no trailing slash)"),
            ));
        }
        let mounts = [
            ("vault.kv_mount", &self.kv_mount),
            ("vault.pki_mount", &self.pki_mount),
            ("vault.approle_mount", &self.approle_mount),
            ("vault.kubernetes_mount", &self.kubernetes_mount),
            ("vault.jwt_mount", &self.jwt_mount),
        ];
        for (field, m) in mounts {
            if !mount_ok(m) {
                return Err(bad(
                    field,
                    format!("`{m}` must be one path segment (letters, digits, - _ .)"),
                ));
            }
        }
        let native = NATIVE_AREAS;
        if p.is_empty() && (native.contains(&self.kv_mount.as_str()) || self.kv_mount == "auth") {
            return Err(bad(
                "vault.kv_mount",
                format!(
                    "`{}` is a path of the native API; choose another name or set vault.path_prefix",
                    self.kv_mount
                ),
            ));
        }
        if p.is_empty() && self.pki_mount != "pki" && native.contains(&self.pki_mount.as_str()) {
            return Err(bad(
                "vault.pki_mount",
                format!(
                    "`{}` is a path of the native API; choose another name or set vault.path_prefix",
                    self.pki_mount
                ),
            ));
        }
        if self.kv_mount == self.pki_mount || self.kv_mount == "sys" || self.pki_mount == "sys" {
            return Err(bad(
                "vault.kv_mount",
                "the KV and PKI mounts need names of their own (not sys)".into(),
            ));
        }
        let token_ttl = self.token_ttl.unwrap_or_else(|| {
            Duration::from_secs(VaultSettings::default().token_ttl_secs.unsigned_abs()).min(max_ttl)
        });
        if token_ttl.is_zero() || token_ttl > max_ttl {
            return Err(bad(
                "vault.token_ttl",
                "must be more than zero and at most tokens.max_ttl".into(),
            ));
        }
        Ok(VaultSettings {
            enabled: self.enabled,
            path_prefix: self.path_prefix.clone(),
            kv_mount: self.kv_mount.clone(),
            pki_mount: self.pki_mount.clone(),
            approle_mount: self.approle_mount.clone(),
            kubernetes_mount: self.kubernetes_mount.clone(),
            jwt_mount: self.jwt_mount.clone(),
            token_ttl_secs: i64::try_from(token_ttl.as_secs()).unwrap_or(i64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<crate::config::Config, ConfigError> {
        crate::config::Config::from_toml("c.toml", text)
    }

    #[test]
    fn vault_settings_default_to_vaults_own_paths_and_bad_names_are_refused() {
        let s = parse("")
            .expect("defaults")
            .vault
            .settings(Duration::from_secs(86400))
            .expect("ok");
        assert_eq!(
            (
                s.path_prefix.as_str(),
                s.kv_mount.as_str(),
                s.pki_mount.as_str()
            ),
            ("", "secret", "pki")
        );
        assert_eq!(s.token_ttl_secs, 3600);
        let s = parse(
            "[vault]\npath_prefix = \"/vault\"\nkv_mount = \"secrets\"\ntoken_ttl = \"10m\"\n",
        )
        .expect("a prefix frees the native names")
        .vault
        .settings(Duration::from_secs(86400))
        .expect("ok");
        assert_eq!((s.kv_mount.as_str(), s.token_ttl_secs), ("secrets", 600));
        for (text, field) in [
            ("[vault]\nkv_mount = \"secrets\"\n", "vault.kv_mount"),
            ("[vault]\nkv_mount = \"auth\"\n", "vault.kv_mount"),
            ("[vault]\npki_mount = \"keys\"\n", "vault.pki_mount"),
            ("[vault]\nkv_mount = \"a/b\"\n", "vault.kv_mount"),
            ("[vault]\npath_prefix = \"vault/\"\n", "vault.path_prefix"),
            ("[vault]\ntoken_ttl = \"48h\"\n", "vault.token_ttl"),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
        assert!(
            parse("[vault]\nkv_mnt = \"x\"\n").is_err(),
            "unknown fields are refused"
        );
        // Unset, the lifetime follows a shorter tokens.max_ttl rather than refusing it.
        let cfg =
            parse("[tokens]\ndefault_ttl = \"5m\"\nmax_ttl = \"10m\"\n").expect("short max_ttl");
        let s = cfg.vault.settings(cfg.tokens.max_ttl).expect("ok");
        assert_eq!(s.token_ttl_secs, 600);
    }
}

/// `[vault]`: where the Vault-shaped API answers and under which mount names.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// Answer Vault's API at all.
    pub enabled: bool,
    /// What comes before Vault's `/v1` (empty: Vault's own paths, `/v1/...`).
    pub path_prefix: String,
    /// The KV version 2 mount, over Castellan's secrets.
    pub kv_mount: String,
    /// The PKI mount, over Castellan's profiles as roles.
    pub pki_mount: String,
    /// The AppRole login mount (`auth/{approle_mount}/login`).
    pub approle_mount: String,
    /// The Kubernetes login mount.
    pub kubernetes_mount: String,
    /// The JWT login mount.
    pub jwt_mount: String,
    /// Lifetime of a token (a renewal extends it by this much), at most `tokens.max_ttl` from login.
    pub token_ttl_secs: i64,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            path_prefix: String::new(),
            kv_mount: "secret".into(),
            pki_mount: "pki".into(),
            approle_mount: "approle".into(),
            kubernetes_mount: "kubernetes".into(),
            jwt_mount: "jwt".into(),
            token_ttl_secs: 3600,
        }
    }
}

/// Areas of the native API directly under `/v1/`: a Vault mount may not take these names, except the
/// PKI mount `pki` (told apart by the Vault headers, see the module documentation).
pub const NATIVE_AREAS: [&str; 6] = ["clients", "keys", "pki", "secrets", "sys", "users"];
