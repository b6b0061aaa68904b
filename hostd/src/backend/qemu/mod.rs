//! QEMU: the command line of each VM (`argv`) and QMP control of a
//! running one (`qmp`: status, pause/resume, graceful stop).

pub mod argv;
pub mod qmp;

pub use argv::{ArgvError, OVMF_CODE, OVMF_VARS_TEMPLATE, QEMU_BINARY, vm_argv};

#[cfg(test)]
mod tests;
