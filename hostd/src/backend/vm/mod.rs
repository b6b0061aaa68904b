//! The VM backend: one `horcrux-vm-<name>.service` per VM placed on this
//! node, written to /run/systemd/system and started, stopped and observed
//! through systemd's D-Bus API.
//!
//! A VM's resource has three kinds of field:
//! * `state` (`running`/`stopped`): live, applied by starting or stopping
//!   the unit;
//! * `unit` (a digest of the unit text): live, applied by rewriting the
//!   file and reloading systemd; a running QEMU is not touched;
//! * the hardware spec (`cpus`, `memory`, `disk0`, ...): needs a restart.
//!   It is read from the running QEMU's own environment, so a change shows
//!   as "restart pending" until the VM is stopped and started again, or is
//!   applied at once with `restart = "auto"`.
//!
//! Units never depend on hostd, so hostd restarts and upgrades leave VMs
//! running and a new hostd simply observes (adopts) them.

mod observe;
pub mod orphans;
mod prepare;
pub mod render;
pub mod spec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use horcrux_config::Config;
use horcrux_config::model::State;
use horcrux_config::model::vm::RestartPolicy;

pub use render::{RenderedVm, render_vm, unit_digest};

use crate::apply::{Backend, BackendError, BoxFuture};
use crate::backend::artifacts::placement;
use crate::backend::cloud_init::{self, SeedDocs};
use crate::backend::connection::Reconnecting;
use crate::backend::naming::{self, Layout, NFT_TABLE, UNIT_DIR};
use crate::backend::qemu::qmp::Qmp;
use crate::backend::systemd::{Systemd, unit::STOP_MARGIN_SECS};
use crate::plan::{Action, Desired, Observed, Op, ResourceId, ResourceKind, Restart};

/// Payload keys of a VM's [`Desired`].
mod payload {
    /// The unit text.
    pub const UNIT: &str = "unit";
    /// Why the VM could not be rendered (its apply fails with this).
    pub const ERROR: &str = "error";
    /// Seconds a stop may take, graceful stop and systemd's margin included.
    pub const STOP_SECS: &str = "stop-seconds";
    /// Devices or files the disks need, one per line.
    pub const DISKS: &str = "disks";
    /// The VM's own UEFI variable store, when it boots with OVMF.
    pub const OVMF_VARS: &str = "ovmf-vars";
    /// The cloud-init documents (`meta-data`, `user-data`,
    /// `network-config`), when the VM has a `[cloud_init]` section.
    pub const SEED_META: &str = "seed-meta-data";
    pub const SEED_USER: &str = "seed-user-data";
    pub const SEED_NETWORK: &str = "seed-network-config";
}

/// How long hostd waits for a stop job of a VM it no longer knows the
/// settings of (a removed VM file); systemd's own `TimeoutStopSec=` ends
/// the job earlier.
const REMOVED_VM_STOP_WAIT: Duration = Duration::from_secs(30 * 60);

/// How long a started QEMU may take to answer on QMP (it opens every
/// disk and the firmware first; TCG on a busy host is slow).
const QEMU_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// The VM backend; one per hostd.
pub struct VmBackend {
    layout: Layout,
    unit_dir: PathBuf,
    /// Connected on first use and again after an error, so hostd keeps
    /// working (and reports why) while systemd's bus is unavailable.
    systemd: Reconnecting<Systemd>,
}

impl std::fmt::Debug for VmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmBackend")
            .field("layout", &self.layout)
            .field("unit_dir", &self.unit_dir)
            .finish()
    }
}

impl VmBackend {
    pub fn new(layout: Layout) -> Self {
        VmBackend {
            layout,
            unit_dir: PathBuf::from(UNIT_DIR),
            systemd: Reconnecting::new(),
        }
    }

    pub fn shared(layout: Layout) -> Arc<dyn Backend> {
        Arc::new(VmBackend::new(layout))
    }

    async fn systemd(&self) -> Result<Systemd, BackendError> {
        self.systemd
            .get(Systemd::connect)
            .await
            .map_err(|e| BackendError::new(crate::errors::chain(&e)))
    }

    /// Forgets the connection after a D-Bus failure, so the next call
    /// reconnects (systemd may have been re-executed).
    async fn drop_connection(&self) {
        self.systemd.forget().await;
    }

    fn unit_path(&self, name: &str) -> PathBuf {
        self.unit_dir.join(naming::unit_name(name))
    }
}

/// The desired resource of every VM placed on this node.
fn desired_vms(config: &Config, layout: &Layout) -> Vec<Desired> {
    let Some(this) = config.node_name() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, vm) in &config.vms {
        if placement(config, vm).is_none_or(|n| n != this) {
            continue;
        }
        let state = match *vm.state {
            State::Running => "running",
            State::Stopped => "stopped",
        };
        let mut desired = Desired::new(ResourceId::new(ResourceKind::Vm, name.as_str()))
            .field("state", state)
            .auto_restart(*vm.restart == RestartPolicy::Auto);
        let stop = vm.stop_timeout.get().as_secs() + 1 + 2 * STOP_MARGIN_SECS;
        desired = desired.payload(payload::STOP_SECS, stop.to_string());
        match render_vm(config, name, vm, layout) {
            Ok(rendered) => {
                desired = desired.field("unit", unit_digest(&rendered.unit));
                for (field, value) in rendered.spec {
                    desired = desired.restart_field(field, value);
                }
                desired = desired.payload(payload::UNIT, rendered.unit);
            }
            // Never silently drop a VM (that would read as "remove it"):
            // keep it, and fail its apply with the reason.
            Err(e) => {
                desired = desired
                    .field("unit", "cannot be rendered")
                    .payload(payload::ERROR, crate::errors::chain(&e));
            }
        }
        let mut disks = Vec::new();
        for (index, disk) in vm.disks.iter().enumerate() {
            let volume = naming::volume_name(name.as_str(), index);
            desired = desired.depends_on(ResourceId::new(
                ResourceKind::Volume,
                format!("{}/{volume}", *disk.storage),
            ));
            if let Some(storage) = config.storage.get(&*disk.storage)
                && let Ok(path) =
                    naming::disk_path(disk.storage.as_str(), storage, name.as_str(), index)
            {
                disks.push(path.to_string_lossy().into_owned());
            }
        }
        // A running VM starts only once its taps are on their bridges and
        // the firewall has its chains: never a moment unfiltered. A stopped
        // one needs only its networks (its taps are removed).
        for (index, nic) in vm.nics.iter().enumerate() {
            let tap = match (*vm.state, naming::tap_name(name.as_str(), index)) {
                (State::Running, Ok(tap)) => ResourceId::new(ResourceKind::Tap, tap),
                _ => ResourceId::new(ResourceKind::Network, nic.network.as_str()),
            };
            desired = desired.depends_on(tap);
        }
        if !vm.nics.is_empty() {
            desired = desired.depends_on(ResourceId::new(ResourceKind::Firewall, NFT_TABLE));
        }
        desired = desired.payload(payload::DISKS, disks.join("\n"));
        if *vm.firmware == horcrux_config::model::vm::Firmware::Uefi {
            let vars = layout.ovmf_vars(name.as_str());
            desired = desired.payload(payload::OVMF_VARS, vars.to_string_lossy().into_owned());
        }
        if let Some(seed) = cloud_init::vm_seed_docs(config, name) {
            desired = desired
                .payload(payload::SEED_META, seed.meta_data)
                .payload(payload::SEED_USER, seed.user_data)
                .payload(payload::SEED_NETWORK, seed.network_config);
        }
        out.push(desired);
    }
    out
}

/// The seed documents of a desired VM, when it has any.
fn seed_of(desired: &Desired) -> Option<SeedDocs> {
    let get = |key| desired.payload.get(key).cloned();
    Some(SeedDocs {
        meta_data: get(payload::SEED_META)?,
        user_data: get(payload::SEED_USER)?,
        network_config: get(payload::SEED_NETWORK)?,
    })
}

impl Backend for VmBackend {
    fn kinds(&self) -> &'static [ResourceKind] {
        &[ResourceKind::Vm]
    }

    fn desired(&self, config: &Config) -> Vec<Desired> {
        desired_vms(config, &self.layout)
    }

    fn observe(&self) -> BoxFuture<'_, Result<Vec<Observed>, BackendError>> {
        Box::pin(async move {
            let systemd = self.systemd().await?;
            let result = observe::all(&systemd, &self.unit_dir, &self.layout).await;
            if result.is_err() {
                self.drop_connection().await;
            }
            result
        })
    }

    fn apply<'a>(
        &'a self,
        action: &'a Action,
        desired: Option<&'a Desired>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let systemd = self.systemd().await?;
            let name = action.id.name.as_str();
            let result = match (action.op, desired) {
                (Op::Delete, _) => self.remove(&systemd, name).await,
                (op, Some(desired)) => {
                    let restart = op
                        == Op::Update {
                            restart: Restart::Auto,
                        };
                    self.converge(&systemd, name, desired, restart).await
                }
                (_, None) => Err(BackendError::permanent(format!(
                    "no desired state for VM {name}"
                ))),
            };
            if let Err(e) = &result
                && e.retryable
            {
                self.drop_connection().await;
            }
            result
        })
    }
}

impl VmBackend {
    /// Makes VM `name` match `desired`: unit file, then run state.
    /// Idempotent: starting a running unit and stopping a stopped one are
    /// no-ops in systemd.
    async fn converge(
        &self,
        systemd: &Systemd,
        name: &str,
        desired: &Desired,
        restart: bool,
    ) -> Result<(), BackendError> {
        if let Some(error) = desired.payload.get(payload::ERROR) {
            return Err(BackendError::permanent(error.clone()));
        }
        let unit_text = desired
            .payload
            .get(payload::UNIT)
            .ok_or_else(|| BackendError::permanent(format!("VM {name} has no unit text")))?;
        let unit = naming::unit_name(name);
        prepare::directories(&self.layout, name)?;
        if let Some(vars) = desired.payload.get(payload::OVMF_VARS) {
            prepare::ovmf_vars(Path::new(vars))?;
        }
        if let Some(seed) = seed_of(desired) {
            let path = self.layout.cloud_init_seed(name);
            cloud_init::write_seed(&path, &seed).map_err(|e| {
                BackendError::new(format!(
                    "cannot write the cloud-init seed of VM {name}: {}",
                    crate::errors::chain(&e)
                ))
            })?;
        }
        if prepare::write_unit(&self.unit_path(name), unit_text)? {
            systemd.reload().await.map_err(dbus)?;
        }
        let stop_wait = desired
            .payload
            .get(payload::STOP_SECS)
            .and_then(|s| s.parse().ok())
            .map_or(REMOVED_VM_STOP_WAIT, Duration::from_secs);
        let wants_running = desired
            .fields
            .get("state")
            .is_some_and(|f| f.value == "running");
        if restart {
            tracing::info!(
                vm = name,
                "restarting to apply hardware changes (restart = \"auto\")"
            );
            systemd.stop(&unit, stop_wait).await.map_err(dbus)?;
        }
        if wants_running {
            let disks = desired
                .payload
                .get(payload::DISKS)
                .map_or("", String::as_str);
            prepare::disks_ready(name, disks.lines())?;
            systemd.start(&unit).await.map_err(dbus)?;
            self.wait_until_up(systemd, name).await
        } else {
            systemd.stop(&unit, stop_wait).await.map_err(dbus)
        }
    }

    /// A start job is done as soon as QEMU is forked; the VM is up once
    /// QEMU answers on QMP. A QEMU that exits instead (a bad option, a
    /// missing file) fails the apply with the unit state, so the VM is
    /// retried with backoff instead of being started again every cycle.
    async fn wait_until_up(&self, systemd: &Systemd, name: &str) -> Result<(), BackendError> {
        let unit = naming::unit_name(name);
        let socket = self.layout.qmp_socket(name);
        let deadline = tokio::time::Instant::now() + QEMU_UP_TIMEOUT;
        loop {
            if let Ok(mut qmp) = Qmp::connect_timeout(&socket, Duration::from_secs(1)).await
                && qmp.query_status().await.is_ok()
            {
                return Ok(());
            }
            let state = systemd.unit_state(&unit).await.map_err(dbus)?;
            if !state.is_running() {
                return Err(BackendError::new(format!(
                    "{unit} stopped right after it started ({}); see `journalctl -u {unit}`",
                    state.display()
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::new(format!(
                    "QEMU of VM {name} did not answer on {} within {}s",
                    socket.display(),
                    QEMU_UP_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A VM file was removed: stop the VM gracefully and remove its unit.
    /// Its disks and UEFI variables stay (`horcrux purge vm` removes them).
    async fn remove(&self, systemd: &Systemd, name: &str) -> Result<(), BackendError> {
        let unit = naming::unit_name(name);
        systemd
            .stop(&unit, REMOVED_VM_STOP_WAIT)
            .await
            .map_err(dbus)?;
        if prepare::remove_unit(&self.unit_path(name))? {
            systemd.reload().await.map_err(dbus)?;
        }
        // A unit that failed stays listed until reset; it is gone now.
        let _ = systemd.reset_failed(&unit).await;
        prepare::remove_run_dir(&self.layout, name)
    }
}

fn dbus(e: crate::backend::systemd::SystemdError) -> BackendError {
    BackendError::new(crate::errors::chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::config;
    use horcrux_config::decode::ParseStr as _;
    use horcrux_config::types::ResourceName;

    fn fields(d: &Desired) -> Vec<(String, String, bool)> {
        d.fields
            .iter()
            .map(|(k, f)| (k.clone(), f.value.clone(), f.live))
            .collect()
    }

    #[test]
    fn desired_vm_has_live_state_and_unit_and_restart_hardware() {
        let config = config(&[
            ("node.toml", "name = \"n1\"\n[uplinks]\nlan = \"eth0\"\n"),
            ("cluster/networks/lan.toml", "kind = \"bridge\"\n"),
            (
                "cluster/storage/scratch.toml",
                "kind = \"dir\"\npath = \"/srv\"\n",
            ),
            (
                "cluster/vms/web.toml",
                "state = \"stopped\"\nrestart = \"auto\"\nfirmware = \"bios\"\n\
                 [[disk]]\nstorage = \"scratch\"\nsize = \"1GiB\"\n\
                 [[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:00:00:01\"\n\
                 [cloud_init]\nuser = \"ops\"\n",
            ),
        ]);
        let layout = Layout::new("/tmp/r", "/tmp/s");
        let web_name = ResourceName::parse_str("web").unwrap();
        let desired = desired_vms(&config, &layout);
        assert_eq!(desired.len(), 1);
        let web = &desired[0];
        assert_eq!(web.id, ResourceId::new(ResourceKind::Vm, "web"));
        let rendered = render_vm(&config, &web_name, &config.vms[&web_name], &layout).unwrap();
        let seed = cloud_init::vm_seed_docs(&config, &web_name).unwrap();
        let mut expected = vec![
            ("cloud_init".to_string(), seed.content_hash(), false),
            ("cpus".into(), "1".into(), false),
            ("disk0".into(), "scratch virtio".into(), false),
            ("firmware".into(), "bios".into(), false),
            ("machine".into(), "q35".into(), false),
            ("memory".into(), "1GiB".into(), false),
            ("nic0".into(), "lan 52:54:00:00:00:01 virtio".into(), false),
            ("state".into(), "stopped".into(), true),
            ("unit".into(), unit_digest(&rendered.unit), true),
        ];
        expected.sort();
        assert_eq!(fields(web), expected);
        assert!(web.auto_restart);
        assert_eq!(
            web.depends_on,
            [
                ResourceId::new(ResourceKind::Volume, "scratch/vm-web-disk0"),
                ResourceId::new(ResourceKind::Network, "lan"),
                ResourceId::new(ResourceKind::Firewall, NFT_TABLE),
            ]
        );
        assert_eq!(web.payload[payload::UNIT], rendered.unit);
        assert_eq!(web.payload[payload::DISKS], "/srv/vm-web-disk0.qcow2");
        assert!(
            !web.payload.contains_key(payload::OVMF_VARS),
            "bios needs no vars"
        );
        assert_eq!(seed_of(web), Some(seed));
    }

    #[test]
    fn only_vms_placed_here_are_desired() {
        let cluster = "name = \"lab\"\n[[member]]\nname = \"n1\"\naddress = \"10.0.0.1\"\n\
            [[member]]\nname = \"n2\"\naddress = \"10.0.0.2\"\n[trust]\nrequire_signatures = false\n";
        let config = config(&[
            ("node.toml", "name = \"n1\"\n"),
            ("cluster/cluster.toml", cluster),
            ("cluster/vms/here.toml", "node = \"n1\"\n"),
            ("cluster/vms/there.toml", "node = \"n2\"\n"),
        ]);
        let desired = desired_vms(&config, &Layout::default());
        let names: Vec<&str> = desired.iter().map(|d| d.id.name.as_str()).collect();
        assert_eq!(names, ["here"]);
        assert!(desired[0].payload.contains_key(payload::OVMF_VARS));
        assert!(seed_of(&desired[0]).is_none());
    }
}
