//! The minisign keys that may sign update bundles: every `*.pub` file of
//! a directory in the read-only root (so only a signed image can change
//! them), in the format `minisign -G` writes.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::cluster::signature::key_id;

/// A public key file is two short lines.
const MAX_KEY_FILE_LEN: u64 = 4096;
/// A signature file is four short lines.
pub const MAX_SIGNATURE_LEN: u64 = 4096;

/// One trusted key and the file it came from.
#[derive(Debug, Clone)]
struct UpdateKey {
    file: String,
    id: String,
    key: minisign_verify::PublicKey,
}

/// The keys of the key directory.
#[derive(Debug, Clone)]
pub struct UpdateKeys {
    dir: PathBuf,
    keys: Vec<UpdateKey>,
    /// Files that are not keys, with why; they trust nothing.
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "no trusted update keys: cannot read {dir} ({source}); the image must ship the \
         minisign public keys that sign bundles there as *.pub"
    )]
    NoDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no trusted update keys: {dir} holds no usable minisign public key (*.pub){skipped}; \
         refusing a bundle nobody could have signed"
    )]
    NoKeys { dir: PathBuf, skipped: String },
    #[error("manifest.toml.minisig is not a minisign signature: {0}")]
    Unparsable(String),
    #[error(
        "untrusted signature: manifest.toml is signed by key ID {key_id}, which is not among \
         the trusted update keys in {dir}"
    )]
    UnknownKey { key_id: String, dir: PathBuf },
    #[error(
        "bad signature on manifest.toml: it changed after it was signed, or the signature is forged"
    )]
    BadSignature,
    #[error(
        "manifest.toml.minisig is a legacy (non-prehashed) minisign signature; sign with a current minisign"
    )]
    Legacy,
}

impl UpdateKeys {
    /// Loads every `*.pub` file of `dir`, sorted by name.
    pub fn load(dir: &Path) -> Result<UpdateKeys, TrustError> {
        let entries = fs::read_dir(dir).map_err(|source| TrustError::NoDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.ends_with(".pub") && !name.starts_with('.'))
            .collect();
        names.sort();
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for file in names {
            match read_key(&dir.join(&file)) {
                Ok((id, key)) => keys.push(UpdateKey { file, id, key }),
                Err(why) => skipped.push(format!("{file}: {why}")),
            }
        }
        if keys.is_empty() {
            let skipped = if skipped.is_empty() {
                String::new()
            } else {
                format!(" (skipped {})", skipped.join("; "))
            };
            return Err(TrustError::NoKeys {
                dir: dir.to_path_buf(),
                skipped,
            });
        }
        Ok(UpdateKeys {
            dir: dir.to_path_buf(),
            keys,
            skipped,
        })
    }

    /// Checks `signature` (a `.minisig` file's text) over `message`;
    /// returns the key file and ID that verified it.
    pub fn verify(&self, message: &[u8], signature: &str) -> Result<(&str, &str), TrustError> {
        let parsed = minisign_verify::Signature::decode(signature)
            .map_err(|e| TrustError::Unparsable(e.to_string()))?;
        let mut outcome = Err(TrustError::UnknownKey {
            key_id: signature
                .lines()
                .nth(1)
                .and_then(key_id)
                .unwrap_or_default(),
            dir: self.dir.clone(),
        });
        for key in &self.keys {
            match key.key.verify(message, &parsed, false) {
                Ok(()) => return Ok((&key.file, &key.id)),
                Err(minisign_verify::Error::UnexpectedKeyId) => {}
                Err(minisign_verify::Error::UnexpectedAlgorithm) => {
                    outcome = Err(TrustError::Legacy)
                }
                Err(_) => outcome = Err(TrustError::BadSignature),
            }
        }
        outcome
    }
}

fn read_key(path: &Path) -> Result<(String, minisign_verify::PublicKey), String> {
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_LEN).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    let key = minisign_verify::PublicKey::decode(&text)
        .map_err(|e| format!("not a minisign public key ({e})"))?;
    let id = text.lines().nth(1).and_then(key_id).unwrap_or_default();
    Ok((id, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pub_file(pair: &minisign::KeyPair) -> String {
        pair.pk.to_box().unwrap().into_string()
    }

    fn signature(pair: &minisign::KeyPair, message: &[u8]) -> String {
        minisign::sign(None, &pair.sk, message, None, None)
            .unwrap()
            .into_string()
    }

    #[test]
    fn any_trusted_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let first = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let second = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let stranger = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        fs::write(dir.path().join("1-first.pub"), pub_file(&first)).unwrap();
        fs::write(dir.path().join("2-second.pub"), pub_file(&second)).unwrap();
        fs::write(dir.path().join("3-junk.pub"), "not a key").unwrap();
        fs::write(dir.path().join("README"), pub_file(&stranger)).unwrap();
        let keys = UpdateKeys::load(dir.path()).unwrap();
        assert_eq!(keys.skipped.len(), 1, "{:?}", keys.skipped);

        let message = b"format = 1\n";
        let (file, id) = keys.verify(message, &signature(&second, message)).unwrap();
        assert_eq!(file, "2-second.pub");
        assert_eq!(Some(id.to_string()), key_id(&second.pk.to_base64()));
        assert!(keys.verify(message, &signature(&first, message)).is_ok());

        let forged = keys.verify(b"format = 2\n", &signature(&first, message));
        assert!(
            matches!(forged, Err(TrustError::BadSignature)),
            "{forged:?}"
        );
        // A key in a file not named *.pub is not trusted.
        let unknown = keys.verify(message, &signature(&stranger, message));
        match unknown {
            Err(TrustError::UnknownKey { key_id: id, .. }) => {
                assert_eq!(Some(id), key_id(&stranger.pk.to_base64()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            keys.verify(message, "garbage"),
            Err(TrustError::Unparsable(_))
        ));
    }

    #[test]
    fn no_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            UpdateKeys::load(&dir.path().join("missing")),
            Err(TrustError::NoDir { .. })
        ));
        assert!(matches!(
            UpdateKeys::load(dir.path()),
            Err(TrustError::NoKeys { .. })
        ));
        fs::write(dir.path().join("a.pub"), "untrusted comment: x\nRWQ\n").unwrap();
        let message = UpdateKeys::load(dir.path()).unwrap_err().to_string();
        assert!(message.contains("a.pub"), "{message}");
    }
}
