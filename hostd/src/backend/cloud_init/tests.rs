//! Golden tests of the NoCloud documents, and the image and writer.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;

use horcrux_config::Config;
use horcrux_config::decode::ParseStr;
use horcrux_config::types::ResourceName;

use super::*;
use crate::backend::test_support::config;

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop";
const KEY_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl backup";

fn name(vm: &str) -> ResourceName {
    ResourceName::parse_str(vm).unwrap()
}

/// A one-node tree with VM `web`, whose file is `vm` (a `[[nic]]` on
/// `lan` is available).
fn tree(vm: &str) -> Config {
    config(&[
        ("node.toml", "name = \"node1\"\n"),
        ("cluster/networks/lan.toml", "kind = \"bridge\"\n"),
        ("cluster/vms/web.toml", vm),
    ])
}

fn docs(vm: &str) -> SeedDocs {
    vm_seed_docs(&tree(vm), &name("web")).expect("web has a [cloud_init] section")
}

const NIC: &str = "[[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:12:34:56\"\n";

#[test]
fn dhcp_with_user() {
    let docs = docs(&format!(
        "{NIC}[cloud_init]\nuser = \"ops\"\nssh_keys = [\"{KEY_A}\", \"{KEY_B}\"]\n"
    ));
    let uuid = naming::vm_uuid("node1", "web");
    assert!(
        docs.meta_data
            .starts_with(&format!("instance-id: \"horcrux-{uuid}-")),
        "{}",
        docs.meta_data
    );
    assert_eq!(
        docs.meta_data,
        format!("instance-id: \"horcrux-{uuid}-ef5d028ae2af\"\nlocal-hostname: \"web\"\n")
    );
    assert_eq!(
        docs.user_data,
        format!(
            r#"#cloud-config
users:
  - name: "ops"
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys:
      - "{KEY_A}"
      - "{KEY_B}"
"#
        )
    );
    assert_eq!(
        docs.network_config,
        r#"version: 2
ethernets:
  nic0:
    match:
      macaddress: "52:54:00:12:34:56"
    dhcp4: true
"#
    );
}

#[test]
fn static_without_user_gives_the_default_user_the_keys() {
    let docs = docs(&format!(
        "{NIC}[cloud_init]\nssh_keys = [\"{KEY_A}\"]\nnetwork = \"192.0.2.10/24 via 192.0.2.1\"\n"
    ));
    assert_eq!(
        docs.user_data,
        format!("#cloud-config\nssh_authorized_keys:\n  - \"{KEY_A}\"\n")
    );
    assert_eq!(
        docs.network_config,
        r#"version: 2
ethernets:
  nic0:
    match:
      macaddress: "52:54:00:12:34:56"
    dhcp4: false
    addresses:
      - "192.0.2.10/24"
    routes:
      - to: "0.0.0.0/0"
        via: "192.0.2.1"
"#
    );
}

#[test]
fn static_ipv6_routes_the_v6_default() {
    let docs = docs(&format!(
        "{NIC}[cloud_init]\nnetwork = \"2001:db8::10/64 via 2001:db8::1\"\n"
    ));
    assert!(
        docs.network_config
            .ends_with("      - \"2001:db8::10/64\"\n    routes:\n      - to: \"::/0\"\n        via: \"2001:db8::1\"\n"),
        "{}",
        docs.network_config
    );
    // Neither a user nor keys: an empty but valid cloud-config.
    assert_eq!(docs.user_data, "#cloud-config\n");
}

#[test]
fn derived_mac_of_the_first_nic_is_matched() {
    let config = tree(
        "[[nic]]\nnetwork = \"lan\"\n[[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:00:00:02\"\n[cloud_init]\n",
    );
    let vm = config.vms.get(&name("web")).unwrap();
    let mac = config.nic_mac(&name("web"), 0, &vm.nics[0].value);
    let docs = vm_seed_docs(&config, &name("web")).unwrap();
    assert!(
        docs.network_config
            .contains(&format!("macaddress: \"{mac}\"\n")),
        "{}",
        docs.network_config
    );
    assert!(!docs.network_config.contains("52:54:00:00:00:02"));
}

#[test]
fn without_nics_no_interface_is_configured() {
    let docs = docs("[cloud_init]\n");
    assert_eq!(docs.network_config, "version: 2\nethernets: {}\n");
}

#[test]
fn no_section_no_seed() {
    assert_eq!(vm_seed_docs(&tree(NIC), &name("web")), None);
    assert_eq!(vm_seed_docs(&tree(NIC), &name("nope")), None);
}

#[test]
fn instance_id_and_hash_change_with_the_section_and_only_then() {
    let base = format!("{NIC}[cloud_init]\nuser = \"ops\"\nssh_keys = [\"{KEY_A}\"]\n");
    let variants = [
        format!("{NIC}[cloud_init]\nuser = \"admin\"\nssh_keys = [\"{KEY_A}\"]\n"),
        format!("{NIC}[cloud_init]\nuser = \"ops\"\nssh_keys = [\"{KEY_B}\"]\n"),
        format!("{NIC}[cloud_init]\nuser = \"ops\"\nssh_keys = [\"{KEY_A}\", \"{KEY_B}\"]\n"),
        format!("{NIC}[cloud_init]\nssh_keys = [\"{KEY_A}\"]\n"),
        format!(
            "{NIC}[cloud_init]\nuser = \"ops\"\nssh_keys = [\"{KEY_A}\"]\nnetwork = \"192.0.2.10/24 via 192.0.2.1\"\n"
        ),
        base.replace("52:54:00:12:34:56", "52:54:00:12:34:57"),
    ];
    let original = docs(&base);
    let id = |d: &SeedDocs| d.meta_data.lines().next().unwrap().to_string();
    for variant in &variants {
        let changed = docs(variant);
        assert_ne!(id(&changed), id(&original), "{variant}");
        assert_ne!(changed.content_hash(), original.content_hash(), "{variant}");
    }
    // Unrelated changes (memory, comments, key order in the file) keep both.
    let same = docs(&format!(
        "memory = \"512MiB\"\n# a comment\n[cloud_init]\nssh_keys = [\"{KEY_A}\"]\nuser = \"ops\"\n{NIC}"
    ));
    assert_eq!(same, original);
    assert_eq!(same.content_hash(), original.content_hash());
    assert_eq!(original.content_hash().len(), 16);
}

#[test]
fn instance_id_is_scoped_by_the_vm_uuid() {
    let section = format!("{NIC}[cloud_init]\n");
    let a = docs(&section);
    let other = config(&[
        ("node.toml", "name = \"node2\"\n"),
        ("cluster/networks/lan.toml", "kind = \"bridge\"\n"),
        ("cluster/vms/web.toml", &section),
    ]);
    let b = vm_seed_docs(&other, &name("web")).unwrap();
    assert_ne!(a.meta_data, b.meta_data);
    assert!(b.meta_data.contains(&naming::vm_uuid("node2", "web")));
}

#[test]
fn strings_cannot_break_out_of_their_yaml_scalar() {
    assert_eq!(yaml_str("plain"), "\"plain\"");
    assert_eq!(yaml_str("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(yaml_str("x\ny"), r#""x\u000ay""#);
    assert_eq!(yaml_str("\u{7f}\u{85}é"), r#""\u007f\u0085\u00e9""#);
    assert_eq!(yaml_str("🦀"), r#""\U0001f980""#);
    // A key comment with a newline and YAML syntax stays one list item.
    let key = normalize_key("ssh-ed25519 AAAA x\n- evil: \"yes\"");
    let text = user_data(None, &[key]);
    assert_eq!(
        text,
        "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAA x - evil: \\\"yes\\\"\"\n"
    );
}

/// The image read back with the same crate: label in the boot sector and
/// in the root directory (blkid reads the latter), the three files.
#[test]
fn image_is_a_labelled_fat_with_the_three_files() {
    let docs = docs(&format!(
        "{NIC}[cloud_init]\nuser = \"ops\"\nssh_keys = [\"{KEY_A}\"]\n"
    ));
    let image = seed_image(&docs).unwrap();
    assert_eq!(image.len() % (1 << 20), 0);
    let fs = fatfs::FileSystem::new(Cursor::new(image.clone()), fatfs::FsOptions::new()).unwrap();
    assert_eq!(fs.volume_label(), "cidata");
    assert_eq!(
        fs.read_volume_label_from_root_dir().unwrap().as_deref(),
        Some("cidata")
    );
    let mut names = Vec::new();
    for entry in fs.root_dir().iter() {
        let entry = entry.unwrap();
        let mut text = String::new();
        entry.to_file().read_to_string(&mut text).unwrap();
        let expected = docs
            .files()
            .into_iter()
            .find(|(n, _)| *n == entry.file_name())
            .map(|(_, t)| t.to_string());
        assert_eq!(Some(text), expected, "{}", entry.file_name());
        names.push(entry.file_name());
    }
    assert_eq!(names, ["meta-data", "user-data", "network-config"]);
    // Deterministic: the same documents give the same bytes.
    assert_eq!(seed_image(&docs).unwrap(), image);
}

#[test]
fn large_documents_get_a_larger_image() {
    // Config files are capped at 1 MiB, but the image must not assume it.
    let mut docs = docs("[cloud_init]\n");
    docs.user_data = format!("#cloud-config\n# {}\n", "x".repeat(3 << 20));
    let image = seed_image(&docs).unwrap();
    assert!(image.len() > 3 << 20);
    let fs = fatfs::FileSystem::new(Cursor::new(image), fatfs::FsOptions::new()).unwrap();
    let mut text = String::new();
    fs.root_dir()
        .open_file("user-data")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, docs.user_data);
}

#[test]
fn write_seed_is_atomic_and_skips_unchanged_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud-init.img");
    let first = docs(&format!("{NIC}[cloud_init]\nuser = \"ops\"\n"));
    assert_eq!(write_seed(&path, &first).unwrap(), SeedWrite::Written);
    let written = fs::metadata(&path).unwrap();
    assert_eq!(written.mode() & 0o777, 0o644);
    assert_eq!(fs::read(&path).unwrap(), seed_image(&first).unwrap());

    // Same documents: the very same file (inode) stays in place.
    assert_eq!(write_seed(&path, &first).unwrap(), SeedWrite::Unchanged);
    assert_eq!(fs::metadata(&path).unwrap().ino(), written.ino());

    // A QEMU that has the old seed open keeps reading the old image.
    let mut open_by_qemu = fs::File::open(&path).unwrap();
    let second = docs(&format!("{NIC}[cloud_init]\nuser = \"admin\"\n"));
    assert_eq!(write_seed(&path, &second).unwrap(), SeedWrite::Written);
    assert_ne!(fs::metadata(&path).unwrap().ino(), written.ino());
    assert_eq!(fs::read(&path).unwrap(), seed_image(&second).unwrap());
    let mut old = Vec::new();
    open_by_qemu.read_to_end(&mut old).unwrap();
    assert_eq!(old, seed_image(&first).unwrap());

    // A damaged file is replaced even though the documents did not change.
    fs::write(&path, b"garbage").unwrap();
    assert_eq!(write_seed(&path, &second).unwrap(), SeedWrite::Written);
    assert_eq!(fs::read(&path).unwrap(), seed_image(&second).unwrap());

    // No temporary files are left behind.
    let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn write_seed_reports_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("cloud-init.img");
    let err = write_seed(&path, &docs("[cloud_init]\n")).unwrap_err();
    assert!(matches!(err, SeedError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}
