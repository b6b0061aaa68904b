//! What the storage backend does on every observe-plan cycle, at 1,000
//! VMs: parsing `zfs list` of 1,000 zvols with 25 snapshots each (26,000
//! lines, the shape of the output captured from ZFS 2.1.11), and
//! computing the desired pools and volumes.
//!
//! ```text
//! cargo bench -p horcrux-hostd --bench storage -- --warm-up-time 1 --measurement-time 5
//! ```

#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

mod support;

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use horcrux_config::Config;
use horcrux_hostd::apply::Backend as _;
use horcrux_hostd::backend::naming::Layout;
use horcrux_hostd::backend::storage::StorageBackend;
use horcrux_hostd::backend::storage::zfs::parse_zvols;

const VMS: usize = 1000;
const SNAPSHOTS: usize = 25;

/// `zfs list -H -p -t volume,snapshot -o name,type,volsize,used,
/// referenced,origin,creation,horcrux:volume,horcrux:snapshot`.
fn listing() -> String {
    let mut out = String::new();
    for vm in 0..VMS {
        let dataset = format!("tank/vms/vm-vm-{vm:04}-disk0");
        let id = format!("local/vm-vm-{vm:04}-disk0");
        let _ = writeln!(
            out,
            "{dataset}\tvolume\t21474836480\t3221225472\t2147483648\t-\t1795671286\t{id}\t-"
        );
        for snap in 0..SNAPSHOTS {
            let _ = writeln!(
                out,
                "{dataset}@auto-20261126T{:02}0000Z\tsnapshot\t21474836480\t1048576\t2147483648\t-\t{}\t{id}\tscheduled",
                snap % 24,
                1_795_671_286 + snap * 3600
            );
        }
    }
    out
}

fn tree() -> Config {
    let mut files = vec![
        (
            "node.toml".to_string(),
            "name = \"node1\"\n[zfs]\npools = [\"tank\"]\n".to_string(),
        ),
        (
            "cluster/storage/local.toml".to_string(),
            "kind = \"zfs\"\npool = \"tank/vms\"\n".to_string(),
        ),
    ];
    for i in 0..VMS {
        files.push((
            format!("cluster/vms/vm-{i:04}.toml"),
            "[[disk]]\nstorage = \"local\"\nsize = \"20GiB\"\n[snapshots]\nevery = \"1h\"\nkeep = 24\n\
             [[snapshot]]\nname = \"base\"\n"
                .to_string(),
        ));
    }
    support::config(files)
}

fn bench_storage(c: &mut Criterion) {
    let text = listing();
    let parsed = parse_zvols(&text).unwrap();
    assert_eq!(parsed.len(), VMS);
    assert_eq!(parsed[0].snapshots.len(), SNAPSHOTS);
    c.bench_function("parse zfs list: 1,000 zvols x 25 snapshots", |b| {
        b.iter(|| parse_zvols(black_box(&text)).unwrap());
    });
    let config = tree();
    let backend = StorageBackend::new(Layout::default(), None);
    assert_eq!(backend.desired(&config).len(), VMS + 1);
    c.bench_function("desired pools and volumes: 1,000 VMs", |b| {
        b.iter(|| backend.desired(black_box(&config)));
    });
}

criterion_group!(benches, bench_storage);
criterion_main!(benches);
