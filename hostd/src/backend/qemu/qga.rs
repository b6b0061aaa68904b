//! The QEMU guest agent: qemu-guest-agent inside the VM, reached through
//! the virtio-serial port every VM has (`argv::guest_agent`), whose host
//! end is `qga.sock` in the VM's run dir. hostd uses it for one thing:
//! freezing the guest's filesystems around a snapshot ([`frozen`]), so
//! the snapshot is application-consistent (flushed, quiesced, with the
//! guest's fsfreeze hooks run) instead of crash-consistent (what a power
//! cut leaves).
//!
//! The protocol is newline-delimited JSON, one request then one reply.
//! Unlike QMP there is no greeting, and the agent is often simply absent:
//! QEMU's end of the channel accepts connections whether or not anything
//! runs in the guest, so "no agent" only shows as silence. A session
//! therefore starts with `guest-sync-delimited`: the agent echoes a random
//! id behind a 0xFF byte, and everything before that reply (output of an
//! earlier session still in the channel, half-written lines) is
//! discarded. The request is itself preceded by 0xFF, which makes the
//! agent's JSON parser drop whatever partial request an earlier client
//! left in it. No answer within the caller's timeout means no agent:
//! [`GuestAgent::connect`] returns `Ok(None)` and snapshots go on
//! crash-consistent.
//!
//! Everything the agent sends is guest-controlled input: lines are
//! bounded ([`MAX_LINE`]), malformed or error replies are errors, every
//! wait has a deadline, and nothing here panics on what comes back.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, timeout_at};

use super::wire::{is_disconnect, quote, secs, take_reply};

/// How long an ordinary command (status, thaw, ping) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `guest-fsfreeze-freeze` may take: the guest flushes its dirty
/// pages and runs its fsfreeze hooks (which may quiesce a database) first,
/// which takes seconds on a busy guest.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest reply accepted. The agent's replies hostd asks for are a
/// few dozen bytes; this only bounds what a misbehaving guest can make
/// hostd buffer.
pub const MAX_LINE: usize = 64 << 10;

/// The byte the agent sends before its `guest-sync-delimited` reply, and
/// that resets the agent's parser when sent to it. Never valid in JSON.
const SENTINEL: u8 = 0xFF;

#[derive(Debug, thiserror::Error)]
pub enum QgaError {
    /// Connecting failed for a reason other than nobody listening
    /// (e.g. permissions): something is wrong on the host.
    #[error("cannot connect to guest agent socket {}: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("guest agent {}: {source}", socket.display())]
    Io {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("guest agent {}: {what}: no answer within {}", socket.display(), secs(*after))]
    Timeout {
        socket: PathBuf,
        what: String,
        after: Duration,
    },
    /// The channel closed: QEMU exited, or it dropped us.
    #[error("guest agent {}: connection closed {during}", socket.display())]
    Closed { socket: PathBuf, during: String },
    #[error("guest agent {}: a reply longer than {limit} bytes", socket.display())]
    LineTooLong { socket: PathBuf, limit: usize },
    #[error("guest agent {}: not JSON ({source}): {line}", socket.display())]
    Malformed {
        socket: PathBuf,
        line: String,
        #[source]
        source: serde_json::Error,
    },
    /// Valid JSON of the wrong shape.
    #[error("guest agent {}: {detail}", socket.display())]
    Protocol { socket: PathBuf, detail: String },
    /// The agent answered with an error (e.g. `CommandNotFound` for an RPC
    /// the guest disabled with `--block-rpcs`).
    #[error("guest agent {}: `{command}` failed: {class}: {desc}", socket.display())]
    Command {
        socket: PathBuf,
        command: &'static str,
        class: String,
        desc: String,
    },
}

/// A synchronised session with a guest agent. One command at a time: the
/// agent answers in order, and each reply is matched to its request by id.
pub struct GuestAgent {
    socket: PathBuf,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Bytes of a line not yet terminated: kept here, not in a local, so a
    /// read cancelled by its deadline loses nothing.
    partial: Vec<u8>,
    /// The rest of an over-long line is being discarded.
    skipping: bool,
    /// An earlier command timed out or its reply was unreadable, so its
    /// reply may still be on its way: synchronise again before the next.
    desynced: bool,
    next_id: u64,
    command_timeout: Duration,
    freeze_timeout: Duration,
}

impl fmt::Debug for GuestAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestAgent")
            .field("socket", &self.socket)
            .field("desynced", &self.desynced)
            .finish_non_exhaustive()
    }
}

enum Line {
    Text(Vec<u8>),
    /// A line over [`MAX_LINE`]; its rest is skipped by later reads.
    TooLong,
    Eof,
}

/// How a `guest-sync-delimited` exchange ended (errors aside).
enum Synced {
    Done,
    /// No answer before the deadline.
    Silent,
    /// The channel closed.
    Closed,
}

enum Reply {
    Return {
        id: Option<Value>,
        value: Value,
    },
    Error {
        id: Option<Value>,
        class: String,
        desc: String,
    },
}

impl GuestAgent {
    /// Connects to the agent behind `socket` and synchronises, all within
    /// `timeout`. `Ok(None)` when no agent is there: the socket is missing
    /// (VM not running), nobody accepts on it, or nothing answered the
    /// sync (no agent installed or running in the guest). An error only
    /// when something answered wrongly or the host refused the connection.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Option<GuestAgent>, QgaError> {
        let deadline = Instant::now() + timeout;
        let stream = match timeout_at(deadline, UnixStream::connect(socket)).await {
            Err(_) => return Ok(None),
            // A stale socket file left by a dead QEMU refuses connections.
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Ok(Err(e)) => {
                return Err(QgaError::Connect {
                    socket: socket.to_path_buf(),
                    source: e,
                });
            }
            Ok(Ok(stream)) => stream,
        };
        let (read, write) = stream.into_split();
        let mut agent = GuestAgent {
            socket: socket.to_path_buf(),
            reader: BufReader::new(read),
            writer: write,
            partial: Vec::new(),
            skipping: false,
            desynced: true,
            next_id: 1,
            command_timeout: COMMAND_TIMEOUT,
            freeze_timeout: FREEZE_TIMEOUT,
        };
        match agent.sync(deadline).await? {
            Synced::Done => Ok(Some(agent)),
            Synced::Silent | Synced::Closed => Ok(None),
        }
    }

    /// The socket this session was opened on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// How long each later command may take (default [`COMMAND_TIMEOUT`]).
    pub fn set_command_timeout(&mut self, timeout: Duration) {
        self.command_timeout = timeout;
    }

    /// How long a freeze may take (default [`FREEZE_TIMEOUT`]).
    pub fn set_freeze_timeout(&mut self, timeout: Duration) {
        self.freeze_timeout = timeout;
    }

    /// `guest-ping`: the agent is alive.
    pub async fn ping(&mut self) -> Result<(), QgaError> {
        self.execute("guest-ping", self.command_timeout)
            .await
            .map(drop)
    }

    /// `guest-fsfreeze-freeze`: flushes and freezes every freezable
    /// filesystem of the guest; returns how many. On failure the agent
    /// thaws what it had frozen, but a freeze that timed out may still
    /// complete: callers thaw after any freeze attempt.
    pub async fn freeze(&mut self) -> Result<u64, QgaError> {
        const COMMAND: &str = "guest-fsfreeze-freeze";
        let value = self.execute(COMMAND, self.freeze_timeout).await?;
        self.count(COMMAND, &value)
    }

    /// `guest-fsfreeze-thaw`: thaws the guest's filesystems; returns how
    /// many were frozen (0 when none was).
    pub async fn thaw(&mut self) -> Result<u64, QgaError> {
        const COMMAND: &str = "guest-fsfreeze-thaw";
        let value = self.execute(COMMAND, self.command_timeout).await?;
        self.count(COMMAND, &value)
    }

    /// `guest-fsfreeze-status`: "thawed" or "frozen" (kept as the agent's
    /// string, so a state added later is shown rather than refused).
    pub async fn fsfreeze_status(&mut self) -> Result<String, QgaError> {
        const COMMAND: &str = "guest-fsfreeze-status";
        match self.execute(COMMAND, self.command_timeout).await? {
            Value::String(status) => Ok(status),
            other => Err(self.protocol(format!(
                "`{COMMAND}` returned {}, not a string",
                quote(other.to_string().as_bytes())
            ))),
        }
    }

    fn count(&self, command: &str, value: &Value) -> Result<u64, QgaError> {
        value.as_u64().ok_or_else(|| {
            self.protocol(format!(
                "`{command}` returned {}, not a count",
                quote(value.to_string().as_bytes())
            ))
        })
    }

    /// Sends `guest-sync-delimited` with a fresh random id and discards
    /// everything until its reply.
    async fn sync(&mut self, deadline: Instant) -> Result<Synced, QgaError> {
        const COMMAND: &str = "guest-sync-delimited";
        let id = random_id();
        let request = json!({"execute": COMMAND, "arguments": {"id": id}, "id": id});
        let mut line = vec![SENTINEL];
        line.extend_from_slice(request.to_string().as_bytes());
        line.push(b'\n');
        let write = async {
            self.writer.write_all(&line).await?;
            self.writer.flush().await
        };
        match timeout_at(deadline, write).await {
            Ok(Ok(())) => {}
            // The channel is full: nobody reads it.
            Err(_) => return Ok(Synced::Silent),
            Ok(Err(e)) if is_disconnect(&e) => return Ok(Synced::Closed),
            Ok(Err(e)) => return Err(self.io(e)),
        }
        loop {
            let line = match timeout_at(deadline, self.read_line()).await {
                Err(_) => return Ok(Synced::Silent),
                Ok(result) => result?,
            };
            let line = match line {
                Line::Eof => return Ok(Synced::Closed),
                // Leftovers, whatever their length, are not ours.
                Line::TooLong => continue,
                Line::Text(line) => line,
            };
            match self.parse(&line) {
                Ok(Reply::Return { value, .. }) if value.as_u64() == Some(u64::from(id)) => {
                    self.desynced = false;
                    return Ok(Synced::Done);
                }
                // Only an error carrying our id is the answer to this sync
                // (the agent refuses it, e.g. blocked with --block-rpcs);
                // errors without it are leftovers, or the agent's parser
                // complaining about the reset byte.
                Ok(Reply::Error {
                    id: Some(reply_id),
                    class,
                    desc,
                }) if reply_id.as_u64() == Some(u64::from(id)) => {
                    return Err(QgaError::Command {
                        socket: self.socket.clone(),
                        command: COMMAND,
                        class,
                        desc,
                    });
                }
                _ => {
                    tracing::debug!(socket = %self.socket.display(), line = %quote(&line), "discarding a leftover guest agent line");
                }
            }
        }
    }

    /// Runs `command` (no arguments) and returns its `return` value.
    async fn execute(
        &mut self,
        command: &'static str,
        timeout: Duration,
    ) -> Result<Value, QgaError> {
        let deadline = Instant::now() + timeout;
        if self.desynced {
            match self.sync(deadline).await? {
                Synced::Done => {}
                Synced::Silent => {
                    return Err(self.timeout(
                        format!("synchronising before `{command}` (after an earlier failure)"),
                        timeout,
                    ));
                }
                Synced::Closed => {
                    return Err(self.closed(&format!("synchronising before `{command}`")));
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        // The agent echoes `id`, so a late reply to a command that timed
        // out is never taken for the answer to this one.
        let mut line = json!({"execute": command, "id": id})
            .to_string()
            .into_bytes();
        line.push(b'\n');
        let write = async {
            self.writer.write_all(&line).await?;
            self.writer.flush().await
        };
        match timeout_at(deadline, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if is_disconnect(&e) => {
                return Err(self.closed(&format!("while sending `{command}`")));
            }
            Ok(Err(e)) => {
                self.desynced = true;
                return Err(self.io(e));
            }
            Err(_) => {
                // Part of the request may be in the agent's parser; the
                // next sync's reset byte clears it.
                self.desynced = true;
                return Err(self.timeout(format!("sending `{command}`"), timeout));
            }
        }
        loop {
            let line = match timeout_at(deadline, self.read_line()).await {
                Err(_) => {
                    self.desynced = true;
                    return Err(self.timeout(format!("`{command}`"), timeout));
                }
                Ok(Err(e)) => {
                    self.desynced = true;
                    return Err(e);
                }
                Ok(Ok(Line::Eof)) => {
                    return Err(self.closed(&format!("waiting for the reply to `{command}`")));
                }
                Ok(Ok(Line::TooLong)) => {
                    self.desynced = true;
                    return Err(QgaError::LineTooLong {
                        socket: self.socket.clone(),
                        limit: MAX_LINE,
                    });
                }
                Ok(Ok(Line::Text(line))) => line,
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let reply = match self.parse(&line) {
                Ok(reply) => reply,
                Err(e) => {
                    // The reply to this command may still follow.
                    self.desynced = true;
                    return Err(e);
                }
            };
            let (Reply::Return { id: reply_id, .. } | Reply::Error { id: reply_id, .. }) = &reply;
            // The agent always echoes the id; accept a reply without one
            // rather than hang on an agent that does not.
            if reply_id.as_ref().is_some_and(|r| r.as_u64() != Some(id)) {
                tracing::debug!(socket = %self.socket.display(), ?reply_id, "skipping a stale guest agent reply");
                continue;
            }
            return match reply {
                Reply::Return { value, .. } => Ok(value),
                Reply::Error { class, desc, .. } => Err(QgaError::Command {
                    socket: self.socket.clone(),
                    command,
                    class,
                    desc,
                }),
            };
        }
    }

    /// One line without its newline. A [`SENTINEL`] byte starts a new line
    /// (what came before it is dropped). Cancel-safe: bytes read so far
    /// stay in `self.partial`.
    async fn read_line(&mut self) -> Result<Line, QgaError> {
        loop {
            let buf = match self.reader.fill_buf().await {
                Ok(buf) => buf,
                // A reset is QEMU going away with our bytes unread.
                Err(e) if is_disconnect(&e) => &[],
                Err(e) => return Err(self.io(e)),
            };
            if buf.is_empty() {
                // A line cut off by the peer's exit is of no use.
                self.partial.clear();
                self.skipping = false;
                return Ok(Line::Eof);
            }
            let stop = buf.iter().position(|&b| b == b'\n' || b == SENTINEL);
            let end = stop.map(|at| buf[at]);
            let taken = stop.map_or(buf.len(), |at| at + 1);
            if !self.skipping {
                self.partial
                    .extend_from_slice(&buf[..stop.unwrap_or(buf.len())]);
            }
            self.reader.consume(taken);
            if end == Some(SENTINEL) {
                self.partial.clear();
                self.skipping = false;
                continue;
            }
            if self.partial.len() > MAX_LINE {
                self.partial.clear();
                // Without its newline yet, the rest of the line is still
                // coming and must not be read as a line of its own.
                self.skipping = end.is_none();
                return Ok(Line::TooLong);
            }
            if end == Some(b'\n') {
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                return Ok(Line::Text(std::mem::take(&mut self.partial)));
            }
        }
    }

    fn parse(&self, line: &[u8]) -> Result<Reply, QgaError> {
        let value: Value = serde_json::from_slice(line).map_err(|e| QgaError::Malformed {
            socket: self.socket.clone(),
            line: quote(line),
            source: e,
        })?;
        let Value::Object(mut object) = value else {
            return Err(self.protocol(format!("a reply that is not an object: {}", quote(line))));
        };
        let id = object.remove("id");
        match take_reply(&mut object) {
            Some(Ok(value)) => return Ok(Reply::Return { id, value }),
            Some(Err((class, desc))) => return Ok(Reply::Error { id, class, desc }),
            None => {}
        }
        Err(self.protocol(format!(
            "a reply with neither `return` nor `error`: {}",
            quote(line)
        )))
    }

    fn protocol(&self, detail: String) -> QgaError {
        QgaError::Protocol {
            socket: self.socket.clone(),
            detail,
        }
    }

    fn closed(&self, during: &str) -> QgaError {
        QgaError::Closed {
            socket: self.socket.clone(),
            during: during.to_string(),
        }
    }

    fn timeout(&self, what: String, after: Duration) -> QgaError {
        QgaError::Timeout {
            socket: self.socket.clone(),
            what,
            after,
        }
    }

    fn io(&self, source: io::Error) -> QgaError {
        QgaError::Io {
            socket: self.socket.clone(),
            source,
        }
    }
}

/// What a snapshot taken inside [`frozen`] is consistent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consistency {
    /// The guest agent flushed and froze the guest's filesystems while the
    /// work ran: what the guest had written is on disk, as after a clean
    /// unmount, and its fsfreeze hooks (databases) had quiesced.
    Application,
    /// The work ran without the guest's help: the snapshot holds what a
    /// power cut would leave (journaled filesystems and databases recover
    /// from that, losing recent writes).
    CrashOnly { reason: String },
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consistency::Application => f.write_str("application-consistent"),
            Consistency::CrashOnly { reason } => write!(f, "crash-consistent ({reason})"),
        }
    }
}

/// How a [`frozen_report`] run went, for status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeReport {
    pub consistency: Consistency,
    /// How many guest filesystems were frozen (0 unless `Application`).
    pub filesystems: u64,
    /// Set when the guest may still be frozen: thawing failed and the
    /// agent did not confirm "thawed". The guest's writes block until it
    /// is thawed ([`thaw_leftover`]); this needs an operator's attention.
    pub thaw_failed: Option<String>,
}

/// Runs `work` (taking a snapshot) with the guest's filesystems frozen
/// when its agent answers within `timeout`, and without otherwise; see
/// [`frozen_report`]. A failed thaw is logged as an error.
pub async fn frozen<T, F>(socket: &Path, timeout: Duration, work: F) -> (T, Consistency)
where
    F: Future<Output = T>,
{
    let (value, report) = frozen_report(socket, timeout, work).await;
    (value, report.consistency)
}

/// [`frozen`], reporting also how many filesystems were frozen and
/// whether the guest could be thawed.
///
/// `work` runs exactly once in every case: a missing agent or a failed
/// freeze only makes the result crash-consistent (the reason is reported
/// and logged). After any freeze attempt the guest is thawed, whatever
/// `work` returned; if this future is dropped or `work` panics while the
/// guest may be frozen, a background task thaws it.
pub async fn frozen_report<T, F>(socket: &Path, timeout: Duration, work: F) -> (T, FreezeReport)
where
    F: Future<Output = T>,
{
    let crash_only = |reason: String| FreezeReport {
        consistency: Consistency::CrashOnly { reason },
        filesystems: 0,
        thaw_failed: None,
    };
    let mut agent = match GuestAgent::connect(socket, timeout).await {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            let reason = format!("no guest agent answered within {}", secs(timeout));
            tracing::debug!(socket = %socket.display(), "{reason}; snapshot is crash-consistent");
            return (work.await, crash_only(reason));
        }
        Err(e) => {
            tracing::warn!(socket = %socket.display(), error = %e, "guest agent unusable; snapshot is crash-consistent");
            return (work.await, crash_only(format!("guest agent unusable: {e}")));
        }
    };
    // From the freeze request on, the guest may be frozen until thawed.
    // The guard's task runs only after this future's locals are dropped,
    // so `agent`'s session is closed by then (QEMU serves one client at a
    // time).
    let guard = ThawGuard {
        socket: Some(socket.to_path_buf()),
        timeout,
    };
    let (consistency, filesystems) = match agent.freeze().await {
        Ok(0) => (
            Consistency::CrashOnly {
                reason: "the guest agent froze no filesystems".to_string(),
            },
            0,
        ),
        Ok(filesystems) => (Consistency::Application, filesystems),
        Err(e) => {
            tracing::warn!(socket = %socket.display(), error = %e, "guest filesystems not frozen; snapshot is crash-consistent");
            let reason = format!("freezing failed: {e}");
            (Consistency::CrashOnly { reason }, 0)
        }
    };
    let value = work.await;
    let thaw_failed = thaw_confirmed(agent, timeout).await.err();
    guard.disarm();
    if let Some(why) = &thaw_failed {
        tracing::error!(socket = %socket.display(), "guest may still be frozen: {why}");
    }
    (
        value,
        FreezeReport {
            consistency,
            filesystems,
            thaw_failed,
        },
    )
}

/// Thaws after a freeze attempt; `Err` only when the guest may still be
/// frozen. A refused thaw is fine when the agent says it is thawed (the
/// freeze was refused too, or both RPCs are blocked in the guest).
async fn thaw_confirmed(mut agent: GuestAgent, timeout: Duration) -> Result<(), String> {
    let thaw_error = match agent.thaw().await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    match agent.fsfreeze_status().await {
        Ok(status) if status == "thawed" => return Ok(()),
        Ok(status) => {
            return Err(format!(
                "thawing failed ({thaw_error}); the agent reports `{status}`"
            ));
        }
        Err(e) => {
            tracing::debug!(error = %e, "guest agent session broken after a failed thaw; retrying on a new one");
        }
    }
    // The session may be broken (desynced, closed): one more try on a
    // fresh one, after closing this one, since QEMU serves one client at
    // a time.
    let socket = agent.socket.clone();
    drop(agent);
    match thaw_leftover(&socket, timeout).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!(
            "thawing failed ({thaw_error}); the agent no longer answers"
        )),
        Err(retry) => Err(format!("thawing failed ({thaw_error}); retry: {retry}")),
    }
}

/// Thaws the guest behind `socket` if its agent answers within `timeout`:
/// for a guest left frozen by an interrupted snapshot (hostd killed
/// between freeze and thaw). Linux guests stay frozen until thawed; the
/// agent has no timeout of its own. `Ok(None)`: no agent answered;
/// `Ok(Some(n))`: n filesystems thawed (0 when none was frozen).
pub async fn thaw_leftover(socket: &Path, timeout: Duration) -> Result<Option<u64>, QgaError> {
    let Some(mut agent) = GuestAgent::connect(socket, timeout).await? else {
        return Ok(None);
    };
    agent.set_command_timeout(timeout);
    agent.thaw().await.map(Some)
}

/// Thaws from a background task when [`frozen`] ends before its own thaw:
/// the future was dropped (a caller's timeout, shutdown) or `work`
/// panicked. A Linux guest would otherwise stay frozen, its writes
/// blocked, until someone thaws it by hand.
struct ThawGuard {
    socket: Option<PathBuf>,
    timeout: Duration,
}

impl ThawGuard {
    fn disarm(mut self) {
        self.socket = None;
    }
}

impl Drop for ThawGuard {
    fn drop(&mut self) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        let timeout = self.timeout;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(socket = %socket.display(), "snapshot interrupted while the guest may be frozen, and no runtime to thaw it");
            return;
        };
        tracing::warn!(socket = %socket.display(), "snapshot interrupted while the guest may be frozen; thawing");
        // The interrupted session is dropped right after this guard; its
        // close lets QEMU (one client at a time) accept the new one.
        runtime.spawn(async move {
            match thaw_leftover(&socket, timeout).await {
                Ok(Some(n)) => {
                    tracing::info!(socket = %socket.display(), thawed = n, "guest thawed after an interrupted snapshot");
                }
                Ok(None) => {
                    tracing::error!(socket = %socket.display(), "guest agent gone after an interrupted snapshot; the guest may still be frozen");
                }
                Err(e) => {
                    tracing::error!(socket = %socket.display(), error = %e, "cannot thaw the guest after an interrupted snapshot");
                }
            }
        });
    }
}

/// A sync id: random so that a reply to an earlier session's sync, still
/// in the channel, is never taken for this one. Not security-relevant, so
/// std's randomly keyed hasher is enough.
fn random_id() -> u32 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    // Truncation intended: the agent takes an int; 32 random bits do.
    hasher.finish() as u32
}

#[cfg(test)]
mod tests;
