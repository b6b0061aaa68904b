//! `horcrux console`: the real binary against a real unix socket (a test
//! listener standing in for QEMU's chardev), on pipes and on a pty, and
//! against a real guest under QEMU TCG.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "support/guest.rs"]
mod guest;

use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::termios::{self, LocalModes};

/// Long enough for a loaded CI machine, short enough that a hang fails.
const GUARD: Duration = Duration::from_secs(20);

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A config tree with VM `web` on this node and `far` on another, and an
/// empty run dir.
struct Tree {
    _dir: tempfile::TempDir,
    etc: PathBuf,
    run: PathBuf,
}

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        let run = dir.path().join("run");
        let write = |path: &str, text: &str| {
            let path = etc.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("node.toml", "name = \"node1\"\n");
        write(
            "cluster/cluster.toml",
            "name = \"lab\"\n[[member]]\nname = \"node1\"\naddress = \"10.0.0.1\"\n\
             [[member]]\nname = \"node2\"\naddress = \"10.0.0.2\"\n\
             [trust]\nrequire_signatures = false\n",
        );
        write("cluster/vms/web.toml", "node = \"node1\"\n");
        write("cluster/vms/far.toml", "node = \"node2\"\n");
        std::fs::create_dir_all(run.join("vm/web")).unwrap();
        Tree {
            _dir: dir,
            etc,
            run,
        }
    }

    fn socket(&self) -> PathBuf {
        self.run.join("vm/web/serial.sock")
    }

    fn command(&self, vm: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_horcrux"));
        cmd.arg("console")
            .arg("--config-dir")
            .arg(&self.etc)
            .arg("--run-dir")
            .arg(&self.run)
            .arg(vm);
        cmd
    }

    /// Runs `horcrux console VM` with no input; (exit code, stderr).
    fn run(&self, vm: &str) -> (i32, String) {
        let out = self.command(vm).stdin(Stdio::null()).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The console as a child process that is killed if a test fails.
struct Console {
    child: Child,
    stdout: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
    stderr: Option<ChildStderr>,
}

impl Console {
    fn spawn(mut cmd: Command) -> Console {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take();
        Console {
            child,
            stdout: pump(stdout),
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits until the console has printed `needle`; returns everything
    /// printed so far.
    fn expect(&mut self, needle: &str) -> String {
        self.expect_within(needle, GUARD)
    }

    fn expect_within(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            if text.contains(needle) {
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => panic!("console never printed {needle:?}; got {text:?}"),
            }
        }
    }

    fn wait(&mut self) -> (i32, String) {
        let deadline = Instant::now() + GUARD;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "horcrux console did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.stderr.take() {
            pipe.read_to_string(&mut stderr).unwrap();
        }
        (status.code().unwrap_or(-1), stderr)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump(mut stdout: ChildStdout) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Accepts the console's connection, with a timeout.
fn accept(listener: &UnixListener) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + GUARD;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(GUARD)).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the console never connected");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Reads from the VM side until `needle` arrived.
fn read_until(stream: &mut UnixStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "console closed early; got {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// When the tests do not run as root, the binary must refuse everything;
/// that is asserted, and the root-only paths are not reachable.
fn require_root(tree: &Tree) -> bool {
    if is_root() {
        return true;
    }
    let (code, stderr) = tree.run("web");
    assert_eq!(code, 1);
    assert!(stderr.contains("must run as root"), "{stderr}");
    eprintln!("note: not root; only the refusal was checked");
    false
}

#[test]
fn non_root_users_are_refused() {
    let tree = Tree::new();
    if !is_root() {
        require_root(&tree);
        return;
    }
    let setpriv = Command::new("setpriv").arg("--version").output();
    if setpriv.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "setpriv (util-linux) is required in CI"
        );
        eprintln!("skipped: setpriv is not installed");
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_horcrux"))
        .args(["console", "--run-dir"])
        .arg(&tree.run)
        .arg("web")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("horcrux console must run as root"),
        "{stderr}"
    );
}

#[test]
fn unknown_misplaced_and_stopped_vms_get_clear_errors() {
    let tree = Tree::new();
    if !require_root(&tree) {
        return;
    }
    let (code, stderr) = tree.run("nope");
    assert_eq!(code, 1);
    assert!(stderr.contains("VM nope is not defined in"), "{stderr}");

    let (code, stderr) = tree.run("far");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("VM far is placed on node node2; this node is node1"),
        "{stderr}"
    );

    let (code, stderr) = tree.run("web");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("VM web is not running on this node"),
        "{stderr}"
    );
    assert!(!stderr.contains("No such file"), "{stderr}");

    // A socket left behind by a QEMU that died: nobody listens on it.
    drop(UnixListener::bind(tree.socket()).unwrap());
    assert!(tree.socket().exists());
    let (code, stderr) = tree.run("web");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("VM web is not running on this node"),
        "{stderr}"
    );

    let (code, stderr) = tree.run("Web!");
    assert_eq!(code, 1);
    assert!(stderr.contains("`Web!` is not a VM name"), "{stderr}");
}

#[test]
fn bytes_pass_both_ways_and_the_escape_byte_ends_the_session() {
    let tree = Tree::new();
    if !require_root(&tree) {
        return;
    }
    let listener = UnixListener::bind(tree.socket()).unwrap();
    let mut cmd = tree.command("web");
    cmd.stdin(Stdio::piped());
    let mut console = Console::spawn(cmd);
    let mut vm = accept(&listener);
    let mut stdin = console.child.stdin.take().unwrap();

    // VM -> terminal, including bytes that are not text.
    vm.write_all(b"login: \x00\xff\r\n").unwrap();
    console.expect("login: ");
    assert!(
        console.seen.windows(4).any(|w| w == b"\x00\xff\r\n"),
        "{:?}",
        console.seen
    );

    // Terminal -> VM; Ctrl-C is just a byte here, not a signal.
    stdin.write_all(b"root\n\x03").unwrap();
    stdin.flush().unwrap();
    read_until(&mut vm, b"root\n\x03");

    // The escape byte: what came before it is sent, nothing after it.
    stdin.write_all(b"last\x1dnever sent\n").unwrap();
    stdin.flush().unwrap();
    let (code, stderr) = console.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("Connected to VM web; escape with Ctrl-]"),
        "{stderr}"
    );
    assert!(stderr.contains("Disconnected from VM web"), "{stderr}");
    let mut rest = Vec::new();
    vm.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"last");
}

#[test]
fn the_session_ends_when_the_vm_closes_the_socket() {
    let tree = Tree::new();
    if !require_root(&tree) {
        return;
    }
    let listener = UnixListener::bind(tree.socket()).unwrap();
    let mut cmd = tree.command("web");
    // Input stays open: only the socket can end this session.
    cmd.stdin(Stdio::piped());
    let mut console = Console::spawn(cmd);
    let mut vm = accept(&listener);
    vm.write_all(b"reboot: Power down\r\n").unwrap();
    console.expect("Power down");
    drop(vm);
    let (code, stderr) = console.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("the VM closed its console"), "{stderr}");
}

#[test]
fn after_the_input_ends_output_is_copied_until_the_guest_is_quiet() {
    let tree = Tree::new();
    if !require_root(&tree) {
        return;
    }
    let listener = UnixListener::bind(tree.socket()).unwrap();
    let mut cmd = tree.command("web");
    cmd.stdin(Stdio::piped());
    let mut console = Console::spawn(cmd);
    let mut vm = accept(&listener);
    let mut stdin = console.child.stdin.take().unwrap();
    stdin.write_all(b"uptime\n").unwrap();
    drop(stdin);
    read_until(&mut vm, b"uptime\n");
    // Answers that trickle in, each well inside the linger time.
    for part in ["up 3 days, ", "load average: 0.00\r\n"] {
        std::thread::sleep(Duration::from_millis(300));
        vm.write_all(part.as_bytes()).unwrap();
    }
    let started = Instant::now();
    let text = console.expect("load average: 0.00");
    assert!(text.contains("up 3 days, load"), "{text}");
    let (code, stderr) = console.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("input ended"), "{stderr}");
    assert!(started.elapsed() >= Duration::from_millis(500));
}

/// A pseudo-terminal: the console gets the slave as stdin, the test types
/// into the master and reads the slave's settings.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    fn open() -> Pty {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let path = Path::new(std::ffi::OsStr::from_bytes(name.as_bytes()));
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        Pty {
            master,
            slave: slave.into(),
        }
    }

    fn canonical(&self) -> bool {
        termios::tcgetattr(&self.slave)
            .unwrap()
            .local_modes
            .contains(LocalModes::ICANON)
    }

    fn wait_canonical(&self, want: bool) {
        let deadline = Instant::now() + GUARD;
        while self.canonical() != want {
            assert!(
                Instant::now() < deadline,
                "the terminal never became {}",
                if want { "canonical" } else { "raw" }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_bytes(&self, bytes: &[u8]) {
        rustix::io::write(&self.master, bytes).unwrap();
    }
}

/// Starts the console with a pty as stdin and waits until it is connected
/// and has put the terminal in raw mode.
fn console_on_pty(tree: &Tree, listener: &UnixListener, pty: &Pty) -> (Console, UnixStream) {
    let before = termios::tcgetattr(&pty.slave).unwrap();
    assert!(before.local_modes.contains(LocalModes::ICANON));
    let mut cmd = tree.command("web");
    cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()));
    let console = Console::spawn(cmd);
    let vm = accept(listener);
    pty.wait_canonical(false);
    (console, vm)
}

#[test]
fn a_terminal_is_raw_while_attached_and_restored_after_the_escape() {
    let tree = Tree::new();
    if !require_root(&tree) {
        return;
    }
    let listener = UnixListener::bind(tree.socket()).unwrap();
    let pty = Pty::open();
    let before = termios::tcgetattr(&pty.slave).unwrap();
    let (mut console, mut vm) = console_on_pty(&tree, &listener, &pty);
    // Raw: a key reaches the VM at once, without Enter, and Ctrl-C is a byte.
    pty.type_bytes(b"q\x03");
    read_until(&mut vm, b"q\x03");
    pty.type_bytes(&[0x1d]);
    let (code, stderr) = console.wait();
    assert_eq!(code, 0, "{stderr}");
    let after = termios::tcgetattr(&pty.slave).unwrap();
    assert!(after.local_modes.contains(LocalModes::ICANON));
    assert_eq!(after.local_modes, before.local_modes);
    assert_eq!(after.input_modes, before.input_modes);
    assert_eq!(after.output_modes, before.output_modes);
}

#[test]
fn a_terminal_is_restored_when_the_console_is_killed_with_sigterm() {
    let tree = Tree::new();
    if !require_root(&tree) {
        return;
    }
    let listener = UnixListener::bind(tree.socket()).unwrap();
    let pty = Pty::open();
    let (mut console, _vm) = console_on_pty(&tree, &listener, &pty);
    let pid = rustix::process::Pid::from_raw(console.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let (code, stderr) = console.wait();
    assert_eq!(code, 128 + 15, "{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(pty.canonical());
}

#[test]
fn a_terminal_is_restored_when_the_vm_goes_away() {
    let tree = Tree::new();
    if !require_root(&tree) {
        return;
    }
    let listener = UnixListener::bind(tree.socket()).unwrap();
    let pty = Pty::open();
    let (mut console, vm) = console_on_pty(&tree, &listener, &pty);
    drop(vm);
    let (code, stderr) = console.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(pty.canonical());
}

/// The arguments of `argv` whose value contains `needle`, with their flags.
fn args_with(argv: &[String], needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pair in argv.windows(2) {
        if pair[0].starts_with('-') && pair[1].contains(needle) {
            out.extend_from_slice(pair);
        }
    }
    out
}

/// The real thing: QEMU (TCG) with the tiny guest, its serial console on
/// the unix socket exactly as `vm_argv` renders it, a shell on that
/// console, and the real binary typing into it through a pipe.
#[test]
fn a_shell_in_a_real_guest_answers_through_the_console() {
    if !guest::qemu_available() {
        return;
    }
    let tree = Tree::new();
    if !require_root(&tree) {
        return;
    }
    let config = horcrux_config::load(&tree.etc)
        .unwrap()
        .into_valid()
        .unwrap();
    let layout = horcrux_hostd::backend::Layout::new(&tree.run, tree.run.join("state"));
    let web = horcrux_config::decode::ParseStr::parse_str("web").unwrap();
    let argv = horcrux_hostd::backend::qemu::vm_argv(&config, &web, &layout).unwrap();
    let serial = args_with(&argv, "serial0");
    assert_eq!(serial.len(), 4, "-chardev and -serial: {argv:?}");
    assert!(serial[1].contains(&*tree.socket().to_string_lossy()));

    let guest = guest::tiny_guest("echo CONSOLE-SHELL-READY\nexec sh\n");
    let qemu = guest::Vm::spawn(
        &guest,
        &guest::VmConfig {
            serial_to_file: false,
            extra_args: serial,
            ..guest::VmConfig::default()
        },
    );
    // QEMU creates the socket before the guest runs; attach at once so
    // nothing the guest prints is missed.
    let deadline = Instant::now() + GUARD;
    while !tree.socket().exists() {
        assert!(
            Instant::now() < deadline,
            "QEMU made no serial socket\n{}",
            qemu.report()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cmd = tree.command("web");
    cmd.stdin(Stdio::piped());
    let mut console = Console::spawn(cmd);
    let started = Instant::now();
    console.expect_within("CONSOLE-SHELL-READY", guest::BOOT_TIMEOUT);
    eprintln!(
        "timing: console attached to guest shell ready: {:.2?}",
        started.elapsed()
    );
    let mut stdin = console.child.stdin.take().unwrap();
    // The echo of the typed line shows the expression, not its value.
    stdin.write_all(b"echo $((6*7))-from-the-guest\n").unwrap();
    stdin.flush().unwrap();
    console.expect_within("42-from-the-guest", GUARD);
    stdin.write_all(&[0x1d]).unwrap();
    stdin.flush().unwrap();
    let (code, stderr) = console.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("escape"), "{stderr}");

    // The VM keeps running; a second session attaches to the same shell,
    // and this time the input simply ends.
    let mut cmd = tree.command("web");
    cmd.stdin(Stdio::piped());
    let mut again = Console::spawn(cmd);
    let mut stdin = again.child.stdin.take().unwrap();
    stdin.write_all(b"echo second-$((1+1))-session\n").unwrap();
    drop(stdin);
    again.expect_within("second-2-session", GUARD);
    let (code, stderr) = again.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("input ended"), "{stderr}");
    drop(qemu);
}
