//! End-to-end rig for the Horcrux appliance: builds the disk image (cached
//! by image/build.sh), boots nodes from it under QEMU (TCG unless told
//! otherwise), and talks to them over hostfwd ports (SSH, status HTTP) and
//! the serial console log.
//!
//! The pieces a test uses:
//! * [`image::ensure`] builds or reuses the image and returns its path;
//! * [`node::Node::boot`] starts a node on a copy-on-write overlay of it;
//! * [`node::Node::push_git`] / [`node::Node::push_rsync`] push a tree;
//! * [`node::Node::apply_tree`] pushes and waits until status.json runs it,
//!   [`node::Node::wait_status`] waits for any condition on status.json;
//! * [`serve::FileServer`] serves a directory over HTTP to the nodes
//!   (PXE boot, update bundles);
//! * [`runner::Suite`] runs named cases in order and prints a summary.

pub mod http;
pub mod image;
pub mod node;
pub mod runner;
pub mod serve;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// The workspace root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Where the rig keeps its key, node disks and logs (`target/e2e`).
pub fn work_dir() -> PathBuf {
    std::env::var_os("HORCRUX_E2E_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/e2e"))
}

/// Runs a command, failing with its output when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{text}", out.status);
    }
    Ok(text)
}
