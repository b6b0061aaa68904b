//! A connection a backend opens on first use and again after it failed
//! (systemd's bus, a netlink socket): hostd keeps running, and says why,
//! while the other end is away, and heals when it is back.

use std::future::Future;

#[derive(Debug)]
pub struct Reconnecting<T> {
    slot: tokio::sync::Mutex<Option<T>>,
}

impl<T: Clone> Reconnecting<T> {
    pub fn new() -> Self {
        Reconnecting {
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The open connection, or a new one from `connect`.
    pub async fn get<E, F>(&self, connect: impl FnOnce() -> F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = connect().await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection, so the next [`Reconnecting::get`] opens a
    /// fresh one.
    pub async fn forget(&self) {
        *self.slot.lock().await = None;
    }
}

impl<T: Clone> Default for Reconnecting<T> {
    fn default() -> Self {
        Reconnecting::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_once_and_again_after_forget() {
        let conns = Reconnecting::<u32>::new();
        let opened = std::sync::atomic::AtomicU32::new(0);
        let connect =
            || async { Ok::<_, ()>(opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) };
        assert_eq!(conns.get(connect).await, Ok(0));
        assert_eq!(conns.get(connect).await, Ok(0));
        conns.forget().await;
        assert_eq!(conns.get(connect).await, Ok(1));
        let failing = Reconnecting::<u32>::new();
        assert_eq!(failing.get(|| async { Err("down") }).await, Err("down"));
        assert_eq!(failing.get(connect).await, Ok(2));
    }
}
