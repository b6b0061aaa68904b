//! A VM's hardware as the operator wrote it (CPUs, memory, disks, NICs,
//! ...): the fields whose change needs a restart of a running VM.
//!
//! The spec travels with the QEMU process: the unit puts it, hex-encoded,
//! in the environment (`HORCRUX_VM_SPEC=`), so hostd reads what a running
//! VM was *started* with from `/proc/<pid>/environ`, not what its unit
//! file says now. Only user-facing settings are in it, so a hostd upgrade
//! that changes how argv is built never marks VMs as needing a restart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use horcrux_config::Config;
use horcrux_config::model::Vm;
use horcrux_config::types::ResourceName;

use crate::backend::cloud_init;

/// The environment variable carrying the spec.
pub const SPEC_VAR: &str = "HORCRUX_VM_SPEC";

/// Field name -> display value, e.g. `memory` -> `2GiB`.
pub type Spec = BTreeMap<String, String>;

/// The spec of VM `name` as its file describes it.
pub fn vm_spec(config: &Config, name: &ResourceName, vm: &Vm) -> Spec {
    let mut spec = Spec::new();
    spec.insert("cpus".into(), vm.cpus.get().to_string());
    spec.insert("memory".into(), vm.memory.to_string());
    spec.insert("machine".into(), vm.machine.as_str().into());
    spec.insert("firmware".into(), vm.firmware.as_str().into());
    // A disk's size is not here: growing it is live (the storage backend
    // resizes the volume and tells QEMU), and its source only matters
    // when the volume is created.
    for (index, disk) in vm.disks.iter().enumerate() {
        let value = format!("{} {}", *disk.storage, disk.bus.as_str());
        spec.insert(format!("disk{index}"), value);
    }
    for (index, nic) in vm.nics.iter().enumerate() {
        let mac = config.nic_mac(name, index, nic);
        let value = format!("{} {mac} {}", *nic.network, nic.model.as_str());
        spec.insert(format!("nic{index}"), value);
    }
    if let Some(boot) = &vm.boot {
        let mut value = format!("kernel {}", *boot.kernel);
        if let Some(initrd) = &boot.initrd {
            let _ = write!(value, " initrd {}", **initrd);
        }
        if let Some(cmdline) = &boot.cmdline {
            let _ = write!(value, " cmdline {:?}", cmdline.as_str());
        }
        spec.insert("boot".into(), value);
    }
    if let Some(seed) = cloud_init::vm_seed_docs(config, name) {
        // QEMU keeps the seed open: a new one is read at the next boot.
        spec.insert("cloud_init".into(), seed.content_hash());
    }
    spec
}

/// The spec as an environment value: hex of its JSON, so no quoting rule
/// of systemd (`%`, `$`, quotes) can touch it.
pub fn encode(spec: &Spec) -> String {
    crate::backend::hex(serde_json::to_string(spec).unwrap_or_default().as_bytes())
}

/// The spec from an environment value; `None` for anything [`encode`]
/// did not write (a process environment is outside input).
pub fn decode(hex: &str) -> Option<Spec> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    serde_json::from_slice(&bytes?).ok()
}

/// The spec in a NUL-separated environment block (`/proc/<pid>/environ`).
pub fn from_environ(environ: &[u8]) -> Option<Spec> {
    let prefix = format!("{SPEC_VAR}=");
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(decode)
}

/// The spec in a unit file's `Environment=` line.
pub fn from_unit_text(text: &str) -> Option<Spec> {
    let prefix = format!("Environment={SPEC_VAR}=");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| decode(value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::config;
    use horcrux_config::decode::ParseStr;

    fn spec_of(files: &[(&str, &str)], vm: &str) -> Spec {
        let config = config(files);
        let name = ResourceName::parse_str(vm).unwrap();
        vm_spec(&config, &name, &config.vms[&name])
    }

    #[test]
    fn spec_lists_what_the_operator_wrote() {
        let spec = spec_of(
            &[
                ("node.toml", "name = \"n1\"\n[uplinks]\nlan = \"eth0\"\n"),
                (
                    "cluster/storage/scratch.toml",
                    "kind = \"dir\"\npath = \"/srv\"\n",
                ),
                ("cluster/networks/lan.toml", "kind = \"bridge\"\n"),
                (
                    "cluster/vms/web.toml",
                    "cpus = 2\nmemory = \"512MiB\"\n[[disk]]\nstorage = \"scratch\"\nsize = \"4GiB\"\n\
                     [[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:00:00:01\"\n\
                     [boot]\nkernel = \"/k\"\ncmdline = \"console=ttyS0 a=\\\"b\\\"\"\n",
                ),
            ],
            "web",
        );
        let expected: Spec = [
            ("boot", "kernel /k cmdline \"console=ttyS0 a=\\\"b\\\"\""),
            ("cpus", "2"),
            ("disk0", "scratch virtio"),
            ("firmware", "uefi"),
            ("machine", "q35"),
            ("memory", "512MiB"),
            ("nic0", "lan 52:54:00:00:00:01 virtio"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(spec, expected);
    }

    #[test]
    fn encoding_round_trips_through_environ_and_unit_text() {
        let spec = spec_of(
            &[
                ("node.toml", "name = \"n1\"\n"),
                (
                    "cluster/vms/odd.toml",
                    "[boot]\nkernel = \"/k\"\ncmdline = \"100% $HOME \\\"q\\\"\"\n",
                ),
            ],
            "odd",
        );
        let hex = encode(&spec);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let environ = format!("PATH=/bin\0{SPEC_VAR}={hex}\0LANG=C\0");
        assert_eq!(from_environ(environ.as_bytes()), Some(spec.clone()));
        let unit = format!("[Service]\nEnvironment={SPEC_VAR}={hex}\nExecStart=q\n");
        assert_eq!(from_unit_text(&unit), Some(spec));
    }

    #[test]
    fn garbage_decodes_to_nothing() {
        for bad in ["", "0", "zz", "7b", "7b7d7d", "\u{e9}\u{e9}"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(from_environ(b"HORCRUX_VM_SPEC=\xff\xfe\0"), None);
        assert_eq!(from_environ(b"OTHER=1\0"), None);
    }
}
