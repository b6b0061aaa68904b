//! Generations on disk: `<state>/generations/<id>/{meta.json, tree/...}`.
//!
//! A generation directory is assembled under a temporary name, every file
//! and directory fsynced, then renamed into place, so a crash leaves either
//! the whole generation or none of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{GenerationInfo, Source, TreeHash};
use crate::fsutil::{sync_dir, write_synced};

/// How many generations are kept; older ones are pruned.
pub const KEEP_GENERATIONS: usize = 50;

const TMP_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generation {0} does not exist")]
    NotFound(u64),
    #[error("generation metadata {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("refusing to store a file outside the tree: {0}")]
    BadPath(String),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

#[derive(Debug, Clone)]
pub struct GenerationStore {
    dir: PathBuf,
}

impl GenerationStore {
    /// Opens (creating if needed) the store under `state_dir`, removing
    /// half-written generations left by a crash.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let dir = state_dir.join("generations");
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        for entry in fs::read_dir(&dir).map_err(io("read", &dir))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(GenerationStore { dir })
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:010}"))
    }

    /// Every stored generation, oldest first.
    pub fn list(&self) -> Result<Vec<GenerationInfo>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)
            .map_err(io("read", &self.dir))?
            .flatten()
        {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            out.push(self.get(id)?);
        }
        out.sort_by_key(|g| g.id);
        Ok(out)
    }

    pub fn latest(&self) -> Result<Option<GenerationInfo>, StoreError> {
        Ok(self.list()?.pop())
    }

    pub fn get(&self, id: u64) -> Result<GenerationInfo, StoreError> {
        let path = self.path_of(id).join("meta.json");
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(id),
            _ => io("read", &path)(e),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path, source })
    }

    /// The files of a generation as `(relative path, content)`.
    pub fn files(&self, id: u64) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.get(id)?;
        let root = self.path_of(id).join("tree");
        let mut out = Vec::new();
        collect(&root, "", &mut out)?;
        out.sort();
        Ok(out)
    }

    /// Stores a tree as a new generation, unless it is the latest one
    /// already (then the latest is returned: saving a file twice, or a
    /// rescan, does not make a new generation).
    pub fn commit(
        &self,
        files: &[(String, Vec<u8>)],
        hash: &TreeHash,
        source: Source,
    ) -> Result<(GenerationInfo, bool), StoreError> {
        let latest = self.latest()?;
        if let Some(latest) = &latest
            && latest.hash == hash.0
        {
            return Ok((latest.clone(), false));
        }
        let id = latest.as_ref().map_or(1, |g| g.id + 1);
        let info = GenerationInfo {
            id,
            hash: hash.0.clone(),
            parent: latest.map(|g| g.id),
            source,
            accepted_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{id}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let tree = tmp.join("tree");
        fs::create_dir_all(&tree).map_err(io("create", &tree))?;
        for (rel, content) in files {
            let safe = Path::new(rel)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !safe || rel.is_empty() {
                let _ = fs::remove_dir_all(&tmp);
                return Err(StoreError::BadPath(rel.clone()));
            }
            let path = tree.join(rel);
            write_synced(&path, content).map_err(io("write", &path))?;
        }
        let meta = serde_json::to_vec_pretty(&info).map_err(|source| StoreError::Corrupt {
            path: tmp.clone(),
            source,
        })?;
        let meta_path = tmp.join("meta.json");
        write_synced(&meta_path, &meta).map_err(io("write", &meta_path))?;
        sync_dir(&tmp).map_err(io("sync", &tmp))?;
        let dest = self.path_of(id);
        fs::rename(&tmp, &dest).map_err(io("rename", &dest))?;
        sync_dir(&self.dir).map_err(io("sync", &self.dir))?;
        self.prune()?;
        Ok((info, true))
    }

    fn prune(&self) -> Result<(), StoreError> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(KEEP_GENERATIONS);
        for old in &all[..excess] {
            let path = self.path_of(old.id);
            fs::remove_dir_all(&path).map_err(io("remove", &path))?;
        }
        Ok(())
    }
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io("read", dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let path = entry.path();
        if path.is_dir() {
            collect(&path, &format!("{rel}/"), out)?;
        } else {
            out.push((rel, fs::read(&path).map_err(io("read", &path))?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::tree_hash;

    fn tree(content: &str) -> (Vec<(String, Vec<u8>)>, TreeHash) {
        let files = vec![
            (
                "node.toml".to_string(),
                format!("name = \"{content}\"\n").into_bytes(),
            ),
            ("cluster/vms/a.toml".to_string(), b"cpus = 1\n".to_vec()),
        ];
        let hash = tree_hash(files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
        (files, hash)
    }

    #[test]
    fn commits_chain_and_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let store = GenerationStore::open(dir.path()).unwrap();
        let (f1, h1) = tree("a");
        let (g1, new1) = store.commit(&f1, &h1, Source::Local).unwrap();
        assert!(new1);
        assert_eq!((g1.id, g1.parent), (1, None));
        let (again, new) = store.commit(&f1, &h1, Source::Local).unwrap();
        assert!(!new);
        assert_eq!(again, g1);
        let (f2, h2) = tree("b");
        let (g2, _) = store.commit(&f2, &h2, Source::Push).unwrap();
        assert_eq!((g2.id, g2.parent, g2.source), (2, Some(1), Source::Push));
        assert_eq!(store.files(1).unwrap(), {
            let mut f = f1.clone();
            f.sort();
            f
        });
        assert!(matches!(store.files(9), Err(StoreError::NotFound(9))));
    }

    #[test]
    fn keeps_the_last_fifty_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = GenerationStore::open(dir.path()).unwrap();
        for i in 0..(KEEP_GENERATIONS + 5) {
            let (f, h) = tree(&format!("n{i}"));
            store.commit(&f, &h, Source::Local).unwrap();
        }
        // A crash mid-commit leaves a temporary directory behind.
        fs::create_dir_all(dir.path().join("generations/.tmp-99-1/tree")).unwrap();
        let store = GenerationStore::open(dir.path()).unwrap();
        let all = store.list().unwrap();
        assert_eq!(all.len(), KEEP_GENERATIONS);
        assert_eq!(all.first().map(|g| g.id), Some(6));
        assert_eq!(all.last().map(|g| g.id), Some(55));
        assert!(!dir.path().join("generations/.tmp-99-1").exists());
    }

    #[test]
    fn refuses_paths_leaving_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = GenerationStore::open(dir.path()).unwrap();
        let files = vec![("../evil.toml".to_string(), Vec::new())];
        let hash = tree_hash([("../evil.toml", &b""[..])]);
        assert!(matches!(
            store.commit(&files, &hash, Source::Local),
            Err(StoreError::BadPath(_))
        ));
        assert!(store.list().unwrap().is_empty());
    }
}
