//! `horcrux update`, `horcrux update-status` and `horcrux boot-health`:
//! A/B image updates (see [`crate::update`]). Progress goes to stderr as
//! it happens; the result to stdout.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Outcome, exit};
use crate::errors::chain;
use crate::update::fetch::{self, Source};
use crate::update::health::{
    self, Blessed, HOSTD_UNIT, Policy, RealClock, Systemctl, Unhealthy, Waited,
};
use crate::update::install::{self, Installed, Options, Summary};
use crate::update::{Paths, efivar, status};

/// What `horcrux update` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// A file path or an http:// URL.
    pub source: &'a str,
    pub options: Options,
    /// Leave out the "reboot to ..." line.
    pub no_reboot_hint: bool,
    pub paths: &'a Paths,
}

/// Says a progress line on stderr, now.
fn progress(command: &'static str) -> impl FnMut(&str) {
    move |line| {
        let _ = writeln!(std::io::stderr(), "horcrux {command}: {line}");
    }
}

/// Runs `horcrux update`.
pub fn run(request: &Request) -> Outcome {
    let fail = |e: &dyn std::error::Error| {
        Outcome::error(exit::INVALID, &format!("horcrux update: {}", chain(e)))
    };
    let mut say = progress("update");
    let started = Instant::now();
    let source = match fetch::parse_source(request.source) {
        Ok(source) => source,
        Err(e) => return fail(&e),
    };
    // Dropping `staged` removes the download, whatever happens.
    let (path, _staged, download) = match source {
        Source::File(path) => (path, None, None),
        Source::Http(uri) => match fetch::download(&uri, &request.paths.staging_dir, &mut say) {
            Ok(staged) => (staged.path.clone(), Some(staged), Some(started.elapsed())),
            Err(e) => return fail(&e),
        },
    };
    match install::install(&path, request.paths, &request.options, &mut say) {
        Ok(Installed::AlreadyRunning { image_id }) => {
            Outcome::ok(format!("already running {image_id}\n"))
        }
        Ok(Installed::Written(summary)) => {
            Outcome::ok(render_summary(&summary, download, request.no_reboot_hint))
        }
        Err(e) => fail(&e),
    }
}

fn render_summary(summary: &Summary, download: Option<Duration>, no_reboot_hint: bool) -> String {
    let slot = summary.slot;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "slot {slot} written: Horcrux {} ({})",
        summary.version, summary.image_id
    );
    let _ = writeln!(
        out,
        "  root.img: {} bytes to {}",
        summary.root_bytes,
        summary.device.display()
    );
    let _ = writeln!(
        out,
        "  boot entry: {} (version {})",
        summary.entry, summary.seq
    );
    let phases: Vec<String> = download
        .map(|d| ("download", d))
        .into_iter()
        .chain(summary.phases.iter().copied())
        .map(|(name, took)| format!("{name} {:.1}s", took.as_secs_f64()))
        .collect();
    let _ = writeln!(out, "  time: {}", phases.join(", "));
    if !no_reboot_hint {
        let _ = writeln!(
            out,
            "reboot to boot slot {slot} (falls back to slot {} unless hostd reaches READY \
             within {} boots)",
            slot.other(),
            summary.tries
        );
    }
    out
}

/// Runs `horcrux update-status`.
pub fn status(paths: &Paths, json: bool) -> Outcome {
    let status = match status::gather(paths) {
        Ok(status) => status,
        Err(e) => {
            return Outcome::error(
                exit::INVALID,
                &format!("horcrux update-status: {}", chain(&e)),
            );
        }
    };
    if json {
        match serde_json::to_string_pretty(&status) {
            Ok(text) => Outcome::ok(text + "\n"),
            Err(e) => Outcome::error(exit::INVALID, &format!("horcrux update-status: {e}")),
        }
    } else {
        Outcome::ok(status::render(&status, &paths.entries_dir()))
    }
}

/// What `horcrux boot-health` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct HealthRequest<'a> {
    pub timeout: Duration,
    pub max_restarts: u32,
    /// Exit 1 instead of rebooting when unhealthy.
    pub no_reboot: bool,
    pub paths: &'a Paths,
}

/// Runs `horcrux boot-health`.
pub fn boot_health(request: &HealthRequest) -> Outcome {
    let fail =
        |message: String| Outcome::error(exit::INVALID, &format!("horcrux boot-health: {message}"));
    let paths = request.paths;
    let name = match efivar::read_boot_count_path(&paths.efivars) {
        Ok(None) => return Outcome::ok("not a trial boot (entry already good)\n".into()),
        Ok(Some(bytes)) => match efivar::decode_entry_name(&bytes) {
            Ok(name) => name,
            Err(e) => return fail(e.to_string()),
        },
        Err(e) => {
            let file = efivar::boot_count_path_file(&paths.efivars);
            return fail(format!("cannot read {}: {e}", file.display()));
        }
    };
    let mut say = progress("boot-health");
    say(&format!(
        "trial boot of {name}: waiting up to {} for {HOSTD_UNIT} to be ready",
        humantime::format_duration(request.timeout)
    ));
    let policy = Policy {
        timeout: request.timeout,
        max_restarts: request.max_restarts,
    };
    let mut probe = Systemctl {
        unit: HOSTD_UNIT.into(),
    };
    let Waited { verdict, waited } =
        health::wait_healthy(&mut probe, &policy, &mut RealClock::start());
    match verdict {
        Ok(state) => {
            say(&format!(
                "{HOSTD_UNIT} is {state} after {}s",
                waited.as_secs()
            ));
            bless(paths, &name)
        }
        Err(why) => unhealthy(&why, waited, request.no_reboot),
    }
}

fn bless(paths: &Paths, name: &str) -> Outcome {
    match health::bless(&paths.entries_dir(), name) {
        Ok(Blessed::Renamed { from, to }) => {
            Outcome::ok(format!("boot is good: blessed {from} (renamed to {to})\n"))
        }
        Ok(Blessed::AlreadyGood { to }) => {
            Outcome::ok(format!("boot is good: {name} is already blessed ({to})\n"))
        }
        Ok(Blessed::Gone { from }) => Outcome::ok(format!(
            "boot is good, but {from} is gone from {} (removed or renamed already); nothing to bless\n",
            paths.entries_dir().display()
        )),
        Err(e) => Outcome::error(
            exit::INVALID,
            &format!("horcrux boot-health: the boot is good, but {}", chain(&e)),
        ),
    }
}

fn unhealthy(why: &Unhealthy, waited: Duration, no_reboot: bool) -> Outcome {
    let waited = humantime::format_duration(Duration::from_secs(waited.as_secs()));
    let reason = match why {
        Unhealthy::CrashLoop(state) => format!("crash loop: {state}"),
        Unhealthy::Timeout(Ok(state)) => format!("not ready in time: {state}"),
        Unhealthy::Timeout(Err(error)) => format!("not ready in time: {error}"),
    };
    let mut message =
        format!("horcrux boot-health: {HOSTD_UNIT} is not healthy after {waited}: {reason}");
    if no_reboot {
        message.push_str("; not rebooting (--no-reboot)");
    } else {
        message.push_str("; rebooting, so that systemd-boot tries again or falls back");
        let _ = writeln!(std::io::stderr(), "{message}");
        message = match Command::new("systemctl").arg("reboot").status() {
            Ok(status) if status.success() => return Outcome::error(exit::INVALID, "rebooting"),
            Ok(status) => format!("horcrux boot-health: systemctl reboot failed: {status}"),
            Err(e) => format!("horcrux boot-health: cannot run systemctl reboot: {e}"),
        };
    }
    Outcome::error(exit::INVALID, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::Slot;
    use crate::update::health::UnitState;

    #[test]
    fn summary_lines() {
        let summary = Summary {
            slot: Slot::B,
            device: "/dev/sda3".into(),
            image_id: "horcrux-1".into(),
            version: "2026.1".into(),
            entry: "horcrux-b+3.conf".into(),
            seq: 7,
            root_bytes: 4096,
            tries: 3,
            phases: vec![("verify", Duration::from_millis(1500))],
        };
        let text = render_summary(&summary, Some(Duration::from_secs(2)), false);
        assert_eq!(
            text,
            "slot B written: Horcrux 2026.1 (horcrux-1)\n  root.img: 4096 bytes to /dev/sda3\n  \
             boot entry: horcrux-b+3.conf (version 7)\n  time: download 2.0s, verify 1.5s\n\
             reboot to boot slot B (falls back to slot A unless hostd reaches READY within 3 boots)\n"
        );
        assert!(!render_summary(&summary, None, true).contains("reboot"));
    }

    #[test]
    fn unhealthy_without_reboot_says_why() {
        let state = UnitState {
            active_state: "activating".into(),
            sub_state: "auto-restart".into(),
            n_restarts: 5,
        };
        let outcome = unhealthy(
            &Unhealthy::CrashLoop(state),
            Duration::from_millis(12_400),
            true,
        );
        assert_eq!(outcome.code, exit::INVALID);
        assert_eq!(
            outcome.stderr,
            "horcrux boot-health: horcrux-hostd.service is not healthy after 12s: crash loop: \
             activating (auto-restart), 5 restarts; not rebooting (--no-reboot)\n"
        );
    }
}
