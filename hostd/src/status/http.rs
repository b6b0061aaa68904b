//! The read-only HTTP endpoint: GET/HEAD only, bounded in header size,
//! connection count and time, so a hostile or slow client cannot take it
//! (or hostd) down.
//!
//! | path           | content                                  |
//! |----------------|------------------------------------------|
//! | `/`            | HTML status page ([`super::html`])       |
//! | `/status.json` | the [`super::Status`] snapshot as JSON   |
//! | `/metrics`     | Prometheus text 0.0.4 ([`super::metrics`]) |
//! | `/healthz`     | 200 `ok` once ready, else 503 `starting` |
//!
//! Request bodies are never read: a GET or HEAD that announces one gets 413
//! and the connection is closed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Body, Bytes};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::{StatusHandle, html, metrics};

/// hyper refuses read buffers smaller than this.
const MIN_BUF_SIZE: usize = 8192;

/// Bounds on what one client may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line plus headers, in bytes; larger requests get 431.
    pub max_header_bytes: usize,
    /// Time to receive a request's headers, also while a kept-alive
    /// connection waits for its next request (slowloris).
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

/// Serves until `shutdown` completes, then stops accepting and returns
/// (dropping the listener). Open connections are told to finish: an idle
/// one closes at once, one with a request in flight after its response;
/// none outlives its [`Limits`].
pub async fn serve(
    listener: TcpListener,
    status: StatusHandle,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Never sent on: dropping it when `serve` returns is the signal.
    let (_stopping, stop) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => {
                tracing::debug!("status endpoint: shutting down");
                return;
            }
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
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, status, limits, stop).await;
            drop(slot);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    status: StatusHandle,
    limits: Limits,
    mut stop: watch::Receiver<()>,
) {
    // Responses are written whole; do not hold back their last segment.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let status = status.clone();
        async move { Ok::<_, Infallible>(respond(&req, &status)) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF_SIZE));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let lifetime = tokio::time::sleep(limits.connection_lifetime);
    tokio::pin!(lifetime);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "status endpoint: connection ended");
                }
                return;
            }
            // Err once `serve` has returned; there is nothing else to get.
            _ = stop.changed(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = &mut lifetime => {
                tracing::debug!(%peer, "status endpoint: connection lifetime exceeded");
                return;
            }
        }
    }
}

/// Answers one request from the latest snapshot. Generic over the body so
/// it never reads it.
fn respond<B: Body>(req: &Request<B>, status: &StatusHandle) -> Response<Full<Bytes>> {
    let has_body = !req.body().is_end_stream();
    let mut response = route(req, status, has_body);
    if has_body {
        // Leave the unread body behind with the connection.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    // For HEAD, hyper keeps the Content-Length of the body and drops it.
    response
}

fn route<B>(req: &Request<B>, status: &StatusHandle, has_body: bool) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: this endpoint is read-only\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if has_body {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        );
    }
    let snapshot = status.snapshot();
    match req.uri().path() {
        "/" => with_type(
            StatusCode::OK,
            html::render(&snapshot),
            "text/html; charset=utf-8",
        ),
        "/status.json" => match serde_json::to_string_pretty(&*snapshot) {
            Ok(mut json) => {
                json.push('\n');
                with_type(StatusCode::OK, json, "application/json")
            }
            Err(e) => {
                tracing::error!(error = %e, "status endpoint: cannot serialize the status");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
            }
        },
        "/metrics" => with_type(
            StatusCode::OK,
            metrics::render(&snapshot),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/healthz" if snapshot.ready => plain(StatusCode::OK, "ok\n"),
        "/healthz" => plain(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
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
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;
    use http_body_util::{BodyExt, Empty};

    fn get(method: Method, uri: &str, handle: &StatusHandle) -> Response<Full<Bytes>> {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Empty::<Bytes>::new())
            .unwrap();
        respond(&req, handle)
    }

    async fn text(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn routes_by_method_and_path() {
        let handle = StatusHandle::new(Status::new("n1".into()));
        assert_eq!(
            get(Method::GET, "/nope", &handle).status(),
            StatusCode::NOT_FOUND
        );
        let r = get(Method::PATCH, "/", &handle);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        let r = get(Method::GET, "/healthz?x=1", &handle);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(text(r).await, "starting\n");
        handle.update(|s| s.ready = true);
        let r = get(Method::HEAD, "/healthz", &handle);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn a_get_with_a_body_is_refused_and_closed() {
        let handle = StatusHandle::new(Status::new("n1".into()));
        let req = Request::builder()
            .uri("/")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        let r = respond(&req, &handle);
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }
}
