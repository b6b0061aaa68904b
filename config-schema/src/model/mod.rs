//! The typed configuration tree, one module per file kind.

pub mod cluster;
pub mod container;
pub mod firewall;
pub mod network;
pub mod node;
pub mod storage;
pub mod vm;

use std::collections::BTreeMap;

use crate::decode::Spanned;
use crate::keyword_enum;
use crate::source::{FileId, Sources};
use crate::types::ResourceName;

pub use cluster::Cluster;
pub use container::Container;
pub use firewall::FirewallGroup;
pub use network::Network;
pub use node::Node;
pub use storage::Storage;
pub use vm::Vm;

keyword_enum! {
    /// Desired run state of a VM or container.
    pub enum State { Running = "running", Stopped = "stopped" }
}

keyword_enum! {
    /// The kinds of file in a config tree.
    pub enum FileKind {
        Node = "node",
        Cluster = "cluster",
        Network = "network",
        Storage = "storage",
        Firewall = "firewall",
        Vm = "vm",
        Container = "container",
    }
}

impl FileKind {
    /// The directory under `cluster/` holding one file per resource.
    pub fn directory(self) -> Option<&'static str> {
        match self {
            FileKind::Node | FileKind::Cluster => None,
            FileKind::Network => Some("networks"),
            FileKind::Storage => Some("storage"),
            FileKind::Firewall => Some("firewall"),
            FileKind::Vm => Some("vms"),
            FileKind::Container => Some("containers"),
        }
    }

    pub const RESOURCE_KINDS: [FileKind; 5] = [
        FileKind::Network,
        FileKind::Storage,
        FileKind::Firewall,
        FileKind::Vm,
        FileKind::Container,
    ];
}

/// Resources of one kind by name, each spanning its whole file.
pub type Resources<T> = BTreeMap<ResourceName, Spanned<T>>;

/// A loaded configuration tree. Only a tree without errors is ever used to
/// converge a node; an invalid one is still returned (with what could be
/// decoded) so that every error can be reported.
#[derive(Debug, Default)]
pub struct Config {
    pub sources: Sources,
    pub node: Option<Spanned<Node>>,
    pub cluster: Option<Spanned<Cluster>>,
    pub networks: Resources<Network>,
    pub storage: Resources<Storage>,
    pub firewall: Resources<FirewallGroup>,
    pub vms: Resources<Vm>,
    pub containers: Resources<Container>,
    /// Every resource file present, decodable or not: references to a file
    /// that exists but has errors are not reported a second time. A file
    /// that could not be read at all has no source: its id is
    /// [`FileId::BUILTIN`].
    pub files: BTreeMap<(FileKind, ResourceName), FileId>,
}

impl Config {
    /// Whether a resource file of this kind and name exists.
    pub fn has_file(&self, kind: FileKind, name: &ResourceName) -> bool {
        self.files.contains_key(&(kind, name.clone()))
    }

    /// Names of the resource files of one kind, for "did you mean" hints.
    pub fn names(&self, kind: FileKind) -> impl Iterator<Item = &str> {
        self.files
            .keys()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, n)| n.as_str())
    }

    /// This node's name, when node.toml was loaded.
    pub fn node_name(&self) -> Option<&ResourceName> {
        self.node.as_ref().map(|n| &n.name.value)
    }
}

impl Config {
    /// What derived MAC addresses are stable within: the cluster, or this
    /// node when unclustered.
    fn mac_scope(&self) -> &str {
        match (&self.cluster, &self.node) {
            (Some(c), _) => c.name.as_str(),
            (None, Some(n)) => n.name.as_str(),
            (None, None) => "",
        }
    }

    /// The MAC address of a VM's NIC: the declared one, else one derived
    /// from the cluster (or node), VM name and NIC index.
    pub fn nic_mac(&self, vm: &ResourceName, index: usize, nic: &vm::Nic) -> crate::types::MacAddr {
        match &nic.mac {
            Some(mac) => mac.value,
            None => vm::derived_mac(self.mac_scope(), vm.as_str(), index),
        }
    }
}
