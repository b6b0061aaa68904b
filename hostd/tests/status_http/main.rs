//! The status endpoint, served for real on 127.0.0.1:0 and spoken to with
//! raw HTTP/1.1 over TCP, hostile clients included.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use horcrux_config::Diagnostic;
use horcrux_hostd::generation::{GenerationInfo, Source};
use horcrux_hostd::plan::ResourceKind;
use horcrux_hostd::status::http::Limits;
use horcrux_hostd::status::{ResourceState, ResourceStatus, Status};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use support::{GUARD, Reply, Server, parse_metrics, read_reply, read_to_close};

fn status() -> Status {
    let mut s = Status::new("node-7".into());
    s.generation = Some(GenerationInfo {
        id: 3,
        hash: "ab\"c\\d\ne0123456789".into(),
        parent: Some(2),
        source: Source::Push,
        accepted_at: "2026-01-02T03:04:05Z".into(),
    });
    s.config_errors.push(Diagnostic {
        file: "cluster/vms/web.toml".into(),
        line: Some(4),
        column: Some(9),
        message: "<script>alert('x')</script> is not a size".into(),
        hint: Some("write \"4G\" & retry".into()),
        snippet: None,
    });
    s.resources.push(ResourceStatus {
        kind: ResourceKind::Vm,
        name: "web".into(),
        state: ResourceState::Failed,
        error: Some("qemu exited".into()),
        restart_pending: true,
        attempts: 3,
        desired: [("state", "running"), ("cpus", "2"), ("memory", "2GiB")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        observed: [("state", "stopped"), ("unit_state", "failed (failed)")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
    });
    s.counters.generations_accepted = 3;
    s.counters.config_rejections = 1;
    s.counters.apply_duration.observe(0.2);
    s
}

fn short(header_timeout: Duration, max_connections: usize) -> Limits {
    Limits {
        header_timeout,
        max_connections,
        ..Limits::default()
    }
}

/// The server closed (EOF or reset) without ever answering 200.
fn refused(read: std::io::Result<Vec<u8>>) {
    if let Ok(bytes) = read {
        assert!(!bytes.starts_with(b"HTTP/1.1 200"), "{bytes:?}");
    }
}

#[tokio::test]
async fn page_shows_node_and_escaped_errors() {
    let server = Server::start_default(status()).await;
    let reply = server.get("/").await;
    assert_eq!(reply.code, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let page = reply.text();
    assert!(page.contains("<h1>node-7</h1>"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; is not a size"));
    assert!(page.contains("write &quot;4G&quot; &amp; retry"));
    assert!(page.contains("cluster/vms/web.toml:4:9"));
    assert!(!page.contains("<script"));
    assert!(page.contains("qemu exited"));
}

#[tokio::test]
async fn status_json_has_the_contract_keys() {
    let server = Server::start_default(status()).await;
    let reply = server.get("/status.json").await;
    assert_eq!(reply.code, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let json: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["node"], "node-7");
    assert!(json["version"].is_string() && json["started_at"].is_string());
    assert_eq!(json["ready"], false);
    let g = &json["generation"];
    assert_eq!((g["id"].as_u64(), g["parent"].as_u64()), (Some(3), Some(2)));
    assert_eq!(g["source"], "push");
    assert_eq!(g["accepted_at"], "2026-01-02T03:04:05Z");
    assert!(g["hash"].is_string());
    let e = &json["config_errors"][0];
    assert_eq!(e["file"], "cluster/vms/web.toml");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(4), Some(9))
    );
    assert!(e["message"].is_string() && e["hint"].is_string());
    let r = &json["resources"][0];
    assert_eq!(
        (&r["kind"], &r["name"], &r["state"]),
        (&"vm".into(), &"web".into(), &"failed".into())
    );
    assert_eq!(r["error"], "qemu exited");
    assert_eq!(r["restart_pending"], true);
    assert!(json.get("counters").is_none());

    server.status.update(|s| {
        s.generation = None;
        s.config_errors.clear();
    });
    let json: Value = serde_json::from_slice(&server.get("/status.json").await.body).unwrap();
    assert!(json["generation"].is_null());
    assert_eq!(json["config_errors"], Value::Array(vec![]));
}

#[tokio::test]
async fn metrics_parse_line_by_line() {
    let server = Server::start_default(status()).await;
    let reply = server.get("/metrics").await;
    assert_eq!(reply.code, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = parse_metrics(&reply.text());
    let get = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
    };
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        get(&format!("horcrux_build_info{{version=\"{version}\"}}")),
        1.0
    );
    assert_eq!(get("horcrux_generation_id"), 3.0);
    assert_eq!(
        get("horcrux_generation_info{hash=\"ab\\\"c\\\\d\\ne0123456789\",source=\"push\"}"),
        1.0
    );
    assert_eq!(get("horcrux_config_errors"), 1.0);
    assert_eq!(get("horcrux_config_valid"), 0.0);
    assert_eq!(get("horcrux_generations_accepted_total"), 3.0);
    assert_eq!(get("horcrux_config_rejections_total"), 1.0);
    assert_eq!(get("horcrux_resources{kind=\"vm\",state=\"failed\"}"), 1.0);
    assert_eq!(get("horcrux_resources{kind=\"vm\",state=\"pending\"}"), 0.0);
    assert_eq!(
        get("horcrux_apply_duration_seconds_bucket{le=\"0.1\"}"),
        0.0
    );
    assert_eq!(
        get("horcrux_apply_duration_seconds_bucket{le=\"0.25\"}"),
        1.0
    );
    assert_eq!(
        get("horcrux_apply_duration_seconds_bucket{le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(get("horcrux_apply_duration_seconds_count"), 1.0);
    assert!((get("horcrux_apply_duration_seconds_sum") - 0.2).abs() < 1e-9);
    assert_eq!(get("horcrux_ready"), 0.0);
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let server = Server::start_default(status()).await;
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let reply = server
            .send(&format!(
                "{method} /status.json HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            ))
            .await;
        assert_eq!(reply.code, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method}");
    }
}

#[tokio::test]
async fn unknown_paths_get_404_and_queries_are_ignored() {
    let server = Server::start_default(status()).await;
    assert_eq!(server.get("/nope").await.code, 404);
    assert_eq!(server.get("/metrics/").await.code, 404);
    assert_eq!(server.get("/../etc/passwd").await.code, 404);
    let reply = server.get("/status.json?pretty=1&x=%3C").await;
    assert_eq!(reply.code, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn head_is_get_without_a_body() {
    let server = Server::start_default(status()).await;
    let reply = server
        .send("HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(reply.code, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(reply.content_length().unwrap() > 0);
    assert!(reply.body.is_empty(), "{:?}", reply.text());
}

#[tokio::test]
async fn healthz_follows_readiness() {
    let server = Server::start_default(status()).await;
    let reply = server.get("/healthz").await;
    assert_eq!((reply.code, reply.text().as_str()), (503, "starting\n"));
    server.status.update(|s| s.ready = true);
    let reply = server.get("/healthz").await;
    assert_eq!((reply.code, reply.text().as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn a_get_with_a_body_is_refused_unread() {
    let server = Server::start_default(status()).await;
    let reply = server
        .send("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    assert_eq!(reply.code, 413);
    assert_eq!(reply.header("connection"), Some("close"));
}

#[tokio::test]
async fn keep_alive_serves_several_requests_then_times_out_when_idle() {
    let timeout_after = Duration::from_millis(400);
    let server = Server::start(status(), short(timeout_after, 8)).await;
    let mut stream = server.connect().await;
    for path in ["/healthz", "/status.json", "/metrics"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = read_reply(&mut stream).await;
        assert_ne!(reply.code, 404, "{path}");
    }
    let idle = Instant::now();
    refused(read_to_close(&mut stream).await);
    assert!(idle.elapsed() >= timeout_after / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_or_a_close_never_a_hang() {
    // A long header timeout: what ends this must be the size limit.
    let server = Server::start(status(), short(Duration::from_secs(60), 8)).await;
    let mut stream = server.connect().await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may close before taking it all; a failed write is fine.
    let _ = timeout(GUARD, stream.write_all(request.as_bytes())).await;
    match read_to_close(&mut stream).await {
        Ok(bytes) if !bytes.is_empty() => {
            let reply = Reply::parse(&bytes).unwrap();
            assert_eq!(reply.code, 431);
        }
        // Closed or reset without (readable) answer.
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_neither_blocks_others_nor_stays_open() {
    let header_timeout = Duration::from_millis(500);
    let server = Server::start(status(), short(header_timeout, 8)).await;
    let started = Instant::now();
    let mut stalled = server.connect().await;
    stalled.write_all(b"GET / HT").await.unwrap();

    let reply = timeout(GUARD, server.get("/")).await.expect("not blocked");
    assert_eq!(reply.code, 200);

    refused(read_to_close(&mut stalled).await);
    assert!(started.elapsed() >= header_timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_cap_new_connections_are_closed() {
    let server = Server::start(status(), short(Duration::from_secs(60), 2)).await;
    let first = server.connect().await;
    let mut second = server.connect().await;

    let mut third = server.connect().await;
    let _ = third
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await;
    refused(read_to_close(&mut third).await);

    drop(first);
    // The slot frees once the server notices the close.
    let deadline = Instant::now() + GUARD;
    loop {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await;
        if let Ok(bytes) = read_to_close(&mut stream).await
            && Reply::parse(&bytes).is_some_and(|r| r.code == 503)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The connection held all along is still served.
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut second).await.code, 503);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_idle_connections() {
    let mut server = Server::start_default(status()).await;
    let mut kept = server.connect().await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut kept).await.code, 503);

    server.shutdown();
    timeout(GUARD, &mut server.task)
        .await
        .expect("serve returns")
        .unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
    refused(read_to_close(&mut kept).await);
}
