//! What the config wants of this node's storage: the pools to import, one
//! volume per disk of every VM placed here, and the snapshot schedules.
//! Pure: no I/O, so `horcrux plan` and the daemon agree.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use horcrux_config::Config;
use horcrux_config::model::Storage;
use horcrux_config::model::storage::StorageKind;
use horcrux_config::model::vm::DiskSource;
use horcrux_config::types::ByteSize;
use serde::{Deserialize, Serialize};

use crate::backend::artifacts::placement;
use crate::backend::naming::{self, Layout};

/// Where a volume lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Place {
    /// A zvol: `dataset` is `<parent>/vm-<vm>-disk<N>`, in `pool`.
    Zfs { dataset: String, pool: String },
    /// A qcow2 file.
    Dir { file: PathBuf },
}

/// What a new volume starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Source {
    /// An image file on the node, converted into the volume.
    Image { file: PathBuf },
    /// A ZFS snapshot (`dataset@name`) the zvol is a linked clone of;
    /// `origin` is the volume resource it belongs to.
    Clone { snapshot: String, origin: String },
}

/// One disk's volume, as the config wants it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// The resource name: `<storage>/vm-<vm>-disk<N>`.
    pub id: String,
    pub vm: String,
    pub disk: usize,
    pub place: Place,
    pub size: u64,
    /// Only used when the volume is created.
    pub source: Option<Source>,
    /// Declared named snapshots (zfs only), sorted.
    pub named_snapshots: Vec<String>,
}

impl VolumeSpec {
    /// The `snapshots` field: declared named snapshots, or `none`.
    pub fn snapshots_field(names: &[String]) -> String {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }
}

/// A VM's snapshot schedule over its ZFS disks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub vm: String,
    pub every: Duration,
    pub keep: usize,
    /// The zvols snapshotted together, in disk order.
    pub datasets: Vec<String>,
}

/// The resource name of disk `index` of `vm` on `storage`.
pub fn volume_id(storage: &str, vm: &str, index: usize) -> String {
    format!("{storage}/{}", naming::volume_name(vm, index))
}

/// Pools listed in node.toml: hostd imports them, never creates them.
pub fn pools(config: &Config) -> Vec<String> {
    config.node.as_ref().map_or_else(Vec::new, |node| {
        node.zfs.pools.iter().map(|p| p.to_string()).collect()
    })
}

/// Directories of the dir storages this node has, by storage name: where
/// observing looks for qcow2 files.
pub fn dir_storages(config: &Config) -> BTreeMap<String, PathBuf> {
    let Some(this) = config.node_name() else {
        return BTreeMap::new();
    };
    config
        .storage
        .iter()
        .filter(|(_, s)| *s.kind == StorageKind::Dir && s.available_on(this))
        .filter_map(|(name, s)| Some((name.to_string(), s.path.as_ref()?.as_path().to_path_buf())))
        .collect()
}

fn place_of(storage_name: &str, storage: &Storage, vm: &str, index: usize) -> Option<Place> {
    let path = naming::disk_path(storage_name, storage, vm, index).ok()?;
    Some(match *storage.kind {
        StorageKind::Zfs => {
            let parent = storage.pool.as_ref()?;
            Place::Zfs {
                dataset: format!("{}/{}", parent.as_str(), naming::volume_name(vm, index)),
                pool: parent.pool().to_string(),
            }
        }
        StorageKind::Dir => Place::Dir { file: path },
    })
}

/// The volume of every disk of every VM placed on `node`.
pub fn volumes(config: &Config, node: &str, layout: &Layout) -> Vec<VolumeSpec> {
    let mut out = Vec::new();
    for (name, vm) in &config.vms {
        if placement(config, vm).is_none_or(|n| n.as_str() != node) {
            continue;
        }
        let mut named: Vec<String> = vm
            .named_snapshots
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        named.sort();
        for (index, disk) in vm.disks.iter().enumerate() {
            let Some(storage) = config.storage.get(&*disk.storage) else {
                continue;
            };
            let Some(place) = place_of(disk.storage.as_str(), storage, name.as_str(), index) else {
                continue;
            };
            let source = disk.source.as_ref().and_then(|s| match &s.value {
                DiskSource::Image(file) => Some(Source::Image {
                    file: layout.images_dir().join(file),
                }),
                DiskSource::Clone { vm, disk, snapshot } => {
                    let origin = vm.as_str();
                    let index = usize::try_from(*disk).ok()?;
                    let origin_disk = config.vms.get(vm)?.disks.get(index)?;
                    let origin_storage = config.storage.get(&*origin_disk.storage)?;
                    match place_of(origin_disk.storage.as_str(), origin_storage, origin, index)? {
                        Place::Zfs { dataset, .. } => Some(Source::Clone {
                            snapshot: format!("{dataset}@{snapshot}"),
                            origin: volume_id(origin_disk.storage.as_str(), origin, index),
                        }),
                        Place::Dir { .. } => None,
                    }
                }
            });
            let named_snapshots = match place {
                Place::Zfs { .. } => named.clone(),
                Place::Dir { .. } => Vec::new(),
            };
            out.push(VolumeSpec {
                id: volume_id(disk.storage.as_str(), name.as_str(), index),
                vm: name.to_string(),
                disk: index,
                place,
                size: disk.size.bytes(),
                source,
                named_snapshots,
            });
        }
    }
    out
}

/// The snapshot schedule of every VM placed here that has one and has a
/// disk on ZFS; disks on dir storage are not snapshotted.
pub fn schedules(config: &Config, layout: &Layout) -> Vec<Schedule> {
    let Some(this) = config.node_name() else {
        return Vec::new();
    };
    let volumes = volumes(config, this.as_str(), layout);
    let mut out = Vec::new();
    for (name, vm) in &config.vms {
        let Some(schedule) = &vm.snapshots else {
            continue;
        };
        let datasets: Vec<String> = volumes
            .iter()
            .filter(|v| v.vm == name.as_str())
            .filter_map(|v| match &v.place {
                Place::Zfs { dataset, .. } => Some(dataset.clone()),
                Place::Dir { .. } => None,
            })
            .collect();
        if datasets.is_empty() {
            continue;
        }
        out.push(Schedule {
            vm: name.to_string(),
            every: schedule.every.get(),
            keep: usize::try_from(schedule.keep.get()).unwrap_or(usize::MAX),
            datasets,
        });
    }
    out
}

/// `size` as the config and the plan show it.
pub fn size_field(bytes: u64) -> String {
    ByteSize::from_bytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::config as config_of;

    const TREE: &[(&str, &str)] = &[
        ("node.toml", "name = \"n1\"\n[zfs]\npools = [\"tank\"]\n"),
        (
            "cluster/storage/fast.toml",
            "kind = \"zfs\"\npool = \"tank/vms\"\n",
        ),
        (
            "cluster/storage/files.toml",
            "kind = \"dir\"\npath = \"/srv/disks\"\n",
        ),
        (
            "cluster/vms/base.toml",
            "state = \"stopped\"\n[[disk]]\nstorage = \"fast\"\nsize = \"1GiB\"\n\
             [[snapshot]]\nname = \"gold\"\n[[snapshot]]\nname = \"a\"\n",
        ),
        (
            "cluster/vms/web.toml",
            "[[disk]]\nstorage = \"fast\"\nsize = \"2GiB\"\nsource = \"clone:base/disk0@gold\"\n\
             [[disk]]\nstorage = \"files\"\nsize = \"512MiB\"\nsource = \"image:deb.qcow2\"\n\
             [snapshots]\nevery = \"15m\"\nkeep = 4\n",
        ),
    ];

    #[test]
    fn every_disk_becomes_a_volume_with_its_place_and_source() {
        let config = config_of(TREE);
        let layout = Layout::new("/run/horcrux", "/var/lib/horcrux");
        let volumes = volumes(&config, "n1", &layout);
        assert_eq!(volumes.len(), 3);
        let base = &volumes[0];
        assert_eq!(base.id, "fast/vm-base-disk0");
        assert_eq!(
            base.place,
            Place::Zfs {
                dataset: "tank/vms/vm-base-disk0".into(),
                pool: "tank".into()
            }
        );
        assert_eq!(base.named_snapshots, ["a", "gold"]);
        let web0 = &volumes[1];
        assert_eq!(
            web0.source,
            Some(Source::Clone {
                snapshot: "tank/vms/vm-base-disk0@gold".into(),
                origin: "fast/vm-base-disk0".into(),
            })
        );
        assert_eq!(web0.size, 2 << 30);
        let web1 = &volumes[2];
        assert_eq!(web1.id, "files/vm-web-disk1");
        assert_eq!(
            web1.place,
            Place::Dir {
                file: "/srv/disks/vm-web-disk1.qcow2".into()
            }
        );
        assert_eq!(
            web1.source,
            Some(Source::Image {
                file: "/var/lib/horcrux/images/deb.qcow2".into()
            })
        );
        assert!(web1.named_snapshots.is_empty());
        assert_eq!(pools(&config), ["tank"]);
        assert_eq!(
            dir_storages(&config).get("files").map(PathBuf::as_path),
            Some(std::path::Path::new("/srv/disks"))
        );
    }

    #[test]
    fn schedules_cover_only_zfs_disks() {
        let config = config_of(TREE);
        let layout = Layout::new("/run/horcrux", "/var/lib/horcrux");
        let schedules = schedules(&config, &layout);
        assert_eq!(
            schedules,
            [Schedule {
                vm: "web".into(),
                every: Duration::from_secs(900),
                keep: 4,
                datasets: vec!["tank/vms/vm-web-disk0".into()],
            }]
        );
    }

    #[test]
    fn fields_read_like_the_config() {
        assert_eq!(size_field(20 << 30), "20GiB");
        assert_eq!(VolumeSpec::snapshots_field(&[]), "none");
        assert_eq!(
            VolumeSpec::snapshots_field(&["a".into(), "b".into()]),
            "a, b"
        );
    }
}
