//! minisign signatures on the files of `cluster/`.
//!
//! With `[trust] require_signatures = true` in cluster.toml, every file
//! under `cluster/` must carry a signature by a trusted key, so that a
//! compromised node cannot inject configuration into the others.
//!
//! A file's signature lives next to it (`cluster/vms/web-1.toml.minisig`;
//! the config loader ignores non-`.toml` files). It is a standard minisign
//! signature over the file's bytes whose trusted comment is exactly
//! `horcrux file path=<path>`, the path being relative to `cluster/`: the
//! comment is covered by the signature, so a signature cannot be moved to
//! another file, and operators can still check it with `minisign -Vm`.
//!
//! A deletion is signed too: after deleting `vms/web-1.toml`, its
//! `.minisig` holds a signature over `horcrux-delete <path> <sha256 hex of
//! the deleted content>` with the trusted comment
//! `horcrux delete path=<path>`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use horcrux_config::model::cluster::Trust;
use horcrux_config::{Config, Diagnostic, TreeFile};

/// Appended to a file's path to name its signature.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// The directory of the config tree that is replicated and signed.
const CLUSTER_PREFIX: &str = "cluster/";

/// A minisign signature is four short lines; anything much larger is not
/// one, and reading it whole would only waste memory.
const MAX_SIGNATURE_LEN: u64 = 4096;

/// The untrusted comment of the signatures we make (not covered by the
/// signature; only a label for humans).
const UNTRUSTED_COMMENT: &str = "signature from horcrux sign";

/// What a signature vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureKind {
    /// The content of a file.
    File,
    /// The deletion of a file with a given content.
    Deletion,
}

impl SignatureKind {
    /// The word in the trusted comment: `horcrux <word> path=<path>`.
    fn comment_word(self) -> &'static str {
        match self {
            SignatureKind::File => "file",
            SignatureKind::Deletion => "delete",
        }
    }
}

impl fmt::Display for SignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureKind::File => "file",
            SignatureKind::Deletion => "deletion",
        })
    }
}

/// Why a signature is not accepted. Messages are for operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// There is no signature file.
    #[error("not signed: {signature_file} is missing")]
    Missing {
        /// The signature's path, relative to the config dir.
        signature_file: String,
    },
    /// The signature file exists but cannot be read.
    #[error("cannot read the signature: {0}")]
    Unreadable(String),
    /// The text is not a minisign signature.
    #[error("the signature is not a valid minisign signature ({0})")]
    Unparsable(String),
    /// Signed, but by a key that is not trusted.
    #[error(
        "not signed by a trusted key ([trust] keys in cluster.toml): signed by key ID {key_id}"
    )]
    UnknownKey {
        /// The signer's key ID, in hex as minisign prints it.
        key_id: String,
    },
    /// The signature does not match the content (or the trusted comment).
    #[error("bad signature: the content changed after it was signed, or the signature is forged")]
    BadSignature,
    /// A signature made for another file.
    #[error("the signature was made for {signed}, not for this file")]
    WrongPath {
        /// The path named in the signature's trusted comment.
        signed: String,
    },
    /// A file signature where a deletion signature is needed, or the reverse.
    #[error("a {found} signature where a {expected} signature is needed")]
    WrongKind {
        /// The kind the check needs.
        expected: SignatureKind,
        /// The kind named in the signature's trusted comment.
        found: SignatureKind,
    },
    /// A valid minisign signature, but not made by `horcrux sign`.
    #[error(
        "not a horcrux signature (trusted comment \"{0}\"; sign with `horcrux sign`, not plain minisign)"
    )]
    Foreign(String),
}

/// A minisign key ID (8 bytes, as in keys and signatures).
type KeyId = [u8; 8];

/// A key ID the way minisign prints it (a little-endian u64 in hex).
fn format_key_id(id: KeyId) -> String {
    format!("{:016X}", u64::from_le_bytes(id))
}

/// The key ID inside a base64 key or signature line: bytes 2..10, after
/// the two-byte algorithm. minisign_verify does not expose it.
fn key_id_of(base64_line: &str) -> Option<KeyId> {
    let bytes = STANDARD.decode(base64_line.trim()).ok()?;
    bytes.get(2..10)?.try_into().ok()
}

/// The key ID of a base64 public key ("RWQ..."), in hex as minisign
/// prints it (`minisign.pub`'s comment, `minisign -V`).
pub fn key_id(public_key_base64: &str) -> Option<String> {
    key_id_of(public_key_base64).map(format_key_id)
}

#[derive(Debug, Clone)]
struct TrustedKey {
    id: KeyId,
    key: minisign_verify::PublicKey,
}

/// The public keys whose signatures are accepted.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// The keys of a cluster.toml `[trust]` section. The config crate has
    /// validated them already; one that still does not parse is skipped
    /// (its signatures are then refused as by an unknown key).
    pub fn from_trust(trust: &Trust) -> Self {
        Self::from_base64(trust.keys.iter().map(|k| k.as_str()))
    }

    /// Keys in their base64 form ("RWQ..."); unparsable ones are skipped.
    pub fn from_base64<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        let keys = keys
            .into_iter()
            .filter_map(|text| {
                let key = minisign_verify::PublicKey::from_base64(text.trim()).ok()?;
                Some(TrustedKey {
                    id: key_id_of(text)?,
                    key,
                })
            })
            .collect();
        TrustedKeys { keys }
    }

    /// How many keys are usable.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable (every signature is then refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this ID (as printed, e.g. by `horcrux sign`) is trusted.
    pub fn contains_id(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| format_key_id(k.id) == key_id)
    }
}

impl From<&Trust> for TrustedKeys {
    fn from(trust: &Trust) -> Self {
        Self::from_trust(trust)
    }
}

/// Where a file's signature lives: `vms/a.toml` -> `vms/a.toml.minisig`.
pub fn signature_path(path: &str) -> String {
    format!("{path}{SIGNATURE_SUFFIX}")
}

use crate::generation::sha256_hex;

/// The trusted comment of a signature of this kind for this path.
fn trusted_comment(kind: SignatureKind, path: &str) -> String {
    format!("horcrux {} path={path}", kind.comment_word())
}

/// The bytes a deletion signature covers.
fn deletion_message(path: &str, deleted_sha256_hex: &str) -> String {
    format!("horcrux-delete {path} {deleted_sha256_hex}")
}

/// Checks that `signature` is a valid file signature of `content` at
/// `path` (relative to `cluster/`, with `/`) by one of `keys`.
pub fn verify_file(
    keys: &TrustedKeys,
    path: &str,
    content: &[u8],
    signature: &str,
) -> Result<(), SignatureError> {
    verify(keys, SignatureKind::File, path, content, signature)
}

/// Checks that `signature` is a valid signature of the deletion of `path`
/// (relative to `cluster/`) whose content had the SHA-256 given as
/// lowercase hex, by one of `keys`.
pub fn verify_deletion(
    keys: &TrustedKeys,
    path: &str,
    deleted_sha256_hex: &str,
    signature: &str,
) -> Result<(), SignatureError> {
    let message = deletion_message(path, deleted_sha256_hex);
    verify(
        keys,
        SignatureKind::Deletion,
        path,
        message.as_bytes(),
        signature,
    )
}

fn verify(
    keys: &TrustedKeys,
    kind: SignatureKind,
    path: &str,
    message: &[u8],
    signature: &str,
) -> Result<(), SignatureError> {
    if signature.trim().is_empty() {
        return Err(SignatureError::Unparsable("the file is empty".into()));
    }
    let parsed = minisign_verify::Signature::decode(signature)
        .map_err(|e| SignatureError::Unparsable(e.to_string()))?;
    // decode() accepted the second line, so it holds a key ID.
    let id = signature
        .lines()
        .nth(1)
        .and_then(key_id_of)
        .ok_or_else(|| SignatureError::Unparsable("no key ID".into()))?;
    let candidates: Vec<&TrustedKey> = keys.keys.iter().filter(|k| k.id == id).collect();
    if candidates.is_empty() {
        return Err(SignatureError::UnknownKey {
            key_id: format_key_id(id),
        });
    }
    // The comment is checked before the cryptography only to explain a
    // failure better (a moved signature fails both); a forged comment
    // still fails the signature check below, which covers it.
    check_comment(parsed.trusted_comment(), kind, path)?;
    let mut outcome = Err(SignatureError::BadSignature);
    for key in candidates {
        match key.key.verify(message, &parsed, false) {
            Ok(()) => return Ok(()),
            Err(minisign_verify::Error::UnexpectedAlgorithm) => {
                outcome = Err(SignatureError::Unparsable(
                    "a legacy signature; sign again with `horcrux sign`".into(),
                ));
            }
            Err(_) => {}
        }
    }
    outcome
}

/// Compares a trusted comment with the one expected for this kind and path.
fn check_comment(comment: &str, kind: SignatureKind, path: &str) -> Result<(), SignatureError> {
    let foreign = || SignatureError::Foreign(comment.to_string());
    let (word, signed) = comment
        .strip_prefix("horcrux ")
        .and_then(|rest| rest.split_once(" path="))
        .ok_or_else(foreign)?;
    let found = match word {
        "file" => SignatureKind::File,
        "delete" => SignatureKind::Deletion,
        _ => return Err(foreign()),
    };
    if found != kind {
        return Err(SignatureError::WrongKind {
            expected: kind,
            found,
        });
    }
    if signed != path {
        return Err(SignatureError::WrongPath {
            signed: signed.to_string(),
        });
    }
    Ok(())
}

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The trusted comment is one line, so the path must be too.
    #[error("cannot sign {0:?}: a path must be a single non-empty line")]
    BadPath(String),
    #[error("cannot sign: {0}")]
    Minisign(#[from] minisign::PError),
}

/// Signs the content of the file at `path` (relative to `cluster/`, with
/// `/`); returns the text of its `.minisig` file.
pub fn sign_file(
    secret: &minisign::SecretKey,
    path: &str,
    content: &[u8],
) -> Result<String, SignError> {
    sign(secret, SignatureKind::File, path, content)
}

/// Signs the deletion of the file at `path` (relative to `cluster/`)
/// whose content was `deleted_content`; returns the text of its
/// `.minisig` file.
pub fn sign_deletion(
    secret: &minisign::SecretKey,
    path: &str,
    deleted_content: &[u8],
) -> Result<String, SignError> {
    let message = deletion_message(path, &sha256_hex(deleted_content));
    sign(secret, SignatureKind::Deletion, path, message.as_bytes())
}

fn sign(
    secret: &minisign::SecretKey,
    kind: SignatureKind,
    path: &str,
    message: &[u8],
) -> Result<String, SignError> {
    if path.is_empty() || path.contains(['\n', '\r']) {
        return Err(SignError::BadPath(path.to_string()));
    }
    let signature = minisign::sign(
        None,
        secret,
        message,
        Some(&trusted_comment(kind, path)),
        Some(UNTRUSTED_COMMENT),
    )?;
    Ok(signature.into_string())
}

/// Reads the signature of `path` (relative to the config dir).
pub fn read_signature(config_dir: &Path, path: &str) -> Result<String, SignatureError> {
    let signature_file = signature_path(path);
    let bytes = read_capped(&config_dir.join(&signature_file), &signature_file)?;
    String::from_utf8(bytes)
        .map_err(|_| SignatureError::Unparsable(format!("{signature_file} is not UTF-8 text")))
}

/// Reads a signature file, `shown` as its name in errors.
fn read_capped(full: &Path, shown: &str) -> Result<Vec<u8>, SignatureError> {
    let unreadable = |e: std::io::Error| SignatureError::Unreadable(format!("{shown}: {e}"));
    let meta = match fs::metadata(full) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignatureError::Missing {
                signature_file: shown.to_string(),
            });
        }
        Err(e) => return Err(unreadable(e)),
    };
    // A FIFO would block the daemon's reload forever.
    if !meta.is_file() {
        return Err(SignatureError::Unreadable(format!(
            "{shown} is not a regular file"
        )));
    }
    let mut bytes = Vec::new();
    fs::File::open(full)
        .and_then(|f| f.take(MAX_SIGNATURE_LEN + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_SIGNATURE_LEN {
        return Err(SignatureError::Unparsable(format!(
            "{shown} is larger than {MAX_SIGNATURE_LEN} bytes"
        )));
    }
    Ok(bytes)
}

/// Every `.minisig` file under `cluster/` (paths relative to the config
/// dir, sorted), for noticing changes: the loader reads only `.toml`
/// files, so signing a rejected tree would otherwise look like no change.
/// Read by the loader's walk, with its rules; unreadable files are listed
/// with why.
pub fn read_signatures(config_dir: &Path) -> Vec<TreeFile> {
    horcrux_config::load::read_files(config_dir, &|rel| {
        rel.starts_with(CLUSTER_PREFIX) && rel.ends_with(SIGNATURE_SUFFIX)
    })
    .unwrap_or_default()
}

/// Where the keys checking a tree come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    /// The running config requires signatures: only keys it already
    /// trusts count, so a compromised node cannot add its own key.
    Running,
    /// The new tree turns signatures on: its own keys bootstrap trust.
    New,
}

/// The trust section that governs a change, if signatures are required.
fn governing_trust<'a>(
    new: &'a Config,
    running: Option<&'a Config>,
) -> Option<(&'a Trust, KeySource)> {
    let requiring = |c: &'a Config| {
        c.cluster
            .as_ref()
            .map(|cluster| &cluster.trust)
            .filter(|t| *t.require_signatures)
    };
    match running.and_then(requiring) {
        Some(trust) => Some((trust, KeySource::Running)),
        None => requiring(new).map(|trust| (trust, KeySource::New)),
    }
}

/// The `cluster/` files of a config by path (relative to the config dir).
fn cluster_files(config: &Config) -> BTreeMap<&str, &str> {
    config
        .sources
        .iter()
        .filter(|(_, f)| f.path.starts_with(CLUSTER_PREFIX) && f.path.ends_with(".toml"))
        .map(|(_, f)| (f.path.as_str(), f.text.as_str()))
        .collect()
}

/// Checks the signatures of a new tree against the running one, when
/// signatures are required: every `cluster/` file of `new` must be signed,
/// and every `cluster/` file of `running` missing from `new` must have a
/// signed deletion. Keys come from `running` when it requires signatures,
/// else from `new` when it turns them on; otherwise nothing is checked.
/// Returns one diagnostic per file that fails.
pub fn check_tree(config_dir: &Path, new: &Config, running: Option<&Config>) -> Vec<Diagnostic> {
    let Some((trust, source)) = governing_trust(new, running) else {
        return Vec::new();
    };
    let keys = TrustedKeys::from_trust(trust);
    let mut diagnostics = Vec::new();
    let new_files = cluster_files(new);
    for (&path, text) in &new_files {
        let rel = path.strip_prefix(CLUSTER_PREFIX).unwrap_or(path);
        let checked = read_signature(config_dir, path)
            .and_then(|signature| verify_file(&keys, rel, text.as_bytes(), &signature));
        if let Err(e) = checked {
            diagnostics.push(diagnostic(path, SignatureKind::File, source, &e));
        }
    }
    let deleted = running.map(cluster_files).unwrap_or_default();
    for (&path, text) in deleted.iter().filter(|(p, _)| !new_files.contains_key(*p)) {
        let rel = path.strip_prefix(CLUSTER_PREFIX).unwrap_or(path);
        let digest = sha256_hex(text.as_bytes());
        let checked = read_signature(config_dir, path)
            .and_then(|signature| verify_deletion(&keys, rel, &digest, &signature));
        if let Err(e) = checked {
            diagnostics.push(diagnostic(path, SignatureKind::Deletion, source, &e));
        }
    }
    diagnostics.sort_by(|a, b| a.file.cmp(&b.file));
    diagnostics
}

fn diagnostic(
    path: &str,
    kind: SignatureKind,
    source: KeySource,
    error: &SignatureError,
) -> Diagnostic {
    let with = match source {
        KeySource::Running => " with a key the running config trusts",
        KeySource::New => "",
    };
    let (message, hint) = match kind {
        SignatureKind::File => (
            error.to_string(),
            format!("sign it{with}: horcrux sign --secret-key KEY {path}"),
        ),
        SignatureKind::Deletion => (
            format!("deleted without a valid deletion signature: {error}"),
            format!(
                "restore the file, then sign its deletion{with}: \
                 horcrux sign --secret-key KEY --delete {path}"
            ),
        ),
    };
    Diagnostic {
        file: path.to_string(),
        line: None,
        column: None,
        message,
        hint: Some(hint),
        snippet: None,
    }
}

#[cfg(test)]
mod tests;
