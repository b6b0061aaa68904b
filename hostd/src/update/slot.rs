//! Which root slot is running, and the device and PARTUUID of the other.

use std::fmt;
use std::fs;
use std::io::{Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

/// The kernel command line parameter naming the running slot.
pub const SLOT_PARAM: &str = "horcrux.slot";

/// One of the two root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// The lowercase letter used in partition labels, paths and entries.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn from_letter(letter: &str) -> Option<Slot> {
        match letter {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }

    /// The GPT partition label of the slot.
    pub fn partlabel(self) -> String {
        format!("horcrux-root-{}", self.letter())
    }
}

/// Uppercase, as in "slot B".
impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

impl serde::Serialize for Slot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.letter())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("not booted from an A/B slot (PXE?): the kernel command line has no {SLOT_PARAM}=")]
    NotAb,
    #[error(
        "not booted from an A/B slot (PXE?): the kernel command line has {SLOT_PARAM}={0}, \
         not a or b"
    )]
    BadValue(String),
    #[error("the kernel command line names two slots ({SLOT_PARAM}=a and =b)")]
    Ambiguous,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("slot {slot}: no partition labelled {label} ({path}: {source})")]
    NoDevice {
        slot: Slot,
        label: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("slot {slot}: {device} is also the running slot's device; refusing to write it")]
    SameDevice { slot: Slot, device: PathBuf },
    #[error("slot {slot}: no link in {dir} leads to {device} (cannot name its PARTUUID)")]
    NoPartuuid {
        slot: Slot,
        dir: PathBuf,
        device: PathBuf,
    },
    #[error("slot {slot}: {name:?} in {dir} is not a PARTUUID")]
    BadPartuuid {
        slot: Slot,
        dir: PathBuf,
        name: String,
    },
    #[error("slot {slot}: cannot get the size of {device}: {source}")]
    Size {
        slot: Slot,
        device: PathBuf,
        source: std::io::Error,
    },
}

/// The running slot, from the `horcrux.slot=` parameter of a kernel
/// command line. Repeating the same value is harmless; two different
/// values are refused rather than guessing which one the initrd used.
pub fn running_slot(cmdline: &str) -> Result<Slot, SlotError> {
    let mut found = None;
    for value in cmdline
        .split_ascii_whitespace()
        .filter_map(|arg| arg.strip_prefix(SLOT_PARAM)?.strip_prefix('='))
    {
        let slot = Slot::from_letter(value).ok_or_else(|| SlotError::BadValue(value.into()))?;
        if found.is_some_and(|s| s != slot) {
            return Err(SlotError::Ambiguous);
        }
        found = Some(slot);
    }
    found.ok_or(SlotError::NotAb)
}

/// Reads the kernel command line file and returns the running slot.
pub fn read_running_slot(cmdline_file: &Path) -> Result<Slot, SlotError> {
    let text = fs::read_to_string(cmdline_file).map_err(|source| SlotError::Read {
        path: cmdline_file.to_path_buf(),
        source,
    })?;
    running_slot(&text)
}

/// The slot to write an update into.
pub fn target_slot(cmdline: &str) -> Result<Slot, SlotError> {
    running_slot(cmdline).map(Slot::other)
}

/// A slot's partition, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotDevice {
    pub slot: Slot,
    /// The canonical device path (`/dev/sda3`).
    pub device: PathBuf,
    /// Lowercase, as the kernel's `PARTUUID=` wants it.
    pub partuuid: String,
    /// Bytes.
    pub size: u64,
}

/// Resolves `slot`'s partition through the by-partlabel links, its
/// PARTUUID through the by-partuuid links (the link that leads to the
/// same device), and its size. Refuses when the other slot's label leads
/// to the same device: a broken table must not make us write the root
/// we are running from.
pub fn resolve(
    slot: Slot,
    by_partlabel: &Path,
    by_partuuid: &Path,
) -> Result<SlotDevice, SlotError> {
    let label = slot.partlabel();
    let link = by_partlabel.join(&label);
    let device = fs::canonicalize(&link).map_err(|source| SlotError::NoDevice {
        slot,
        label: label.clone(),
        path: link.clone(),
        source,
    })?;
    let running = by_partlabel.join(slot.other().partlabel());
    if fs::canonicalize(running).is_ok_and(|other| other == device) {
        return Err(SlotError::SameDevice { slot, device });
    }
    let partuuid = find_partuuid(slot, by_partuuid, &device)?;
    let size = fs::File::open(&device)
        // A block device's metadata says 0 bytes; seeking to its end
        // gives its size (and a regular file's, in tests).
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .map_err(|source| SlotError::Size {
            slot,
            device: device.clone(),
            source,
        })?;
    Ok(SlotDevice {
        slot,
        device,
        partuuid,
        size,
    })
}

fn find_partuuid(slot: Slot, dir: &Path, device: &Path) -> Result<String, SlotError> {
    let entries = fs::read_dir(dir).map_err(|source| SlotError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| fs::canonicalize(e.path()).is_ok_and(|target| target == device))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let name = names
        .into_iter()
        .next()
        .ok_or_else(|| SlotError::NoPartuuid {
            slot,
            dir: dir.to_path_buf(),
            device: device.to_path_buf(),
        })?;
    // It is written into the kernel command line: nothing but a UUID.
    let valid = !name.is_empty()
        && name.len() <= 36
        && name.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if !valid {
        return Err(SlotError::BadPartuuid {
            slot,
            dir: dir.to_path_buf(),
            name,
        });
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_and_target_slot_from_cmdline() {
        let cmdline = "BOOT_IMAGE=/vmlinuz root=/dev/mapper/root horcrux.slot=a quiet\n";
        assert_eq!(running_slot(cmdline).unwrap(), Slot::A);
        assert_eq!(target_slot(cmdline).unwrap(), Slot::B);
        assert_eq!(target_slot("horcrux.slot=b").unwrap(), Slot::A);
        assert_eq!(
            running_slot("horcrux.slot=b horcrux.slot=b").unwrap(),
            Slot::B
        );
    }

    #[test]
    fn slot_from_cmdline_refusals() {
        assert!(matches!(
            running_slot("ip=dhcp root=nfs"),
            Err(SlotError::NotAb)
        ));
        assert!(matches!(running_slot(""), Err(SlotError::NotAb)));
        // Only the exact parameter counts.
        assert!(matches!(
            running_slot("xhorcrux.slot=a horcrux.slots=b"),
            Err(SlotError::NotAb)
        ));
        assert!(matches!(
            running_slot("horcrux.slot=c"),
            Err(SlotError::BadValue(v)) if v == "c"
        ));
        // A PXE boot names itself.
        let pxe = running_slot("horcrux.slot=pxe horcrux.data=tmpfs").unwrap_err();
        assert!(
            pxe.to_string().starts_with(
                "not booted from an A/B slot (PXE?): the kernel command line has horcrux.slot=pxe"
            ),
            "{pxe}"
        );
        assert!(matches!(
            running_slot("horcrux.slot=A"),
            Err(SlotError::BadValue(_))
        ));
        assert!(matches!(
            running_slot("horcrux.slot="),
            Err(SlotError::BadValue(_))
        ));
        assert!(matches!(
            running_slot("horcrux.slot=a horcrux.slot=b"),
            Err(SlotError::Ambiguous)
        ));
        let message = target_slot("quiet").unwrap_err().to_string();
        assert!(
            message.contains("not booted from an A/B slot (PXE?)"),
            "{message}"
        );
    }

    #[test]
    fn resolves_device_partuuid_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (name, len) in [("sda2", 4096), ("sda3", 8192)] {
            fs::write(root.join(name), vec![0; len]).unwrap();
        }
        let labels = root.join("by-partlabel");
        let uuids = root.join("by-partuuid");
        fs::create_dir_all(&labels).unwrap();
        fs::create_dir_all(&uuids).unwrap();
        let link = |target: &str, at: PathBuf| std::os::unix::fs::symlink(target, at).unwrap();
        link("../sda2", labels.join("horcrux-root-a"));
        link("../sda3", labels.join("horcrux-root-b"));
        link(
            "../sda2",
            uuids.join("11111111-2222-3333-4444-555555555555"),
        );
        link(
            "../sda3",
            uuids.join("AAAAAAAA-2222-3333-4444-555555555555"),
        );

        let b = resolve(Slot::B, &labels, &uuids).unwrap();
        assert_eq!(b.device, root.join("sda3").canonicalize().unwrap());
        assert_eq!(b.partuuid, "aaaaaaaa-2222-3333-4444-555555555555");
        assert_eq!(b.size, 8192);

        // A label leading to the running slot's device is refused.
        fs::remove_file(labels.join("horcrux-root-b")).unwrap();
        link("../sda2", labels.join("horcrux-root-b"));
        assert!(matches!(
            resolve(Slot::B, &labels, &uuids),
            Err(SlotError::SameDevice { .. })
        ));
        // No label at all.
        fs::remove_file(labels.join("horcrux-root-b")).unwrap();
        assert!(matches!(
            resolve(Slot::B, &labels, &uuids),
            Err(SlotError::NoDevice { .. })
        ));
        // A label but no PARTUUID link.
        link("../sda3", labels.join("horcrux-root-b"));
        fs::remove_file(uuids.join("AAAAAAAA-2222-3333-4444-555555555555")).unwrap();
        assert!(matches!(
            resolve(Slot::B, &labels, &uuids),
            Err(SlotError::NoPartuuid { .. })
        ));
        // A link name that is no UUID never reaches a command line.
        link("../sda3", uuids.join("x y"));
        assert!(matches!(
            resolve(Slot::B, &labels, &uuids),
            Err(SlotError::BadPartuuid { .. })
        ));
    }
}
