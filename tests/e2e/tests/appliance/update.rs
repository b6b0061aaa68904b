//! The production image format on the booted appliance: the dm-verity
//! protected erofs root, A/B updates from signed bundles with boot counting
//! and rollback, and a diskless PXE boot of the same build.
//!
//! Order matters (see CASES): the broken update runs first and must fall
//! back to slot A; the good update then moves node1 to slot B for good;
//! tampered bundles are refused on B.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use horcrux_e2e::node::{Node, Options};
use horcrux_e2e::serve::FileServer;
use horcrux_e2e::{image, repo_root, run, work_dir};

use super::{BOOT_TIMEOUT, Ctx};

/// Boot-health gives up on a crash-looping hostd after 5 restarts; the
/// boots around it take a minute or two each under TCG.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(900);

/// A bundle built for these tests and the server that hands it to the
/// node (QEMU's user network: the host is 10.0.2.2).
struct Served {
    bundle: PathBuf,
    server: FileServer,
}

impl Served {
    fn url(&self) -> String {
        self.server.url_in_guest("update.bundle")
    }

    /// The bundle's image id, from the manifest beside it.
    fn image_id(&self) -> Result<String> {
        let path = self.bundle.with_file_name("manifest.toml");
        let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let manifest: toml::Table =
            toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
        manifest
            .get("image_id")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("no image_id in {}", path.display()))
    }
}

/// Builds (or finds in the cache) the bundle `label` and serves its
/// directory. `bin_dir` replaces the horcrux binaries.
fn serve_bundle(label: &str, bin_dir: Option<&Path>) -> Result<Served> {
    let bundle = image::ensure_bundle(label, bin_dir)?;
    let dir = bundle.parent().context("bundle without a directory")?;
    Ok(Served {
        server: FileServer::start(dir)?,
        bundle,
    })
}

/// The next version of the image: same binaries, another build.
fn next_bundle() -> Result<&'static Served> {
    static NEXT: OnceLock<Served> = OnceLock::new();
    if let Some(served) = NEXT.get() {
        return Ok(served);
    }
    let served = serve_bundle("next", None)?;
    Ok(NEXT.get_or_init(|| served))
}

/// The image the node runs, from its image-release.
fn running_image(node: &Node) -> Result<String> {
    node.sh("sed -n 's/^IMAGE_ID=//p' /usr/lib/horcrux/image-release")
}

/// The running slot, from the kernel command line.
fn running_slot(node: &Node) -> Result<String> {
    node.sh("tr ' ' '\\n' </proc/cmdline | sed -n 's/^horcrux.slot=//p'")
}

/// What an update must never touch when it refuses: the boot entries and
/// the ESP's kernels, and the start of the inactive slot.
fn boot_state(node: &Node, inactive: &str) -> Result<String> {
    node.sh(&format!(
        "ls -l --time-style=+%s.%N /efi/loader/entries /efi/horcrux/*/ && \
         sha256sum /efi/loader/entries/* && \
         head -c 64M /dev/disk/by-partlabel/horcrux-root-{inactive} | sha256sum"
    ))
}

pub fn root_is_erofs_behind_dm_verity(ctx: &mut Ctx) -> Result<()> {
    let node = ctx.node()?;
    let root = node.sh("findmnt -n -o SOURCE,FSTYPE /")?;
    ensure!(
        root.split_whitespace().eq(["/dev/mapper/root", "erofs"]),
        "/ is not the verity device with erofs: {root}"
    );
    let status = node.sh("veritysetup status root")?;
    ensure!(
        status.contains("VERITY") && status.contains("verified"),
        "veritysetup status root:\n{status}"
    );
    let cmdline = node.sh("cat /proc/cmdline")?;
    let hash = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("roothash="))
        .context("no roothash= on the kernel command line")?;
    ensure!(
        status.contains(hash),
        "the verity device does not use the boot entry's root hash {hash}:\n{status}"
    );
    ensure!(
        running_slot(node)? == "a",
        "first boot is not slot A: {cmdline}"
    );
    Ok(())
}

pub fn broken_update_rolls_back_to_slot_a(ctx: &mut Ctx) -> Result<()> {
    // A build whose hostd exits at once: it boots, but never gets READY.
    let bin = work_dir().join("broken-bin");
    fs::create_dir_all(&bin)?;
    let release = std::env::var_os("HORCRUX_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release"));
    fs::copy(release.join("horcrux"), bin.join("horcrux"))?;
    fs::write(
        bin.join("hostd"),
        "#!/bin/sh\necho 'hostd: a deliberately broken build (e2e rollback test)' >&2\nexit 1\n",
    )?;
    fs::set_permissions(bin.join("hostd"), fs::Permissions::from_mode(0o755))?;
    let broken = serve_bundle("broken", Some(&bin))?;
    let broken_id = broken.image_id()?;

    let (node, metrics) = ctx.parts()?;
    ensure!(running_slot(node)? == "a", "not on slot A before the test");
    let good_id = running_image(node)?;
    let out = node.sh(&format!("horcrux update --tries 1 {} 2>&1", broken.url()))?;
    eprintln!("e2e: horcrux update (broken build):\n{out}");
    node.sh("test -f /efi/loader/entries/horcrux-b+1.conf")?;

    // Reboot into B: its hostd crash-loops, boot-health reboots, the entry
    // has no tries left, systemd-boot falls back to A.
    node.sh("systemd-run --no-block --on-active=1 systemctl reboot")?;
    node.wait_exit(BOOT_TIMEOUT)?;
    node.power_on()?;
    let tried = Instant::now();
    node.wait_exit(ROLLBACK_TIMEOUT)
        .context("the broken boot never rebooted itself (boot-health)")?;
    node.power_on()?;
    node.wait_ssh(BOOT_TIMEOUT)?;
    node.wait_hostd_ready(BOOT_TIMEOUT)?;
    metrics.record(
        "rollback_broken_boot_to_hostd_ready_on_a",
        tried.elapsed().as_secs_f64(),
    );

    ensure!(running_slot(node)? == "a", "did not fall back to slot A");
    let running = running_image(node)?;
    ensure!(
        running == good_id,
        "runs {running}, not the old image {good_id}"
    );
    // The broken boot really ran slot B and gave up on hostd.
    let previous =
        node.sh("journalctl -b -1 -o cat -u horcrux-boot-health --no-pager; cat /proc/cmdline")?;
    ensure!(
        previous.contains("horcrux-hostd") || previous.contains("restart"),
        "the previous boot's boot-health log does not say why it rebooted:\n{previous}"
    );
    let image_b = node.sh("journalctl -b -1 -o cat --no-pager -g 'horcrux.image=' -n 1 || true")?;
    ensure!(
        image_b.contains(&broken_id) || previous.contains(&broken_id),
        "the previous boot was not the broken build {broken_id}"
    );
    let entries = node.sh("ls /efi/loader/entries")?;
    ensure!(
        entries.contains("horcrux-b+0-1.conf"),
        "slot B's entry is not marked bad: {entries}"
    );
    let status = node.sh("horcrux update-status")?;
    ensure!(
        status.contains("bad"),
        "update-status does not show B as bad:\n{status}"
    );
    Ok(())
}

pub fn signed_update_boots_slot_b(ctx: &mut Ctx) -> Result<()> {
    let next = next_bundle()?;
    let next_id = next.image_id()?;
    let (node, metrics) = ctx.parts()?;
    ensure!(
        running_slot(node)? == "a",
        "not on slot A before the update"
    );
    let generation = node.generation()?;

    let started = Instant::now();
    let out = node.sh(&format!("horcrux update {} 2>&1", next.url()))?;
    metrics.record("update_download_and_apply", started.elapsed().as_secs_f64());
    eprintln!("e2e: horcrux update:\n{out}");
    let entries = node.sh("ls /efi/loader/entries")?;
    ensure!(
        entries.contains("horcrux-b+3.conf") && !entries.contains("horcrux-b+0"),
        "no fresh trial entry for slot B: {entries}"
    );

    let rebooted = node.reboot(BOOT_TIMEOUT)?;
    node.wait_hostd_ready(BOOT_TIMEOUT)?;
    metrics.record("update_reboot_to_ssh_on_b", rebooted.as_secs_f64());
    ensure!(running_slot(node)? == "b", "did not boot slot B");
    let running = running_image(node)?;
    ensure!(running == next_id, "slot B runs {running}, not {next_id}");
    // boot-health blesses the entry once hostd is READY.
    let started = Instant::now();
    while node
        .ssh("test -f /efi/loader/entries/horcrux-b.conf")?
        .status
        .code()
        != Some(0)
    {
        if started.elapsed() > Duration::from_secs(180) {
            bail!(
                "slot B was never blessed:\n{}",
                node.sh("ls /efi/loader/entries; systemctl status --no-pager horcrux-boot-health")?
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    ensure!(
        node.generation()? == generation,
        "the config generation changed across the update"
    );
    let failed = node.sh("systemctl --failed --no-legend --plain")?;
    ensure!(failed.is_empty(), "failed units on slot B:\n{failed}");
    // Applying the bundle that runs is a no-op.
    let same = node.sh(&format!("horcrux update {} 2>&1", next.url()))?;
    ensure!(
        same.contains("already running"),
        "re-applying the running bundle:\n{same}"
    );
    Ok(())
}

pub fn tampered_update_bundles_are_refused(ctx: &mut Ctx) -> Result<()> {
    let next = next_bundle()?;
    let dir = work_dir().join("tampered");
    let _ = fs::remove_dir_all(&dir);
    let unpacked = dir.join("unpacked");
    fs::create_dir_all(&unpacked)?;
    run(Command::new("tar")
        .arg("-C")
        .arg(&unpacked)
        .arg("-xf")
        .arg(&next.bundle))?;
    let members = [
        "manifest.toml",
        "manifest.toml.minisig",
        "vmlinuz",
        "initrd.img",
        "root.img",
    ];
    let pack = |name: &str, tweak: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        let work = dir.join(format!("{name}.d"));
        fs::create_dir_all(&work)?;
        for m in members {
            fs::copy(unpacked.join(m), work.join(m))?;
        }
        tweak(&work)?;
        run(Command::new("tar")
            .args(["--format=ustar", "-C"])
            .arg(&work)
            .arg("-cf")
            .arg(dir.join(name))
            .args(members))?;
        fs::remove_dir_all(&work)?;
        Ok(())
    };
    // One flipped byte in the middle of the root image.
    pack("flipped-root.bundle", &|d| {
        let path = d.join("root.img");
        let mut bytes = fs::read(&path)?;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        fs::write(&path, bytes)?;
        Ok(())
    })?;
    // The manifest edited after signing.
    pack("edited-manifest.bundle", &|d| {
        let path = d.join("manifest.toml");
        let text = fs::read_to_string(&path)?.replace("panic=10", "panic=10 init=/bin/sh");
        fs::write(&path, text)?;
        Ok(())
    })?;
    // Signed by a key the image does not trust.
    pack("untrusted-key.bundle", &|d| {
        run(Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(d.join("other.pub"))
            .arg("-s")
            .arg(d.join("other.key")))?;
        run(Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(d.join("other.key"))
            .arg("-m")
            .arg(d.join("manifest.toml"))
            .arg("-x")
            .arg(d.join("manifest.toml.minisig")))?;
        Ok(())
    })?;
    let server = FileServer::start(&dir)?;

    let node = ctx.node()?;
    let inactive = if running_slot(node)? == "a" { "b" } else { "a" };
    let before = boot_state(node, inactive)?;
    for (name, reason) in [
        ("flipped-root.bundle", "root.img"),
        ("edited-manifest.bundle", "signature"),
        ("untrusted-key.bundle", "signature"),
    ] {
        let out = node.ssh(&format!(
            "horcrux update {} 2>&1",
            server.url_in_guest(name)
        ))?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.code() == Some(1),
            "{name} was not refused ({}):\n{text}",
            out.status
        );
        ensure!(
            text.to_lowercase().contains(reason),
            "{name}: the refusal does not mention {reason}:\n{text}"
        );
        let after = boot_state(node, inactive)?;
        ensure!(
            after == before,
            "{name} changed the boot state:\nbefore:\n{before}\nafter:\n{after}"
        );
    }
    Ok(())
}

pub fn pxe_boot_reaches_hostd_ready(ctx: &mut Ctx) -> Result<()> {
    let pxe_dir = ctx
        .image
        .parent()
        .context("image without a directory")?
        .join("pxe");
    ensure!(
        pxe_dir.join("boot.ipxe").is_file(),
        "no PXE artifacts in {}",
        pxe_dir.display()
    );
    let server = FileServer::start(&pxe_dir)?;
    let node_toml = "# from the SMBIOS credential horcrux.node.toml\nname = \"pxe1\"\n\n[status]\nlisten = \"0.0.0.0:8006\"\n";
    let opts = Options {
        name: "pxe1".into(),
        memory_mib: 3072,
        pxe_bootfile: Some(server.url_in_guest("boot.ipxe")),
        credentials: vec![("horcrux.node.toml".into(), node_toml.as_bytes().to_vec())],
        ..Options::default()
    };
    let mut node = Node::boot(&ctx.image, &ctx.key, &opts)?;
    let result = (|| -> Result<()> {
        let ssh = node.wait_ssh(Duration::from_secs(900))?;
        let ready = node.wait_hostd_ready(BOOT_TIMEOUT)?;
        ctx.metrics.record("pxe_power_on_to_ssh", ssh.as_secs_f64());
        ctx.metrics
            .record("pxe_power_on_to_hostd_ready", ready.as_secs_f64());
        let root = node.sh(
            "findmnt -n -o SOURCE,FSTYPE /; veritysetup status root | grep -E 'status|data device'",
        )?;
        ensure!(
            root.contains("/dev/mapper/root erofs")
                && root.contains("verified")
                && root.contains("loop"),
            "the PXE root is not the verified image on a loop device:\n{root}"
        );
        let var = node.sh("findmnt -n -o FSTYPE /var")?;
        ensure!(
            var == "tmpfs",
            "/var on a diskless node is {var}, not tmpfs"
        );
        let pushed = node.sh("cat /etc/horcrux/node.toml")?;
        ensure!(
            pushed == node_toml.trim_end(),
            "node.toml is not the credential's:\n{pushed}"
        );
        let status = node.status()?;
        ensure!(
            status["node"].as_str() == Some("pxe1"),
            "status.json names the node {}, not pxe1",
            status["node"]
        );
        let failed = node.sh("systemctl --failed --no-legend --plain")?;
        ensure!(failed.is_empty(), "failed units on the PXE node:\n{failed}");
        Ok(())
    })();
    if result.is_err() {
        node.keep_disk = true;
        eprintln!("e2e: pxe1 serial console tail:\n{}", node.serial_tail(40));
    }
    result
}
