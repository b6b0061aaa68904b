//! `horcrux console VM`: the local terminal attached to a VM's serial
//! console, QEMU's unix socket at `Layout::serial_socket`.
//!
//! On a terminal, stdin is put in raw mode so every key (Ctrl-C included)
//! goes to the guest; `Ctrl-]` ([`ESCAPE`], as in telnet and virsh) ends the
//! session. The terminal is restored on every way out: escape, the VM
//! closing the socket, an I/O error, SIGTERM/SIGHUP/SIGINT/SIGQUIT (caught
//! and turned into a normal return), and a panic (unwinding drops the
//! guard). Only SIGKILL leaves it raw; `reset` repairs that.
//!
//! Without a terminal (a pipe, a script) nothing is changed and the bytes
//! pass as they are; the escape byte still ends the session. When the input
//! ends, output is still copied until the guest has been quiet for
//! [`LINGER`], so `echo uptime | horcrux console web` shows the answer.

use std::future;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use horcrux_config::decode::ParseStr;
use horcrux_config::types::ResourceName;
use rustix::termios::{self, OptionalActions, Termios};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::signal::unix::{SignalKind, signal};

use super::{Outcome, exit};
use crate::backend::Layout;
use crate::backend::artifacts::placement;

/// The byte that ends a session: Ctrl-] (group separator).
pub const ESCAPE: u8 = 0x1d;

/// After the input ends, how long the guest may stay quiet before the
/// session ends.
pub const LINGER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("horcrux console must run as root: the serial consoles are root's")]
    NotRoot,
    #[error("`{name}` is not a VM name: {reason}")]
    BadName { name: String, reason: String },
    #[error("VM {vm} is not defined in {config_dir}")]
    UnknownVm { vm: String, config_dir: PathBuf },
    #[error("VM {vm} is placed on node {node}; this node is {this}")]
    OtherNode {
        vm: String,
        node: String,
        this: String,
    },
    #[error("VM {vm} is not running on this node (no console at {socket})")]
    NotRunning { vm: String, socket: PathBuf },
    #[error("cannot connect to the console of VM {vm} at {socket}: {source}")]
    Connect {
        vm: String,
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot put the terminal in raw mode: {0}")]
    Terminal(#[source] io::Error),
    #[error("cannot start: {0}")]
    Runtime(#[source] io::Error),
    #[error("console connection failed: {0}")]
    Io(#[from] io::Error),
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Escaped,
    /// QEMU closed the socket: the VM stopped.
    Closed,
    /// Input ended and the guest then stayed quiet for [`LINGER`].
    InputDone,
    Signal(&'static str, u8),
}

/// Runs `horcrux console`. The session itself streams to stdout; the
/// returned outcome holds only the closing message.
pub fn run(vm: &str, config_dir: &Path, layout: &Layout) -> Outcome {
    match attach(vm, config_dir, layout) {
        Ok(End::Signal(name, number)) => Outcome::error(
            128 + number,
            &format!("\nhorcrux console: {name} received; disconnected from VM {vm}"),
        ),
        Ok(end) => {
            let why = match end {
                End::Closed => "the VM closed its console",
                End::InputDone => "input ended",
                _ => "escape",
            };
            let mut out = Outcome::ok(String::new());
            out.stderr = format!("\nDisconnected from VM {vm} ({why}).\n");
            out
        }
        Err(e) => Outcome::error(exit::INVALID, &format!("horcrux console: {e}")),
    }
}

fn attach(vm: &str, config_dir: &Path, layout: &Layout) -> Result<End, ConsoleError> {
    if !rustix::process::geteuid().is_root() {
        return Err(ConsoleError::NotRoot);
    }
    let name = ResourceName::parse_str(vm).map_err(|e| ConsoleError::BadName {
        name: vm.to_string(),
        reason: e.to_string(),
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ConsoleError::Runtime)?;
    let result = runtime.block_on(async {
        let socket = layout.serial_socket(name.as_str());
        let stream = match UnixStream::connect(&socket).await {
            Ok(stream) => stream,
            Err(e) => return Err(not_connected(&name, config_dir, socket, e)),
        };
        // Registered before raw mode, so no signal can find it unguarded.
        let signals = Signals::new()?;
        let _ = writeln!(io::stderr(), "Connected to VM {name}; escape with Ctrl-]");
        let _raw = RawMode::enable().map_err(ConsoleError::Terminal)?;
        session(stream, signals).await
    });
    // A read of stdin may still be blocked in tokio's blocking pool; do not
    // wait for a key press to exit.
    runtime.shutdown_background();
    result
}

/// Why the socket could not be reached, in the operator's terms: a
/// missing socket (ENOENT) or one nobody listens on (QEMU gone) means the
/// VM is not running here; the config tells whether it exists at all.
fn not_connected(
    vm: &ResourceName,
    config_dir: &Path,
    socket: PathBuf,
    source: io::Error,
) -> ConsoleError {
    let absent = matches!(
        source.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    );
    if !absent {
        return ConsoleError::Connect {
            vm: vm.to_string(),
            socket,
            source,
        };
    }
    // The config is only consulted for a better message; an unreadable or
    // invalid tree leaves the plain "not running".
    if let Ok(Ok(config)) = horcrux_config::load(config_dir).map(|c| c.into_valid()) {
        match config.vms.get(vm) {
            None => {
                return ConsoleError::UnknownVm {
                    vm: vm.to_string(),
                    config_dir: config_dir.to_path_buf(),
                };
            }
            Some(spec) => {
                if let (Some(node), Some(this)) = (placement(&config, spec), config.node_name())
                    && node != this
                {
                    return ConsoleError::OtherNode {
                        vm: vm.to_string(),
                        node: node.to_string(),
                        this: this.to_string(),
                    };
                }
            }
        }
    }
    ConsoleError::NotRunning {
        vm: vm.to_string(),
        socket,
    }
}

/// The signals that end a session cleanly instead of killing the process
/// with the terminal still raw.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    async fn recv(&mut self) -> End {
        tokio::select! {
            _ = self.term.recv() => End::Signal("SIGTERM", 15),
            _ = self.hup.recv() => End::Signal("SIGHUP", 1),
            _ = self.int.recv() => End::Signal("SIGINT", 2),
            _ = self.quit.recv() => End::Signal("SIGQUIT", 3),
        }
    }
}

/// Raw mode on stdin while alive, when stdin is a terminal; the saved
/// settings come back on drop.
#[derive(Debug)]
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enable() -> io::Result<Option<RawMode>> {
        let stdin = io::stdin();
        if !termios::isatty(&stdin) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing better to do on failure: the terminal is going away.
        let _ = termios::tcsetattr(io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Copies bytes both ways until one of the ends in [`End`].
async fn session(stream: UnixStream, mut signals: Signals) -> Result<End, ConsoleError> {
    let (mut from_vm, mut to_vm) = stream.into_split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut input = [0u8; 4096];
    let mut output = [0u8; 16 * 1024];
    let mut input_open = true;
    loop {
        // Re-armed on every pass, so it fires only after LINGER of silence.
        let linger = async {
            if input_open {
                future::pending::<()>().await;
            }
            tokio::time::sleep(LINGER).await;
        };
        tokio::select! {
            read = stdin.read(&mut input), if input_open => {
                let data = &input[..read?];
                if data.is_empty() {
                    input_open = false;
                    continue;
                }
                match data.iter().position(|&b| b == ESCAPE) {
                    Some(at) => {
                        to_vm.write_all(&data[..at]).await?;
                        return Ok(End::Escaped);
                    }
                    None => to_vm.write_all(data).await?,
                }
            }
            read = from_vm.read(&mut output) => {
                let n = read?;
                if n == 0 {
                    return Ok(End::Closed);
                }
                stdout.write_all(&output[..n]).await?;
                stdout.flush().await?;
            }
            () = linger => return Ok(End::InputDone),
            end = signals.recv() => return Ok(end),
        }
    }
}
