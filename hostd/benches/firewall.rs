//! Ruleset generation for 1,000 VMs with one NIC each in a security group
//! of 5 rules (what the daemon does on every observe-plan cycle, through
//! `FirewallBackend::desired`).
//!
//! ```text
//! cargo bench -p horcrux-hostd --bench firewall -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! The apply time of the same ruleset is printed by the `net_firewall`
//! test `apply_time_for_1000_vms`.

#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use horcrux_config::Config;
use horcrux_hostd::apply::Backend as _;
use horcrux_hostd::backend::firewall::{FirewallBackend, NFT, render_ruleset};

const VMS: usize = 1000;

const GROUP: &str = "[[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"tcp\"\nports = \"80,443\"\n\
    [[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"tcp\"\nports = \"22\"\nsource = \"10.0.0.0/8\"\n\
    [[rule]]\ndirection = \"in\"\naction = \"accept\"\nproto = \"icmp\"\n\
    [[rule]]\ndirection = \"in\"\naction = \"reject\"\nproto = \"tcp\"\nports = \"3306\"\n\
    [[rule]]\ndirection = \"out\"\naction = \"drop\"\nproto = \"tcp\"\nports = \"25\"\n";

fn tree() -> Config {
    let mut files = vec![
        ("node.toml".to_string(), "name = \"node1\"\n".to_string()),
        (
            "cluster/networks/lan.toml".to_string(),
            "kind = \"bridge\"\n".to_string(),
        ),
        ("cluster/firewall/web.toml".to_string(), GROUP.to_string()),
    ];
    for i in 0..VMS {
        files.push((
            format!("cluster/vms/vm-{i:04}.toml"),
            "[[nic]]\nnetwork = \"lan\"\nfirewall = [\"web\"]\n".to_string(),
        ));
    }
    support::config(files)
}

fn bench_firewall(c: &mut Criterion) {
    let config = tree();
    let text = render_ruleset(&config, "node1");
    assert_eq!(text.matches("chain to-").count(), VMS);
    eprintln!("ruleset for {VMS} VMs: {} bytes", text.len());
    c.bench_function("firewall ruleset, 1000 VMs x 1 NIC x 5 rules", |b| {
        b.iter(|| render_ruleset(black_box(&config), "node1"))
    });
    let backend = FirewallBackend::new(NFT);
    c.bench_function("firewall desired (ruleset + digest), 1000 VMs", |b| {
        b.iter(|| backend.desired(black_box(&config)))
    });
}

criterion_group!(benches, bench_firewall);
criterion_main!(benches);
