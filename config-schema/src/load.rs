//! Reading a config root from disk.
//!
//! The walk only collects files; turning them into a [`Config`] is done by
//! [`crate::assemble`], which also serves in-memory trees (tests, fuzzing,
//! trees received from other nodes).

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::assemble::TreeFile;

/// Files larger than this are refused, like pmxcfs does.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Directories nested deeper than this are not descended into.
const MAX_DEPTH: usize = 8;

/// The tree could not be read at all (as opposed to containing errors).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("config directory {0} does not exist")]
    Missing(PathBuf),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot read config directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Collects every file of the tree that [`crate::assemble`] should look at:
/// `.toml` files outside dot-directories and outside `secrets/`. Problems
/// with single files (too large, unreadable, a symlink leaving the root)
/// are recorded on the file, not raised, so the rest is still checked.
pub fn read_tree(root: &Path) -> Result<Vec<TreeFile>, LoadError> {
    read_files(root, &|rel| rel.ends_with(".toml"))
}

/// The walk of [`read_tree`] (same skipping, symlink and size rules) for
/// the files whose relative path `wanted` accepts, such as the signatures
/// beside the config files.
pub fn read_files(root: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<TreeFile>, LoadError> {
    let meta = fs::metadata(root).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LoadError::Missing(root.to_path_buf()),
        _ => LoadError::Io {
            path: root.to_path_buf(),
            source,
        },
    })?;
    if !meta.is_dir() {
        return Err(LoadError::NotADirectory(root.to_path_buf()));
    }
    let canonical_root = root.canonicalize().map_err(|source| LoadError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut walk = Walk {
        wanted,
        root: canonical_root.clone(),
        files: Vec::new(),
        visited: HashSet::from([canonical_root.clone()]),
    };
    walk.dir(&canonical_root, "", 0)
        .map_err(|source| LoadError::Io {
            path: root.to_path_buf(),
            source,
        })?;
    walk.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(walk.files)
}

struct Walk<'a> {
    wanted: &'a dyn Fn(&str) -> bool,
    root: PathBuf,
    files: Vec<TreeFile>,
    visited: HashSet<PathBuf>,
}

impl Walk<'_> {
    fn problem(&mut self, rel: String, message: String) {
        self.files.push(TreeFile {
            path: rel,
            content: Err(message),
        });
    }

    fn dir(&mut self, dir: &Path, prefix: &str, depth: usize) -> std::io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Editor swap files, .git and friends.
            if name.starts_with('.') {
                continue;
            }
            let rel = format!("{prefix}{name}");
            // Node-local secrets are never read by the loader.
            if rel == "secrets" {
                continue;
            }
            let path = entry.path();
            let is_wanted = (self.wanted)(&rel);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let target = if meta.file_type().is_symlink() {
                match path.canonicalize() {
                    // secrets/ is never read, not even through a link.
                    Ok(t) if t.starts_with(self.root.join("secrets")) => {
                        self.problem(
                            rel,
                            "symlink points into secrets/, which is never read".into(),
                        );
                        continue;
                    }
                    Ok(t) if t.starts_with(&self.root) => t,
                    Ok(_) if is_wanted || path.is_dir() => {
                        self.problem(rel, "symlink points outside the config directory".into());
                        continue;
                    }
                    Err(_) if is_wanted => {
                        self.problem(rel, "broken symlink".into());
                        continue;
                    }
                    _ => continue,
                }
            } else {
                path.clone()
            };
            let Ok(meta) = fs::metadata(&target) else {
                continue;
            };
            if meta.is_dir() {
                if depth >= MAX_DEPTH || !self.visited.insert(target.clone()) {
                    continue;
                }
                self.dir(&target, &format!("{rel}/"), depth + 1)?;
            } else if is_wanted {
                let content = if !meta.is_file() {
                    Err("not a regular file".to_string())
                } else if meta.len() > MAX_FILE_SIZE {
                    Err(format!("file is {} bytes; the limit is 1 MiB", meta.len()))
                } else {
                    read_bounded(&target)
                };
                self.files.push(TreeFile { path: rel, content });
            }
        }
        Ok(())
    }
}

/// Reads at most [`MAX_FILE_SIZE`] bytes, in case the file grew after stat.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut buf = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_FILE_SIZE {
        return Err("file is larger than the 1 MiB limit".into());
    }
    Ok(buf)
}
