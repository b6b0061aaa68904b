//! The read-only HTTP endpoint: GET/HEAD only, bounded in header size,
//! connection count and time, so a hostile or slow client cannot take it
//! (or hostd) down.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{StatusHandle, html, metrics};

/// Bounds on what one client may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line plus headers (hyper's read buffer; at least 8 KiB).
    pub max_header_bytes: usize,
    /// Time to receive a request's headers (slowloris).
    pub header_timeout: Duration,
    /// Longest a connection may stay open, keep-alive included.
    pub connection_lifetime: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
            max_connections: 256,
        }
    }
}

/// Serves until `shutdown` completes; connections in flight finish within
/// their lifetime bound.
pub async fn serve(
    listener: TcpListener,
    status: StatusHandle,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "status endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "status endpoint: connection limit reached, closing");
            drop(stream);
            continue;
        };
        let status = status.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let status = status.clone();
                async move { Ok::<_, Infallible>(respond(&req, &status)) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if tokio::time::timeout(limits.connection_lifetime, connection)
                .await
                .is_err()
            {
                tracing::debug!(%peer, "status endpoint: connection lifetime exceeded");
            }
            drop(slot);
        });
    }
}

fn respond(req: &Request<Incoming>, status: &StatusHandle) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: this endpoint is read-only\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let snapshot = status.snapshot();
    let mut response = match req.uri().path() {
        "/" => with_type(
            StatusCode::OK,
            html::render(&snapshot),
            "text/html; charset=utf-8",
        ),
        "/status.json" => with_type(
            StatusCode::OK,
            serde_json::to_string_pretty(&*snapshot).unwrap_or_default(),
            "application/json",
        ),
        "/metrics" => with_type(
            StatusCode::OK,
            metrics::render(&snapshot),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/healthz" if snapshot.ready => plain(StatusCode::OK, "ok\n"),
        "/healthz" => plain(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    if head {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

fn plain(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(code, body.to_string(), "text/plain; charset=utf-8")
}

fn with_type(code: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
