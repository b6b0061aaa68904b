//! Generations on disk, content-addressed:
//!
//! ```text
//! <state>/generations/objects/<sha256>       one blob per distinct file content
//! <state>/generations/<id>/meta.json         GenerationInfo
//! <state>/generations/<id>/manifest.json     {relative path: sha256}
//! ```
//!
//! An edit of one file in a 10,000-file tree stores one blob and a
//! manifest, not a copy of the tree. New blobs are flushed before they get
//! their names (one fsync each when there are few; one `syncfs` for a large
//! first tree, where thousands of fsyncs would take a minute), then the
//! generation directory is flushed and renamed into place: a crash leaves
//! the whole generation or none of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{GenerationInfo, Source, TreeHash, sha256_hex};
use crate::fsutil::{PathError, at, sync_dir};

/// How many generations are kept; older ones are pruned.
pub const KEEP_GENERATIONS: usize = 50;

const TMP_PREFIX: &str = ".tmp-";
const OBJECTS: &str = "objects";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("generation {0} does not exist")]
    NotFound(u64),
    #[error("generation file {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored content of {0} does not match its hash")]
    Tampered(String),
    #[error("refusing to store a file outside the tree: {0}")]
    BadPath(String),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    at(action, path)
}

type Manifest = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct GenerationStore {
    dir: PathBuf,
}

impl GenerationStore {
    /// Opens (creating if needed) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let dir = state_dir.join("generations");
        let objects = dir.join(OBJECTS);
        fs::create_dir_all(&objects).map_err(io("create", &objects))?;
        Ok(GenerationStore { dir })
    }

    /// Removes half-written generations and blobs left by a crash. Only
    /// the daemon, the one writer, calls this: a CLI reading the store
    /// while hostd commits must not delete hostd's work in progress.
    pub fn recover(&self) -> Result<(), StoreError> {
        for dir in [self.dir.clone(), self.dir.join(OBJECTS)] {
            for entry in fs::read_dir(&dir).map_err(io("read", &dir))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TMP_PREFIX) || name.ends_with(".tmp") {
                    let _ =
                        fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
                }
            }
        }
        Ok(())
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:010}"))
    }

    fn object(&self, hash: &str) -> PathBuf {
        self.dir.join(OBJECTS).join(hash)
    }

    fn ids(&self) -> Result<Vec<u64>, StoreError> {
        let mut ids: Vec<u64> = fs::read_dir(&self.dir)
            .map_err(io("read", &self.dir))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Every stored generation, oldest first.
    pub fn list(&self) -> Result<Vec<GenerationInfo>, StoreError> {
        self.ids()?.into_iter().map(|id| self.get(id)).collect()
    }

    pub fn latest(&self) -> Result<Option<GenerationInfo>, StoreError> {
        match self.ids()?.last() {
            Some(id) => self.get(*id).map(Some),
            None => Ok(None),
        }
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        id: u64,
        file: &str,
    ) -> Result<T, StoreError> {
        let path = self.path_of(id).join(file);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(id),
            _ => io("read", &path)(e),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path, source })
    }

    pub fn get(&self, id: u64) -> Result<GenerationInfo, StoreError> {
        self.read_json(id, "meta.json")
    }

    /// The files of a generation as `(relative path, content)`, in path
    /// order, each checked against its hash.
    pub fn files(&self, id: u64) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let manifest: Manifest = self.read_json(id, "manifest.json")?;
        manifest
            .into_iter()
            .map(|(rel, hash)| {
                // The manifest is read back from disk: only a hash may name a blob.
                if hash.len() != 64
                    || !hash
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(StoreError::Tampered(rel));
                }
                let path = self.object(&hash);
                let content = fs::read(&path).map_err(io("read", &path))?;
                if sha256_hex(&content) != hash {
                    return Err(StoreError::Tampered(rel));
                }
                Ok((rel, content))
            })
            .collect()
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
        let mut manifest = Manifest::new();
        let mut new_blobs = BTreeMap::new();
        for (rel, content) in files {
            let safe = !rel.is_empty()
                && Path::new(rel)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !safe {
                return Err(StoreError::BadPath(rel.clone()));
            }
            let blob = sha256_hex(content);
            let path = self.object(&blob);
            // Several files may share one content (and so one blob).
            if !path.exists() && !new_blobs.contains_key(&blob) {
                let tmp = path.with_extension("tmp");
                fs::write(&tmp, content).map_err(io("write", &tmp))?;
                new_blobs.insert(blob.clone(), (tmp, path));
            }
            manifest.insert(rel.clone(), blob);
        }
        // Blobs get their final names only once their contents are on
        // disk, so a crash never leaves a truncated blob to be reused.
        if !new_blobs.is_empty() {
            let tmps: Vec<PathBuf> = new_blobs.values().map(|(tmp, _)| tmp.clone()).collect();
            self.flush(&tmps)?;
            for (tmp, path) in new_blobs.values() {
                fs::rename(tmp, path).map_err(io("rename", path))?;
            }
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
        fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
        let encode = |r: Result<Vec<u8>, serde_json::Error>| {
            r.map_err(|source| StoreError::Corrupt {
                path: tmp.clone(),
                source,
            })
        };
        let documents = [
            (
                "manifest.json",
                encode(serde_json::to_vec_pretty(&manifest))?,
            ),
            ("meta.json", encode(serde_json::to_vec_pretty(&info))?),
        ];
        let mut written = Vec::new();
        for (name, bytes) in documents {
            let path = tmp.join(name);
            fs::write(&path, bytes).map_err(io("write", &path))?;
            written.push(path);
        }
        self.flush(&written)?;
        let objects = self.dir.join(OBJECTS);
        for dir in [&objects, &tmp] {
            sync_dir(dir).map_err(io("sync", dir))?;
        }
        let dest = self.path_of(id);
        fs::rename(&tmp, &dest).map_err(io("rename", &dest))?;
        sync_dir(&self.dir).map_err(io("sync", &self.dir))?;
        // The generation is committed; failing to tidy up must not say otherwise.
        if let Err(e) = self.prune() {
            tracing::warn!(error = %crate::errors::chain(&e), "cannot prune old generations");
        }
        Ok((info, true))
    }

    /// Makes `files` durable: fsync each, or one `syncfs` when there are
    /// so many that per-file fsyncs would dominate.
    fn flush(&self, files: &[PathBuf]) -> Result<(), StoreError> {
        const SYNCFS_ABOVE: usize = 64;
        if files.len() > SYNCFS_ABOVE {
            let dir = fs::File::open(&self.dir).map_err(io("open", &self.dir))?;
            return rustix::fs::syncfs(&dir).map_err(|e| io("sync", &self.dir)(e.into()));
        }
        for file in files {
            fs::File::open(file)
                .and_then(|f| f.sync_all())
                .map_err(io("sync", file))?;
        }
        Ok(())
    }

    /// Drops generations beyond [`KEEP_GENERATIONS`] and the blobs only
    /// they used.
    fn prune(&self) -> Result<(), StoreError> {
        let ids = self.ids()?;
        let excess = ids.len().saturating_sub(KEEP_GENERATIONS);
        if excess == 0 {
            return Ok(());
        }
        for id in &ids[..excess] {
            let path = self.path_of(*id);
            fs::remove_dir_all(&path).map_err(io("remove", &path))?;
        }
        let mut live = BTreeSet::new();
        for id in &ids[excess..] {
            let manifest: Manifest = self.read_json(*id, "manifest.json")?;
            live.extend(manifest.into_values());
        }
        let objects = self.dir.join(OBJECTS);
        for entry in fs::read_dir(&objects)
            .map_err(io("read", &objects))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
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
        // A crash mid-commit leaves a temporary directory and blob behind.
        fs::create_dir_all(dir.path().join("generations/.tmp-99-1")).unwrap();
        fs::write(dir.path().join("generations/objects/ab.tmp"), b"half").unwrap();
        let store = GenerationStore::open(dir.path()).unwrap();
        assert!(
            dir.path().join("generations/.tmp-99-1").exists(),
            "open alone must not clean up"
        );
        store.recover().unwrap();
        assert!(!dir.path().join("generations/objects/ab.tmp").exists());
        let all = store.list().unwrap();
        assert_eq!(all.len(), KEEP_GENERATIONS);
        assert_eq!(all.first().map(|g| g.id), Some(6));
        assert_eq!(all.last().map(|g| g.id), Some(55));
        assert!(!dir.path().join("generations/.tmp-99-1").exists());
    }

    #[test]
    fn identical_contents_are_stored_once_and_unused_blobs_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = GenerationStore::open(dir.path()).unwrap();
        let blobs = || {
            fs::read_dir(dir.path().join("generations/objects"))
                .unwrap()
                .count()
        };
        let (f1, h1) = tree("a");
        store.commit(&f1, &h1, Source::Local).unwrap();
        assert_eq!(blobs(), 2);
        // Only node.toml differs: one new blob.
        let (f2, h2) = tree("b");
        store.commit(&f2, &h2, Source::Local).unwrap();
        assert_eq!(blobs(), 3);
        for i in 0..KEEP_GENERATIONS {
            let (f, h) = tree(&format!("x{i}"));
            store.commit(&f, &h, Source::Local).unwrap();
        }
        // Generations 1 and 2 are gone, and with them "a" and "b".
        assert_eq!(blobs(), KEEP_GENERATIONS + 1);
        assert!(matches!(store.files(2), Err(StoreError::NotFound(2))));
    }

    #[test]
    fn files_with_identical_contents_share_a_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = GenerationStore::open(dir.path()).unwrap();
        let files = vec![
            ("cluster/vms/a.toml".to_string(), b"cpus = 1\n".to_vec()),
            ("cluster/vms/b.toml".to_string(), b"cpus = 1\n".to_vec()),
        ];
        let hash = tree_hash(files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
        store.commit(&files, &hash, Source::Local).unwrap();
        assert_eq!(store.files(1).unwrap(), files);
        assert_eq!(
            fs::read_dir(dir.path().join("generations/objects"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn tampered_blobs_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = GenerationStore::open(dir.path()).unwrap();
        let (f1, h1) = tree("a");
        store.commit(&f1, &h1, Source::Local).unwrap();
        let objects = dir.path().join("generations/objects");
        for entry in fs::read_dir(&objects).unwrap().flatten() {
            fs::write(entry.path(), b"changed").unwrap();
        }
        assert!(matches!(store.files(1), Err(StoreError::Tampered(_))));
        // A manifest naming something other than a blob is refused unread.
        let manifest = dir.path().join("generations/0000000001/manifest.json");
        fs::write(&manifest, br#"{"node.toml": "../../../../dev/zero"}"#).unwrap();
        assert!(matches!(store.files(1), Err(StoreError::Tampered(_))));
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
