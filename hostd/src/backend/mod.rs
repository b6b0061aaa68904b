//! Drivers for the systems hostd manages. Today only the pure part exists:
//! what hostd would create for a node (QEMU argv, systemd units), rendered
//! from a valid config without touching the system.

pub mod artifacts;
pub mod cloud_init;
pub mod command;
pub mod connection;
pub mod firewall;
pub mod management;
pub mod naming;
pub mod net;
pub mod qemu;
pub mod storage;
pub mod systemd;
pub mod vm;

#[cfg(test)]
pub(crate) mod test_support;

pub use artifacts::{Artifacts, RenderError, render_node};
pub use naming::Layout;

/// Lower-case hex of `bytes`: digests in names, plans and environment
/// values.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}
