//! QEMU: the command line of each VM (`argv`), QMP control of a running
//! one (`qmp`: status, pause/resume, graceful stop) and its guest agent
//! (`qga`: filesystem freeze around snapshots).

pub mod argv;
pub mod qga;
pub mod qmp;
mod wire;

pub use argv::{ArgvError, OVMF_CODE, OVMF_VARS_TEMPLATE, QEMU_BINARY, vm_argv};

#[cfg(test)]
mod tests;
