//! QMP: controlling a running QEMU through its control socket.
//!
//! Command names and arguments come from the `qapi` crate, which generates
//! them from QEMU's schema. The wire loop is ours rather than qapi's
//! `QmpStreamTokio`, for two reasons found in qapi 0.15's source:
//!
//! * qapi decodes every line into `QmpMessage`, an untagged enum of its
//!   closed `Event` enum (`#[serde(tag = "event")]`, no catch-all) and
//!   `Response`. An event the crate does not know (a newer QEMU's event, or
//!   a known event carrying a new enum value such as a new SHUTDOWN
//!   `reason`) matches neither, so its codec returns an error, the stream
//!   ends and every pending and later command fails (qapi-rs issue #23).
//!   `qapi_spec::Error` has a closed `ErrorClass` too, so an error reply
//!   with a new class would do the same. The unit test
//!   `qapi_stream_dies_on_unknown_event` pins that behaviour down.
//! * Its line codec has no length limit: a QEMU (or whatever listens on the
//!   socket) sending bytes without a newline grows our memory unbounded.
//!
//! Here every line is parsed as plain JSON first and classified by its
//! keys: an event is kept whatever its name or payload (`QmpEvent::known`
//! holds qapi's typed form when it decodes), a reply is matched to its
//! command by `id`, anything else is skipped. Every wait has a deadline:
//! a QEMU that never answers must not hang hostd or a unit's `ExecStop=`.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qapi::qmp;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::time::{Instant, timeout_at};

use super::wire::{is_disconnect, quote, secs, take_reply};

/// How long connecting plus the greeting and capability negotiation may
/// take. QEMU answers in milliseconds even under TCG; a QEMU whose monitor
/// already has a client never greets a second one, so this also bounds
/// that case.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one command may take to be answered.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest message accepted. QEMU's largest reply (`query-qmp-schema`)
/// is well under 1 MiB; this only stops a peer from growing our memory.
pub const MAX_LINE: usize = 16 << 20;

/// How long QEMU may take to exit after `quit` (it answers, then closes
/// the socket while tearing down).
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// After the guest powered off (SHUTDOWN event), QEMU exits by itself
/// unless it runs with `-no-shutdown`; give it this long before `quit`.
const EXIT_AFTER_SHUTDOWN: Duration = Duration::from_secs(5);

/// Events kept for [`Qmp::take_events`]; older ones are dropped so a
/// long-lived connection nobody drains stays bounded.
const MAX_EVENTS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket does not exist or nobody accepts on it: QEMU is not
    /// running. Not a failure for callers that only want it stopped.
    #[error("no QEMU listens on {}: {source}", socket.display())]
    NotListening {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to QMP socket {}: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("QMP {}: {what}: no answer within {}", socket.display(), secs(*after))]
    Timeout {
        socket: PathBuf,
        what: String,
        after: Duration,
    },
    /// QEMU closed the connection (it exited or is exiting).
    #[error("QMP {}: connection closed {during}", socket.display())]
    Closed { socket: PathBuf, during: String },
    #[error("QMP {}: {source}", socket.display())]
    Io {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("QMP {}: a message longer than {limit} bytes", socket.display())]
    LineTooLong { socket: PathBuf, limit: usize },
    #[error("QMP {}: not JSON ({source}): {line}", socket.display())]
    Malformed {
        socket: PathBuf,
        line: String,
        #[source]
        source: serde_json::Error,
    },
    /// Valid JSON that breaks the protocol (no greeting, a reply of the
    /// wrong shape).
    #[error("QMP {}: {detail}", socket.display())]
    Protocol { socket: PathBuf, detail: String },
    /// QEMU answered the command with an error.
    #[error("QMP {}: `{command}` failed: {class}: {desc}", socket.display())]
    Command {
        socket: PathBuf,
        command: &'static str,
        class: String,
        desc: String,
    },
    /// An earlier write timed out or failed half-way; the byte stream can
    /// no longer be trusted to be in step.
    #[error("QMP {}: connection unusable after an earlier failure", socket.display())]
    Poisoned { socket: PathBuf },
    #[error("QEMU behind {} still runs {} after `quit`", socket.display(), secs(*after))]
    StillRunning { socket: PathBuf, after: Duration },
}

impl QmpError {
    /// QEMU went away (or never was there) rather than misbehaving.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            QmpError::NotListening { .. } | QmpError::Closed { .. }
        )
    }
}

/// What `query-status` reports. The status is kept as QEMU's string
/// ("running", "paused", "shutdown", "prelaunch", "io-error", ...) so a
/// state added by a newer QEMU is shown, not a decoding error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunState {
    pub status: String,
    pub running: bool,
}

/// QEMU's version, from the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuVersion {
    pub major: i64,
    pub minor: i64,
    pub micro: i64,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// An asynchronous QMP event. Every event is kept, known or not.
#[derive(Debug, Clone)]
pub struct QmpEvent {
    /// The `event` member, e.g. "SHUTDOWN".
    pub name: String,
    /// The `data` member (`null` when absent).
    pub data: Value,
    /// qapi's typed form, when this crate version can decode the event;
    /// `None` for events (or payloads) newer than qapi's schema. Boxed:
    /// the enum of every event QEMU has is large.
    pub known: Option<Box<qmp::Event>>,
}

/// A QMP connection.
pub struct Qmp {
    socket: PathBuf,
    reader: BufReader<Box<dyn AsyncRead + Send + Unpin>>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    /// Bytes of a line not yet terminated: kept here, not in a local, so a
    /// read cancelled by its deadline loses nothing.
    partial: Vec<u8>,
    events: VecDeque<QmpEvent>,
    next_id: u64,
    poisoned: bool,
    version: Option<QemuVersion>,
    command_timeout: Duration,
}

impl fmt::Debug for Qmp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Qmp")
            .field("socket", &self.socket)
            .field("version", &self.version)
            .field("pending_events", &self.events.len())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// One message from QEMU.
enum Message {
    Greeting(Map<String, Value>),
    Event(QmpEvent),
    Reply {
        id: Option<Value>,
        result: Result<Value, (String, String)>,
    },
    /// A JSON object of a kind we do not know; skipped.
    Other,
}

enum Read {
    Message(Message),
    Eof,
    TimedOut,
}

/// What waiting for an event ended with.
enum Wait {
    Event(QmpEvent),
    Closed,
    TimedOut,
}

impl Qmp {
    /// Connects to QEMU's QMP socket and negotiates capabilities, all
    /// within [`CONNECT_TIMEOUT`].
    pub async fn connect(path: &Path) -> Result<Qmp, QmpError> {
        Self::connect_timeout(path, CONNECT_TIMEOUT).await
    }

    pub async fn connect_timeout(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Instant::now() + timeout;
        let stream = match timeout_at(deadline, UnixStream::connect(path)).await {
            Err(_) => {
                return Err(QmpError::Timeout {
                    socket: path.to_path_buf(),
                    what: "connecting".to_string(),
                    after: timeout,
                });
            }
            // A stale socket file left by a dead QEMU refuses connections.
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(QmpError::NotListening {
                    socket: path.to_path_buf(),
                    source: e,
                });
            }
            Ok(Err(e)) => {
                return Err(QmpError::Connect {
                    socket: path.to_path_buf(),
                    source: e,
                });
            }
            Ok(Ok(stream)) => stream,
        };
        Self::handshake(stream, path, deadline, timeout).await
    }

    /// Speaks QMP over any byte stream (`label` names it in errors): the
    /// greeting and `qmp_capabilities` within `timeout`.
    pub async fn from_stream<S>(stream: S, label: &Path, timeout: Duration) -> Result<Qmp, QmpError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::handshake(stream, label, Instant::now() + timeout, timeout).await
    }

    async fn handshake<S>(
        stream: S,
        label: &Path,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Qmp, QmpError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        let mut qmp = Qmp {
            socket: label.to_path_buf(),
            reader: BufReader::new(Box::new(read)),
            writer: Box::new(write),
            partial: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
            poisoned: false,
            version: None,
            command_timeout: COMMAND_TIMEOUT,
        };
        loop {
            match qmp.read_message(deadline).await? {
                Read::Message(Message::Greeting(greeting)) => {
                    qmp.version = version(&greeting);
                    break;
                }
                Read::Message(Message::Event(event)) => qmp.push_event(event),
                Read::Message(Message::Reply { .. } | Message::Other) => {
                    return Err(qmp.protocol("expected the QMP greeting first".to_string()));
                }
                Read::Eof => return Err(qmp.closed("before the QMP greeting")),
                Read::TimedOut => {
                    return Err(QmpError::Timeout {
                        socket: qmp.socket,
                        what:
                            "waiting for the QMP greeting (does another client hold the monitor?)"
                                .to_string(),
                        after: timeout,
                    });
                }
            }
        }
        qmp.execute_until(qmp::qmp_capabilities { enable: None }, deadline, timeout)
            .await?;
        Ok(qmp)
    }

    /// The socket (or label) this connection was opened with.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// QEMU's version from the greeting, when it had the usual shape.
    pub fn version(&self) -> Option<QemuVersion> {
        self.version
    }

    /// How long each later command may take (default [`COMMAND_TIMEOUT`]).
    pub fn set_command_timeout(&mut self, timeout: Duration) {
        self.command_timeout = timeout;
    }

    /// Runs any command from `qapi::qmp` and decodes its typed reply.
    pub async fn execute<C: qapi::Command>(&mut self, command: C) -> Result<C::Ok, QmpError> {
        let value = self.execute_value(command).await?;
        serde_json::from_value(value)
            .map_err(|e| self.protocol(format!("cannot decode the reply to `{}`: {e}", C::NAME)))
    }

    /// Runs a command and returns its raw `return` value.
    pub async fn execute_value<C: qapi::Command>(&mut self, command: C) -> Result<Value, QmpError> {
        let timeout = self.command_timeout;
        self.execute_until(command, Instant::now() + timeout, timeout)
            .await
    }

    pub async fn query_status(&mut self) -> Result<RunState, QmpError> {
        let value = self.execute_value(qmp::query_status {}).await?;
        serde_json::from_value(value)
            .map_err(|e| self.protocol(format!("cannot decode the reply to `query-status`: {e}")))
    }

    /// `system_powerdown`: presses the ACPI power button. Returns at once;
    /// what the guest does about it shows later (SHUTDOWN event, exit).
    pub async fn powerdown(&mut self) -> Result<(), QmpError> {
        self.execute_value(qmp::system_powerdown {}).await.map(drop)
    }

    /// `stop`: pauses the vCPUs.
    pub async fn pause(&mut self) -> Result<(), QmpError> {
        self.execute_value(qmp::stop {}).await.map(drop)
    }

    /// `cont`: resumes the vCPUs.
    pub async fn resume(&mut self) -> Result<(), QmpError> {
        self.execute_value(qmp::cont {}).await.map(drop)
    }

    /// `quit`: QEMU exits at once, without asking the guest. QEMU may close
    /// the connection before its reply arrives; that counts as success.
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute_value(qmp::quit {}).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_gone() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Events received so far (while waiting for replies or events),
    /// oldest first.
    pub fn take_events(&mut self) -> Vec<QmpEvent> {
        self.events.drain(..).collect()
    }

    /// The next event, buffered ones first; `Ok(None)` when QEMU closed
    /// the connection.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<QmpEvent>, QmpError> {
        match self.wait_event(Instant::now() + timeout).await? {
            Wait::Event(event) => Ok(Some(event)),
            Wait::Closed => Ok(None),
            Wait::TimedOut => Err(QmpError::Timeout {
                socket: self.socket.clone(),
                what: "waiting for an event".to_string(),
                after: timeout,
            }),
        }
    }

    /// Waits until QEMU closes the connection (it exits), discarding
    /// events; `false` when `timeout` passed first.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<bool, QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.wait_event(deadline).await? {
                Wait::Event(_) => {}
                Wait::Closed => return Ok(true),
                Wait::TimedOut => return Ok(false),
            }
        }
    }

    async fn wait_event(&mut self, deadline: Instant) -> Result<Wait, QmpError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Wait::Event(event));
        }
        loop {
            match self.read_message(deadline).await? {
                Read::Message(Message::Event(event)) => return Ok(Wait::Event(event)),
                // A reply nobody waits for (its command timed out earlier).
                Read::Message(_) => {}
                Read::Eof => return Ok(Wait::Closed),
                Read::TimedOut => return Ok(Wait::TimedOut),
            }
        }
    }

    async fn execute_until<C: qapi::Command>(
        &mut self,
        command: C,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        if self.poisoned {
            return Err(QmpError::Poisoned {
                socket: self.socket.clone(),
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        // QEMU echoes `id` in the reply, so a late reply to a command that
        // timed out is never taken for the answer to this one.
        let mut line = serde_json::to_vec(&qapi::Execute::new(command, Some(id)))
            .map_err(|e| self.protocol(format!("cannot encode `{}`: {e}", C::NAME)))?;
        line.push(b'\n');
        let write = async {
            self.writer.write_all(&line).await?;
            self.writer.flush().await
        };
        match timeout_at(deadline, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if is_disconnect(&e) => {
                return Err(self.closed(&format!("while sending `{}`", C::NAME)));
            }
            Ok(Err(e)) => {
                self.poisoned = true;
                return Err(QmpError::Io {
                    socket: self.socket.clone(),
                    source: e,
                });
            }
            Err(_) => {
                // Part of the command may be on the wire.
                self.poisoned = true;
                return Err(QmpError::Timeout {
                    socket: self.socket.clone(),
                    what: format!("sending `{}`", C::NAME),
                    after: timeout,
                });
            }
        }
        loop {
            match self.read_message(deadline).await? {
                Read::Message(Message::Reply {
                    id: reply_id,
                    result,
                }) => {
                    // QEMU always echoes the id; accept a reply without
                    // one rather than hang on a peer that does not.
                    if reply_id.as_ref().is_some_and(|r| r.as_u64() != Some(id)) {
                        tracing::debug!(socket = %self.socket.display(), ?reply_id, "skipping a stale QMP reply");
                        continue;
                    }
                    return result.map_err(|(class, desc)| QmpError::Command {
                        socket: self.socket.clone(),
                        command: C::NAME,
                        class,
                        desc,
                    });
                }
                Read::Message(Message::Event(event)) => self.push_event(event),
                Read::Message(Message::Greeting(_) | Message::Other) => {}
                Read::Eof => {
                    return Err(self.closed(&format!("waiting for the reply to `{}`", C::NAME)));
                }
                Read::TimedOut => {
                    return Err(QmpError::Timeout {
                        socket: self.socket.clone(),
                        what: format!("`{}`", C::NAME),
                        after: timeout,
                    });
                }
            }
        }
    }

    fn push_event(&mut self, event: QmpEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    async fn read_message(&mut self, deadline: Instant) -> Result<Read, QmpError> {
        loop {
            let line = match timeout_at(deadline, self.read_line()).await {
                Err(_) => return Ok(Read::TimedOut),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(None)) => return Ok(Read::Eof),
                Ok(Ok(Some(line))) => line,
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return self.parse(&line).map(Read::Message);
        }
    }

    /// One line without its newline; `None` at end of stream. Cancel-safe:
    /// bytes read so far stay in `self.partial`.
    async fn read_line(&mut self) -> Result<Option<Vec<u8>>, QmpError> {
        loop {
            let buf = match self.reader.fill_buf().await {
                Ok(buf) => buf,
                // A reset is QEMU going away with our bytes unread.
                Err(e) if is_disconnect(&e) => &[],
                Err(e) => {
                    return Err(QmpError::Io {
                        socket: self.socket.clone(),
                        source: e,
                    });
                }
            };
            if buf.is_empty() {
                // A line cut off by the peer's exit is of no use.
                self.partial.clear();
                return Ok(None);
            }
            let (taken, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (buf.len(), false),
            };
            self.partial.extend_from_slice(&buf[..taken]);
            self.reader.consume(taken);
            if self.partial.len() > MAX_LINE {
                self.poisoned = true;
                self.partial.clear();
                return Err(QmpError::LineTooLong {
                    socket: self.socket.clone(),
                    limit: MAX_LINE,
                });
            }
            if done {
                return Ok(Some(std::mem::take(&mut self.partial)));
            }
        }
    }

    fn parse(&self, line: &[u8]) -> Result<Message, QmpError> {
        let value: Value = serde_json::from_slice(line).map_err(|e| QmpError::Malformed {
            socket: self.socket.clone(),
            line: quote(line),
            source: e,
        })?;
        let Value::Object(mut object) = value else {
            return Err(self.protocol(format!("a message that is not an object: {}", quote(line))));
        };
        if let Some(Value::String(name)) = object.get("event") {
            let name = name.clone();
            let data = object.get("data").cloned().unwrap_or(Value::Null);
            let known = serde_json::from_value::<qmp::Event>(Value::Object(object))
                .ok()
                .map(Box::new);
            if known.is_none() {
                tracing::debug!(socket = %self.socket.display(), event = %name, "QMP event unknown to qapi; kept untyped");
            }
            return Ok(Message::Event(QmpEvent { name, data, known }));
        }
        let id = object.remove("id");
        if let Some(result) = take_reply(&mut object) {
            return Ok(Message::Reply { id, result });
        }
        if let Some(Value::Object(greeting)) = object.remove("QMP") {
            return Ok(Message::Greeting(greeting));
        }
        tracing::debug!(socket = %self.socket.display(), message = %quote(line), "skipping an unknown QMP message");
        Ok(Message::Other)
    }

    fn protocol(&self, detail: String) -> QmpError {
        QmpError::Protocol {
            socket: self.socket.clone(),
            detail,
        }
    }

    fn closed(&self, during: &str) -> QmpError {
        QmpError::Closed {
            socket: self.socket.clone(),
            during: during.to_string(),
        }
    }
}

fn version(greeting: &Map<String, Value>) -> Option<QemuVersion> {
    let qemu = greeting.get("version")?.get("qemu")?;
    let part = |key: &str| qemu.get(key).and_then(Value::as_i64);
    Some(QemuVersion {
        major: part("major")?,
        minor: part("minor")?,
        micro: part("micro")?,
    })
}

/// How [`graceful_stop`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// The guest acted on the power button and QEMU exited (or reported
    /// SHUTDOWN) this long after `system_powerdown`.
    PoweredDown { after: Duration },
    /// QEMU was told to `quit` and exited.
    Forced { reason: ForceReason },
    /// No QEMU listened on the socket.
    NotRunning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceReason {
    /// The guest did not power off within the timeout.
    IgnoredPowerdown(Duration),
    /// The VM was in a state where the guest cannot act on the power
    /// button (the `query-status` string, e.g. "internal-error").
    State(String),
}

impl fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopOutcome::PoweredDown { after } => write!(f, "powered down after {}", secs(*after)),
            StopOutcome::Forced {
                reason: ForceReason::IgnoredPowerdown(waited),
            } => write!(f, "guest ignored powerdown for {}; quit", secs(*waited)),
            StopOutcome::Forced {
                reason: ForceReason::State(status),
            } => write!(f, "guest could not power down (status {status}); quit"),
            StopOutcome::NotRunning => f.write_str("not running"),
        }
    }
}

/// Stops the QEMU behind `socket` the way a host shutdown should: press
/// the power button, wait up to `timeout` for the guest to power off, then
/// `quit`. A paused VM is resumed first and a suspended one woken, so its
/// guest can shut down cleanly; a VM the guest cannot act in (prelaunch,
/// io-error, internal-error, ...) is quit at once. Returns once QEMU closed
/// the socket, i.e. it is exiting.
pub async fn graceful_stop(socket: &Path, timeout: Duration) -> Result<StopOutcome, QmpError> {
    let mut qmp = match Qmp::connect(socket).await {
        Ok(qmp) => qmp,
        // Closed during the handshake: QEMU accepted and then exited.
        Err(e) if e.is_gone() => return Ok(StopOutcome::NotRunning),
        Err(e) => return Err(e),
    };
    let state = match qmp.query_status().await {
        Ok(state) => state,
        Err(e) if e.is_gone() => return Ok(StopOutcome::NotRunning),
        Err(e) => return Err(e),
    };
    let woken = match state.status.as_str() {
        "running" => Ok(()),
        "paused" => qmp.resume().await,
        "suspended" => qmp.execute_value(qmp::system_wakeup {}).await.map(drop),
        // The guest already powered off; QEMU runs with -no-shutdown.
        "shutdown" => {
            finish(&mut qmp).await?;
            return Ok(StopOutcome::PoweredDown {
                after: Duration::ZERO,
            });
        }
        other => {
            let reason = ForceReason::State(other.to_string());
            finish(&mut qmp).await?;
            return Ok(StopOutcome::Forced { reason });
        }
    };
    match woken {
        Ok(()) => {}
        Err(e) if e.is_gone() => return Ok(StopOutcome::NotRunning),
        Err(e) => return Err(e),
    }

    let pressed = Instant::now();
    match qmp.powerdown().await {
        Ok(()) => {}
        Err(e) if e.is_gone() => {
            return Ok(StopOutcome::PoweredDown {
                after: pressed.elapsed(),
            });
        }
        Err(e) => return Err(e),
    }
    let deadline = pressed + timeout;
    loop {
        match qmp.wait_event(deadline).await? {
            Wait::Closed => {
                return Ok(StopOutcome::PoweredDown {
                    after: pressed.elapsed(),
                });
            }
            Wait::Event(event) if event.name == "SHUTDOWN" => {
                let after = pressed.elapsed();
                if !qmp.wait_closed(EXIT_AFTER_SHUTDOWN).await? {
                    finish(&mut qmp).await?;
                }
                return Ok(StopOutcome::PoweredDown { after });
            }
            Wait::Event(_) => {}
            Wait::TimedOut => {
                finish(&mut qmp).await?;
                return Ok(StopOutcome::Forced {
                    reason: ForceReason::IgnoredPowerdown(timeout),
                });
            }
        }
    }
}

/// `quit` and wait for QEMU to close the socket.
async fn finish(qmp: &mut Qmp) -> Result<(), QmpError> {
    qmp.quit().await?;
    if qmp.wait_closed(QUIT_TIMEOUT).await? {
        Ok(())
    } else {
        Err(QmpError::StillRunning {
            socket: qmp.socket.clone(),
            after: QUIT_TIMEOUT,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    //! The parser driven from raw QMP bytes over an in-memory duplex pipe:
    //! each test writes the lines a QEMU could send and checks what the
    //! client makes of them. Behaviour against a real QEMU is covered by
    //! `hostd/tests/qmp_guest.rs`.

    use super::*;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}"#;
    const LABEL: &str = "/run/horcrux/vm/test/qmp.sock";
    const SHORT: Duration = Duration::from_secs(5);

    /// The QEMU end of the pipe: writes raw lines, reads the client's.
    struct Peer {
        read: BufReader<ReadHalf<DuplexStream>>,
        write: WriteHalf<DuplexStream>,
        /// Our client numbers every command; qapi's does not.
        expect_id: bool,
    }

    impl Peer {
        async fn send(&mut self, line: &str) {
            self.write.write_all(line.as_bytes()).await.unwrap();
            self.write.write_all(b"\r\n").await.unwrap();
        }

        /// The next command the client sent; checks it is well-formed.
        async fn command(&mut self, name: &str) -> Value {
            let mut line = String::new();
            self.read.read_line(&mut line).await.unwrap();
            let command: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(command["execute"], name, "{line}");
            assert_eq!(command["id"].is_u64(), self.expect_id, "{line}");
            command["id"].clone()
        }

        /// Replies as QEMU does: with the command's `id`, if it had one.
        async fn reply(&mut self, id: &Value, value: &str) {
            if id.is_null() {
                self.send(&format!(r#"{{"return": {value}}}"#)).await;
            } else {
                self.send(&format!(r#"{{"return": {value}, "id": {id}}}"#))
                    .await;
            }
        }

        async fn greet(&mut self) {
            self.send(GREETING).await;
            let id = self.command("qmp_capabilities").await;
            self.reply(&id, "{}").await;
        }
    }

    fn pipe() -> (DuplexStream, Peer) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (read, write) = tokio::io::split(server);
        let peer = Peer {
            read: BufReader::new(read),
            write,
            expect_id: true,
        };
        (client, peer)
    }

    async fn connected() -> (Qmp, Peer) {
        let (client, mut peer) = pipe();
        let (qmp, ()) = tokio::join!(
            Qmp::from_stream(client, Path::new(LABEL), SHORT),
            peer.greet()
        );
        (qmp.unwrap(), peer)
    }

    /// Why this module has its own wire loop: qapi 0.15's stream ends on
    /// an event its schema does not know, failing the command in flight.
    /// If a qapi upgrade makes this fail, its stream may be usable again.
    #[tokio::test]
    async fn qapi_stream_dies_on_unknown_event() {
        let (client, mut peer) = pipe();
        peer.expect_id = false;
        let server = tokio::spawn(async move {
            peer.greet().await;
            // A known event first: qapi copes.
            let id = peer.command("query-status").await;
            peer.send(r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 1}}"#)
                .await;
            peer.reply(&id, r#"{"status": "paused", "running": false}"#)
                .await;
            // The same exchange with an event unknown to qapi's schema.
            let id = peer.command("query-status").await;
            peer.send(r#"{"event": "HORCRUX_FUTURE_EVENT", "data": {"x": 1}, "timestamp": {"seconds": 1, "microseconds": 2}}"#).await;
            peer.reply(&id, r#"{"status": "running", "running": true}"#)
                .await;
            peer
        });
        let negotiation = qapi::futures::QmpStreamTokio::open(client).await.unwrap();
        let mut stream = negotiation.negotiate().await.unwrap();
        let first = tokio::time::timeout(SHORT, stream.execute(qmp::query_status {}))
            .await
            .unwrap();
        assert_eq!(first.unwrap().status, qmp::RunState::paused);
        let second = tokio::time::timeout(SHORT, stream.execute(qmp::query_status {}))
            .await
            .unwrap();
        let error = second.expect_err("qapi decoded past an unknown event");
        assert!(
            error.to_string().contains("did not match any variant"),
            "{error}"
        );
        drop(server.await.unwrap());
    }

    #[tokio::test]
    async fn unknown_event_is_kept_and_the_connection_lives_on() {
        let (mut qmp, mut peer) = connected().await;
        assert_eq!(
            qmp.version(),
            Some(QemuVersion {
                major: 7,
                minor: 2,
                micro: 0
            })
        );
        let script = async {
            let id = peer.command("query-status").await;
            peer.send(r#"{"event": "HORCRUX_FUTURE_EVENT", "data": {"x": [1, 2]}, "timestamp": {"seconds": 1, "microseconds": 2}}"#).await;
            // A known event with a value newer than qapi's schema.
            peer.send(r#"{"event": "SHUTDOWN", "data": {"guest": true, "reason": "horcrux-future-reason"}, "timestamp": {"seconds": 1, "microseconds": 3}}"#).await;
            peer.send(r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 4}}"#)
                .await;
            // An unknown kind of message and unknown fields in the reply.
            peer.send(r#"{"horcrux-future-message": true}"#).await;
            peer.reply(
                &id,
                r#"{"status": "paused", "running": false, "singlestep": false, "new-field": [1]}"#,
            )
            .await;
            let id = peer.command("cont").await;
            peer.reply(&id, "{}").await;
        };
        let (status, ()) = tokio::join!(
            async {
                let status = qmp.query_status().await.unwrap();
                qmp.resume().await.unwrap();
                status
            },
            script
        );
        assert_eq!(
            status,
            RunState {
                status: "paused".to_string(),
                running: false
            }
        );
        let events = qmp.take_events();
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["HORCRUX_FUTURE_EVENT", "SHUTDOWN", "STOP"]);
        assert!(events[0].known.is_none());
        assert_eq!(events[0].data["x"][1], 2);
        assert!(events[1].known.is_none(), "new SHUTDOWN reason");
        assert_eq!(events[1].data["reason"], "horcrux-future-reason");
        assert!(matches!(
            events[2].known.as_deref(),
            Some(qmp::Event::STOP { .. })
        ));
    }

    #[tokio::test]
    async fn unknown_run_state_is_reported_as_is() {
        let (mut qmp, mut peer) = connected().await;
        let script = async {
            let id = peer.command("query-status").await;
            peer.reply(
                &id,
                r#"{"status": "horcrux-future-state", "running": false}"#,
            )
            .await;
        };
        let (status, ()) = tokio::join!(qmp.query_status(), script);
        assert_eq!(status.unwrap().status, "horcrux-future-state");
    }

    #[tokio::test]
    async fn error_reply_names_socket_and_command_and_keeps_the_connection() {
        let (mut qmp, mut peer) = connected().await;
        let script = async {
            let id = peer.command("cont").await;
            peer.send(&format!(r#"{{"error": {{"class": "HorcruxFutureClass", "desc": "cannot resume"}}, "id": {id}}}"#)).await;
            let id = peer.command("stop").await;
            peer.reply(&id, "{}").await;
        };
        let (results, ()) = tokio::join!(async { (qmp.resume().await, qmp.pause().await) }, script);
        let error = results.0.unwrap_err();
        assert!(
            matches!(&error, QmpError::Command { command: "cont", class, .. } if class == "HorcruxFutureClass")
        );
        assert_eq!(
            error.to_string(),
            format!("QMP {LABEL}: `cont` failed: HorcruxFutureClass: cannot resume")
        );
        results.1.unwrap();
    }

    #[tokio::test]
    async fn stale_reply_is_not_taken_for_the_current_one() {
        let (mut qmp, mut peer) = connected().await;
        let script = async {
            let id = peer.command("query-status").await;
            let stale = id.as_u64().unwrap() + 1000;
            peer.send(&format!(
                r#"{{"return": {{"status": "paused", "running": false}}, "id": {stale}}}"#
            ))
            .await;
            peer.reply(&id, r#"{"status": "running", "running": true}"#)
                .await;
        };
        let (status, ()) = tokio::join!(qmp.query_status(), script);
        assert_eq!(status.unwrap().status, "running");
    }

    #[tokio::test]
    async fn garbage_is_an_error_naming_the_socket() {
        let (mut qmp, mut peer) = connected().await;
        let script = async {
            peer.command("query-status").await;
            peer.send("\u{1}not json at all").await;
        };
        let (result, ()) = tokio::join!(qmp.query_status(), script);
        let error = result.unwrap_err();
        assert!(matches!(error, QmpError::Malformed { .. }), "{error:?}");
        assert!(error.to_string().contains(LABEL), "{error}");
    }

    #[tokio::test]
    async fn reply_of_the_wrong_shape_is_an_error() {
        let (mut qmp, mut peer) = connected().await;
        let script = async {
            let id = peer.command("query-status").await;
            peer.reply(&id, r#"{"status": 7}"#).await;
        };
        let (result, ()) = tokio::join!(qmp.query_status(), script);
        assert!(
            matches!(result, Err(QmpError::Protocol { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn endless_line_is_refused_not_buffered() {
        let (mut qmp, mut peer) = connected().await;
        let flood = tokio::spawn(async move {
            peer.command("query-status").await;
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..=MAX_LINE >> 20 {
                peer.write.write_all(&chunk).await.unwrap();
            }
        });
        let result = qmp.query_status().await;
        assert!(
            matches!(result, Err(QmpError::LineTooLong { .. })),
            "{result:?}"
        );
        // The client stopped reading, so the rest of the flood never drains.
        flood.abort();
        assert!(matches!(qmp.pause().await, Err(QmpError::Poisoned { .. })));
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let (client, _peer) = pipe();
        let started = std::time::Instant::now();
        let result = Qmp::from_stream(client, Path::new(LABEL), Duration::from_millis(200)).await;
        assert!(
            matches!(result, Err(QmpError::Timeout { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < SHORT);
    }

    #[tokio::test]
    async fn command_timeout_leaves_the_connection_usable() {
        let (mut qmp, mut peer) = connected().await;
        qmp.set_command_timeout(Duration::from_millis(200));
        let first = async {
            let result = qmp.query_status().await;
            assert!(
                matches!(result, Err(QmpError::Timeout { .. })),
                "{result:?}"
            );
        };
        let (_, stale_id) = tokio::join!(first, peer.command("query-status"));
        // The late answer to the first command, then the second one's.
        peer.reply(&stale_id, r#"{"status": "paused", "running": false}"#)
            .await;
        let script = async {
            let id = peer.command("query-status").await;
            peer.reply(&id, r#"{"status": "running", "running": true}"#)
                .await;
        };
        let (status, ()) = tokio::join!(qmp.query_status(), script);
        assert_eq!(status.unwrap().status, "running");
    }

    #[tokio::test]
    async fn eof_mid_command_is_closed() {
        let (mut qmp, mut peer) = connected().await;
        let script = async move {
            peer.command("quit").await;
            drop(peer);
        };
        let (result, ()) = tokio::join!(qmp.execute_value(qmp::quit {}), script);
        assert!(matches!(result, Err(QmpError::Closed { .. })), "{result:?}");
    }

    #[tokio::test]
    async fn graceful_stop_without_qemu_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.sock");
        assert_eq!(
            graceful_stop(&missing, SHORT).await.unwrap(),
            StopOutcome::NotRunning
        );
        // A socket file left behind by a QEMU that died.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        assert_eq!(
            graceful_stop(&stale, SHORT).await.unwrap(),
            StopOutcome::NotRunning
        );
    }

    #[tokio::test]
    async fn listener_that_never_greets_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mute.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let result = Qmp::connect_timeout(&path, Duration::from_millis(300)).await;
        let error = result.unwrap_err();
        assert!(matches!(error, QmpError::Timeout { .. }), "{error:?}");
        assert!(error.to_string().contains("mute.sock"), "{error}");
    }

    #[test]
    fn outcomes_read_well() {
        let show = |o: StopOutcome| o.to_string();
        assert_eq!(
            show(StopOutcome::PoweredDown {
                after: Duration::from_millis(3240)
            }),
            "powered down after 3.2s"
        );
        assert_eq!(
            show(StopOutcome::Forced {
                reason: ForceReason::IgnoredPowerdown(Duration::from_secs(120))
            }),
            "guest ignored powerdown for 120s; quit"
        );
        assert_eq!(show(StopOutcome::NotRunning), "not running");
    }
}
