//! systemd's D-Bus API (`org.freedesktop.systemd1`): reload, start and
//! stop units, waiting for their jobs, and read unit state. No `systemctl`
//! subprocesses: D-Bus gives job results and typed properties.

use std::time::Duration;

use futures_util::StreamExt as _;
use zbus_systemd::systemd1::{ManagerProxy, ServiceProxy, UnitProxy};
use zbus_systemd::zbus::{self, Connection, OwnedObjectPath};

/// How long a start job may take: QEMU forks in well under a second, but
/// systemd may be busy with a boot or other jobs.
pub const START_JOB_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot reach systemd over D-Bus")]
    Connect(#[source] zbus::Error),
    #[error("systemd D-Bus call {call} failed")]
    Call {
        call: &'static str,
        #[source]
        source: zbus::Error,
    },
    #[error("{verb} job of {unit} ended with result `{result}`; see `journalctl -u {unit}`")]
    JobFailed {
        verb: &'static str,
        unit: String,
        result: String,
    },
    #[error("{verb} job of {unit} did not finish within {}s", timeout.as_secs())]
    JobTimeout {
        verb: &'static str,
        unit: String,
        timeout: Duration,
    },
}

fn call(call: &'static str) -> impl FnOnce(zbus::Error) -> SystemdError {
    move |source| SystemdError::Call { call, source }
}

/// What systemd says about one unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    /// `loaded`, `not-found`, `error`, ...
    pub load: String,
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, ...
    pub active: String,
    /// The type-specific state: `running`, `dead`, `stop-sigterm`, ...
    pub sub: String,
    /// The main process, when there is one.
    pub main_pid: Option<u32>,
    /// When the unit last entered the active state, in microseconds since
    /// the epoch; `None` when it never did.
    pub active_since_us: Option<u64>,
}

impl UnitState {
    /// Whether the unit's processes are (or may still be) running: a unit
    /// that is starting or stopping counts, so it is neither started twice
    /// nor forgotten while it shuts down.
    pub fn is_running(&self) -> bool {
        matches!(
            self.active.as_str(),
            "active" | "activating" | "deactivating" | "reloading"
        )
    }

    /// `active (running)`, as `systemctl status` shows it.
    pub fn display(&self) -> String {
        format!("{} ({})", self.active, self.sub)
    }
}

/// A connection to the system manager.
#[derive(Debug, Clone)]
pub struct Systemd {
    connection: Connection,
}

impl Systemd {
    /// Connects to the system bus.
    pub async fn connect() -> Result<Self, SystemdError> {
        let connection = Connection::system().await.map_err(SystemdError::Connect)?;
        let systemd = Systemd { connection };
        // Once per connection: systemd refuses a second Subscribe, and
        // without one it may not emit JobRemoved at all.
        systemd
            .manager()
            .await?
            .subscribe()
            .await
            .map_err(call("Subscribe"))?;
        Ok(systemd)
    }

    async fn manager(&self) -> Result<ManagerProxy<'_>, SystemdError> {
        ManagerProxy::new(&self.connection)
            .await
            .map_err(call("Manager"))
    }

    /// `daemon-reload`: makes systemd read changed unit files. Returns when
    /// the reload is done.
    pub async fn reload(&self) -> Result<(), SystemdError> {
        self.manager().await?.reload().await.map_err(call("Reload"))
    }

    /// Starts `unit` and waits for its start job to finish.
    pub async fn start(&self, unit: &str) -> Result<(), SystemdError> {
        self.run_job("start", unit, START_JOB_TIMEOUT).await
    }

    /// Stops `unit` and waits up to `timeout` for the stop job to finish;
    /// the unit's own `ExecStop=`/`TimeoutStopSec=` decide how it stops.
    pub async fn stop(&self, unit: &str, timeout: Duration) -> Result<(), SystemdError> {
        self.run_job("stop", unit, timeout).await
    }

    /// Queues a start or stop job and waits for its `JobRemoved` signal.
    /// The signal stream is opened before the job is queued, so a job that
    /// finishes at once is not missed.
    async fn run_job(
        &self,
        verb: &'static str,
        unit: &str,
        timeout: Duration,
    ) -> Result<(), SystemdError> {
        let manager = self.manager().await?;
        let mut removed = manager
            .receive_job_removed()
            .await
            .map_err(call("JobRemoved"))?;
        // `replace`: a newer request supersedes a queued opposite one, as
        // `systemctl start/stop` do.
        let mode = "replace".to_string();
        let job: OwnedObjectPath = match verb {
            "start" => manager.start_unit(unit.to_string(), mode).await,
            _ => manager.stop_unit(unit.to_string(), mode).await,
        }
        .map_err(call(if verb == "start" {
            "StartUnit"
        } else {
            "StopUnit"
        }))?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job.as_str() == job.as_str() {
                    return Some(args.result.clone());
                }
            }
            None
        };
        let result =
            tokio::time::timeout(timeout, wait)
                .await
                .map_err(|_| SystemdError::JobTimeout {
                    verb,
                    unit: unit.to_string(),
                    timeout,
                })?;
        match result.as_deref() {
            Some("done") => Ok(()),
            Some(other) => Err(SystemdError::JobFailed {
                verb,
                unit: unit.to_string(),
                result: other.to_string(),
            }),
            None => Err(SystemdError::JobFailed {
                verb,
                unit: unit.to_string(),
                result: "unknown (the D-Bus signal stream ended)".to_string(),
            }),
        }
    }

    /// Clears a `failed` state so the unit's last failure does not stick
    /// to it after it was dealt with.
    pub async fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager()
            .await?
            .reset_failed_unit(unit.to_string())
            .await
            .map_err(call("ResetFailedUnit"))
    }

    /// Names of the units systemd has loaded that match `pattern` (a
    /// shell glob), whatever their state.
    pub async fn units_matching(&self, pattern: &str) -> Result<Vec<String>, SystemdError> {
        let units = self
            .manager()
            .await?
            .list_units_by_patterns(Vec::new(), vec![pattern.to_string()])
            .await
            .map_err(call("ListUnitsByPatterns"))?;
        Ok(units.into_iter().map(|u| u.0).collect())
    }

    /// The state of `unit`; a unit systemd does not know reads as
    /// `not-found`/`inactive`, like `systemctl show` does.
    pub async fn unit_state(&self, unit: &str) -> Result<UnitState, SystemdError> {
        let path = self
            .manager()
            .await?
            .load_unit(unit.to_string())
            .await
            .map_err(call("LoadUnit"))?;
        let unit_proxy = UnitProxy::builder(&self.connection)
            .path(path.clone())
            .build()
            .await
            .map_err(call("Unit"))?;
        let service = ServiceProxy::builder(&self.connection)
            .path(path)
            .build()
            .await
            .map_err(call("Service"))?;
        let load = unit_proxy.load_state().await.map_err(call("LoadState"))?;
        let active = unit_proxy
            .active_state()
            .await
            .map_err(call("ActiveState"))?;
        let sub = unit_proxy.sub_state().await.map_err(call("SubState"))?;
        let since = unit_proxy
            .active_enter_timestamp()
            .await
            .map_err(call("ActiveEnterTimestamp"))?;
        // A unit that is not loaded has no Service interface.
        let main_pid = if load == "loaded" {
            service.main_pid().await.map_err(call("MainPID"))?
        } else {
            0
        };
        Ok(UnitState {
            load,
            active,
            sub,
            main_pid: (main_pid != 0).then_some(main_pid),
            active_since_us: (since != 0).then_some(since),
        })
    }
}
