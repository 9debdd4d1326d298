//! `castellan doctor compose FILE`: reads the Compose file, the files bind-mounted into its services
//! (their configuration: mosquitto.conf, agent.toml) and the configuration of every `castellan agent`
//! service (what it writes, with modes and owners), and judges them with
//! `castellan_core::doctor::compose`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use castellan::probes::read_judged;
use castellan_agent::{AgentConfig, CertSpec, SecretSpec};
use castellan_core::doctor::compose::{
    Compose, ComposeFacts, WrittenFile, check_compose, compose_invalid, normalise,
};
use castellan_core::doctor::{Finding, codes};

use super::args::ComposeArgs;

/// Bind-mounted files larger than this are not configuration and are not read.
const MAX_TEXT: u64 = 1 << 20;

/// Reads what the checks need and judges it.
pub(super) fn run(a: &ComposeArgs) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let shown = a.file.display().to_string();
    let Some(bytes) = read_judged(&a.file, &mut out) else {
        return Ok(out);
    };
    let abs = std::path::absolute(&a.file)?;
    let base = abs.parent().unwrap_or(Path::new("/")).display().to_string();
    let compose = match Compose::parse(&String::from_utf8_lossy(&bytes), &normalise(&base)) {
        Ok(c) => c,
        Err(why) => return Ok(vec![compose_invalid(&shown, &why)]),
    };
    let mut texts = BTreeMap::new();
    for host in compose.bind_sources() {
        let small_file = std::fs::metadata(&host).is_ok_and(|m| m.is_file() && m.len() <= MAX_TEXT);
        if small_file && let Ok(b) = std::fs::read(&host) {
            texts.insert(host, String::from_utf8_lossy(&b).into_owned());
        }
    }
    let mut agents = BTreeMap::new();
    for s in &compose.services {
        if let Some((config, _)) = s.castellan_agent() {
            agents.insert(s.name.clone(), agent_writes(s, config.as_deref(), &texts));
        }
    }
    let dev = a
        .dev_config
        .clone()
        .or_else(|| Some(abs.with_file_name("castellan-dev.toml")).filter(|p| p.exists()));
    let host_writes = match &dev {
        Some(path) => match dev_up_writes(path) {
            Ok(files) => files,
            Err(why) => {
                out.push(Finding::warning(
                    codes::COMPOSE_AGENT_CONFIG,
                    path.display().to_string(),
                    format!(
                        "the `castellan dev up` configuration cannot be read ({why}): the files \
                         it writes are not judged"
                    ),
                    "check it with `castellan dev up --config FILE`",
                ));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let facts = ComposeFacts {
        file: &shown,
        compose: &compose,
        texts: &texts,
        agents: &agents,
        host_writes: &host_writes,
    };
    out.extend(check_compose(&facts));
    Ok(out)
}

/// The files the agent of service `s` writes, from its configuration (a bind-mounted file).
fn agent_writes(
    s: &castellan_core::doctor::compose::Service,
    config: Option<&str>,
    texts: &BTreeMap<String, String>,
) -> Result<Vec<WrittenFile>, String> {
    let config = config.ok_or("its command has no --config")?;
    let host = s
        .host_path(config)
        .ok_or_else(|| format!("{config} is not bind-mounted from the host"))?;
    let text = texts
        .get(&host)
        .ok_or_else(|| format!("{host} cannot be read"))?;
    let cfg = AgentConfig::from_toml(&host, text).map_err(|e| e.to_string())?;
    let abs = |p: &Path| normalise(&p.display().to_string());
    let mut files = Vec::new();
    for c in &cfg.certificates {
        files.extend(c.resolved_files().into_iter().map(|f| WrittenFile {
            path: abs(&f.path),
            set: c.name.clone(),
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
        }));
    }
    files.extend(cfg.secrets.iter().map(|sec| WrittenFile {
        path: abs(&sec.path),
        set: sec.name.clone(),
        mode: sec.mode,
        uid: sec.uid,
        gid: sec.gid,
    }));
    Ok(files)
}

/// What `castellan dev up` reads of its configuration to place its files (its other settings are
/// not needed here).
#[derive(serde::Deserialize)]
struct DevFiles {
    #[serde(default)]
    certs_dir: Option<std::path::PathBuf>,
    #[serde(default, rename = "certificate")]
    certificates: Vec<CertSpec>,
    #[serde(default, rename = "secret")]
    secrets: Vec<SecretSpec>,
}

/// The host files `castellan dev up` writes for the configuration at `path` (relative paths from
/// its directory, where `dev up` runs), owned by the configuration's owner unless it sets uid/gid.
fn dev_up_writes(path: &Path) -> Result<Vec<WrittenFile>, String> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let cfg: DevFiles = toml::from_str(&text).map_err(|e| e.to_string())?;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let dir = std::path::absolute(path)
        .map_err(|e| e.to_string())?
        .parent()
        .unwrap_or(Path::new("/"))
        .to_owned();
    let certs = dir.join(cfg.certs_dir.unwrap_or_else(|| "certs".into()));
    let abs = |p: &Path| normalise(&dir.join(p).display().to_string());
    let mut files = Vec::new();
    for mut c in cfg.certificates {
        if c.dir.as_os_str().is_empty() {
            c.dir = certs.join(&c.name);
        }
        files.extend(c.resolved_files().into_iter().map(|f| WrittenFile {
            path: abs(&f.path),
            set: c.name.clone(),
            mode: f.mode,
            uid: f.uid.or(Some(meta.uid())),
            gid: f.gid.or(Some(meta.gid())),
        }));
    }
    files.extend(cfg.secrets.iter().map(|sec| WrittenFile {
        path: abs(&sec.path),
        set: sec.name.clone(),
        mode: sec.mode,
        uid: sec.uid.or(Some(meta.uid())),
        gid: sec.gid.or(Some(meta.gid())),
    }));
    Ok(files)
}
