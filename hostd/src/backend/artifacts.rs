//! Everything hostd would create on one node, as data: what
//! `horcrux render` prints and what the executor will write.

use std::collections::BTreeMap;

use horcrux_config::Config;
use horcrux_config::model::Vm;
use horcrux_config::types::ResourceName;
use serde::Serialize;

use super::firewall::render_ruleset;
use super::naming::{self, Layout};
use super::net::render_links;
use super::qemu::ArgvError;
use super::storage::render_volumes;
use super::vm::render_vm;

/// The artifacts of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Artifacts {
    /// Unit file name -> text, for /run/systemd/system.
    pub units: BTreeMap<String, String>,
    /// VM name -> QEMU argv (program first, unquoted).
    pub qemu: BTreeMap<String, Vec<String>>,
    /// The `bridge horcrux` and `inet horcrux` tables, exactly as applied.
    pub nftables: Option<String>,
    /// One volume per VM disk: `{"vm", "disk", "volume", "dataset" or
    /// "file", "size_bytes", "source"?, "snapshots"?}`.
    pub volumes: Vec<serde_json::Value>,
    /// Bridges, their VLAN/VXLAN/uplink ports, and VM taps.
    pub links: Vec<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("node `{node}` is not a member; members: {members}")]
    UnknownNode { node: String, members: String },
    #[error("VMs `{first}` and `{second}` would share tap name {tap}; rename one of them")]
    TapClash {
        first: String,
        second: String,
        tap: String,
    },
    #[error(transparent)]
    Argv(#[from] ArgvError),
}

/// The nodes of the tree: the cluster members, or this node alone.
pub fn members(config: &Config) -> Vec<&ResourceName> {
    match (&config.cluster, config.node_name()) {
        (Some(cluster), _) => cluster.members.iter().map(|m| &m.name.value).collect(),
        (None, Some(this)) => vec![this],
        (None, None) => Vec::new(),
    }
}

/// The node a VM runs on: its `node`, or this node when unclustered.
pub fn placement<'a>(config: &'a Config, vm: &'a Vm) -> Option<&'a ResourceName> {
    match &vm.node {
        Some(node) => Some(&node.value),
        None if config.cluster.is_none() => config.node_name(),
        None => None,
    }
}

/// The artifacts of every VM placed on `node`, from a valid config.
pub fn render_node(config: &Config, node: &str, layout: &Layout) -> Result<Artifacts, RenderError> {
    let all = members(config);
    if !all.iter().any(|m| m.as_str() == node) {
        let list: Vec<&str> = all.iter().map(|m| m.as_str()).collect();
        return Err(RenderError::UnknownNode {
            node: node.to_string(),
            members: if list.is_empty() {
                "none (no cluster.toml and no node.toml)".to_string()
            } else {
                list.join(", ")
            },
        });
    }
    let mut out = Artifacts::default();
    let mut taps: BTreeMap<String, &ResourceName> = BTreeMap::new();
    for (name, vm) in &config.vms {
        if placement(config, vm).is_none_or(|n| n.as_str() != node) {
            continue;
        }
        for index in 0..vm.nics.len() {
            let tap = naming::tap_name(name.as_str(), index).map_err(ArgvError::from)?;
            if let Some(first) = taps.insert(tap.clone(), name)
                && first != name
            {
                return Err(RenderError::TapClash {
                    first: first.to_string(),
                    second: name.to_string(),
                    tap,
                });
            }
        }
        let rendered = render_vm(config, name, vm, layout)?;
        out.units
            .insert(naming::unit_name(name.as_str()), rendered.unit);
        out.qemu.insert(name.to_string(), rendered.argv);
    }
    out.nftables = Some(render_ruleset(config, node));
    out.links = render_links(config, node);
    out.volumes = render_volumes(config, node, layout);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::config;

    const CLUSTER: &str = "name = \"lab\"\n[[member]]\nname = \"node1\"\naddress = \"10.0.0.1\"\n\
        [[member]]\nname = \"node2\"\naddress = \"10.0.0.2\"\n[trust]\nrequire_signatures = false\n";

    #[test]
    fn only_vms_placed_on_the_node_are_rendered() {
        let config = config(&[
            ("node.toml", "name = \"node1\"\n"),
            ("cluster/cluster.toml", CLUSTER),
            ("cluster/vms/a.toml", "node = \"node1\"\n"),
            ("cluster/vms/b.toml", "node = \"node2\"\n"),
        ]);
        let one = render_node(&config, "node1", &Layout::default()).unwrap();
        assert_eq!(one.qemu.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            one.units.keys().collect::<Vec<_>>(),
            ["horcrux-vm-a.service"]
        );
        let two = render_node(&config, "node2", &Layout::default()).unwrap();
        assert_eq!(two.qemu.keys().collect::<Vec<_>>(), ["b"]);
        // No NICs: no links; the ruleset has the node's input policy only.
        assert!(two.volumes.is_empty() && two.links.is_empty());
        let nft = two.nftables.unwrap();
        assert!(nft.contains("table inet horcrux") && !nft.contains("chain from-"));
    }

    #[test]
    fn unclustered_vms_without_node_run_on_this_node() {
        let config = config(&[
            ("node.toml", "name = \"solo\"\n"),
            ("cluster/vms/a.toml", ""),
        ]);
        let out = render_node(&config, "solo", &Layout::default()).unwrap();
        assert_eq!(out.qemu.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn unknown_node_names_the_members() {
        let config = config(&[
            ("node.toml", "name = \"node1\"\n"),
            ("cluster/cluster.toml", CLUSTER),
        ]);
        let err = render_node(&config, "node9", &Layout::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node `node9` is not a member; members: node1, node2"
        );
    }
}
