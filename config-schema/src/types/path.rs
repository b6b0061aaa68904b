//! File system paths written in config files.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::decode::{ParseStr, ValueError};

/// An absolute, normalised path: starts with '/', no "." or ".." parts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbsPath(PathBuf);

impl AbsPath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

impl ParseStr for AbsPath {
    const EXPECTED: &'static str = "an absolute path";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let path = Path::new(s);
        if !path.is_absolute() {
            return Err(
                ValueError::new(format!("path \"{s}\" is not absolute")).hint("start it with '/'")
            );
        }
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            || s.contains('\0')
        {
            return Err(ValueError::new(format!(
                "path \"{s}\" must not contain \".\" or \"..\" parts"
            )));
        }
        Ok(AbsPath(path.to_path_buf()))
    }
}
super::string_value!(
    AbsPath,
    "absolute path",
    "An absolute path, e.g. \"/var/lib/horcrux/disks\"."
);

/// A path relative to the config root that stays inside it, e.g. "secrets/gossip.key".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigPath(PathBuf);

impl ConfigPath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

impl ParseStr for ConfigPath {
    const EXPECTED: &'static str = "a path inside the config directory";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let path = Path::new(s);
        let inside = !s.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
        if inside && !s.contains('\0') {
            Ok(ConfigPath(path.to_path_buf()))
        } else {
            Err(ValueError::new(format!("path \"{s}\" must stay inside the config directory"))
                .hint("write it relative to the config directory, without \"..\", e.g. \"secrets/gossip.key\""))
        }
    }
}
super::string_value!(
    ConfigPath,
    "relative path",
    "A path relative to the config directory, e.g. \"secrets/gossip.key\"."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths() {
        assert!(AbsPath::parse_str("/var/lib/horcrux").is_ok());
        assert!(AbsPath::parse_str("var/lib").is_err());
        assert!(AbsPath::parse_str("/var/../etc").is_err());
    }

    #[test]
    fn config_paths() {
        assert!(ConfigPath::parse_str("secrets/gossip.key").is_ok());
        for bad in ["", "/etc/key", "../key", "secrets/../../key", "./key"] {
            assert!(ConfigPath::parse_str(bad).is_err(), "{bad}");
        }
    }
}
