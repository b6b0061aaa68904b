//! The content hash of a normalised config tree.

use sha2::{Digest, Sha256};

use crate::backend::hex;

/// SHA-256 over the tree's files, hex-encoded.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreeHash(pub String);

/// Hashes `(relative path, content)` pairs in path order, each framed by
/// its length, so that no two different trees share an input. Whitespace
/// and comments count: the stored tree is what the user wrote.
pub fn tree_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> TreeHash {
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    for (path, content) in files {
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(content);
    }
    TreeHash(hex(&hasher.finalize()))
}

/// SHA-256 of some bytes, lower-case hex: blob names in the store, file
/// versions in the cluster, the content a deletion signature covers.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_framed() {
        let a = tree_hash([("a.toml", &b"x"[..]), ("b.toml", &b"y"[..])]);
        let b = tree_hash([("b.toml", &b"y"[..]), ("a.toml", &b"x"[..])]);
        assert_eq!(a, b);
        // Moving a byte between path and content changes the hash.
        let c = tree_hash([("a.tomlx", &b""[..]), ("b.toml", &b"y"[..])]);
        assert_ne!(a, c);
        assert_eq!(a.0.len(), 64);
    }
}
