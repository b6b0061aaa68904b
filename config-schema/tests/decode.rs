//! Per-file decoding: syntax, types, unknown keys, keywords, ranges and
//! kind-specific keys, each located at file:line:column.

mod common;

use common::*;

#[test]
fn base_trees_are_valid() {
    assert_valid(&single(&[]));
    assert_valid(&clustered(&[]));
}

#[test]
fn a_syntax_error_does_not_stop_other_files_being_checked() {
    let a = r#"cpus = 2
memory "2GiB"
"#;
    let b = r#"cpus = 0
memory = "2GiB"
state = "runing"
"#;
    let node = r#"name = "node1"
color = "red"
"#;
    let diags = check(&[
        ("node.toml", node),
        ("cluster/vms/a.toml", a),
        ("cluster/vms/b.toml", b),
    ]);
    assert_errors(
        &diags,
        &[
            at("cluster/vms/a.toml", 2, 8, "TOML syntax error"),
            at(
                "cluster/vms/b.toml",
                1,
                8,
                "0 is out of range: must be between 1 and 512",
            ),
            at("cluster/vms/b.toml", 3, 9, "unknown value \"runing\"")
                .hint("did you mean `running`?"),
            at("node.toml", 2, 1, "unknown key `color`")
                .hint("known keys here: firewall, management, name, qemu, status, uplinks, zfs"),
        ],
    );

    let fixed_a = "cpus = 2\nmemory = \"2GiB\"\n";
    let fixed_b = "cpus = 1\nmemory = \"2GiB\"\nstate = \"running\"\n";
    assert_valid(&check(&[
        ("node.toml", "name = \"node1\"\n"),
        ("cluster/vms/a.toml", fixed_a),
        ("cluster/vms/b.toml", fixed_b),
    ]));
}

#[test]
fn several_syntax_errors_in_one_file_are_all_reported() {
    let node = r#"name = "node1"
name = "node2"
[zfs
"#;
    let diags = check(&[("node.toml", node)]);
    assert_errors(
        &diags,
        &[
            at("node.toml", 2, 1, "TOML syntax error: duplicate key"),
            at("node.toml", 3, 5, "TOML syntax error: unclosed table"),
        ],
    );
}

#[test]
fn wrong_types() {
    let vm = r#"cpus = "2"
memory = 2048
state = true
cloud_init = 5

[[disk]]
storage = "local"
size = "10GiB"
bus = 1

[[nic]]
network = "lan"
firewall = "web"
"#;
    let lan = r#"kind = "bridge"
uplink = "lan"
vlan = "10"
mtu = 1500.0
"#;
    let diags = single(&[
        ("cluster/vms/web.toml", vm),
        ("cluster/networks/lan.toml", lan),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/networks/lan.toml",
                3,
                8,
                "expected an integer, found a string",
            ),
            at(
                "cluster/networks/lan.toml",
                4,
                7,
                "expected an integer, found a float",
            ),
            at(
                "cluster/vms/web.toml",
                1,
                8,
                "expected an integer, found a string",
            ),
            at(
                "cluster/vms/web.toml",
                2,
                10,
                "expected a size string such as \"20GiB\", found an integer",
            ),
            at("cluster/vms/web.toml", 3, 9, "found a boolean"),
            at(
                "cluster/vms/web.toml",
                4,
                14,
                "expected a table, found an integer",
            ),
            at("cluster/vms/web.toml", 9, 7, "found an integer"),
            at(
                "cluster/vms/web.toml",
                13,
                12,
                "expected an array, found a string",
            ),
        ],
    );
    // The keyword messages name the accepted values.
    let state = &diags[4].message;
    assert!(
        state.contains("\"running\"") && state.contains("\"stopped\""),
        "{state}"
    );

    let node = "name = 5\n";
    assert_only(
        &check(&[("node.toml", node)]),
        at("node.toml", 1, 8, "expected a name, found an integer"),
    );
}

#[test]
fn unknown_keys_with_a_close_match_suggest_it() {
    let vm = r#"cpu = 2
memroy = "2GiB"

[[disk]]
storage = "local"
size = "20GiB"
buss = "virtio"

[snapshots]
evry = "1h"
keep = 3
"#;
    assert_errors(
        &single(&[("cluster/vms/web.toml", vm)]),
        &[
            at("cluster/vms/web.toml", 1, 1, "unknown key `cpu`").hint("did you mean `cpus`?"),
            at("cluster/vms/web.toml", 2, 1, "unknown key `memroy`").hint("did you mean `memory`?"),
            at("cluster/vms/web.toml", 7, 1, "unknown key `buss`").hint("did you mean `bus`?"),
            at("cluster/vms/web.toml", 9, 1, "missing required key `every`"),
            at("cluster/vms/web.toml", 10, 1, "unknown key `evry`").hint("did you mean `every`?"),
        ],
    );
}

#[test]
fn unknown_keys_without_a_close_match_list_the_known_keys() {
    let lan = r#"kind = "bridge"
zzz = 1
"#;
    assert_only(
        &single(&[("cluster/networks/lan.toml", lan)]),
        at("cluster/networks/lan.toml", 2, 1, "unknown key `zzz`")
            .hint("known keys here: kind, mtu, uplink, vlan, vni"),
    );
    let group = r#"[[rule]]
direction = "in"
action = "accept"
zzz = "x"
"#;
    assert_only(
        &single(&[("cluster/firewall/web.toml", group)]),
        at("cluster/firewall/web.toml", 4, 1, "unknown key `zzz`")
            .hint("known keys here: action, comment, dest, direction, ports, proto, source"),
    );
}

#[test]
fn keyword_values_suggest_the_closest_word() {
    let vm = r#"state = "runing"
machine = "i440fx"
firmware = "efi"
"#;
    assert_errors(
        &single(&[("cluster/vms/web.toml", vm)]),
        &[
            at("cluster/vms/web.toml", 1, 9, "unknown value \"runing\"")
                .hint("did you mean `running`?"),
            at("cluster/vms/web.toml", 2, 11, "unknown value \"i440fx\"")
                .hint("expected one of `q35`, `pc`"),
            at("cluster/vms/web.toml", 3, 12, "unknown value \"efi\"").hint("did you mean `uefi`?"),
        ],
    );
    let ok = "state = \"stopped\"\nmachine = \"pc\"\nfirmware = \"bios\"\n";
    assert_valid(&single(&[("cluster/vms/web.toml", ok)]));
}

#[test]
fn vm_ranges_and_sizes() {
    let a = "cpus = 0\nmemory = \"8MiB\"\n";
    let b = "cpus = 513\nmemory = \"20000KiB\"\n";
    let c = "cpus = -1\nmemory = \"2GB\"\n";
    let d = r#"cpus = 2.5

[[disk]]
storage = "local"
size = "0MiB"

[snapshots]
every = "30s"
keep = 0
"#;
    let e = r#"[[disk]]
storage = "local"
size = "1500KiB"

[snapshots]
every = "1m"
keep = 10001
"#;
    let diags = single(&[
        ("cluster/vms/a.toml", a),
        ("cluster/vms/b.toml", b),
        ("cluster/vms/c.toml", c),
        ("cluster/vms/d.toml", d),
        ("cluster/vms/e.toml", e),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/vms/a.toml",
                1,
                8,
                "0 is out of range: must be between 1 and 512",
            ),
            at(
                "cluster/vms/a.toml",
                2,
                10,
                "memory 8MiB must be at least 16MiB and a whole number of MiB",
            ),
            at(
                "cluster/vms/b.toml",
                1,
                8,
                "513 is out of range: must be between 1 and 512",
            ),
            at(
                "cluster/vms/b.toml",
                2,
                10,
                "memory 20000KiB must be at least 16MiB and a whole number of MiB",
            ),
            at(
                "cluster/vms/c.toml",
                1,
                8,
                "-1 is out of range: must be between 1 and 512",
            ),
            at("cluster/vms/c.toml", 2, 10, "invalid size \"2GB\"")
                .hint("sizes use binary units: did you mean \"2GiB\"?"),
            at(
                "cluster/vms/d.toml",
                1,
                8,
                "expected an integer, found a float",
            ),
            at(
                "cluster/vms/d.toml",
                5,
                8,
                "disk size 0B must be a positive whole number of MiB",
            ),
            at(
                "cluster/vms/d.toml",
                8,
                9,
                "snapshot interval 30s is shorter than one minute",
            ),
            at(
                "cluster/vms/d.toml",
                9,
                8,
                "0 is out of range: must be between 1 and 10000",
            ),
            at(
                "cluster/vms/e.toml",
                3,
                8,
                "disk size 1500KiB must be a positive whole number of MiB",
            ),
            at(
                "cluster/vms/e.toml",
                7,
                8,
                "10001 is out of range: must be between 1 and 10000",
            ),
        ],
    );

    let low = r#"cpus = 1
memory = "16MiB"

[[disk]]
storage = "local"
size = "1MiB"

[snapshots]
every = "1m"
keep = 1
"#;
    let high = r#"cpus = 512
memory = "1TiB"

[[disk]]
storage = "local"
size = "1TiB"

[snapshots]
every = "1h 30m"
keep = 10000
"#;
    assert_valid(&single(&[
        ("cluster/vms/a.toml", low),
        ("cluster/vms/b.toml", high),
    ]));
}

#[test]
fn network_ranges() {
    let diags = single(&[
        (
            "cluster/networks/v0.toml",
            "kind = \"bridge\"\nvlan = 0\nmtu = 575\n",
        ),
        (
            "cluster/networks/v4095.toml",
            "kind = \"bridge\"\nvlan = 4095\nmtu = 9217\n",
        ),
        ("cluster/networks/x0.toml", "kind = \"vxlan\"\nvni = 0\n"),
        (
            "cluster/networks/xbig.toml",
            "kind = \"vxlan\"\nvni = 16777216\n",
        ),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/networks/v0.toml",
                2,
                8,
                "0 is out of range: must be between 1 and 4094",
            ),
            at(
                "cluster/networks/v0.toml",
                3,
                7,
                "575 is out of range: must be between 576 and 9216",
            ),
            at(
                "cluster/networks/v4095.toml",
                2,
                8,
                "4095 is out of range: must be between 1 and 4094",
            ),
            at(
                "cluster/networks/v4095.toml",
                3,
                7,
                "9217 is out of range: must be between 576 and 9216",
            ),
            at(
                "cluster/networks/x0.toml",
                2,
                7,
                "0 is out of range: must be between 1 and 16777215",
            ),
            at(
                "cluster/networks/xbig.toml",
                2,
                7,
                "16777216 is out of range: must be between 1 and 16777215",
            ),
        ],
    );
    assert_valid(&single(&[
        (
            "cluster/networks/v0.toml",
            "kind = \"bridge\"\nvlan = 1\nmtu = 576\n",
        ),
        (
            "cluster/networks/v4095.toml",
            "kind = \"bridge\"\nvlan = 4094\nmtu = 9216\n",
        ),
        ("cluster/networks/x0.toml", "kind = \"vxlan\"\nvni = 1\n"),
        (
            "cluster/networks/xbig.toml",
            "kind = \"vxlan\"\nvni = 16777215\n",
        ),
    ]));
}

const CLUSTER_HEAD: &str = r#"name = "lab"

[[member]]
name = "node1"
address = "10.0.0.1"
"#;

fn cluster_with(tail: &str) -> String {
    format!("{CLUSTER_HEAD}\n{tail}\n[trust]\nrequire_signatures = false\n")
}

#[test]
fn gossip_port_range() {
    // Line 6 is blank, [gossip] is line 7.
    let zero = cluster_with("[gossip]\nport = 0\n");
    assert_only(
        &clustered(&[("cluster/cluster.toml", &zero)]),
        at(
            "cluster/cluster.toml",
            8,
            8,
            "0 is out of range: must be between 1 and 65535",
        ),
    );
    let big = cluster_with("[gossip]\nport = 65536\nkey_file = \"/etc/gossip.key\"\n");
    assert_errors(
        &clustered(&[("cluster/cluster.toml", &big)]),
        &[
            at(
                "cluster/cluster.toml",
                8,
                8,
                "65536 is out of range: must be between 1 and 65535",
            ),
            at(
                "cluster/cluster.toml",
                9,
                12,
                "path \"/etc/gossip.key\" must stay inside the config directory",
            ),
        ],
    );
    for ok in [
        "port = 1\n",
        "port = 65535\nkey_file = \"secrets/other.key\"\n",
    ] {
        let tree = cluster_with(&format!("[gossip]\n{ok}"));
        assert_valid(&clustered(&[("cluster/cluster.toml", &tree)]));
    }
}

#[test]
fn network_kind_specific_keys() {
    let diags = single(&[
        ("cluster/networks/bad.toml", "kind = \"vlan\"\nvni = 5\n"),
        ("cluster/networks/br.toml", "kind = \"bridge\"\nvni = 5\n"),
        (
            "cluster/networks/vx.toml",
            "kind = \"vxlan\"\nvni = 5\nvlan = 3\n",
        ),
        ("cluster/networks/vy.toml", "kind = \"vxlan\"\nmtu = 1450\n"),
    ]);
    assert_errors(
        &diags,
        &[
            // An unknown kind does not also complain about kind-specific keys.
            at("cluster/networks/bad.toml", 1, 8, "unknown value \"vlan\"")
                .hint("did you mean `vxlan`?"),
            at(
                "cluster/networks/br.toml",
                2,
                7,
                "`vni` is only allowed with kind = \"vxlan\"",
            ),
            at(
                "cluster/networks/vx.toml",
                3,
                8,
                "`vlan` is only allowed with kind = \"bridge\"",
            ),
            at(
                "cluster/networks/vy.toml",
                1,
                1,
                "missing required key `vni`",
            ),
        ],
    );
    assert_valid(&single(&[
        ("cluster/networks/br.toml", "kind = \"bridge\"\nvlan = 3\n"),
        (
            "cluster/networks/vx.toml",
            "kind = \"vxlan\"\nvni = 5\nmtu = 1450\n",
        ),
    ]));
}

#[test]
fn storage_kind_specific_keys() {
    let diags = single(&[
        (
            "cluster/storage/d.toml",
            "kind = \"dir\"\npath = \"/srv/images\"\npool = \"tank\"\n",
        ),
        ("cluster/storage/nd.toml", "kind = \"dir\"\n"),
        ("cluster/storage/nz.toml", "kind = \"zfs\"\n"),
        (
            "cluster/storage/rel.toml",
            "kind = \"dir\"\npath = \"srv/images\"\n",
        ),
        (
            "cluster/storage/z.toml",
            "kind = \"zfs\"\npool = \"tank/z\"\npath = \"/srv\"\n",
        ),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/storage/d.toml",
                3,
                8,
                "`pool` is only allowed with kind = \"zfs\"",
            ),
            at(
                "cluster/storage/nd.toml",
                1,
                1,
                "missing required key `path`",
            ),
            at(
                "cluster/storage/nz.toml",
                1,
                1,
                "missing required key `pool`",
            ),
            at(
                "cluster/storage/rel.toml",
                2,
                8,
                "path \"srv/images\" is not absolute",
            )
            .hint("start it with '/'"),
            at(
                "cluster/storage/z.toml",
                3,
                8,
                "`path` is only allowed with kind = \"dir\"",
            ),
        ],
    );
    assert_valid(&single(&[
        (
            "cluster/storage/d.toml",
            "kind = \"dir\"\npath = \"/srv/images\"\n",
        ),
        (
            "cluster/storage/z.toml",
            "kind = \"zfs\"\npool = \"tank/z\"\n",
        ),
    ]));
}

#[test]
fn firewall_kind_specific_keys() {
    let a = r#"[[rule]]
direction = "in"
action = "accept"
proto = "icmp"
ports = "22"

[[rule]]
direction = "in"
action = "accept"
ports = "22"

[[rule]]
direction = "out"
action = "drop"
source = "10.0.0.0/8"

[[rule]]
direction = "in"
action = "accept"
dest = "10.0.0.0/8"
"#;
    let b = r#"[[rule]]
direction = "in"
action = "accept"
proto = "icmp"
source = "2001:db8::/32"

[[rule]]
direction = "out"
action = "accept"
proto = "icmpv6"
dest = "192.0.2.0/24"

[[rule]]
direction = "in"
action = "accept"
proto = "tcp"
ports = "22"
source = "10.1.2.3/8"
"#;
    let diags = single(&[
        ("cluster/firewall/a.toml", a),
        ("cluster/firewall/b.toml", b),
    ]);
    assert_errors(
        &diags,
        &[
            at(
                "cluster/firewall/a.toml",
                5,
                9,
                "`ports` needs proto = \"tcp\" or \"udp\", not \"icmp\"",
            ),
            at(
                "cluster/firewall/a.toml",
                10,
                9,
                "`ports` needs proto = \"tcp\" or \"udp\", not \"any\"",
            ),
            at(
                "cluster/firewall/a.toml",
                15,
                10,
                "`source` is only allowed with direction = \"in\"",
            ),
            at(
                "cluster/firewall/a.toml",
                20,
                8,
                "`dest` is only allowed with direction = \"out\"",
            ),
            at(
                "cluster/firewall/b.toml",
                5,
                10,
                "2001:db8::/32 cannot match proto = \"icmp\"",
            ),
            at(
                "cluster/firewall/b.toml",
                11,
                8,
                "192.0.2.0/24 cannot match proto = \"icmpv6\"",
            ),
            at(
                "cluster/firewall/b.toml",
                18,
                10,
                "invalid CIDR \"10.1.2.3/8\": host bits are set",
            )
            .hint("did you mean \"10.0.0.0/8\"?"),
        ],
    );

    let ok = r#"[[rule]]
direction = "in"
action = "accept"
proto = "tcp"
ports = "22,8000-8100"
source = "10.0.0.0/8"

[[rule]]
direction = "out"
action = "reject"
proto = "udp"
ports = "53"
dest = "192.0.2.53"

[[rule]]
direction = "in"
action = "accept"
proto = "icmp"
source = "192.0.2.0/24"

[[rule]]
direction = "in"
action = "accept"
proto = "icmpv6"
source = "2001:db8::/32"
"#;
    assert_valid(&single(&[("cluster/firewall/a.toml", ok)]));
}

#[test]
fn an_invalid_keyword_does_not_cause_follow_up_errors() {
    // `proto` is mistyped: the rule must not also be told that `ports`
    // needs tcp or udp (the invalid proto is not "any").
    let group = r#"[[rule]]
direction = "in"
action = "acept"
proto = "tcpp"
ports = "22"
"#;
    assert_errors(
        &single(&[("cluster/firewall/web.toml", group)]),
        &[
            at(
                "cluster/firewall/web.toml",
                3,
                10,
                "unknown value \"acept\"",
            )
            .hint("did you mean `accept`?"),
            at("cluster/firewall/web.toml", 4, 9, "unknown value \"tcpp\"")
                .hint("did you mean `tcp`?"),
        ],
    );
}

#[test]
fn direct_boot_needs_an_absolute_kernel_path() {
    let vm = r#"[boot]
kernel = "boot/vmlinuz"
cmdline = 3
"#;
    let missing = "[boot]\ninitrd = \"/srv/initrd\"\n";
    let diags = check(&[
        ("node.toml", "name = \"node1\"\n"),
        ("cluster/vms/a.toml", vm),
        ("cluster/vms/b.toml", missing),
    ]);
    assert_errors(
        &diags,
        &[
            at("cluster/vms/a.toml", 2, 10, "is not absolute"),
            at("cluster/vms/a.toml", 3, 11, "expected a string"),
            at("cluster/vms/b.toml", 1, 1, "missing required key `kernel`"),
        ],
    );
}
