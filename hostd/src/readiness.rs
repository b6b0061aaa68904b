//! systemd integration: READY=1 after the first full observe + plan,
//! STATUS= with a one-line summary, WATCHDOG=1 pings when WatchdogSec is
//! set. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready(summary: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(summary)]);
}

pub fn status(summary: &str) {
    send(&[NotifyState::Status(summary)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// How often to ping the watchdog (half of WatchdogSec), if it is on.
/// The main loop pings, so a wedged loop stops the pings and systemd
/// restarts hostd (VMs are separate units and keep running).
pub fn watchdog_interval() -> Option<std::time::Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
