//! The cluster key: a 32-byte secret shared by every member, which seals
//! the gossip traffic (see [`super::transport`]).
//!
//! It lives in a file named by `[gossip] key_file`, as one line of
//! standard base64, readable by root only. `horcrux gossip-key` makes one.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305};

/// Length of the key in bytes.
pub const KEY_LEN: usize = 32;

/// A key file is one line of base64; anything much longer is not a key,
/// and reading it whole would only waste memory.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// The shared secret of a cluster.
///
/// Debug never shows the key, so it cannot leak through logs.
#[derive(Clone)]
pub struct ClusterKey([u8; KEY_LEN]);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// Why a key text is not a key. Never contains the text itself: it may be
/// a real key with a typo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error(
        "the cluster key is not valid base64 (expected one line of 44 characters, \
         as printed by `horcrux gossip-key`)"
    )]
    NotBase64,
    #[error(
        "the cluster key is {0} bytes long, expected {KEY_LEN} (make one with `horcrux gossip-key`)"
    )]
    WrongLength(usize),
}

/// A cluster key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Format(#[from] KeyFormatError),
    #[error(
        "cluster key file {path} does not exist; create it with `horcrux gossip-key > {path}` \
         and `chmod 600 {path}`, and copy the same file to every member",
        path = .path.display()
    )]
    Missing { path: PathBuf },
    #[error(
        "cluster key file {path} is readable by group or others (mode {mode:04o}); \
         run `chmod 600 {path}`",
        path = .path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("cannot read cluster key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster key file {} does not hold a cluster key", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: KeyFormatError,
    },
}

impl ClusterKey {
    /// A new random key from the operating system's randomness.
    pub fn generate() -> ClusterKey {
        ClusterKey(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// The key as standard base64 (44 characters), the key file format.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Reads a key from its base64 text; surrounding whitespace (the
    /// newline of a file) is ignored.
    pub fn parse(text: &str) -> Result<ClusterKey, KeyError> {
        Ok(Self::parse_format(text)?)
    }

    fn parse_format(text: &str) -> Result<ClusterKey, KeyFormatError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyFormatError::NotBase64)?;
        let len = bytes.len();
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyFormatError::WrongLength(len))?;
        Ok(ClusterKey(key))
    }

    /// Reads the key file. Refuses a file that group or others may read:
    /// whoever reads the key can join the cluster and read its config.
    pub fn load(path: &Path) -> Result<ClusterKey, KeyError> {
        let read_error = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(read_error(e)),
        };
        // The mode of the opened file, not of the path: no window for a
        // swap between the check and the read.
        let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_KEY_FILE_LEN)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        let invalid = |source| KeyError::Invalid {
            path: path.to_path_buf(),
            source,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid(KeyFormatError::NotBase64))?;
        Self::parse_format(text).map_err(invalid)
    }

    /// The raw key, for the cipher.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write_key_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("gossip.key");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn generate_parse_round_trip() {
        let key = ClusterKey::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        let parsed = ClusterKey::parse(&text).unwrap();
        assert_eq!(parsed.bytes(), key.bytes());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            ClusterKey::generate().bytes(),
            ClusterKey::generate().bytes()
        );
    }

    #[test]
    fn parse_ignores_surrounding_whitespace() {
        let key = ClusterKey::generate();
        let text = format!("  \t{}\n\n", key.to_base64());
        assert_eq!(ClusterKey::parse(&text).unwrap().bytes(), key.bytes());
    }

    #[test]
    fn parse_rejects_wrong_length() {
        let short = STANDARD.encode([7u8; 16]);
        let err = ClusterKey::parse(&short).unwrap_err();
        assert!(matches!(
            err,
            KeyError::Format(KeyFormatError::WrongLength(16))
        ));
        assert!(err.to_string().contains("expected 32"), "{err}");
        let long = STANDARD.encode([7u8; 33]);
        assert!(matches!(
            ClusterKey::parse(&long).unwrap_err(),
            KeyError::Format(KeyFormatError::WrongLength(33))
        ));
        assert!(matches!(
            ClusterKey::parse("").unwrap_err(),
            KeyError::Format(KeyFormatError::WrongLength(0))
        ));
    }

    #[test]
    fn parse_rejects_garbage_without_echoing_it() {
        let secret_looking = "not a key, but might be one with a typo!";
        let err = ClusterKey::parse(secret_looking).unwrap_err();
        assert!(matches!(err, KeyError::Format(KeyFormatError::NotBase64)));
        assert!(!err.to_string().contains("typo"), "{err}");
        // Whitespace inside the key is not tolerated: it is not one line.
        let key = ClusterKey::generate().to_base64();
        let split = format!("{}\n{}", &key[..20], &key[20..]);
        assert!(ClusterKey::parse(&split).is_err());
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let key = ClusterKey::generate();
        let debug = format!("{key:?}");
        assert_eq!(debug, "ClusterKey(<redacted>)");
        assert!(!debug.contains(&key.to_base64()));
    }

    #[test]
    fn load_accepts_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let key = ClusterKey::generate();
        let path = write_key_file(dir.path(), &format!("{}\n", key.to_base64()), 0o600);
        assert_eq!(ClusterKey::load(&path).unwrap().bytes(), key.bytes());
    }

    #[test]
    fn load_refuses_a_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let key = ClusterKey::generate();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let path = write_key_file(dir.path(), &key.to_base64(), mode);
            let err = ClusterKey::load(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::Permissions { .. }),
                "{mode:o}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains("chmod 600"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(!text.contains(&key.to_base64()), "{text}");
        }
    }

    #[test]
    fn load_of_a_missing_file_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.key");
        let err = ClusterKey::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::Missing { .. }));
        let text = err.to_string();
        assert!(text.contains("horcrux gossip-key > "), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("chmod 600"), "{text}");
    }

    #[test]
    fn load_of_an_invalid_file_names_it_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_key_file(dir.path(), "hunter2 hunter2\n", 0o600);
        let err = ClusterKey::load(&path).unwrap_err();
        assert!(matches!(
            err,
            KeyError::Invalid {
                source: KeyFormatError::NotBase64,
                ..
            }
        ));
        let text = crate::errors::chain(&err);
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("not valid base64"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn load_of_a_binary_file_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("binary.key");
        std::fs::write(&path, [0xff, 0xfe, 0x00, 0x80]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            ClusterKey::load(&path).unwrap_err(),
            KeyError::Invalid { .. }
        ));
    }
}
