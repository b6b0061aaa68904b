//! `cluster/vms/<name>.toml`: one virtual machine.

use std::fmt;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::Serialize;

use crate::decode::{Bounded, ParseStr, Spanned, Table, ValueError};
use crate::types::{
    AbsPath, ByteSize, Duration, IfaceAddr, MacAddr, ResourceName, SnapshotName, SshPublicKey,
};
use crate::{decode_table, keyword_enum};

use super::State;

pub type Cpus = Bounded<1, 512>;
pub type SnapshotKeep = Bounded<1, 10_000>;

keyword_enum! {
    /// The emulated chipset.
    pub enum Machine { Q35 = "q35", Pc = "pc" }
}

keyword_enum! {
    /// Boot firmware: OVMF (UEFI) or SeaBIOS.
    pub enum Firmware { Uefi = "uefi", Bios = "bios" }
}

keyword_enum! {
    /// What happens when hardware settings of a running VM change.
    pub enum RestartPolicy {
        /// Show "restart pending"; the change applies at the next stop/start.
        Manual = "manual",
        /// Restart the VM (graceful stop, then start) to apply the change.
        Auto = "auto",
    }
}

keyword_enum! {
    /// How a disk is attached.
    pub enum DiskBus { Virtio = "virtio", Scsi = "scsi", Sata = "sata" }
}

keyword_enum! {
    /// The emulated network card.
    pub enum NicModel { Virtio = "virtio", E1000 = "e1000", Rtl8139 = "rtl8139" }
}

/// A virtual machine. The file name is the VM name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// Node the VM runs on. Optional on a single unclustered node (it then
    /// runs there); required in a cluster. Changing it moves the VM.
    pub node: Option<Spanned<ResourceName>>,
    /// Whether the VM should be running.
    #[serde(default = "default_state")]
    pub state: Spanned<State>,
    /// Virtual CPUs (1 to 512).
    #[serde(default = "default_cpus")]
    pub cpus: Spanned<Cpus>,
    /// Memory, at least 16MiB, in whole MiB.
    #[serde(default = "default_memory")]
    pub memory: Spanned<ByteSize>,
    /// Emulated chipset.
    #[serde(default = "default_machine")]
    pub machine: Spanned<Machine>,
    /// Boot firmware: OVMF (`uefi`) or SeaBIOS (`bios`).
    #[serde(default = "default_firmware")]
    pub firmware: Spanned<Firmware>,
    /// Whether a hardware change restarts a running VM by itself.
    #[serde(default = "default_restart")]
    pub restart: Spanned<RestartPolicy>,
    /// How long a graceful shutdown may take before QEMU is told to quit.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: Spanned<Duration>,
    /// Disks, in boot order (`[[disk]]` tables).
    #[serde(rename = "disk", default)]
    pub disks: Vec<Spanned<Disk>>,
    /// Network cards (`[[nic]]` tables).
    #[serde(rename = "nic", default)]
    pub nics: Vec<Spanned<Nic>>,
    /// A NoCloud cloud-init seed attached as a drive.
    pub cloud_init: Option<CloudInit>,
    /// Periodic snapshots of every disk, with retention.
    pub snapshots: Option<SnapshotSchedule>,
    /// Named snapshots of every disk (`[[snapshot]]` tables): each is taken
    /// once, kept while declared and destroyed when its table is removed.
    #[serde(rename = "snapshot", default)]
    pub named_snapshots: Vec<Spanned<NamedSnapshot>>,
    /// Direct kernel boot: QEMU loads a kernel (and initrd) from the node
    /// instead of booting from a disk.
    pub boot: Option<DirectBoot>,
}

fn default_state() -> Spanned<State> {
    Spanned::builtin(State::Running)
}
fn default_cpus() -> Spanned<Cpus> {
    const ONE: Cpus = Cpus::checked(1);
    Spanned::builtin(ONE)
}
fn default_memory() -> Spanned<ByteSize> {
    Spanned::builtin(ByteSize::from_bytes(1 << 30))
}
fn default_machine() -> Spanned<Machine> {
    Spanned::builtin(Machine::Q35)
}
fn default_firmware() -> Spanned<Firmware> {
    Spanned::builtin(Firmware::Uefi)
}
fn default_restart() -> Spanned<RestartPolicy> {
    Spanned::builtin(RestartPolicy::Manual)
}
fn default_stop_timeout() -> Spanned<Duration> {
    Spanned::builtin(Duration::from_secs(120))
}

const MIN_MEMORY: u64 = 16 * ByteSize::MIB;

fn read_vm(t: &mut Table) -> Option<Vm> {
    let node = t.optional("node");
    let state = t.or_default("state", default_state);
    let cpus = t.or_default("cpus", default_cpus);
    let memory = t.or_default("memory", default_memory);
    if memory.bytes() < MIN_MEMORY || !memory.bytes().is_multiple_of(ByteSize::MIB) {
        let msg = format!(
            "memory {} must be at least 16MiB and a whole number of MiB",
            *memory
        );
        t.cx().diags.error(memory.span, msg);
    }
    let machine = t.or_default("machine", default_machine);
    let firmware = t.or_default("firmware", default_firmware);
    let restart = t.or_default("restart", default_restart);
    let stop_timeout = t.or_default("stop_timeout", default_stop_timeout);
    let disks = t.list("disk");
    let nics = t.list("nic");
    let cloud_init = t.optional::<CloudInit>("cloud_init").map(|c| c.value);
    let snapshots = t.optional::<SnapshotSchedule>("snapshots").map(|s| s.value);
    let named_snapshots: Vec<Spanned<NamedSnapshot>> = t.list("snapshot");
    let mut seen = std::collections::BTreeSet::new();
    for snapshot in &named_snapshots {
        if !seen.insert(snapshot.name.as_str()) {
            let msg = format!("snapshot \"{}\" is declared twice", *snapshot.name);
            t.cx().diags.error(snapshot.name.span, msg);
        }
    }
    let boot = t.optional::<DirectBoot>("boot").map(|b| b.value);
    Some(Vm {
        node,
        state,
        cpus,
        memory,
        machine,
        firmware,
        restart,
        stop_timeout,
        disks,
        nics,
        cloud_init,
        snapshots,
        named_snapshots,
        boot,
    })
}
decode_table!(Vm, read_vm);

/// A snapshot of every disk of the VM, taken once under this name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedSnapshot {
    /// The snapshot's name, e.g. "base"; `clone:<vm>/disk<N>@<name>` refers to it.
    pub name: Spanned<SnapshotName>,
}

fn read_named_snapshot(t: &mut Table) -> Option<NamedSnapshot> {
    let name = t.required("name");
    Some(NamedSnapshot { name: name? })
}
decode_table!(NamedSnapshot, read_named_snapshot);

/// Direct kernel boot (QEMU `-kernel`, `-initrd`, `-append`), for
/// appliances and test guests that need no boot loader. The files are
/// read on the node running the VM when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectBoot {
    /// Absolute path of the kernel image on the node.
    pub kernel: Spanned<AbsPath>,
    /// Absolute path of the initial ramdisk on the node.
    pub initrd: Option<Spanned<AbsPath>>,
    /// Kernel command line.
    pub cmdline: Option<Spanned<String>>,
}

fn read_direct_boot(t: &mut Table) -> Option<DirectBoot> {
    let kernel = t.required("kernel");
    let initrd = t.optional("initrd");
    let cmdline = t.optional("cmdline");
    Some(DirectBoot {
        kernel: kernel?,
        initrd,
        cmdline,
    })
}
decode_table!(DirectBoot, read_direct_boot);

/// One virtual disk, a volume on a storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// The storage holding the volume: a `storage/<name>.toml`.
    pub storage: Spanned<ResourceName>,
    /// Volume size, in whole MiB. Growing it resizes the volume; shrinking is refused.
    pub size: Spanned<ByteSize>,
    /// How the disk is attached: virtio-blk, virtio-scsi or AHCI.
    #[serde(default = "default_bus")]
    pub bus: Spanned<DiskBus>,
    /// What the volume starts from instead of being empty.
    pub source: Option<Spanned<DiskSource>>,
}

fn default_bus() -> Spanned<DiskBus> {
    Spanned::builtin(DiskBus::Virtio)
}

fn read_disk(t: &mut Table) -> Option<Disk> {
    let storage = t.required("storage");
    let size = t.required::<ByteSize>("size");
    if let Some(size) = &size
        && (size.bytes() == 0 || !size.bytes().is_multiple_of(ByteSize::MIB))
    {
        let msg = format!(
            "disk size {} must be a positive whole number of MiB",
            **size
        );
        t.cx().diags.error(size.span, msg);
    }
    let bus = t.or_default("bus", default_bus);
    let source = t.optional("source");
    Some(Disk {
        storage: storage?,
        size: size?,
        bus,
        source,
    })
}
decode_table!(Disk, read_disk);

/// Where a new disk's contents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// `image:<file>`: an image file converted into the volume.
    Image(String),
    /// `clone:<vm>/disk<N>@<snapshot>`: a linked clone of another VM's disk snapshot.
    Clone {
        vm: ResourceName,
        disk: u32,
        snapshot: String,
    },
}

impl fmt::Display for DiskSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskSource::Image(file) => write!(f, "image:{file}"),
            DiskSource::Clone { vm, disk, snapshot } => {
                write!(f, "clone:{vm}/disk{disk}@{snapshot}")
            }
        }
    }
}

impl ParseStr for DiskSource {
    const EXPECTED: &'static str = "a disk source such as \"image:debian-12.qcow2\"";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        let usage = "write \"image:<file>\" or \"clone:<vm>/disk<N>@<snapshot>\"";
        if let Some(file) = s.strip_prefix("image:") {
            let plain = !file.is_empty() && !file.contains('/') && !file.starts_with('.');
            return if plain {
                Ok(DiskSource::Image(file.to_string()))
            } else {
                Err(ValueError::new(format!("invalid image name \"{file}\""))
                    .hint("an image is a file name in /var/lib/horcrux/images on the node, without '/'"))
            };
        }
        if let Some(rest) = s.strip_prefix("clone:") {
            let parsed = rest.split_once('/').and_then(|(vm, rest)| {
                let (disk, snapshot) = rest.split_once('@')?;
                let disk = disk.strip_prefix("disk")?.parse().ok()?;
                let snapshot_ok = !snapshot.is_empty()
                    && snapshot
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
                snapshot_ok.then(|| (vm, disk, snapshot.to_string()))
            });
            let (vm, disk, snapshot) = parsed.ok_or_else(|| {
                ValueError::new(format!("invalid clone source \"{s}\"")).hint(usage)
            })?;
            return Ok(DiskSource::Clone {
                vm: ResourceName::parse_str(vm)?,
                disk,
                snapshot,
            });
        }
        Err(ValueError::new(format!("invalid disk source \"{s}\"")).hint(usage))
    }
}
crate::types::string_value!(
    DiskSource,
    "disk source",
    "\"image:<file>\" or \"clone:<vm>/disk<N>@<snapshot>\"."
);

/// One network card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// The network to attach to: a `networks/<name>.toml`.
    pub network: Spanned<ResourceName>,
    /// Fixed MAC address. When absent, one is derived from the cluster,
    /// VM name and NIC index, so it is stable across nodes and restarts.
    pub mac: Option<Spanned<MacAddr>>,
    /// Emulated network card.
    #[serde(default = "default_nic_model")]
    pub model: Spanned<NicModel>,
    /// Security groups (`firewall/<name>.toml`). Empty means no filtering.
    #[serde(default)]
    pub firewall: Vec<Spanned<ResourceName>>,
}

fn default_nic_model() -> Spanned<NicModel> {
    Spanned::builtin(NicModel::Virtio)
}

fn read_nic(t: &mut Table) -> Option<Nic> {
    let network = t.required("network");
    let mac = t.optional("mac");
    let model = t.or_default("model", default_nic_model);
    let firewall = t.list("firewall");
    Some(Nic {
        network: network?,
        mac,
        model,
        firewall,
    })
}
decode_table!(Nic, read_nic);

/// The NoCloud seed given to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudInit {
    /// User to create; when absent the image's default user gets the keys.
    pub user: Option<Spanned<ResourceName>>,
    /// SSH public keys authorised for that user.
    #[serde(default)]
    pub ssh_keys: Vec<Spanned<SshPublicKey>>,
    /// Guest networking on the first NIC.
    #[serde(default = "default_guest_network")]
    pub network: Spanned<GuestNetwork>,
}

fn default_guest_network() -> Spanned<GuestNetwork> {
    Spanned::builtin(GuestNetwork::Dhcp)
}

fn read_cloud_init(t: &mut Table) -> Option<CloudInit> {
    let user = t.optional("user");
    let ssh_keys = t.list("ssh_keys");
    let network = t.or_default("network", default_guest_network);
    Some(CloudInit {
        user,
        ssh_keys,
        network,
    })
}
decode_table!(CloudInit, read_cloud_init);

/// Guest network configuration: `"dhcp"` or `"<address/prefix> via <gateway>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestNetwork {
    Dhcp,
    Static { address: IfaceAddr, gateway: IpAddr },
}

impl fmt::Display for GuestNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestNetwork::Dhcp => f.write_str("dhcp"),
            GuestNetwork::Static { address, gateway } => write!(f, "{address} via {gateway}"),
        }
    }
}

impl ParseStr for GuestNetwork {
    const EXPECTED: &'static str = "\"dhcp\" or \"<address/prefix> via <gateway>\"";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        if s == "dhcp" {
            return Ok(GuestNetwork::Dhcp);
        }
        let Some((address, gateway)) = s.split_once(" via ") else {
            return Err(ValueError::new(format!("invalid guest network \"{s}\""))
                .hint("write \"dhcp\" or \"192.0.2.10/24 via 192.0.2.1\""));
        };
        let address = IfaceAddr::parse_str(address.trim())?;
        let gateway = IpAddr::parse_str(gateway.trim())?;
        if !address.contains(gateway) {
            return Err(ValueError::new(format!(
                "gateway {gateway} is not inside {address}"
            )));
        }
        Ok(GuestNetwork::Static { address, gateway })
    }
}
crate::types::string_value!(
    GuestNetwork,
    "guest network",
    "\"dhcp\" or \"<address/prefix> via <gateway>\", e.g. \"192.0.2.10/24 via 192.0.2.1\"."
);

/// A snapshot schedule: one snapshot of every disk each `every`, keeping
/// the newest `keep`. Only snapshots Horcrux made are ever pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSchedule {
    /// Interval between snapshots, at least one minute.
    pub every: Spanned<Duration>,
    /// How many scheduled snapshots to keep (1 to 10000).
    pub keep: Spanned<SnapshotKeep>,
}

fn read_snapshots(t: &mut Table) -> Option<SnapshotSchedule> {
    let every = t.required::<Duration>("every");
    if let Some(every) = &every
        && every.get().as_secs() < 60
    {
        t.cx().diags.error(
            every.span,
            format!("snapshot interval {} is shorter than one minute", **every),
        );
    }
    let keep = t.required("keep");
    Some(SnapshotSchedule {
        every: every?,
        keep: keep?,
    })
}
decode_table!(SnapshotSchedule, read_snapshots);

/// A locally administered unicast MAC from a hash of scope, VM and index:
/// 46 random bits keep collisions unlikely even at 10,000 VMs (validation
/// still rejects any that happen).
pub fn derived_mac(scope: &str, vm: &str, index: usize) -> MacAddr {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("horcrux-mac\0{scope}\0{vm}\0{index}"));
    let mut octets = [0u8; 6];
    octets.copy_from_slice(&digest[..6]);
    octets[0] = (octets[0] & 0xfc) | 0x02;
    MacAddr(octets)
}
