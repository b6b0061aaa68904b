//! Cross-file rules: references, placement, node-local facts, uniqueness,
//! trust, the file layout, the example trees and derived MAC addresses.

mod common;

use std::path::Path;

use common::*;
use horcrux_config::model::vm::derived_mac;
use horcrux_config::types::ResourceName;
use horcrux_config::{TreeFile, check_files, load};

// ---------------------------------------------------------------------------
// References

#[test]
fn references_to_missing_files() {
    let vm = r#"[[disk]]
storage = "locl"
size = "20GiB"

[[disk]]
storage = "fast"
size = "20GiB"
source = "clone:tmpl/disk0@base"

[[nic]]
network = "wan"
firewall = ["webb", "db"]
"#;
    let container = r#"image = "docker.io/library/redis:7"
network = "wan"

[[volumes]]
storage = "locl"
size = "1GiB"
path = "/data"
"#;
    let diags = single(&[
        ("cluster/vms/web.toml", vm),
        ("cluster/containers/cache.toml", container),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/containers/cache.toml",
                2,
                11,
                "network `wan` does not exist",
            )
            .hint("create cluster/networks/wan.toml"),
            at(
                "cluster/containers/cache.toml",
                5,
                11,
                "storage `locl` does not exist",
            )
            .hint("did you mean `local`?"),
            at(
                "cluster/vms/web.toml",
                2,
                11,
                "storage `locl` does not exist",
            )
            .hint("did you mean `local`?"),
            at(
                "cluster/vms/web.toml",
                6,
                11,
                "storage `fast` does not exist",
            )
            .hint("create cluster/storage/fast.toml"),
            at(
                "cluster/vms/web.toml",
                8,
                10,
                "clone source VM `tmpl` does not exist",
            ),
            at(
                "cluster/vms/web.toml",
                11,
                11,
                "network `wan` does not exist",
            )
            .hint("create cluster/networks/wan.toml"),
            at(
                "cluster/vms/web.toml",
                12,
                13,
                "firewall `webb` does not exist",
            )
            .hint("did you mean `web`?"),
            at(
                "cluster/vms/web.toml",
                12,
                21,
                "firewall `db` does not exist",
            )
            .hint("create cluster/firewall/db.toml"),
        ],
    );

    let vm = r#"[[disk]]
storage = "local"
size = "20GiB"

[[disk]]
storage = "local"
size = "20GiB"
source = "clone:tmpl/disk0@base"

[[nic]]
network = "lan"
firewall = ["web"]
"#;
    let container = r#"image = "docker.io/library/redis:7"
network = "lan"

[[volumes]]
storage = "local"
size = "1GiB"
path = "/data"
"#;
    assert_valid(&single(&[
        ("cluster/vms/web.toml", vm),
        ("cluster/vms/tmpl.toml", TEMPLATE),
        ("cluster/containers/cache.toml", container),
    ]));
}

#[test]
fn references_to_files_with_errors_are_not_reported_again() {
    let vm = r#"[[disk]]
storage = "broken"
size = "1GiB"

[[disk]]
storage = "local"
size = "1GiB"
source = "clone:c/disk0@s"

[[nic]]
network = "bad"
firewall = ["fw"]
"#;
    let diags = single(&[
        ("cluster/storage/broken.toml", "kind = \"zfs\"\npool = \n"),
        ("cluster/networks/bad.toml", "kind = \"bridg\"\n"),
        ("cluster/firewall/fw.toml", "[[rule]]\ndirection = \"in\"\n"),
        ("cluster/vms/c.toml", "cpus = \"x\"\n"),
        ("cluster/vms/web.toml", vm),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/firewall/fw.toml",
                1,
                1,
                "missing required key `action`",
            ),
            at("cluster/networks/bad.toml", 1, 8, "unknown value \"bridg\"")
                .hint("did you mean `bridge`?"),
            at("cluster/storage/broken.toml", 2, 8, "TOML syntax error"),
            at(
                "cluster/vms/c.toml",
                1,
                8,
                "expected an integer, found a string",
            ),
        ],
    );
}

#[test]
fn a_broken_node_toml_is_not_reported_as_missing() {
    let node = r#"name = "Node1"

[uplinks]
lan = "eth0"

[zfs]
pools = ["tank"]
"#;
    assert_only(
        &single(&[("node.toml", node)]),
        at("node.toml", 1, 8, "invalid name \"Node1\"").hint("did you mean `node1`?"),
    );
    assert_only(
        &single(&[("node.toml", "name = \n")]),
        at("node.toml", 1, 8, "TOML syntax error"),
    );

    // An unreadable node.toml: one whole-file error, nothing else.
    let mut files = tree(&merge(SINGLE, &[]));
    for f in &mut files {
        if f.path == "node.toml" {
            f.content = Err("cannot read: permission denied".into());
        }
    }
    assert_errors(
        &check_files(files).errors,
        &[whole("node.toml", "cannot read: permission denied")],
    );
}

#[test]
fn a_broken_cluster_toml_does_not_cause_placement_errors() {
    let cluster = r#"name = "Lab"

[[member]]
name = "node1"
address = "10.0.0.1"

[[member]]
name = "node2"
address = "10.0.0.2"

[trust]
require_signatures = false
"#;
    let db = r#"node = "node2"

[[disk]]
storage = "scratch"
size = "1GiB"
"#;
    let scratch = r#"kind = "dir"
path = "/srv/scratch"
nodes = ["node2"]
"#;
    let diags = clustered(&[
        ("cluster/cluster.toml", cluster),
        ("cluster/storage/scratch.toml", scratch),
        ("cluster/vms/db.toml", db),
        ("cluster/containers/ct.toml", "image = \"nginx\"\n"),
    ]);
    assert_only(
        &diags,
        at("cluster/cluster.toml", 1, 8, "invalid name \"Lab\"").hint("did you mean `lab`?"),
    );
}

// ---------------------------------------------------------------------------
// Placement

#[test]
fn vm_node_must_be_a_member() {
    let diags = clustered(&[
        ("cluster/vms/a.toml", "node = \"nod1\"\n"),
        ("cluster/vms/b.toml", "node = \"db7\"\n"),
        ("cluster/vms/c.toml", "cpus = 1\n"),
        ("cluster/containers/k.toml", "image = \"nginx\"\n"),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/containers/k.toml",
                1,
                1,
                "container `k` needs `node` in a cluster",
            )
            .hint("add `node = \"...\"`; members: node1, node2"),
            at(
                "cluster/vms/a.toml",
                1,
                8,
                "node `nod1` is not a cluster member",
            )
            .hint("did you mean `node1`?"),
            at(
                "cluster/vms/b.toml",
                1,
                8,
                "node `db7` is not a cluster member",
            )
            .hint("members: node1, node2"),
            at(
                "cluster/vms/c.toml",
                1,
                1,
                "VM `c` needs `node` in a cluster",
            )
            .hint("add `node = \"...\"`; members: node1, node2"),
        ],
    );
    assert_valid(&clustered(&[
        ("cluster/vms/a.toml", "node = \"node2\"\n"),
        (
            "cluster/containers/k.toml",
            "node = \"node1\"\nimage = \"nginx\"\n",
        ),
    ]));
}

#[test]
fn unclustered_vm_node_must_be_this_node() {
    assert_only(
        &single(&[("cluster/vms/a.toml", "node = \"node2\"\n")]),
        at("cluster/vms/a.toml", 1, 8, "node `node2` is unknown")
            .hint("this node is `node1`; without cluster/cluster.toml there is no other node"),
    );
    assert_valid(&single(&[("cluster/vms/a.toml", "node = \"node1\"\n")]));
}

#[test]
fn node_toml_name_must_be_a_member() {
    let node = r#"name = "edge"

[uplinks]
lan = "eth0"

[zfs]
pools = ["tank"]
"#;
    assert_only(
        &clustered(&[("node.toml", node)]),
        at(
            "node.toml",
            1,
            8,
            "node `edge` is not a member of cluster `lab`",
        )
        .hint("add a [[member]] for this node to cluster/cluster.toml"),
    );
    // node2 is a member; its node-local checks do not apply to node1's VM.
    let node2 = node.replace("edge", "node2");
    assert_valid(&clustered(&[("node.toml", &node2)]));
}

#[test]
fn storage_nodes_must_be_members() {
    let scratch = r#"kind = "dir"
path = "/srv/scratch"
nodes = ["node1", "node7"]
"#;
    assert_only(
        &clustered(&[("cluster/storage/scratch.toml", scratch)]),
        at(
            "cluster/storage/scratch.toml",
            3,
            19,
            "node `node7` is not a cluster member",
        ),
    );
    let single_scratch = "kind = \"dir\"\npath = \"/srv/scratch\"\nnodes = [\"node2\"]\n";
    assert_only(
        &single(&[("cluster/storage/scratch.toml", single_scratch)]),
        at(
            "cluster/storage/scratch.toml",
            3,
            10,
            "node `node2` is not a cluster member",
        ),
    );
    let ok = scratch.replace("node7", "node2");
    assert_valid(&clustered(&[("cluster/storage/scratch.toml", &ok)]));
}

#[test]
fn storage_must_be_available_on_the_vm_node() {
    let scratch = r#"kind = "dir"
path = "/srv/scratch"
nodes = ["node2"]
"#;
    let db = r#"node = "node1"

[[disk]]
storage = "scratch"
size = "1GiB"
"#;
    assert_only(
        &clustered(&[
            ("cluster/storage/scratch.toml", scratch),
            ("cluster/vms/db.toml", db),
        ]),
        at(
            "cluster/vms/db.toml",
            4,
            11,
            "storage `scratch` is not available on node `node1`",
        )
        .hint("storage `scratch` is on: node2"),
    );
    let db2 = db.replace("node1", "node2");
    assert_valid(&clustered(&[
        ("cluster/storage/scratch.toml", scratch),
        ("cluster/vms/db.toml", &db2),
    ]));
}

// ---------------------------------------------------------------------------
// Node-local checks

#[test]
fn uplinks_used_on_this_node_must_be_declared() {
    let wan = "kind = \"bridge\"\nuplink = \"wan\"\n";
    let on = |node: &str| format!("node = \"{node}\"\n\n[[nic]]\nnetwork = \"wan\"\n");
    let (a1, b1, a2) = (on("node1"), on("node1"), on("node2"));
    // Two VMs on this node use it: one error, at the network's uplink.
    assert_only(
        &clustered(&[
            ("cluster/networks/wan.toml", wan),
            ("cluster/vms/a.toml", &a1),
            ("cluster/vms/b.toml", &b1),
        ]),
        at(
            "cluster/networks/wan.toml",
            2,
            10,
            "uplink `wan` of network `wan` is not declared on this node",
        )
        .hint("add `wan = \"<interface>\"` under [uplinks] in node.toml"),
    );
    // Used only on another node, or not at all: nothing to check here.
    assert_valid(&clustered(&[
        ("cluster/networks/wan.toml", wan),
        ("cluster/vms/a.toml", &a2),
    ]));
    assert_valid(&clustered(&[("cluster/networks/wan.toml", wan)]));
    // A container on this (unclustered) node.
    assert_only(
        &single(&[
            ("cluster/networks/wan.toml", wan),
            (
                "cluster/containers/ct.toml",
                "image = \"nginx\"\nnetwork = \"wan\"\n",
            ),
        ]),
        at(
            "cluster/networks/wan.toml",
            2,
            10,
            "uplink `wan` of network `wan`",
        ),
    );
}

#[test]
fn zfs_pools_used_on_this_node_must_be_listed() {
    let fast = "kind = \"zfs\"\npool = \"nvme/vms\"\n";
    let on = |node: &str| {
        format!("node = \"{node}\"\n\n[[disk]]\nstorage = \"fast\"\nsize = \"1GiB\"\n")
    };
    let (a1, b1, a2) = (on("node1"), on("node1"), on("node2"));
    assert_only(
        &clustered(&[
            ("cluster/storage/fast.toml", fast),
            ("cluster/vms/a.toml", &a1),
            ("cluster/vms/b.toml", &b1),
        ]),
        at(
            "cluster/storage/fast.toml",
            2,
            8,
            "pool `nvme` of storage `fast` is not listed in node.toml [zfs] pools",
        )
        .hint("add \"nvme\" to `pools` under [zfs] in node.toml"),
    );
    assert_valid(&clustered(&[
        ("cluster/storage/fast.toml", fast),
        ("cluster/vms/a.toml", &a2),
    ]));
    assert_valid(&clustered(&[("cluster/storage/fast.toml", fast)]));
}

#[test]
fn zfs_pools_are_pools_not_datasets() {
    let node = r#"name = "node1"

[uplinks]
lan = "eth0"

[zfs]
pools = ["tank", "tank/vms"]
"#;
    assert_only(
        &single(&[("node.toml", node)]),
        at("node.toml", 7, 18, "\"tank/vms\" is a dataset, not a pool")
            .hint("list the pool \"tank\" here; datasets go in storage files"),
    );
}

#[test]
fn management_gateway() {
    let head = "name = \"node1\"\n\n[uplinks]\nlan = \"eth0\"\n\n[zfs]\npools = [\"tank\"]\n\n";
    let no_address = format!("{head}[management]\ninterface = \"eth0\"\ngateway = \"192.0.2.1\"\n");
    assert_only(
        &single(&[("node.toml", &no_address)]),
        at("node.toml", 11, 11, "`gateway` needs a static `address`")
            .hint("with DHCP the gateway comes from the DHCP server"),
    );
    let outside =
        format!("{head}[management]\naddress = \"192.0.2.11/24\"\ngateway = \"198.51.100.1\"\n");
    assert_only(
        &single(&[("node.toml", &outside)]),
        at(
            "node.toml",
            11,
            11,
            "gateway 198.51.100.1 is not inside 192.0.2.11/24",
        ),
    );
    // An invalid address is reported once, without a gateway error.
    let bad_address =
        format!("{head}[management]\naddress = \"192.0.2.11\"\ngateway = \"192.0.2.1\"\n");
    assert_only(
        &single(&[("node.toml", &bad_address)]),
        at(
            "node.toml",
            10,
            11,
            "interface address \"192.0.2.11\" needs a prefix length",
        )
        .hint("e.g. \"192.0.2.11/24\""),
    );
    let ok = format!(
        "{head}[management]\ninterface = \"eth0\"\naddress = \"192.0.2.11/24\"\ngateway = \"192.0.2.1\"\ndns = [\"192.0.2.1\"]\n"
    );
    assert_valid(&single(&[("node.toml", &ok)]));
}

// ---------------------------------------------------------------------------
// Uniqueness

#[test]
fn declared_macs_are_unique() {
    let a = "[[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:aa:00:01\"\n";
    let b = "[[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:AA:00:01\"\n";
    let c = "[[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:aa:00:02\"\n\n[[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:aa:00:02\"\n";
    assert_errors(
        &single(&[
            ("cluster/vms/a.toml", a),
            ("cluster/vms/b.toml", b),
            ("cluster/vms/c.toml", c),
        ]),
        &[
            at(
                "cluster/vms/b.toml",
                3,
                7,
                "MAC address 52:54:00:aa:00:01 is used by two NICs",
            )
            .hint("first used at cluster/vms/a.toml:3:7"),
            at(
                "cluster/vms/c.toml",
                7,
                7,
                "MAC address 52:54:00:aa:00:02 is used by two NICs",
            )
            .hint("first used at cluster/vms/c.toml:3:7"),
        ],
    );
    let b_ok = b.replace(":01\"", ":03\"");
    assert_valid(&single(&[
        ("cluster/vms/a.toml", a),
        ("cluster/vms/b.toml", &b_ok),
    ]));
}

#[test]
fn a_declared_mac_may_not_repeat_a_derived_one() {
    // Unclustered, derived MACs are scoped by the node name.
    let taken = derived_mac("node1", "a", 0).to_string();
    let b = format!("# takes a's MAC\n[[nic]]\nnetwork = \"lan\"\nmac = \"{taken}\"\n");
    let diags = single(&[
        ("cluster/vms/a.toml", "[[nic]]\nnetwork = \"lan\"\n"),
        ("cluster/vms/b.toml", &b),
    ]);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_error(&diags, "cluster/vms/b.toml", 4, 7, "is used by two NICs");
    assert_eq!(
        diags[0].hint.as_deref(),
        Some("first used at cluster/vms/a.toml:1:1")
    );
}

#[test]
fn vnis_are_unique() {
    let ov = "kind = \"vxlan\"\nvni = 100\n";
    assert_only(
        &single(&[
            ("cluster/networks/ov1.toml", ov),
            ("cluster/networks/ov2.toml", ov),
        ]),
        at(
            "cluster/networks/ov2.toml",
            2,
            7,
            "VNI 100 is used by two networks",
        )
        .hint("first used at cluster/networks/ov1.toml:2:7"),
    );
    assert_valid(&single(&[
        ("cluster/networks/ov1.toml", ov),
        ("cluster/networks/ov2.toml", "kind = \"vxlan\"\nvni = 101\n"),
    ]));
}

#[test]
fn an_uplink_segment_belongs_to_one_network() {
    let v10 = "kind = \"bridge\"\nuplink = \"lan\"\nvlan = 10\n";
    assert_only(
        &single(&[
            ("cluster/networks/a.toml", v10),
            ("cluster/networks/b.toml", v10),
        ]),
        at(
            "cluster/networks/b.toml",
            3,
            8,
            "VLAN 10 on uplink `lan` is used by two networks",
        )
        .hint("first used at cluster/networks/a.toml:3:8"),
    );
    // `single` already bridges `lan` untagged (networks/lan.toml).
    let untagged = "kind = \"bridge\"\nuplink = \"trunk\"\n";
    assert_only(
        &single(&[
            ("cluster/networks/a.toml", untagged),
            ("cluster/networks/b.toml", untagged),
        ]),
        at(
            "cluster/networks/b.toml",
            2,
            10,
            "uplink `trunk` is bridged untagged by two networks",
        )
        .hint("first used at cluster/networks/a.toml:2:10"),
    );
    assert_valid(&single(&[
        ("cluster/networks/a.toml", v10),
        ("cluster/networks/b.toml", untagged),
        (
            "cluster/networks/c.toml",
            "kind = \"bridge\"\nuplink = \"lan\"\nvlan = 20\n",
        ),
    ]));
}

#[test]
fn member_names_and_addresses_are_unique() {
    let cluster = r#"name = "lab"

[[member]]
name = "node1"
address = "10.0.0.1"

[[member]]
name = "node2"
address = "10.0.0.2"

[[member]]
name = "node1"
address = "10.0.0.2"

[trust]
require_signatures = false
"#;
    assert_errors(
        &clustered(&[("cluster/cluster.toml", cluster)]),
        &[
            at(
                "cluster/cluster.toml",
                12,
                8,
                "member `node1` is listed twice",
            )
            .hint("first used at cluster/cluster.toml:4:8"),
            at(
                "cluster/cluster.toml",
                13,
                11,
                "address 10.0.0.2 is used by two members",
            )
            .hint("first used at cluster/cluster.toml:9:11"),
        ],
    );
    let ok = cluster.replace(
        "name = \"node1\"\naddress = \"10.0.0.2\"",
        "name = \"node3\"\naddress = \"10.0.0.3\"",
    );
    assert_valid(&clustered(&[("cluster/cluster.toml", &ok)]));
}

#[test]
fn container_host_ports_are_unique_per_node() {
    let ct = |node: &str, port: &str| {
        format!("node = \"{node}\"\nimage = \"nginx\"\nports = [\"{port}\"]\n")
    };
    let (c1, c2, c3, c4) = (
        ct("node1", "8080:80"),
        ct("node1", "8080:81"),
        ct("node2", "8080:80"),
        ct("node1", "8080:80/udp"),
    );
    assert_only(
        &clustered(&[
            ("cluster/containers/c1.toml", &c1),
            ("cluster/containers/c2.toml", &c2),
            ("cluster/containers/c3.toml", &c3),
            ("cluster/containers/c4.toml", &c4),
        ]),
        at(
            "cluster/containers/c2.toml",
            3,
            10,
            "host port 8080/tcp is published twice on the same node",
        )
        .hint("first used at cluster/containers/c1.toml:3:10"),
    );
    assert_valid(&clustered(&[
        ("cluster/containers/c1.toml", &c1),
        ("cluster/containers/c3.toml", &c3),
        ("cluster/containers/c4.toml", &c4),
    ]));

    // Twice in one container.
    let twice = "image = \"nginx\"\nports = [\"8080:80\", \"8080:81\"]\n";
    assert_only(
        &single(&[("cluster/containers/ct.toml", twice)]),
        at(
            "cluster/containers/ct.toml",
            2,
            21,
            "host port 8080/tcp is published twice",
        )
        .hint("first used at cluster/containers/ct.toml:2:10"),
    );

    // Unclustered, a container without `node` runs on this node too.
    let here = "image = \"nginx\"\nports = [\"8080:80\"]\n";
    let named = "node = \"node1\"\nimage = \"nginx\"\nports = [\"8080:80\"]\n";
    assert_only(
        &single(&[
            ("cluster/containers/a.toml", here),
            ("cluster/containers/b.toml", named),
        ]),
        at(
            "cluster/containers/b.toml",
            3,
            10,
            "host port 8080/tcp is published twice",
        )
        .hint("first used at cluster/containers/a.toml:2:10"),
    );
}

// ---------------------------------------------------------------------------
// Trust

/// From the minisign documentation.
const MINISIGN_PUB: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";

const ONE_MEMBER: &str = r#"name = "lab"

[[member]]
name = "node1"
address = "10.0.0.1"
"#;

fn trust(section: &str) -> Vec<horcrux_config::Diagnostic> {
    let cluster = format!("{ONE_MEMBER}{section}");
    clustered(&[("cluster/cluster.toml", &cluster)])
}

#[test]
fn signatures_are_required_by_default() {
    let hint = "add your minisign public key to `keys`, or set `require_signatures = false`";
    let msg = "signatures are required but `[trust] keys` lists no key";
    // No [trust] at all: the whole file.
    assert_only(&trust(""), at("cluster/cluster.toml", 1, 1, msg).hint(hint));
    // [trust] is line 7.
    assert_only(
        &trust("\n[trust]\nkeys = []\n"),
        at("cluster/cluster.toml", 7, 1, msg).hint(hint),
    );
    assert_only(
        &trust("\n[trust]\nrequire_signatures = true\n"),
        at("cluster/cluster.toml", 8, 22, msg).hint(hint),
    );
}

#[test]
fn signatures_may_be_turned_off_or_keys_given() {
    assert_valid(&trust("\n[trust]\nrequire_signatures = false\n"));
    assert_valid(&trust(&format!("\n[trust]\nkeys = [\"{MINISIGN_PUB}\"]\n")));
    assert_valid(&trust(&format!(
        "\n[trust]\nkeys = [\"{MINISIGN_PUB}\"]\nrequire_signatures = true\n"
    )));
}

#[test]
fn invalid_trust_values_are_reported_once() {
    // An invalid key is not also "no key".
    assert_only(
        &trust("\n[trust]\nkeys = [\"RWQ...\"]\n"),
        at("cluster/cluster.toml", 8, 9, "invalid minisign public key")
            .hint("use the second line of minisign.pub"),
    );
    // An invalid `require_signatures` is not read as `true`.
    assert_only(
        &trust("\n[trust]\nrequire_signatures = \"no\"\n"),
        at(
            "cluster/cluster.toml",
            8,
            22,
            "expected a boolean (true or false), found a string",
        ),
    );
}

// ---------------------------------------------------------------------------
// File layout

#[test]
fn invalid_resource_file_names() {
    let diags = single(&[
        ("cluster/vms/Bad_Name.toml", "cpus = 1\n"),
        ("cluster/networks/1lan.toml", "kind = \"bridge\"\n"),
    ]);
    assert_errors(
        &diags,
        &[
            whole(
                "cluster/networks/1lan.toml",
                "invalid network name \"1lan\" (the file name is the name)",
            )
            .hint("names are 1 to 63 characters"),
            whole(
                "cluster/vms/Bad_Name.toml",
                "invalid vm name \"Bad_Name\" (the file name is the name)",
            )
            .hint("did you mean `bad-name`?"),
        ],
    );
}

#[test]
fn unexpected_files() {
    let diags = single(&[
        ("cluster.toml", "name = \"lab\"\n"),
        ("cluster/vm/x.toml", "cpus = 1\n"),
        ("notes/x.toml", "a = 1\n"),
        ("vms/y.toml", "cpus = 1\n"),
    ]);
    assert_errors(
        &diags,
        &[
            whole("cluster.toml", "file is not part of the config layout")
                .hint("cluster.toml goes in cluster/cluster.toml"),
            whole("cluster/vm/x.toml", "file is not part of the config layout")
                .hint("did you mean `vms`?"),
            whole("notes/x.toml", "file is not part of the config layout")
                .hint("expected node.toml, cluster/cluster.toml or"),
            whole("vms/y.toml", "file is not part of the config layout")
                .hint("resource files go under cluster/: cluster/vms/y.toml"),
        ],
    );
}

#[test]
fn node_toml_and_cluster_toml_may_not_both_be_missing() {
    let vm = ("cluster/vms/a.toml", "node = \"node1\"\n");
    assert_only(
        &check(&[vm]),
        whole("node.toml", "node.toml is missing").hint("a node needs node.toml"),
    );
    // A copy of the replicated tree without node.toml is fine.
    assert_valid(&check(&[("cluster/cluster.toml", CLUSTER), vm]));
    assert_valid(&check(&[("node.toml", NODE), vm]));
}

// ---------------------------------------------------------------------------
// Examples and derived MACs

fn example(name: &str) -> horcrux_config::Checked {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    load(&root).expect("example tree is readable")
}

#[test]
fn the_example_trees_are_valid() {
    let single = example("single-node");
    assert_valid(&single.errors);
    assert!(single.config.cluster.is_none());
    assert_eq!(single.config.vms.len(), 2);
    assert_eq!(single.config.containers.len(), 1);

    let cluster = example("cluster-3");
    assert_valid(&cluster.errors);
    let members = &cluster
        .config
        .cluster
        .as_ref()
        .expect("cluster.toml")
        .members;
    assert_eq!(members.len(), 3);
    assert_eq!(cluster.config.vms.len(), 4);
}

fn name(s: &str) -> ResourceName {
    use horcrux_config::decode::ParseStr;
    ResourceName::parse_str(s).expect("valid name")
}

#[test]
fn derived_macs_are_stable_and_locally_administered_unicast() {
    let mac = derived_mac("lab", "web-1", 0);
    assert_eq!(mac, derived_mac("lab", "web-1", 0));
    assert_ne!(mac, derived_mac("lab", "web-1", 1));
    assert_ne!(mac, derived_mac("lab", "web-2", 0));
    assert_ne!(mac, derived_mac("other", "web-1", 0));
    // Pinned: changing the derivation would change every guest's MAC.
    assert_eq!(mac.to_string(), "c6:d3:82:ef:da:1c");
    for index in 0..64 {
        for vm in ["a", "web-1", "db"] {
            let octet = derived_mac("lab", vm, index).0[0];
            assert_eq!(octet & 0x01, 0, "multicast bit set");
            assert_eq!(octet & 0x02, 0x02, "not locally administered");
        }
    }

    // Through a loaded tree: the NIC without `mac` gets the derived one,
    // scoped by the cluster name.
    let cluster = example("cluster-3");
    let web1 = &cluster.config.vms[&name("web-1")];
    let nic_mac = |i: usize| cluster.config.nic_mac(&name("web-1"), i, &web1.nics[i]);
    assert_eq!(nic_mac(0), derived_mac("lab", "web-1", 0));
    assert_eq!(nic_mac(1), derived_mac("lab", "web-1", 1));
    assert_ne!(nic_mac(0), nic_mac(1));

    // A declared MAC wins.
    let single = example("single-node");
    let build = &single.config.vms[&name("build")];
    assert_eq!(
        single
            .config
            .nic_mac(&name("build"), 0, &build.nics[0])
            .to_string(),
        "52:54:00:12:34:56"
    );
}

#[test]
fn references_to_unreadable_files_are_not_reported_again() {
    let mut files = tree(SINGLE);
    for f in &mut files {
        match f.path.as_str() {
            "cluster/storage/local.toml" => f.content = Err("not a regular file".into()),
            "cluster/networks/lan.toml" => f.content = Ok(vec![0xff]),
            _ => {}
        }
    }
    assert_errors(
        &check_files(files).errors,
        &[
            whole("cluster/networks/lan.toml", "file is not valid UTF-8"),
            whole("cluster/storage/local.toml", "not a regular file"),
        ],
    );
}

#[test]
fn unreadable_files_outside_the_layout_are_reported_once() {
    let mut files = tree(SINGLE);
    files.push(TreeFile {
        path: "cluster/vms".into(),
        content: Err("symlink points outside the config directory".into()),
    });
    files.push(TreeFile {
        path: "notes/x.toml".into(),
        content: Ok(vec![0xff]),
    });
    assert_errors(
        &check_files(files).errors,
        &[
            whole("cluster/vms", "symlink points outside the config directory"),
            whole("notes/x.toml", "file is not part of the config layout"),
        ],
    );
}

#[test]
fn check_files_reports_unreadable_files_as_whole_file_errors() {
    let mut files = tree(&merge(SINGLE, &[]));
    files.push(TreeFile {
        path: "cluster/vms/gone.toml".into(),
        content: Err("cannot read: no such file".into()),
    });
    files.push(TreeFile {
        path: "cluster/vms/bin.toml".into(),
        content: Ok(vec![b'c', 0xff, b'\n']),
    });
    assert_errors(
        &check_files(files).errors,
        &[
            whole("cluster/vms/bin.toml", "file is not valid UTF-8"),
            whole("cluster/vms/gone.toml", "cannot read: no such file"),
        ],
    );
}

/// A stopped template VM with one ZFS disk and a named snapshot.
const TEMPLATE: &str = r#"state = "stopped"

[[disk]]
storage = "local"
size = "10GiB"

[[snapshot]]
name = "base"
"#;

#[test]
fn snapshots_and_clones_need_zfs_storage() {
    let vm = r#"[[disk]]
storage = "images"
size = "1GiB"

[snapshots]
every = "1h"
keep = 3
"#;
    let clone = r#"[[disk]]
storage = "images"
size = "10GiB"
source = "clone:tmpl/disk0@base"

[[disk]]
storage = "local"
size = "10GiB"
source = "clone:tmpl/disk3@base"
"#;
    let diags = single(&[
        ("cluster/vms/tmpl.toml", TEMPLATE),
        ("cluster/vms/snap.toml", vm),
        ("cluster/vms/copy.toml", clone),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/vms/copy.toml",
                4,
                10,
                "a linked clone needs ZFS storage, but `images` is a dir storage",
            )
            .hint("image:<file>"),
            at(
                "cluster/vms/copy.toml",
                9,
                10,
                "VM `tmpl` has no disk3 (it has 1 disks)",
            ),
            at(
                "cluster/vms/snap.toml",
                6,
                9,
                "VM `snap` has snapshots but no disk on ZFS storage",
            )
            .hint("kind = \"zfs\""),
        ],
    );
}

#[test]
fn named_snapshots_are_unique_and_not_scheduled_names() {
    let vm = r#"[[disk]]
storage = "local"
size = "1GiB"

[[snapshot]]
name = "base"

[[snapshot]]
name = "base"
"#;
    let reserved = r#"[[disk]]
storage = "local"
size = "1GiB"

[[snapshot]]
name = "auto-daily"
"#;
    let diags = single(&[
        ("cluster/vms/snap.toml", vm),
        ("cluster/vms/other.toml", reserved),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/vms/other.toml",
                6,
                8,
                "snapshot name \"auto-daily\" starts with \"auto-\"",
            )
            .hint("scheduled snapshots"),
            at(
                "cluster/vms/snap.toml",
                9,
                8,
                "snapshot \"base\" is declared twice",
            ),
        ],
    );
}

#[test]
fn a_disk_never_shrinks_from_one_generation_to_the_next() {
    let before = checked(&merge(SINGLE, &[])).into_valid().expect("valid");
    let smaller = VM_WEB.replace("size = \"20GiB\"", "size = \"10GiB\"");
    let after = checked(&merge(SINGLE, &[("cluster/vms/web.toml", &smaller)]))
        .into_valid()
        .expect("valid");
    let diags = horcrux_config::against_previous(&before, &after);
    assert_errors(
        &diags,
        &[at(
            "cluster/vms/web.toml",
            6,
            8,
            "disk 0 of VM `web` would shrink from 20GiB to 10GiB; disks only grow",
        )
        .hint("keep size = \"20GiB\" or larger")],
    );
    let larger = VM_WEB.replace("size = \"20GiB\"", "size = \"30GiB\"");
    let grown = checked(&merge(SINGLE, &[("cluster/vms/web.toml", &larger)]))
        .into_valid()
        .expect("valid");
    assert!(horcrux_config::against_previous(&before, &grown).is_empty());
    assert!(horcrux_config::against_previous(&grown, &before).len() == 1);
}
