//! Network and firewall cases: hostd's links and nftables tables on the
//! appliance, and the netns test suites run again on the appliance's own
//! kernel (which has the 802.1Q and bridge-conntrack support the CI host's
//! kernel lacks).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use horcrux_e2e::node::Node;
use serde_json::Value;

use super::{APPLY_TIMEOUT, Ctx};

/// hostd's integration tests that need real links and nftables.
const SUITES: &[&str] = &["net_links", "net_firewall"];
/// Where the suites run on the node (the data partition: room to spare).
const SUITE_DIR: &str = "/var/lib/horcrux-e2e/net";
/// The network the tiny VM's NIC is on (examples/single-node).
pub const NETWORK: &str = "isolated";
/// hostd repairs drift on its 30 s observe cycle.
const REPAIR_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds the suites' test binaries (already built by `make test`'s unit
/// stage) and returns their paths.
fn suite_binaries() -> Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(horcrux_e2e::repo_root()).args([
        "test",
        "-p",
        "horcrux-hostd",
        "--no-run",
        "--message-format=json",
    ]);
    for suite in SUITES {
        cmd.args(["--test", suite]);
    }
    let out = cmd.output().context("cannot run cargo")?;
    ensure!(
        out.status.success(),
        "cargo test --no-run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let name = message["target"]["name"].as_str().unwrap_or_default();
        if message["reason"] == "compiler-artifact"
            && SUITES.contains(&name)
            && let Some(exe) = message["executable"].as_str()
        {
            found.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    ensure!(
        found.len() == SUITES.len(),
        "expected test binaries for {SUITES:?}, cargo built {found:?}"
    );
    Ok(found)
}

/// `net_links` and `net_firewall` on the appliance's kernel, strict: a
/// missing kernel feature fails instead of being reported as not run.
pub fn net_suites_pass_on_the_appliance_kernel(ctx: &mut Ctx) -> Result<()> {
    let binaries = suite_binaries()?;
    let (node, metrics) = ctx.parts()?;
    for (suite, exe) in binaries {
        let remote = format!("{SUITE_DIR}/{suite}");
        node.upload(&exe, &remote)?;
        let started = Instant::now();
        let out = node.ssh(&format!(
            "chmod +x {remote} && cd {SUITE_DIR} && HORCRUX_NET_TESTS_STRICT=1 {remote} --test-threads=2 --nocapture 2>&1"
        ))?;
        metrics.record(
            &format!("{suite}_on_appliance"),
            started.elapsed().as_secs_f64(),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "{suite} failed on the appliance:\n{text}"
        );
        ensure!(
            !text.contains("NOT RUN HERE"),
            "{suite} skipped a case on the appliance:\n{text}"
        );
        let passed = text
            .lines()
            .find_map(|l| l.strip_prefix("test result: ok. "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
            .context("no test summary")?;
        ensure!(passed > 0, "{suite} ran no test:\n{text}");
        // The suites' own measurements (ruleset apply times at 1,000 VMs).
        for line in text.lines().filter(|l| l.contains("bytes of ruleset")) {
            eprintln!("e2e: {suite} on the appliance: {line}");
        }
        eprintln!("e2e: {suite}: {passed} tests passed on the appliance kernel");
    }
    Ok(())
}

/// The resource of `kind` and `name` in a status document.
pub(super) fn resource<'a>(status: &'a Value, kind: &str, name: &str) -> Option<&'a Value> {
    status["resources"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
}

/// The tap of the tiny VM's NIC (the one tap on [`NETWORK`]'s bridge).
pub fn tiny_tap(status: &Value) -> Option<(String, String)> {
    let bridge = resource(status, "network", NETWORK)?["desired"]["bridge"]
        .as_str()?
        .to_string();
    let tap = status["resources"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "tap" && r["desired"]["bridge"].as_str() == Some(bridge.as_str()))?;
    Some((tap["name"].as_str()?.to_string(), bridge))
}

fn converged(status: &Value, kind: &str, name: &str) -> bool {
    resource(status, kind, name).is_some_and(|r| r["state"] == "converged")
}

/// The master of `link` on the node, if any.
fn master_of(node: &Node, link: &str) -> Result<Option<String>> {
    let out = node.sh(&format!(
        "ip -j link show dev {link} 2>/dev/null || echo '[]'"
    ))?;
    let links: Value = serde_json::from_str(&out).with_context(|| format!("ip -j: {out}"))?;
    Ok(links[0]["master"].as_str().map(str::to_string))
}

/// The tiny VM (pushed by the VM case before) has its NIC's tap on its
/// network's bridge, the firewall chains for it, and the node's input
/// policy; a bridge deleted by hand and a ruleset edited by hand are put
/// back; a firewall edit reaches the kernel.
pub fn net_vm_nic_on_bridge_behind_firewall(ctx: &mut Ctx) -> Result<()> {
    let (node, metrics) = ctx.parts()?;
    let status = node.wait_status("network, tap and firewall converged", APPLY_TIMEOUT, |s| {
        tiny_tap(s).is_some_and(|(tap, _)| converged(s, "tap", &tap))
            && converged(s, "network", NETWORK)
            && converged(s, "firewall", "horcrux")
    })?;
    let (tap, bridge) = tiny_tap(&status).context("no tap")?;
    ensure!(
        master_of(node, &tap)?.as_deref() == Some(bridge.as_str()),
        "{tap} is not on {bridge}"
    );
    let kind = node.sh(&format!("ip -d -j link show dev {tap}"))?;
    ensure!(kind.contains("\"tun\""), "{tap} is not a tap: {kind}");
    let chain = node.sh(&format!("nft list chain bridge horcrux to-{tap}"))?;
    ensure!(
        chain.contains("jump in-web") && chain.contains("drop"),
        "{tap}'s chain does not use the web group:\n{chain}"
    );
    let group = node.sh("nft list chain bridge horcrux in-web")?;
    ensure!(group.contains("dport { 80, 443 }"), "{group}");
    let input = node.sh("nft list chain inet horcrux input")?;
    ensure!(input.contains("policy drop"), "{input}");
    let management = node.sh("cat /run/systemd/network/10-horcrux-management.network")?;
    ensure!(
        management.contains("Name=eth0") && management.contains("DHCP=yes"),
        "{management}"
    );

    // A bridge deleted by hand comes back with the tap on it.
    node.sh(&format!("ip link del {bridge}"))?;
    let started = Instant::now();
    loop {
        if master_of(node, &tap)?.as_deref() == Some(bridge.as_str()) {
            break;
        }
        if started.elapsed() > REPAIR_TIMEOUT {
            bail!("{bridge} was not recreated with {tap} on it");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    metrics.record(
        "bridge_deleted_to_repaired",
        started.elapsed().as_secs_f64(),
    );

    // A rule added by hand is removed again.
    node.sh("nft add rule bridge horcrux forward counter accept comment \\\"by-hand\\\"")?;
    let started = Instant::now();
    while node
        .sh("nft list table bridge horcrux")?
        .contains("by-hand")
    {
        if started.elapsed() > REPAIR_TIMEOUT {
            bail!("the hand-added rule stayed");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    metrics.record(
        "firewall_edit_by_hand_to_repaired",
        started.elapsed().as_secs_f64(),
    );

    // A group edit saved on the node reaches the kernel: measured on the
    // node itself, file write to rule listed.
    let script = "f=/etc/horcrux/cluster/firewall/web.toml; cp $f /run/web.toml.orig; \
         s=$(date +%s%N); printf '\\n[[rule]]\\ndirection = \"in\"\\naction = \"accept\"\\nproto = \"tcp\"\\nports = \"8443\"\\n' >> $f; \
         n=0; until nft list chain bridge horcrux in-web | grep -q 8443; do n=$((n+1)); [ $n -gt 3000 ] && exit 1; sleep 0.01; done; \
         e=$(date +%s%N); cp /run/web.toml.orig $f; echo $(( (e - s) / 1000000 ))";
    let ms: f64 = node
        .sh(script)?
        .trim()
        .parse()
        .context("edit-to-kernel time")?;
    metrics.record("firewall_edit_saved_to_kernel", ms / 1000.0);
    eprintln!("e2e: firewall edit saved -> rule in the kernel: {ms} ms (TCG node)");
    Ok(())
}

/// After the VM stopped, its tap is gone.
pub fn ensure_tap_removed(node: &Node, tap: &str) -> Result<()> {
    let started = Instant::now();
    while node
        .ssh(&format!("ip link show dev {tap}"))?
        .status
        .success()
    {
        if started.elapsed() > APPLY_TIMEOUT {
            bail!("tap {tap} still exists after the VM stopped");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}
