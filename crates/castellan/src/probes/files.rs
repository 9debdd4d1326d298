//! What a file check needs to know, read from the system: who is asking (uid, groups from
//! `/etc/passwd`, `/etc/group`, `/proc/self/status`) and, for each path, the `stat` and POSIX access ACL
//! of the file and of every directory above it.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use castellan_core::doctor::files::{Acl, FileFacts, Found, Identity, Stat, is_key_file};

/// `stat` of `path` and its POSIX access ACL, or why the ACL cannot be read (then nothing can be
/// judged: the mode bits alone might be wrong).
fn stat_of(path: &Path, m: &std::fs::Metadata) -> Result<Stat, String> {
    Ok(Stat {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        is_dir: m.is_dir(),
        acl: access_acl(path)?,
    })
}

/// The access ACL of `path` (following symlinks, like `stat`), `None` where there is none or the
/// filesystem has no ACLs.
fn access_acl(path: &Path) -> Result<Option<Acl>, String> {
    use rustix::io::Errno;
    // 4 + 8 bytes per entry: room for 511 entries, far beyond what setfacl users write.
    let mut buf = vec![0u8; 4096];
    match rustix::fs::getxattr(path, Acl::XATTR, &mut buf[..]) {
        Ok(n) => Acl::from_xattr(&buf[..n])
            .map(Some)
            .map_err(|e| format!("its ACL cannot be read ({e})")),
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(e) => Err(format!("its ACL cannot be read ({e})")),
    }
}

/// `name:x:uid:gid:…` lines of /etc/passwd: the user's name and primary group.
fn passwd_entry(uid: u32) -> Option<(String, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 3 && f[2].parse::<u32>().ok() == Some(uid))
            .then(|| (f[0].to_owned(), f[3].parse().unwrap_or(uid)))
    })
}

/// Supplementary groups of a user name from /etc/group (`name:x:gid:member,member`).
fn supplementary_groups(user: &str) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string("/etc/group") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[3].split(',').any(|m| m == user))
                .then(|| f[2].parse::<u32>().ok())
                .flatten()
        })
        .collect()
}

/// The groups of this process, from /proc/self/status.
fn own_groups() -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let mut gids = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Gid:") {
            gids.extend(
                rest.split_whitespace()
                    .nth(1)
                    .and_then(|g| g.parse::<u32>().ok()),
            );
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            gids.extend(
                rest.split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        }
    }
    gids
}

/// Who must read the files: `uid` (default: the user running the doctor), its group `gid` (default: its
/// primary group from /etc/passwd) and supplementary groups (/etc/group; this process's own groups
/// when the user is unknown there).
pub fn identity(uid: Option<u32>, gid: Option<u32>) -> Result<Identity> {
    let uid = match uid {
        Some(u) => u,
        None => std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .context("cannot tell which user runs the doctor; pass --uid")?,
    };
    let entry = passwd_entry(uid);
    let mut gids = Vec::new();
    if let Some(g) = gid {
        gids.push(g);
    } else if let Some((_, g)) = &entry {
        gids.push(*g);
    }
    if let Some((name, _)) = &entry {
        gids.extend(supplementary_groups(name));
    }
    if gid.is_none() && entry.is_none() {
        gids.extend(own_groups());
    }
    gids.sort_unstable();
    gids.dedup();
    let label = match &entry {
        Some((name, _)) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    };
    Ok(Identity { uid, gids, label })
}

/// What is at `path` and above it: the `stat` (and ACL) of every directory from `/` down, of the file
/// itself, and whether it holds a private key.
pub fn file_facts(path: &Path) -> Result<FileFacts> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("the current directory")?
            .join(path)
    };
    let mut ancestors: Vec<&Path> = abs.ancestors().skip(1).collect();
    ancestors.reverse();
    let mut parents = Vec::new();
    let mut found = None;
    for dir in ancestors {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => match stat_of(dir, &m) {
                Ok(st) => parents.push((dir.display().to_string(), st)),
                Err(why) => {
                    found = Some(Found::Unknown(format!("{}: {why}", dir.display())));
                    break;
                }
            },
            Ok(_) => {
                found = Some(Found::Missing(format!(
                    "{} (a file, not a directory)",
                    dir.display()
                )));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                found = Some(Found::Missing(dir.display().to_string()));
                break;
            }
            Err(e) => {
                found = Some(Found::Unknown(format!("{}: {e}", dir.display())));
                break;
            }
        }
    }
    let shown = path.display().to_string();
    let found = match found {
        Some(f) => f,
        None => match std::fs::metadata(&abs) {
            Ok(m) => match stat_of(&abs, &m) {
                Ok(st) => Found::Exists(st),
                Err(why) => Found::Unknown(why),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Missing(shown.clone()),
            Err(e) => Found::Unknown(e.to_string()),
        },
    };
    let is_key = match &found {
        Found::Exists(st) if !st.is_dir => {
            let mut head = Vec::new();
            let read = std::fs::File::open(&abs)
                .and_then(|f| f.take(1 << 20).read_to_end(&mut head))
                .is_ok();
            is_key_file(&shown, read.then_some(head.as_slice()))
        }
        _ => false,
    };
    Ok(FileFacts {
        path: shown,
        parents,
        found,
        is_key,
    })
}
