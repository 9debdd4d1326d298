//! What several commands share: configuration from file, environment and flags; the store; the master
//! key; credential files.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use castellan_core::envelope::MasterKey;
use castellan_files as files;
use castellan_server::config::Config;
use castellan_server::init::Credential;
use castellan_store::Store;
use castellan_wire::CredentialError;
pub use castellan_wire::CredentialFile;
use clap::Args;

/// Creates the data directory, if missing, with mode 0700: the store, the master key and the admin
/// credential are Castellan's alone (an existing directory is left as its owner made it). Missing
/// parents are created as usual (0755).
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        files::ensure_dir(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Where the store is.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreArgs {
    /// Configuration file (TOML); see castellan.example.toml.
    #[arg(long, global = false)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store [env: CASTELLAN_DATA_DIR] [default: ./castellan-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL shared by replicas [env: CASTELLAN_DATABASE_URL]; default: SQLite in the data dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Master key file [env: CASTELLAN_MASTER_KEY_FILE] [default: <data-dir>/master.key].
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
}

/// The process environment as a map: the one place it is read.
pub fn environment() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("CASTELLAN_"))
        .collect()
}

impl StoreArgs {
    /// Defaults, then the file, then the environment, then these flags.
    pub fn config(&self) -> Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        cfg.apply_env(&environment())?;
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(u) = &self.database_url {
            cfg.database_url = Some(u.clone());
        }
        if let Some(m) = &self.master_key_file {
            cfg.master_key_file = Some(m.clone());
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    use castellan_core::Clock;
    castellan_core::SystemClock.now()
}

/// Opens the configured store (creating the data directory for SQLite).
pub async fn open_store(cfg: &Config) -> Result<Store> {
    if cfg.database_url.is_none() {
        private_dir(&cfg.data_dir)
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    }
    Store::connect(&cfg.store_url())
        .await
        .context("opening the store")
}

/// Opens the configured store with its master key, checked against the store (a mismatch is an error
/// Records a change the CLI made directly in the store on the audit trail (its `cli@HOST` chain).
pub async fn audited(store: &Store, action: &str, object: impl Into<String>) -> Result<()> {
    castellan_server::audit::events::cli(
        store,
        action,
        object,
        castellan_core::audit::Outcome::Allowed,
    )
    .await?;
    Ok(())
}

/// that says so): what every command that reads or writes sealed values starts with.
pub async fn unlocked_store(cfg: &Config) -> Result<(Store, MasterKey)> {
    let store = open_store(cfg).await?;
    let master = load_master_key(cfg, false)?;
    castellan_server::data_keys::check_master_key(&store, &master).await?;
    Ok((store, master))
}

/// Reads a master key file, warning when group or others may read it.
pub fn read_master_key_file(path: &std::path::Path) -> Result<MasterKey> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading master key file {}", path.display()))?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the master key file is readable by group or others; chmod 600 it");
    }
    MasterKey::from_base64(&text).with_context(|| format!("master key file {}", path.display()))
}

/// Reads the master key; with `create`, generates it (mode 0600) when the file does not exist.
pub fn load_master_key(cfg: &Config, create: bool) -> Result<MasterKey> {
    let path = cfg.master_key_path();
    match std::fs::metadata(&path) {
        Ok(_) => read_master_key_file(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let (key, text) = MasterKey::generate()?;
            if let Some(dir) = path.parent() {
                private_dir(dir)?;
            }
            // Written in full beside it and linked into place, never replacing: a crash leaves no
            // empty or partial key file (which every later start would refuse), and two processes
            // racing here end up with one key file.
            match files::create_new_atomic(&path, text.as_bytes(), 0o600) {
                Ok(()) => {
                    eprintln!(
                        "generated a master key at {} (mode 0600); every replica of this store needs this file",
                        path.display()
                    );
                    Ok(key)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path)?;
                    Ok(MasterKey::from_base64(&text)?)
                }
                Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no master key at {}: pass --master-key-file (or CASTELLAN_MASTER_KEY_FILE), or run `castellan init` to create one",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("reading master key file {}", path.display())),
    }
}

/// Reads a credential file, naming the file in every error.
pub fn read_credential(path: &std::path::Path) -> Result<CredentialFile> {
    CredentialFile::read(path).map_err(|e| match e {
        CredentialError::Read(e) => {
            anyhow::Error::new(e).context(format!("reading {}", path.display()))
        }
        CredentialError::Parse(e) => anyhow::Error::new(e).context(format!(
            "{} is not a credential file (JSON with client_id and client_secret)",
            path.display()
        )),
    })
}

/// Writes a credential file atomically with mode 0600.
pub fn write_credential(path: &std::path::Path, cred: &Credential, issuer: &str) -> Result<()> {
    files::write_atomic(path, &credential_json(cred, issuer)?, 0o600, None)
        .with_context(|| format!("writing {}", path.display()))
}

/// The content of a credential file (wiped when dropped: it holds the secret).
pub fn credential_json(cred: &Credential, issuer: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let file = CredentialFile {
        client_id: cred.client_id.clone(),
        client_secret: cred.client_secret.to_string(),
        token_endpoint: Some(format!("{issuer}/oauth2/token")),
    };
    let mut bytes = zeroize::Zeroizing::new(serde_json::to_vec_pretty(&file)?);
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_master_key_appears_whole_and_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        load_master_key(&cfg, true).expect("generated");
        let path = cfg.master_key_path();
        let text = std::fs::read_to_string(&path).expect("key file");
        let meta = std::fs::metadata(&path).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(MasterKey::from_base64(&text).is_ok(), "a whole key");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["master.key"], "no temp file left");
        // Loading again reads the same file; nothing is generated anew.
        load_master_key(&cfg, true).expect("read");
        assert_eq!(std::fs::read_to_string(&path).expect("key file"), text);
    }
}
