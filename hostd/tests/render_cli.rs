//! The real `horcrux render` binary on the example trees.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn horcrux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_horcrux"))
        .args(args)
        .output()
        .unwrap()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn render_json_of_cluster_3_node2() {
    let dir = example("cluster-3");
    let out = horcrux(&[
        "render",
        "--config-dir",
        dir.to_str().unwrap(),
        "--node",
        "node2",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["units", "qemu", "nftables", "volumes", "links"]);
    // node2 has db (a zvol and a scratch qcow2) and web-2 (a zvol).
    let volumes = json["volumes"].as_array().unwrap();
    let summary: Vec<(String, String, u64)> = volumes
        .iter()
        .map(|v| {
            let place = v["dataset"].as_str().or(v["file"].as_str()).unwrap();
            (
                v["vm"].as_str().unwrap().to_string(),
                place.to_string(),
                v["size_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("db".into(), "tank/vms/vm-db-disk0".into(), 100 << 30),
            (
                "db".into(),
                "/var/lib/horcrux/scratch/vm-db-disk1.qcow2".into(),
                50 << 30
            ),
            ("web-2".into(), "tank/vms/vm-web-2-disk0".into(), 20 << 30),
        ]
    );

    // db's NIC is filtered by its group; the ruleset is one transaction.
    let nft = json["nftables"].as_str().unwrap();
    assert!(nft.contains("delete table bridge horcrux\n"), "{nft}");
    let db_tap = "hxc6116bf2n0";
    assert!(nft.contains(&format!("chain to-{db_tap} {{")), "{nft}");
    // The overlay spans the members: node2's own address is the VXLAN's
    // local end, the two others are flooded to.
    let links = json["links"].as_array().unwrap();
    let vxlan = links.iter().find(|l| l["kind"] == "vxlan").unwrap();
    assert_eq!(vxlan["vni"], 100);
    assert_eq!(vxlan["local"], "10.0.0.12");
    assert_eq!(
        vxlan["flood"],
        serde_json::json!(["10.0.0.11", "10.0.0.13"])
    );
    let tap = links.iter().find(|l| l["name"] == db_tap).unwrap();
    assert_eq!(tap["master"], "hxb-overlay");
    assert!(
        links.iter().all(|l| l["vm"] != "web-1"),
        "web-1 runs on node1: {links:?}"
    );

    // db and web-2 run on node2; web-1 (node1) and web-3 (node3) do not.
    let units: Vec<&String> = json["units"].as_object().unwrap().keys().collect();
    assert_eq!(units, ["horcrux-vm-db.service", "horcrux-vm-web-2.service"]);
    let vms: Vec<&String> = json["qemu"].as_object().unwrap().keys().collect();
    assert_eq!(vms, ["db", "web-2"]);

    let db = strings(&json["qemu"]["db"]);
    assert_eq!(db[0], "qemu-system-x86_64");
    assert!(db.windows(2).any(|w| w == ["-smp", "4"]), "{db:?}");
    assert!(db.windows(2).any(|w| w == ["-m", "8192"]), "{db:?}");
    let disk = |needle: &str| db.iter().position(|a| a.contains(needle)).unwrap();
    let zvol = disk("filename=/dev/zvol/tank/vms/vm-db-disk0,");
    let qcow = disk("filename=/var/lib/horcrux/scratch/vm-db-disk1.qcow2,");
    assert!(zvol < qcow, "disks out of order: {db:?}");
    assert!(
        db.iter()
            .any(|a| a.starts_with("ide-hd,id=disk1,bus=ahci0.0,"))
    );
    assert!(!db.contains(&"-daemonize"));

    let unit = json["units"]["horcrux-vm-db.service"].as_str().unwrap();
    assert!(unit.contains("ExecStart=qemu-system-x86_64 \\\n"), "{unit}");
    // stop_timeout = "5m" plus the 30 s margin.
    assert!(unit.contains("\nTimeoutStopSec=330s\n"), "{unit}");
}

#[test]
fn render_text_defaults_to_the_node_of_node_toml() {
    let dir = example("single-node");
    let out = horcrux(&["render", "--config-dir", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("==> /run/systemd/system/horcrux-vm-www.service <=="),
        "{text}"
    );
}

#[test]
fn render_of_an_unknown_node_fails_and_lists_members() {
    let dir = example("cluster-3");
    let out = horcrux(&[
        "render",
        "--config-dir",
        dir.to_str().unwrap(),
        "--node",
        "node9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node `node9` is not a member; members: node1, node2, node3"),
        "{err}"
    );
}

#[test]
fn render_of_an_invalid_tree_fails_with_the_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("node.toml"), "name = \"n1\"\ncolour = 1\n").unwrap();
    let out = horcrux(&["render", "--config-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("node.toml:2:1"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the config tree is invalid"));
}
