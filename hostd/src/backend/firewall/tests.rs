//! Unit tests of the firewall backend: the ruleset text, the listing
//! parser, and observe/apply against a fake `nft`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use horcrux_config::Config;

use super::nft::{self, Nft, NftError};
use super::ruleset::{self, Stage, build, sanitize_comment, translate};
use super::*;
use crate::backend::command::CommandError;
use crate::backend::test_support::config;
use crate::plan::plan;

const CLUSTER: &str = "name = \"lab\"\n\
    [[member]]\nname = \"node1\"\naddress = \"10.0.0.1\"\n\
    [[member]]\nname = \"node2\"\naddress = \"10.0.0.2\"\n\
    [[member]]\nname = \"node3\"\naddress = \"fd00::3\"\n\
    [trust]\nrequire_signatures = false\n";

const NODE1: &str = "name = \"node1\"\n\
    [status]\nlisten = \"0.0.0.0:8006\"\n\
    [firewall]\nssh_from = [\"10.1.0.0/16\", \"2001:db8::/32\", \"10.0.0.0/8\"]\n\
    status_from = [\"192.168.1.0/24\"]\n";

const WEB: &str = "[[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"tcp\"\n\
    ports = \"443,80,8000-8100\"\ncomment = \"web\"\n\
    [[rule]]\ndirection = \"in\"\naction = \"reject\"\nproto = \"tcp\"\nports = \"22\"\n\
    source = \"2001:db8::/32\"\ncomment = \"no \\\"ssh\\\" from v6 \u{2713}\"\n\
    [[rule]]\ndirection = \"out\"\naction = \"drop\"\nproto = \"tcp\"\nports = \"25\"\n\
    comment = \"no smtp\"\n";

const OPS: &str = "[[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"icmp\"\n\
    source = \"10.0.0.0/8\"\n\
    [[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"icmpv6\"\n\
    [[rule]]\ndirection = \"out\"\naction = \"reject\"\nproto = \"udp\"\n\
    dest = \"192.0.2.0/24\"\n";

fn basic_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("node.toml", NODE1),
        ("cluster/cluster.toml", CLUSTER),
        ("cluster/networks/lan.toml", "kind = \"bridge\"\n"),
        ("cluster/firewall/web.toml", WEB),
        ("cluster/firewall/ops.toml", OPS),
        (
            "cluster/vms/a.toml",
            "node = \"node1\"\n[[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:00:00:0a\"\n\
             firewall = [\"web\", \"ops\", \"web\"]\n\
             [[nic]]\nnetwork = \"lan\"\n",
        ),
        (
            "cluster/vms/b.toml",
            "node = \"node1\"\n[[nic]]\nnetwork = \"lan\"\nmac = \"52:54:00:00:00:0b\"\n",
        ),
        (
            "cluster/vms/c.toml",
            "node = \"node2\"\n[[nic]]\nnetwork = \"lan\"\nfirewall = [\"web\"]\n",
        ),
    ]
}

/// Compares `actual` with `hostd/tests/golden/<name>`, or rewrites it when
/// `UPDATE_GOLDEN=1` (the convention of the CLI golden tests).
fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\n(run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "ruleset differs from {} (rerun with UPDATE_GOLDEN=1 to accept it)\n{actual}",
        path.display()
    );
}

/// The bridge table's part of a ruleset text.
fn bridge_part(text: &str) -> &str {
    let start = text.find("table bridge horcrux {").unwrap();
    let end = text.find("table inet horcrux {").unwrap();
    &text[start..end]
}

fn inet_part(text: &str) -> &str {
    &text[text.find("table inet horcrux {").unwrap()..]
}

/// Lines that are rules or map elements, without comments and blank lines.
fn rule_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn basic_cluster_ruleset_is_golden() {
    let config = config(&basic_files());
    let text = render_ruleset(&config, "node1");
    assert_golden("firewall-basic.nft", &text);
}

#[test]
fn nic_ports_are_the_node_s_nics_sorted_with_their_groups_once() {
    let config = config(&basic_files());
    let ports = nic_ports(&config, "node1");
    let summary: Vec<(&str, usize, String, Vec<String>)> = ports
        .iter()
        .map(|p| (p.vm.as_str(), p.index, p.mac.to_string(), p.groups.clone()))
        .collect();
    let a1_mac = ports[1].mac.to_string();
    assert_eq!(
        summary,
        [
            (
                "a",
                0,
                "52:54:00:00:00:0a".to_string(),
                vec!["web".to_string(), "ops".to_string()]
            ),
            ("a", 1, a1_mac, vec![]),
            ("b", 0, "52:54:00:00:00:0b".to_string(), vec![]),
        ]
    );
    for port in &ports {
        assert_eq!(
            port.tap,
            crate::backend::naming::tap_name(&port.vm, port.index).unwrap()
        );
    }
    let vms: Vec<String> = nic_ports(&config, "node2")
        .into_iter()
        .map(|p| p.vm)
        .collect();
    assert_eq!(vms, ["c"]);
}

#[test]
fn every_nic_is_anti_spoofed_and_only_nics_with_groups_are_filtered_inbound() {
    let config = config(&basic_files());
    let text = render_ruleset(&config, "node1");
    for port in nic_ports(&config, "node1") {
        let from = format!(
            "chain from-{} {{\n\t\tether saddr != {} drop\n",
            port.tap, port.mac
        );
        assert!(text.contains(&from), "{from}\n{text}");
        let to = format!("chain to-{} {{", port.tap);
        assert_eq!(text.contains(&to), !port.groups.is_empty(), "{to}");
        assert_eq!(
            text.contains(&format!("\"{0}\" : jump to-{0}", port.tap)),
            !port.groups.is_empty()
        );
    }
}

#[test]
fn the_rule_count_is_the_number_of_rule_statements() {
    let config = config(&basic_files());
    let built = build(&config, "node1");
    // Every non-comment line inside a chain is a rule, except the chain
    // header, its type line, closing braces and map elements.
    let mut count = 0;
    let mut in_map = false;
    for line in rule_lines(&built.text) {
        if in_map {
            in_map = line != "}";
            continue;
        }
        if line.ends_with("vmap {") {
            in_map = true;
            count += 1;
            continue;
        }
        let structural = line.starts_with("table ")
            || line.starts_with("set ")
            || line.starts_with("type icmpv6_type")
            || line.starts_with("elements = ")
            || line.starts_with("delete table ")
            || line.starts_with("chain ")
            || line.starts_with("type filter hook")
            || line == "}";
        if !structural {
            count += 1;
        }
    }
    assert_eq!(built.rules, count);
    assert!(built.rules > 20, "{}", built.rules);
}

/// The rules of group `g` in `toml`, each translated for `stage`.
fn translated(toml: &str, stage: Stage) -> Vec<String> {
    let config = config(&[
        ("node.toml", "name = \"n1\"\n"),
        ("cluster/firewall/g.toml", toml),
    ]);
    let group = config.firewall.values().next().unwrap();
    group
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| translate("g", i + 1, r, stage))
        .collect()
}

fn rule(fields: &str) -> String {
    format!("[[rule]]\n{fields}\n")
}

#[test]
fn rules_translate_to_nft() {
    let cases: &[(&str, Stage, &str)] = &[
        (
            "direction = \"in\"\naction = \"accept\"\nproto = \"tcp\"\nports = \"443,80,8000-8100,81,8050-8200\"\ncomment = \"web\"",
            Stage::Late,
            "tcp dport { 80-81, 443, 8000-8200 } accept comment \"g: web\"",
        ),
        (
            "direction = \"in\"\naction = \"accept\"\nproto = \"udp\"\nports = \"53\"",
            Stage::Late,
            "udp dport 53 accept comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"accept\"\nproto = \"udp\"\nports = \"60000-61000\"",
            Stage::Early,
            "udp dport 60000-61000 return comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"accept\"\nproto = \"tcp\"",
            Stage::Late,
            "meta l4proto 6 accept comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"accept\"\nproto = \"icmp\"\nsource = \"10.0.0.0/8\"",
            Stage::Late,
            "ip saddr 10.0.0.0/8 meta l4proto 1 accept comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"accept\"\nproto = \"icmpv6\"\nsource = \"2001:db8::/32\"",
            Stage::Late,
            "ip6 saddr 2001:db8::/32 meta l4proto 58 accept comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"drop\"\nsource = \"2001:db8::1\"",
            Stage::Late,
            "ip6 saddr 2001:db8::1 drop comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"accept\"\nsource = \"192.0.2.7\"",
            Stage::Late,
            "ip saddr 192.0.2.7 accept comment \"g: rule 1\"",
        ),
        (
            "direction = \"out\"\naction = \"drop\"\nproto = \"tcp\"\nports = \"25\"\ndest = \"fd00::/8\"",
            Stage::Early,
            "ip6 daddr fd00::/8 tcp dport 25 drop comment \"g: rule 1\"",
        ),
        (
            "direction = \"out\"\naction = \"accept\"\ndest = \"10.0.0.0/8\"",
            Stage::Early,
            "ip daddr 10.0.0.0/8 return comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"reject\"\nproto = \"tcp\"\nports = \"22\"",
            Stage::Early,
            "tcp dport 22 reject with tcp reset comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"reject\"\nproto = \"tcp\"\nports = \"22\"",
            Stage::Late,
            "tcp dport 22 drop comment \"g: rule 1\"",
        ),
        (
            "direction = \"out\"\naction = \"reject\"\nproto = \"udp\"",
            Stage::Early,
            "meta l4proto 17 reject comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"reject\"",
            Stage::Early,
            "reject comment \"g: rule 1\"",
        ),
        (
            "direction = \"in\"\naction = \"accept\"",
            Stage::Late,
            "accept comment \"g: rule 1\"",
        ),
    ];
    for (fields, stage, expected) in cases {
        let got = translated(&rule(fields), *stage);
        assert_eq!(got, [expected.to_string()], "{fields}");
    }
}

#[test]
fn rules_keep_their_number_in_the_group_and_their_order() {
    let toml = format!(
        "{}{}{}",
        rule("direction = \"in\"\naction = \"accept\"\nproto = \"tcp\"\nports = \"1\""),
        rule("direction = \"out\"\naction = \"drop\""),
        rule("direction = \"in\"\naction = \"drop\"\nproto = \"tcp\"\nports = \"2\""),
    );
    let got = translated(&toml, Stage::Late);
    assert_eq!(got[2], "tcp dport 2 drop comment \"g: rule 3\"");
}

#[test]
fn comments_are_sanitized() {
    assert_eq!(sanitize_comment("web: http"), "web: http");
    assert_eq!(
        sanitize_comment("a \"quoted\" \\path\\ caf\u{e9}\t\n{};#$"),
        "a _quoted_ _path_ caf___{};#$"
    );
    let long = sanitize_comment(&"\u{e9}x".repeat(200));
    assert_eq!(long.len(), 120);
    assert!(long.bytes().all(|b| (b' '..=b'~').contains(&b)));
}

#[test]
fn without_groups_the_bridge_table_needs_no_conntrack() {
    let config = config(&[
        ("node.toml", "name = \"n1\"\n"),
        ("cluster/networks/lan.toml", "kind = \"bridge\"\n"),
        (
            "cluster/vms/a.toml",
            "[[nic]]\nnetwork = \"lan\"\n[[nic]]\nnetwork = \"lan\"\nfirewall = []\n",
        ),
    ]);
    let text = render_ruleset(&config, "n1");
    let bridge = bridge_part(&text);
    assert!(
        !rule_lines(bridge).iter().any(|l| l.starts_with("ct ")),
        "{bridge}"
    );
    assert!(!bridge.contains("oifname vmap"), "{bridge}");
    assert!(!bridge.contains("ether daddr vmap"), "{bridge}");
    assert_eq!(bridge.matches("ether saddr != ").count(), 2);
    // The node's own input still uses conntrack (inet works everywhere).
    assert!(inet_part(&text).contains("ct state established,related accept"));
}

#[test]
fn without_vms_the_bridge_table_has_only_empty_base_chains() {
    let config = config(&[("node.toml", "name = \"n1\"\n")]);
    let built = build(&config, "n1");
    assert!(!bridge_part(&built.text).contains("vmap"));
    for hook in ["prerouting", "forward", "output"] {
        assert!(built.text.contains(&format!(
            "chain {hook} {{\n\t\ttype filter hook {hook} priority 0; policy accept;\n\t}}"
        )));
    }
}

#[test]
fn reject_needs_the_early_chain_and_is_a_drop_late() {
    let config = config(&basic_files());
    let text = render_ruleset(&config, "node1");
    let a0 = &nic_ports(&config, "node1")[0];
    assert!(text.contains("chain early-in-web.ops {"));
    assert!(text.contains(&format!("{} : jump early-in-web.ops", a0.mac)));
    let chain_body = |name: &str| {
        let start = text.find(&format!("chain {name} {{")).unwrap();
        let body = &text[start..];
        body[..body.find("\n\t}").unwrap()].to_string()
    };
    let late = chain_body("in-web.ops");
    assert!(
        !rule_lines(&late).iter().any(|l| l.contains("reject")),
        "{late}"
    );
    assert!(late.contains("tcp dport 22 drop"), "{late}");
    // `reject` only where the kernel allows it: chains reached from
    // prerouting (from-*, out-*, early-in-*).
    let early = |chain: &str| {
        ["from-", "out-", "early-in-"]
            .iter()
            .any(|p| chain.starts_with(p))
    };
    let mut chain = "";
    for line in rule_lines(&text) {
        if let Some(name) = line.strip_prefix("chain ") {
            chain = name;
        }
        if line.contains("reject") {
            assert!(early(chain), "{chain}: {line}");
        }
        // Prerouting chains never accept: that would skip the early check.
        if early(chain) {
            assert!(!line.contains("accept"), "{chain}: {line}");
        }
    }
    // The refusals get through to filtered VMs.
    assert!(text.contains("ct state invalid tcp flags & rst == rst accept"));
}

#[test]
fn nics_with_the_same_groups_share_their_chains() {
    let mut files = basic_files();
    files.push((
        "cluster/vms/d.toml",
        "node = \"node1\"\n[[nic]]\nnetwork = \"lan\"\nfirewall = [\"web\", \"ops\"]\n\
         [[nic]]\nnetwork = \"lan\"\nfirewall = [\"ops\"]\n",
    ));
    let config = config(&files);
    let text = render_ruleset(&config, "node1");
    for chain in ["in-web.ops", "out-web.ops", "in-ops", "out-ops"] {
        assert_eq!(
            text.matches(&format!("chain {chain} {{")).count(),
            1,
            "{chain}"
        );
    }
    assert_eq!(text.matches("jump in-web.ops").count(), 2);
    assert_eq!(text.matches("jump out-web.ops").count(), 2);
    assert_eq!(text.matches("jump in-ops\n").count(), 1);
    // ops has no inbound reject: no early chain of its own.
    assert!(!text.contains("early-in-ops"));
}

#[test]
fn very_many_groups_get_a_short_chain_name() {
    let groups: Vec<String> = (0..20)
        .map(|i| format!("group-{i:02}-{}", "x".repeat(20)))
        .collect();
    let name = ruleset::list_name(&groups);
    assert_eq!(name.len(), 16);
    assert_eq!(name, ruleset::list_name(&groups));
    assert_eq!(ruleset::list_name(&groups[..2]), groups[..2].join("."));
}

#[test]
fn a_nic_with_groups_but_no_reject_has_no_early_chain() {
    let config = config(&[
        ("node.toml", "name = \"n1\"\n"),
        ("cluster/networks/lan.toml", "kind = \"bridge\"\n"),
        (
            "cluster/firewall/g.toml",
            &rule("direction = \"in\"\naction = \"drop\"\nproto = \"tcp\"\nports = \"22\""),
        ),
        (
            "cluster/vms/a.toml",
            "[[nic]]\nnetwork = \"lan\"\nfirewall = [\"g\"]\n",
        ),
    ]);
    let text = render_ruleset(&config, "n1");
    assert!(!text.contains("chain early-in-") && !text.contains("jump early-in-"));
    assert!(!text.contains("ether daddr vmap"));
    assert!(text.contains("oifname vmap"));
}

#[test]
fn node_input_policy_lists_sources_by_family() {
    let config = config(&basic_files());
    let text = render_ruleset(&config, "node1");
    let inet = rule_lines(inet_part(&text));
    for expected in [
        "type filter hook input priority 0; policy drop;",
        "iif lo accept",
        "meta l4proto { 1, 58 } accept",
        "udp dport 68 accept",
        "udp dport 546 accept",
        // 10.1.0.0/16 is inside 10.0.0.0/8.
        "ip saddr 10.0.0.0/8 tcp dport 22 accept",
        "ip6 saddr 2001:db8::/32 tcp dport 22 accept",
        "ip saddr 192.168.1.0/24 tcp dport 8006 accept",
        "ip saddr 10.0.0.2 tcp dport 7946 accept",
        "ip6 saddr fd00::3 udp dport 7946 accept",
        "ip saddr 10.0.0.2 udp dport 4789 accept",
    ] {
        assert!(inet.contains(&expected), "{expected}\n{inet:#?}");
    }
    // Not from this node itself, and the status port is not open for v6.
    assert!(!inet.iter().any(|l| l.contains("10.0.0.1")));
    assert!(
        !inet
            .iter()
            .any(|l| l.starts_with("ip6 saddr") && l.contains("8006"))
    );
}

#[test]
fn node_input_without_restrictions_or_cluster() {
    let config = config(&[(
        "node.toml",
        "name = \"n1\"\n[status]\nlisten = \"[::]:9000\"\n",
    )]);
    let text = render_ruleset(&config, "n1");
    let inet = rule_lines(inet_part(&text));
    assert!(inet.contains(&"tcp dport 22 accept"));
    assert!(inet.contains(&"tcp dport 9000 accept"));
    assert!(!inet.iter().any(|l| l.contains("4789")));
}

#[test]
fn filter_input_false_leaves_the_inet_table_empty() {
    let config = config(&[(
        "node.toml",
        "name = \"n1\"\n[firewall]\nfilter_input = false\n",
    )]);
    let text = render_ruleset(&config, "n1");
    let inet = inet_part(&text);
    assert!(!inet.contains("chain"), "{inet}");
    assert_eq!(rule_lines(inet), ["table inet horcrux {", "}"]);
}

#[test]
fn rendering_for_another_node_uses_default_node_settings() {
    let config = config(&basic_files());
    let text = render_ruleset(&config, "node2");
    let inet = rule_lines(inet_part(&text));
    assert!(inet.contains(&"tcp dport 22 accept"), "{inet:#?}");
    assert!(inet.contains(&"ip saddr 10.0.0.1 tcp dport 7946 accept"));
    assert!(!inet.iter().any(|l| l.contains("10.0.0.2")));
}

#[test]
fn rendering_is_deterministic_whatever_the_file_order() {
    let files = basic_files();
    let mut reversed = files.clone();
    reversed.reverse();
    let a = render_ruleset(&config(&files), "node1");
    let b = render_ruleset(&config(&reversed), "node1");
    assert_eq!(a, b);
    assert_eq!(a, render_ruleset(&config(&files), "node1"));
}

#[test]
fn desired_is_one_live_resource_with_the_text_as_payload() {
    let config = config(&basic_files());
    let desired = FirewallBackend::new(NFT).desired(&config);
    assert_eq!(desired.len(), 1);
    let d = &desired[0];
    assert_eq!(d.id, ResourceId::new(ResourceKind::Firewall, "horcrux"));
    let built = build(&config, "node1");
    assert_eq!(d.payload[PAYLOAD], built.text);
    assert_eq!(d.fields["ruleset"].value, ruleset_digest(&built.text));
    assert_eq!(d.fields["ruleset"].value.len(), 16);
    assert_eq!(d.fields["rules"].value, built.rules.to_string());
    assert!(d.fields.values().all(|f| f.live));
    assert_eq!(d.fields.len(), 2);

    let no_node = Config::default();
    assert!(FirewallBackend::new(NFT).desired(&no_node).is_empty());
}

#[test]
fn listings_are_counted_and_hashed_without_handles_and_version() {
    let bridge = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "bridge", "name": "horcrux", "handle": 3}},
        {"chain": {"family": "bridge", "table": "horcrux", "name": "forward", "handle": 1}},
        {"rule": {"family": "bridge", "table": "horcrux", "chain": "forward", "handle": 4, "expr": [{"accept": null}]}},
        {"rule": {"family": "bridge", "table": "horcrux", "chain": "forward", "handle": 5, "expr": [{"drop": null}]}}]}"#;
    let inet = r#"{"nftables": [{"table": {"family": "inet", "name": "horcrux", "handle": 9}}]}"#;
    let one = nft::parse_listings(&[Some(bridge.into()), Some(inet.into())])
        .unwrap()
        .unwrap();
    assert_eq!(one.rules, 2);
    assert_eq!(one.hash.len(), 64);
    // Other handles and another nft version: the same rules.
    let renumbered = bridge
        .replace("\"handle\": 4", "\"handle\": 40")
        .replace("1.0.6", "1.0.9");
    let two = nft::parse_listings(&[Some(renumbered), Some(inet.into())])
        .unwrap()
        .unwrap();
    assert_eq!(one, two);
    // A changed rule, or a table missing, is another hash.
    let edited = bridge.replace("\"drop\"", "\"accept\"");
    let three = nft::parse_listings(&[Some(edited), Some(inet.into())])
        .unwrap()
        .unwrap();
    assert_ne!(one.hash, three.hash);
    let only_bridge = nft::parse_listings(&[Some(bridge.into()), None])
        .unwrap()
        .unwrap();
    assert_ne!(one.hash, only_bridge.hash);
    assert_eq!(only_bridge.rules, 2);
    // Neither table: nothing to observe.
    assert_eq!(nft::parse_listings(&[None, None]), Ok(None));
}

#[test]
fn odd_listings_are_errors_not_panics() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for garbage in [
        "",
        "not json",
        "[]",
        "null",
        "{}",
        r#"{"nftables": {}}"#,
        r#"{"nftables": [1, 2]}"#,
        r#"{"nftables": [{"rule": 1}, "x"]}"#,
        r#"{"nftables": [{"rule": {"expr": []}}"#,
        deep.as_str(),
    ] {
        let result = nft::parse_listings(&[Some(garbage.to_string()), None]);
        assert!(result.is_err(), "{garbage:.40}: {result:?}");
    }
    // Odd but well-formed: counted, not refused.
    let odd = r#"{"nftables": [{"rule": 1}, {"rule": {"handle": "x"}}, {}]}"#;
    let listing = nft::parse_listings(&[Some(odd.to_string()), None])
        .unwrap()
        .unwrap();
    assert_eq!(listing.rules, 2);
}

/// A fake `nft` in a temporary directory: `-f -` stores its input in
/// `applied`; `-j -s list table <family> horcrux` prints `<family>.json`,
/// or fails like nft when that file does not exist.
struct FakeNft {
    dir: tempfile::TempDir,
}

impl FakeNft {
    fn new() -> FakeNft {
        let dir = tempfile::tempdir().unwrap();
        let script = "#!/bin/sh\ndir=$(dirname \"$0\")\n\
            case \"$1\" in\n\
            -f) cat > \"$dir/applied\" ;;\n\
            -j) if [ -f \"$dir/$5.json\" ]; then cat \"$dir/$5.json\"; else\n\
                echo \"Error: No such file or directory\" >&2; exit 1; fi ;;\n\
            *) exit 2 ;;\n\
            esac\n";
        let fake = FakeNft { dir };
        fake.script("nft", script);
        fake
    }

    fn script(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn nft(&self) -> PathBuf {
        self.dir.path().join("nft")
    }

    fn set_table(&self, family: &str, json: Option<&str>) {
        let path = self.dir.path().join(format!("{family}.json"));
        match json {
            Some(json) => std::fs::write(path, json).unwrap(),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn applied(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("applied")).unwrap()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f` again while a just-written script is "busy": another test's
/// fork may briefly hold it open for writing (ETXTBSY).
fn retry_busy<T, E: std::fmt::Display>(mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    for _ in 0..50 {
        match f() {
            Err(e) if e.to_string().contains("Text file busy") => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
    f()
}

const BRIDGE_JSON: &str = r#"{"nftables": [{"table": {"family": "bridge", "name": "horcrux", "handle": 1}},
    {"rule": {"chain": "forward", "handle": 2, "expr": []}}]}"#;
const INET_JSON: &str =
    r#"{"nftables": [{"table": {"family": "inet", "name": "horcrux", "handle": 1}}]}"#;

#[test]
fn observe_remembers_what_it_applied_and_sees_changes_by_hand() {
    let fake = FakeNft::new();
    let backend = FirewallBackend::new(fake.nft());
    let config = config(&basic_files());
    let desired = backend.desired(&config);
    let rt = runtime();

    // Nothing loaded: nothing observed, the plan creates the resource.
    let observed = retry_busy(|| rt.block_on(backend.observe())).unwrap();
    assert!(observed.is_empty());
    let first = plan(&desired, &observed);
    assert_eq!(first.actions.len(), 1);

    // Tables of an earlier hostd: observed as changed, then applied.
    fake.set_table("bridge", Some(BRIDGE_JSON));
    fake.set_table("inet", Some(INET_JSON));
    let observed = rt.block_on(backend.observe()).unwrap();
    assert_eq!(observed[0].fields["ruleset"], CHANGED_OUTSIDE);
    assert_eq!(observed[0].fields["rules"], "1");
    let update = plan(&desired, &observed);
    assert_eq!(update.actions.len(), 1);
    rt.block_on(backend.apply(&update.actions[0], Some(&desired[0])))
        .unwrap();
    assert_eq!(fake.applied(), desired[0].payload[PAYLOAD]);
    let observed = rt.block_on(backend.observe()).unwrap();
    assert_eq!(
        observed[0].fields["ruleset"],
        desired[0].fields["ruleset"].value
    );

    // A rule added by hand.
    fake.set_table(
        "bridge",
        Some(&BRIDGE_JSON.replace("[]}}]", "[]}}, {\"rule\": {}}]")),
    );
    let observed = rt.block_on(backend.observe()).unwrap();
    assert_eq!(observed[0].fields["ruleset"], CHANGED_OUTSIDE);
    assert_eq!(observed[0].fields["rules"], "2");

    // Deleted: both tables go in one transaction, memory is forgotten.
    let delete = plan(&[], &observed);
    rt.block_on(backend.apply(&delete.actions[0], None))
        .unwrap();
    assert_eq!(fake.applied(), ruleset::DELETE_TEXT);
    fake.set_table("bridge", None);
    fake.set_table("inet", None);
    assert!(rt.block_on(backend.observe()).unwrap().is_empty());
}

#[test]
fn nft_errors_carry_its_stderr_bounded() {
    let fake = FakeNft::new();
    let noisy = fake.script(
        "noisy",
        "#!/bin/sh\ncat >/dev/null\necho '  Error: syntax error, unexpected junk' >&2\n\
         head -c 100000 /dev/zero | tr '\\0' x >&2\nexit 1\n",
    );
    let nft = Nft::new(&noisy, Duration::from_secs(10));
    let rt = runtime();
    let err = retry_busy(|| rt.block_on(nft.apply("table inet x\n"))).unwrap_err();
    let NftError::Command(CommandError::Failed { stderr, .. }) = &err else {
        panic!("{err:?}");
    };
    assert!(stderr.starts_with("Error: syntax error, unexpected junk"));
    assert!(stderr.len() < 2100, "{}", stderr.len());
    assert!(!err.retryable());
    assert!(err.to_string().contains("-f -"));
}

#[test]
fn garbage_from_nft_fails_observe() {
    let fake = FakeNft::new();
    fake.set_table("bridge", Some("{\"nftables\": [ garbage"));
    let backend = FirewallBackend::new(fake.nft());
    let err = retry_busy(|| runtime().block_on(backend.observe())).unwrap_err();
    assert!(err.message.contains("not JSON"), "{}", err.message);
}

#[test]
fn a_hanging_nft_is_killed_at_the_time_limit() {
    let fake = FakeNft::new();
    let slow = fake.script("slow", "#!/bin/sh\nexec sleep 30\n");
    let nft = Nft::new(&slow, Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = retry_busy(|| runtime().block_on(nft.apply(""))).unwrap_err();
    assert!(
        matches!(err, NftError::Command(CommandError::Timeout { .. })),
        "{err:?}"
    );
    assert!(err.retryable());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_missing_nft_is_a_clear_error() {
    let backend = FirewallBackend::new("/nonexistent/nft");
    let err = runtime().block_on(backend.observe()).unwrap_err();
    assert!(
        err.message.starts_with("cannot run /nonexistent/nft"),
        "{}",
        err.message
    );
}
