//! Durable file writes shared by the generation store and deployments.

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
pub fn replace_file(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".horcrux-")
        .tempfile_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}
