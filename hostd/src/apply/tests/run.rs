//! Concurrency, dependency gating, isolation and backoff.

use super::*;

#[tokio::test]
async fn independent_actions_run_concurrently() {
    let mem = Arc::new(Mem {
        barrier: Some(Arc::new(Barrier::new(2))),
        ..Mem::new(&[ResourceKind::Vm])
    });
    let backends: Vec<Arc<dyn Backend>> = vec![mem.clone()];
    let desired = vec![
        Desired::new(vm("a")).field("cpus", "1"),
        Desired::new(vm("b")).field("cpus", "1"),
    ];
    let mut executor = Executor::new(fast());
    // Each apply waits until both run: sequential execution would hang.
    let (_, report) = timeout(
        Duration::from_secs(5),
        cycle(&mut executor, &desired, &backends),
    )
    .await
    .unwrap();
    assert_eq!(report.applied.len(), 2);
    assert!(
        executor
            .statuses()
            .iter()
            .all(|s| s.state == ResourceState::Converged)
    );
}

#[tokio::test]
async fn dependents_wait_for_their_dependencies() {
    let nets = Arc::new(Mem::new(&[ResourceKind::Network]));
    let vms = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![vms.clone(), nets.clone()];
    let desired = vec![
        Desired::new(net("lan")).field("bridge", "br0"),
        Desired::new(vm("a")).depends_on(net("lan")),
        Desired::new(vm("b")).depends_on(vm("a")),
        Desired::new(vm("free")),
    ];
    nets.fail(net("lan"), 1);
    let mut executor = Executor::new(fast());
    let (_, report) = cycle(&mut executor, &desired, &backends).await;
    assert_eq!(nets.calls(), ["create network lan"]);
    assert_eq!(vms.calls(), ["create vm free"]);
    assert_eq!(
        state_of(&executor, &net("lan")),
        (ResourceState::Failed, Some("lan is broken".into()), 1)
    );
    assert_eq!(
        state_of(&executor, &vm("a")),
        (
            ResourceState::Pending,
            Some("waiting for network lan".into()),
            0
        )
    );
    assert_eq!(
        state_of(&executor, &vm("b")),
        (ResourceState::Pending, Some("waiting for vm a".into()), 0)
    );
    assert_eq!(
        state_of(&executor, &vm("free")),
        (ResourceState::Converged, None, 0)
    );
    assert_eq!(report.skipped.len(), 2);

    tokio::time::sleep_until(report.next_retry.unwrap()).await;
    let (_, report) = cycle(&mut executor, &desired, &backends).await;
    assert!(report.failed.is_empty() && report.skipped.is_empty());
    let creates: Vec<String> = vms.calls().into_iter().skip(1).collect();
    assert_eq!(creates, ["create vm a", "create vm b"]);
    assert!(
        executor
            .statuses()
            .iter()
            .all(|s| s.state == ResourceState::Converged && s.error.is_none())
    );
    let (plan, _) = cycle(&mut executor, &desired, &backends).await;
    assert!(plan.is_empty(), "plan after apply: {plan:?}");
}

#[tokio::test]
async fn one_failure_does_not_stop_the_others() {
    let mem = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![mem.clone()];
    mem.fail(vm("bad"), u32::MAX);
    let desired: Vec<Desired> = ["a", "bad", "c", "d"]
        .iter()
        .map(|n| Desired::new(vm(n)).field("cpus", "1"))
        .collect();
    let mut executor = Executor::new(fast()).with_max_parallel(1);
    let (_, report) = cycle(&mut executor, &desired, &backends).await;
    assert_eq!(report.failed, [(vm("bad"), "bad is broken".to_string())]);
    let states: Vec<(String, ResourceState)> = executor
        .statuses()
        .into_iter()
        .map(|s| (s.name, s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a".into(), ResourceState::Converged),
            ("bad".into(), ResourceState::Failed),
            ("c".into(), ResourceState::Converged),
            ("d".into(), ResourceState::Converged),
        ]
    );
}

#[tokio::test]
async fn failures_back_off_exponentially_up_to_the_cap() {
    let mem = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![mem.clone()];
    mem.fail(vm("bad"), 3);
    let desired = vec![Desired::new(vm("bad"))];
    let mut executor = Executor::new(fast());
    let mut delays = Vec::new();
    for attempt in 1..=3u32 {
        let before = Instant::now();
        let (_, report) = cycle(&mut executor, &desired, &backends).await;
        let after = Instant::now();
        let retry = report.next_retry.unwrap();
        assert!(retry >= before && retry <= after + fast().cap);
        delays.push((retry - before, retry - after));
        assert_eq!(
            state_of(&executor, &vm("bad")),
            (ResourceState::Failed, Some("bad is broken".into()), attempt)
        );

        // Before the retry time the action is skipped, not attempted.
        let calls = mem.calls().len();
        let (_, report) = cycle(&mut executor, &desired, &backends).await;
        assert_eq!(mem.calls().len(), calls);
        assert_eq!(report.skipped, [(vm("bad"), "bad is broken".to_string())]);
        assert_eq!(state_of(&executor, &vm("bad")).0, ResourceState::Failed);
        tokio::time::sleep_until(retry).await;
    }
    // The delay measured from before the run is at least, and from after
    // it at most, the scheduled one: 200 ms, 400 ms, then the 500 ms cap.
    for ((upper, lower), expected) in delays.into_iter().zip([200, 400, 500]) {
        let expected = Duration::from_millis(expected);
        assert!(
            lower <= expected && expected <= upper,
            "{lower:?} <= {expected:?} <= {upper:?}"
        );
    }

    // The fourth attempt succeeds and resets the count.
    let (_, report) = cycle(&mut executor, &desired, &backends).await;
    assert_eq!(report.applied, [vm("bad")]);
    assert_eq!(
        state_of(&executor, &vm("bad")),
        (ResourceState::Converged, None, 0)
    );
    assert_eq!(report.next_retry, None);
}

#[tokio::test]
async fn reset_backoff_retries_at_once() {
    let mem = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![mem.clone()];
    mem.fail(vm("a"), 1);
    let desired = vec![Desired::new(vm("a"))];
    let mut executor = Executor::new(Backoff::default());
    cycle(&mut executor, &desired, &backends).await;
    executor.reset_backoff();
    let (_, report) = cycle(&mut executor, &desired, &backends).await;
    assert_eq!(report.applied, [vm("a")]);
}
