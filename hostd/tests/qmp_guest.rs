//! QMP against a real QEMU (TCG) running the tiny guest
//! (`support/guest.rs`): status, pause/resume, events, and the graceful
//! stop used as each VM unit's `ExecStop=` (`horcrux vm-shutdown`), with a
//! guest that powers off on the ACPI power button and one that ignores it.
//! Skipped with a note when qemu-system-x86_64 is missing, except in CI.
//!
//! Boot and power-down times are printed; see them with
//! `cargo test -p horcrux-hostd --test qmp_guest -- --nocapture`.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "support/guest.rs"]
mod guest;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use guest::{BOOT_TIMEOUT, PowerButton, READY, Vm, VmConfig};
use horcrux_hostd::backend::qemu::qmp::{
    ForceReason, Qmp, QmpError, RunState, StopOutcome, graceful_stop,
};

/// Upper bound for a cooperating guest to power off; far above the
/// measured time, for loaded CI machines.
const POWERDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long QEMU may take to exit once QMP said it is going.
const EXIT_GRACE: Duration = Duration::from_secs(10);

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A booted guest: QEMU started and the guest printed READY.
fn booted(power_button: PowerButton, config: &VmConfig) -> Vm {
    let guest = guest::tiny_guest_with("echo guest-script-ran", power_button);
    let mut vm = Vm::spawn(&guest, config);
    let boot = vm.wait_for(READY, BOOT_TIMEOUT);
    eprintln!("timing: QEMU start to {READY} under TCG: {boot:.2?}");
    vm
}

fn assert_exited(vm: &mut Vm) {
    let status = vm.wait_exit(EXIT_GRACE);
    assert!(
        status.is_some(),
        "QEMU still runs after QMP reported it stopping\n{}",
        vm.report()
    );
}

#[test]
fn status_pause_and_resume_on_a_running_guest() {
    if !guest::qemu_available() {
        return;
    }
    let mut vm = booted(PowerButton::PowerOff, &VmConfig::default());
    // The script runs after READY, as init's child.
    vm.wait_for("guest-script-ran", BOOT_TIMEOUT);
    block_on(async {
        let mut qmp = Qmp::connect(&vm.qmp_socket()).await.unwrap();
        let version = qmp.version().expect("QEMU's greeting carries its version");
        assert!(version.major >= 7, "{version}");
        let running = RunState {
            status: "running".to_string(),
            running: true,
        };
        assert_eq!(qmp.query_status().await.unwrap(), running);

        qmp.pause().await.unwrap();
        assert_eq!(
            qmp.query_status().await.unwrap(),
            RunState {
                status: "paused".to_string(),
                running: false
            }
        );
        qmp.resume().await.unwrap();
        assert_eq!(qmp.query_status().await.unwrap(), running);

        // QEMU announced both transitions; events arrive while waiting
        // for replies and are kept, typed where qapi knows them.
        let mut names = Vec::new();
        for event in qmp.take_events() {
            assert!(
                event.known.is_some(),
                "QEMU 7.2's {} is in qapi's schema",
                event.name
            );
            names.push(event.name);
        }
        assert_eq!(names, ["STOP", "RESUME"]);

        // QEMU's own errors come back as errors, the connection stays.
        let error = qmp
            .execute(qapi::qmp::device_del {
                id: "horcrux-no-such-device".to_string(),
            })
            .await
            .unwrap_err();
        assert!(matches!(error, QmpError::Command { .. }), "{error:?}");
        assert!(error.to_string().contains("qmp.sock"), "{error}");
        assert!(qmp.query_status().await.unwrap().running);
    });
}

#[test]
fn graceful_stop_powers_down_a_cooperating_guest() {
    if !guest::qemu_available() {
        return;
    }
    let mut vm = booted(PowerButton::PowerOff, &VmConfig::default());
    let socket = vm.qmp_socket();
    let started = Instant::now();
    let outcome = block_on(graceful_stop(&socket, POWERDOWN_TIMEOUT)).unwrap();
    let StopOutcome::PoweredDown { after } = outcome else {
        panic!("{outcome:?}\n{}", vm.report());
    };
    assert_exited(&mut vm);
    eprintln!(
        "timing: system_powerdown to QMP closing {after:.2?}, to QEMU reaped {:.2?}",
        started.elapsed()
    );
    assert!(after < POWERDOWN_TIMEOUT);
    assert!(
        vm.serial_output().contains("power button pressed"),
        "{}",
        vm.report()
    );
    // The unit's ExecStop after the guest is gone: nothing to do.
    assert_eq!(
        block_on(graceful_stop(&socket, POWERDOWN_TIMEOUT)).unwrap(),
        StopOutcome::NotRunning
    );
}

#[test]
fn graceful_stop_quits_a_guest_that_ignores_the_power_button() {
    if !guest::qemu_available() {
        return;
    }
    let mut vm = booted(PowerButton::Ignore, &VmConfig::default());
    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    let outcome = block_on(graceful_stop(&vm.qmp_socket(), timeout)).unwrap();
    assert_eq!(
        outcome,
        StopOutcome::Forced {
            reason: ForceReason::IgnoredPowerdown(timeout)
        },
        "{}",
        vm.report()
    );
    assert!(started.elapsed() >= timeout);
    assert_exited(&mut vm);
    assert!(!vm.serial_output().contains("power button pressed"));
}

/// A paused guest cannot see the button; it is resumed first so it still
/// shuts down cleanly.
#[test]
fn graceful_stop_resumes_a_paused_guest_and_powers_it_down() {
    if !guest::qemu_available() {
        return;
    }
    let mut vm = booted(PowerButton::PowerOff, &VmConfig::default());
    block_on(async {
        let mut qmp = Qmp::connect(&vm.qmp_socket()).await.unwrap();
        qmp.pause().await.unwrap();
        assert!(!qmp.query_status().await.unwrap().running);
        // QEMU serves one QMP client at a time: let go before stopping.
    });
    let outcome = block_on(graceful_stop(&vm.qmp_socket(), POWERDOWN_TIMEOUT)).unwrap();
    assert!(
        matches!(outcome, StopOutcome::PoweredDown { .. }),
        "{outcome:?}\n{}",
        vm.report()
    );
    assert_exited(&mut vm);
}

/// With `-no-shutdown` QEMU stays after the guest powered off; the SHUTDOWN
/// event counts as powered down and QEMU is then told to quit.
#[test]
fn graceful_stop_quits_qemu_kept_alive_by_no_shutdown() {
    if !guest::qemu_available() {
        return;
    }
    let config = VmConfig {
        extra_args: vec!["-no-shutdown".to_string()],
        ..VmConfig::default()
    };
    let mut vm = booted(PowerButton::PowerOff, &config);
    let outcome = block_on(graceful_stop(&vm.qmp_socket(), POWERDOWN_TIMEOUT)).unwrap();
    assert!(
        matches!(outcome, StopOutcome::PoweredDown { .. }),
        "{outcome:?}\n{}",
        vm.report()
    );
    assert_exited(&mut vm);
    assert!(vm.serial_output().contains("power button pressed"));
}

/// QEMU greets one QMP client at a time. A stop while another client holds
/// the monitor must fail within the connect timeout, not hang; once the
/// other client lets go it works.
#[test]
fn graceful_stop_while_another_client_holds_the_monitor() {
    if !guest::qemu_available() {
        return;
    }
    let mut vm = booted(PowerButton::PowerOff, &VmConfig::default());
    let socket = vm.qmp_socket();
    block_on(async {
        let mut holder = Qmp::connect(&socket).await.unwrap();
        assert!(holder.query_status().await.unwrap().running);
        let started = Instant::now();
        let error = graceful_stop(&socket, POWERDOWN_TIMEOUT).await.unwrap_err();
        assert!(matches!(error, QmpError::Timeout { .. }), "{error:?}");
        assert!(error.to_string().contains("another client"), "{error}");
        assert!(started.elapsed() < POWERDOWN_TIMEOUT);
        // The guest was never asked to power off.
        assert!(holder.query_status().await.unwrap().running);
    });
    let outcome = block_on(graceful_stop(&socket, POWERDOWN_TIMEOUT)).unwrap();
    assert!(
        matches!(outcome, StopOutcome::PoweredDown { .. }),
        "{outcome:?}\n{}",
        vm.report()
    );
    assert_exited(&mut vm);
}

#[test]
fn graceful_stop_without_qemu_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = block_on(graceful_stop(
        &dir.path().join("qmp.sock"),
        POWERDOWN_TIMEOUT,
    ))
    .unwrap();
    assert_eq!(outcome, StopOutcome::NotRunning);
}

fn vm_shutdown(socket: &Path, timeout: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_horcrux"))
        .arg("vm-shutdown")
        .arg("--qmp")
        .arg(socket)
        .args(["--timeout", timeout])
        .output()
        .unwrap()
}

#[test]
fn vm_shutdown_command_stops_a_real_guest() {
    if !guest::qemu_available() {
        return;
    }
    let mut vm = booted(PowerButton::PowerOff, &VmConfig::default());
    let socket = vm.qmp_socket();
    let out = vm_shutdown(&socket, "60s");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}\n{}", vm.report());
    assert!(stdout.contains("powered down after "), "{stdout}");
    assert!(stdout.contains(&socket.display().to_string()), "{stdout}");
    assert_exited(&mut vm);

    let again = vm_shutdown(&socket, "60s");
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("not running"));
}

#[test]
fn vm_shutdown_command_reports_errors() {
    // A socket path under a regular file cannot exist: not "not running"
    // but an error, exit 1, naming the socket.
    let out = vm_shutdown(Path::new("/etc/passwd/qmp.sock"), "5s");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/etc/passwd/qmp.sock"), "{stderr}");

    let out = vm_shutdown(Path::new("/nonexistent/qmp.sock"), "soon");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
}
