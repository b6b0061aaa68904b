//! Rules that span files: references, placement, uniqueness, and the
//! node-local checks that need node.toml.

use std::collections::{BTreeMap, BTreeSet};

use crate::decode::Spanned;
use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::model::network::NetworkKind;
use crate::model::storage::StorageKind;
use crate::model::vm::DiskSource;
use crate::model::{Config, FileKind};
use crate::source::Span;
use crate::types::ResourceName;

/// `present` holds `FileKind::Node` / `FileKind::Cluster` when node.toml /
/// cluster.toml are in the tree, even if they could not be decoded.
pub(crate) fn validate(config: &Config, present: &BTreeSet<FileKind>, diags: &mut Diagnostics) {
    let mut v = Validator {
        config,
        diags,
        node_file: present.contains(&FileKind::Node),
        // cluster.toml is there but has errors: membership is unknown, so
        // placement is not checked (its own errors say what is wrong).
        cluster_unknown: config.cluster.is_none() && present.contains(&FileKind::Cluster),
    };
    v.node_and_cluster();
    v.workloads();
    v.snapshot_and_clone_storage();
    v.storage_nodes();
    v.unique_vnis();
    v.unique_uplink_segments();
    v.unique_macs();
    v.unique_published_ports();
}

struct Validator<'a, 'd> {
    config: &'a Config,
    diags: &'d mut Diagnostics,
    node_file: bool,
    cluster_unknown: bool,
}

impl<'a> Validator<'a, '_> {
    fn at(&self, span: Span) -> String {
        match self.config.sources.get(span.file) {
            Some(src) => format!("{}:{}", src.path, src.line_col(span.start as usize)),
            None => "a default".to_string(),
        }
    }

    /// Reports every value after the first that repeats an earlier one.
    fn unique<K: Ord>(
        &mut self,
        items: impl IntoIterator<Item = (K, Span)>,
        describe: impl Fn(&K) -> String,
    ) {
        let mut first: BTreeMap<K, Span> = BTreeMap::new();
        for (key, span) in items {
            match first.get(&key) {
                Some(earlier) => {
                    let hint = format!("first used at {}", self.at(*earlier));
                    self.diags.error_with_hint(span, describe(&key), hint);
                }
                None => {
                    first.insert(key, span);
                }
            }
        }
    }

    fn members(&self) -> Option<BTreeSet<&'a ResourceName>> {
        let cluster = self.config.cluster.as_ref()?;
        Some(cluster.members.iter().map(|m| &m.name.value).collect())
    }

    fn node_and_cluster(&mut self) {
        let config = self.config;
        let cluster_file = config.cluster.is_some() || self.cluster_unknown;
        if !self.node_file && !cluster_file {
            let hint = "a node needs node.toml with at least `name = \"...\"`".to_string();
            self.diags
                .file_error("node.toml", "node.toml is missing", Some(hint));
        }
        let Some(cluster) = &config.cluster else {
            return;
        };
        self.unique(
            cluster.members.iter().map(|m| (&m.name.value, m.name.span)),
            |n| format!("member `{n}` is listed twice"),
        );
        self.unique(
            cluster
                .members
                .iter()
                .map(|m| (m.address.value, m.address.span)),
            |a| format!("address {a} is used by two members"),
        );
        if let Some(node) = &config.node
            && cluster.member(&node.name).is_none()
        {
            let names = cluster.members.iter().map(|m| m.name.as_str());
            let hint = did_you_mean(node.name.as_str(), names)
                .unwrap_or_else(|| "add a [[member]] for this node to cluster/cluster.toml".into());
            self.diags.error_with_hint(
                node.name.span,
                format!(
                    "node `{}` is not a member of cluster `{}`",
                    *node.name, *cluster.name
                ),
                hint,
            );
        }
    }

    /// Where a VM or container runs; records placement errors.
    fn placement(
        &mut self,
        node: &Option<Spanned<ResourceName>>,
        file: Span,
        what: &str,
    ) -> Option<&'a ResourceName> {
        let config = self.config;
        if self.cluster_unknown {
            // Only a VM explicitly on this node is known to run here.
            let this = config.node_name();
            return node.as_ref().and_then(|n| this.filter(|t| **t == n.value));
        }
        match (self.members(), node) {
            (Some(members), Some(node)) => {
                if members.contains(&node.value) {
                    return members.get(&node.value).copied();
                }
                let hint = did_you_mean(node.as_str(), members.iter().map(|m| m.as_str()))
                    .unwrap_or_else(|| {
                        format!("members: {}", join(members.iter().map(|m| m.as_str())))
                    });
                self.diags.error_with_hint(
                    node.span,
                    format!("node `{}` is not a cluster member", **node),
                    hint,
                );
                None
            }
            (Some(members), None) => {
                let hint = format!(
                    "add `node = \"...\"`; members: {}",
                    join(members.iter().map(|m| m.as_str()))
                );
                self.diags
                    .error_with_hint(file, format!("{what} needs `node` in a cluster"), hint);
                None
            }
            (None, Some(node)) => match config.node_name() {
                Some(this) if *this == node.value => Some(this),
                Some(this) => {
                    let hint = format!(
                        "this node is `{this}`; without cluster/cluster.toml there is no other node"
                    );
                    self.diags.error_with_hint(
                        node.span,
                        format!("node `{}` is unknown", **node),
                        hint,
                    );
                    None
                }
                None => None,
            },
            (None, None) => config.node_name(),
        }
    }

    fn reference(&mut self, kind: FileKind, name: &Spanned<ResourceName>) -> bool {
        if self.config.has_file(kind, name) {
            return true;
        }
        let dir = kind.directory().unwrap_or_default();
        let hint = did_you_mean(name.as_str(), self.config.names(kind))
            .unwrap_or_else(|| format!("create cluster/{dir}/{}.toml", **name));
        self.diags.error_with_hint(
            name.span,
            format!("{} `{}` does not exist", kind.as_str(), **name),
            hint,
        );
        false
    }

    /// Storage references, checked against the node that will use them.
    fn storage_ref(&mut self, storage: &Spanned<ResourceName>, node: Option<&ResourceName>) {
        if !self.reference(FileKind::Storage, storage) {
            return;
        }
        let (Some(def), Some(node)) = (self.config.storage.get(&storage.value), node) else {
            return;
        };
        if !def.available_on(node) {
            let hint = format!(
                "storage `{}` is on: {}",
                **storage,
                join(def.nodes.iter().map(|n| n.as_str()))
            );
            self.diags.error_with_hint(
                storage.span,
                format!("storage `{}` is not available on node `{node}`", **storage),
                hint,
            );
            return;
        }
        // Pools are node-local facts: only checkable for this node.
        let Some(this) = &self.config.node else {
            return;
        };
        if *this.name != *node || *def.kind != StorageKind::Zfs {
            return;
        }
        if let Some(dataset) = &def.pool
            && !this.zfs.pools.iter().any(|p| p.as_str() == dataset.pool())
        {
            let msg = format!(
                "pool `{}` of storage `{}` is not listed in node.toml [zfs] pools",
                dataset.pool(),
                **storage
            );
            self.diags.error_with_hint(
                dataset.span,
                msg,
                format!(
                    "add \"{}\" to `pools` under [zfs] in node.toml",
                    dataset.pool()
                ),
            );
        }
    }

    fn network_ref(
        &mut self,
        network: &Spanned<ResourceName>,
        node: Option<&ResourceName>,
        used: &mut BTreeSet<&'a ResourceName>,
    ) {
        if !self.reference(FileKind::Network, network) {
            return;
        }
        let this = self.config.node_name();
        if node.is_some()
            && node == this
            && let Some((name, _)) = self.config.networks.get_key_value(&network.value)
        {
            used.insert(name);
        }
    }

    fn workloads(&mut self) {
        let config = self.config;
        let mut networks_here = BTreeSet::new();
        for (name, vm) in &config.vms {
            let node = self.placement(&vm.node, vm.span, &format!("VM `{name}`"));
            for disk in &vm.disks {
                self.storage_ref(&disk.storage, node);
            }
            for nic in &vm.nics {
                self.network_ref(&nic.network, node, &mut networks_here);
                for group in &nic.firewall {
                    self.reference(FileKind::Firewall, group);
                }
            }
        }
        for (name, ct) in &config.containers {
            let node = self.placement(&ct.node, ct.span, &format!("container `{name}`"));
            for volume in &ct.volumes {
                self.storage_ref(&volume.storage, node);
            }
            if let Some(network) = &ct.network {
                self.network_ref(network, node, &mut networks_here);
            }
        }
        self.uplinks(networks_here);
    }

    /// Snapshots and linked clones are ZFS features: a VM that declares
    /// either must keep the disks involved on ZFS storage, and a clone
    /// must live in the same storage (the same pool) as its origin.
    fn snapshot_and_clone_storage(&mut self) {
        let config = self.config;
        let kind_of = |storage: &ResourceName| config.storage.get(storage).map(|s| *s.kind);
        for (name, vm) in &config.vms {
            let wants_snapshots = vm
                .snapshots
                .as_ref()
                .map(|s| s.every.span)
                .or_else(|| vm.named_snapshots.first().map(|s| s.name.span));
            // Disks on dir storage are left out of snapshots (scratch
            // space); a VM with none on ZFS has nothing to snapshot.
            if let Some(span) = wants_snapshots
                && !vm
                    .disks
                    .iter()
                    .any(|d| kind_of(&d.storage) != Some(StorageKind::Dir))
            {
                self.diags.error_with_hint(
                    span,
                    format!("VM `{name}` has snapshots but no disk on ZFS storage"),
                    "snapshots are ZFS snapshots: put a disk on a storage with kind = \"zfs\", or remove them",
                );
            }
            for disk in &vm.disks {
                let Some(source) = &disk.source else { continue };
                let DiskSource::Clone {
                    vm: origin,
                    disk: origin_index,
                    ..
                } = &source.value
                else {
                    continue;
                };
                if !config.has_file(FileKind::Vm, origin) {
                    self.diags.error(
                        source.span,
                        format!("clone source VM `{origin}` does not exist"),
                    );
                    continue;
                }
                // An origin file with errors has those reported already.
                let Some(origin_vm) = config.vms.get(origin) else {
                    continue;
                };
                if self.diags.has_error_in(origin_vm.span.file) {
                    continue;
                }
                let Some(origin_disk) = usize::try_from(*origin_index)
                    .ok()
                    .and_then(|i| origin_vm.disks.get(i))
                else {
                    self.diags.error(
                        source.span,
                        format!(
                            "VM `{origin}` has no disk{origin_index} (it has {} disks)",
                            origin_vm.disks.len()
                        ),
                    );
                    continue;
                };
                if kind_of(&disk.storage) == Some(StorageKind::Dir) {
                    self.diags.error_with_hint(
                        source.span,
                        format!("a linked clone needs ZFS storage, but `{}` is a dir storage", *disk.storage),
                        "put the disk on a storage with kind = \"zfs\", or start it from an image: source = \"image:<file>\"",
                    );
                } else if *origin_disk.storage != *disk.storage {
                    self.diags.error_with_hint(
                        source.span,
                        format!(
                            "a clone lives in the storage of its origin: disk{origin_index} of VM `{origin}` is on `{}`, this disk on `{}`",
                            *origin_disk.storage, *disk.storage
                        ),
                        format!("set storage = \"{}\" for this disk", *origin_disk.storage),
                    );
                }
                if origin_vm.node.as_ref().map(|n| &n.value) != vm.node.as_ref().map(|n| &n.value) {
                    self.diags.error(
                        source.span,
                        format!(
                            "a linked clone must be placed on the node of its origin VM `{origin}`"
                        ),
                    );
                }
            }
        }
    }

    /// Every network used on this node must find its uplink in node.toml.
    fn uplinks(&mut self, used_here: BTreeSet<&'a ResourceName>) {
        let Some(node) = &self.config.node else {
            return;
        };
        for name in used_here {
            let Some(network) = self.config.networks.get(name) else {
                continue;
            };
            let Some(uplink) = &network.uplink else {
                continue;
            };
            if !node.uplinks.keys().any(|k| k.value == uplink.value) {
                let msg = format!(
                    "uplink `{}` of network `{name}` is not declared on this node",
                    **uplink
                );
                let hint = format!(
                    "add `{} = \"<interface>\"` under [uplinks] in node.toml",
                    **uplink
                );
                self.diags.error_with_hint(uplink.span, msg, hint);
            }
        }
    }

    fn storage_nodes(&mut self) {
        let config = self.config;
        if self.cluster_unknown {
            return;
        }
        for def in config.storage.values() {
            for node in &def.nodes {
                let known = match self.members() {
                    Some(members) => members.contains(&node.value),
                    None => config.node_name().is_none_or(|this| *this == node.value),
                };
                if !known {
                    self.diags.error(
                        node.span,
                        format!("node `{}` is not a cluster member", **node),
                    );
                }
            }
        }
    }

    fn unique_vnis(&mut self) {
        let vnis = self
            .config
            .networks
            .values()
            .filter_map(|n| n.vni.as_ref())
            .map(|v| (v.value, v.span));
        self.unique(vnis, |vni| format!("VNI {vni} is used by two networks"));
    }

    /// A NIC can be the port of one bridge, and a VLAN id on it the port
    /// of one other: two networks on the same segment would fight over it.
    fn unique_uplink_segments(&mut self) {
        let segments = self.config.networks.values().filter_map(|n| {
            let uplink = n.uplink.as_ref()?;
            if *n.kind != NetworkKind::Bridge {
                return None;
            }
            let vlan = n.vlan.as_ref().map(|v| v.get());
            let span = n.vlan.as_ref().map_or(uplink.span, |v| v.span);
            Some(((uplink.value.clone(), vlan), span))
        });
        self.unique(segments, |(uplink, vlan)| match vlan {
            Some(vlan) => format!("VLAN {vlan} on uplink `{uplink}` is used by two networks"),
            None => format!("uplink `{uplink}` is bridged untagged by two networks"),
        });
    }

    fn unique_macs(&mut self) {
        let config = self.config;
        let macs = config.vms.iter().flat_map(|(name, vm)| {
            vm.nics.iter().enumerate().map(move |(index, nic)| {
                let span = nic.mac.as_ref().map_or(nic.span, |m| m.span);
                (config.nic_mac(name, index, nic), span)
            })
        });
        self.unique(macs, |mac| format!("MAC address {mac} is used by two NICs"));
    }

    fn unique_published_ports(&mut self) {
        let config = self.config;
        // Unclustered, a container without `node` runs on this node; in a
        // cluster its placement is unknown (and already an error).
        let unclustered = config.cluster.is_none() && !self.cluster_unknown;
        let ports = config.containers.values().flat_map(|ct| {
            let node = match &ct.node {
                Some(n) => Some(&n.value),
                None if unclustered => config.node_name(),
                None => None,
            };
            node.into_iter().flat_map(move |node| {
                ct.ports
                    .iter()
                    .map(move |p| ((node, p.host, p.proto), p.span))
            })
        });
        self.unique(ports, |(_, port, proto)| {
            format!("host port {port}/{proto} is published twice on the same node")
        });
    }
}

fn join<'s>(items: impl Iterator<Item = &'s str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// Changes from the running generation that validation of one tree alone
/// cannot see. A disk never shrinks: the data past the new end would be
/// gone, so a smaller `size` than the previous generation's is an error
/// (hostd also refuses it against the real volume, whatever the config).
pub fn against_previous(previous: &Config, next: &Config) -> Vec<crate::Diagnostic> {
    let mut diags = Diagnostics::default();
    for (name, vm) in &next.vms {
        let Some(before) = previous.vms.get(name) else {
            continue;
        };
        for (index, (disk, old)) in vm.disks.iter().zip(&before.disks).enumerate() {
            if *disk.storage == *old.storage && disk.size.bytes() < old.size.bytes() {
                diags.error_with_hint(
                    disk.size.span,
                    format!(
                        "disk {index} of VM `{name}` would shrink from {} to {}; disks only grow",
                        *old.size, *disk.size
                    ),
                    format!("keep size = \"{}\" or larger", *old.size),
                );
            }
        }
    }
    diags.resolve(&next.sources)
}
