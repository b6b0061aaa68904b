//! `horcrux render`: every artifact hostd would create on a node (unit
//! files, QEMU command lines, the nftables ruleset, links, volumes),
//! printed without touching the system.

use std::fmt::Write as _;
use std::path::Path;

use super::{Outcome, exit, report};
use crate::backend::naming::{Layout, unit_name, unit_path};
use crate::backend::{Artifacts, render_node};
use crate::errors::chain;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Each unit file under a header line.
    Text,
    /// `{"units": {...}, "qemu": {...}, "nftables": "...", "volumes": [...], "links": [...]}`.
    Json,
}

/// Renders node `node` (default: node.toml's name) of the tree in `dir`.
pub fn run(dir: &Path, node: Option<&str>, format: Format, layout: &Layout) -> Outcome {
    let config = match horcrux_config::load(dir).map(|c| c.into_valid()) {
        Ok(Ok(config)) => config,
        Ok(Err(errors)) => {
            let mut out = Outcome::error(
                exit::INVALID,
                "horcrux render: the config tree is invalid; nothing would be created",
            );
            out.stdout = report::render(&errors);
            return out;
        }
        Err(e) => return Outcome::error(exit::INVALID, &format!("horcrux render: {e}")),
    };
    let Some(node) = node.or_else(|| config.node_name().map(|n| n.as_str())) else {
        return Outcome::error(
            exit::INVALID,
            "horcrux render: the tree has no node.toml; name the node with --node",
        );
    };
    let artifacts = match render_node(&config, node, layout) {
        Ok(a) => a,
        Err(e) => return Outcome::error(exit::INVALID, &format!("horcrux render: {}", chain(&e))),
    };
    Outcome::ok(match format {
        Format::Json => serde_json::to_string_pretty(&artifacts).unwrap_or_default() + "\n",
        Format::Text => text(node, &artifacts),
    })
}

fn text(node: &str, artifacts: &Artifacts) -> String {
    let mut out = String::new();
    let vms = artifacts.qemu.len();
    let _ = writeln!(
        out,
        "# node {node}: {vms} VM{}",
        if vms == 1 { "" } else { "s" }
    );
    for vm in artifacts.qemu.keys() {
        if let Some(unit) = artifacts.units.get(&unit_name(vm)) {
            let _ = writeln!(out, "\n==> {} <==", unit_path(vm).display());
            out.push_str(unit);
        }
    }
    let _ = writeln!(out, "\n==> links ({}) <==", artifacts.links.len());
    for link in &artifacts.links {
        let _ = writeln!(out, "{link}");
    }
    if let Some(nftables) = &artifacts.nftables {
        out.push_str("\n==> nftables (one transaction) <==\n");
        out.push_str(nftables);
    }
    out
}
