//! Running the external tools hostd drives (nft, zfs, zpool, qemu-img,
//! modprobe): one place that decides how a child is started, fed, bounded
//! in time and reported when it fails.
//!
//! Every child runs with `LC_ALL=C`, so the error texts callers match on
//! are the untranslated ones, and is killed when its future is dropped, so
//! a cancelled or timed-out call leaves no process behind.

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

/// How much of a tool's stderr an error carries: enough for the message
/// and the offending line, not a whole echoed input.
pub const MAX_STDERR: usize = 2000;

/// How much stderr is kept in memory while a child runs; the rest is read
/// and dropped so a chatty child never blocks on a full pipe.
const STDERR_BUFFER: usize = 64 * 1024;

/// Why running a tool did not produce its output.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The tool could not be started (missing, not executable) or its
    /// pipes failed.
    #[error("cannot run {path}")]
    Spawn {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The tool exited successfully but did not take all of its input.
    #[error("cannot pass the input to `{command}`")]
    Stdin {
        command: String,
        #[source]
        source: io::Error,
    },
    /// The tool ran past its time limit and was killed.
    #[error("`{command}` did not finish within {}", humantime::format_duration(*limit))]
    Timeout { command: String, limit: Duration },
    /// The tool exited unsuccessfully; `stderr` is trimmed and cut to
    /// [`MAX_STDERR`] bytes (`truncated` says whether anything was cut).
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
        truncated: bool,
    },
}

impl CommandError {
    /// Whether trying again soon may help: a tool that ran and refused
    /// refuses again until its input or the system changes, while a
    /// spawn failure or a timeout may be a passing overload.
    pub fn retryable(&self) -> bool {
        !matches!(self, CommandError::Failed { .. })
    }
}

/// An external program with a time limit per call.
#[derive(Clone, Debug)]
pub struct Tool {
    path: PathBuf,
    timeout: Duration,
}

impl Tool {
    /// `path` is looked up in `PATH` when it has no slash.
    pub fn new(path: impl Into<PathBuf>, timeout: Duration) -> Self {
        Tool {
            path: path.into(),
            timeout,
        }
    }

    /// The command line, for messages.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let mut line = self.path.display().to_string();
        for arg in args {
            line.push(' ');
            line.push_str(&arg.as_ref().to_string_lossy());
        }
        line
    }

    /// Runs the tool with `stdin` as its input (none: `/dev/null`) and
    /// returns its stdout. A non-zero exit is [`CommandError::Failed`]
    /// with its stderr.
    pub async fn run<S: AsRef<OsStr> + Sync>(
        &self,
        args: &[S],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, CommandError> {
        let mut stdout = Vec::new();
        self.execute(args, stdin, |chunk| stdout.extend_from_slice(chunk))
            .await?;
        Ok(stdout)
    }

    /// Runs the tool without input, handing its stdout to `on_stdout`
    /// chunk by chunk as it arrives (progress of a long operation).
    pub async fn run_streaming<S: AsRef<OsStr> + Sync>(
        &self,
        args: &[S],
        on_stdout: impl FnMut(&[u8]) + Send,
    ) -> Result<(), CommandError> {
        self.execute(args, None, on_stdout).await
    }

    async fn execute<S: AsRef<OsStr> + Sync>(
        &self,
        args: &[S],
        input: Option<&[u8]>,
        mut on_stdout: impl FnMut(&[u8]) + Send,
    ) -> Result<(), CommandError> {
        let command = self.command(args);
        let spawn_error = |source| CommandError::Spawn {
            path: self.path.display().to_string(),
            source,
        };
        let mut child = tokio::process::Command::new(&self.path)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // The child is borrowed, not moved: when the time limit drops this
        // future, `child` is dropped at return and kill_on_drop kills it.
        let work = async {
            // Input is written while both outputs are read, so no side can
            // block the other on a full pipe.
            let write = async move {
                if let (Some(mut pipe), Some(data)) = (stdin, input) {
                    pipe.write_all(data).await?;
                    pipe.shutdown().await?;
                }
                Ok::<(), io::Error>(())
            };
            let read = async {
                if let Some(mut pipe) = stdout {
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        let n = pipe.read(&mut buffer).await?;
                        if n == 0 {
                            break;
                        }
                        on_stdout(&buffer[..n]);
                    }
                }
                Ok::<(), io::Error>(())
            };
            let (written, read, errors) = tokio::join!(write, read, read_head(stderr));
            (written, read, errors, child.wait().await)
        };
        let (written, read, errors, status) = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| CommandError::Timeout {
                command: command.clone(),
                limit: self.timeout,
            })?;
        let status = status.map_err(spawn_error)?;
        // A failed tool's own message says more than the broken pipe it
        // caused, so the exit status is looked at first.
        if !status.success() {
            let (stderr, truncated) = bounded(&String::from_utf8_lossy(&errors));
            return Err(CommandError::Failed {
                command,
                status: status.to_string(),
                stderr,
                truncated,
            });
        }
        read.map_err(spawn_error)?;
        written.map_err(|source| CommandError::Stdin { command, source })?;
        Ok(())
    }
}

/// The first [`STDERR_BUFFER`] bytes of `pipe`, reading it to the end.
/// A read error ends it early: stderr only ever explains a failure.
async fn read_head(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut head = Vec::new();
    let Some(mut pipe) = pipe else {
        return head;
    };
    let mut buffer = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let room = STDERR_BUFFER.saturating_sub(head.len());
        head.extend_from_slice(&buffer[..n.min(room)]);
    }
    head
}

/// `text` trimmed and cut to [`MAX_STDERR`] bytes at a character
/// boundary, and whether it was cut.
fn bounded(text: &str) -> (String, bool) {
    let text = text.trim();
    if text.len() <= MAX_STDERR {
        return (text.to_string(), false);
    }
    let mut end = MAX_STDERR;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}...", &text[..end]), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(timeout: Duration) -> Tool {
        Tool::new("/bin/sh", timeout)
    }

    #[tokio::test]
    async fn stdout_comes_back_and_stdin_goes_in() {
        let tool = sh(Duration::from_secs(10));
        let out = tool
            .run(
                &["-c", "tr a-z A-Z; echo \"$LC_ALL\""],
                Some(b"hello\n".as_slice()),
            )
            .await
            .expect("sh runs");
        assert_eq!(out, b"HELLO\nC\n");
    }

    #[tokio::test]
    async fn a_failure_carries_its_stderr_bounded() {
        let tool = sh(Duration::from_secs(10));
        let args = [
            "-c",
            "echo '  first line' >&2; head -c 100000 /dev/zero | tr '\\0' x >&2; exit 3",
        ];
        let err = tool.run(&args, None).await.expect_err("exit 3");
        let CommandError::Failed {
            stderr,
            status,
            truncated,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert!(stderr.starts_with("first line\nxxx"), "{stderr}");
        assert_eq!(stderr.len(), MAX_STDERR + 3);
        assert!(*truncated);
        assert!(status.contains('3'), "{status}");
        assert!(!err.retryable());
        assert!(err.to_string().starts_with("`/bin/sh -c echo"), "{err}");
    }

    #[tokio::test]
    async fn a_short_stderr_is_not_truncated() {
        let tool = sh(Duration::from_secs(10));
        let err = tool
            .run(&["-c", "echo oops >&2; exit 1"], None)
            .await
            .expect_err("exit 1");
        assert!(
            matches!(&err, CommandError::Failed { stderr, truncated: false, .. } if stderr == "oops"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_hanging_tool_is_killed_at_the_time_limit() {
        let tool = sh(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = tool
            .run(&["-c", "exec sleep 30"], None)
            .await
            .expect_err("too slow");
        assert!(matches!(err, CommandError::Timeout { .. }), "{err:?}");
        assert!(err.retryable());
        assert!(err.to_string().contains("200ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_missing_tool_is_a_spawn_error() {
        let tool = Tool::new("/nonexistent/tool", Duration::from_secs(1));
        let err = tool.run(&["x"], None).await.expect_err("missing");
        assert!(matches!(err, CommandError::Spawn { .. }), "{err:?}");
        assert_eq!(err.to_string(), "cannot run /nonexistent/tool");
        assert!(err.retryable());
    }

    #[tokio::test]
    async fn streaming_hands_over_stdout_in_chunks() {
        let tool = sh(Duration::from_secs(10));
        let mut seen = Vec::new();
        tool.run_streaming(
            &["-c", "printf one; sleep 0.1; printf two; exit 0"],
            |chunk| seen.extend_from_slice(chunk),
        )
        .await
        .expect("sh runs");
        assert_eq!(seen, b"onetwo");
    }

    #[test]
    fn the_command_line_names_path_and_args() {
        let tool = Tool::new("zfs", Duration::from_secs(1));
        assert_eq!(tool.command(&["list", "-H"]), "zfs list -H");
        assert_eq!(tool.command::<&str>(&[]), "zfs");
    }

    #[test]
    fn bounded_cuts_at_a_character_boundary() {
        let long = "é".repeat(MAX_STDERR);
        let (cut, truncated) = bounded(&long);
        assert!(truncated);
        assert!(cut.len() <= MAX_STDERR + 3);
        assert!(cut.ends_with("é..."));
    }
}
