//! Plan for 10,000 VMs (about 10 fields each) with 1 % changed, plus 100
//! networks and 10,000 volumes they depend on.
//!
//! ```text
//! cargo bench -p horcrux-hostd --bench plan -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! The target is <= 50 ms per plan.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use horcrux_hostd::plan::{Desired, Observed, ResourceId, ResourceKind, plan, render_plan};

const VMS: usize = 10_000;
const NETWORKS: usize = 100;

fn tree() -> (Vec<Desired>, Vec<Observed>) {
    let mut desired = Vec::new();
    let mut observed = Vec::new();
    for n in 0..NETWORKS {
        let id = ResourceId::new(ResourceKind::Network, format!("net-{n}"));
        desired.push(
            Desired::new(id.clone())
                .field("bridge", format!("br{n}"))
                .field("mtu", "1500"),
        );
        observed.push(
            Observed::new(id)
                .field("bridge", format!("br{n}"))
                .field("mtu", "1500"),
        );
    }
    for i in 0..VMS {
        let network = ResourceId::new(ResourceKind::Network, format!("net-{}", i % NETWORKS));
        let volume = ResourceId::new(ResourceKind::Volume, format!("vm-{i}-root"));
        desired.push(
            Desired::new(volume.clone())
                .field("size", "20G")
                .field("pool", "tank"),
        );
        observed.push(
            Observed::new(volume.clone())
                .field("size", "20G")
                .field("pool", "tank"),
        );

        let id = ResourceId::new(ResourceKind::Vm, format!("vm-{i}"));
        let changed = i % 100 == 0;
        let mut d = Desired::new(id.clone())
            .field("cpus", if changed { "4" } else { "2" })
            .field("memory", "4096")
            .field("balloon", "on")
            .field("description", format!("virtual machine number {i}"))
            .restart_field("machine", "q35")
            .restart_field("firmware", "uefi")
            .restart_field("disk0", format!("/dev/zvol/tank/vm-{i}-root"))
            .restart_field("nic0", format!("net-{}", i % NETWORKS))
            .restart_field(
                "mac0",
                format!("52:54:00:{:02x}:{:02x}:01", i / 256 % 256, i % 256),
            )
            .field("autostart", "true")
            .depends_on(network.clone())
            .depends_on(volume.clone());
        d.auto_restart = i % 2 == 0;
        let mut o = Observed::new(id)
            .running(true)
            .depends_on(network)
            .depends_on(volume);
        for (name, field) in &d.fields {
            o.fields.insert(name.clone(), field.value.clone());
        }
        o.fields.insert("cpus".into(), "2".into());
        o.fields.insert("pid".into(), format!("{}", 1000 + i));
        desired.push(d);
        observed.push(o);
    }
    (desired, observed)
}

/// What the daemon passes: `observe_all` sorts by id, and so does the
/// generation's list of resources for this node.
fn sorted_tree() -> (Vec<Desired>, Vec<Observed>) {
    let (mut desired, mut observed) = tree();
    desired.sort_by(|a, b| a.id.cmp(&b.id));
    observed.sort_by(|a, b| a.id.cmp(&b.id));
    (desired, observed)
}

fn bench_plan(c: &mut Criterion) {
    let (desired, observed) = tree();
    let plan_once = plan(&desired, &observed);
    assert_eq!(plan_once.actions.len(), VMS / 100);
    assert!(
        render_plan(&plan_once)
            .ends_with("Plan: 0 to create, 100 to change, 0 to remove, 0 waiting for restart.\n")
    );
    c.bench_function("plan 10k vms, 1% changed, unsorted input", |b| {
        b.iter(|| plan(black_box(&desired), black_box(&observed)))
    });
    let (sorted_desired, sorted_observed) = sorted_tree();
    assert_eq!(plan(&sorted_desired, &sorted_observed), plan_once);
    c.bench_function("plan 10k vms, 1% changed, sorted input", |b| {
        b.iter(|| plan(black_box(&sorted_desired), black_box(&sorted_observed)))
    });
    c.bench_function("plan 10k vms, empty system (20,100 creates)", |b| {
        b.iter(|| plan(black_box(&sorted_desired), black_box(&[])))
    });
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
