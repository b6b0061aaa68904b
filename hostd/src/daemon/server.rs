//! Keeps the status endpoint listening where the current generation says,
//! moving it when `[status] listen` changes.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::status::StatusHandle;
use crate::status::http;

/// Where the endpoint listens when no valid node.toml says otherwise.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8006);

#[derive(Debug)]
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
pub struct StatusServer {
    status: StatusHandle,
    running: Option<Running>,
}

impl StatusServer {
    pub fn new(status: StatusHandle) -> Self {
        StatusServer {
            status,
            running: None,
        }
    }

    /// Listens on `addr`, replacing a listener elsewhere. If the new
    /// address cannot be bound, the old listener stays and the error is
    /// logged (the page must stay reachable somewhere).
    pub async fn ensure(&mut self, addr: SocketAddr) {
        if self.running.as_ref().is_some_and(|r| r.addr == addr) {
            return;
        }
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for the status endpoint");
                return;
            }
        };
        let bound = listener.local_addr().unwrap_or(addr);
        self.stop().await;
        let (stop, stopped) = oneshot::channel();
        let status = self.status.clone();
        let task = tokio::spawn(async move {
            http::serve(listener, status, http::Limits::default(), async {
                let _ = stopped.await;
            })
            .await;
        });
        tracing::info!(addr = %bound, "status endpoint listening");
        self.running = Some(Running { addr, stop, task });
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            let _ = running.task.await;
        }
    }
}
