//! Per-resource state across runs: observe failures, deletes, restarts.

use super::*;

#[tokio::test]
async fn an_unobservable_backend_gets_no_deletes_and_no_creates() {
    let nets = Arc::new(Mem::new(&[ResourceKind::Network]));
    let vms = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![nets.clone(), vms.clone()];
    nets.put(Observed::new(net("lan")));
    nets.put(Observed::new(net("stale")));
    vms.put(Observed::new(vm("a")).running(true));
    let desired = vec![
        Desired::new(net("lan")),
        Desired::new(net("new")),
        Desired::new(vm("a")),
        Desired::new(vm("b")),
    ];
    let mut executor = Executor::new(fast());
    cycle(&mut executor, &desired, &backends).await;
    assert_eq!(nets.calls(), ["create network new", "delete network stale"]);

    *nets.observe_error.lock().unwrap() = Some("netlink: permission denied".into());
    nets.put(Observed::new(net("stale")));
    let observation = observe_all(&backends).await;
    assert_eq!(
        observation.failed,
        BTreeMap::from([(
            ResourceKind::Network,
            "netlink: permission denied".to_string()
        )])
    );
    assert!(
        observation
            .observed
            .iter()
            .all(|o| o.id.kind == ResourceKind::Vm)
    );
    let desired = vec![Desired::new(vm("a")), Desired::new(vm("c"))];
    let plan = observation.plan(&desired);
    let report = executor.run(&plan, &desired, &backends).await;
    assert_eq!(nets.calls().len(), 2, "nothing is done to networks");
    assert_eq!(
        vms.calls(),
        ["create vm b", "create vm c"],
        "vm b's delete is deferred"
    );
    assert_eq!(
        report.skipped,
        [(
            vm("b"),
            "not removed while network could not be observed".to_string()
        )]
    );
    let lan = executor.status(&net("lan")).unwrap();
    assert_eq!(lan.state, ResourceState::Converged);
    assert_eq!(
        lan.error.as_deref(),
        Some("network could not be observed: netlink: permission denied")
    );
    assert!(executor.status(&vm("b")).is_some());
}

#[tokio::test]
async fn deleted_resources_are_forgotten() {
    let mem = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![mem.clone()];
    let mut executor = Executor::new(fast());
    cycle(
        &mut executor,
        &[Desired::new(vm("a")), Desired::new(vm("b"))],
        &backends,
    )
    .await;
    assert_eq!(executor.statuses().len(), 2);
    mem.fail(vm("b"), 1);
    let (_, report) = cycle(&mut executor, &[], &backends).await;
    assert_eq!(report.applied, [vm("a")]);
    let left: Vec<String> = executor.statuses().into_iter().map(|s| s.name).collect();
    assert_eq!(left, ["b"], "a failed delete stays visible");
    tokio::time::sleep_until(report.next_retry.unwrap()).await;
    cycle(&mut executor, &[], &backends).await;
    assert!(executor.statuses().is_empty());
}

#[tokio::test]
async fn pending_restarts_apply_only_live_changes() {
    let mem = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![mem.clone()];
    mem.put(
        Observed::new(vm("db"))
            .field("cpus", "1")
            .field("machine", "q35")
            .running(true),
    );
    let desired = vec![
        Desired::new(vm("db"))
            .field("cpus", "2")
            .restart_field("machine", "pc"),
    ];
    let mut executor = Executor::new(fast());
    let (plan, _) = cycle(&mut executor, &desired, &backends).await;
    assert_eq!(
        plan.actions[0].op,
        Op::Update {
            restart: Restart::Pending
        }
    );
    let system = mem.system.lock().unwrap()[&vm("db")].clone();
    assert_eq!(
        (
            system.fields["cpus"].as_str(),
            system.fields["machine"].as_str()
        ),
        ("2", "q35")
    );
    let db = executor.status(&vm("db")).unwrap();
    assert_eq!(
        (db.state, db.restart_pending),
        (ResourceState::Converged, true)
    );

    // Nothing live is left: the backend is not called again.
    let (plan, _) = cycle(&mut executor, &desired, &backends).await;
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(mem.calls(), ["update vm db"]);
    assert!(executor.status(&vm("db")).unwrap().restart_pending);
}

#[tokio::test]
async fn transitions_are_reported_while_running() {
    let mem = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![mem.clone()];
    let seen: Arc<Mutex<Vec<ResourceState>>> = Arc::default();
    let mut executor = Executor::new(fast());
    let sink = seen.clone();
    executor.on_change(move |s: &ResourceStatus| sink.lock().unwrap().push(s.state));
    let (_, report) = cycle(&mut executor, &[Desired::new(vm("a"))], &backends).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [ResourceState::Converging, ResourceState::Converged]
    );
    let mut histogram = crate::status::model::ApplyHistogram::default();
    report.record(&mut histogram);
    assert_eq!(histogram.count, 1);
}

#[tokio::test]
async fn a_kind_without_backend_fails_alone() {
    let mem = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![mem.clone()];
    let desired = vec![
        Desired::new(vm("a")),
        Desired::new(ResourceId::new(ResourceKind::Container, "c")),
    ];
    let mut executor = Executor::new(fast());
    let (_, report) = cycle(&mut executor, &desired, &backends).await;
    assert_eq!(report.applied, [vm("a")]);
    assert_eq!(report.failed[0].1, "no backend handles container");
}

#[tokio::test]
async fn a_hand_made_cyclic_plan_does_not_hang() {
    let mem = Arc::new(Mem::new(&[ResourceKind::Vm]));
    let backends: Vec<Arc<dyn Backend>> = vec![mem.clone()];
    let desired = vec![Desired::new(vm("a")), Desired::new(vm("b"))];
    let mut plan = plan(&desired, &[]);
    plan.actions[0].after = vec![vm("b")];
    plan.actions[1].after = vec![vm("a")];
    let mut executor = Executor::new(fast());
    let report = timeout(
        Duration::from_secs(5),
        executor.run(&plan, &desired, &backends),
    )
    .await
    .unwrap();
    assert_eq!(report.skipped.len(), 2);
    assert!(mem.calls().is_empty());
    assert_eq!(state_of(&executor, &vm("a")).0, ResourceState::Pending);
}
