//! QEMU: the command line of each VM. QMP control and cloud-init seeds
//! come later.

pub mod argv;

pub use argv::{ArgvError, OVMF_CODE, OVMF_VARS_TEMPLATE, QEMU_BINARY, vm_argv};

#[cfg(test)]
mod tests;
