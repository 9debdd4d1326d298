//! The files on disk: reading back what was delivered (never through a symlink), deciding whether
//! it can be reused, and writing a set or a secret.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

use castellan_core::pki::{self, Purpose, SetPems};
use castellan_files::{OutFile, SetWriteError, remove_stale_temps};
use castellan_wire::SetJson;

use crate::config::{self, CertSpec};
use crate::{AgentError, MAX_FILE_BYTES, STALE_TEMP_AGE, renew_at};

pub(crate) fn write_error(what: &Path, total: usize, e: SetWriteError) -> AgentError {
    let message = format!("{}: {}", what.display(), e.error);
    match e.replaced {
        0 => AgentError::Write(message),
        replaced => AgentError::PartialWrite {
            replaced,
            total,
            message,
        },
    }
}

/// Removes what an interrupted write of `path` left behind (its temp files, which may hold a key).
pub(crate) fn remove_stale(path: &Path) {
    match remove_stale_temps(path, STALE_TEMP_AGE) {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(path = %path.display(), removed = n, "removed temp files left by an interrupted write")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove old temp files")
        }
    }
}

/// A file the agent delivered earlier, opened once to be read back and to have its mode and owner
/// put right through that same handle: a path would follow a symlink put in its place, and make a
/// root agent chmod or chown whatever it points at.
pub(crate) struct Existing {
    file: std::fs::File,
    meta: std::fs::Metadata,
}

impl Existing {
    /// Opens `path` when it is a regular file with a single link, of at most `MAX_FILE_BYTES`.
    /// Anything else (a symlink, a FIFO, a device, a hard link to some other file) is not reused: the
    /// entry is written again, and the rename replaces the name itself, never what it pointed to.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        // NOFOLLOW: a symlink fails (ELOOP). NONBLOCK: opening a FIFO does not wait for a writer.
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata()?;
        use std::os::unix::fs::MetadataExt;
        if !meta.is_file() || meta.nlink() != 1 || meta.len() > MAX_FILE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is not a regular file of at most 1 MiB with a single link",
                    path.display()
                ),
            ));
        }
        Ok(Self { file, meta })
    }

    /// The content (at most `MAX_FILE_BYTES`: the file may have grown since it was opened).
    pub(crate) fn read(&self) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(
            usize::try_from(self.meta.len()).unwrap_or(0) + 1,
        ));
        (&self.file)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_FILE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "larger than 1 MiB",
            ));
        }
        Ok(buf)
    }

    /// Puts the file's mode and owner right (the file only, never its directory).
    pub(crate) fn fix(&self, path: &Path, mode: u32, uid: Option<u32>, gid: Option<u32>) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = &self.meta;
        let wrong_owner = uid.is_some_and(|u| u != m.uid()) || gid.is_some_and(|g| g != m.gid());
        if wrong_owner {
            match std::os::unix::fs::fchown(&self.file, uid, gid) {
                Ok(()) => tracing::info!(path = %path.display(), ?uid, ?gid, "re-owned the file"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot set the file's owner")
                }
            }
        }
        // After the chown, which may have cleared set-id bits of the mode.
        if (wrong_owner || m.mode() & 0o7777 != mode)
            && let Err(e) = self
                .file
                .set_permissions(std::fs::Permissions::from_mode(mode))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot set the file's mode");
        }
    }
}

/// The PEM texts of a set as files on disk, and the files, open.
pub(crate) struct OnDisk {
    pub(crate) cert: String,
    chain: String,
    ca_bundle: String,
    root: String,
    key: String,
    pub(crate) files: Vec<(config::ResolvedFile, Existing)>,
}

pub(crate) fn current_files(spec: &CertSpec) -> std::io::Result<OnDisk> {
    let mut m: HashMap<&str, String> = HashMap::new();
    let mut files = Vec::new();
    for f in spec.resolved_files() {
        let file = Existing::open(&f.path)?;
        let text = String::from_utf8(std::mem::take(&mut *file.read()?))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        m.insert(f.role, text);
        files.push((f, file));
    }
    let mut take = |k: &str| m.remove(k).unwrap_or_default();
    Ok(OnDisk {
        cert: take("cert"),
        chain: take("chain"),
        ca_bundle: take("ca_bundle"),
        root: take("root"),
        key: take("key"),
        files,
    })
}

/// The serial of valid files on disk that need no renewal yet, and those files, if there are such.
pub(crate) fn reusable(spec: &CertSpec, bundle: &str, now: i64) -> Option<(String, OnDisk)> {
    let d = current_files(spec).ok()?;
    if d.ca_bundle.trim() != bundle.trim() {
        return None; // the CA changed: consumers need the new bundle and a leaf under it
    }
    let pems = SetPems {
        cert_pem: &d.cert,
        chain_pem: &d.chain,
        ca_bundle_pem: &d.ca_bundle,
        root_pem: &d.root,
        key_pem: Some(&d.key),
    };
    let info = [Purpose::Peer, Purpose::Server, Purpose::Client]
        .into_iter()
        .find_map(|p| pki::verify_set(&pems, p, now).ok())?;
    check_names(spec, &d.cert).ok()?;
    (now < renew_at(info.not_before, info.not_after, &info.serial_hex))
        .then_some((info.serial_hex, d))
}

/// The certificate carries exactly the names the spec asks for.
pub(crate) fn check_names(spec: &CertSpec, cert_pem: &str) -> Result<(), AgentError> {
    let info = pki::parse_cert_pem(cert_pem).map_err(|e| AgentError::Verify(e.to_string()))?;
    let want_dns: BTreeSet<String> = spec.dns.iter().map(|d| d.to_ascii_lowercase()).collect();
    let have_dns: BTreeSet<String> = info
        .dns_names
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    let want_ip: BTreeSet<_> = spec.ip.iter().collect();
    let have_ip: BTreeSet<_> = info.ip_addresses.iter().collect();
    let want_uri: BTreeSet<_> = spec.uri.iter().collect();
    let have_uri: BTreeSet<_> = info.uris.iter().collect();
    let cn_ok = spec.common_name.is_none() || spec.common_name == info.common_name;
    if want_dns == have_dns && want_ip == have_ip && want_uri == have_uri && cn_ok {
        Ok(())
    } else {
        Err(AgentError::Verify(format!(
            "the certificate's names differ from what `{}` asks for",
            spec.name
        )))
    }
}

pub(crate) fn write_set(spec: &CertSpec, set: &SetJson) -> Result<(), AgentError> {
    let files = spec.resolved_files();
    let content = |role: &str| -> &[u8] {
        match role {
            "cert" => set.cert_pem.as_bytes(),
            "chain" => set.chain_pem.as_bytes(),
            "ca_bundle" => set.ca_bundle_pem.as_bytes(),
            "root" => set.root_pem.as_bytes(),
            _ => set.key_pem.as_deref().unwrap_or_default().as_bytes(),
        }
    };
    let out: Vec<OutFile<'_>> = files
        .iter()
        .map(|f| OutFile {
            path: f.path.clone(),
            bytes: content(f.role),
            mode: f.mode,
            owner: (f.uid.is_some() || f.gid.is_some()).then_some((f.uid, f.gid)),
        })
        .collect();
    castellan_files::write_set(&out).map_err(|e| write_error(&spec.dir, out.len(), e))
}

/// The file at `path`, open, when it is a regular file holding exactly `bytes` (read only when the
/// size matches).
pub(crate) fn open_if_holds(path: &Path, bytes: &[u8]) -> Option<Existing> {
    let file = Existing::open(path).ok()?;
    if file.meta.len() != bytes.len() as u64 {
        return None;
    }
    file.read()
        .is_ok_and(|on_disk| on_disk.as_slice() == bytes)
        .then_some(file)
}
