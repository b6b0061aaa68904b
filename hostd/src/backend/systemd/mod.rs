//! systemd: the unit text of each VM. Writing units and talking to the
//! manager over D-Bus come later.

pub mod unit;

pub use unit::{escape_arg, exec_start, vm_unit};
