//! Data of VMs that no longer run here: the disks and UEFI variables a
//! removed (or moved) VM left behind. Removing a VM file never deletes
//! them; they are listed on the status page until `horcrux purge vm`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use horcrux_config::Config;
use horcrux_config::model::storage::StorageKind;
use serde::Serialize;

use crate::backend::artifacts::placement;
use crate::backend::naming::Layout;

/// What one VM left on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrphanedVm {
    pub name: String,
    /// Disk files or zvol devices, then the state dir; sorted.
    pub paths: Vec<PathBuf>,
}

/// The VM a volume file or zvol belongs to: `vm-<name>-disk<N>[.qcow2]`.
pub fn vm_of_volume(file: &str) -> Option<&str> {
    let stem = file.strip_suffix(".qcow2").unwrap_or(file);
    let (name, index) = stem.strip_prefix("vm-")?.rsplit_once("-disk")?;
    let numeric = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
    (numeric && !name.is_empty()).then_some(name)
}

/// The directories where this node keeps VM volumes: each dir storage's
/// path and each ZFS storage's zvol directory.
fn volume_dirs(config: &Config) -> Vec<PathBuf> {
    config
        .storage
        .values()
        .filter_map(|storage| match *storage.kind {
            StorageKind::Dir => storage.path.as_ref().map(|p| p.as_path().to_path_buf()),
            StorageKind::Zfs => storage
                .pool
                .as_ref()
                .map(|pool| Path::new("/dev/zvol").join(pool.as_str())),
        })
        .collect()
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
        .collect()
}

/// Every VM with data on this node but no VM file placing it here.
pub fn find(config: &Config, layout: &Layout) -> Vec<OrphanedVm> {
    let here: BTreeSet<&str> = match config.node_name() {
        Some(this) => config
            .vms
            .iter()
            .filter(|(_, vm)| placement(config, vm).is_some_and(|n| n == this))
            .map(|(name, _)| name.as_str())
            .collect(),
        None => BTreeSet::new(),
    };
    let mut found: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for dir in volume_dirs(config) {
        for (file, path) in entries(&dir) {
            if let Some(vm) = vm_of_volume(&file)
                && !here.contains(vm)
            {
                found.entry(vm.to_string()).or_default().push(path);
            }
        }
    }
    for (name, path) in entries(&layout.state_dir.join("vm")) {
        if !here.contains(name.as_str()) && path.is_dir() {
            found.entry(name).or_default().push(path);
        }
    }
    found
        .into_iter()
        .map(|(name, mut paths)| {
            paths.sort();
            OrphanedVm { name, paths }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::config;

    #[test]
    fn volume_names_map_to_their_vm() {
        assert_eq!(vm_of_volume("vm-web-disk0.qcow2"), Some("web"));
        assert_eq!(vm_of_volume("vm-web-disk12"), Some("web"));
        assert_eq!(vm_of_volume("vm-a-disk-b-disk3"), Some("a-disk-b"));
        for other in [
            "web.qcow2",
            "vm--disk0",
            "vm-web-disk",
            "vm-web-diskx",
            "base.img",
        ] {
            assert_eq!(vm_of_volume(other), None, "{other}");
        }
    }

    #[test]
    fn data_of_vms_not_placed_here_is_orphaned() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        for file in [
            "vm-kept-disk0.qcow2",
            "vm-gone-disk0.qcow2",
            "vm-gone-disk1.qcow2",
            "iso.img",
        ] {
            std::fs::write(images.join(file), b"").unwrap();
        }
        let layout = Layout::new(dir.path().join("run"), dir.path().join("state"));
        for vm in ["kept", "gone", "old"] {
            std::fs::create_dir_all(layout.vm_state_dir(vm)).unwrap();
        }
        let storage = format!("kind = \"dir\"\npath = \"{}\"\n", images.display());
        let config = config(&[
            ("node.toml", "name = \"n1\"\n"),
            ("cluster/storage/scratch.toml", &storage),
            (
                "cluster/vms/kept.toml",
                "[[disk]]\nstorage = \"scratch\"\nsize = \"1GiB\"\n",
            ),
        ]);
        let found = find(&config, &layout);
        assert_eq!(
            found,
            [
                OrphanedVm {
                    name: "gone".into(),
                    paths: vec![
                        images.join("vm-gone-disk0.qcow2"),
                        images.join("vm-gone-disk1.qcow2"),
                        layout.vm_state_dir("gone"),
                    ],
                },
                OrphanedVm {
                    name: "old".into(),
                    paths: vec![layout.vm_state_dir("old")],
                },
            ]
        );
    }
}
