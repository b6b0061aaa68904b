//! A/B image updates of the node.
//!
//! The appliance disk has two read-only root slots (`horcrux-root-a`,
//! `horcrux-root-b`, each an erofs or squashfs image with its dm-verity
//! hash tree appended) and an ESP that systemd-boot boots from. An update
//! is written into the slot that is not running, with a new boot entry
//! that carries systemd-boot's boot counter: the new slot is booted next,
//! and unless `horcrux boot-health` blesses the entry (hostd reached
//! READY), systemd-boot falls back to the old slot once the tries are
//! used up. Nothing is ever written to the running slot, and no entry
//! points at a slot while it is being written.
//!
//! An update bundle is a ustar tar: `manifest.toml`, its minisign
//! signature, then the payloads the manifest names with their sizes and
//! SHA-256. The signature is checked against the keys baked into the
//! running (read-only, verity-protected) root before anything else is
//! read, so the bundle may travel over any channel.

pub mod bundle;
pub mod efivar;
pub mod entry;
pub mod fetch;
pub mod health;
pub mod install;
pub mod manifest;
pub mod release;
pub mod slot;
pub mod status;
pub mod trust;

use std::path::PathBuf;

pub use slot::Slot;

/// The trusted update keys, baked into the read-only root.
pub const DEFAULT_KEYS_DIR: &str = "/usr/lib/horcrux/update-keys";
/// Where the ESP is mounted on the node.
pub const DEFAULT_ESP: &str = "/efi";
/// The running kernel's command line.
pub const DEFAULT_CMDLINE: &str = "/proc/cmdline";
/// What the running image is (IMAGE_ID, BUILT), baked into the root.
pub const DEFAULT_IMAGE_RELEASE: &str = "/usr/lib/horcrux/image-release";
pub const DEFAULT_BY_PARTLABEL: &str = "/dev/disk/by-partlabel";
pub const DEFAULT_BY_PARTUUID: &str = "/dev/disk/by-partuuid";
/// Where a downloaded bundle is kept while it is installed (on /var).
pub const DEFAULT_STAGING_DIR: &str = "/var/lib/horcrux/update";
pub const DEFAULT_EFIVARS: &str = "/sys/firmware/efi/efivars";

/// The node paths the update commands read and write. The defaults are
/// the real ones; the (hidden) flags point them elsewhere, so that tests
/// run the real binary against files in a temporary directory.
#[derive(Debug, Clone, clap::Args)]
pub struct Paths {
    /// Directory of trusted minisign public keys (`*.pub`).
    #[arg(long, hide = true, default_value = DEFAULT_KEYS_DIR)]
    pub keys_dir: PathBuf,
    /// Mount point of the ESP.
    #[arg(long, hide = true, default_value = DEFAULT_ESP)]
    pub esp: PathBuf,
    /// The kernel command line.
    #[arg(long, hide = true, default_value = DEFAULT_CMDLINE)]
    pub cmdline: PathBuf,
    /// The running image's release file.
    #[arg(long, hide = true, default_value = DEFAULT_IMAGE_RELEASE)]
    pub image_release: PathBuf,
    #[arg(long, hide = true, default_value = DEFAULT_BY_PARTLABEL)]
    pub by_partlabel: PathBuf,
    #[arg(long, hide = true, default_value = DEFAULT_BY_PARTUUID)]
    pub by_partuuid: PathBuf,
    /// Where a downloaded bundle is stored while it is installed.
    #[arg(long, hide = true, default_value = DEFAULT_STAGING_DIR)]
    pub staging_dir: PathBuf,
    /// The efivarfs mount.
    #[arg(long, hide = true, default_value = DEFAULT_EFIVARS)]
    pub efivars: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            keys_dir: DEFAULT_KEYS_DIR.into(),
            esp: DEFAULT_ESP.into(),
            cmdline: DEFAULT_CMDLINE.into(),
            image_release: DEFAULT_IMAGE_RELEASE.into(),
            by_partlabel: DEFAULT_BY_PARTLABEL.into(),
            by_partuuid: DEFAULT_BY_PARTUUID.into(),
            staging_dir: DEFAULT_STAGING_DIR.into(),
            efivars: DEFAULT_EFIVARS.into(),
        }
    }
}

impl Paths {
    /// systemd-boot's Boot Loader Specification entries.
    pub fn entries_dir(&self) -> PathBuf {
        self.esp.join("loader/entries")
    }

    /// Where a slot's kernel and initrd live on the ESP.
    pub fn kernel_dir(&self, slot: Slot) -> PathBuf {
        self.esp.join("horcrux").join(slot.letter())
    }
}

/// Where progress lines go (stderr, in the CLI).
pub type Say<'a> = &'a mut dyn FnMut(&str);

/// Bytes as MiB with one decimal, for progress lines.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Reports a long copy every ~5 % (every 64 MiB when the total is not
/// known), so that a progress log stays about twenty lines long.
#[derive(Debug)]
pub struct Meter {
    what: String,
    total: Option<u64>,
    step: u64,
    next: u64,
}

impl Meter {
    pub fn new(what: impl Into<String>, total: Option<u64>) -> Meter {
        let step = match total {
            Some(total) => (total / 20).max(1),
            None => 64 << 20,
        };
        Meter {
            what: what.into(),
            total,
            step,
            next: step,
        }
    }

    /// Called with the running count; says a line when another step is done.
    pub fn update(&mut self, done: u64, say: Say) {
        if done < self.next {
            return;
        }
        self.next = (done / self.step + 1) * self.step;
        match self.total {
            Some(total) if total > 0 => say(&format!(
                "{}: {} of {} ({}%)",
                self.what,
                mib(done),
                mib(total),
                done.saturating_mul(100) / total
            )),
            _ => say(&format!("{}: {}", self.what, mib(done))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_says_about_twenty_lines() {
        let mut lines = Vec::new();
        let mut meter = Meter::new("writing", Some(1000));
        for done in (0..=1000).step_by(7) {
            meter.update(done, &mut |line| lines.push(line.to_string()));
        }
        assert!((18..=21).contains(&lines.len()), "{lines:?}");
        assert!(lines[0].ends_with("(5%)"), "{lines:?}");
        let mut unknown = Vec::new();
        let mut meter = Meter::new("downloaded", None);
        meter.update(1 << 20, &mut |line| unknown.push(line.to_string()));
        meter.update(130 << 20, &mut |line| unknown.push(line.to_string()));
        assert_eq!(unknown, ["downloaded: 130.0 MiB"]);
    }
}
