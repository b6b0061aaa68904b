//! Drivers for the systems hostd manages. Today only the pure part exists:
//! what hostd would create for a node (QEMU argv, systemd units), rendered
//! from a valid config without touching the system.

pub mod artifacts;
pub mod cloud_init;
pub mod naming;
pub mod qemu;
pub mod systemd;
pub mod vm;

#[cfg(test)]
pub(crate) mod test_support;

pub use artifacts::{Artifacts, RenderError, render_node};
pub use naming::Layout;
