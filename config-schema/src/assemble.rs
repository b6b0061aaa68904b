//! From the files of a tree to a decoded [`Config`], collecting every error.

use std::collections::BTreeSet;
use std::path::Path;

use toml::de::DeTable;

use crate::decode::{Cx, Decode, ParseStr, Raw, Spanned};
use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::load::{LoadError, read_tree};
use crate::model::{Config, FileKind};
use crate::source::FileId;
use crate::types::ResourceName;
use crate::validate::validate;

/// One file of a tree: its path relative to the root (with `/`) and its
/// bytes, or why they could not be read.
#[derive(Debug, Clone)]
pub struct TreeFile {
    pub path: String,
    pub content: Result<Vec<u8>, String>,
}

/// A tree after loading and validation. `errors` is sorted by file, line
/// and column; the tree may be used only when it is empty.
#[derive(Debug)]
pub struct Checked {
    pub config: Config,
    pub errors: Vec<Diagnostic>,
}

impl Checked {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_valid(self) -> Result<Config, Vec<Diagnostic>> {
        if self.errors.is_empty() {
            Ok(self.config)
        } else {
            Err(self.errors)
        }
    }
}

/// Loads and validates the config tree under `root`.
pub fn load(root: &Path) -> Result<Checked, LoadError> {
    Ok(check_files(read_tree(root)?))
}

/// Decodes and validates a tree given as files, without touching the disk.
pub fn check_files(files: Vec<TreeFile>) -> Checked {
    let mut config = Config::default();
    let mut diags = Diagnostics::default();
    // node.toml and cluster.toml as present in the tree, usable or not.
    let mut present = BTreeSet::new();
    // Read problems (a directory symlink leaving the root) are always reported.
    for file in files
        .into_iter()
        .filter(|f| f.content.is_err() || is_config_path(&f.path))
    {
        // An unreadable path is reported only for why it could not be read:
        // a symlinked directory leaving the root is not also "a file outside
        // the layout".
        let unreadable = file.content.is_err();
        let classified = if unreadable {
            classify(&file.path, &mut Diagnostics::default())
        } else {
            classify(&file.path, &mut diags)
        };
        let text = match file.content {
            Ok(bytes) => {
                String::from_utf8(bytes).map_err(|_| "file is not valid UTF-8".to_string())
            }
            Err(message) => Err(message),
        };
        let Some(kind) = classified else {
            if let (true, Err(message)) = (unreadable, text) {
                diags.file_error(file.path, message, None);
            }
            continue;
        };
        present.insert(kind.0);
        match text {
            Ok(text) => {
                let id = config.sources.add(file.path.clone(), text);
                decode_file(&mut config, kind, id, &mut diags);
            }
            Err(message) => {
                // The file exists: references to it are not reported as missing.
                if let (kind, Some(name)) = kind {
                    config.files.insert((kind, name), FileId::BUILTIN);
                }
                diags.file_error(file.path, message, None);
            }
        }
    }
    validate(&config, &present, &mut diags);
    let errors = diags.resolve(&config.sources);
    Checked { config, errors }
}

/// Whether a path is looked at at all: `.toml` files, outside dot-files
/// and dot-directories (editor swap files, `.git`) and outside `secrets/`.
/// The directory walk skips the same; trees received in memory need it too.
pub fn is_config_path(path: &str) -> bool {
    path.ends_with(".toml")
        && !path.starts_with("secrets/")
        && !path.split('/').any(|c| c.starts_with('.') || c.is_empty())
}

/// What a path is in the layout; records an error for unexpected files.
fn classify(path: &str, diags: &mut Diagnostics) -> Option<(FileKind, Option<ResourceName>)> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["node.toml"] => return Some((FileKind::Node, None)),
        ["cluster", "cluster.toml"] => return Some((FileKind::Cluster, None)),
        ["cluster", dir, file] => {
            if let Some(kind) = FileKind::RESOURCE_KINDS
                .into_iter()
                .find(|k| k.directory() == Some(*dir))
            {
                let stem = file.strip_suffix(".toml").unwrap_or(file);
                return match ResourceName::parse_str(stem) {
                    Ok(name) => Some((kind, Some(name))),
                    Err(e) => {
                        let message = format!(
                            "invalid {} name \"{stem}\" (the file name is the name)",
                            kind.as_str()
                        );
                        diags.file_error(path, message, e.hint);
                        None
                    }
                };
            }
        }
        _ => {}
    }
    let dirs = FileKind::RESOURCE_KINDS.map(|k| k.directory().unwrap_or_default());
    let hint = match parts.as_slice() {
        ["cluster", dir, _] => {
            did_you_mean(dir, dirs).map(|h| format!("{h} (resource files go in cluster/<kind>/)"))
        }
        [dir, _] if dirs.contains(dir) => {
            Some(format!("resource files go under cluster/: cluster/{path}"))
        }
        [file] if *file == "cluster.toml" => {
            Some("cluster.toml goes in cluster/cluster.toml".to_string())
        }
        _ => None,
    };
    let hint = hint.or_else(|| {
        Some("expected node.toml, cluster/cluster.toml or cluster/{networks,storage,firewall,vms,containers}/<name>.toml".into())
    });
    diags.file_error(path, "file is not part of the config layout", hint);
    None
}

fn decode_file(
    config: &mut Config,
    (kind, name): (FileKind, Option<ResourceName>),
    id: FileId,
    diags: &mut Diagnostics,
) {
    if let Some(name) = &name {
        config.files.insert((kind, name.clone()), id);
    }
    let Some(source) = config.sources.get(id) else {
        return;
    };
    let (document, syntax_errors) = DeTable::parse_recoverable(&source.text);
    if !syntax_errors.is_empty() {
        // A half-parsed document would only produce follow-up noise.
        for err in syntax_errors {
            let span = crate::source::Span::new(id, err.span().unwrap_or(0..0));
            diags.error(
                span,
                format!("TOML syntax error: {}", err.message().trim_end()),
            );
        }
        return;
    }
    let span = document.span();
    let raw: Raw = toml::Spanned::new(span, toml::de::DeValue::Table(document.into_inner()));
    let mut cx = Cx { file: id, diags };
    match (kind, name) {
        (FileKind::Node, _) => config.node = decode(&raw, &mut cx),
        (FileKind::Cluster, _) => config.cluster = decode(&raw, &mut cx),
        (FileKind::Network, Some(n)) => insert(&mut config.networks, n, decode(&raw, &mut cx)),
        (FileKind::Storage, Some(n)) => insert(&mut config.storage, n, decode(&raw, &mut cx)),
        (FileKind::Firewall, Some(n)) => insert(&mut config.firewall, n, decode(&raw, &mut cx)),
        (FileKind::Vm, Some(n)) => insert(&mut config.vms, n, decode(&raw, &mut cx)),
        (FileKind::Container, Some(n)) => insert(&mut config.containers, n, decode(&raw, &mut cx)),
        (_, None) => {}
    }
}

fn decode<T: Decode>(raw: &Raw, cx: &mut Cx) -> Option<Spanned<T>> {
    Spanned::<T>::decode(raw, cx)
}

fn insert<T>(map: &mut crate::model::Resources<T>, name: ResourceName, value: Option<Spanned<T>>) {
    if let Some(value) = value {
        map.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> TreeFile {
        TreeFile {
            path: path.into(),
            content: Ok(content.as_bytes().to_vec()),
        }
    }

    #[test]
    fn in_memory_trees_skip_what_the_walk_skips() {
        let checked = check_files(vec![
            file("node.toml", "name = \"n1\"\n"),
            file("cluster/vms/notes.txt", "not toml"),
            file("cluster/vms/.web.toml.swp", "garbage"),
            file(".git/config.toml", "garbage"),
            file("secrets/gossip.toml", "garbage"),
        ]);
        assert!(checked.is_valid(), "{:?}", checked.errors);
        assert_eq!(checked.config.sources.len(), 1);
    }

    #[test]
    fn an_empty_tree_says_what_is_missing() {
        let checked = check_files(Vec::new());
        assert_eq!(checked.errors.len(), 1);
        assert_eq!(checked.errors[0].file, "node.toml");
        assert_eq!(checked.errors[0].message, "node.toml is missing");
    }
}
