//! Writing files the way every Castellan output is written: a temp file in the same directory, fsync,
//! rename. The mode (and owner, when asked) is set on the file before it is renamed into place; a
//! directory that already exists is never touched, and a missing one is created 0755.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) with mode 0755 whatever the umask, leaving directories that
/// already exist exactly as they are.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)),
        // Created by someone else in the meantime: theirs to keep as it is.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads an octal file mode as people write it: `640`, `0640` or `0o640`; digits 0-7 only (no sign,
/// one prefix at most), at most `0o7777`.
pub fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

/// One file of a set to write.
#[derive(Debug)]
pub struct OutFile<'a> {
    /// Destination.
    pub path: std::path::PathBuf,
    /// Content.
    pub bytes: &'a [u8],
    /// File mode (for example 0o600 for keys).
    pub mode: u32,
    /// Owner to set (uid, gid), if any.
    pub owner: Option<(Option<u32>, Option<u32>)>,
}

/// Atomically replaces `path` with `bytes`, with file mode `mode` and, if given, owner `uid`/`gid`.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(Option<u32>, Option<u32>)>,
) -> std::io::Result<()> {
    write_all_atomic(&[OutFile {
        path: path.to_path_buf(),
        bytes,
        mode,
        owner,
    }])
}

/// Writes a set of files: every file is first written in full to a temp file beside its destination
/// (mode and owner set, fsynced); only when all of them are staged are they renamed into place. A
/// failure while staging leaves every old file as it was and removes the temp files.
pub fn write_all_atomic(files: &[OutFile<'_>]) -> std::io::Result<()> {
    let mut staged: Vec<(std::path::PathBuf, &Path)> = Vec::with_capacity(files.len());
    let result = (|| {
        for f in files {
            let tmp = stage(f)?;
            staged.push((tmp, &f.path));
        }
        for (tmp, dest) in &staged {
            std::fs::rename(tmp, dest)?;
        }
        let mut dirs: Vec<&Path> = files.iter().map(|f| parent(&f.path)).collect();
        dirs.dedup();
        for d in dirs {
            // Make the renames durable.
            std::fs::File::open(d)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
    }
    result
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn stage(f: &OutFile<'_>) -> std::io::Result<std::path::PathBuf> {
    let dir = parent(&f.path);
    ensure_dir(dir)?;
    let name = f.path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| std::io::Error::other("no randomness"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        hex::encode(suffix)
    ));
    let result = (|| {
        // Created with the final mode (0600 for keys), so a secret is never readable by others.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(f.mode & 0o777)
            .open(&tmp)?;
        file.write_all(f.bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(f.mode & 0o7777))?;
        if let Some((uid, gid)) = f.owner {
            std::os::unix::fs::fchown(&file, uid, gid)?;
        }
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_and_leaves_existing_dir_alone() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("out");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        write_atomic(&dir.join("key.pem"), b"k", 0o600, None).expect("write");
        write_atomic(&dir.join("cert.pem"), b"c", 0o644, None).expect("write");
        write_atomic(&dir.join("cert.pem"), b"c2", 0o644, None).expect("rewrite");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o750);
        assert_eq!(mode(&dir.join("key.pem")), 0o600);
        assert_eq!(mode(&dir.join("cert.pem")), 0o644);
        assert_eq!(std::fs::read(dir.join("cert.pem")).expect("read"), b"c2");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        // A missing directory is created 0755.
        let fresh = root.path().join("a/b");
        write_atomic(&fresh.join("x"), b"x", 0o644, None).expect("write");
        assert_eq!(mode(&fresh), 0o755);
    }
    #[test]
    fn modes_are_octal_digits_with_one_optional_prefix() {
        for (s, m) in [
            ("640", 0o640),
            ("0640", 0o640),
            ("0o600", 0o600),
            ("7777", 0o7777),
            ("0", 0),
        ] {
            assert_eq!(parse_mode(s), Some(m), "{s}");
        }
        for s in [
            "", "0o", "+644", "-644", "0o+644", "0o0o644", "0x644", "648", "17777", " 644", "64 4",
        ] {
            assert_eq!(parse_mode(s), None, "{s:?}");
        }
    }
}
