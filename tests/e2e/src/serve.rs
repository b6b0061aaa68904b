//! A static file server for the nodes: PXE artifacts and update bundles.
//! QEMU's user network shows the host's loopback as 10.0.2.2, so a node
//! fetches `http://10.0.2.2:PORT/NAME` from [`FileServer::url_in_guest`].
//! GET and HEAD of regular files directly under the root; anything else is
//! 404. Each request is answered on its own thread and the connection
//! closed after it (HTTP/1.0).

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;

use anyhow::{Context as _, Result};

/// A running server; it lives as long as the test process.
#[derive(Debug)]
pub struct FileServer {
    pub port: u16,
    pub root: PathBuf,
}

impl FileServer {
    /// Serves `root` on 127.0.0.1 (a free port).
    pub fn start(root: &Path) -> Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the file server")?;
        let port = listener.local_addr()?.port();
        let dir = root.to_path_buf();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let dir = dir.clone();
                thread::spawn(move || {
                    if let Err(e) = answer(stream, &dir) {
                        eprintln!("e2e: file server: {e:#}");
                    }
                });
            }
        });
        Ok(FileServer {
            port,
            root: root.to_path_buf(),
        })
    }

    /// The URL of `name` as a node reaches it.
    pub fn url_in_guest(&self, name: &str) -> String {
        format!("http://10.0.2.2:{}/{name}", self.port)
    }
}

fn answer(mut stream: TcpStream, dir: &Path) -> Result<()> {
    let mut request = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.read_line(&mut request)?;
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let name = path.trim_start_matches('/');
    let file = (matches!(method, "GET" | "HEAD")
        && !name.is_empty()
        && !name.contains('/')
        && !name.starts_with('.'))
    .then(|| File::open(dir.join(name)).ok())
    .flatten()
    .filter(|f| f.metadata().is_ok_and(|m| m.is_file()));
    let Some(mut file) = file else {
        write!(
            stream,
            "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    };
    let len = file.metadata()?.len();
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )?;
    if method == "GET" {
        std::io::copy(&mut file, &mut stream)?;
    }
    Ok(())
}
