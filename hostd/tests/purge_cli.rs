//! `horcrux purge vm`: refuses while the VM is defined, lists before it
//! deletes, deletes exactly the VM's disks and state, and is idempotent.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Command;

fn purge(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_horcrux"))
        .args(["purge", "vm"])
        .args(args)
        .arg("--config-dir")
        .arg(root.join("etc"))
        .arg("--state-dir")
        .arg(root.join("state"))
        .arg("--run-dir")
        .arg(root.join("run"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn purge_deletes_only_what_a_removed_vm_left() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let images = root.join("images");
    write(&root.join("etc/node.toml"), "name = \"n1\"\n");
    write(
        &root.join("etc/cluster/storage/scratch.toml"),
        &format!("kind = \"dir\"\npath = \"{}\"\n", images.display()),
    );
    let disk = "[[disk]]\nstorage = \"scratch\"\nsize = \"1GiB\"\n";
    write(&root.join("etc/cluster/vms/web.toml"), disk);
    write(&root.join("etc/cluster/vms/db.toml"), disk);
    for file in ["vm-web-disk0.qcow2", "vm-db-disk0.qcow2"] {
        write(&images.join(file), "data");
    }
    write(&root.join("state/vm/web/OVMF_VARS.fd"), "vars");

    let (code, _, err) = purge(root, &["web", "--yes"]);
    assert_eq!(code, 1);
    assert!(err.contains("VM web is still defined"), "{err}");
    assert!(images.join("vm-web-disk0.qcow2").exists());

    std::fs::remove_file(root.join("etc/cluster/vms/web.toml")).unwrap();
    let (code, out, _) = purge(root, &["web"]);
    assert_eq!(code, 1, "without --yes nothing is deleted");
    assert!(out.contains("would delete, for VM web:"), "{out}");
    assert!(
        out.contains("vm-web-disk0.qcow2") && out.contains("state/vm/web"),
        "{out}"
    );
    assert!(images.join("vm-web-disk0.qcow2").exists());

    let (code, out, err) = purge(root, &["web", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted"), "{out}");
    assert!(!images.join("vm-web-disk0.qcow2").exists());
    assert!(!root.join("state/vm/web").exists());
    assert!(
        images.join("vm-db-disk0.qcow2").exists(),
        "other VMs' disks stay"
    );

    let (code, out, _) = purge(root, &["web", "--yes"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "nothing left of VM web on this node\n")
    );
}

#[test]
fn purge_refuses_on_an_invalid_tree() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("etc/node.toml"),
        "name = \"n1\"\ncolour = 1\n",
    );
    let (code, _, err) = purge(dir.path(), &["web", "--yes"]);
    assert_eq!(code, 1);
    assert!(err.contains("is invalid"), "{err}");
}
