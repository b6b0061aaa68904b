//! One appliance node under QEMU: a copy-on-write overlay of the image,
//! UEFI (OVMF) booting systemd-boot, user networking with hostfwd ports for
//! SSH and the status endpoint, and the serial console logged to a file
//! (and reachable on a Unix socket while the node runs).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::{http, run, work_dir};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The serial of the node's test pool disk: udev links it as
/// `/dev/disk/by-id/virtio-<serial>`.
pub const POOL_DISK_SERIAL: &str = "horcrux-test-pool";
/// The multicast group of the nodes' cluster segment (see
/// [`cluster_segment`]).
const CLUSTER_GROUP: &str = "230.0.0.1";

/// The cluster segment of this run: `group:port` of the QEMU socket
/// netdev (UDP multicast on the host's loopback) that every node's second
/// NIC is on, so the nodes share one Ethernet segment besides their own
/// user-mode NIC. The port is picked once per run: concurrent runs on one
/// host do not see each other's frames.
pub fn cluster_segment() -> &'static str {
    static SEGMENT: OnceLock<String> = OnceLock::new();
    SEGMENT.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mixed = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
        let port = 20_000 + mixed % 40_000;
        format!("{CLUSTER_GROUP}:{port}")
    })
}

/// The MAC of a node's cluster NIC: locally administered and derived from
/// the node's name (FNV-1a), so it differs between the nodes of a run and
/// stays the same across reboots.
pub fn cluster_mac(name: &str) -> String {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let [a, b, c, _] = hash.to_be_bytes();
    format!("52:54:01:{a:02x}:{b:02x}:{c:02x}")
}

/// How a node is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Also the directory name under target/e2e.
    pub name: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Size of the node's disk; the data partition grows into it on first boot.
    pub disk_gib: u32,
    /// Size of the second, empty disk (`pool.qcow2`, sparse) for a test
    /// ZFS pool: `/dev/disk/by-id/virtio-horcrux-test-pool` on the node.
    pub pool_disk_gib: u32,
    /// `tcg` (default, `HORCRUX_E2E_ACCEL`) or `kvm` where it works.
    pub accel: String,
    /// Fixed host ports (the demo); `None` picks free ones.
    pub ssh_port: Option<u16>,
    pub http_port: Option<u16>,
    /// Boot over the network instead of from the image: legacy BIOS
    /// (SeaBIOS) and the NIC's iPXE ROM fetch this bootfile (a URL, e.g.
    /// `http://10.0.2.2:PORT/boot.ipxe`, the host as seen from QEMU's user
    /// network). The node has no boot disk then.
    pub pxe_bootfile: Option<String>,
    /// System credentials passed as SMBIOS type 11 strings
    /// (`io.systemd.credential.binary:NAME=BASE64`).
    pub credentials: Vec<(String, Vec<u8>)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "node1".into(),
            memory_mib: 2048,
            cpus: 2,
            disk_gib: 10,
            pool_disk_gib: 2,
            accel: std::env::var("HORCRUX_E2E_ACCEL").unwrap_or_else(|_| "tcg".into()),
            ssh_port: None,
            http_port: None,
            pxe_bootfile: None,
            credentials: Vec::new(),
        }
    }
}

/// How a tree reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `git push` to root@node:/var/lib/horcrux/config.git, branch main.
    Git,
    /// `rsync -a --delete TREE/ root@node:/etc/horcrux/`.
    Rsync,
}

/// What a push printed, and whether it succeeded.
#[derive(Debug)]
pub struct Pushed {
    pub ok: bool,
    pub output: String,
}

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub ssh_port: u16,
    pub http_port: u16,
    pub serial_log: PathBuf,
    /// The MAC of the NIC on the cluster segment ([`cluster_segment`]).
    pub cluster_mac: String,
    /// When QEMU was started (or the node last rebooted).
    pub powered_on: Instant,
    key: PathBuf,
    qemu: Child,
    qemu_args: Vec<String>,
    /// Keep the disk overlay and the pool disk when dropped (set on
    /// failure, for inspection).
    pub keep_disk: bool,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Node {
    /// Starts QEMU on an overlay of `image`; returns at once (see
    /// [`Node::wait_ssh`]). A previous run's directory of the same name is
    /// replaced.
    pub fn boot(image: &Path, key: &Path, opts: &Options) -> Result<Node> {
        let dir = work_dir().join(&opts.name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let disk = dir.join("disk.qcow2");
        if opts.pxe_bootfile.is_none() {
            run(Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                .arg(image)
                .arg(&disk)
                .arg(format!("{}G", opts.disk_gib)))?;
        }
        // An empty, sparse second disk for a test ZFS pool: the guest sees
        // it as /dev/disk/by-id/virtio-horcrux-test-pool (the serial).
        let pool = dir.join("pool.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&pool)
            .arg(format!("{}G", opts.pool_disk_gib)))?;
        let vars = dir.join("OVMF_VARS.fd");
        fs::copy(OVMF_VARS, &vars)
            .with_context(|| format!("copy {OVMF_VARS} (apt-get install ovmf)"))?;
        let ssh_port = opts.ssh_port.map_or_else(free_port, Ok)?;
        let http_port = opts.http_port.map_or_else(free_port, Ok)?;
        let serial_log = dir.join("serial.log");
        let cluster_mac = cluster_mac(&opts.name);
        let mut args: Vec<String> = ["-nodefaults", "-display", "none", "-monitor", "none"]
            .map(String::from)
            .to_vec();
        // A guest reboot ends QEMU and `reboot` starts it again: OVMF
        // under TCG takes a minute longer after a warm reset than after a
        // cold start (measured), and a power cycle is what the test means.
        args.push("-no-reboot".into());
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-machine", "q35", "-accel", &opts.accel])
            .args(["-m", &opts.memory_mib.to_string()])
            .args(["-smp", &opts.cpus.to_string()]);
        let mut user_net = format!(
            "user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22,hostfwd=tcp:127.0.0.1:{http_port}-:8006"
        );
        if let Some(bootfile) = &opts.pxe_bootfile {
            // SeaBIOS (QEMU's default firmware) boots the NIC's iPXE ROM.
            cmd.args(["-boot", "n"]);
            user_net.push_str(&format!(",bootfile={bootfile}"));
        } else {
            cmd.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ))
                .arg("-drive")
                .arg(format!("file={},if=virtio,format=qcow2", disk.display()));
        }
        for (name, value) in &opts.credentials {
            cmd.arg("-smbios").arg(format!(
                "type=11,value=io.systemd.credential.binary:{name}={}",
                BASE64.encode(value)
            ));
        }
        cmd.arg("-drive")
            .arg(format!(
                "file={},if=none,id=pool0,format=qcow2",
                pool.display()
            ))
            .args([
                "-device",
                &format!("virtio-blk-pci,drive=pool0,serial={POOL_DISK_SERIAL}"),
            ])
            .arg("-netdev")
            .arg(user_net)
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .args(["-device", "virtio-rng-pci"])
            // The cluster segment, after every other device so that the
            // user-mode NIC stays the first (eth0) and keeps its PCI slot.
            .arg("-netdev")
            .arg(format!(
                "socket,id=c0,mcast={},localaddr=127.0.0.1",
                cluster_segment()
            ))
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=c0,mac={cluster_mac}"),
            ])
            .arg("-chardev")
            .arg(format!(
                "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=on",
                dir.join("serial.sock").display(),
                serial_log.display()
            ))
            .args(["-serial", "chardev:serial0"]);
        args.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
        let qemu = spawn_qemu(&dir, &args)?;
        Ok(Node {
            name: opts.name.clone(),
            dir,
            ssh_port,
            http_port,
            serial_log,
            cluster_mac,
            powered_on: Instant::now(),
            key: key.to_path_buf(),
            qemu,
            qemu_args: args,
            keep_disk: false,
        })
    }

    /// Whether QEMU still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.qemu.try_wait(), Ok(None))
    }

    /// Starts QEMU again after it exited (the guest rebooted or powered
    /// off): the same disk, UEFI variables and ports, the serial log
    /// appended to.
    pub fn power_on(&mut self) -> Result<()> {
        if self.alive() {
            bail!("{} is still running", self.name);
        }
        self.qemu = spawn_qemu(&self.dir, &self.qemu_args)?;
        self.powered_on = Instant::now();
        Ok(())
    }

    /// The ssh command line (for GIT_SSH_COMMAND and rsync -e).
    pub fn ssh_command(&self) -> String {
        format!(
            "ssh -i {} -p {} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o LogLevel=ERROR -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \
             -o ControlMaster=auto -o ControlPath={} -o ControlPersist=60",
            self.key.display(),
            self.ssh_port,
            self.dir.join("ssh.sock").display()
        )
    }

    /// Runs `script` on the node as root; the output whatever the exit.
    pub fn ssh(&self, script: &str) -> Result<Output> {
        let mut parts = self.ssh_command();
        parts.push_str(" root@127.0.0.1");
        let mut words = parts.split_whitespace();
        let program = words.next().unwrap_or("ssh");
        Command::new(program)
            .args(words)
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .context("cannot run ssh")
    }

    /// Makes pool `pool` with the empty parent dataset `parent` on the
    /// node's second, empty disk ([`POOL_DISK_SERIAL`]), then exports it:
    /// importing the pools node.toml lists is hostd's job (it also loads
    /// the module, but maybe not yet). The root is read-only, so nothing
    /// is mounted and there is no cache file.
    pub fn make_test_pool(&self, pool: &str, parent: &str) -> Result<()> {
        let device = format!("/dev/disk/by-id/virtio-{POOL_DISK_SERIAL}");
        self.sh(&format!(
            "test -b {device} || {{ echo no {device}:; ls -l /dev/disk/by-id; exit 1; }}"
        ))?;
        self.sh(&format!(
            "modprobe zfs && zpool create -m none -o cachefile=none {pool} {device} && \
             zfs create -o mountpoint=none {parent} && zpool export {pool}"
        ))?;
        Ok(())
    }

    /// Brings the NIC on the cluster segment up with the static address
    /// `cidr` (e.g. `10.99.0.1/24`) and returns its name. The appliance
    /// configures only the management NIC (node.toml `[management]`);
    /// networkd leaves a NIC no `.network` file matches alone, and so
    /// does hostd, so the address stays until the next boot.
    pub fn set_cluster_address(&self, cidr: &str) -> Result<String> {
        self.sh(&format!(
            "dev=; for d in /sys/class/net/*; do \
               [ \"$(cat $d/address)\" = {mac} ] && dev=${{d##*/}}; \
             done; \
             [ -n \"$dev\" ] || {{ echo no NIC with MAC {mac}; ip -br link; exit 1; }}; \
             ip link set \"$dev\" up && ip addr replace {cidr} dev \"$dev\" && echo \"$dev\"",
            mac = self.cluster_mac
        ))
    }

    /// Copies a host file to `to` on the node over the SSH connection
    /// (written beside and renamed, so a half copy never has the name).
    pub fn upload(&self, from: &Path, to: &str) -> Result<()> {
        let mut parts = self.ssh_command();
        parts.push_str(" root@127.0.0.1");
        let mut words = parts.split_whitespace();
        let program = words.next().unwrap_or("ssh");
        let file =
            fs::File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
        let status = Command::new(program)
            .args(words)
            .arg(format!(
                "mkdir -p $(dirname {to}) && cat > {to}.part && mv {to}.part {to}"
            ))
            .stdin(Stdio::from(file))
            .status()
            .context("cannot run ssh")?;
        ensure!(
            status.success(),
            "upload of {} failed: {status}",
            from.display()
        );
        Ok(())
    }

    /// Runs `script` on the node; fails unless it exits 0. Returns stdout.
    pub fn sh(&self, script: &str) -> Result<String> {
        let out = self.ssh(script)?;
        if !out.status.success() {
            bail!(
                "on {}: `{script}` failed ({}): {}{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Waits until SSH answers; fails early if QEMU exits.
    pub fn wait_ssh(&mut self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        let mut prompt_seen = None;
        loop {
            if !self.alive() {
                bail!(
                    "QEMU exited while waiting for SSH; see {}",
                    self.serial_log.display()
                );
            }
            if self.ssh("true").is_ok_and(|o| o.status.success()) {
                return Ok(self.powered_on.elapsed());
            }
            // The console's login prompt means boot finished: SSH should
            // follow within seconds, else it never will (a failed unit).
            let login_prompt = fs::read_to_string(&self.serial_log)
                .is_ok_and(|log| log.lines().last().is_some_and(|l| l.ends_with("login: ")));
            let waited_after_login = match (login_prompt, prompt_seen) {
                (true, None) => {
                    prompt_seen = Some(Instant::now());
                    Duration::ZERO
                }
                (true, Some(seen)) => seen.elapsed(),
                (false, _) => Duration::ZERO,
            };
            if started.elapsed() > timeout || waited_after_login > Duration::from_secs(45) {
                bail!(
                    "no SSH on port {} after {} s; serial console tail:\n{}",
                    self.ssh_port,
                    started.elapsed().as_secs(),
                    self.serial_tail(30)
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Waits until systemd reports horcrux-hostd active (it is Type=notify,
    /// so active means hostd sent READY=1). Returns the time since power-on.
    pub fn wait_hostd_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let state = self.ssh("systemctl is-active horcrux-hostd")?;
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            if state == "active" {
                return Ok(self.powered_on.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "horcrux-hostd is {state:?} after {} s:\n{}",
                    timeout.as_secs(),
                    self.sh("systemctl status --no-pager horcrux-hostd; journalctl -b -u horcrux-hostd --no-pager | tail -n 30")
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// GET /status.json.
    pub fn status(&self) -> Result<Value> {
        http::get_json(self.http_port, "/status.json")
    }

    /// The id of the generation hostd runs, if any.
    pub fn generation(&self) -> Result<Option<u64>> {
        Ok(self.status()?["generation"]["id"].as_u64())
    }

    /// Polls status.json until `pred` holds; `what` names the condition in
    /// the error.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let started = Instant::now();
        loop {
            let last = match self.status() {
                Ok(v) if pred(&v) => return Ok(v),
                Ok(v) => v,
                Err(e) => Value::String(format!("{e:#}")),
            };
            if started.elapsed() > timeout {
                bail!(
                    "status.json never showed {what} within {} s; last: {last:#}",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Pushes the tree at `tree` (node.toml, cluster/) to the node.
    pub fn push(&self, tree: &Path, via: Via) -> Result<Pushed> {
        match via {
            Via::Git => self.push_git(tree),
            Via::Rsync => self.push_rsync(tree),
        }
    }

    /// Commits `tree` as the whole content of a local clone and pushes it
    /// to the node's git receiver (branch main).
    pub fn push_git(&self, tree: &Path) -> Result<Pushed> {
        let work = self.dir.join("git-work");
        let git = |args: &[&str]| {
            let mut c = Command::new("git");
            c.arg("-C").arg(&work).args(args);
            c.env("GIT_SSH_COMMAND", self.ssh_command());
            c
        };
        if !work.join(".git").exists() {
            fs::create_dir_all(&work)?;
            run(&mut git(&["init", "-q", "-b", "main"]))?;
            let url = format!(
                "ssh://root@127.0.0.1:{}/var/lib/horcrux/config.git",
                self.ssh_port
            );
            run(&mut git(&["remote", "add", "node", &url]))?;
        }
        for entry in fs::read_dir(&work)? {
            let entry = entry?;
            if entry.file_name() != ".git" {
                let path = entry.path();
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
        }
        run(Command::new("cp").arg("-a").arg(tree.join(".")).arg(&work))?;
        run(&mut git(&["add", "-A"]))?;
        run(&mut git(&[
            "-c",
            "user.name=e2e",
            "-c",
            "user.email=e2e@horcrux.invalid",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            &format!("push {}", tree.display()),
        ]))?;
        let out = git(&["push", "node", "HEAD:main"]).output()?;
        Ok(pushed(&out))
    }

    /// `rsync -a --delete TREE/ root@node:/etc/horcrux/`.
    pub fn push_rsync(&self, tree: &Path) -> Result<Pushed> {
        let out = Command::new("rsync")
            .args(["-a", "--delete", "-e", &self.ssh_command()])
            .arg(format!("{}/", tree.display()))
            .arg("root@127.0.0.1:/etc/horcrux/")
            .output()
            .context("cannot run rsync")?;
        Ok(pushed(&out))
    }

    /// The hook for scenario tests: pushes `tree` and waits until hostd
    /// runs it as a new generation without config errors. Returns
    /// status.json at that point.
    pub fn apply_tree(&self, tree: &Path, via: Via, timeout: Duration) -> Result<Value> {
        let before = self.generation()?;
        let pushed = self.push(tree, via)?;
        if !pushed.ok {
            bail!(
                "{via:?} push of {} failed:\n{}",
                tree.display(),
                pushed.output
            );
        }
        self.wait_status("a new generation without errors", timeout, |s| {
            s["generation"]["id"].as_u64() > before
                && s["config_errors"].as_array().is_some_and(|e| e.is_empty())
        })
    }

    /// Reboots the node (`systemctl reboot`) and waits for SSH again.
    pub fn reboot(&mut self, timeout: Duration) -> Result<Duration> {
        let boot_id = self.sh("cat /proc/sys/kernel/random/boot_id")?;
        // Detached, so that ssh returns before the connection drops.
        self.sh("systemd-run --no-block --on-active=1 systemctl reboot")?;
        let started = Instant::now();
        // The guest shuts down, QEMU (-no-reboot) exits: power on again.
        self.wait_exit(timeout)?;
        self.power_on()?;
        loop {
            if !self.alive() {
                bail!(
                    "QEMU exited during reboot; see {}",
                    self.serial_log.display()
                );
            }
            if let Ok(out) = self.ssh("cat /proc/sys/kernel/random/boot_id")
                && out.status.success()
                && String::from_utf8_lossy(&out.stdout).trim() != boot_id
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "the node did not come back within {} s:\n{}",
                    timeout.as_secs(),
                    self.serial_tail(30)
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Waits until QEMU exits: the guest powered off or rebooted (QEMU
    /// runs with -no-reboot, so a reboot ends it too).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        while self.alive() {
            if started.elapsed() > timeout {
                bail!(
                    "the node did not shut down within {} s:\n{}",
                    timeout.as_secs(),
                    self.serial_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(started.elapsed())
    }

    /// The last `lines` lines of the serial console.
    pub fn serial_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.serial_log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Saves the journal next to the serial log (best effort) and returns
    /// where to look.
    pub fn save_diagnostics(&mut self) -> String {
        self.keep_disk = true;
        if let Ok(out) = self.ssh("journalctl -b --no-pager -o short-monotonic") {
            let _ = fs::write(self.dir.join("journal.log"), &out.stdout);
        }
        // hostd's log with its fields (paths, authors, errors).
        if let Ok(out) = self.ssh("journalctl -b --no-pager -o verbose -u horcrux-hostd") {
            let _ = fs::write(self.dir.join("hostd-verbose.log"), &out.stdout);
        }
        // The cluster replication record, when there is one.
        if let Ok(out) = self.ssh("cat /var/lib/horcrux/cluster/view.json")
            && out.status.success()
        {
            let _ = fs::write(self.dir.join("cluster-view.json"), &out.stdout);
        }
        format!(
            "serial console: {}\njournal: {} (hostd with fields: {})\ndisk: {}\ntest pool disk: {}",
            self.serial_log.display(),
            self.dir.join("journal.log").display(),
            self.dir.join("hostd-verbose.log").display(),
            self.dir.join("disk.qcow2").display(),
            self.dir.join("pool.qcow2").display()
        )
    }
}

fn spawn_qemu(dir: &Path, args: &[String]) -> Result<Child> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("qemu.log"))?;
    Command::new("qemu-system-x86_64")
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start qemu-system-x86_64")
}

fn pushed(out: &Output) -> Pushed {
    Pushed {
        ok: out.status.success(),
        output: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        if !self.keep_disk {
            let _ = fs::remove_file(self.dir.join("disk.qcow2"));
            let _ = fs::remove_file(self.dir.join("pool.qcow2"));
        }
    }
}
