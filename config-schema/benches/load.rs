//! Load and validate a generated tree of 10,000 VMs, 100 networks and 100
//! firewall groups in a 3-member cluster.
//!
//! ```text
//! cargo bench -p horcrux-config --bench load -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! The numbers are printed, not asserted; the target is <= 500 ms and
//! <= 200 MB peak RSS for `horcrux check` of such a tree (scripts/bench.sh).

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use horcrux_config::{TreeFile, check_files, load};

#[allow(dead_code)] // `main` and the argument parsing are for the example.
#[path = "../examples/gen_tree.rs"]
mod gen_tree;

fn assert_valid(root: &Path) {
    let checked = load(root).expect("the generated tree is readable");
    let shown: Vec<String> = checked
        .errors
        .iter()
        .take(10)
        .map(ToString::to_string)
        .collect();
    assert!(
        checked.is_valid(),
        "the generated tree has {} errors, first: {shown:#?}",
        checked.errors.len()
    );
}

fn bench_load(c: &mut Criterion) {
    let spec = gen_tree::Spec::default();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let started = Instant::now();
    gen_tree::write(dir.path(), spec).expect("the tree is written");
    println!(
        "generated {} VMs, {} networks, {} groups in {:?}",
        spec.vms,
        spec.networks,
        spec.groups,
        started.elapsed()
    );
    assert_valid(dir.path());

    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    // What `horcrux check` does: walk and read the tree, decode, validate.
    group.bench_function("10k_vms/disk", |b| {
        b.iter(|| {
            let checked = load(black_box(dir.path())).expect("readable");
            assert!(checked.is_valid());
            checked
        })
    });
    // Decoding and validation alone, from files already in memory.
    let files: Vec<TreeFile> = gen_tree::files(spec)
        .into_iter()
        .map(|(path, content)| TreeFile {
            path,
            content: Ok(content.into_bytes()),
        })
        .collect();
    group.bench_function("10k_vms/memory", |b| {
        b.iter_batched(
            || files.clone(),
            |files| {
                let checked = check_files(black_box(files));
                assert!(checked.is_valid());
                checked
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
