//! `horcrux vm-shutdown --qmp SOCKET --timeout DURATION` (hidden): the
//! `ExecStop=` of each VM's systemd unit, so stopping the unit, and with it
//! a host shutdown, powers the guest down instead of killing QEMU. Exit 0
//! when QEMU is gone (powered down, quit after the timeout, or not running
//! at all), 1 when it could not be stopped through QMP; systemd then falls
//! back to its kill signals.

use std::path::Path;
use std::time::Duration;

use super::{Outcome, exit};
use crate::backend::qemu::qmp::graceful_stop;

pub fn run(qmp: &Path, timeout: Duration) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Outcome::error(
                exit::INVALID,
                &format!("horcrux vm-shutdown: cannot start: {e}"),
            );
        }
    };
    match runtime.block_on(graceful_stop(qmp, timeout)) {
        Ok(outcome) => Outcome::ok(format!("{}: {outcome}\n", qmp.display())),
        Err(e) => Outcome::error(exit::INVALID, &format!("horcrux vm-shutdown: {e}")),
    }
}
