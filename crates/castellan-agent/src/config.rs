//! `agent.toml`: what to deliver where. Unknown fields are errors that name the field and its line.
//!
//! `[[certificate]]` tables name certificate sets (the credential's client needs scope `pki:issue`),
//! `[[secret]]` tables name secrets from the secrets store, each written to one file (the client needs
//! scope `secrets:read`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use castellan_core::pki::KeyType;
use castellan_files::owner::Owner;
use serde::{Deserialize, Deserializer};

use crate::AgentError;

/// How the agent signs in to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// `credential_file`: a client id and secret (client_secret_basic).
    #[default]
    ClientSecret,
    /// `token_file`: a Kubernetes projected service-account token (a client assertion).
    Kubernetes,
}

/// Where a projected service-account token is mounted when `token_file` is not given.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/castellan/token";

/// The agent's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Castellan's URL, e.g. `http://castellan:8270`.
    pub server: String,
    /// PEM certificates to trust for an `https://` server, alone (e.g. Castellan's `root.pem`); the
    /// system's roots when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How the agent signs in: `client_secret` (the default: `credential_file`) or `kubernetes` (the
    /// pod's projected service-account token in `token_file`, sent as an RFC 7523 client assertion and
    /// read again for every token request, so a token the kubelet rotated is picked up).
    #[serde(default)]
    pub auth: AuthMethod,
    /// JSON file with `client_id` and `client_secret` of a client with scope `pki:issue` (for
    /// `[[certificate]]`) and `secrets:read` (for `[[secret]]`); required with `auth = "client_secret"`.
    #[serde(default)]
    pub credential_file: Option<PathBuf>,
    /// `auth = "kubernetes"`: the projected token file (default
    /// `/var/run/secrets/castellan/token`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Where to write the status (JSON): per certificate expiry, last success, last error.
    #[serde(default)]
    pub status_file: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// How often the CA bundle is checked for a change (default 5m).
    #[serde(default = "default_ca_check", deserialize_with = "duration")]
    pub ca_check_interval: Duration,
    /// How often the secrets are fetched again to pick up a new version (default 1m).
    #[serde(default = "default_secret_check", deserialize_with = "duration")]
    pub secret_check_interval: Duration,
    /// How long a reload command may run before it is killed (default 1m), so that a command that
    /// hangs cannot stall renewals; a killed command counts as failed and runs again on the next pass.
    #[serde(default = "default_reload_timeout", deserialize_with = "duration")]
    pub reload_timeout: Duration,
    /// The certificates to deliver.
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<CertSpec>,
    /// The secrets to deliver.
    #[serde(default, rename = "secret")]
    pub secrets: Vec<SecretSpec>,
}

fn default_ca_check() -> Duration {
    Duration::from_secs(300)
}

/// The default of `reload_timeout`: one minute.
pub fn default_reload_timeout() -> Duration {
    Duration::from_secs(60)
}

/// The default of `secret_check_interval`: one minute.
pub fn default_secret_check() -> Duration {
    Duration::from_secs(60)
}

/// One secret to keep delivered to one file. The credential's client needs scope `secrets:read`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// The secret's name in Castellan, e.g. `mqtt/broker-password`; also its name in the status and
    /// metrics.
    #[serde(deserialize_with = "secret_name")]
    pub name: String,
    /// The file to write (its directory is created 0755 if missing; an existing one is never changed).
    pub path: PathBuf,
    /// The file's mode (default 0600).
    #[serde(default = "default_secret_mode", deserialize_with = "mode")]
    pub mode: u32,
    /// The file's owner: a uid or a user name.
    #[serde(default, deserialize_with = "opt_uid")]
    pub uid: Option<u32>,
    /// The file's group: a gid or a group name.
    #[serde(default, deserialize_with = "opt_gid")]
    pub gid: Option<u32>,
    /// The file's owner as `chown` takes it: `USER`, `USER:GROUP` or `:GROUP` (instead of uid/gid).
    #[serde(default, deserialize_with = "opt_owner")]
    pub owner: Option<Owner>,
    /// Command run (with `sh -c`) after the file changed; each distinct command of the certificates and
    /// secrets runs once per pass.
    #[serde(default)]
    pub reload: Option<String>,
}

fn default_secret_mode() -> u32 {
    0o600
}

/// One certificate to keep delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSpec {
    /// A name for logs, status and metrics.
    pub name: String,
    /// The profile to ask for (`server`, `client`, `peer` or a configured one).
    pub profile: String,
    /// Subject common name.
    #[serde(default)]
    pub common_name: Option<String>,
    /// DNS SANs.
    #[serde(default)]
    pub dns: Vec<String>,
    /// IP SANs.
    #[serde(default)]
    pub ip: Vec<IpAddr>,
    /// URI SANs.
    #[serde(default)]
    pub uri: Vec<String>,
    /// Lifetime to ask for (default: the profile's).
    #[serde(default, deserialize_with = "opt_duration")]
    pub ttl: Option<Duration>,
    /// Key type (default P-256).
    #[serde(default)]
    pub key_type: Option<KeyType>,
    /// Let the server generate the key (it then travels over the connection); default: the key is
    /// generated here and only a CSR is sent.
    #[serde(default)]
    pub server_generated_key: bool,
    /// Output directory (created 0755 if missing; an existing one is never changed).
    #[serde(default)]
    pub dir: PathBuf,
    /// Command run (with `sh -c`) after the files changed, e.g. `kill -HUP $(cat /run/mosquitto.pid)`.
    #[serde(default)]
    pub reload: Option<String>,
    /// Owner for every file of the set, a uid or a user name (per-file settings override).
    #[serde(default, deserialize_with = "opt_uid")]
    pub uid: Option<u32>,
    /// Group for every file of the set, a gid or a group name (per-file settings override).
    #[serde(default, deserialize_with = "opt_gid")]
    pub gid: Option<u32>,
    /// Owner of every file of the set as `chown` takes it: `USER`, `USER:GROUP` or `:GROUP`, e.g.
    /// `mosquitto:mosquitto` for a broker that drops to its own user and must read its key (instead
    /// of uid/gid; per-file settings override).
    #[serde(default, deserialize_with = "opt_owner")]
    pub owner: Option<Owner>,
    /// Per-file names, modes and owners.
    #[serde(default)]
    pub files: FilesSpec,
}

/// Per-file settings of a set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSpec {
    /// The leaf (`cert.pem`, 0644).
    #[serde(default)]
    pub cert: FileSpec,
    /// Leaf + intermediates (`chain.pem`, 0644).
    #[serde(default)]
    pub chain: FileSpec,
    /// Root + intermediates (`ca-bundle.pem`, 0644).
    #[serde(default)]
    pub ca_bundle: FileSpec,
    /// The root (`root.pem`, 0644).
    #[serde(default)]
    pub root: FileSpec,
    /// The private key (`key.pem`, 0600).
    #[serde(default)]
    pub key: FileSpec,
}

/// One file's name, mode and owner.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// File name inside `dir`.
    #[serde(default)]
    pub name: Option<String>,
    /// Octal mode, e.g. `"0640"`.
    #[serde(default, deserialize_with = "opt_mode")]
    pub mode: Option<u32>,
    /// Owner: a uid or a user name.
    #[serde(default, deserialize_with = "opt_uid")]
    pub uid: Option<u32>,
    /// Group: a gid or a group name.
    #[serde(default, deserialize_with = "opt_gid")]
    pub gid: Option<u32>,
}

/// The files of a set, resolved: role, path, mode, owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// `cert`, `chain`, `ca_bundle`, `root` or `key`.
    pub role: &'static str,
    /// Where it goes.
    pub path: PathBuf,
    /// Its mode.
    pub mode: u32,
    /// Its owner, if set.
    pub uid: Option<u32>,
    /// Its group, if set.
    pub gid: Option<u32>,
}

impl SecretSpec {
    /// The file's owner and group (`uid`/`gid`, or `owner`).
    pub fn owner_ids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.uid.or(self.owner.and_then(|o| o.uid)),
            self.gid.or(self.owner.and_then(|o| o.gid)),
        )
    }
}

impl CertSpec {
    /// The five files with their names, modes and owners.
    pub fn resolved_files(&self) -> Vec<ResolvedFile> {
        let f = &self.files;
        [
            ("cert", &f.cert, "cert.pem", 0o644),
            ("chain", &f.chain, "chain.pem", 0o644),
            ("ca_bundle", &f.ca_bundle, "ca-bundle.pem", 0o644),
            ("root", &f.root, "root.pem", 0o644),
            ("key", &f.key, "key.pem", 0o600),
        ]
        .into_iter()
        .map(|(role, spec, name, mode)| ResolvedFile {
            role,
            path: self
                .dir
                .join(spec.name.clone().unwrap_or_else(|| name.to_owned())),
            mode: spec.mode.unwrap_or(mode),
            uid: spec.uid.or(self.uid).or(self.owner.and_then(|o| o.uid)),
            gid: spec.gid.or(self.gid).or(self.owner.and_then(|o| o.gid)),
        })
        .collect()
    }
}

impl AgentConfig {
    /// Parses and checks a TOML document (`path` names it in errors).
    pub fn from_toml(path: &str, text: &str) -> Result<Self, AgentError> {
        let cfg: AgentConfig =
            toml::from_str(text).map_err(|e| AgentError::Config(format!("{path}: {e}")))?;
        cfg.validate()
            .map_err(|m| AgentError::Config(format!("{path}: {m}")))?;
        Ok(cfg)
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&path.display().to_string(), &text)
    }

    /// Checks the configuration (also after defaults were filled in by a caller).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.server.starts_with("http://") || self.server.starts_with("https://")) {
            return Err(format!("server: `{}` must be an http(s) URL", self.server));
        }
        match self.auth {
            AuthMethod::ClientSecret if self.credential_file.is_none() => {
                return Err("credential_file is required (or auth = \"kubernetes\")".into());
            }
            AuthMethod::Kubernetes if self.credential_file.is_some() => {
                return Err(
                    "credential_file is not used with auth = \"kubernetes\" (token_file is)".into(),
                );
            }
            _ => {}
        }
        if self.auth == AuthMethod::ClientSecret && self.token_file.is_some() {
            return Err("token_file is used only with auth = \"kubernetes\"".into());
        }
        if self.certificates.is_empty() && self.secrets.is_empty() {
            return Err("no [[certificate]] or [[secret]] to deliver".into());
        }
        let mut names = std::collections::HashSet::new();
        // Every file written, by its path with `.` components dropped: two entries never share a file.
        let mut paths = std::collections::HashMap::new();
        for c in &self.certificates {
            if !names.insert(c.name.as_str()) {
                return Err(format!("certificate `{}` is declared twice", c.name));
            }
            if c.dir.as_os_str().is_empty() {
                return Err(format!("certificate `{}`: dir is missing", c.name));
            }
            if c.owner.is_some() && (c.uid.is_some() || c.gid.is_some()) {
                return Err(format!(
                    "certificate `{}`: give owner or uid/gid, not both",
                    c.name
                ));
            }
            if c.dns.is_empty() && c.ip.is_empty() && c.uri.is_empty() && c.common_name.is_none() {
                return Err(format!(
                    "certificate `{}`: give common_name or at least one of dns, ip, uri",
                    c.name
                ));
            }
            for f in c.resolved_files() {
                let me = format!("certificate `{}`", c.name);
                if let Some(other) = paths.insert(normalized(&f.path), me.clone()) {
                    return Err(twice(&me, &other, &f.path));
                }
            }
        }
        let mut secret_names = std::collections::HashSet::new();
        for s in &self.secrets {
            castellan_core::secret_store::validate_name(&s.name)
                .map_err(|e| format!("secret: name: {e}"))?;
            if s.owner.is_some() && (s.uid.is_some() || s.gid.is_some()) {
                return Err(format!(
                    "secret `{}`: give owner or uid/gid, not both",
                    s.name
                ));
            }
            if !secret_names.insert(s.name.as_str()) {
                return Err(format!(
                    "secret `{}` is declared twice (one [[secret]] per secret)",
                    s.name
                ));
            }
            check_secret_path(&s.path).map_err(|m| format!("secret `{}`: path: {m}", s.name))?;
            if s.mode > 0o7777 {
                return Err(format!(
                    "secret `{}`: mode {:o} is not a file mode",
                    s.name, s.mode
                ));
            }
            let me = format!("secret `{}`", s.name);
            if let Some(other) = paths.insert(normalized(&s.path), me.clone()) {
                return Err(twice(&me, &other, &s.path));
            }
        }
        Ok(())
    }
}

fn twice(me: &str, other: &str, path: &Path) -> String {
    if me == other {
        format!("{me}: {} is written twice", path.display())
    } else {
        format!(
            "{me}: {} is also written by {other}; give each its own file",
            path.display()
        )
    }
}

/// `path` without `.` components, so `./a/b` and `a/./b` compare equal to `a/b`.
fn normalized(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// A secret's `path` must name a file: not empty, not ending in `/`, `.` or `..`.
fn check_secret_path(path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err("is empty; give the file to write".into());
    }
    let last = bytes.rsplit(|b| *b == b'/').next().unwrap_or_default();
    let names_a_file = !matches!(last, b"" | b"." | b"..");
    if !names_a_file {
        return Err(format!(
            "`{}` names a directory; give the file to write, e.g. `{}/password`",
            path.display(),
            path.display().to_string().trim_end_matches('/')
        ));
    }
    Ok(())
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let parsed = castellan_core::duration::parse_duration(&s).map_err(serde::de::Error::custom)?;
    // Lifetimes and intervals count whole seconds: `0s` or `500ms` would be a zero TTL (refused at
    // issuance) or a busy loop.
    if parsed.as_secs() == 0 {
        return Err(serde::de::Error::custom(format!(
            "`{s}` is shorter than 1s"
        )));
    }
    Ok(parsed)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A uid: a number, or a user name looked up on this system.
fn opt_uid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    id_or_name(d, castellan_files::owner::user_id)
}

/// A gid: a number, or a group name looked up on this system.
fn opt_gid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    id_or_name(d, castellan_files::owner::group_id)
}

fn id_or_name<'de, D: Deserializer<'de>>(
    d: D,
    resolve: fn(&str) -> Result<u32, String>,
) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IdOrName {
        Id(u32),
        Name(String),
    }
    match IdOrName::deserialize(d)? {
        IdOrName::Id(id) => Ok(Some(id)),
        IdOrName::Name(name) => resolve(&name).map(Some).map_err(serde::de::Error::custom),
    }
}

/// `USER`, `USER:GROUP` or `:GROUP`.
fn opt_owner<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Owner>, D::Error> {
    let s = String::deserialize(d)?;
    castellan_files::owner::parse_owner(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn opt_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let s = String::deserialize(d)?;
    castellan_files::parse_mode(&s).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("`{s}` is not an octal file mode like \"0640\""))
    })
}

fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    opt_mode(d).map(|m| m.unwrap_or_else(default_secret_mode))
}

/// A secret's name, checked where it is written so the error points at its line.
fn secret_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    castellan_core::secret_store::validate_name(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
server = "http://127.0.0.1:8270"
credential_file = "agent.json"

[[certificate]]
name = "broker"
profile = "server"
dns = ["localhost"]
ip = ["127.0.0.1"]
ttl = "24h"
dir = "certs/broker"
reload = "true"
gid = 1883
[certificate.files.key]
name = "server.key"
mode = "0640"
"#;

    #[test]
    fn parses_and_resolves_file_settings() {
        let cfg = AgentConfig::from_toml("agent.toml", GOOD).expect("parse");
        let c = &cfg.certificates[0];
        assert_eq!(c.ttl, Some(Duration::from_secs(86_400)));
        let files = c.resolved_files();
        let key = files.iter().find(|f| f.role == "key").expect("key");
        assert_eq!(
            (key.path.clone(), key.mode, key.gid),
            (PathBuf::from("certs/broker/server.key"), 0o640, Some(1883))
        );
        let cert = files.iter().find(|f| f.role == "cert").expect("cert");
        assert_eq!((cert.mode, cert.uid), (0o644, None));
    }

    #[test]
    fn owners_are_names_or_numbers_and_owner_is_not_given_with_uid() {
        let with = |extra: &str| {
            let text = GOOD.replace("gid = 1883\n", extra);
            AgentConfig::from_toml("agent.toml", &text)
        };
        let cfg = with("owner = \"root:root\"\n").expect("owner");
        let key = cfg.certificates[0].resolved_files();
        assert!(key.iter().all(|f| (f.uid, f.gid) == (Some(0), Some(0))));
        let cfg = with("uid = \"root\"\ngid = 7\n").expect("names");
        assert_eq!(
            (cfg.certificates[0].uid, cfg.certificates[0].gid),
            (Some(0), Some(7))
        );
        let e = with("owner = \"no-such-user-xyz\"\n")
            .expect_err("unknown")
            .to_string();
        assert!(
            e.contains("no user `no-such-user-xyz`") && e.contains("line"),
            "{e}"
        );
        let e = with("owner = \"root\"\nuid = 0\n")
            .expect_err("both")
            .to_string();
        assert!(e.contains("owner or uid/gid, not both"), "{e}");
    }

    #[test]
    fn the_compose_agent_config_is_valid() {
        let text = include_str!("../../../deploy/compose/agent.toml");
        let cfg = AgentConfig::from_toml("deploy/compose/agent.toml", text).expect("valid");
        assert_eq!(cfg.certificates.len(), 2);
        let owners: Vec<_> = cfg.certificates.iter().map(|c| c.owner).collect();
        assert_eq!(
            owners,
            [
                Some(Owner {
                    uid: Some(1883),
                    gid: Some(1883)
                }),
                Some(Owner {
                    uid: Some(10002),
                    gid: Some(10002)
                })
            ]
        );
    }

    #[test]
    fn a_bad_field_is_named_with_its_line() {
        let bad = GOOD.replace("reload = \"true\"", "relaod = \"true\"");
        let err = AgentConfig::from_toml("agent.toml", &bad)
            .expect_err("unknown field")
            .to_string();
        assert!(err.contains("relaod") && err.contains("line 12"), "{err}");
        let bad = GOOD.replace("mode = \"0640\"", "mode = \"0980\"");
        let err = AgentConfig::from_toml("agent.toml", &bad)
            .expect_err("bad mode")
            .to_string();
        assert!(err.contains("mode") && err.contains("line 16"), "{err}");
        let bad = GOOD.replace("ttl = \"24h\"", "ttl = \"soon\"");
        let err = AgentConfig::from_toml("agent.toml", &bad)
            .expect_err("bad ttl")
            .to_string();
        assert!(err.contains("ttl") && err.contains("line 10"), "{err}");
    }

    /// GOOD plus one `[[secret]]` table (starting at line 18).
    fn with_secret(table: &str) -> String {
        format!("{GOOD}\n[[secret]]\n{table}")
    }

    const SECRET: &str = r#"name = "mqtt/broker-password"
path = "/certs/broker/password"
mode = "0640"
uid = 1883
gid = 1884
reload = "kill -HUP 1"
"#;

    #[test]
    fn a_secret_table_parses_with_every_field() {
        let text = with_secret(SECRET).replace(
            "credential_file = \"agent.json\"",
            "credential_file = \"agent.json\"\nsecret_check_interval = \"30s\"",
        );
        let cfg = AgentConfig::from_toml("agent.toml", &text).expect("parse");
        assert_eq!(cfg.secret_check_interval, Duration::from_secs(30));
        assert_eq!(cfg.secrets.len(), 1);
        let s = &cfg.secrets[0];
        assert_eq!(s.name, "mqtt/broker-password");
        assert_eq!(s.path, PathBuf::from("/certs/broker/password"));
        assert_eq!((s.mode, s.uid, s.gid), (0o640, Some(1883), Some(1884)));
        assert_eq!(s.reload.as_deref(), Some("kill -HUP 1"));
    }

    #[test]
    fn secret_defaults_are_mode_0600_no_owner_no_reload_and_a_one_minute_check() {
        let text = "server = \"http://127.0.0.1:8270\"\ncredential_file = \"agent.json\"\n\n[[secret]]\nname = \"db/password\"\npath = \"run/db-password\"\n";
        let cfg = AgentConfig::from_toml("agent.toml", text).expect("a secret alone is enough");
        assert!(cfg.certificates.is_empty());
        assert_eq!(cfg.secret_check_interval, Duration::from_secs(60));
        assert_eq!(cfg.ca_check_interval, Duration::from_secs(300));
        assert_eq!(cfg.reload_timeout, Duration::from_secs(60));
        let s = &cfg.secrets[0];
        assert_eq!((s.mode, s.uid, s.gid), (0o600, None, None));
        assert!(s.reload.is_none());
        // And the certificate-only configuration has no secrets and the same default.
        let cfg = AgentConfig::from_toml("agent.toml", GOOD).expect("parse");
        assert!(cfg.secrets.is_empty());
        assert_eq!(cfg.secret_check_interval, Duration::from_secs(60));
        // Nothing at all to deliver is still an error.
        let err = AgentConfig::from_toml(
            "agent.toml",
            "server = \"http://x\"\ncredential_file = \"a.json\"\n",
        )
        .expect_err("nothing to deliver")
        .to_string();
        assert!(err.contains("[[secret]]"), "{err}");
    }

    #[test]
    fn a_bad_secret_field_or_name_or_mode_is_named_with_its_line() {
        let err = AgentConfig::from_toml(
            "agent.toml",
            &with_secret(&SECRET.replace("reload =", "reloda =")),
        )
        .expect_err("unknown field")
        .to_string();
        assert!(err.contains("reloda") && err.contains("line 24"), "{err}");
        for bad in ["mqtt//pw", "/mqtt/pw", "mqtt/../pw", "pw with space", ""] {
            let text = with_secret(&SECRET.replace("mqtt/broker-password", bad));
            let err = AgentConfig::from_toml("agent.toml", &text)
                .expect_err("bad name")
                .to_string();
            assert!(
                err.contains("invalid secret name") && err.contains("line 19"),
                "{bad}: {err}"
            );
        }
        let err = AgentConfig::from_toml(
            "agent.toml",
            &with_secret(&SECRET.replace("\"0640\"", "\"rw-r-----\"")),
        )
        .expect_err("bad mode")
        .to_string();
        assert!(
            err.contains("octal file mode") && err.contains("line 21"),
            "{err}"
        );
        let err = AgentConfig::from_toml("agent.toml", &with_secret("path = \"/x\"\n"))
            .expect_err("no name")
            .to_string();
        assert!(err.contains("missing field `name`"), "{err}");
    }

    #[test]
    fn a_secret_path_must_name_a_file() {
        for bad in ["", "/certs/broker/", "secrets/", "/", ".", "a/..", "a/."] {
            let text = with_secret(&SECRET.replace("/certs/broker/password", bad));
            let err = AgentConfig::from_toml("agent.toml", &text)
                .expect_err("not a file path")
                .to_string();
            assert!(
                err.contains("secret `mqtt/broker-password`: path"),
                "{bad:?}: {err}"
            );
        }
        for good in [
            "password",
            "./password",
            "run/secrets/pw",
            "/run/secrets/.pw",
        ] {
            let text = with_secret(&SECRET.replace("/certs/broker/password", good));
            AgentConfig::from_toml("agent.toml", &text).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn two_entries_writing_one_file_are_refused() {
        // A secret onto a certificate's key file (`./` or not).
        for path in ["certs/broker/server.key", "./certs/broker/server.key"] {
            let text = with_secret(&SECRET.replace("/certs/broker/password", path));
            let err = AgentConfig::from_toml("agent.toml", &text)
                .expect_err("same file")
                .to_string();
            assert!(
                err.contains("secret `mqtt/broker-password`")
                    && err.contains("also written by certificate `broker`"),
                "{err}"
            );
        }
        // Two secrets onto one file.
        let text = format!(
            "{}\n[[secret]]\nname = \"other\"\npath = \"/certs/broker/password\"\n",
            with_secret(SECRET)
        );
        let err = AgentConfig::from_toml("agent.toml", &text)
            .expect_err("same file")
            .to_string();
        assert!(
            err.contains("secret `other`")
                && err.contains("also written by secret `mqtt/broker-password`"),
            "{err}"
        );
        // One secret declared twice.
        let text = format!(
            "{}\n[[secret]]\nname = \"mqtt/broker-password\"\npath = \"/elsewhere\"\n",
            with_secret(SECRET)
        );
        let err = AgentConfig::from_toml("agent.toml", &text)
            .expect_err("declared twice")
            .to_string();
        assert!(err.contains("declared twice"), "{err}");
        // Distinct files are fine.
        let text = format!(
            "{}\n[[secret]]\nname = \"other\"\npath = \"/certs/broker/other\"\n",
            with_secret(SECRET)
        );
        AgentConfig::from_toml("agent.toml", &text).expect("distinct files");
    }
}
