//! Reading a config root from disk: limits, odd files, symlinks, ignored
//! files and the errors of an unusable root.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use horcrux_config::load::MAX_FILE_SIZE;
use horcrux_config::{Checked, LoadError, load};
use tempfile::TempDir;

fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

/// A temporary root holding the single-node base tree.
fn base_root() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, content) in SINGLE {
        write(dir.path(), path, content);
    }
    dir
}

/// Loads `root` on another thread, failing if that takes more than 10s
/// (a FIFO being opened or a symlink loop being walked forever).
fn load_within_timeout(root: &Path) -> Checked {
    let root = root.to_path_buf();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(load(&root));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("loading the tree hangs")
        .expect("the root is readable")
}

#[test]
fn base_tree_on_disk_is_valid() {
    let dir = base_root();
    let checked = load(dir.path()).expect("loads");
    assert_valid(&checked.errors);
    assert_eq!(checked.config.sources.len(), SINGLE.len());
}

#[test]
fn files_over_one_mib_are_rejected() {
    let dir = base_root();
    let limit = usize::try_from(MAX_FILE_SIZE).expect("fits");
    // A valid TOML comment of exactly the limit is accepted...
    write(
        dir.path(),
        "cluster/vms/edge.toml",
        format!("#{}", "x".repeat(limit - 1)),
    );
    assert_valid(&load(dir.path()).expect("loads").errors);
    // ...one byte more is not, and is not read.
    write(
        dir.path(),
        "cluster/vms/big.toml",
        format!("#{}", "x".repeat(limit)),
    );
    assert_only(
        &load(dir.path()).expect("loads").errors,
        whole(
            "cluster/vms/big.toml",
            "file is 1048577 bytes; the limit is 1 MiB",
        ),
    );
}

#[test]
fn an_unreadable_file_is_reported_once() {
    // A VM whose storage file is too large: the storage exists, so only the
    // file is reported, not the reference to it.
    let dir = base_root();
    let limit = usize::try_from(MAX_FILE_SIZE).expect("fits");
    write(
        dir.path(),
        "cluster/storage/local.toml",
        "#".repeat(limit + 1),
    );
    assert_only(
        &load(dir.path()).expect("loads").errors,
        whole("cluster/storage/local.toml", "the limit is 1 MiB"),
    );
}

#[test]
fn non_utf8_files_are_rejected() {
    let dir = base_root();
    write(dir.path(), "cluster/vms/bin.toml", b"cpus = \"\xff\"\n");
    assert_only(
        &load(dir.path()).expect("loads").errors,
        whole("cluster/vms/bin.toml", "file is not valid UTF-8"),
    );
}

#[test]
fn symlinks_leaving_the_root_are_errors() {
    let dir = base_root();
    let outside = tempfile::tempdir().expect("tempdir");
    write(outside.path(), "x.toml", "cpus = 1\n");
    write(outside.path(), "groups/web.toml", FW_WEB);
    symlink(
        outside.path().join("x.toml"),
        dir.path().join("cluster/vms/ext.toml"),
    )
    .expect("ln");
    fs::remove_dir_all(dir.path().join("cluster/firewall")).expect("rm");
    symlink(
        outside.path().join("groups"),
        dir.path().join("cluster/firewall"),
    )
    .expect("ln");

    let errors = load(dir.path()).expect("loads").errors;
    assert_errors(
        &errors,
        &[
            whole(
                "cluster/firewall",
                "symlink points outside the config directory",
            ),
            whole(
                "cluster/vms/ext.toml",
                "symlink points outside the config directory",
            ),
            // The directory was not read, so the VM's group does not exist.
            at(
                "cluster/vms/web.toml",
                10,
                13,
                "firewall `web` does not exist",
            ),
        ],
    );
}

#[test]
fn symlinks_inside_the_root_are_followed() {
    let dir = base_root();
    // A file symlink next to its target (an isolated bridge: two networks
    // may not bridge the same uplink).
    fs::write(
        dir.path().join("cluster/networks/iso.toml"),
        "kind = \"bridge\"\n",
    )
    .expect("write");
    symlink("iso.toml", dir.path().join("cluster/networks/iso2.toml")).expect("ln");
    // A directory symlink to a dot-directory (which is not walked itself).
    let vms = dir.path().join("cluster/vms");
    fs::rename(&vms, dir.path().join(".vms-real")).expect("mv");
    symlink("../.vms-real", &vms).expect("ln");

    let checked = load(dir.path()).expect("loads");
    assert_valid(&checked.errors);
    let names: Vec<&str> = checked.config.networks.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["iso", "iso2", "lan"]);
    let vms: Vec<&str> = checked.config.vms.keys().map(|n| n.as_str()).collect();
    assert_eq!(vms, ["web"]);
}

#[test]
fn broken_symlinks_are_errors() {
    let dir = base_root();
    symlink("nothing.toml", dir.path().join("cluster/vms/gone.toml")).expect("ln");
    // A symlink to itself cannot be resolved either.
    symlink("self.toml", dir.path().join("cluster/vms/self.toml")).expect("ln");
    assert_errors(
        &load_within_timeout(dir.path()).errors,
        &[
            whole("cluster/vms/gone.toml", "broken symlink"),
            whole("cluster/vms/self.toml", "broken symlink"),
        ],
    );
}

#[test]
fn symlink_loops_between_directories_do_not_hang() {
    let dir = base_root();
    let a = dir.path().join("cluster/a");
    let b = dir.path().join("cluster/b");
    fs::create_dir_all(&a).expect("mkdir");
    fs::create_dir_all(&b).expect("mkdir");
    symlink("../b", a.join("to-b")).expect("ln");
    symlink("../a", b.join("to-a")).expect("ln");
    symlink(".", dir.path().join("cluster/vms/again")).expect("ln");
    symlink("..", dir.path().join("cluster/networks/up")).expect("ln");
    assert_valid(&load_within_timeout(dir.path()).errors);
}

#[test]
fn a_fifo_is_not_a_regular_file_and_is_never_opened() {
    let dir = base_root();
    let fifo = dir.path().join("cluster/vms/x.toml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo failed");
    assert_only(
        &load_within_timeout(dir.path()).errors,
        whole("cluster/vms/x.toml", "not a regular file"),
    );
}

#[test]
fn dotfiles_other_files_and_secrets_are_ignored() {
    let dir = base_root();
    let garbage = "[[[ this is not TOML";
    write(dir.path(), ".git/config", garbage);
    write(dir.path(), ".git/x.toml", garbage);
    write(dir.path(), "cluster/vms/.web.toml.swp", garbage);
    write(dir.path(), "cluster/vms/.draft.toml", garbage);
    write(dir.path(), "cluster/vms/notes.txt", garbage);
    write(dir.path(), "cluster/vms/README", garbage);
    write(dir.path(), "cluster/.hidden/x.toml", garbage);
    write(dir.path(), "secrets/gossip.key", "not a key");
    write(dir.path(), "secrets/bad.toml", garbage);
    write(dir.path(), "secrets/nested/Bad_Name.toml", garbage);
    let checked = load(dir.path()).expect("loads");
    assert_valid(&checked.errors);
    assert_eq!(checked.config.sources.len(), SINGLE.len());
}

#[test]
fn a_missing_root_is_a_load_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("nope");
    match load(&root) {
        Err(LoadError::Missing(path)) => assert_eq!(path, root),
        other => panic!("expected LoadError::Missing, got {other:?}"),
    }
}

#[test]
fn a_file_as_root_is_a_load_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("node.toml");
    fs::write(&root, NODE).expect("write");
    match load(&root) {
        Err(LoadError::NotADirectory(path)) => assert_eq!(path, root),
        other => panic!("expected LoadError::NotADirectory, got {other:?}"),
    }
}

#[test]
fn symlinks_into_secrets_are_refused_unread() {
    let dir = base_root();
    write(dir.path(), "secrets/gossip.key", "key = \"very secret\"\n");
    symlink(
        dir.path().join("secrets/gossip.key"),
        dir.path().join("cluster/vms/leak.toml"),
    )
    .expect("ln");
    let errors = load(dir.path()).expect("loads").errors;
    assert_only(
        &errors,
        whole(
            "cluster/vms/leak.toml",
            "symlink points into secrets/, which is never read",
        ),
    );
    assert!(
        errors
            .iter()
            .all(|e| !format!("{e:?}").contains("very secret"))
    );
}
