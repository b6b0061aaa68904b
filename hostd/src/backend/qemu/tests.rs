//! Golden tests of the QEMU argv: exact vectors, so any change of a VM's
//! command line is a reviewed change.

use horcrux_config::Config;
use horcrux_config::decode::ParseStr;
use horcrux_config::types::ResourceName;

use super::argv::{ArgvError, vm_argv};
use crate::backend::naming::Layout;
use crate::backend::test_support::config;

/// The expected argv, one argument per whitespace-separated word.
fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn argv(config: &Config, vm: &str) -> Vec<String> {
    vm_argv(config, &name(vm), &Layout::default()).unwrap()
}

fn name(vm: &str) -> ResourceName {
    ResourceName::parse_str(vm).unwrap()
}

const ZFS: (&str, &str) = (
    "cluster/storage/local-zfs.toml",
    "kind = \"zfs\"\npool = \"tank/vms\"\n",
);
const DIR: (&str, &str) = (
    "cluster/storage/scratch.toml",
    "kind = \"dir\"\npath = \"/srv/images\"\n",
);
const LAN: (&str, &str) = ("cluster/networks/lan.toml", "kind = \"bridge\"\n");

#[test]
fn virtio_uefi_kvm() {
    let config = config(&[
        ("node.toml", "name = \"node1\"\n[zfs]\npools = [\"tank\"]\n"),
        ZFS,
        LAN,
        (
            "cluster/vms/web.toml",
            r#"cpus = 2
memory = "2GiB"
[[disk]]
storage = "local-zfs"
size = "20GiB"
[[disk]]
storage = "local-zfs"
size = "1GiB"
[[nic]]
network = "lan"
"#,
        ),
    ]);
    let expected = words(
        "qemu-system-x86_64
        -name web,debug-threads=on
        -uuid 491d303e-8ab5-5314-8091-90ab9d556e47
        -machine q35,accel=kvm -cpu host -smp 2 -m 2048
        -nodefaults -no-user-config
        -display none -vnc unix:/run/horcrux/vm/web/vnc.sock
        -chardev socket,id=serial0,path=/run/horcrux/vm/web/serial.sock,server=on,wait=off
        -serial chardev:serial0
        -qmp unix:/run/horcrux/vm/web/qmp.sock,server=on,wait=off
        -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny
        -chardev socket,id=qga0,path=/run/horcrux/vm/web/qga.sock,server=on,wait=off
        -device virtio-serial-pci,id=vser0
        -device virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0
        -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
        -drive if=pflash,format=raw,unit=1,file=/var/lib/horcrux/vm/web/OVMF_VARS.fd
        -object iothread,id=io0
        -blockdev driver=host_device,node-name=drive0-file,filename=/dev/zvol/tank/vms/vm-web-disk0,cache.direct=on,discard=unmap
        -blockdev driver=raw,node-name=drive0,file=drive0-file,cache.direct=on,discard=unmap
        -device virtio-blk-pci,id=disk0,drive=drive0,iothread=io0,bootindex=0
        -object iothread,id=io1
        -blockdev driver=host_device,node-name=drive1-file,filename=/dev/zvol/tank/vms/vm-web-disk1,cache.direct=on,discard=unmap
        -blockdev driver=raw,node-name=drive1,file=drive1-file,cache.direct=on,discard=unmap
        -device virtio-blk-pci,id=disk1,drive=drive1,iothread=io1,bootindex=1
        -netdev tap,id=net0,ifname=hxe91f5536n0,script=no,downscript=no,vhost=on
        -device virtio-net-pci,id=nic0,netdev=net0,mac=fa:9f:91:61:e2:2f",
    );
    assert_eq!(argv(&config, "web"), expected);
}

#[test]
fn scsi_sata_bios_tcg_two_nic_models() {
    let config = config(&[
        ("node.toml", "name = \"node1\"\n[qemu]\naccel = \"tcg\"\n"),
        DIR,
        LAN,
        (
            "cluster/vms/db.toml",
            r#"cpus = 4
memory = "512MiB"
machine = "pc"
firmware = "bios"
[[disk]]
storage = "scratch"
size = "10GiB"
bus = "scsi"
[[disk]]
storage = "scratch"
size = "10GiB"
bus = "sata"
[[disk]]
storage = "scratch"
size = "10GiB"
bus = "scsi"
[[nic]]
network = "lan"
model = "e1000"
mac = "52:54:00:12:34:56"
[[nic]]
network = "lan"
model = "rtl8139"
"#,
        ),
    ]);
    let expected = words(
        "qemu-system-x86_64
        -name db,debug-threads=on
        -uuid 811b18b1-88b0-5c2e-8a22-516838bf0ed9
        -machine pc,accel=tcg -cpu max -smp 4 -m 512
        -nodefaults -no-user-config
        -display none -vnc unix:/run/horcrux/vm/db/vnc.sock
        -chardev socket,id=serial0,path=/run/horcrux/vm/db/serial.sock,server=on,wait=off
        -serial chardev:serial0
        -qmp unix:/run/horcrux/vm/db/qmp.sock,server=on,wait=off
        -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny
        -chardev socket,id=qga0,path=/run/horcrux/vm/db/qga.sock,server=on,wait=off
        -device virtio-serial-pci,id=vser0
        -device virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0
        -device virtio-scsi-pci,id=scsi0
        -device ahci,id=ahci0
        -blockdev driver=file,node-name=drive0-file,filename=/srv/images/vm-db-disk0.qcow2,cache.direct=on,discard=unmap
        -blockdev driver=qcow2,node-name=drive0,file=drive0-file,cache.direct=on,discard=unmap
        -device scsi-hd,id=disk0,bus=scsi0.0,channel=0,scsi-id=0,lun=0,drive=drive0,bootindex=0
        -blockdev driver=file,node-name=drive1-file,filename=/srv/images/vm-db-disk1.qcow2,cache.direct=on,discard=unmap
        -blockdev driver=qcow2,node-name=drive1,file=drive1-file,cache.direct=on,discard=unmap
        -device ide-hd,id=disk1,bus=ahci0.0,drive=drive1,bootindex=1
        -blockdev driver=file,node-name=drive2-file,filename=/srv/images/vm-db-disk2.qcow2,cache.direct=on,discard=unmap
        -blockdev driver=qcow2,node-name=drive2,file=drive2-file,cache.direct=on,discard=unmap
        -device scsi-hd,id=disk2,bus=scsi0.0,channel=0,scsi-id=1,lun=0,drive=drive2,bootindex=2
        -netdev tap,id=net0,ifname=hxc6116bf2n0,script=no,downscript=no
        -device e1000,id=nic0,netdev=net0,mac=52:54:00:12:34:56
        -netdev tap,id=net1,ifname=hxc6116bf2n1,script=no,downscript=no
        -device rtl8139,id=nic1,netdev=net1,mac=1e:c2:18:52:f3:a2",
    );
    assert_eq!(argv(&config, "db"), expected);
}

#[test]
fn cloud_init_seed_is_attached_read_only() {
    let config = config(&[
        ("node.toml", "name = \"node1\"\n[qemu]\naccel = \"tcg\"\n"),
        DIR,
        (
            "cluster/vms/ci.toml",
            r#"firmware = "bios"
memory = "256MiB"
[[disk]]
storage = "scratch"
size = "1GiB"
[cloud_init]
user = "ops"
"#,
        ),
    ]);
    let argv = argv(&config, "ci");
    let tail = words(
        "-object iothread,id=io0
        -blockdev driver=file,node-name=drive0-file,filename=/srv/images/vm-ci-disk0.qcow2,cache.direct=on,discard=unmap
        -blockdev driver=qcow2,node-name=drive0,file=drive0-file,cache.direct=on,discard=unmap
        -device virtio-blk-pci,id=disk0,drive=drive0,iothread=io0,bootindex=0
        -blockdev driver=file,node-name=cidata-file,filename=/run/horcrux/vm/ci/cloud-init.img,read-only=on
        -blockdev driver=raw,node-name=cidata,file=cidata-file,read-only=on
        -device virtio-blk-pci,id=cidata0,drive=cidata",
    );
    assert_eq!(argv[argv.len() - tail.len()..], tail[..]);
    // The seed no longer needs the AHCI controller (see `disks`).
    assert!(!argv.iter().any(|a| a.starts_with("ahci")), "{argv:?}");
    assert!(!argv.iter().any(|a| a.contains("pflash")), "{argv:?}");
}

#[test]
fn layout_roots_are_parameters() {
    let config = config(&[
        ("node.toml", "name = \"node1\"\n"),
        ("cluster/vms/web.toml", "memory = \"256MiB\"\n"),
    ]);
    let layout = Layout::new("/tmp/r", "/tmp/s");
    let argv = vm_argv(&config, &name("web"), &layout).unwrap();
    assert!(argv.contains(&"unix:/tmp/r/vm/web/qmp.sock,server=on,wait=off".to_string()));
    assert!(
        argv.contains(&"if=pflash,format=raw,unit=1,file=/tmp/s/vm/web/OVMF_VARS.fd".to_string())
    );
}

#[test]
fn commas_in_paths_are_doubled_for_qemu() {
    let config = config(&[
        ("node.toml", "name = \"node1\"\n"),
        (
            "cluster/storage/odd.toml",
            "kind = \"dir\"\npath = \"/srv/a,b\"\n",
        ),
        (
            "cluster/vms/web.toml",
            "[[disk]]\nstorage = \"odd\"\nsize = \"1GiB\"\n",
        ),
    ]);
    let argv = argv(&config, "web");
    assert!(
        argv.iter()
            .any(|a| a.contains("filename=/srv/a,,b/vm-web-disk0.qcow2,")),
        "{argv:?}"
    );
}

#[test]
fn more_than_six_ahci_devices_is_an_error() {
    // The seed is on virtio-blk, so it takes no AHCI port.
    let sata = "[[disk]]\nstorage = \"scratch\"\nsize = \"1GiB\"\nbus = \"sata\"\n";
    let full = format!("[cloud_init]\n{}", sata.repeat(6));
    let vm = format!("{full}{sata}");
    let config = config(&[
        ("node.toml", "name = \"node1\"\n"),
        DIR,
        ("cluster/vms/full.toml", &full),
        ("cluster/vms/big.toml", &vm),
    ]);
    assert!(vm_argv(&config, &name("full"), &Layout::default()).is_ok());
    let err = vm_argv(&config, &name("big"), &Layout::default()).unwrap_err();
    assert!(
        matches!(err, ArgvError::TooManyAhci { needed: 7, .. }),
        "{err}"
    );
}

#[test]
fn direct_kernel_boot_passes_files_and_cmdline_verbatim() {
    let config = config(&[
        ("node.toml", "name = \"node1\"\n"),
        (
            "cluster/vms/tiny.toml",
            "firmware = \"bios\"\n[boot]\nkernel = \"/srv/boot/vmlinuz\"\n\
             initrd = \"/srv/boot/initrd,1.gz\"\ncmdline = \"console=ttyS0 panic=-1\"\n",
        ),
    ]);
    let argv = argv(&config, "tiny");
    let at = argv.iter().position(|a| a == "-kernel").unwrap();
    assert_eq!(
        argv[at..at + 6],
        [
            "-kernel",
            "/srv/boot/vmlinuz",
            "-initrd",
            "/srv/boot/initrd,1.gz",
            "-append",
            "console=ttyS0 panic=-1"
        ]
    );
}

#[test]
fn disks_boot_after_a_direct_kernel_boot() {
    // QEMU's linuxboot option ROM holds bootindex 0 (found by the e2e
    // suite: "The bootindex 0 has already been used").
    let config = config(&[
        ("node.toml", "name = \"node1\"\n"),
        (
            "cluster/storage/local.toml",
            "kind = \"dir\"\npath = \"/srv\"\n",
        ),
        (
            "cluster/vms/tiny.toml",
            "firmware = \"bios\"\n[[disk]]\nstorage = \"local\"\nsize = \"64MiB\"\n\
             [boot]\nkernel = \"/srv/boot/vmlinuz\"\n",
        ),
    ]);
    let argv = argv(&config, "tiny");
    let disk = argv.iter().find(|a| a.contains("id=disk0")).unwrap();
    assert!(disk.ends_with(",bootindex=1"), "{disk}");
}

#[test]
fn without_boot_table_there_is_no_kernel() {
    let config = config(&[
        ("node.toml", "name = \"node1\"\n"),
        ("cluster/vms/web.toml", ""),
    ]);
    let argv = argv(&config, "web");
    assert!(!argv.iter().any(|a| a == "-kernel" || a == "-append"));
}

#[test]
fn every_vm_has_the_guest_agent_channel() {
    let config = config(&[
        ("node.toml", "name = \"node1\"\n"),
        ("cluster/vms/web.toml", "memory = \"256MiB\"\n"),
    ]);
    let layout = Layout::new("/tmp/r,x", "/tmp/s");
    let argv = vm_argv(&config, &name("web"), &layout).unwrap();
    let at = argv
        .iter()
        .position(|a| a.starts_with("socket,id=qga0,"))
        .expect("the agent's chardev");
    assert_eq!(
        argv[at - 1..at + 5],
        words(
            "-chardev socket,id=qga0,path=/tmp/r,,x/vm/web/qga.sock,server=on,wait=off
            -device virtio-serial-pci,id=vser0
            -device virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"
        )[..]
    );
    // The port name is what qemu-guest-agent opens in the guest
    // (/dev/virtio-ports/org.qemu.guest_agent.0); the socket is where
    // `qemu::qga` connects.
    assert_eq!(
        layout.qga_socket("web").to_str(),
        Some("/tmp/r,x/vm/web/qga.sock")
    );
}
