//! cloud-init NoCloud seeds: the three documents a guest reads at boot,
//! built from the VM's `[cloud_init]` section, and the small VFAT image
//! (volume label `cidata`) that carries them.
//!
//! For the VM backend:
//! 1. [`vm_seed_docs`] gives the documents of a VM, or `None` when it has
//!    no `[cloud_init]` section (then no seed is attached either);
//! 2. [`SeedDocs::content_hash`] is what `horcrux plan` shows: any change of
//!    the section (or of the first NIC's MAC) changes it;
//! 3. [`write_seed`] writes the image to `Layout::cloud_init_seed` before
//!    the unit starts; it does nothing when the file already holds the
//!    same image, so a running VM's seed is not replaced for nothing.
//!
//! Everything but [`write_seed`] is pure. The YAML is written by hand
//! because the documents are small and fixed in shape; every string that
//! comes from the config goes through [`yaml_str`], so nothing in a key's
//! comment can change the structure.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Cursor, Read, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::backend::hex;
use horcrux_config::Config;
use horcrux_config::model::vm::{CloudInit, GuestNetwork};
use horcrux_config::types::{MacAddr, ResourceName};
use sha2::{Digest, Sha256};

use crate::backend::naming;

/// The volume label cloud-init's NoCloud datasource looks for.
pub const VOLUME_LABEL: &str = "cidata";

/// FAT logical sector size. The seed is attached as a read-only
/// virtio-blk disk (512-byte blocks); Linux refuses a FAT whose sectors are
/// smaller than the device's blocks, so this would have to become 2048
/// if the seed were ever attached as a CD again.
const SECTOR_SIZE: u16 = 512;

/// The image is sized in whole MiB: room for the documents plus the FAT
/// metadata, and a multiple of any block size.
const MIB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot build the cloud-init seed image: {0}")]
    Image(#[source] io::Error),
    #[error("cannot write the cloud-init seed {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the cloud-init seed path {0} has no parent directory or file name")]
    BadPath(PathBuf),
}

/// The three NoCloud documents, as written into the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDocs {
    /// `meta-data`: `instance-id` and `local-hostname`.
    pub meta_data: String,
    /// `user-data`: a `#cloud-config` document.
    pub user_data: String,
    /// `network-config`: netplan-style version 2.
    pub network_config: String,
}

impl SeedDocs {
    /// The files of the seed, in the order they are written.
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [
            ("meta-data", &self.meta_data),
            ("user-data", &self.user_data),
            ("network-config", &self.network_config),
        ]
    }

    /// 16 hex digits (64 bits) of a SHA-256 over the three documents, for
    /// `horcrux plan` and change detection. The instance-id is part of
    /// meta-data, so a changed section always changes this hash.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, text) in self.files() {
            // Length-prefixed, so moving bytes between documents is a change.
            hasher.update(name.as_bytes());
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        hex(&hasher.finalize()[..8])
    }
}

/// The seed documents of VM `name`, or `None` when it has no
/// `[cloud_init]` section or is not defined. The instance-id is derived
/// from the VM's SMBIOS UUID (stable across nodes and restarts) and the
/// network is configured on the first NIC, matched by its MAC.
pub fn vm_seed_docs(config: &Config, name: &ResourceName) -> Option<SeedDocs> {
    let vm = config.vms.get(name)?;
    let cloud_init = vm.cloud_init.as_ref()?;
    let uuid = naming::vm_uuid(naming::uuid_scope(config), name.as_str());
    let first_mac = vm
        .nics
        .first()
        .map(|nic| config.nic_mac(name, 0, &nic.value));
    Some(seed_docs(name.as_str(), &uuid, cloud_init, first_mac))
}

/// The seed documents from their inputs; [`vm_seed_docs`] gathers these
/// from a config. `first_mac` is `None` for a VM without NICs: its
/// network-config then configures no interface.
pub fn seed_docs(
    vm: &str,
    uuid: &str,
    cloud_init: &CloudInit,
    first_mac: Option<MacAddr>,
) -> SeedDocs {
    let keys: Vec<String> = cloud_init
        .ssh_keys
        .iter()
        .map(|k| normalize_key(k.as_str()))
        .collect();
    let user = cloud_init.user.as_ref().map(|u| u.as_str());
    let network = &cloud_init.network.value;
    SeedDocs {
        meta_data: meta_data(vm, uuid, user, &keys, network, first_mac),
        user_data: user_data(user, &keys),
        network_config: network_config(network, first_mac),
    }
}

/// An OpenSSH key line with its whitespace runs collapsed to one space.
/// The config only checks type and key data; a newline in the comment
/// would otherwise become a second line in `authorized_keys`.
fn normalize_key(key: &str) -> String {
    key.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// cloud-init runs its per-instance modules (users, keys, network, and
/// also new SSH host keys) once per instance-id. The id therefore changes
/// exactly when the section's inputs change: it hashes the inputs rather
/// than the generated YAML, so a hostd upgrade that only reformats the
/// documents does not make every guest start over.
fn instance_id(
    uuid: &str,
    user: Option<&str>,
    keys: &[String],
    network: &GuestNetwork,
    first_mac: Option<MacAddr>,
) -> String {
    let inputs = serde_json::json!({
        "user": user,
        "ssh_keys": keys,
        "network": network.to_string(),
        "mac": first_mac.map(|m| m.to_string()),
    });
    let digest = Sha256::digest(inputs.to_string().as_bytes());
    format!("horcrux-{uuid}-{}", hex(&digest[..6]))
}

fn meta_data(
    vm: &str,
    uuid: &str,
    user: Option<&str>,
    keys: &[String],
    network: &GuestNetwork,
    first_mac: Option<MacAddr>,
) -> String {
    let id = instance_id(uuid, user, keys, network, first_mac);
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_str(&id),
        yaml_str(vm)
    )
}

fn user_data(user: Option<&str>, keys: &[String]) -> String {
    let mut out = String::from("#cloud-config\n");
    match user {
        // Only the named user: the image's default user is not created,
        // so the keys open exactly one account.
        Some(user) => {
            out.push_str("users:\n");
            let _ = writeln!(out, "  - name: {}", yaml_str(user));
            out.push_str("    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n");
            out.push_str("    lock_passwd: true\n");
            if !keys.is_empty() {
                out.push_str("    ssh_authorized_keys:\n");
                for key in keys {
                    let _ = writeln!(out, "      - {}", yaml_str(key));
                }
            }
        }
        // The top-level key list goes to the image's default user.
        None if !keys.is_empty() => {
            out.push_str("ssh_authorized_keys:\n");
            for key in keys {
                let _ = writeln!(out, "  - {}", yaml_str(key));
            }
        }
        None => {}
    }
    out
}

fn network_config(network: &GuestNetwork, first_mac: Option<MacAddr>) -> String {
    let mut out = String::from("version: 2\n");
    let Some(mac) = first_mac else {
        out.push_str("ethernets: {}\n");
        return out;
    };
    out.push_str("ethernets:\n  nic0:\n    match:\n");
    let _ = writeln!(out, "      macaddress: {}", yaml_str(&mac.to_string()));
    match network {
        GuestNetwork::Dhcp => out.push_str("    dhcp4: true\n"),
        GuestNetwork::Static { address, gateway } => {
            // An explicit prefix instead of `default`: older cloud-init
            // releases only understand the numeric form.
            let to = if gateway.is_ipv4() {
                "0.0.0.0/0"
            } else {
                "::/0"
            };
            out.push_str("    dhcp4: false\n    addresses:\n");
            let _ = writeln!(out, "      - {}", yaml_str(&address.to_string()));
            out.push_str("    routes:\n");
            let _ = writeln!(out, "      - to: {}", yaml_str(to));
            let _ = writeln!(out, "        via: {}", yaml_str(&gateway.to_string()));
        }
    }
    out
}

/// A YAML double-quoted scalar. Everything outside printable ASCII is
/// escaped: PyYAML (cloud-init's parser) rejects raw control characters
/// and some non-printable code points anywhere in a document.
fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

/// DOS epoch for every timestamp in the image: the same documents must
/// give the same bytes, or [`write_seed`] could never skip a write.
#[derive(Debug)]
struct FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

/// The seed as a VFAT image labelled [`VOLUME_LABEL`]: deterministic (the
/// volume serial comes from the content, timestamps are the DOS epoch).
pub fn seed_image(docs: &SeedDocs) -> Result<Vec<u8>, SeedError> {
    let payload: u64 = docs.files().iter().map(|(_, t)| t.len() as u64).sum();
    // Generous slack for FAT, root directory and per-file cluster rounding.
    let size = (payload + 256 * 1024).div_ceil(MIB) * MIB;
    let size = usize::try_from(size).map_err(|_| {
        SeedError::Image(io::Error::new(
            io::ErrorKind::InvalidInput,
            "documents too large",
        ))
    })?;
    let mut label = [b' '; 11];
    label[..VOLUME_LABEL.len()].copy_from_slice(VOLUME_LABEL.as_bytes());
    let hash = Sha256::digest(docs.content_hash().as_bytes());
    let serial = u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]]);

    let mut disk = Cursor::new(vec![0u8; size]);
    let options = fatfs::FormatVolumeOptions::new()
        .bytes_per_sector(SECTOR_SIZE)
        .volume_label(label)
        .volume_id(serial);
    fatfs::format_volume(&mut disk, options).map_err(SeedError::Image)?;
    {
        let fs = fatfs::FileSystem::new(
            &mut disk,
            fatfs::FsOptions::new().time_provider(&FIXED_TIME),
        )
        .map_err(SeedError::Image)?;
        for (name, text) in docs.files() {
            let mut file = fs.root_dir().create_file(name).map_err(SeedError::Image)?;
            file.write_all(text.as_bytes()).map_err(SeedError::Image)?;
            file.flush().map_err(SeedError::Image)?;
        }
        fs.unmount().map_err(SeedError::Image)?;
    }
    Ok(disk.into_inner())
}

/// What [`write_seed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedWrite {
    /// The file was missing or different and has been replaced.
    Written,
    /// The file already held this exact image; nothing was touched.
    Unchanged,
}

/// Writes the seed image of `docs` to `path` (normally
/// `Layout::cloud_init_seed`). The parent directory must exist.
///
/// Atomic: the image goes to a temporary file in the same directory,
/// is flushed, then renamed over `path`, so QEMU never opens half an
/// image. Idempotent: when `path` already holds the same bytes nothing
/// is written (the image is deterministic, so comparing bytes is exact).
/// The file is mode 0644: it holds only public keys and host names, and
/// QEMU may run as a user other than hostd's.
pub fn write_seed(path: &Path, docs: &SeedDocs) -> Result<SeedWrite, SeedError> {
    let image = seed_image(docs)?;
    let write_err = |source| SeedError::Write {
        path: path.to_path_buf(),
        source,
    };
    if same_content(path, &image).map_err(write_err)? {
        return Ok(SeedWrite::Unchanged);
    }
    let (Some(dir), Some(_)) = (path.parent(), path.file_name()) else {
        return Err(SeedError::BadPath(path.to_path_buf()));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cloud-init-seed.")
        .tempfile_in(dir)
        .map_err(write_err)?;
    tmp.write_all(&image).map_err(write_err)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(SeedWrite::Written)
}

/// Whether `path` is a file holding exactly `image`; a missing file is
/// simply different.
fn same_content(path: &Path, image: &[u8]) -> io::Result<bool> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() != image.len() as u64 {
        return Ok(false);
    }
    let mut current = Vec::with_capacity(image.len());
    file.read_to_end(&mut current)?;
    Ok(current == image)
}

#[cfg(test)]
mod tests;
