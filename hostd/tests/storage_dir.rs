//! The storage backend on dir storage against the real `qemu-img`: qcow2
//! volumes are created, imported from an image, grown, never shrunk and
//! never deleted, and a second apply plans nothing. (ZFS volumes need the
//! appliance: the e2e suite covers them on a real pool.)

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "support/converge.rs"]
mod converge;

use std::path::{Path, PathBuf};
use std::process::Command;

use horcrux_config::Config;
use horcrux_hostd::backend::naming::Layout;
use horcrux_hostd::backend::storage::StorageBackend;
use horcrux_hostd::plan::{Op, Plan, ResourceKind};

const MIB: u64 = 1 << 20;
const MARKER: &[u8] = b"horcrux-image!";

struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let node = Node {
            dir: tempfile::tempdir().unwrap(),
        };
        node.file("node.toml", "name = \"n1\"\n");
        let storage = format!("kind = \"dir\"\npath = \"{}\"\n", node.disks().display());
        node.file("cluster/storage/files.toml", &storage);
        node
    }

    fn disks(&self) -> PathBuf {
        self.dir.path().join("disks")
    }

    fn layout(&self) -> Layout {
        Layout::new(self.dir.path().join("run"), self.dir.path().join("state"))
    }

    fn file(&self, path: &str, text: &str) {
        let path = self.dir.path().join("etc").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.path().join("etc").join(path)).unwrap();
    }

    /// A stopped VM `name` with the given `[[disk]]` bodies.
    fn vm(&self, name: &str, disks: &[&str]) {
        let mut text = String::from("state = \"stopped\"\n");
        for disk in disks {
            text.push_str(&format!("[[disk]]\nstorage = \"files\"\n{disk}\n"));
        }
        self.file(&format!("cluster/vms/{name}.toml"), &text);
    }

    fn config(&self) -> Config {
        match horcrux_config::load(&self.dir.path().join("etc"))
            .unwrap()
            .into_valid()
        {
            Ok(config) => config,
            Err(errors) => panic!("invalid tree: {errors:#?}"),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn plan(&self) -> Plan {
        let backend = StorageBackend::new(self.layout(), None);
        Node::runtime().block_on(converge::plan_once(&backend, &self.config()))
    }

    /// Plans and applies every action in order; the plan and the errors.
    fn try_converge(&self) -> (Plan, Vec<String>) {
        let backend = StorageBackend::new(self.layout(), None);
        Node::runtime().block_on(converge::apply_once(&backend, &self.config()))
    }

    fn converge(&self) -> Plan {
        let (plan, errors) = self.try_converge();
        assert!(errors.is_empty(), "apply failed: {errors:#?}\n{plan:#?}");
        let again = self.plan();
        assert!(again.is_empty(), "not idempotent: {again:#?}");
        plan
    }

    /// An image in `<state>/images/` whose content starts with MARKER.
    fn image(&self, name: &str, size_mib: u64) {
        let images = self.layout().images_dir();
        std::fs::create_dir_all(&images).unwrap();
        let raw = self.dir.path().join("seed.raw");
        let mut content = MARKER.to_vec();
        content.resize(usize::try_from(size_mib * MIB).unwrap(), 0);
        std::fs::write(&raw, content).unwrap();
        qemu_img(
            &["convert", "-q", "-f", "raw", "-O", "qcow2"],
            &[&raw, &images.join(name)],
        );
    }
}

fn qemu_img(args: &[&str], paths: &[&Path]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .args(paths)
        .output()
        .expect("qemu-img (apt-get install qemu-utils)");
    assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn virtual_size(file: &Path) -> u64 {
    let json = qemu_img(&["info", "-U", "--output=json"], &[file]);
    let info: serde_json::Value = serde_json::from_str(&json).unwrap();
    info["virtual-size"].as_u64().unwrap()
}

/// The first bytes of a qcow2 volume's guest-visible content.
fn head(file: &Path, dir: &Path) -> Vec<u8> {
    let raw = dir.join("head.raw");
    qemu_img(&["convert", "-q", "-O", "raw"], &[file, &raw]);
    let content = std::fs::read(&raw).unwrap();
    content[..MARKER.len()].to_vec()
}

fn ops(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| {
            let op = match a.op {
                Op::Create => "create",
                Op::Update { .. } => "update",
                Op::Delete => "delete",
            };
            format!("{op} {}", a.id)
        })
        .collect()
}

#[test]
fn volumes_are_created_imported_grown_and_kept() {
    let node = Node::new();
    node.image("seed.qcow2", 8);
    node.vm(
        "web",
        &[
            "size = \"64MiB\"",
            "size = \"32MiB\"\nsource = \"image:seed.qcow2\"",
        ],
    );
    let created = node.converge();
    assert_eq!(
        ops(&created),
        [
            "create volume files/vm-web-disk0",
            "create volume files/vm-web-disk1"
        ]
    );
    let disk0 = node.disks().join("vm-web-disk0.qcow2");
    let disk1 = node.disks().join("vm-web-disk1.qcow2");
    assert_eq!(virtual_size(&disk0), 64 * MIB);
    // The 8 MiB image, grown to the disk's size, with the image's content.
    assert_eq!(virtual_size(&disk1), 32 * MIB);
    assert_eq!(head(&disk1, node.dir.path()), MARKER);
    assert!(!node.disks().join("vm-web-disk1.qcow2.importing").exists());

    // Grow: a stopped VM's file is resized by qemu-img.
    node.vm(
        "web",
        &[
            "size = \"128MiB\"",
            "size = \"32MiB\"\nsource = \"image:seed.qcow2\"",
        ],
    );
    assert_eq!(ops(&node.converge()), ["update volume files/vm-web-disk0"]);
    assert_eq!(virtual_size(&disk0), 128 * MIB);
    assert_eq!(head(&disk1, node.dir.path()), MARKER, "disk 1 untouched");

    // Shrink: this tree alone is valid, but the volume is never shrunk.
    node.vm(
        "web",
        &[
            "size = \"64MiB\"",
            "size = \"32MiB\"\nsource = \"image:seed.qcow2\"",
        ],
    );
    let (plan, errors) = node.try_converge();
    assert_eq!(ops(&plan), ["update volume files/vm-web-disk0"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("never shrunk"), "{errors:?}");
    assert!(errors[0].contains("128MiB"), "{errors:?}");
    assert_eq!(virtual_size(&disk0), 128 * MIB);

    // Removing the VM deletes nothing: volumes keep data.
    node.remove("cluster/vms/web.toml");
    let plan = node.plan();
    assert!(plan.is_empty(), "{plan:#?}");
    assert!(disk0.exists() && disk1.exists());
}

#[test]
fn an_image_that_does_not_fit_or_does_not_exist_writes_nothing() {
    let node = Node::new();
    node.image("big.qcow2", 16);
    node.vm("small", &["size = \"8MiB\"\nsource = \"image:big.qcow2\""]);
    node.vm(
        "lost",
        &["size = \"8MiB\"\nsource = \"image:nowhere.qcow2\""],
    );
    let (plan, mut errors) = node.try_converge();
    assert_eq!(
        plan.actions
            .iter()
            .filter(|a| a.id.kind == ResourceKind::Volume)
            .count(),
        2
    );
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("big.qcow2 is 16MiB"), "{errors:?}");
    assert!(
        errors[1].contains("nowhere.qcow2") && errors[1].contains("does not exist"),
        "{errors:?}"
    );
    let left: Vec<_> = std::fs::read_dir(node.disks())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing may be written: {left:?}");
}

#[test]
fn an_unreadable_disk_file_does_not_hide_the_others() {
    let node = Node::new();
    node.vm("good", &["size = \"8MiB\""]);
    node.vm("bad", &["size = \"8MiB\""]);
    std::fs::create_dir_all(node.disks()).unwrap();
    std::fs::write(
        node.disks().join("vm-bad-disk0.qcow2"),
        b"QFI\xfbnot really",
    )
    .unwrap();
    let (plan, errors) = node.try_converge();
    // The good disk is made; the bad one is never overwritten: its grow
    // check cannot read it and says why.
    assert!(
        ops(&plan).contains(&"create volume files/vm-good-disk0".to_string()),
        "{plan:#?}"
    );
    assert!(node.disks().join("vm-good-disk0.qcow2").exists());
    assert_eq!(
        std::fs::read(node.disks().join("vm-bad-disk0.qcow2")).unwrap(),
        b"QFI\xfbnot really"
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
}
