//! The argv `horcrux render` generates is accepted by the real
//! qemu-system-x86_64 (TCG): each VM is started paused (`-S`) on temporary
//! qcow2 disks, its QMP socket must appear and answer `query-status`, then
//! QEMU is killed. Nothing boots.
//!
//! NICs are kept when the test may create a network namespace (root:
//! `unshare -n`), so taps are created in a throwaway namespace; otherwise
//! the `-netdev`/NIC `-device` pairs are dropped, since taps need root and
//! /dev/net/tun. Skipped (with a note on stderr) when qemu-system-x86_64
//! or qemu-img is not installed; `.ci/run` installs them.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const HANG_GUARD: Duration = Duration::from_secs(30);

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn can_unshare_net() -> bool {
    Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Kills QEMU however the test ends.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Qemu {
    fn stderr(&mut self) -> String {
        let _ = self.0.kill();
        let mut err = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            let _ = pipe.read_to_string(&mut err);
        }
        err
    }
}

/// Drops `-netdev X` and the `-device` of each NIC.
fn without_nics(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let nic = argv[i] == "-netdev"
            || (argv[i] == "-device" && argv.get(i + 1).is_some_and(|v| v.contains("netdev=")));
        if nic {
            i += 2;
        } else {
            out.push(argv[i].clone());
            i += 1;
        }
    }
    out
}

fn qmp_line(reader: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

/// The reply to a command, skipping asynchronous events.
fn qmp_execute(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, cmd: &str) -> Value {
    writeln!(stream, "{{\"execute\": \"{cmd}\"}}").unwrap();
    loop {
        let msg = qmp_line(reader);
        if msg.get("event").is_none() {
            return msg;
        }
    }
}

fn start_paused(name: &str, argv: &[String], run: &Path, disks: &Path, state: &Path) {
    // What hostd prepares before starting a unit: disks, dirs, vars, seed.
    for arg in argv {
        if let Some(file) = arg
            .split(',')
            .find_map(|kv| kv.strip_prefix("filename="))
            .filter(|f| f.ends_with(".qcow2"))
        {
            assert!(file.starts_with(disks.to_str().unwrap()), "{file}");
            let made = Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", file, "64M"])
                .status()
                .unwrap();
            assert!(made.success());
        }
    }
    let run_dir = run.join("vm").join(name);
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("cloud-init.img"), vec![0u8; 1 << 20]).unwrap();
    let state_dir = state.join("vm").join(name);
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::copy(
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
        state_dir.join("OVMF_VARS.fd"),
    )
    .unwrap();

    let (program, args) = if can_unshare_net() {
        let mut args = vec!["-n".to_string()];
        args.extend(argv.iter().cloned());
        ("unshare".to_string(), args)
    } else {
        eprintln!("note: cannot create a network namespace; NICs left out of the QEMU check");
        let argv = without_nics(argv);
        (argv[0].clone(), argv[1..].to_vec())
    };
    let child = Command::new(program)
        .args(args)
        .arg("-S")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut qemu = Qemu(child);

    let qmp = run_dir.join("qmp.sock");
    let deadline = Instant::now() + HANG_GUARD;
    let mut stream = loop {
        if let Some(status) = qemu.0.try_wait().unwrap() {
            panic!("QEMU for {name} exited ({status}):\n{}", qemu.stderr());
        }
        if let Ok(stream) = UnixStream::connect(&qmp) {
            break stream;
        }
        assert!(
            Instant::now() < deadline,
            "no QMP socket for {name} after {HANG_GUARD:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert!(qmp_line(&mut reader).get("QMP").is_some());
    let caps = qmp_execute(&mut stream, &mut reader, "qmp_capabilities");
    assert!(caps.get("return").is_some(), "{caps}");
    let status = qmp_execute(&mut stream, &mut reader, "query-status");
    assert_eq!(status["return"]["status"], "prelaunch", "{status}");
    assert!(run_dir.join("serial.sock").exists());
    assert!(run_dir.join("vnc.sock").exists());
}

#[test]
fn generated_argv_starts_real_qemu_paused() {
    if !installed("qemu-system-x86_64") || !installed("qemu-img") {
        // CI installs QEMU (.ci/run); there a missing QEMU is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "qemu-system-x86_64 and qemu-img are required in CI"
        );
        eprintln!(
            "skipped: qemu-system-x86_64 or qemu-img is not installed (run .ci/run's apt-get line)"
        );
        return;
    }
    // Short paths for unix sockets (108-byte limit); disks on the target
    // filesystem, which supports O_DIRECT (tmpfs may not).
    let base = tempfile::tempdir().unwrap();
    let disks = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (etc, run, state) = (
        base.path().join("etc"),
        base.path().join("run"),
        base.path().join("state"),
    );
    write(
        &etc.join("node.toml"),
        "name = \"n1\"\n[qemu]\naccel = \"tcg\"\n",
    );
    let storage = format!("kind = \"dir\"\npath = \"{}\"\n", disks.path().display());
    write(&etc.join("cluster/storage/local.toml"), &storage);
    write(
        &etc.join("cluster/networks/lan.toml"),
        "kind = \"bridge\"\n",
    );
    let disk =
        |bus: &str| format!("[[disk]]\nstorage = \"local\"\nsize = \"64MiB\"\nbus = \"{bus}\"\n");
    let nic = |model: &str| format!("[[nic]]\nnetwork = \"lan\"\nmodel = \"{model}\"\n");
    let uefi = format!(
        "cpus = 2\nmemory = \"256MiB\"\n{}{}{}{}{}{}[cloud_init]\nuser = \"ops\"\n",
        disk("virtio"),
        disk("scsi"),
        disk("sata"),
        disk("scsi"),
        nic("virtio"),
        nic("e1000"),
    );
    write(&etc.join("cluster/vms/uefi-vm.toml"), &uefi);
    let bios = format!(
        "machine = \"pc\"\nfirmware = \"bios\"\nmemory = \"128MiB\"\n{}{}{}",
        disk("sata"),
        disk("virtio"),
        nic("rtl8139"),
    );
    write(&etc.join("cluster/vms/bios-vm.toml"), &bios);

    let out = Command::new(env!("CARGO_BIN_EXE_horcrux"))
        .args(["render", "--format", "json", "--config-dir"])
        .arg(&etc)
        .arg("--run-dir")
        .arg(&run)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in ["uefi-vm", "bios-vm"] {
        let argv: Vec<String> = serde_json::from_value(json["qemu"][name].clone()).unwrap();
        start_paused(name, &argv, &run, disks.path(), &state);
    }
}
