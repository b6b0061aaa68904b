//! `horcrux sign`: signs the files of `cluster/`, or their deletion, with
//! a minisign secret key, for clusters with `[trust] require_signatures`
//! (see [`crate::cluster::signature`] for the scheme).
//!
//! Without paths it signs every file whose signature is missing or stale,
//! so re-running it is cheap and changes nothing that is already signed.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Read as _};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use horcrux_config::assemble::is_config_path;
use horcrux_config::load::read_tree;

use super::{Outcome, exit};
use crate::cluster::signature::{
    self, TrustedKeys, read_signature, sign_deletion, sign_file, signature_path, verify_file,
};
use crate::errors::chain;
use crate::fsutil::write_if_changed;

/// The environment variable holding the password of an encrypted key.
pub const PASSWORD_ENV: &str = "HORCRUX_SIGN_PASSWORD";

/// A secret key file is two short lines; more is not a key.
const MAX_KEY_FILE_LEN: u64 = 4096;

const CLUSTER_PREFIX: &str = "cluster/";

/// What `horcrux sign` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// A minisign secret key file (`minisign -G`).
    pub secret_key: &'a Path,
    /// The config root, holding `cluster/`.
    pub config_dir: &'a Path,
    /// Sign the deletion of `paths`, then delete them.
    pub delete: bool,
    /// Files under `config_dir/cluster`; empty: every file that needs it.
    pub paths: &'a [PathBuf],
}

/// Why the secret key cannot be used. Never contains key material.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("cannot read the secret key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a minisign secret key (make one with `minisign -G`)")]
    NotAKey { path: String },
    #[error("the secret key {path} is password-protected: set {PASSWORD_ENV} or run in a terminal")]
    NeedsPassword { path: String },
    #[error(
        "cannot use the unencrypted secret key {path}: keys written by `minisign -G -W` \
         carry no checksum, which the signing library requires; make a password-protected \
         key with `minisign -G` and pass its password in {PASSWORD_ENV}"
    )]
    UncheckedUnencrypted { path: String },
    #[error("cannot use the secret key {path}: {source}")]
    Minisign {
        path: String,
        source: minisign::PError,
    },
}

/// The loaded key. Not `Debug`: minisign's `SecretKey` prints its bytes.
struct Signer {
    secret: minisign::SecretKey,
    /// The matching public key, to tell our own valid signatures.
    own: TrustedKeys,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(key ID {})", self.key_id)
    }
}

/// One file to sign: its path relative to the config dir, and its bytes.
struct Target {
    path: String,
    content: Result<Vec<u8>, String>,
}

/// Runs `horcrux sign`.
pub fn run(request: &Request) -> Outcome {
    let fail = |code, message: &str| Outcome::error(code, &format!("horcrux sign: {message}"));
    if request.delete && request.paths.is_empty() {
        return fail(exit::UNUSABLE, "--delete needs the files to delete");
    }
    let signer = match load_signer(request.secret_key) {
        Ok(signer) => signer,
        Err(e) => return fail(exit::UNUSABLE, &e.to_string()),
    };
    let targets = if request.paths.is_empty() {
        match read_tree(request.config_dir) {
            Ok(files) => files
                .into_iter()
                .filter(|f| f.path.starts_with(CLUSTER_PREFIX))
                .map(|f| Target {
                    path: f.path,
                    content: f.content,
                })
                .collect(),
            Err(e) => return fail(exit::UNUSABLE, &chain(&e)),
        }
    } else {
        let mut targets = Vec::new();
        for given in request.paths {
            match resolve(request.config_dir, given) {
                Ok(path) => targets.push(Target {
                    path,
                    content: read_target(given),
                }),
                Err(message) => return fail(exit::UNUSABLE, &message),
            }
        }
        targets
    };

    let mut report = Report::default();
    if let Some(note) = trust_note(request.config_dir, &signer.key_id) {
        report.note(&note);
    }
    for target in targets {
        let done = if request.delete {
            delete(request.config_dir, &signer, &target)
        } else {
            sign(request.config_dir, &signer, &target)
        };
        match done {
            Ok(Done::Signed) => report.signed(&target.path),
            Ok(Done::AlreadySigned) => report.already += 1,
            Ok(Done::Deleted) => report.deleted(&target.path),
            Err(message) => report.failed(&target.path, &message),
        }
    }
    report.finish(request.delete)
}

enum Done {
    Signed,
    AlreadySigned,
    Deleted,
}

/// Signs a file unless its signature is already a valid one by this key.
fn sign(config_dir: &Path, signer: &Signer, target: &Target) -> Result<Done, String> {
    let content = target.content.as_ref().map_err(Clone::clone)?;
    let in_cluster = in_cluster(&target.path);
    let current = read_signature(config_dir, &target.path);
    if current.is_ok_and(|s| verify_file(&signer.own, in_cluster, content, &s).is_ok()) {
        return Ok(Done::AlreadySigned);
    }
    let text = sign_file(&signer.secret, in_cluster, content).map_err(|e| e.to_string())?;
    write_signature(config_dir, &target.path, &text)?;
    Ok(Done::Signed)
}

/// Signs the deletion of a file, then deletes it. The signature is
/// written first: if the deletion fails, nothing is lost.
fn delete(config_dir: &Path, signer: &Signer, target: &Target) -> Result<Done, String> {
    let content = target.content.as_ref().map_err(Clone::clone)?;
    let in_cluster = in_cluster(&target.path);
    let text = sign_deletion(&signer.secret, in_cluster, content).map_err(|e| e.to_string())?;
    write_signature(config_dir, &target.path, &text)?;
    let file = config_dir.join(&target.path);
    std::fs::remove_file(&file)
        .map_err(|e| format!("deletion signed, but cannot delete {}: {e}", file.display()))?;
    Ok(Done::Deleted)
}

fn write_signature(config_dir: &Path, path: &str, text: &str) -> Result<(), String> {
    let file = config_dir.join(signature_path(path));
    // Atomic, so hostd never reads half a signature; 0644: signatures are public.
    write_if_changed(&file, text.as_bytes())
        .map(|_| ())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

fn in_cluster(path: &str) -> &str {
    path.strip_prefix(CLUSTER_PREFIX).unwrap_or(path)
}

fn read_target(given: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(given).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            "no such file (a deletion is signed before the file is deleted: restore it, \
             then run `horcrux sign --delete`)"
                .to_string()
        }
        _ => format!("cannot read: {e}"),
    })
}

/// Loads a minisign secret key, asking for its password only if it is
/// encrypted: from the environment, else interactively on a terminal.
fn load_signer(path: &Path) -> Result<Signer, KeyError> {
    let shown = path.display().to_string();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_LEN).read_to_string(&mut text))
        .map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
    let not_a_key = || KeyError::NotAKey {
        path: shown.clone(),
    };
    // minisign's API wants to be told whether the key is encrypted; the
    // key's own header (the KDF algorithm) says so.
    let encrypted = text
        .lines()
        .nth(1)
        .and_then(|line| STANDARD.decode(line.trim()).ok())
        .and_then(|bytes| minisign::SecretKey::from_bytes(&bytes).ok())
        .ok_or_else(not_a_key)?
        .is_encrypted();
    let boxed = minisign::SecretKeyBox::from_string(&text).map_err(|_| not_a_key())?;
    let minisign_error = |source| KeyError::Minisign {
        path: shown.clone(),
        source,
    };
    let secret = if encrypted {
        let password = match std::env::var(PASSWORD_ENV) {
            Ok(password) => Some(password),
            // None: minisign prompts on the terminal.
            Err(_) if std::io::stdin().is_terminal() => None,
            Err(_) => return Err(KeyError::NeedsPassword { path: shown }),
        };
        minisign::SecretKey::from_box(boxed, password).map_err(minisign_error)?
    } else {
        minisign::SecretKey::from_unencrypted_box(boxed).map_err(|e| {
            // The minisign CLI leaves an unencrypted key's checksum empty.
            if e.to_string().contains("Corrupted key") {
                KeyError::UncheckedUnencrypted {
                    path: shown.clone(),
                }
            } else {
                minisign_error(e)
            }
        })?
    };
    let public = minisign::PublicKey::from_secret_key(&secret)
        .map_err(minisign_error)?
        .to_base64();
    Ok(Signer {
        own: TrustedKeys::from_base64([public.as_str()]),
        key_id: signature::key_id(&public).unwrap_or_default(),
        secret,
    })
}

/// A warning when cluster.toml does not trust this key: hostd would then
/// refuse what is about to be signed.
fn trust_note(config_dir: &Path, key_id: &str) -> Option<String> {
    let config = horcrux_config::load(config_dir).ok()?.config;
    let cluster = config.cluster.as_ref()?;
    if TrustedKeys::from_trust(&cluster.trust).contains_id(key_id) {
        return None;
    }
    Some(format!(
        "note: key ID {key_id} is not in [trust] keys of cluster/cluster.toml; \
         hostd refuses its signatures until it is"
    ))
}

/// The path of `given` relative to `config_dir`, which must be a `.toml`
/// file of `cluster/` that the config loader reads.
fn resolve(config_dir: &Path, given: &Path) -> Result<String, String> {
    let shown = given.display();
    let cluster = config_dir.join("cluster");
    // Lexically first, so that a symlinked directory keeps the name the
    // loader sees; through the real paths when that fails (`..`, links).
    let rel = lexical_absolute(given)
        .zip(lexical_absolute(&cluster))
        .and_then(|(file, cluster)| file.strip_prefix(cluster).ok().map(Path::to_path_buf))
        .or_else(|| {
            let dir = given.parent()?.canonicalize().ok()?;
            let file = dir.join(given.file_name()?);
            file.strip_prefix(cluster.canonicalize().ok()?)
                .ok()
                .map(Path::to_path_buf)
        })
        .ok_or_else(|| format!("{shown} is not under {}", cluster.display()))?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let path = format!(
        "{CLUSTER_PREFIX}{}",
        parts
            .ok_or_else(|| format!("{shown}: the path is not UTF-8"))?
            .join("/")
    );
    if !is_config_path(&path) {
        return Err(format!(
            "{shown} is not a config file (only the .toml files of cluster/ are signed)"
        ));
    }
    Ok(path)
}

/// `path` made absolute, with `.` and `..` resolved without following links.
fn lexical_absolute(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// What was done, printed as it happened.
#[derive(Default)]
struct Report {
    stdout: String,
    stderr: String,
    signed: usize,
    already: usize,
    failed: usize,
}

impl Report {
    fn note(&mut self, note: &str) {
        let _ = writeln!(self.stderr, "horcrux sign: {note}");
    }

    fn signed(&mut self, path: &str) {
        self.signed += 1;
        let _ = writeln!(self.stdout, "signed {path}");
    }

    fn deleted(&mut self, path: &str) {
        self.signed += 1;
        let _ = writeln!(self.stdout, "deleted {path} (deletion signed)");
    }

    fn failed(&mut self, path: &str, message: &str) {
        self.failed += 1;
        let _ = writeln!(self.stderr, "horcrux sign: {path}: {message}");
    }

    fn finish(mut self, delete: bool) -> Outcome {
        if !delete {
            let _ = writeln!(
                self.stdout,
                "signed {}, already signed {}",
                self.signed, self.already
            );
        }
        Outcome {
            stdout: self.stdout,
            stderr: self.stderr,
            code: if self.failed == 0 {
                exit::OK
            } else {
                exit::INVALID
            },
        }
    }
}
