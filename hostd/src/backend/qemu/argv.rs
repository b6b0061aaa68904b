//! The QEMU command line of a VM, from its file, the storage definitions
//! and node.toml's `[qemu]` section. Pure: nothing is opened or checked on
//! the system; hostd prepares disks, taps, directories and the UEFI vars
//! copy before it starts the unit.
//!
//! The order of arguments is fixed (machine, consoles, sandbox, guest
//! agent channel, firmware, direct kernel boot, disks, cloud-init seed,
//! NICs) so the output can be golden-tested and a changed argv means a
//! changed VM.

use horcrux_config::Config;
use horcrux_config::model::Vm;
use horcrux_config::model::node::Accel;
use horcrux_config::model::storage::StorageKind;
use horcrux_config::model::vm::{DiskBus, Firmware, NicModel};
use horcrux_config::types::ResourceName;

use crate::backend::naming::{self, Layout, NamingError};

/// The emulator, found through `PATH` (systemd >= 239 resolves a bare
/// name in ExecStart the same way).
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// OVMF firmware code, from Debian's `ovmf` package: the 4 MiB flash
/// build without Secure Boot enforcement, usable with q35 and pc.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

/// The pristine UEFI variable store matching [`OVMF_CODE`]; hostd copies
/// it to the VM's state dir (`naming::Layout::ovmf_vars`) once, so
/// variables (boot entries) survive restarts.
pub const OVMF_VARS_TEMPLATE: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Ports of the AHCI controller, one per SATA disk.
pub const AHCI_PORTS: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum ArgvError {
    #[error("VM `{0}` is not defined")]
    UnknownVm(String),
    #[error("disk {index} of VM `{vm}` uses storage `{storage}`, which is not defined")]
    UnknownStorage {
        vm: String,
        index: usize,
        storage: String,
    },
    #[error("VM `{vm}` has {needed} SATA disks; the AHCI controller has {AHCI_PORTS} ports")]
    TooManyAhci { vm: String, needed: usize },
    #[error(transparent)]
    Naming(#[from] NamingError),
}

/// The argv of VM `name`, program first, nothing quoted.
pub fn vm_argv(
    config: &Config,
    name: &ResourceName,
    layout: &Layout,
) -> Result<Vec<String>, ArgvError> {
    let vm = config
        .vms
        .get(name)
        .ok_or_else(|| ArgvError::UnknownVm(name.to_string()))?;
    let accel = config.node.as_ref().map_or(Accel::Kvm, |n| *n.qemu.accel);
    let mut out = Args(vec![QEMU_BINARY.to_string()]);
    machine(&mut out, config, name.as_str(), vm, accel);
    consoles(&mut out, name.as_str(), layout);
    guest_agent(&mut out, name.as_str(), layout);
    if *vm.firmware == Firmware::Uefi {
        out.opt(
            "-drive",
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                esc(OVMF_CODE)
            ),
        );
        let vars = layout.ovmf_vars(name.as_str());
        out.opt(
            "-drive",
            format!("if=pflash,format=raw,unit=1,file={}", esc_path(&vars)),
        );
    }
    if let Some(boot) = &vm.boot {
        out.opt("-kernel", boot.kernel.to_string());
        if let Some(initrd) = &boot.initrd {
            out.opt("-initrd", initrd.to_string());
        }
        if let Some(cmdline) = &boot.cmdline {
            out.opt("-append", cmdline.as_str());
        }
    }
    disks(&mut out, config, name.as_str(), vm, layout)?;
    nics(&mut out, config, name, vm, accel)?;
    Ok(out.0)
}

struct Args(Vec<String>);

impl Args {
    fn opt(&mut self, flag: &str, value: impl Into<String>) {
        self.0.push(flag.to_string());
        self.0.push(value.into());
    }
    fn flag(&mut self, flag: &str) {
        self.0.push(flag.to_string());
    }
}

/// QEMU's option syntax separates keys with `,`; a literal comma is `,,`.
fn esc(value: &str) -> String {
    value.replace(',', ",,")
}

fn esc_path(path: &std::path::Path) -> String {
    esc(&path.to_string_lossy())
}

fn machine(out: &mut Args, config: &Config, name: &str, vm: &Vm, accel: Accel) {
    out.opt("-name", format!("{name},debug-threads=on"));
    out.opt("-uuid", naming::vm_uuid(naming::uuid_scope(config), name));
    out.opt(
        "-machine",
        format!("{},accel={}", vm.machine.as_str(), accel.as_str()),
    );
    let cpu = match accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };
    out.opt("-cpu", cpu);
    out.opt("-smp", vm.cpus.get().to_string());
    out.opt("-m", vm.memory.mib().to_string());
    out.flag("-nodefaults");
    out.flag("-no-user-config");
}

/// Display, serial and QMP: unix sockets in the run dir, nothing on TCP.
fn consoles(out: &mut Args, name: &str, layout: &Layout) {
    out.opt("-display", "none");
    out.opt(
        "-vnc",
        format!("unix:{}", esc_path(&layout.vnc_socket(name))),
    );
    out.opt(
        "-chardev",
        format!(
            "socket,id=serial0,path={},server=on,wait=off",
            esc_path(&layout.serial_socket(name))
        ),
    );
    out.opt("-serial", "chardev:serial0");
    out.opt(
        "-qmp",
        format!(
            "unix:{},server=on,wait=off",
            esc_path(&layout.qmp_socket(name))
        ),
    );
    out.opt(
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    );
}

/// The guest agent's channel: a virtio-serial port with the name
/// qemu-guest-agent looks for, backed by a unix socket in the run dir that
/// hostd connects to (`qemu::qga`) to freeze the guest's filesystems
/// around snapshots. Every VM gets it: a guest without the agent simply
/// never answers, and adding the port later would change the VM's
/// hardware under a running guest.
fn guest_agent(out: &mut Args, name: &str, layout: &Layout) {
    out.opt(
        "-chardev",
        format!(
            "socket,id=qga0,path={},server=on,wait=off",
            esc_path(&layout.qga_socket(name))
        ),
    );
    out.opt("-device", "virtio-serial-pci,id=vser0");
    out.opt(
        "-device",
        "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
    );
}

/// Disks in file order (disk N boots before disk N+1), then the
/// cloud-init seed (`backend::cloud_init::write_seed`) as a read-only
/// virtio-blk disk. Not a CD on the AHCI controller: Debian's cloud kernel
/// (and so its cloud images) has no AHCI driver and never sees it, while
/// every cloud image has virtio-blk; cloud-init finds the seed by its
/// volume label either way.
fn disks(
    out: &mut Args,
    config: &Config,
    name: &str,
    vm: &Vm,
    layout: &Layout,
) -> Result<(), ArgvError> {
    let count = |bus| vm.disks.iter().filter(|d| *d.bus == bus).count();
    let ahci_needed = count(DiskBus::Sata);
    if ahci_needed > AHCI_PORTS {
        return Err(ArgvError::TooManyAhci {
            vm: name.to_string(),
            needed: ahci_needed,
        });
    }
    if count(DiskBus::Scsi) > 0 {
        out.opt("-device", "virtio-scsi-pci,id=scsi0");
    }
    if ahci_needed > 0 {
        out.opt("-device", "ahci,id=ahci0");
    }
    let (mut scsi_id, mut ahci_port) = (0, 0);
    for (index, disk) in vm.disks.iter().enumerate() {
        let storage =
            config
                .storage
                .get(&disk.storage.value)
                .ok_or_else(|| ArgvError::UnknownStorage {
                    vm: name.to_string(),
                    index,
                    storage: disk.storage.to_string(),
                })?;
        let path = naming::disk_path(disk.storage.as_str(), storage, name, index)?;
        let (protocol, format) = match *storage.kind {
            StorageKind::Zfs => ("host_device", "raw"),
            StorageKind::Dir => ("file", "qcow2"),
        };
        let node = format!("drive{index}");
        if *disk.bus == DiskBus::Virtio {
            out.opt("-object", format!("iothread,id=io{index}"));
        }
        let opts = "cache.direct=on,discard=unmap";
        out.opt(
            "-blockdev",
            format!(
                "driver={protocol},node-name={node}-file,filename={},{opts}",
                esc_path(&path)
            ),
        );
        out.opt(
            "-blockdev",
            format!("driver={format},node-name={node},file={node}-file,{opts}"),
        );
        let device = match *disk.bus {
            DiskBus::Virtio => {
                format!("virtio-blk-pci,id=disk{index},drive={node},iothread=io{index}")
            }
            DiskBus::Scsi => {
                scsi_id += 1;
                format!(
                    "scsi-hd,id=disk{index},bus=scsi0.0,channel=0,scsi-id={},lun=0,drive={node}",
                    scsi_id - 1
                )
            }
            DiskBus::Sata => {
                ahci_port += 1;
                format!(
                    "ide-hd,id=disk{index},bus=ahci0.{},drive={node}",
                    ahci_port - 1
                )
            }
        };
        // A direct kernel boot takes bootindex 0 itself (QEMU's linuxboot
        // option ROM): the disks then follow it.
        let boot_order = index + usize::from(vm.boot.is_some());
        out.opt("-device", format!("{device},bootindex={boot_order}"));
    }
    if vm.cloud_init.is_some() {
        let seed = layout.cloud_init_seed(name);
        out.opt(
            "-blockdev",
            format!(
                "driver=file,node-name=cidata-file,filename={},read-only=on",
                esc_path(&seed)
            ),
        );
        out.opt(
            "-blockdev",
            "driver=raw,node-name=cidata,file=cidata-file,read-only=on",
        );
        // No bootindex: firmware never tries to boot from the seed.
        out.opt("-device", "virtio-blk-pci,id=cidata0,drive=cidata");
    }
    Ok(())
}

/// Each NIC is a tap (created and bridged by hostd beforehand) and a card
/// with the declared or derived MAC.
fn nics(
    out: &mut Args,
    config: &Config,
    name: &ResourceName,
    vm: &Vm,
    accel: Accel,
) -> Result<(), ArgvError> {
    for (index, nic) in vm.nics.iter().enumerate() {
        let tap = naming::tap_name(name.as_str(), index)?;
        let vhost = match accel {
            Accel::Kvm => ",vhost=on",
            Accel::Tcg => "",
        };
        out.opt(
            "-netdev",
            format!("tap,id=net{index},ifname={tap},script=no,downscript=no{vhost}"),
        );
        let model = match *nic.model {
            NicModel::Virtio => "virtio-net-pci",
            NicModel::E1000 => "e1000",
            NicModel::Rtl8139 => "rtl8139",
        };
        let mac = config.nic_mac(name, index, nic);
        out.opt(
            "-device",
            format!("{model},id=nic{index},netdev=net{index},mac={mac}"),
        );
    }
    Ok(())
}
