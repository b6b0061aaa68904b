//! Everything hostd writes for one VM, from a valid config: the QEMU
//! argv, the hardware spec and the unit that runs it.

use horcrux_config::Config;
use horcrux_config::model::Vm;
use horcrux_config::types::ResourceName;

use super::spec::{self, Spec};
use crate::backend::naming::{HORCRUX_BIN, Layout};
use crate::backend::qemu::{self, ArgvError};
use crate::backend::systemd;

/// The artifacts of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedVm {
    pub argv: Vec<String>,
    pub spec: Spec,
    /// The text of `horcrux-vm-<name>.service`.
    pub unit: String,
}

/// Renders VM `name` for this node's `layout`.
pub fn render_vm(
    config: &Config,
    name: &ResourceName,
    vm: &Vm,
    layout: &Layout,
) -> Result<RenderedVm, ArgvError> {
    let argv = qemu::vm_argv(config, name, layout)?;
    let spec = spec::vm_spec(config, name, vm);
    let unit = systemd::vm_unit(
        name.as_str(),
        vm,
        &argv,
        &spec::encode(&spec),
        &stop_command(name.as_str(), vm, layout),
    );
    Ok(RenderedVm { argv, spec, unit })
}

/// `ExecStop=`: `horcrux vm-shutdown` powers the guest down over QMP and
/// quits QEMU when the VM's `stop_timeout` is over.
fn stop_command(name: &str, vm: &Vm, layout: &Layout) -> Vec<String> {
    vec![
        HORCRUX_BIN.to_string(),
        "vm-shutdown".to_string(),
        "--qmp".to_string(),
        layout.qmp_socket(name).to_string_lossy().into_owned(),
        "--timeout".to_string(),
        humantime::format_duration(vm.stop_timeout.get()).to_string(),
    ]
}

/// A short, stable digest of a unit's text, for plans and observation.
pub fn unit_digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    crate::backend::hex(&digest[..6])
}
