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

/// Pings the watchdog at half its interval. The ping runs on the same
/// runtime as the main loop, so a wedged runtime stops the pings and
/// systemd restarts hostd (VMs are separate units and keep running).
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
