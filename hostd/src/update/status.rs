//! `horcrux update-status`: the running slot and image, the slots' boot
//! entries with their boot-counting state, and which one systemd-boot
//! boots next.

use std::fmt::Write as _;

use serde::Serialize;

use super::entry::{self, Entry};
use super::{Paths, Slot, efivar, release, slot};

/// Everything update-status shows. Parts that cannot be read are shown
/// with why, rather than hiding the rest.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// None when not booted from a slot (see `running_error`).
    pub running_slot: Option<Slot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_error: Option<String>,
    pub image_id: Option<String>,
    pub built: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_error: Option<String>,
    /// The entry systemd-boot counted this boot as (LoaderBootCountPath):
    /// set only on a trial boot.
    pub booted_trial_entry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booted_error: Option<String>,
    /// In systemd-boot's order.
    pub entries: Vec<Entry>,
    /// The entry booted next (the first in order).
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot list {dir}: {source}")]
pub struct StatusError {
    dir: std::path::PathBuf,
    source: std::io::Error,
}

/// Reads the status from the node's files.
pub fn gather(paths: &Paths) -> Result<Status, StatusError> {
    let dir = paths.entries_dir();
    let entries = entry::read_entries(&dir).map_err(|source| StatusError { dir, source })?;
    let (running_slot, running_error) = split(slot::read_running_slot(&paths.cmdline));
    let (release, image_error) = split(release::read(&paths.image_release));
    let booted = efivar::read_boot_count_path(&paths.efivars)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            bytes
                .map(|b| efivar::decode_entry_name(&b).map_err(|e| e.to_string()))
                .transpose()
        });
    let (booted_trial_entry, booted_error) = split(booted);
    Ok(Status {
        running_slot,
        running_error,
        image_id: release.as_ref().map(|r| r.image_id.clone()),
        built: release.and_then(|r| r.built_text),
        image_error,
        booted_trial_entry: booted_trial_entry.flatten(),
        booted_error,
        next: entries.first().map(|e| e.file.clone()),
        entries,
    })
}

fn split<T, E: ToString>(result: Result<T, E>) -> (Option<T>, Option<String>) {
    match result {
        Ok(value) => (Some(value), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// `label: value`, or `label: why` when the value could not be had.
fn line(out: &mut String, label: &str, value: Option<String>, error: &Option<String>) {
    if let Some(text) = error.clone().or(value) {
        let _ = writeln!(out, "{label}: {text}");
    }
}

/// The human-readable form.
pub fn render(status: &Status, entries_dir: &std::path::Path) -> String {
    let mut out = String::new();
    let running = status.running_slot.map(|slot| format!("slot {slot}"));
    line(&mut out, "running", running, &status.running_error);
    let image = status.image_id.as_ref().map(|id| {
        let built = status.built.as_deref().unwrap_or("unknown");
        format!("{id} (built {built})")
    });
    line(&mut out, "image", image, &status.image_error);
    let booted = match &status.booted_trial_entry {
        Some(name) => {
            format!("{name} (a trial boot: boot-health blesses it once hostd is ready)")
        }
        None => "not a trial boot (LoaderBootCountPath is not set)".into(),
    };
    line(&mut out, "booted", Some(booted), &status.booted_error);
    if status.entries.is_empty() {
        let _ = writeln!(out, "no horcrux boot entries in {}", entries_dir.display());
        return out;
    }
    let _ = writeln!(out, "entries, in systemd-boot's order:");
    let width = status
        .entries
        .iter()
        .map(|e| e.file.len())
        .max()
        .unwrap_or(0);
    for e in &status.entries {
        let mark = if status.next.as_deref() == Some(&e.file) {
            '*'
        } else {
            ' '
        };
        let _ = writeln!(
            out,
            "{mark} {:width$}  slot {}  seq {:<4} {}  {}",
            e.file,
            e.slot,
            e.seq,
            e.title.as_deref().unwrap_or("(no title)"),
            e.state,
        );
    }
    if let Some(next) = status.entries.first() {
        let _ = writeln!(out, "next boot: {} (slot {})", next.file, next.slot);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_and_renders() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            esp: dir.path().join("efi"),
            cmdline: dir.path().join("cmdline"),
            image_release: dir.path().join("image-release"),
            efivars: dir.path().join("efivars"),
            ..Paths::default()
        };
        let entries = paths.entries_dir();
        std::fs::create_dir_all(&entries).unwrap();
        std::fs::create_dir_all(&paths.efivars).unwrap();
        std::fs::write(&paths.cmdline, "quiet horcrux.slot=b\n").unwrap();
        std::fs::write(
            &paths.image_release,
            "IMAGE_ID=horcrux-2\nBUILT=2026-01-02T00:00:00Z\n",
        )
        .unwrap();
        std::fs::write(
            entries.join("horcrux-a.conf"),
            "title Horcrux 1 (slot A)\nversion 1\n",
        )
        .unwrap();
        std::fs::write(
            entries.join("horcrux-b+2-1.conf"),
            "title Horcrux 2 (slot B)\nversion 2\n",
        )
        .unwrap();
        let var = efivar::tests::encode("\\loader\\entries\\horcrux-b+3.conf");
        std::fs::write(efivar::boot_count_path_file(&paths.efivars), var).unwrap();

        let status = gather(&paths).unwrap();
        assert_eq!(status.running_slot, Some(Slot::B));
        assert_eq!(status.next.as_deref(), Some("horcrux-b+2-1.conf"));
        assert_eq!(
            status.booted_trial_entry.as_deref(),
            Some("horcrux-b+3.conf")
        );
        let text = render(&status, &entries);
        assert!(text.contains("running: slot B\n"), "{text}");
        assert!(
            text.contains("image: horcrux-2 (built 2026-01-02T00:00:00Z)"),
            "{text}"
        );
        assert!(text.contains("booted: horcrux-b+3.conf"), "{text}");
        assert!(
            text.contains("* horcrux-b+2-1.conf  slot B  seq 2    Horcrux 2 (slot B)  trial (2 tries left, 1 done)"),
            "{text}"
        );
        assert!(
            text.contains("next boot: horcrux-b+2-1.conf (slot B)"),
            "{text}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["running_slot"], "b");
        assert_eq!(json["entries"][0]["state"], "trial");
        assert_eq!(json["entries"][0]["left"], 2);
        assert_eq!(json["entries"][1]["state"], "good");

        // A PXE boot without image-release still shows the entries.
        std::fs::write(&paths.cmdline, "ip=dhcp\n").unwrap();
        std::fs::remove_file(&paths.image_release).unwrap();
        let text = render(&gather(&paths).unwrap(), &entries);
        assert!(
            text.contains("running: not booted from an A/B slot"),
            "{text}"
        );
        assert!(text.contains("image: cannot read"), "{text}");
    }
}
