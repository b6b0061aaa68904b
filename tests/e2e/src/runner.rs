//! Named cases run in order against shared state (one booted node serves
//! many cases), with libtest-like output, a closing `N passed, N failed`
//! line, and the measured numbers in target/e2e/metrics.json.

use std::time::Instant;

use anyhow::Result;

/// One case: its name says what it covers.
#[derive(Debug)]
pub struct Case<C> {
    pub name: &'static str,
    pub run: fn(&mut C) -> Result<()>,
}

/// Measurements collected by the cases (seconds).
#[derive(Debug, Default)]
pub struct Metrics(Vec<(String, f64)>);

impl Metrics {
    pub fn record(&mut self, name: &str, seconds: f64) {
        eprintln!("e2e: metric {name} = {seconds:.1} s");
        self.0.push((name.to_string(), seconds));
    }

    pub fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!((v * 10.0).round() / 10.0)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Which cases to run: names containing any of the filters (all when none).
pub fn selected<C>(cases: &[Case<C>], filters: &[String]) -> Vec<bool> {
    cases
        .iter()
        .map(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .collect()
}

/// Runs the selected cases in order. After a failure, `healthy` decides
/// whether the rest can still run (e.g. the node is still up). Returns
/// the number of failures.
pub fn run<C>(
    ctx: &mut C,
    cases: &[Case<C>],
    selected: &[bool],
    mut on_failure: impl FnMut(&mut C, &str) -> bool,
) -> usize {
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut stop = false;
    for (case, &on) in cases.iter().zip(selected) {
        if !on || stop {
            skipped += 1;
            if stop {
                println!(
                    "test {} ... skipped (an earlier failure left no node)",
                    case.name
                );
            }
            continue;
        }
        let started = Instant::now();
        match (case.run)(ctx) {
            Ok(()) => {
                passed += 1;
                println!(
                    "test {} ... ok ({:.1} s)",
                    case.name,
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                failed += 1;
                println!(
                    "test {} ... FAILED ({:.1} s)\n{e:#}",
                    case.name,
                    started.elapsed().as_secs_f64()
                );
                stop = !on_failure(ctx, case.name);
            }
        }
    }
    println!();
    println!("e2e: {passed} passed, {failed} failed, {skipped} skipped");
    failed
}
