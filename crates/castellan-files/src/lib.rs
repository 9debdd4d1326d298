//! Castellan's file writing, shared by the server, the CLI and the agent: atomic, no-follow, exact
//! modes.
//!
//! Every output is written the same way: a temp file in the same directory, fsync, rename. The mode
//! (and owner, when asked) is set on the file before it is renamed into place; a directory that
//! already exists is never touched, and a missing one is created 0755 through a handle that does not
//! follow a symlink. [`parse_mode`] reads octal modes as people write them.
//!
//! This crate writes files only; what goes into them is its callers' business.
#![forbid(unsafe_code)]

pub mod owner;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        Ok(()) => undo_umask(dir),
        // Created by someone else in the meantime: theirs to keep as it is.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Gives the directory just created at `dir` mode 0755 when the umask took bits away. A chmod by
/// path would follow a symlink put in the directory's place since it was created (to /etc, say), so
/// the mode is set through a handle opened with `O_DIRECTORY | O_NOFOLLOW`: the open itself refuses a
/// symlink, and a FIFO or device put in its place, without blocking on it. There is no window between
/// a check and the open.
fn undo_umask(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let handle = match rustix::fs::open(dir, flags, Mode::empty()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR => {
            return Err(std::io::Error::other(format!(
                "{} was replaced while it was being created",
                dir.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    // The usual umask (022) leaves nothing to undo.
    if handle.metadata()?.mode() & 0o7777 == 0o755 {
        return Ok(());
    }
    handle.set_permissions(std::fs::Permissions::from_mode(0o755))
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
    write_set(files).map_err(|e| e.error)
}

/// A set write that failed, and how far it got.
#[derive(Debug)]
pub struct SetWriteError {
    /// What failed.
    pub error: std::io::Error,
    /// How many files of the set had been renamed into place when it failed: 0 means every old file
    /// is as it was; more means the set on disk mixes new and old files (or, when it is all of them,
    /// only making the renames durable failed).
    pub replaced: usize,
}

impl std::fmt::Display for SetWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SetWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// [`write_all_atomic`], saying on failure how many files were already replaced, so that a caller
/// can tell "nothing changed" from "some files changed" (and, say, still reload their consumer).
pub fn write_set(files: &[OutFile<'_>]) -> Result<(), SetWriteError> {
    let mut staged: Vec<(PathBuf, &Path)> = Vec::with_capacity(files.len());
    let mut replaced = 0;
    let result = (|| {
        for f in files {
            let tmp = stage(f)?;
            staged.push((tmp, &f.path));
        }
        for (tmp, dest) in &staged {
            std::fs::rename(tmp, dest)?;
            replaced += 1;
        }
        let mut dirs: Vec<&Path> = files.iter().map(|f| parent(&f.path)).collect();
        dirs.dedup();
        for d in dirs {
            // Make the renames durable.
            std::fs::File::open(d)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|error| {
        for (tmp, _) in &staged[replaced..] {
            let _ = std::fs::remove_file(tmp);
        }
        SetWriteError { error, replaced }
    })
}

/// Creates `path` holding `bytes` with mode `mode`, only when nothing is there yet (an error of kind
/// `AlreadyExists` otherwise), so that the file appears complete or not at all: written to a temp
/// file beside it and fsynced, then hard-linked into place (a link, unlike a rename, never replaces).
pub fn create_new_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = stage(&OutFile {
        path: path.to_path_buf(),
        bytes,
        mode,
        owner: None,
    })?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked?;
    std::fs::File::open(parent(path))?.sync_all()
}

/// A file whose content is known only later, at a point where failing to write it would lose it (a
/// key generated inside a transaction already committed): its temp file is created now (empty, with
/// its final mode), so a missing directory or permission shows before anything happens; `commit`
/// fills it and renames it into place. Dropped uncommitted, it removes its temp file.
#[derive(Debug)]
pub struct Reserved {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    mode: u32,
}

impl Reserved {
    /// Reserves `path` (mode `mode`). Anything but a regular file already there is an error now rather
    /// than later: a directory, and also a symlink, device or pipe (`/dev/stdout`), which the rename
    /// would replace with a file instead of writing through it.
    pub fn new(path: &Path, mode: u32) -> std::io::Result<Self> {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if m.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    format!("{} is a directory", path.display()),
                ));
            }
            if !m.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} is not a regular file (a symlink, device or pipe), and is never replaced",
                        path.display()
                    ),
                ));
            }
        }
        ensure_dir(parent(path))?;
        let tmp = temp_path(path)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .open(&tmp)?;
        Ok(Self {
            dest: path.to_path_buf(),
            tmp,
            file: Some(file),
            mode,
        })
    }

    /// Writes `bytes`, fsyncs and renames the file into place. When the rename fails, the bytes stay
    /// in the temp file, which the error names: a copy is better than none of something that cannot
    /// be made again.
    pub fn commit(mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some(mut file) = self.file.take() else {
            return Err(std::io::Error::other("already committed"));
        };
        let written = (|| {
            file.write_all(bytes)?;
            file.set_permissions(std::fs::Permissions::from_mode(self.mode & 0o7777))?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e);
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{e}; the content is kept in {}", self.tmp.display()),
            )
        })?;
        std::fs::File::open(parent(&self.dest))?.sync_all()
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Removes the temp files of `path` an interrupted write left behind (a crash between staging and
/// renaming leaves a full copy, a key perhaps): entries of its directory named exactly as this module
/// names them (`.<name>.<12 hex digits>.tmp`), regular files, last modified at least `min_age` ago (a
/// younger one may belong to a write in progress in another process). Returns how many it removed.
pub fn remove_stale_temps(path: &Path, min_age: Duration) -> std::io::Result<usize> {
    let Some(name) = path.file_name() else {
        return Ok(0);
    };
    let entries = match std::fs::read_dir(parent(path)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !is_temp_of(&entry.file_name(), name) {
            continue;
        }
        // Not followed: a symlink with such a name is left alone.
        let meta = entry.metadata()?;
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= min_age);
        if meta.is_file() && old {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// `candidate` is a temp file name [`temp_path`] makes for a file named `name`.
fn is_temp_of(candidate: &OsStr, name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    let Some(suffix) = candidate
        .to_str()
        .and_then(|c| c.strip_prefix('.'))
        .and_then(|c| c.strip_prefix(&*name))
        .and_then(|c| c.strip_prefix('.'))
        .and_then(|c| c.strip_suffix(".tmp"))
    else {
        return false;
    };
    suffix.len() == 12
        && suffix
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A fresh temp file name beside `path`: `.<name>.<12 hex digits>.tmp`.
fn temp_path(path: &Path) -> std::io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| std::io::Error::other("no randomness"))?;
    Ok(parent(path).join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        hex::encode(suffix)
    )))
}

fn stage(f: &OutFile<'_>) -> std::io::Result<PathBuf> {
    ensure_dir(parent(&f.path))?;
    let tmp = temp_path(&f.path)?;
    let result = (|| {
        // Created with the final mode (0600 for keys), so a secret is never readable by others.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(f.mode & 0o777)
            .open(&tmp)?;
        file.write_all(f.bytes)?;
        // Owner first: a chown may clear the set-id bits a mode asks for.
        if let Some((uid, gid)) = f.owner {
            std::os::unix::fs::fchown(&file, uid, gid)?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(f.mode & 0o7777))?;
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
    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_directory_is_made_0755_through_a_handle_never_through_a_symlink() {
        let root = tempfile::tempdir().expect("tempdir");
        // What a umask of 077 leaves: put right.
        let made = root.path().join("made");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&made)
            .expect("mkdir");
        undo_umask(&made).expect("undo");
        assert_eq!(mode_of(&made), 0o755);
        // The new directory swapped for a symlink to another directory before its mode is set: the
        // other directory keeps its mode.
        let victim = root.path().join("victim");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&victim)
            .expect("mkdir");
        let swapped = root.path().join("swapped");
        std::os::unix::fs::symlink(&victim, &swapped).expect("symlink");
        let err = undo_umask(&swapped).expect_err("a symlink is not the new directory");
        assert!(err.to_string().contains("was replaced"), "{err}");
        assert_eq!(mode_of(&victim), 0o700);
        // Swapped for a FIFO: refused at once, not blocked on waiting for a writer.
        let fifo = root.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(undo_umask(&fifo).map_err(|e| e.to_string())));
        let err = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("undo_umask blocked opening a FIFO")
            .expect_err("a FIFO is not the new directory");
        assert!(err.contains("was replaced"), "{err}");
    }

    #[test]
    fn a_set_write_says_how_many_files_it_replaced() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = root.path();
        std::fs::write(d.join("a"), b"old a").expect("a");
        // b's destination is a non-empty directory: its rename fails after a's succeeded.
        std::fs::create_dir_all(d.join("b/inside")).expect("mkdir");
        let files = [("a", &b"new a"[..]), ("b", &b"new b"[..])].map(|(n, bytes)| OutFile {
            path: d.join(n),
            bytes,
            mode: 0o600,
            owner: None,
        });
        let err = write_set(&files).expect_err("b cannot be replaced");
        assert_eq!(err.replaced, 1);
        assert_eq!(std::fs::read(d.join("a")).expect("a"), b"new a");
        assert_eq!(names(d), ["a", "b"], "no temp file left");
        // A failure while staging replaces nothing.
        let files = [OutFile {
            path: d.join("a/under-a-file"),
            bytes: b"x",
            mode: 0o600,
            owner: None,
        }];
        assert_eq!(write_set(&files).expect_err("not a directory").replaced, 0);
    }

    #[test]
    fn create_new_atomic_never_replaces_and_leaves_no_temp_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("master.key");
        create_new_atomic(&path, b"first", 0o600).expect("create");
        assert_eq!(mode_of(&path), 0o600);
        let err = create_new_atomic(&path, b"second", 0o600).expect_err("exists");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).expect("read"), b"first");
        assert_eq!(names(root.path()), ["master.key"]);
    }

    #[test]
    fn a_reserved_file_shows_problems_early_and_leaves_nothing_when_dropped() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = root.path();
        drop(Reserved::new(&d.join("out/root-key.pem"), 0o600).expect("reserve"));
        assert!(names(&d.join("out")).is_empty(), "the temp file is removed");
        let err = Reserved::new(&d.join("out"), 0o600).expect_err("a directory");
        assert_eq!(err.kind(), std::io::ErrorKind::IsADirectory);
        let key = d.join("out/root-key.pem");
        Reserved::new(&key, 0o600)
            .expect("reserve")
            .commit(b"key")
            .expect("commit");
        assert_eq!(std::fs::read(&key).expect("read"), b"key");
        assert_eq!(mode_of(&key), 0o600);
        assert_eq!(names(&d.join("out")), ["root-key.pem"]);
    }

    #[test]
    fn only_old_temp_files_named_exactly_like_ours_are_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = root.path();
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        let put = |name: &str, old: bool| {
            let f = std::fs::File::create(d.join(name)).expect("create");
            if old {
                f.set_modified(hour_ago).expect("mtime");
            }
        };
        put(".key.pem.0123456789ab.tmp", true);
        put(".key.pem.aaaaaaaaaaaa.tmp", false);
        for other in [
            ".key.pem.0123456789AB.tmp",
            ".key.pem.0123456789a.tmp",
            ".key.pem.tmp",
            "key.pem.0123456789ab.tmp",
            ".cert.pem.0123456789ab.tmp",
            ".key.pem.0123456789ab.tmp.bak",
        ] {
            put(other, true);
        }
        std::os::unix::fs::symlink("key.pem", d.join(".key.pem.bbbbbbbbbbbb.tmp")).expect("link");
        let key = d.join("key.pem");
        assert_eq!(
            remove_stale_temps(&key, Duration::from_secs(600)).expect("clean"),
            1
        );
        assert!(!d.join(".key.pem.0123456789ab.tmp").exists());
        assert!(d.join(".key.pem.aaaaaaaaaaaa.tmp").exists(), "too young");
        assert_eq!(remove_stale_temps(&key, Duration::ZERO).expect("clean"), 1);
        assert_eq!(
            names(d).len(),
            7,
            "others and the symlink stay: {:?}",
            names(d)
        );
        assert_eq!(
            remove_stale_temps(&d.join("missing/key.pem"), Duration::ZERO).expect("no dir"),
            0
        );
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
