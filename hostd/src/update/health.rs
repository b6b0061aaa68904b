//! `horcrux boot-health`: on a trial boot, wait for hostd to be READY and
//! bless the booted entry (remove its boot counter), or reboot so that
//! systemd-boot tries again and, once the tries are used up, falls back
//! to the other slot.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::entry::split_counter;

/// The unit whose readiness makes a boot good. Type=notify, so "active"
/// means it sent READY=1.
pub const HOSTD_UNIT: &str = "horcrux-hostd.service";
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What systemd says about the unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    pub active_state: String,
    pub sub_state: String,
    pub n_restarts: u32,
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}), {} restarts",
            self.active_state, self.sub_state, self.n_restarts
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot run systemctl: {0}")]
    Spawn(#[source] io::Error),
    #[error("systemctl show failed: {0}")]
    Failed(String),
    #[error("cannot understand `systemctl show` output: {0:?}")]
    Output(String),
}

/// Asks for the unit's state; the one real implementation is
/// [`Systemctl`]. A trait so that the waiting logic can be tested with
/// plain data.
pub trait UnitProbe {
    fn state(&mut self) -> Result<UnitState, HealthError>;
}

/// `systemctl show -p ActiveState,SubState,NRestarts UNIT`.
#[derive(Debug, Clone)]
pub struct Systemctl {
    pub unit: String,
}

impl UnitProbe for Systemctl {
    fn state(&mut self) -> Result<UnitState, HealthError> {
        let output = Command::new("systemctl")
            .args(["show", "-p", "ActiveState,SubState,NRestarts", &self.unit])
            .output()
            .map_err(HealthError::Spawn)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
            return Err(HealthError::Failed(lines.join(" ")));
        }
        parse_show(&String::from_utf8_lossy(&output.stdout))
    }
}

/// Parses `KEY=VALUE` lines of `systemctl show`.
pub fn parse_show(text: &str) -> Result<UnitState, HealthError> {
    let get = |key: &str| {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim().to_string())
    };
    let bad = || HealthError::Output(text.to_string());
    let active_state = get("ActiveState")
        .filter(|s| !s.is_empty())
        .ok_or_else(bad)?;
    // NRestarts is missing on old systemd versions: no restarts counted.
    let n_restarts = match get("NRestarts") {
        Some(n) => n.parse().map_err(|_| bad())?,
        None => 0,
    };
    Ok(UnitState {
        active_state,
        sub_state: get("SubState").unwrap_or_default(),
        n_restarts,
    })
}

/// When to give up on the unit.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub timeout: Duration,
    /// This many restarts is a crash loop.
    pub max_restarts: u32,
}

/// Why the boot is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    CrashLoop(UnitState),
    /// The last state seen, or why none could be had.
    Timeout(Result<UnitState, String>),
}

/// What one look at the unit decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy(UnitState),
    Wait,
    Unhealthy(Unhealthy),
}

/// The decision for one probe result after `waited`. A failed probe
/// (systemd busy) is retried like a unit that is still starting.
pub fn judge(state: &Result<UnitState, String>, waited: Duration, policy: &Policy) -> Verdict {
    if let Ok(state) = state {
        if state.active_state == "active" {
            return Verdict::Healthy(state.clone());
        }
        if state.n_restarts >= policy.max_restarts {
            return Verdict::Unhealthy(Unhealthy::CrashLoop(state.clone()));
        }
    }
    if waited >= policy.timeout {
        return Verdict::Unhealthy(Unhealthy::Timeout(state.clone()));
    }
    Verdict::Wait
}

/// The outcome of waiting, with how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    pub verdict: Result<UnitState, Unhealthy>,
    pub waited: Duration,
}

/// Time, for [`wait_healthy`]: the real clock, or a counted one in tests.
pub trait Clock {
    fn elapsed(&self) -> Duration;
    fn sleep(&mut self, duration: Duration);
}

/// The wall clock since construction.
#[derive(Debug)]
pub struct RealClock(Instant);

impl RealClock {
    pub fn start() -> RealClock {
        RealClock(Instant::now())
    }
}

impl Clock for RealClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Polls the unit every [`POLL_INTERVAL`] until [`judge`] decides.
pub fn wait_healthy(probe: &mut dyn UnitProbe, policy: &Policy, clock: &mut dyn Clock) -> Waited {
    loop {
        let state = probe.state().map_err(|e| e.to_string());
        let waited = clock.elapsed();
        match judge(&state, waited, policy) {
            Verdict::Healthy(state) => {
                return Waited {
                    verdict: Ok(state),
                    waited,
                };
            }
            Verdict::Unhealthy(why) => {
                return Waited {
                    verdict: Err(why),
                    waited,
                };
            }
            Verdict::Wait => clock.sleep(POLL_INTERVAL),
        }
    }
}

/// What blessing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blessed {
    Renamed {
        from: String,
        to: String,
    },
    /// The counted file is gone, and the good one is there.
    AlreadyGood {
        to: String,
    },
    /// Neither file is there.
    Gone {
        from: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BlessError {
    #[error("{0:?} has no boot counter; nothing to bless")]
    NoCounter(String),
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("cannot sync {dir}: {source}")]
    Sync { dir: PathBuf, source: io::Error },
}

/// Marks the entry file `name` (as named by LoaderBootCountPath) good:
/// renames `x+2-1.conf` to `x.conf` and makes the rename durable.
pub fn bless(entries_dir: &Path, name: &str) -> Result<Blessed, BlessError> {
    let (good, _) = split_counter(name).ok_or_else(|| BlessError::NoCounter(name.to_string()))?;
    let from = entries_dir.join(name);
    let to = entries_dir.join(&good);
    match fs::rename(&from, &to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(if to.exists() {
                Blessed::AlreadyGood { to: good }
            } else {
                Blessed::Gone {
                    from: name.to_string(),
                }
            });
        }
        Err(source) => return Err(BlessError::Rename { from, to, source }),
    }
    crate::fsutil::sync_dir(entries_dir).map_err(|source| BlessError::Sync {
        dir: entries_dir.to_path_buf(),
        source,
    })?;
    Ok(Blessed::Renamed {
        from: name.to_string(),
        to: good,
    })
}

#[cfg(test)]
mod tests;
