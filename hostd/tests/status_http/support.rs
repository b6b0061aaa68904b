//! A real status server on 127.0.0.1:0 and a raw HTTP/1.1 client.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use horcrux_hostd::status::http::{Limits, serve};
use horcrux_hostd::status::{Status, StatusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Hang guard for anything that waits on the server; not a performance bound.
pub const GUARD: Duration = Duration::from_secs(5);

pub struct Server {
    pub addr: SocketAddr,
    pub status: StatusHandle,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Server {
    pub async fn start(status: Status, limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = StatusHandle::new(status);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, handle.clone(), limits, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            status: handle,
            stop: Some(stop),
            task,
        }
    }

    pub async fn start_default(status: Status) -> Server {
        Server::start(status, Limits::default()).await
    }

    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
    }

    /// `GET path` on a fresh connection.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        ))
        .await
    }

    /// Sends `raw` on a fresh connection and reads the reply up to EOF.
    pub async fn send(&self, raw: &str) -> Reply {
        let mut stream = self.connect().await;
        stream.write_all(raw.as_bytes()).await.unwrap();
        let bytes = read_to_close(&mut stream)
            .await
            .expect("reply before close");
        Reply::parse(&bytes).unwrap_or_else(|| panic!("no HTTP reply: {bytes:?}"))
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }
}

/// Everything the server sends until it closes; `Err` when it resets the
/// connection (which also counts as closed).
pub async fn read_to_close(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let read = timeout(GUARD, stream.read_to_end(&mut out))
        .await
        .expect("server neither answered nor closed in time");
    read.map(|_| out)
}

/// One reply on a kept-alive connection, framed by its Content-Length.
pub async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(reply) = Reply::parse(&buf) {
            let want = reply.content_length().expect("content-length");
            if reply.body.len() >= want {
                return reply;
            }
        }
        let n = timeout(GUARD, stream.read(&mut chunk))
            .await
            .expect("reply in time")
            .unwrap();
        assert!(n > 0, "closed mid-reply: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply whose head is complete, or `None`.
    pub fn parse(bytes: &[u8]) -> Option<Reply> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let code = status_line
            .strip_prefix("HTTP/1.1 ")?
            .split(' ')
            .next()?
            .parse()
            .ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some(Reply {
            code,
            headers,
            body: bytes[end + 4..].to_vec(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.parse().ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// Checks the Prometheus text format 0.0.4 line by line and returns the
/// samples as (`name{labels}`, value).
pub fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut helped = HashSet::new();
    let mut typed: Vec<(String, String)> = Vec::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has text");
            assert!(
                !help.is_empty() && helped.insert(name.to_string()),
                "{line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            typed.push((name.to_string(), kind.to_string()));
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()));
        let rest = &line[name_end..];
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => parse_labels(rest).unwrap_or_else(|| panic!("bad labels: {line}")),
            None => (String::new(), rest),
        };
        let value = value.strip_prefix(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let family = typed
            .iter()
            .find(|(f, kind)| {
                name == f
                    || (kind == "histogram"
                        && name
                            .strip_prefix(f.as_str())
                            .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s)))
            })
            .map(|(f, _)| f.clone())
            .unwrap_or_else(|| panic!("sample before its HELP/TYPE: {line}"));
        if current.as_ref() != Some(&family) {
            assert!(!finished.contains(&family), "family split: {family}");
            if let Some(done) = current.replace(family.clone()) {
                finished.insert(done);
            }
        }
        samples.push((format!("{name}{labels}"), value));
    }
    samples
}

/// `rest` starts after `{`; returns (`{...}`, the text after `}`).
fn parse_labels(rest: &str) -> Option<(String, &str)> {
    let mut chars = rest.char_indices().peekable();
    loop {
        let start = chars.peek()?.0;
        while chars.peek()?.1.is_ascii_alphanumeric() || chars.peek()?.1 == '_' {
            chars.next();
        }
        if chars.peek()?.0 == start || chars.next()?.1 != '=' || chars.next()?.1 != '"' {
            return None;
        }
        loop {
            match chars.next()?.1 {
                // Only \\, \" and \n are escapes in label values.
                '\\' => match chars.next()?.1 {
                    '\\' | '"' | 'n' => {}
                    _ => return None,
                },
                '"' => break,
                '\n' => return None,
                _ => {}
            }
        }
        match chars.next()? {
            (_, ',') => continue,
            (i, '}') => return Some((format!("{{{}", &rest[..=i]), &rest[i + 1..])),
            _ => return None,
        }
    }
}
