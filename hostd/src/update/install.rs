//! `horcrux update`: installs a bundle into the inactive slot.
//!
//! The order is what keeps the node bootable at every moment: nothing is
//! written before the signature, the manifest and every payload have
//! been checked; the slot's boot entries are removed before the slot is
//! written, so no entry ever points at a half-written slot; the new entry
//! is written last, after the slot has been read back, and it carries a
//! boot counter, so a new image that does not come up falls back to the
//! running one by itself.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::bundle::{self, BundleError, copy_hashed};
use super::entry::{self, EntryName, NewEntry};
use super::manifest::{self, Manifest, ManifestError, Payload, Role};
use super::release::{self, Release, ReleaseError};
use super::slot::{self, SlotDevice, SlotError};
use super::trust::{TrustError, UpdateKeys};
use super::{Meter, Paths, Say, Slot, mib};
use crate::fsutil::{PathError, at, sync_dir, write_if_changed};

/// Reads of the bundle are this large, so the slot is written in large
/// chunks.
const READ_BUFFER: usize = 1 << 20;
/// The ESP file names of a slot's kernel and initrd.
pub const KERNEL_FILE: &str = "vmlinuz";
pub const INITRD_FILE: &str = "initrd.img";

/// What `horcrux update` was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// systemd-boot boot tries before falling back (1..=9).
    pub tries: u8,
    pub allow_downgrade: bool,
}

/// What the update did.
#[derive(Debug, Clone)]
pub enum Installed {
    /// The bundle is the running image: nothing to do.
    AlreadyRunning {
        image_id: String,
    },
    Written(Summary),
}

/// What was written, for the summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub slot: Slot,
    pub device: PathBuf,
    pub image_id: String,
    pub version: String,
    pub entry: String,
    pub seq: u64,
    pub root_bytes: u64,
    pub tries: u8,
    /// Each phase and how long it took, in order.
    pub phases: Vec<(&'static str, Duration)>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(
        "the running slot {running} is still on trial ({entry}): until horcrux-boot-health \
         blesses it (hostd READY), slot {target} is the fallback, and installing would remove \
         its entry; wait, or reboot into slot {target} first"
    )]
    RunningOnTrial {
        running: Slot,
        target: Slot,
        entry: String,
    },
    #[error(
        "refusing a downgrade: the bundle was built {built}, before the running image {running} \
         (built {running_built}); pass --allow-downgrade to install it anyway"
    )]
    Downgrade {
        built: String,
        running: String,
        running_built: String,
    },
    #[error(
        "cannot tell whether this is a downgrade: {0} has no RFC 3339 BUILT; pass \
         --allow-downgrade to install anyway"
    )]
    UnknownRunningBuilt(PathBuf),
    #[error("slot {slot}: {device} has {size} bytes, but root.img needs {needed}")]
    TooSmall {
        slot: Slot,
        device: PathBuf,
        size: u64,
        needed: u64,
    },
    #[error(
        "slot {slot}: reading {device} back gave SHA-256 {found} over {bytes} bytes, not \
         {expected}: the disk did not keep what was written (the slot has no boot entry)"
    )]
    Readback {
        slot: Slot,
        device: PathBuf,
        bytes: u64,
        expected: String,
        found: String,
    },
}

/// Times the phases of the update.
struct Phases {
    start: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn start() -> Phases {
        Phases {
            start: Instant::now(),
            done: Vec::new(),
        }
    }

    fn done(&mut self, name: &'static str) {
        self.done.push((name, self.start.elapsed()));
        self.start = Instant::now();
    }
}

/// `map_err` adapter naming what failed on which path.
fn fail(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UpdateError {
    at(action, path)
}

fn open(path: &Path) -> Result<BufReader<File>, UpdateError> {
    File::open(path)
        .map(|f| BufReader::with_capacity(READ_BUFFER, f))
        .map_err(fail("open", path))
}

/// Installs the bundle at `bundle` into the inactive slot (steps 1 to 9
/// of the update, each said in one line).
pub fn install(
    bundle: &Path,
    paths: &Paths,
    options: &Options,
    say: Say,
) -> Result<Installed, UpdateError> {
    let mut phases = Phases::start();
    let manifest = verify(bundle, paths, say)?;
    phases.done("verify");

    let running = release::read(&paths.image_release)?;
    if running.image_id == manifest.image_id {
        say(&format!("already running {}", running.image_id));
        return Ok(Installed::AlreadyRunning {
            image_id: running.image_id,
        });
    }
    say(&compare_with_running(
        &running,
        &manifest,
        options.allow_downgrade,
        &paths.image_release,
    )?);

    let cmdline = fs::read_to_string(&paths.cmdline).map_err(fail("read", &paths.cmdline))?;
    let slot = slot::target_slot(&cmdline)?;
    let target = slot::resolve(slot, &paths.by_partlabel, &paths.by_partuuid)?;
    let needed = manifest.root.payload.size;
    if target.size < needed {
        return Err(UpdateError::TooSmall {
            slot,
            device: target.device,
            size: target.size,
            needed,
        });
    }
    say(&format!(
        "target: slot {slot}, {} (PARTUUID={}), {} for {} of root.img",
        target.device.display(),
        target.partuuid,
        mib(target.size),
        mib(needed)
    ));

    let entries_dir = paths.entries_dir();
    // Writing the target removes its entry; while the running slot is not
    // blessed yet, that entry is the only known-good one.
    let existing = entry::read_entries(&entries_dir).map_err(fail("read", &entries_dir))?;
    if let Some(trial) = existing
        .iter()
        .find(|e| e.slot == slot.other() && matches!(e.state, entry::BootState::Trial { .. }))
    {
        return Err(UpdateError::RunningOnTrial {
            running: slot.other(),
            target: slot,
            entry: trial.file.clone(),
        });
    }
    // Counted before removing the slot's entries: a version number is
    // never given twice.
    let seq = entry::next_seq_in(&entries_dir).map_err(fail("read", &entries_dir))?;
    let removed = remove_slot_entries(&entries_dir, slot)?;
    say(&if removed.is_empty() {
        format!("slot {slot} had no boot entries")
    } else {
        format!(
            "removed the boot entries of slot {slot}: {}",
            removed.join(", ")
        )
    });

    let kernel_dir = paths.kernel_dir(slot);
    let staged = match write_payloads(bundle, &manifest, &target, &kernel_dir, say) {
        Ok(staged) => staged,
        Err(e) => {
            remove_staged(&kernel_dir);
            return Err(e);
        }
    };
    phases.done("write slot");
    if let Err(e) = read_back(&target, &manifest.root.payload) {
        remove_staged(&kernel_dir);
        return Err(e);
    }
    say(&format!("read back slot {slot}: SHA-256 matches"));
    phases.done("read back");
    for (new, file) in &staged {
        let path = kernel_dir.join(file);
        fs::rename(new, &path).map_err(fail("rename into place", &path))?;
    }
    sync_dir(&kernel_dir).map_err(fail("sync", &kernel_dir))?;
    say(&format!(
        "kernel and initrd written to {}",
        kernel_dir.display()
    ));
    phases.done("kernel+initrd");

    let name = EntryName::file_name(slot, options.tries);
    let text = entry::entry_text(&NewEntry {
        slot,
        seq,
        partuuid: &target.partuuid,
        manifest: &manifest,
    });
    let path = entries_dir.join(&name);
    write_if_changed(&path, text.as_bytes()).map_err(fail("write", &path))?;
    say(&format!("boot entry written: {name} (version {seq})"));
    phases.done("entry");

    Ok(Installed::Written(Summary {
        slot,
        device: target.device,
        image_id: manifest.image_id,
        version: manifest.version,
        entry: name,
        seq,
        root_bytes: needed,
        tries: options.tries,
        phases: phases.done,
    }))
}

/// Steps 1 to 3: the signature, the manifest, every payload. Reads the
/// bundle and the keys only.
pub fn verify(bundle: &Path, paths: &Paths, say: Say) -> Result<Manifest, UpdateError> {
    let keys = UpdateKeys::load(&paths.keys_dir)?;
    for skipped in &keys.skipped {
        say(&format!("note: skipped key file {skipped}"));
    }
    let head = bundle::read_head(open(bundle)?)?;
    let (key_file, key_id) = keys.verify(&head.manifest, &head.signature)?;
    say(&format!(
        "signature: manifest.toml is signed by key ID {key_id} ({key_file})"
    ));
    let manifest = manifest::parse(&head.manifest)?;
    say(&format!(
        "manifest: {} version {} built {}",
        manifest.image_id, manifest.version, manifest.built_text
    ));
    bundle::check_payloads(open(bundle)?, &manifest)?;
    let sizes: Vec<String> = manifest
        .payloads()
        .iter()
        .map(|(_, p)| format!("{} {}", p.file, mib(p.size)))
        .collect();
    say(&format!(
        "payloads: {}: sizes and SHA-256 match the manifest",
        sizes.join(", ")
    ));
    Ok(manifest)
}

/// Step 4's downgrade check; returns the line to say.
fn compare_with_running(
    running: &Release,
    manifest: &Manifest,
    allow_downgrade: bool,
    release_path: &Path,
) -> Result<String, UpdateError> {
    let running_built = match (running.built, &running.built_text) {
        (Some(built), Some(text)) => Some((built, text.as_str())),
        _ => None,
    };
    let older = |built: SystemTime| manifest.built < built;
    match running_built {
        Some((built, text)) if older(built) => {
            if !allow_downgrade {
                return Err(UpdateError::Downgrade {
                    built: manifest.built_text.clone(),
                    running: running.image_id.clone(),
                    running_built: text.to_string(),
                });
            }
            Ok(format!(
                "running {} built {text}: a downgrade, allowed by --allow-downgrade",
                running.image_id
            ))
        }
        Some((_, text)) => Ok(format!(
            "running {} built {text}: the bundle is not older",
            running.image_id
        )),
        None if allow_downgrade => Ok(format!(
            "running {} (build time unknown): installing, as --allow-downgrade says",
            running.image_id
        )),
        None => Err(UpdateError::UnknownRunningBuilt(release_path.to_path_buf())),
    }
}

/// Step 6: removes every entry of `slot` and makes that durable; returns
/// the removed names.
fn remove_slot_entries(dir: &Path, slot: Slot) -> Result<Vec<String>, UpdateError> {
    let names: Vec<String> = entry::list_dir(dir)
        .map_err(fail("read", dir))?
        .into_iter()
        .filter(|name| entry::belongs_to(name, slot))
        .collect();
    for name in &names {
        let path = dir.join(name);
        fs::remove_file(&path).map_err(fail("remove", &path))?;
    }
    if !names.is_empty() {
        sync_dir(dir).map_err(fail("sync", dir))?;
    }
    Ok(names)
}

/// The `.new` file a payload is staged in before it is renamed.
fn staged_name(file: &str) -> String {
    format!("{file}.new")
}

fn remove_staged(kernel_dir: &Path) {
    for file in [KERNEL_FILE, INITRD_FILE] {
        let _ = fs::remove_file(kernel_dir.join(staged_name(file)));
    }
}

/// Steps 7 and 8 up to the renames: the second pass over the bundle,
/// root.img into the slot device, kernel and initrd into `.new` files of
/// `kernel_dir`; each payload's SHA-256 is checked again as it is
/// written (the bundle may have changed since the first pass). Returns
/// the staged files and their final names.
fn write_payloads(
    bundle: &Path,
    manifest: &Manifest,
    target: &SlotDevice,
    kernel_dir: &Path,
    say: Say,
) -> Result<Vec<(PathBuf, &'static str)>, UpdateError> {
    fs::create_dir_all(kernel_dir).map_err(fail("create", kernel_dir))?;
    let mut staged = Vec::new();
    bundle::for_each_payload(open(bundle)?, manifest, |role, payload, data| match role {
        Role::Root => write_root(target, payload, data, &mut *say),
        Role::Kernel | Role::Initrd => {
            let file = if role == Role::Kernel {
                KERNEL_FILE
            } else {
                INITRD_FILE
            };
            let new = kernel_dir.join(staged_name(file));
            write_file(&new, payload, data)?;
            staged.push((new, file));
            Ok(())
        }
    })?;
    Ok(staged)
}

fn write_root(
    target: &SlotDevice,
    payload: &Payload,
    data: &mut dyn Read,
    say: Say,
) -> Result<(), UpdateError> {
    let device = &target.device;
    let mut file = open_slot(device).map_err(fail("open for writing", device))?;
    say(&format!(
        "writing {} to slot {} ({})",
        payload.file,
        target.slot,
        device.display()
    ));
    let mut meter = Meter::new(format!("slot {}", target.slot), Some(payload.size));
    let (size, sha256) = copy_hashed(data, &mut file, |done| meter.update(done, &mut *say))
        .map_err(fail("write", device))?;
    payload.check(size, &sha256)?;
    file.sync_all().map_err(fail("sync", device))?;
    Ok(())
}

/// Opens the slot for writing, without truncating (it is a partition). A
/// block device is opened exclusively: the kernel refuses that while it
/// is mounted or otherwise in use.
fn open_slot(device: &Path) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let mut options = OpenOptions::new();
    options.write(true);
    if fs::metadata(device)?.file_type().is_block_device() {
        options.custom_flags(rustix::fs::OFlags::EXCL.bits() as i32);
    }
    options.open(device)
}

fn write_file(path: &Path, payload: &Payload, data: &mut dyn Read) -> Result<(), UpdateError> {
    let mut file = File::create(path).map_err(fail("create", path))?;
    let (size, sha256) = copy_hashed(data, &mut file, |_| {}).map_err(fail("write", path))?;
    payload.check(size, &sha256)?;
    file.sync_all().map_err(fail("sync", path))?;
    Ok(())
}

/// Step 7's check: reads the written range of the slot back from the
/// disk (its cached pages dropped first) and compares its SHA-256.
fn read_back(target: &SlotDevice, payload: &Payload) -> Result<(), UpdateError> {
    let device = &target.device;
    let mut file = File::open(device).map_err(fail("open", device))?;
    // Best effort: without it the page cache may answer instead of the disk.
    let _ = rustix::fs::fadvise(
        &file,
        0,
        std::num::NonZeroU64::new(payload.size),
        rustix::fs::Advice::DontNeed,
    );
    file.seek(SeekFrom::Start(0))
        .map_err(fail("read", device))?;
    let mut range = BufReader::with_capacity(READ_BUFFER, file).take(payload.size);
    let (bytes, found) =
        copy_hashed(&mut range, &mut io::sink(), |_| {}).map_err(fail("read", device))?;
    if bytes != payload.size || found != payload.sha256 {
        return Err(UpdateError::Readback {
            slot: target.slot,
            device: device.clone(),
            bytes,
            expected: payload.sha256.clone(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(built: &str) -> Manifest {
        let hash = "ab".repeat(32);
        let text = format!(
            "format = 1\nimage_id = \"horcrux-new\"\nversion = \"2\"\nbuilt = \"{built}\"\n\
             [root]\nfile = \"root.img\"\nsize = 8192\nsha256 = \"{hash}\"\nfstype = \"erofs\"\n\
             verity_root_hash = \"{hash}\"\nverity_hash_offset = 4096\n\
             [kernel]\nfile = \"vmlinuz\"\nsize = 1\nsha256 = \"{hash}\"\n\
             [initrd]\nfile = \"initrd.img\"\nsize = 1\nsha256 = \"{hash}\"\n"
        );
        manifest::parse(text.as_bytes()).unwrap()
    }

    fn running(built: Option<&str>) -> Release {
        Release {
            image_id: "horcrux-old".into(),
            built_text: built.map(str::to_string),
            built: built.and_then(|b| humantime::parse_rfc3339(b).ok()),
        }
    }

    #[test]
    fn downgrades_need_the_flag() {
        let path = Path::new("/usr/lib/horcrux/image-release");
        let newer = manifest("2026-02-01T00:00:00Z");
        let older = manifest("2025-12-01T00:00:00Z");
        let now = running(Some("2026-01-01T00:00:00Z"));
        assert!(compare_with_running(&now, &newer, false, path).is_ok());
        let refused = compare_with_running(&now, &older, false, path).unwrap_err();
        assert!(
            matches!(refused, UpdateError::Downgrade { .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("--allow-downgrade"));
        let allowed = compare_with_running(&now, &older, true, path).unwrap();
        assert!(allowed.contains("a downgrade"), "{allowed}");
        // The same build time is no downgrade (a rebuild).
        let same = manifest("2026-01-01T00:00:00Z");
        assert!(compare_with_running(&now, &same, false, path).is_ok());
        // Without BUILT the check cannot be made.
        let unknown = running(None);
        assert!(matches!(
            compare_with_running(&unknown, &newer, false, path),
            Err(UpdateError::UnknownRunningBuilt(_))
        ));
        assert!(compare_with_running(&unknown, &newer, true, path).is_ok());
    }

    #[test]
    fn removes_only_the_slots_entries() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "horcrux-a.conf",
            "horcrux-b.conf",
            "horcrux-b+2-1.conf",
            "horcrux-b+junk.conf",
            "debian.conf",
        ] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let removed = remove_slot_entries(dir.path(), Slot::B).unwrap();
        assert_eq!(
            removed,
            [
                "horcrux-b+2-1.conf",
                "horcrux-b+junk.conf",
                "horcrux-b.conf"
            ]
        );
        let left = entry::list_dir(dir.path()).unwrap();
        assert_eq!(left, ["debian.conf", "horcrux-a.conf"]);
        assert!(
            remove_slot_entries(&dir.path().join("none"), Slot::B)
                .unwrap()
                .is_empty()
        );
    }
}
