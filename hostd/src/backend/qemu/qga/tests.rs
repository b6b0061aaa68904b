//! The guest agent client against the real `qemu-ga` (run on the host in
//! listen mode, with every RPC that could touch this machine blocked) and
//! against fake agents on real unix sockets that answer what a broken or
//! hostile guest could.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use super::*;

/// Waits that a passing test never reaches.
const LONG: Duration = Duration::from_secs(10);
/// Waits that a test expects to run out.
const SHORT: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------
// The real qemu-ga.

/// RPCs the agent must never run here: it believes this machine is its
/// guest, so a freeze would freeze the host's filesystems (and hang it),
/// and the others shut down, suspend or reconfigure it.
const BLOCKED: &str = "guest-fsfreeze-freeze,guest-fsfreeze-freeze-list,guest-fsfreeze-thaw,\
guest-shutdown,guest-suspend-disk,guest-suspend-ram,guest-suspend-hybrid,guest-set-time,\
guest-set-vcpus,guest-set-memory-blocks,guest-set-user-password,guest-exec,guest-fstrim,\
guest-file-open,guest-ssh-add-authorized-keys,guest-ssh-remove-authorized-keys";

/// A `qemu-ga` listening on a socket in a temporary directory; killed
/// when dropped.
struct RealAgent {
    dir: TempDir,
    socket: PathBuf,
    _child: tokio::process::Child,
}

impl RealAgent {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("qemu-ga.log")).unwrap_or_default()
    }
}

fn qemu_ga_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("qemu-ga"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "qemu-ga not found (PATH, /usr/sbin, /usr/bin): these tests run the real \
                 guest agent; install it with `apt-get install qemu-guest-agent` (.ci/run does)"
            )
        })
}

async fn real_agent() -> RealAgent {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    let arg = |key: &str, file: &str| format!("--{key}={}", dir.path().join(file).display());
    let mut child = tokio::process::Command::new(qemu_ga_binary())
        .arg("--method=unix-listen")
        .arg(format!("--path={}", socket.display()))
        .arg(arg("pidfile", "qemu-ga.pid"))
        .arg(arg("logfile", "qemu-ga.log"))
        .arg(format!("--statedir={}", dir.path().display()))
        .arg(format!("--block-rpcs={BLOCKED}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Ready once it accepts (the socket file exists a moment before).
    let deadline = Instant::now() + LONG;
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        let log = || std::fs::read_to_string(dir.path().join("qemu-ga.log")).unwrap_or_default();
        if let Some(status) = child.try_wait().unwrap() {
            panic!("qemu-ga exited with {status}: {}", log());
        }
        assert!(
            Instant::now() < deadline,
            "qemu-ga did not listen on {} within {LONG:?}: {}",
            socket.display(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    RealAgent {
        dir,
        socket,
        _child: child,
    }
}

async fn connected(socket: &Path) -> GuestAgent {
    GuestAgent::connect(socket, LONG)
        .await
        .unwrap()
        .expect("the agent answers the sync")
}

#[tokio::test]
async fn real_agent_syncs_and_reports_thawed() {
    let real = real_agent().await;
    let mut agent = connected(&real.socket).await;
    agent.ping().await.unwrap();
    assert_eq!(
        agent.fsfreeze_status().await.unwrap(),
        "thawed",
        "{}",
        real.log()
    );
    // Commands are matched by id; many in a row stay in step.
    for _ in 0..20 {
        assert_eq!(agent.fsfreeze_status().await.unwrap(), "thawed");
    }
}

#[tokio::test]
async fn real_agent_serves_a_new_session_after_a_half_written_request() {
    let real = real_agent().await;
    // An earlier client (a hostd killed mid-write) left half a request in
    // the agent's parser. (It leaves no unread reply: in listen mode,
    // qemu-ga exits when a client closes with replies unread, because
    // its read fails with ECONNRESET. In a guest it reads virtio-serial,
    // where the host closing its end is no error.)
    {
        let mut raw = tokio::net::UnixStream::connect(&real.socket).await.unwrap();
        raw.write_all(b"{\"execute\":\"guest-fsfreeze-st")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        let mut agent = connected(&real.socket).await;
        assert_eq!(agent.fsfreeze_status().await.unwrap(), "thawed");
    }
}

#[tokio::test]
async fn real_agent_refusing_freeze_is_a_command_error() {
    let real = real_agent().await;
    let mut agent = connected(&real.socket).await;
    let err = agent.freeze().await.unwrap_err();
    match &err {
        QgaError::Command { command, class, .. } => {
            assert_eq!(*command, "guest-fsfreeze-freeze");
            assert_eq!(class, "CommandNotFound");
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains(&real.socket.display().to_string()),
        "{err}"
    );
    // An error reply leaves the session in step.
    assert_eq!(agent.fsfreeze_status().await.unwrap(), "thawed");
}

#[tokio::test]
async fn frozen_runs_the_work_crash_consistent_when_the_real_agent_refuses_to_freeze() {
    let real = real_agent().await;
    let (value, report) = frozen_report(&real.socket, LONG, async { 42 }).await;
    assert_eq!(value, 42);
    match &report.consistency {
        Consistency::CrashOnly { reason } => {
            assert!(reason.contains("guest-fsfreeze-freeze"), "{reason}");
            assert!(reason.contains("disabled"), "{reason}");
        }
        Consistency::Application => panic!("{report:?}"),
    }
    // Thawing is refused too, but the agent confirms "thawed".
    assert_eq!(report.thaw_failed, None);
    assert_eq!(report.filesystems, 0);
    let (value, consistency) = frozen(&real.socket, LONG, async { "again" }).await;
    assert_eq!(value, "again");
    assert!(matches!(consistency, Consistency::CrashOnly { .. }));
}

// ---------------------------------------------------------------------
// Without an agent.

#[tokio::test]
async fn missing_socket_is_no_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    let started = Instant::now();
    assert!(GuestAgent::connect(&socket, LONG).await.unwrap().is_none());
    assert!(started.elapsed() < SHORT);
}

#[tokio::test]
async fn stale_socket_file_is_no_agent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    assert!(GuestAgent::connect(&socket, LONG).await.unwrap().is_none());
}

#[tokio::test]
async fn silent_listener_is_no_agent_within_the_timeout() {
    // What QEMU's end of the channel looks like when nothing runs in the
    // guest: connections are accepted, nothing ever answers.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let accepting = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(LONG).await;
        drop(stream);
    });
    let started = Instant::now();
    assert!(GuestAgent::connect(&socket, SHORT).await.unwrap().is_none());
    let took = started.elapsed();
    assert!(took >= SHORT && took < SHORT * 3, "{took:?}");
    accepting.abort();
}

#[tokio::test]
async fn listener_that_never_accepts_is_no_agent_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let started = Instant::now();
    assert!(GuestAgent::connect(&socket, SHORT).await.unwrap().is_none());
    assert!(started.elapsed() < SHORT * 3);
}

#[tokio::test]
async fn frozen_without_agent_runs_the_work_crash_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    let (value, report) = frozen_report(&socket, SHORT, async { Ok::<_, String>(7) }).await;
    assert_eq!(value, Ok(7));
    assert_eq!(
        report.consistency,
        Consistency::CrashOnly {
            reason: "no guest agent answered within 0.4s".to_string()
        }
    );
    assert_eq!(report.thaw_failed, None);
}

// ---------------------------------------------------------------------
// Fake agents: real sockets, scripted answers.

/// What a fake agent does with one request.
struct Answer {
    after: Duration,
    bytes: Vec<u8>,
    /// Close the connection after sending.
    hangup: bool,
}

fn answer(bytes: impl Into<Vec<u8>>) -> Answer {
    Answer {
        after: Duration::ZERO,
        bytes: bytes.into(),
        hangup: false,
    }
}

fn hangup(bytes: impl Into<Vec<u8>>) -> Answer {
    Answer {
        hangup: true,
        ..answer(bytes)
    }
}

fn silence() -> Answer {
    answer(Vec::new())
}

/// The reply to `guest-sync-delimited`, as qemu-ga sends it.
fn synced(request: &Value) -> Vec<u8> {
    let id = &request["arguments"]["id"];
    let mut out = vec![SENTINEL];
    out.extend_from_slice(format!("{{\"return\": {id}, \"id\": {id}}}\n").as_bytes());
    out
}

fn ok(request: &Value, value: &str) -> Vec<u8> {
    format!("{{\"return\": {value}, \"id\": {}}}\n", request["id"]).into_bytes()
}

fn refused(request: &Value, class: &str) -> Vec<u8> {
    format!(
        "{{\"id\": {}, \"error\": {{\"class\": \"{class}\", \"desc\": \"no, says the guest\"}}}}\n",
        request["id"]
    )
    .into_bytes()
}

/// A well-behaved agent with two frozen-able filesystems.
fn standard(command: &str, request: &Value) -> Answer {
    answer(match command {
        "guest-sync-delimited" => synced(request),
        "guest-ping" => ok(request, "{}"),
        "guest-fsfreeze-status" => ok(request, "\"thawed\""),
        "guest-fsfreeze-freeze" | "guest-fsfreeze-thaw" => ok(request, "2"),
        _ => refused(request, "CommandNotFound"),
    })
}

type Script = dyn Fn(&str, &Value, usize) -> Answer + Send + Sync;

/// A fake agent on a unix socket: serves one connection after another,
/// answering each request with what `script` says for (command, request,
/// how many times this command came before), and logs the commands.
struct Fake {
    _dir: TempDir,
    socket: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `command` was received; false after [`LONG`].
    async fn saw(&self, command: &str) -> bool {
        let deadline = Instant::now() + LONG;
        while Instant::now() < deadline {
            if self.commands().iter().any(|c| c == command) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

fn fake(script: impl Fn(&str, &Value, usize) -> Answer + Send + Sync + 'static) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let task = tokio::spawn(serve(listener, Arc::new(script), Arc::clone(&log)));
    Fake {
        _dir: dir,
        socket,
        log,
        task,
    }
}

async fn serve(listener: UnixListener, script: Arc<Script>, log: Arc<Mutex<Vec<String>>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let start = line
                .iter()
                .position(|&b| b != SENTINEL)
                .unwrap_or(line.len());
            let Ok(request) = serde_json::from_slice::<Value>(&line[start..]) else {
                continue;
            };
            let command = request["execute"].as_str().unwrap_or_default().to_string();
            let nth = {
                let mut log = log.lock().unwrap();
                let nth = log.iter().filter(|c| **c == command).count();
                log.push(command.clone());
                nth
            };
            let reply = script(&command, &request, nth);
            tokio::time::sleep(reply.after).await;
            if write.write_all(&reply.bytes).await.is_err() || reply.hangup {
                break;
            }
        }
    }
}

/// A fake that behaves except for `command`'s first answer.
fn fake_once(
    command: &'static str,
    bytes: impl Fn(&Value) -> Vec<u8> + Send + Sync + 'static,
) -> Fake {
    fake(move |c, request, nth| {
        if c == command && nth == 0 {
            answer(bytes(request))
        } else {
            standard(c, request)
        }
    })
}

#[tokio::test]
async fn leftovers_before_the_sync_reply_are_discarded() {
    let agent = fake(|command, request, _| {
        if command != "guest-sync-delimited" {
            return standard(command, request);
        }
        // What an earlier session can leave in the channel: replies to
        // its commands and syncs, errors, junk, a huge reply, and a line
        // cut short, then the answer to this sync.
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"return\": {}}\n");
        out.extend_from_slice(b"garbage\n\n");
        out.extend_from_slice(b"\xff{\"return\": 99, \"id\": 99}\n");
        out.extend_from_slice(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"stale\"}}\n");
        out.extend_from_slice(b"{\"return\": \"");
        out.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE));
        out.extend_from_slice(b"\"}\n");
        out.extend_from_slice(b"{\"return\": {\"cut\": ");
        out.extend_from_slice(&synced(request));
        answer(out)
    });
    let mut session = connected(&agent.socket).await;
    assert_eq!(session.fsfreeze_status().await.unwrap(), "thawed");
}

#[tokio::test]
async fn sync_refused_with_our_id_is_an_error() {
    let agent = fake(|command, request, _| {
        if command == "guest-sync-delimited" {
            answer(refused(request, "CommandNotFound"))
        } else {
            standard(command, request)
        }
    });
    let err = GuestAgent::connect(&agent.socket, LONG).await.unwrap_err();
    assert!(
        matches!(&err, QgaError::Command { command: "guest-sync-delimited", class, .. } if class == "CommandNotFound"),
        "{err}"
    );
}

#[tokio::test]
async fn sync_answered_with_garbage_only_is_no_agent() {
    let agent = fake(|_, _, _| answer(&b"\xff\xfe not json\n{}\n[1]\n"[..]));
    assert!(
        GuestAgent::connect(&agent.socket, SHORT)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn garbage_reply_is_malformed_and_the_next_command_resyncs() {
    let agent = fake_once("guest-fsfreeze-status", |_| {
        b"{\"return\": thawed\n".to_vec()
    });
    let mut session = connected(&agent.socket).await;
    let err = session.fsfreeze_status().await.unwrap_err();
    assert!(matches!(err, QgaError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("thawed"), "{err}");
    assert_eq!(session.fsfreeze_status().await.unwrap(), "thawed");
    assert_eq!(
        agent.commands(),
        [
            "guest-sync-delimited",
            "guest-fsfreeze-status",
            "guest-sync-delimited",
            "guest-fsfreeze-status"
        ]
    );
}

#[tokio::test]
async fn oversized_reply_is_refused_and_the_rest_skipped() {
    let agent = fake_once("guest-fsfreeze-status", |request| {
        let huge = "x".repeat(4 * MAX_LINE);
        ok(request, &format!("\"{huge}\""))
    });
    let mut session = connected(&agent.socket).await;
    let err = session.fsfreeze_status().await.unwrap_err();
    assert!(
        matches!(
            err,
            QgaError::LineTooLong {
                limit: MAX_LINE,
                ..
            }
        ),
        "{err}"
    );
    // The rest of the long line is not read as a reply.
    assert_eq!(session.fsfreeze_status().await.unwrap(), "thawed");
}

#[tokio::test]
async fn endless_line_is_refused_without_buffering_it() {
    // No newline ever: refused as soon as it passes the limit.
    let agent = fake_once("guest-fsfreeze-status", |_| vec![b'['; 16 * MAX_LINE]);
    let mut session = connected(&agent.socket).await;
    session.set_command_timeout(LONG);
    let started = Instant::now();
    let err = session.fsfreeze_status().await.unwrap_err();
    assert!(matches!(err, QgaError::LineTooLong { .. }), "{err}");
    assert!(started.elapsed() < LONG);
    assert!(session.partial.capacity() <= 4 * MAX_LINE);
}

#[tokio::test]
async fn error_reply_is_a_command_error_and_keeps_the_session_in_step() {
    let agent = fake_once("guest-fsfreeze-thaw", |request| {
        refused(request, "GenericError")
    });
    let mut session = connected(&agent.socket).await;
    let err = session.thaw().await.unwrap_err();
    match &err {
        QgaError::Command {
            command,
            class,
            desc,
            ..
        } => {
            assert_eq!(*command, "guest-fsfreeze-thaw");
            assert_eq!(class, "GenericError");
            assert_eq!(desc, "no, says the guest");
        }
        other => panic!("{other}"),
    }
    assert_eq!(session.thaw().await.unwrap(), 2);
    // No second sync was needed.
    assert_eq!(
        agent.commands(),
        [
            "guest-sync-delimited",
            "guest-fsfreeze-thaw",
            "guest-fsfreeze-thaw"
        ]
    );
}

#[tokio::test]
async fn error_reply_without_fields_is_still_an_error() {
    let agent = fake_once("guest-ping", |_| b"{\"error\": 3}\n".to_vec());
    let mut session = connected(&agent.socket).await;
    let err = session.ping().await.unwrap_err();
    assert!(
        matches!(&err, QgaError::Command { class, desc, .. } if class == "(missing)" && desc == "(missing)"),
        "{err}"
    );
}

#[tokio::test]
async fn replies_of_the_wrong_shape_are_protocol_errors() {
    type Bytes = fn(&Value) -> Vec<u8>;
    let cases: [(&str, Bytes); 4] = [
        ("guest-fsfreeze-status", |_| b"[\"thawed\"]\n".to_vec()),
        ("guest-fsfreeze-status", |_| {
            b"{\"result\": \"thawed\"}\n".to_vec()
        }),
        ("guest-fsfreeze-status", |request| ok(request, "42")),
        ("guest-fsfreeze-freeze", |request| ok(request, "-1")),
    ];
    for (command, reply) in cases {
        let agent = fake_once(command, reply);
        let mut session = connected(&agent.socket).await;
        let err = if command == "guest-fsfreeze-freeze" {
            session.freeze().await.unwrap_err()
        } else {
            session.fsfreeze_status().await.unwrap_err()
        };
        assert!(matches!(err, QgaError::Protocol { .. }), "{command}: {err}");
    }
}

#[tokio::test]
async fn replies_to_other_ids_are_skipped() {
    let agent = fake_once("guest-fsfreeze-status", |request| {
        let mut out = b"{\"return\": \"frozen\", \"id\": 12345}\n".to_vec();
        out.extend(ok(request, "\"thawed\""));
        out
    });
    let mut session = connected(&agent.socket).await;
    assert_eq!(session.fsfreeze_status().await.unwrap(), "thawed");
}

#[tokio::test]
async fn a_late_reply_after_a_timeout_is_not_taken_for_the_next_one() {
    let agent = fake(|command, request, nth| match (command, nth) {
        ("guest-fsfreeze-status", 0) => Answer {
            after: Duration::from_secs(1),
            ..answer(ok(request, "\"frozen\""))
        },
        _ => standard(command, request),
    });
    let mut session = connected(&agent.socket).await;
    session.set_command_timeout(SHORT);
    let err = session.fsfreeze_status().await.unwrap_err();
    assert!(matches!(err, QgaError::Timeout { .. }), "{err}");
    session.set_command_timeout(LONG);
    assert_eq!(session.fsfreeze_status().await.unwrap(), "thawed");
}

#[tokio::test]
async fn a_silent_agent_times_out_and_a_silent_resync_too() {
    let agent = fake(|command, request, nth| match (command, nth) {
        ("guest-sync-delimited", 0) => standard(command, request),
        _ => silence(),
    });
    let mut session = connected(&agent.socket).await;
    session.set_command_timeout(SHORT);
    let err = session.ping().await.unwrap_err();
    assert!(
        matches!(&err, QgaError::Timeout { what, .. } if what == "`guest-ping`"),
        "{err}"
    );
    let err = session.ping().await.unwrap_err();
    assert!(
        matches!(&err, QgaError::Timeout { what, .. } if what.starts_with("synchronising")),
        "{err}"
    );
}

#[tokio::test]
async fn eof_while_waiting_is_closed() {
    // QEMU exiting mid-reply.
    let agent = fake(|command, request, _| match command {
        "guest-ping" => hangup(&b"{\"return\": {"[..]),
        _ => standard(command, request),
    });
    let mut session = connected(&agent.socket).await;
    let err = session.ping().await.unwrap_err();
    assert!(matches!(err, QgaError::Closed { .. }), "{err}");
    // A closed session stays closed.
    let err = session.ping().await.unwrap_err();
    assert!(matches!(err, QgaError::Closed { .. }), "{err}");
}

// ---------------------------------------------------------------------
// `frozen` with fake agents.

#[tokio::test]
async fn frozen_freezes_around_the_work_and_thaws_after() {
    let agent = fake(|command, request, _| standard(command, request));
    let log = Arc::clone(&agent.log);
    let (seen_by_work, report) =
        frozen_report(
            &agent.socket,
            LONG,
            async move { log.lock().unwrap().clone() },
        )
        .await;
    assert_eq!(
        seen_by_work,
        ["guest-sync-delimited", "guest-fsfreeze-freeze"]
    );
    assert_eq!(
        agent.commands(),
        [
            "guest-sync-delimited",
            "guest-fsfreeze-freeze",
            "guest-fsfreeze-thaw"
        ]
    );
    assert_eq!(
        report,
        FreezeReport {
            consistency: Consistency::Application,
            filesystems: 2,
            thaw_failed: None
        }
    );
}

#[tokio::test]
async fn frozen_thaws_when_the_work_fails() {
    let agent = fake(|command, request, _| standard(command, request));
    let (result, consistency) = frozen(&agent.socket, LONG, async {
        Err::<(), _>("zfs snapshot failed")
    })
    .await;
    assert_eq!(result, Err("zfs snapshot failed"));
    assert_eq!(consistency, Consistency::Application);
    assert_eq!(agent.commands().last().unwrap(), "guest-fsfreeze-thaw");
}

#[tokio::test]
async fn frozen_with_no_filesystem_frozen_is_crash_consistent() {
    let agent = fake_once("guest-fsfreeze-freeze", |request| ok(request, "0"));
    let ((), consistency) = frozen(&agent.socket, LONG, async {}).await;
    assert_eq!(
        consistency,
        Consistency::CrashOnly {
            reason: "the guest agent froze no filesystems".to_string()
        }
    );
}

#[tokio::test]
async fn frozen_reports_a_guest_left_frozen() {
    let agent = fake(|command, request, _| match command {
        "guest-fsfreeze-thaw" => answer(refused(request, "GenericError")),
        "guest-fsfreeze-status" => answer(ok(request, "\"frozen\"")),
        _ => standard(command, request),
    });
    let ((), report) = frozen_report(&agent.socket, LONG, async {}).await;
    assert_eq!(report.consistency, Consistency::Application);
    let why = report.thaw_failed.unwrap();
    assert!(
        why.contains("frozen") && why.contains("no, says the guest"),
        "{why}"
    );
}

#[tokio::test]
async fn frozen_retries_the_thaw_on_a_new_session_when_the_first_breaks() {
    // The first session breaks on the thaw (garbage, then the channel
    // closes); a second session thaws.
    let agent = fake(|command, request, nth| match (command, nth) {
        ("guest-fsfreeze-thaw", 0) => hangup(&b"%%%\n"[..]),
        _ => standard(command, request),
    });
    let ((), report) = frozen_report(&agent.socket, LONG, async {}).await;
    assert_eq!(report.thaw_failed, None, "{report:?}");
    assert_eq!(
        agent
            .commands()
            .iter()
            .filter(|c| *c == "guest-fsfreeze-thaw")
            .count(),
        2
    );
}

#[tokio::test]
async fn a_timed_out_freeze_is_an_error_and_the_thaw_resyncs() {
    let agent = fake(|command, request, nth| match (command, nth) {
        ("guest-fsfreeze-freeze", 0) => silence(),
        _ => standard(command, request),
    });
    // `frozen` would then run the work crash-consistent and thaw, as it
    // does after any failed freeze (see `frozen_reports_a_guest_left_frozen`).
    let mut session = connected(&agent.socket).await;
    session.set_freeze_timeout(SHORT);
    let err = session.freeze().await.unwrap_err();
    assert!(matches!(err, QgaError::Timeout { .. }), "{err}");
    // The freeze may still complete in the guest: thawing resyncs first.
    assert_eq!(session.thaw().await.unwrap(), 2);
}

#[tokio::test]
async fn a_cancelled_frozen_thaws_in_the_background() {
    let agent = fake(|command, request, _| standard(command, request));
    let cancelled = tokio::time::timeout(
        SHORT,
        frozen(&agent.socket, LONG, std::future::pending::<()>()),
    )
    .await;
    assert!(cancelled.is_err());
    assert!(
        agent
            .commands()
            .contains(&"guest-fsfreeze-freeze".to_string())
    );
    assert!(
        agent.saw("guest-fsfreeze-thaw").await,
        "{:?}",
        agent.commands()
    );
}

#[tokio::test]
async fn a_panicking_work_still_thaws() {
    let agent = fake(|command, request, _| standard(command, request));
    let socket = agent.socket.clone();
    let task =
        tokio::spawn(async move { frozen(&socket, LONG, async { panic!("work exploded") }).await });
    assert!(task.await.unwrap_err().is_panic());
    assert!(
        agent.saw("guest-fsfreeze-thaw").await,
        "{:?}",
        agent.commands()
    );
}

#[tokio::test]
async fn thaw_leftover_thaws_or_reports_no_agent() {
    let agent = fake(|command, request, _| standard(command, request));
    assert_eq!(thaw_leftover(&agent.socket, LONG).await.unwrap(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        thaw_leftover(&dir.path().join("qga.sock"), SHORT)
            .await
            .unwrap(),
        None
    );
}

#[test]
fn consistency_reads_well() {
    assert_eq!(
        Consistency::Application.to_string(),
        "application-consistent"
    );
    assert_eq!(
        Consistency::CrashOnly {
            reason: "no guest agent answered within 3s".to_string()
        }
        .to_string(),
        "crash-consistent (no guest agent answered within 3s)"
    );
}

#[test]
fn sync_ids_differ() {
    let ids: std::collections::BTreeSet<u32> = (0..64).map(|_| random_id()).collect();
    assert!(ids.len() > 60, "{ids:?}");
}
