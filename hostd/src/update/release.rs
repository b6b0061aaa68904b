//! `/usr/lib/horcrux/image-release`: what the running image is, in
//! os-release style `KEY=VALUE` lines (IMAGE_ID, BUILT, ...), written by
//! the image build into the read-only root.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The running image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub image_id: String,
    /// BUILT as written, and parsed; None when absent or not RFC 3339.
    pub built_text: Option<String>,
    pub built: Option<SystemTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} has no IMAGE_ID")]
    NoImageId(PathBuf),
}

/// The value of `key` in os-release style text: the last assignment
/// wins, and one level of matching quotes is removed.
pub fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| {
            let v = v.trim();
            ['"', '\'']
                .iter()
                .find_map(|q| v.strip_prefix(*q)?.strip_suffix(*q))
                .unwrap_or(v)
        })
        .next_back()
}

/// Parses the release text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Release, ReleaseError> {
    let image_id = value(text, "IMAGE_ID")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ReleaseError::NoImageId(path.to_path_buf()))?;
    let built_text = value(text, "BUILT").map(str::to_string);
    let built = built_text
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok());
    Ok(Release {
        image_id: image_id.to_string(),
        built_text,
        built,
    })
}

/// Reads and parses the release file.
pub fn read(path: &Path) -> Result<Release, ReleaseError> {
    let text = fs::read_to_string(path).map_err(|source| ReleaseError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys() {
        let text = "# the running image\nIMAGE_ID=horcrux-0123\nBUILT=\"2026-11-26T12:45:01Z\"\n\
                    VERSION='2026.11.26'\n";
        let release = parse(text, Path::new("x")).unwrap();
        assert_eq!(release.image_id, "horcrux-0123");
        assert_eq!(release.built_text.as_deref(), Some("2026-11-26T12:45:01Z"));
        assert_eq!(
            release.built,
            Some(humantime::parse_rfc3339("2026-11-26T12:45:01Z").unwrap())
        );
        assert_eq!(value(text, "VERSION"), Some("2026.11.26"));
        assert_eq!(value("A=1\nA=2\n", "A"), Some("2"));
        assert_eq!(value("AB=1\n", "A"), None);
    }

    #[test]
    fn missing_or_bad_values() {
        assert!(matches!(
            parse("BUILT=2026-11-26T12:45:01Z\n", Path::new("x")),
            Err(ReleaseError::NoImageId(_))
        ));
        assert!(parse("IMAGE_ID=\"\"\n", Path::new("x")).is_err());
        let release = parse("IMAGE_ID=a\nBUILT=yesterday\n", Path::new("x")).unwrap();
        assert_eq!(release.built, None);
        assert_eq!(release.built_text.as_deref(), Some("yesterday"));
        assert!(matches!(
            read(Path::new("/nonexistent/image-release")),
            Err(ReleaseError::Read { .. })
        ));
    }
}
