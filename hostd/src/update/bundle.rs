//! Reading an update bundle: a ustar tar whose first members are
//! `manifest.toml` and `manifest.toml.minisig`, followed by the payloads
//! the manifest names, in any order.
//!
//! The tar is read in raw mode: GNU long names and PAX headers are
//! refused like any member that is not a regular file, so no member can
//! make the reader buffer an unbounded header before we see its name.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::{Component, Path};

use sha2::{Digest as _, Sha256};

use super::manifest::{MAX_MANIFEST_LEN, Manifest, Payload, Role};
use super::trust::MAX_SIGNATURE_LEN;

/// The first member.
pub const MANIFEST: &str = "manifest.toml";
/// The second member: `minisign -S -m manifest.toml`.
pub const SIGNATURE: &str = "manifest.toml.minisig";

const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read the bundle: {0}")]
    Read(#[source] io::Error),
    #[error("the bundle must start with {MANIFEST} then {SIGNATURE}; member {index} is {found}")]
    Head { index: usize, found: String },
    #[error("bundle member {name:?} is a {kind}, not a regular file")]
    NotRegular { name: String, kind: String },
    #[error(
        "bundle member {0:?}: only plain file names are allowed (no directories, `..` or absolute paths)"
    )]
    BadName(String),
    #[error("bundle member {name} is larger than {limit} bytes")]
    TooLarge { name: String, limit: u64 },
    #[error("bundle member {0:?} is not named in the manifest")]
    Unknown(String),
    #[error("bundle member {0:?} appears twice")]
    Duplicate(String),
    #[error("the bundle lacks {0}, which the manifest names")]
    Missing(String),
    #[error("bundle member {name}: {found} bytes, but the manifest says {expected}")]
    Size {
        name: String,
        expected: u64,
        found: u64,
    },
    #[error("bundle member {name}: SHA-256 {found}, but the manifest says {expected}")]
    Sha256 {
        name: String,
        expected: String,
        found: String,
    },
}

/// The signed part of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub manifest: Vec<u8>,
    pub signature: String,
}

/// Reads the manifest and its signature, and nothing after them.
pub fn read_head(reader: impl Read) -> Result<Head, BundleError> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries().map_err(BundleError::Read)?.raw(true);
    let mut next = |index: usize, expected: &str, limit: u64| {
        let found = |found: String| BundleError::Head { index, found };
        let mut entry = entries
            .next()
            .ok_or_else(|| found("missing".into()))?
            .map_err(BundleError::Read)?;
        let name = member_name(&entry)?;
        if name != expected {
            return Err(found(name));
        }
        if entry.size() > limit {
            return Err(BundleError::TooLarge { name, limit });
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(BundleError::Read)?;
        Ok(bytes)
    };
    let manifest = next(0, MANIFEST, MAX_MANIFEST_LEN)?;
    let signature = next(1, SIGNATURE, MAX_SIGNATURE_LEN)?;
    let signature = String::from_utf8(signature).map_err(|_| BundleError::Head {
        index: 1,
        found: format!("{SIGNATURE}, which is not text"),
    })?;
    Ok(Head {
        manifest,
        signature,
    })
}

/// Walks the payloads after the head, handing each one's data to `visit`
/// with its manifest entry; refuses unknown, duplicate and missing
/// members, and members whose size differs from the manifest's, before
/// `visit` sees them. `visit` must check what it read (see
/// [`copy_hashed`] and [`Payload::check`]).
pub fn for_each_payload<R: Read, E: From<BundleError>>(
    reader: R,
    manifest: &Manifest,
    mut visit: impl FnMut(Role, &Payload, &mut dyn Read) -> Result<(), E>,
) -> Result<(), E> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(BundleError::Read)?.raw(true);
    let mut seen = BTreeSet::new();
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(BundleError::Read)?;
        let name = member_name(&entry)?;
        let head = [MANIFEST, SIGNATURE];
        if index < head.len() {
            if name != head[index] {
                return Err(BundleError::Head { index, found: name }.into());
            }
            continue;
        }
        if head.contains(&name.as_str()) || !seen.insert(name.clone()) {
            return Err(BundleError::Duplicate(name).into());
        }
        let (role, payload) = manifest
            .payload(&name)
            .ok_or_else(|| BundleError::Unknown(name.clone()))?;
        if entry.size() != payload.size {
            return Err(BundleError::Size {
                name,
                expected: payload.size,
                found: entry.size(),
            }
            .into());
        }
        visit(role, payload, &mut entry)?;
    }
    if let Some((_, missing)) = manifest
        .payloads()
        .into_iter()
        .find(|(_, p)| !seen.contains(&p.file))
    {
        return Err(BundleError::Missing(missing.file.clone()).into());
    }
    Ok(())
}

/// The first pass: every payload is there with the size and SHA-256 the
/// manifest says. Writes nothing.
pub fn check_payloads(reader: impl Read, manifest: &Manifest) -> Result<(), BundleError> {
    for_each_payload(reader, manifest, |_, payload, data| {
        let (size, sha256) =
            copy_hashed(data, &mut io::sink(), |_| {}).map_err(BundleError::Read)?;
        payload.check(size, &sha256)
    })
}

impl Payload {
    /// Compares what was read with the manifest.
    pub fn check(&self, size: u64, sha256: &str) -> Result<(), BundleError> {
        if size != self.size {
            return Err(BundleError::Size {
                name: self.file.clone(),
                expected: self.size,
                found: size,
            });
        }
        if sha256 != self.sha256 {
            return Err(BundleError::Sha256 {
                name: self.file.clone(),
                expected: self.sha256.clone(),
                found: sha256.to_string(),
            });
        }
        Ok(())
    }
}

/// Copies `reader` to `writer`, returning the byte count and the SHA-256
/// (lowercase hex) of what was copied; `progress` gets the running count
/// after each chunk.
pub fn copy_hashed(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    mut progress: impl FnMut(u64),
) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buffer[..n];
        hasher.update(chunk);
        writer.write_all(chunk)?;
        total += n as u64;
        progress(total);
    }
    Ok((total, crate::backend::hex(&hasher.finalize())))
}

/// A member's name: a single plain path component (a leading `./`, as
/// `tar -C dir .` writes, is allowed), of a regular file.
fn member_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String, BundleError> {
    let bytes = entry.path_bytes();
    let shown = String::from_utf8_lossy(&bytes).into_owned();
    let kind = entry.header().entry_type();
    if !kind.is_file() {
        return Err(BundleError::NotRegular {
            name: shown,
            kind: format!("{kind:?}"),
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| BundleError::BadName(shown.clone()))?;
    // `components()` would drop a trailing slash: "root.img/" is no file.
    if text.ends_with('/') {
        return Err(BundleError::BadName(shown));
    }
    let mut parts = Path::new(text)
        .components()
        .filter(|c| *c != Component::CurDir);
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(name)), None) => name
            .to_str()
            .map(str::to_string)
            .ok_or(BundleError::BadName(shown)),
        _ => Err(BundleError::BadName(shown)),
    }
}

#[cfg(test)]
mod tests;
