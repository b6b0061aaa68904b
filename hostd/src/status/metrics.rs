//! Prometheus text exposition (format 0.0.4).
//!
//! Every family has its `# HELP` and `# TYPE` lines before its samples, and
//! the samples of a family are contiguous. Label values are escaped; the
//! only free text exported is the generation hash, the version, and the
//! names of VMs, networks, pools and volumes.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use horcrux_config::decode::ParseStr as _;
use horcrux_config::types::ByteSize;

use super::model::ScheduleRun;
use super::{ResourceState, ResourceStatus, Status};
use crate::cluster::{ClusterStatus, MemberState};
use crate::plan::ResourceKind;

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as Prometheus spells it (`+Inf`, `-Inf`, `NaN`).
fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        value.to_string()
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let c = &status.counters;
    family(&mut out, "horcrux_build_info", "gauge", "Version of hostd.");
    let _ = writeln!(
        out,
        "horcrux_build_info{{version=\"{}\"}} 1",
        escape_label(status.version)
    );
    family(
        &mut out,
        "horcrux_ready",
        "gauge",
        "1 once the first full observe and plan completed.",
    );
    let _ = writeln!(out, "horcrux_ready {}", u8::from(status.ready));
    family(
        &mut out,
        "horcrux_generation_id",
        "gauge",
        "Id of the generation being converged (0: none accepted yet).",
    );
    let id = status.generation.as_ref().map_or(0, |g| g.id);
    let _ = writeln!(out, "horcrux_generation_id {id}");
    if let Some(g) = &status.generation {
        family(
            &mut out,
            "horcrux_generation_info",
            "gauge",
            "The generation being converged.",
        );
        let _ = writeln!(
            out,
            "horcrux_generation_info{{hash=\"{}\",source=\"{}\"}} 1",
            escape_label(&g.hash),
            escape_label(g.source.as_str())
        );
    }
    family(
        &mut out,
        "horcrux_config_errors",
        "gauge",
        "Errors in the config tree on disk (0 when it is valid).",
    );
    let _ = writeln!(out, "horcrux_config_errors {}", status.config_errors.len());
    family(
        &mut out,
        "horcrux_config_valid",
        "gauge",
        "1 when the config tree on disk is valid.",
    );
    let _ = writeln!(
        out,
        "horcrux_config_valid {}",
        u8::from(status.config_errors.is_empty())
    );
    family(
        &mut out,
        "horcrux_generations_accepted_total",
        "counter",
        "Config trees accepted as new generations.",
    );
    let _ = writeln!(
        out,
        "horcrux_generations_accepted_total {}",
        c.generations_accepted
    );
    family(
        &mut out,
        "horcrux_config_rejections_total",
        "counter",
        "Invalid config trees seen.",
    );
    let _ = writeln!(
        out,
        "horcrux_config_rejections_total {}",
        c.config_rejections
    );
    family(
        &mut out,
        "horcrux_resources",
        "gauge",
        "Resources by kind and convergence state.",
    );
    // Every state of every kind present, zeros included, so a state that
    // empties reads 0 instead of vanishing.
    let kinds: BTreeSet<ResourceKind> = status.resources.iter().map(|r| r.kind).collect();
    for kind in kinds {
        for state in ResourceState::ALL {
            let n = status
                .resources
                .iter()
                .filter(|r| r.kind == kind && r.state == state)
                .count();
            let _ = writeln!(
                out,
                "horcrux_resources{{kind=\"{kind}\",state=\"{}\"}} {n}",
                state.as_str()
            );
        }
    }
    family(
        &mut out,
        "horcrux_apply_runs_total",
        "counter",
        "Observe-plan-apply runs completed.",
    );
    let _ = writeln!(out, "horcrux_apply_runs_total {}", c.apply_runs);
    family(
        &mut out,
        "horcrux_actions_total",
        "counter",
        "Actions carried out, by resource kind and result.",
    );
    for (result, counts) in [
        ("applied", &c.actions_applied),
        ("failed", &c.actions_failed),
    ] {
        for (kind, n) in counts {
            let _ = writeln!(
                out,
                "horcrux_actions_total{{kind=\"{kind}\",result=\"{result}\"}} {n}"
            );
        }
    }
    let h = &c.apply_duration;
    family(
        &mut out,
        "horcrux_apply_duration_seconds",
        "histogram",
        "Duration of observe-plan-apply runs.",
    );
    for (bound, count) in h.bounds.iter().zip(&h.buckets) {
        let _ = writeln!(
            out,
            "horcrux_apply_duration_seconds_bucket{{le=\"{}\"}} {count}",
            float(*bound)
        );
    }
    let _ = writeln!(
        out,
        "horcrux_apply_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(
        out,
        "horcrux_apply_duration_seconds_sum {}",
        float(h.sum_seconds)
    );
    let _ = writeln!(out, "horcrux_apply_duration_seconds_count {}", h.count);
    vms(&mut out, status);
    networks(&mut out, status);
    firewall(&mut out, status);
    storage(&mut out, status);
    if let Some(c) = &status.cluster {
        cluster(&mut out, c);
    }
    out
}

/// Member states, replication health and gossip traffic.
fn cluster(out: &mut String, c: &ClusterStatus) {
    family(
        out,
        "horcrux_cluster_member_state",
        "gauge",
        "1 for the state the failure detector sees each member in.",
    );
    for m in &c.members {
        for state in MemberState::ALL {
            let _ = writeln!(
                out,
                "horcrux_cluster_member_state{{member=\"{}\",state=\"{}\"}} {}",
                escape_label(&m.name),
                state.as_str(),
                u8::from(m.state == state)
            );
        }
    }
    let gauges = [
        (
            "horcrux_cluster_files",
            "Replicated files in cluster/.",
            c.files,
        ),
        (
            "horcrux_cluster_conflicts",
            "Concurrent edits that lost, kept for review.",
            c.conflicts.len(),
        ),
        (
            "horcrux_cluster_rejected_changes",
            "Versions offered by members that this node refused.",
            c.rejected.len(),
        ),
        (
            "horcrux_cluster_waiting_changes",
            "Change sets waiting for their other files or a local edit.",
            c.waiting_changes,
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let t = &c.transport;
    family(
        out,
        "horcrux_gossip_packets_total",
        "counter",
        "Authenticated gossip packets.",
    );
    let _ = writeln!(
        out,
        "horcrux_gossip_packets_total{{direction=\"in\"}} {}",
        t.received_packets
    );
    let _ = writeln!(
        out,
        "horcrux_gossip_packets_total{{direction=\"out\"}} {}",
        t.sent_packets
    );
    family(
        out,
        "horcrux_gossip_bytes_total",
        "counter",
        "Gossip bytes on the wire.",
    );
    let _ = writeln!(
        out,
        "horcrux_gossip_bytes_total{{direction=\"in\"}} {}",
        t.received_bytes
    );
    let _ = writeln!(
        out,
        "horcrux_gossip_bytes_total{{direction=\"out\"}} {}",
        t.sent_bytes
    );
    family(
        out,
        "horcrux_gossip_dropped_packets_total",
        "counter",
        "Gossip packets dropped: wrong key or tampered, malformed, too large to send.",
    );
    for (reason, n) in [
        ("unauthenticated", t.dropped_unauthenticated),
        ("malformed", t.dropped_malformed),
        ("oversized", t.dropped_oversized_outgoing),
    ] {
        let _ = writeln!(
            out,
            "horcrux_gossip_dropped_packets_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

/// Per-network gauges: converged or not, taps on the bridge.
fn networks(out: &mut String, status: &Status) {
    let rows = status.networks();
    if rows.is_empty() {
        return;
    }
    family(
        out,
        "horcrux_network_up",
        "gauge",
        "1 when the network's links match the config.",
    );
    for row in &rows {
        let up = row.network.state == ResourceState::Converged && row.network.in_sync();
        let _ = writeln!(
            out,
            "horcrux_network_up{{network=\"{}\"}} {}",
            escape_label(&row.network.name),
            u8::from(up)
        );
    }
    family(
        out,
        "horcrux_network_taps",
        "gauge",
        "VM taps on the network's bridge.",
    );
    for row in &rows {
        let _ = writeln!(
            out,
            "horcrux_network_taps{{network=\"{}\"}} {}",
            escape_label(&row.network.name),
            row.taps_attached
        );
    }
}

/// Whether the kernel holds the wanted ruleset, and its size.
fn firewall(out: &mut String, status: &Status) {
    let Some(fw) = status.firewall() else {
        return;
    };
    family(
        out,
        "horcrux_firewall_in_sync",
        "gauge",
        "1 when the kernel holds the ruleset of the current generation.",
    );
    let _ = writeln!(out, "horcrux_firewall_in_sync {}", u8::from(fw.in_sync()));
    if let Some(rules) = fw.observed.get("rules").and_then(|r| r.parse::<u64>().ok()) {
        family(
            out,
            "horcrux_firewall_rules",
            "gauge",
            "Rules in hostd's nftables tables.",
        );
        let _ = writeln!(out, "horcrux_firewall_rules {rules}");
    }
}

/// Per-VM gauges: whether it runs, what it was given, whether a restart
/// is waiting.
fn vms(out: &mut String, status: &Status) {
    let vms = status.vms();
    if vms.is_empty() {
        return;
    }
    let gauges: [Gauge; 4] = [
        ("horcrux_vm_up", "1 when the VM's QEMU is running.", |r| {
            let running = r.observed.get("state").is_some_and(|s| s == "running");
            Some(f64::from(u8::from(running)))
        }),
        ("horcrux_vm_vcpus", "Virtual CPUs configured.", |r| {
            r.desired.get("cpus")?.parse().ok()
        }),
        (
            "horcrux_vm_memory_bytes",
            "Memory configured, in bytes.",
            |r| {
                let size = ByteSize::parse_str(r.desired.get("memory")?).ok()?;
                // Exact below 2^53, far beyond any VM's memory.
                #[allow(clippy::cast_precision_loss)]
                Some(size.bytes() as f64)
            },
        ),
        (
            "horcrux_vm_restart_pending",
            "1 when a hardware change waits for the VM to restart.",
            |r| Some(f64::from(u8::from(r.restart_pending))),
        ),
    ];
    per_resource(out, "vm", &vms, &gauges);
}

type Gauge = (
    &'static str,
    &'static str,
    fn(&ResourceStatus) -> Option<f64>,
);

/// One family per gauge, one sample per resource that has a value,
/// labelled `label="<resource name>"`.
fn per_resource(out: &mut String, label: &str, resources: &[&ResourceStatus], gauges: &[Gauge]) {
    for (name, help, value) in gauges {
        family(out, name, "gauge", help);
        for resource in resources {
            if let Some(v) = value(resource) {
                let _ = writeln!(
                    out,
                    "{name}{{{label}=\"{}\"}} {}",
                    escape_label(&resource.name),
                    float(v)
                );
            }
        }
    }
}

/// An observed field holding a byte count or a size like "20GiB".
fn bytes(r: &ResourceStatus, field: &str) -> Option<f64> {
    let text = r.observed.get(field)?;
    let bytes = text
        .parse::<u64>()
        .ok()
        .or_else(|| ByteSize::parse_str(text).ok().map(|b| b.bytes()))?;
    // Exact below 2^53 (8 PiB), beyond any pool here.
    #[allow(clippy::cast_precision_loss)]
    Some(bytes as f64)
}

/// Pools and volumes as the storage backend last read them, snapshot
/// schedules as the scheduler last ran them, imports in progress.
fn storage(out: &mut String, status: &Status) {
    let pools = status.of_kind(ResourceKind::Pool);
    if !pools.is_empty() {
        let gauges: [Gauge; 3] = [
            ("horcrux_pool_size_bytes", "Pool size, in bytes.", |r| {
                bytes(r, "size")
            }),
            (
                "horcrux_pool_free_bytes",
                "Free space in the pool, in bytes.",
                |r| bytes(r, "free"),
            ),
            (
                "horcrux_pool_healthy",
                "1 when the pool is imported and ONLINE.",
                |r| {
                    Some(f64::from(u8::from(
                        r.observed.get("health").is_some_and(|h| h == "ONLINE"),
                    )))
                },
            ),
        ];
        per_resource(out, "pool", &pools, &gauges);
    }
    let volumes = status.of_kind(ResourceKind::Volume);
    if !volumes.is_empty() {
        let gauges: [Gauge; 3] = [
            (
                "horcrux_volume_size_bytes",
                "Volume size as the system reports it, in bytes.",
                |r| bytes(r, "size"),
            ),
            (
                "horcrux_volume_used_bytes",
                "Space the volume takes, snapshots included, in bytes.",
                |r| bytes(r, "used"),
            ),
            (
                "horcrux_volume_snapshots",
                "Snapshots of the volume (named, scheduled and others).",
                |r| r.observed.get("snapshot_count")?.parse().ok(),
            ),
        ];
        per_resource(out, "volume", &volumes, &gauges);
    }
    if !status.imports.is_empty() {
        family(
            out,
            "horcrux_volume_import_percent",
            "gauge",
            "Progress of an image import into a volume.",
        );
        for (volume, percent) in &status.imports {
            let _ = writeln!(
                out,
                "horcrux_volume_import_percent{{volume=\"{}\"}} {}",
                escape_label(volume),
                float(*percent)
            );
        }
    }
    if status.snapshot_schedules.is_empty() {
        return;
    }
    type RunValue = fn(&ScheduleRun) -> Option<f64>;
    #[allow(clippy::cast_precision_loss)]
    let series: [(&str, &str, &str, RunValue); 4] = [
        (
            "horcrux_snapshot_delay_seconds",
            "gauge",
            "How late the last scheduled snapshot was after its slot began.",
            |r| r.delay_seconds,
        ),
        (
            "horcrux_snapshots_taken_total",
            "counter",
            "Scheduled snapshots taken since hostd started.",
            |r| Some(r.taken as f64),
        ),
        (
            "horcrux_snapshots_pruned_total",
            "counter",
            "Scheduled snapshots destroyed by retention since hostd started.",
            |r| Some(r.pruned as f64),
        ),
        (
            "horcrux_snapshot_schedule_failing",
            "gauge",
            "1 when the last snapshot or prune of the schedule failed.",
            |r| Some(f64::from(u8::from(r.error.is_some()))),
        ),
    ];
    for (name, kind, help, value) in series {
        family(out, name, kind, help);
        for (vm, run) in &status.snapshot_schedules {
            if let Some(v) = value(run) {
                let _ = writeln!(out, "{name}{{vm=\"{}\"}} {}", escape_label(vm), float(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::{GenerationInfo, Source};
    use crate::status::ResourceStatus;

    /// Every sample line is `name{labels} value` with a float value, and
    /// its family was declared before it.
    fn parse(text: &str) -> Vec<(String, f64)> {
        let mut declared = Vec::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(
                declared.iter().any(|d| name == d
                    || name
                        .strip_prefix(d.as_str())
                        .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))),
                "undeclared {name}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line}"
                );
            }
            samples.push((series.to_string(), value.parse::<f64>().unwrap()));
        }
        samples
    }

    #[test]
    fn renders_parseable_families() {
        let mut status = Status::new("n1".into());
        status.generation = Some(GenerationInfo {
            id: 7,
            hash: "ab\"c".into(),
            parent: Some(6),
            source: Source::Push,
            accepted_at: "2026-01-01T00:00:00Z".into(),
        });
        status.resources.push(ResourceStatus {
            kind: ResourceKind::Vm,
            name: "web".into(),
            state: ResourceState::Failed,
            error: Some("boom".into()),
            restart_pending: true,
            attempts: 1,
            desired: [("cpus", "2"), ("memory", "1536MiB")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            observed: [("state", "running")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        });
        status.counters.apply_duration.observe(0.3);
        let samples = parse(&render(&status));
        let get = |s: &str| samples.iter().find(|(k, _)| k == s).map(|(_, v)| *v);
        assert_eq!(get("horcrux_generation_id"), Some(7.0));
        assert_eq!(
            get("horcrux_resources{kind=\"vm\",state=\"failed\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("horcrux_resources{kind=\"vm\",state=\"converged\"}"),
            Some(0.0)
        );
        assert_eq!(
            get("horcrux_apply_duration_seconds_bucket{le=\"0.25\"}"),
            Some(0.0)
        );
        assert_eq!(
            get("horcrux_apply_duration_seconds_bucket{le=\"0.5\"}"),
            Some(1.0)
        );
        assert_eq!(get("horcrux_apply_duration_seconds_count"), Some(1.0));
        assert_eq!(get("horcrux_vm_up{vm=\"web\"}"), Some(1.0));
        assert_eq!(get("horcrux_vm_vcpus{vm=\"web\"}"), Some(2.0));
        assert_eq!(
            get("horcrux_vm_memory_bytes{vm=\"web\"}"),
            Some(1536.0 * 1024.0 * 1024.0)
        );
        assert_eq!(get("horcrux_vm_restart_pending{vm=\"web\"}"), Some(1.0));
        assert_eq!(
            get("horcrux_generation_info{hash=\"ab\\\"c\",source=\"push\"}"),
            Some(1.0)
        );
    }

    fn resource(kind: ResourceKind, name: &str, state: ResourceState) -> ResourceStatus {
        ResourceStatus {
            kind,
            name: name.into(),
            state,
            error: None,
            restart_pending: false,
            attempts: 0,
            desired: Default::default(),
            observed: Default::default(),
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn networks_taps_firewall_and_action_counters() {
        let mut status = Status::new("n1".into());
        let mut lan = resource(ResourceKind::Network, "lan", ResourceState::Converged);
        lan.desired = fields(&[("bridge", "hxb-lan"), ("mtu", "default")]);
        lan.observed = lan.desired.clone();
        let mut dmz = resource(ResourceKind::Network, "dmz", ResourceState::Failed);
        dmz.desired = fields(&[("bridge", "hxb-dmz")]);
        let mut attached = resource(ResourceKind::Tap, "hx1n0", ResourceState::Converged);
        attached.desired = fields(&[("bridge", "hxb-lan")]);
        attached.observed = attached.desired.clone();
        let mut detached = resource(ResourceKind::Tap, "hx2n0", ResourceState::Pending);
        detached.desired = fields(&[("bridge", "hxb-lan")]);
        let mut fw = resource(ResourceKind::Firewall, "horcrux", ResourceState::Converged);
        fw.desired = fields(&[("ruleset", "abc"), ("rules", "12")]);
        fw.observed = fields(&[("ruleset", "changed outside hostd"), ("rules", "13")]);
        status.resources = vec![dmz, lan, fw, attached, detached];
        status
            .counters
            .actions_applied
            .insert(ResourceKind::Firewall, 3);
        status
            .counters
            .actions_failed
            .insert(ResourceKind::Network, 1);
        let samples = parse(&render(&status));
        let get = |s: &str| samples.iter().find(|(k, _)| k == s).map(|(_, v)| *v);
        assert_eq!(get("horcrux_network_up{network=\"lan\"}"), Some(1.0));
        assert_eq!(get("horcrux_network_up{network=\"dmz\"}"), Some(0.0));
        assert_eq!(get("horcrux_network_taps{network=\"lan\"}"), Some(1.0));
        assert_eq!(get("horcrux_network_taps{network=\"dmz\"}"), Some(0.0));
        assert_eq!(get("horcrux_firewall_in_sync"), Some(0.0));
        assert_eq!(get("horcrux_firewall_rules"), Some(13.0));
        assert_eq!(
            get("horcrux_actions_total{kind=\"firewall\",result=\"applied\"}"),
            Some(3.0)
        );
        assert_eq!(
            get("horcrux_actions_total{kind=\"network\",result=\"failed\"}"),
            Some(1.0)
        );
        let page = super::super::html::render(&status);
        assert!(page.contains("<h2>Networks (2)</h2>"), "{page}");
        assert!(
            page.contains("<td>1/2</td>"),
            "lan: 1 of 2 taps attached: {page}"
        );
        assert!(page.contains("bridge: absent"), "dmz differs: {page}");
        assert!(page.contains("not applied yet: 13 rules"), "{page}");
    }

    #[test]
    fn every_state_of_every_kind_once_in_any_resource_order() {
        let mut status = Status::new("n1".into());
        status.resources = vec![
            resource(ResourceKind::Vm, "a", ResourceState::Converged),
            resource(ResourceKind::Network, "br0", ResourceState::Pending),
            resource(ResourceKind::Vm, "b", ResourceState::Converged),
        ];
        let text = render(&status);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("horcrux_resources{"))
            .collect();
        assert_eq!(series.len(), 2 * ResourceState::ALL.len(), "{text}");
        assert!(series.contains(&"horcrux_resources{kind=\"vm\",state=\"converged\"} 2"));
        assert!(series.contains(&"horcrux_resources{kind=\"network\",state=\"failed\"} 0"));
        assert!(!text.contains("kind=\"volume\""));
    }

    #[test]
    fn cluster_members_and_gossip_counters() {
        let mut status = Status::new("n1".into());
        assert!(!render(&status).contains("horcrux_cluster"));
        status.cluster = Some(crate::cluster::sample_status());
        let text = render(&status);
        let samples = parse(&text);
        let has = |series: &str, v: f64| samples.contains(&(series.to_string(), v));
        assert!(has(
            "horcrux_cluster_member_state{member=\"node2\",state=\"suspect\"}",
            1.0
        ));
        assert!(has(
            "horcrux_cluster_member_state{member=\"node2\",state=\"alive\"}",
            0.0
        ));
        assert!(has(
            "horcrux_cluster_member_state{member=\"node3\",state=\"dead\"}",
            1.0
        ));
        assert!(has("horcrux_cluster_conflicts", 1.0));
        assert!(has("horcrux_cluster_rejected_changes", 1.0));
        assert!(has(
            "horcrux_gossip_dropped_packets_total{reason=\"unauthenticated\"}",
            7.0
        ));
    }

    #[test]
    fn without_a_generation_the_id_is_zero_and_info_absent() {
        let text = render(&Status::new("n1".into()));
        let samples = parse(&text);
        assert!(samples.contains(&("horcrux_generation_id".to_string(), 0.0)));
        assert!(!text.contains("horcrux_generation_info"));
        assert!(samples.contains(&("horcrux_config_valid".to_string(), 1.0)));
        assert!(samples.contains(&("horcrux_ready".to_string(), 0.0)));
    }

    #[test]
    fn label_values_and_special_floats_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(0.25), "0.25");
    }
}
