//! The cloud-init seed in a real guest: hostd's seed image, attached with
//! exactly the arguments `vm_argv` generates, is found by its `cidata`
//! label and mounted by the tiny guest's kernel (`support/guest.rs`, Debian's
//! cloud kernel under QEMU TCG), which prints the documents on its serial
//! console. The guest's NIC is the one `vm_argv` renders (with the derived
//! MAC) on a user-mode backend instead of a tap, so the test can check
//! that network-config matches the NIC the guest really has.
//! Skipped with a note when qemu-system-x86_64 is missing, except in CI.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "support/guest.rs"]
mod guest;

use guest::{BOOT_TIMEOUT, Vm, VmConfig};
use horcrux_config::decode::ParseStr;
use horcrux_config::types::ResourceName;
use horcrux_config::{Config, TreeFile, check_files};
use horcrux_hostd::backend::Layout;
use horcrux_hostd::backend::cloud_init::{SeedWrite, vm_seed_docs, write_seed};
use horcrux_hostd::backend::qemu::vm_argv;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop";

const DONE: &str = "CIDATA-DONE";

/// Runs in the guest: find and mount the seed by label, print it.
const SCRIPT: &str = r#"
dev=$(findfs LABEL=cidata) || echo "findfs: no cidata"
echo "cidata-device=$dev"
echo "cidata-ro=$(cat /sys/class/block/${dev#/dev/}/ro)"
mount -o ro LABEL=cidata /mnt && echo "cidata-mounted: $(grep ' /mnt ' /proc/mounts | cut -d' ' -f3)"
for f in meta-data user-data network-config; do
    echo "==begin $f=="
    cat /mnt/$f
    echo "==end $f=="
done
echo "guest-mac=$(cat /sys/class/net/eth0/address)"
echo CIDATA-DONE
"#;

fn config() -> Config {
    let files = [
        (
            "node.toml",
            "name = \"node1\"\n[qemu]\naccel = \"tcg\"\n".to_string(),
        ),
        (
            "cluster/networks/lan.toml",
            "kind = \"bridge\"\n".to_string(),
        ),
        (
            "cluster/vms/ci.toml",
            format!(
                "firmware = \"bios\"\nmemory = \"256MiB\"\n[[nic]]\nnetwork = \"lan\"\n\
                 [cloud_init]\nuser = \"ops\"\nssh_keys = [\"{KEY}\"]\n\
                 network = \"192.0.2.10/24 via 192.0.2.1\"\n"
            ),
        ),
    ];
    let files = files
        .into_iter()
        .map(|(path, text)| TreeFile {
            path: path.to_string(),
            content: Ok(text.into_bytes()),
        })
        .collect();
    check_files(files).into_valid().unwrap()
}

/// The arguments of `argv` that carry `needle` in their value, with their
/// flags.
fn args_with(argv: &[String], needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pair in argv.windows(2) {
        if pair[0].starts_with('-') && pair[1].contains(needle) {
            out.extend_from_slice(pair);
        }
    }
    out
}

/// The text between the markers of document `name` on the console.
fn document(console: &str, name: &str) -> String {
    let begin = format!("==begin {name}==\n");
    let end = format!("==end {name}==");
    let start = console
        .find(&begin)
        .unwrap_or_else(|| panic!("no {name} on the console:\n{console}"))
        + begin.len();
    let len = console[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("{name} not finished:\n{console}"));
    console[start..start + len].to_string()
}

#[test]
fn the_guest_mounts_the_seed_by_label_and_reads_every_document() {
    if !guest::qemu_available() {
        return;
    }
    let config = config();
    let vm = ResourceName::parse_str("ci").unwrap();
    let run = tempfile::tempdir().unwrap();
    let layout = Layout::new(run.path().join("run"), run.path().join("state"));

    let docs = vm_seed_docs(&config, &vm).unwrap();
    let seed = layout.cloud_init_seed("ci");
    std::fs::create_dir_all(seed.parent().unwrap()).unwrap();
    assert_eq!(write_seed(&seed, &docs).unwrap(), SeedWrite::Written);

    let argv = vm_argv(&config, &vm, &layout).unwrap();
    let mut extra = args_with(&argv, "cidata");
    assert_eq!(extra.len(), 6, "two -blockdev and one -device: {extra:?}");
    assert!(extra.iter().any(|a| a.contains(&*seed.to_string_lossy())));
    // The NIC as rendered, on a backend that needs no tap.
    let nic = args_with(&argv, "netdev=net0");
    assert_eq!(nic.len(), 2, "{argv:?}");
    extra.extend(["-netdev".to_string(), "user,id=net0".to_string()]);
    extra.extend(nic);

    let guest = guest::tiny_guest(SCRIPT);
    let mut qemu = Vm::spawn(
        &guest,
        &VmConfig {
            extra_args: extra,
            ..VmConfig::default()
        },
    );
    let took = qemu.wait_for(DONE, BOOT_TIMEOUT);
    eprintln!("timing: QEMU start to the seed printed under TCG: {took:.2?}");
    // The serial console turns every \n into \r\n.
    let console = qemu.serial_output().replace("\r\n", "\n");
    let report = qemu.report();

    assert!(console.contains("cidata-device=/dev/vda\n"), "{report}");
    assert!(console.contains("cidata-ro=1\n"), "read-only: {report}");
    assert!(console.contains("cidata-mounted: vfat\n"), "{report}");
    assert_eq!(document(&console, "meta-data"), docs.meta_data);
    assert_eq!(document(&console, "user-data"), docs.user_data);
    assert_eq!(document(&console, "network-config"), docs.network_config);

    // What the documents say, as the guest saw it.
    let user_data = document(&console, "user-data");
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    assert!(user_data.contains("  - name: \"ops\"\n"), "{user_data}");
    assert!(user_data.contains(KEY), "{user_data}");
    assert!(
        document(&console, "meta-data").contains("local-hostname: \"ci\"\n"),
        "{console}"
    );
    let spec = config.vms.get(&vm).unwrap();
    let mac = config.nic_mac(&vm, 0, &spec.nics[0].value).to_string();
    assert!(
        console.contains(&format!("guest-mac={mac}\n")),
        "the guest's NIC has the MAC hostd renders: {report}"
    );
    assert!(
        document(&console, "network-config").contains(&format!("macaddress: \"{mac}\"")),
        "{console}"
    );
}
