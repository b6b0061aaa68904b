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
            // Same port, other address (0.0.0.0:8006 -> 10.0.0.11:8006):
            // the old listener holds it. Let go, then take it back if the
            // new address cannot be had either.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && self.running.is_some() => {
                let old = self.running.as_ref().map(|r| r.addr);
                self.stop().await;
                match TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(%addr, error = %e, "cannot listen for the status endpoint; keeping the old address");
                        if let Some(old) = old
                            && let Ok(l) = TcpListener::bind(old).await
                        {
                            self.start(l, old);
                        }
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for the status endpoint");
                return;
            }
        };
        self.stop().await;
        self.start(listener, addr);
    }

    fn start(&mut self, listener: TcpListener, addr: SocketAddr) {
        let bound = listener.local_addr().unwrap_or(addr);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    #[tokio::test(flavor = "multi_thread")]
    async fn moves_to_another_address_on_the_same_port() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = StatusServer::new(StatusHandle::new(Status::new("n".into())));
        let loopback = SocketAddr::from(([127, 0, 0, 1], port));
        let any = SocketAddr::from(([0, 0, 0, 0], port));
        server.ensure(loopback).await;
        assert_eq!(server.running.as_ref().map(|r| r.addr), Some(loopback));
        server.ensure(any).await;
        assert_eq!(server.running.as_ref().map(|r| r.addr), Some(any));
        assert!(tokio::net::TcpStream::connect(loopback).await.is_ok());
        server.stop().await;
    }
}
