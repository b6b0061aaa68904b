//! systemd-boot's `LoaderBootCountPath` EFI variable: set when the
//! booted entry carries a boot counter (a trial boot), naming the entry
//! file as systemd-boot renamed it when it counted this try
//! (`horcrux-b+3.conf` became `horcrux-b+2-1.conf`).

use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

/// The Boot Loader Interface's vendor GUID.
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// The file of the variable under efivarfs.
pub const BOOT_COUNT_PATH_VAR: &str = "LoaderBootCountPath";
const ENTRIES_PREFIX: &str = "\\loader\\entries\\";
/// A path of a few dozen UTF-16 characters; this is plenty.
const MAX_VAR_LEN: u64 = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EfivarError {
    #[error(
        "{BOOT_COUNT_PATH_VAR}: {0} bytes is too short for an EFI variable (4 bytes of attributes first)"
    )]
    Short(usize),
    #[error("{BOOT_COUNT_PATH_VAR}: an odd number of bytes of UTF-16")]
    OddLength,
    #[error("{BOOT_COUNT_PATH_VAR}: the string has no NUL terminator")]
    NoNul,
    #[error("{BOOT_COUNT_PATH_VAR}: data after the NUL terminator")]
    TrailingData,
    #[error("{BOOT_COUNT_PATH_VAR}: not valid UTF-16")]
    NotUtf16,
    #[error("{BOOT_COUNT_PATH_VAR}: {0:?} is not a file under \\loader\\entries\\")]
    NotAnEntry(String),
    #[error("{BOOT_COUNT_PATH_VAR}: larger than {MAX_VAR_LEN} bytes")]
    TooLarge,
}

/// The variable's file in an efivarfs directory.
pub fn boot_count_path_file(efivars: &Path) -> PathBuf {
    efivars.join(format!("{BOOT_COUNT_PATH_VAR}-{LOADER_GUID}"))
}

/// Reads the variable; `None` when it is not set (not a trial boot, or
/// not booted by systemd-boot).
pub fn read_boot_count_path(efivars: &Path) -> Result<Option<Vec<u8>>, io::Error> {
    let file = boot_count_path_file(efivars);
    let mut bytes = Vec::new();
    match fs::File::open(&file) {
        Ok(f) => f.take(MAX_VAR_LEN + 1).read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(bytes))
}

/// Decodes the variable's content (4 bytes of attributes, then a
/// NUL-terminated UTF-16LE path such as `\loader\entries\horcrux-b+2-1.conf`)
/// into the entry's file name (`horcrux-b+2-1.conf`).
pub fn decode_entry_name(bytes: &[u8]) -> Result<String, EfivarError> {
    if bytes.len() as u64 > MAX_VAR_LEN {
        return Err(EfivarError::TooLarge);
    }
    let data = bytes.get(4..).ok_or(EfivarError::Short(bytes.len()))?;
    if data.len() % 2 != 0 {
        return Err(EfivarError::OddLength);
    }
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let nul = units
        .iter()
        .position(|&u| u == 0)
        .ok_or(EfivarError::NoNul)?;
    if units[nul + 1..].iter().any(|&u| u != 0) {
        return Err(EfivarError::TrailingData);
    }
    let path = String::from_utf16(&units[..nul]).map_err(|_| EfivarError::NotUtf16)?;
    let not_an_entry = || EfivarError::NotAnEntry(path.clone());
    // FAT is case-insensitive; systemd-boot writes the prefix as is.
    let prefix = path.get(..ENTRIES_PREFIX.len()).ok_or_else(not_an_entry)?;
    if !prefix.eq_ignore_ascii_case(ENTRIES_PREFIX) {
        return Err(not_an_entry());
    }
    let name = &path[ENTRIES_PREFIX.len()..];
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['\\', '/', '\0'])
        && !name.contains("..")
        && !name.chars().any(char::is_control);
    if !plain {
        return Err(not_an_entry());
    }
    Ok(name.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The variable's bytes for a path, as efivarfs shows them.
    pub(crate) fn encode(path: &str) -> Vec<u8> {
        let mut bytes = 7u32.to_le_bytes().to_vec();
        for unit in path.encode_utf16().chain([0]) {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn decodes_the_booted_entry() {
        let bytes = encode("\\loader\\entries\\horcrux-b+2-1.conf");
        assert_eq!(decode_entry_name(&bytes).unwrap(), "horcrux-b+2-1.conf");
        assert_eq!(
            decode_entry_name(&encode("\\LOADER\\Entries\\x.conf")).unwrap(),
            "x.conf"
        );
        // Padding NULs after the terminator are harmless.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0, 0]);
        assert_eq!(decode_entry_name(&padded).unwrap(), "horcrux-b+2-1.conf");
    }

    #[test]
    fn refuses_bad_content() {
        let mut odd = encode("\\loader\\entries\\a.conf");
        odd.push(0);
        let mut no_nul = encode("\\loader\\entries\\a.conf");
        no_nul.truncate(no_nul.len() - 2);
        let mut trailing = encode("\\loader\\entries\\a.conf");
        trailing.extend_from_slice(&[b'x', 0]);
        let mut unpaired = 7u32.to_le_bytes().to_vec();
        unpaired.extend_from_slice(&[0x00, 0xd8, 0, 0]);
        let cases = [
            (vec![], EfivarError::Short(0)),
            (vec![7, 0, 0], EfivarError::Short(3)),
            (odd, EfivarError::OddLength),
            (no_nul, EfivarError::NoNul),
            (7u32.to_le_bytes().to_vec(), EfivarError::NoNul),
            (trailing, EfivarError::TrailingData),
            (unpaired, EfivarError::NotUtf16),
            (vec![0; 5000], EfivarError::TooLarge),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode_entry_name(&bytes), Err(expected));
        }
        for path in [
            "",
            "\\loader\\entries\\",
            "\\loader\\entries",
            "\\EFI\\x.conf",
            "\\loader\\entries\\..\\..\\EFI\\BOOT\\BOOTX64.EFI",
            "\\loader\\entries\\sub\\x.conf",
            "\\loader\\entries\\a/b.conf",
            "\\loader\\entries\\..",
            "\\loader\\entries\\.hidden",
            "\\loader\\entries\\a\nb.conf",
            "/loader/entries/x.conf",
        ] {
            assert!(
                matches!(
                    decode_entry_name(&encode(path)),
                    Err(EfivarError::NotAnEntry(_))
                ),
                "{path:?}"
            );
        }
    }

    #[test]
    fn reads_the_variable_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_boot_count_path(dir.path()).unwrap(), None);
        let bytes = encode("\\loader\\entries\\horcrux-a+1-2.conf");
        fs::write(boot_count_path_file(dir.path()), &bytes).unwrap();
        assert_eq!(read_boot_count_path(dir.path()).unwrap(), Some(bytes));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_nor_pass(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            proptest::prop_assert!(decode_entry_name(&bytes).is_err());
        }

        #[test]
        fn arbitrary_paths_never_escape(path in "\\PC{0,80}") {
            if let Ok(name) = decode_entry_name(&encode(&path)) {
                proptest::prop_assert!(path.to_ascii_lowercase().starts_with("\\loader\\entries\\"));
                proptest::prop_assert!(!name.contains(['/', '\\']) && !name.contains(".."));
            }
        }
    }
}
