//! systemd: the unit text of each VM, and the manager's D-Bus API that
//! loads, starts and stops those units.

pub mod manager;
pub mod unit;

pub use manager::{Systemd, SystemdError, UnitState};
pub use unit::{escape_arg, exec_start, vm_unit};
