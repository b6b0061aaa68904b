//! Durable file writes shared by the generation store, deployments and
//! the files backends render (units, networkd files).

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// A failed file operation, naming what was done to which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}")]
pub struct PathError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// `map_err` adapter: `fs::read(&p).map_err(at("read", &p))?`.
pub fn at<E: From<PathError>>(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> E {
    let path = path.to_path_buf();
    move |source| {
        PathError {
            action,
            path,
            source,
        }
        .into()
    }
}

/// Writes a file (creating parent directories) and fsyncs it.
pub fn write_synced(path: &Path, content: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut file = fs::File::create(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// Makes a directory's entries (renames, creations) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes `content` to `path` atomically: a temporary file with a random
/// name beside it (created exclusively, so a planted symlink is never
/// followed), fsync, rename.
/// The file is private to root (mode 0600).
pub fn replace_file(path: &Path, content: &[u8]) -> io::Result<()> {
    replace_file_with_mode(path, content, 0o600)
}

fn replace_file_with_mode(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".horcrux-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Replaces `path` with `content` (atomically, creating its directory)
/// unless it already holds exactly that; returns whether it wrote. The
/// file is world-readable (0644): these are files other programs read,
/// such as unit files and systemd-networkd's files (networkd reads them as
/// its own unprivileged user).
pub fn write_if_changed(path: &Path, content: &[u8]) -> io::Result<bool> {
    match fs::read(path) {
        Ok(current) if current == content => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    replace_file_with_mode(path, content, 0o644)?;
    Ok(true)
}

/// Removes a file; returns whether there was one.
pub fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn private_and_readable_files_get_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        replace_file(&private, b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), 0o600);
        let readable = dir.path().join("sub/readable");
        assert!(write_if_changed(&readable, b"y").unwrap());
        assert_eq!(mode(&readable), 0o644);
        assert!(!write_if_changed(&readable, b"y").unwrap());
        assert!(remove_if_present(&readable).unwrap());
        assert!(!remove_if_present(&readable).unwrap());
    }
}
