//! `cluster/storage/<name>.toml`: where VM disks live.

use schemars::JsonSchema;
use serde::Serialize;

use crate::decode::{Spanned, Table};
use crate::types::{AbsPath, ResourceName, ZfsDataset};
use crate::{decode_table, keyword_enum};

keyword_enum! {
    /// `zfs`: one zvol per disk under a parent dataset. `dir`: qcow2 files in a directory.
    pub enum StorageKind { Zfs = "zfs", Dir = "dir" }
}

/// A storage definition. The file name is the storage name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// `zfs`: one zvol per disk under `pool`. `dir`: qcow2 files under `path`.
    pub kind: Spanned<StorageKind>,
    /// zfs only: the parent dataset of the volumes, e.g. "tank/vms". Its pool
    /// must be listed in node.toml `[zfs] pools` on the nodes that use it.
    pub pool: Option<Spanned<ZfsDataset>>,
    /// dir only: an absolute directory, e.g. "/var/lib/horcrux/disks".
    pub path: Option<Spanned<AbsPath>>,
    /// Nodes that have this storage. Empty: every member.
    #[serde(default)]
    pub nodes: Vec<Spanned<ResourceName>>,
}

impl Storage {
    /// Whether a node may place volumes on this storage.
    pub fn available_on(&self, node: &ResourceName) -> bool {
        self.nodes.is_empty() || self.nodes.iter().any(|n| **n == *node)
    }
}

fn read_storage(t: &mut Table) -> Option<Storage> {
    let kind = t.required::<StorageKind>("kind");
    let (pool, path) = match kind.as_deref() {
        Some(StorageKind::Zfs) => {
            t.forbid("path", "`path` is only allowed with kind = \"dir\"");
            (t.required("pool"), None)
        }
        Some(StorageKind::Dir) => {
            t.forbid("pool", "`pool` is only allowed with kind = \"zfs\"");
            (None, t.required("path"))
        }
        None => (t.optional("pool"), t.optional("path")),
    };
    let nodes = t.list("nodes");
    Some(Storage {
        kind: kind?,
        pool,
        path,
        nodes,
    })
}
decode_table!(Storage, read_storage);
