//! The status page: server-rendered, no JavaScript, readable on a phone.
//!
//! Every piece of dynamic text goes through [`escape`]; config errors come
//! first, since they are what an operator who just pushed a change looks for.

use std::fmt::Write as _;

use horcrux_config::Diagnostic;

use super::{ResourceStatus, Status};
use crate::backend::vm::orphans::OrphanedVm;
use crate::cluster::{ClusterStatus, MemberState};
use crate::generation::GenerationInfo;
use crate::plan::ResourceKind;

/// Hex digits of the tree hash shown; the full hash is in the tooltip.
const SHORT_HASH: usize = 12;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem;max-width:60rem;line-height:1.4}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}\
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:anywhere}\
.errors{background:#fff0f0;border:2px solid #c33;padding:.5rem 1rem;margin:1rem 0}\
.errors h2{color:#b00;margin-top:.3rem}.hint{color:#555}\
.errors ol{padding-left:1.2rem}.errors li{margin:.6rem 0}.errors code{overflow-wrap:anywhere}\
.failed{color:#b00;font-weight:bold}.converged{color:#070}.pending,.converging,.starting{color:#a60}\
code{font-size:.9em}";

pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let node = escape(&status.node);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{node} - Horcrux</title><style>{STYLE}</style></head><body>\
         <h1>{node}</h1><p>{}",
        escape(&status.summary())
    );
    if !status.ready {
        out.push_str(" <span class=\"starting\">(starting)</span>");
    }
    out.push_str("</p>");
    if !status.config_errors.is_empty() {
        config_errors(&mut out, &status.config_errors, status.generation.is_some());
    }
    match &status.generation {
        Some(g) => generation(&mut out, g),
        None => out
            .push_str("<h2>No generation yet</h2><p>No valid configuration has been accepted.</p>"),
    }
    resources(&mut out, &status.resources);
    vms(&mut out, status);
    networks(&mut out, status);
    firewall(&mut out, status);
    storage(&mut out, status);
    orphans(&mut out, &status.orphaned_vms);
    if let Some(c) = &status.cluster {
        cluster(&mut out, c);
    }
    let _ = writeln!(
        out,
        "<p><small>hostd {} since {} · <a href=\"/status.json\">JSON</a> · \
         <a href=\"/metrics\">metrics</a></small></p></body></html>",
        escape(status.version),
        escape(&status.started_at)
    );
    out
}

fn config_errors(out: &mut String, errors: &[Diagnostic], running: bool) {
    let consequence = if running {
        "the current generation keeps running"
    } else {
        "nothing is applied until they are fixed"
    };
    let _ = write!(
        out,
        "<div class=\"errors\"><h2>Config errors ({})</h2>\
         <p>The files on disk are invalid and were not applied; {consequence}.</p><ol>",
        errors.len()
    );
    for e in errors {
        let location = match (e.line, e.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", e.file),
            (Some(l), None) => format!("{}:{l}", e.file),
            _ => e.file.clone(),
        };
        let _ = write!(
            out,
            "<li><code>{}</code><br>{}{}</li>",
            escape(&location),
            escape(&e.message),
            e.hint
                .as_deref()
                .map(|h| format!("<br><span class=\"hint\">{}</span>", escape(h)))
                .unwrap_or_default()
        );
    }
    out.push_str("</ol></div>");
}

fn generation(out: &mut String, g: &GenerationInfo) {
    let parent = g.parent.map_or("-".to_string(), |p| p.to_string());
    let short: String = g.hash.chars().take(SHORT_HASH).collect();
    let _ = write!(
        out,
        "<h2>Generation {}</h2><table>\
         <tr><th>source</th><td>{}</td></tr>\
         <tr><th>accepted</th><td>{}</td></tr>\
         <tr><th>parent</th><td>{parent}</td></tr>\
         <tr><th>hash</th><td><code title=\"{}\">{}</code></td></tr></table>",
        g.id,
        escape(g.source.as_str()),
        escape(&g.accepted_at),
        escape(&g.hash),
        escape(&short)
    );
}

fn resources(out: &mut String, resources: &[ResourceStatus]) {
    let _ = write!(out, "<h2>Resources ({})</h2>", resources.len());
    if resources.is_empty() {
        out.push_str("<p>Nothing to converge on this node.</p>");
        return;
    }
    out.push_str(
        "<table><tr><th>kind</th><th>name</th><th>state</th><th>error</th><th>restart</th></tr>",
    );
    for r in resources {
        let state = r.state.as_str();
        let error = match (&r.error, r.attempts) {
            (Some(e), 0) => escape(e),
            (Some(e), n) => format!("{} <small>({n} attempts)</small>", escape(e)),
            (None, _) => String::new(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"{state}\">{state}</td><td>{error}</td><td>{}</td></tr>",
            escape(r.kind.as_str()),
            escape(&r.name),
            if r.restart_pending { "pending" } else { "" }
        );
    }
    out.push_str("</table>");
}

/// What each VM should be and is: run state, unit state, QEMU's own run
/// state, uptime, and the hardware it was given.
fn vms(out: &mut String, status: &Status) {
    let vms = status.vms();
    if vms.is_empty() {
        return;
    }
    let _ = write!(out, "<h2>Virtual machines ({})</h2>", vms.len());
    out.push_str(
        "<table><tr><th>name</th><th>wanted</th><th>is</th><th>unit</th><th>QEMU</th>\
         <th>up since</th><th>CPUs</th><th>memory</th><th>restart</th></tr>",
    );
    let get = |map: &std::collections::BTreeMap<String, String>, key: &str| {
        map.get(key).map_or_else(String::new, |v| escape(v))
    };
    for vm in vms {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&vm.name),
            get(&vm.desired, "state"),
            get(&vm.observed, "state"),
            get(&vm.observed, "unit_state"),
            get(&vm.observed, "qmp"),
            get(&vm.observed, "since"),
            get(&vm.desired, "cpus"),
            get(&vm.desired, "memory"),
            if vm.restart_pending { "pending" } else { "" }
        );
    }
    out.push_str("</table>");
}

/// Each network's bridge and port as wanted and as found, and how many
/// VM taps are on it.
fn networks(out: &mut String, status: &Status) {
    let rows = status.networks();
    if rows.is_empty() {
        return;
    }
    let _ = write!(out, "<h2>Networks ({})</h2>", rows.len());
    out.push_str(
        "<table><tr><th>name</th><th>state</th><th>bridge</th><th>port</th><th>MTU</th>\
         <th>VM taps</th><th>differs from config</th></tr>",
    );
    for row in rows {
        let n = row.network;
        let get = |key: &str| n.desired.get(key).map_or_else(String::new, |v| escape(v));
        let state = n.state.as_str();
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}/{}</td><td>{}</td></tr>",
            escape(&n.name),
            get("bridge"),
            get("port"),
            get("mtu"),
            row.taps_attached,
            row.taps_wanted,
            differs(n)
        );
    }
    out.push_str("</table>");
}

/// The fields whose observed value is not the desired one, as
/// `field: observed` (escaped).
fn differs(r: &ResourceStatus) -> String {
    let fields: Vec<String> = r
        .desired
        .iter()
        .filter(|(key, value)| r.observed.get(*key) != Some(*value))
        .map(|(key, _)| {
            let is = r.observed.get(key).map_or("absent", String::as_str);
            format!("{}: {}", escape(key), escape(is))
        })
        .collect();
    fields.join(", ")
}

/// A byte count from an observed field, in binary units.
fn size(r: &ResourceStatus, field: &str) -> String {
    r.observed
        .get(field)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or_else(String::new, |b| {
            escape(&horcrux_config::types::ByteSize::from_bytes(b).to_string())
        })
}

/// Pools, each VM disk with its usage and snapshots, imports in
/// progress, and snapshot schedules.
fn storage(out: &mut String, status: &Status) {
    let pools = status.of_kind(ResourceKind::Pool);
    if !pools.is_empty() {
        let _ = write!(out, "<h2>Pools ({})</h2>", pools.len());
        out.push_str(
            "<table><tr><th>pool</th><th>state</th><th>health</th><th>size</th><th>free</th></tr>",
        );
        for pool in pools {
            let state = pool.state.as_str();
            let health = pool
                .observed
                .get("health")
                .map_or("not imported", String::as_str);
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&pool.name),
                escape(health),
                size(pool, "size"),
                size(pool, "free"),
            );
        }
        out.push_str("</table>");
    }
    let volumes = status.of_kind(ResourceKind::Volume);
    if !volumes.is_empty() {
        let _ = write!(out, "<h2>Disks ({})</h2>", volumes.len());
        out.push_str(
            "<table><tr><th>volume</th><th>state</th><th>location</th><th>size</th><th>used</th>\
             <th>named snapshots</th><th>scheduled</th><th>differs from config</th></tr>",
        );
        for volume in volumes {
            let state = volume.state.as_str();
            let get = |key: &str| {
                volume
                    .observed
                    .get(key)
                    .map_or_else(String::new, |v| escape(v))
            };
            let mut differs = differs(volume);
            if let Some(percent) = status.imports.get(&volume.name) {
                differs = format!("importing image: {percent:.1}%");
            }
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{differs}</td></tr>",
                escape(&volume.name),
                get("location"),
                get("size"),
                size(volume, "used"),
                get("snapshots"),
                get("scheduled_snapshots"),
            );
        }
        out.push_str("</table>");
    }
    if status.snapshot_schedules.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Snapshot schedules</h2><table><tr><th>VM</th><th>every</th><th>keep</th>\
         <th>last</th><th>late by</th><th>consistency</th><th>taken</th><th>pruned</th><th>error</th></tr>",
    );
    for (vm, run) in &status.snapshot_schedules {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(vm),
            escape(&run.every),
            run.keep,
            escape(run.last.as_deref().unwrap_or("none yet")),
            run.delay_seconds
                .map_or_else(String::new, |d| format!("{d:.3} s")),
            escape(run.consistency.as_deref().unwrap_or("")),
            run.taken,
            run.pruned,
            escape(run.error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>");
}

/// Members as the failure detector sees them, where every workload runs,
/// and what replication could not reconcile on its own.
fn cluster(out: &mut String, c: &ClusterStatus) {
    let _ = write!(out, "<h2>Cluster {}</h2>", escape(&c.name));
    if let Some(error) = &c.error {
        let _ = write!(out, "<p class=\"failed\">{}</p>", escape(error));
    }
    out.push_str(
        "<table><tr><th>member</th><th>address</th><th>state</th><th>last seen</th>\
         <th>generation</th></tr>",
    );
    for m in &c.members {
        let state = m.state.as_str();
        let _ = write!(
            out,
            "<tr><td>{}{}</td><td>{}</td><td class=\"{}\">{state}</td><td>{}</td><td>{}</td></tr>",
            escape(&m.name),
            if m.this_node { " (this node)" } else { "" },
            escape(&m.address),
            match m.state {
                MemberState::Alive => "converged",
                MemberState::Suspect => "pending",
                MemberState::Dead => "failed",
            },
            m.last_seen_seconds
                .map_or_else(|| "never".to_string(), |s| format!("{s:.1} s ago")),
            escape(m.generation.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>");
    let _ = write!(
        out,
        "<p>{} replicated files; {} changes waiting; gossip: {} packets in, {} out, \
         {} refused (wrong key), {} malformed</p>",
        c.files,
        c.waiting_changes,
        c.transport.received_packets,
        c.transport.sent_packets,
        c.transport.dropped_unauthenticated,
        c.transport.dropped_malformed,
    );
    if !c.placement.is_empty() {
        out.push_str("<table><tr><th>workload</th><th>node</th></tr>");
        for (workload, node) in &c.placement {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(workload),
                escape(node)
            );
        }
        out.push_str("</table>");
    }
    if !c.conflicts.is_empty() {
        let _ = write!(
            out,
            "<h3 class=\"failed\">Conflicts ({})</h3><p>Concurrent edits: the newest won \
             everywhere; the losing version is kept here until the file is changed again.</p>\
             <table><tr><th>file</th><th>kept</th><th>lost</th><th>losing version</th></tr>",
            c.conflicts.len()
        );
        for conflict in &c.conflicts {
            let lost = match &conflict.loser.content {
                Some(text) => format!("<pre>{}</pre>", escape(text)),
                None => "(deleted)".to_string(),
            };
            let _ = write!(
                out,
                "<tr><td>cluster/{}</td><td>{} at {}</td><td>{} at {}</td><td>{lost}</td></tr>",
                escape(&conflict.path),
                escape(&conflict.winner_author),
                conflict.winner_clock,
                escape(&conflict.loser.author),
                conflict.loser.clock,
            );
        }
        out.push_str("</table>");
    }
    if !c.rejected.is_empty() {
        let _ = write!(
            out,
            "<h3 class=\"failed\">Refused changes ({})</h3><table><tr><th>file</th>\
             <th>from</th><th>author</th><th>reason</th></tr>",
            c.rejected.len()
        );
        for r in &c.rejected {
            let _ = write!(
                out,
                "<tr><td>cluster/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.path),
                escape(&r.holder),
                escape(&r.author),
                escape(&r.reason),
            );
        }
        out.push_str("</table>");
    }
}

/// Whether the kernel holds the ruleset this generation wants.
fn firewall(out: &mut String, status: &Status) {
    let Some(fw) = status.firewall() else {
        return;
    };
    let get = |map: &std::collections::BTreeMap<String, String>, key: &str| {
        map.get(key)
            .map_or_else(|| "none".to_string(), |v| escape(v))
    };
    let verdict = if fw.in_sync() {
        "applied"
    } else {
        "not applied yet"
    };
    let _ = write!(
        out,
        "<h2>Firewall</h2><p>Ruleset <code>{}</code> {verdict}: {} rules in the kernel \
         (tables <code>bridge horcrux</code> and <code>inet horcrux</code>, state <span class=\"{}\">{}</span>).</p>",
        get(&fw.desired, "ruleset"),
        get(&fw.observed, "rules"),
        fw.state.as_str(),
        fw.state.as_str(),
    );
}

/// Data kept from removed VMs, with the command that deletes it.
fn orphans(out: &mut String, orphans: &[OrphanedVm]) {
    if orphans.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<h2>Orphaned VM data ({})</h2><p>Kept from VMs no longer placed on this node; \
         delete with <code>horcrux purge vm NAME</code>.</p><ul>",
        orphans.len()
    );
    for orphan in orphans {
        let paths: Vec<String> = orphan
            .paths
            .iter()
            .map(|p| escape(&p.to_string_lossy()))
            .collect();
        let _ = write!(
            out,
            "<li><b>{}</b>: {}</li>",
            escape(&orphan.name),
            paths.join(", ")
        );
    }
    out.push_str("</ul>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::Source;
    use crate::status::ResourceState;

    #[test]
    fn escapes_everything_dynamic() {
        let mut status = Status::new("<b>node</b>".into());
        status.config_errors.push(Diagnostic {
            file: "cluster/vms/x.toml".into(),
            line: Some(3),
            column: Some(1),
            message: "<script>alert(1)</script>".into(),
            hint: Some("a & b".into()),
            snippet: None,
        });
        status.resources.push(ResourceStatus {
            kind: ResourceKind::Vm,
            name: "\"><img src=x>".into(),
            state: ResourceState::Failed,
            error: Some("</td><script>".into()),
            restart_pending: true,
            attempts: 2,
            desired: [("state", "running"), ("memory", "<i>")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            observed: [("unit_state", "failed (<u>)")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        });
        let page = render(&status);
        assert!(page.contains("<h2>Virtual machines (1)</h2>"));
        assert!(!page.contains("Orphaned VM data"));
        status.orphaned_vms.push(OrphanedVm {
            name: "<old>".into(),
            paths: vec!["/srv/vm-<old>-disk0.qcow2".into()],
        });
        let page = render(&status);
        assert!(page.contains("<h2>Orphaned VM data (1)</h2>"), "{page}");
        assert!(page.contains("<b>&lt;old&gt;</b>: /srv/vm-&lt;old&gt;-disk0.qcow2"));
        assert!(page.contains("<td>failed (&lt;u&gt;)</td>"), "{page}");
        assert!(!page.contains("<i>") && !page.contains("<u>"));
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<img"));
        assert!(!page.contains("<b>node"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;b&gt;node&lt;/b&gt;"));
        assert!(page.contains("cluster/vms/x.toml:3:1"));
        assert!(page.contains("a &amp; b"));
        assert!(page.contains("(2 attempts)"));
        assert!(page.contains("name=\"viewport\""));
        assert!(!page.contains("<script"), "no script of its own either");
    }

    #[test]
    fn cluster_members_placement_conflicts_and_refusals() {
        let mut status = Status::new("node1".into());
        assert!(!render(&status).contains("Cluster"));
        status.cluster = Some(crate::cluster::sample_status());
        let page = render(&status);
        assert!(page.contains("<h2>Cluster lab</h2>"));
        assert!(page.contains("node1 (this node)"));
        for state in ["alive", "suspect", "dead"] {
            assert!(page.contains(&format!(">{state}</td>")), "{state}");
        }
        assert!(page.contains("<td>vm/web</td><td>node2</td>"));
        assert!(page.contains("Conflicts (1)"));
        assert!(
            page.contains("&lt;mtu = 1400&gt;"),
            "losing content, escaped"
        );
        assert!(page.contains("Refused changes (1)"));
        assert!(page.contains("cluster/vms/evil.toml"));
        assert!(page.contains("7 refused (wrong key)"));
    }

    #[test]
    fn errors_come_before_the_generation_and_the_hash_is_short() {
        let mut status = Status::new("n1".into());
        status.ready = true;
        status.generation = Some(GenerationInfo {
            id: 4,
            hash: "0123456789abcdef0123".into(),
            parent: Some(3),
            source: Source::Push,
            accepted_at: "2026-01-01T00:00:00Z".into(),
        });
        let page = render(&status);
        assert!(!page.contains("Config errors"));
        assert!(!page.contains("(starting)"));
        assert!(page.contains(">0123456789ab</code>"));
        assert!(page.contains("title=\"0123456789abcdef0123\""));
        status.config_errors.push(Diagnostic {
            file: "node.toml".into(),
            line: None,
            column: None,
            message: "unreadable".into(),
            hint: None,
            snippet: None,
        });
        let page = render(&status);
        let errors = page.find("Config errors (1)").unwrap();
        assert!(errors < page.find("Generation 4").unwrap());
        assert!(page.contains("<code>node.toml</code>"));
    }
}
