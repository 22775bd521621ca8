//! A TCP proxy in front of a broker, for tests of what the network does to
//! kafkit: `cut` makes the broker unreachable (new connections refused, open
//! ones dropped) without losing its state, `restore` brings it back on the
//! same port, and a response delay makes every answer of the broker late by
//! a fixed time without limiting how many are in flight (a slow network, not
//! a slow broker).
//!
//! The broker must advertise the proxy's port (`BrokerOptions::advertised_port`)
//! so that clients reconnect through it after the bootstrap.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

type Connections = Arc<Mutex<Vec<JoinHandle<()>>>>;

#[derive(Debug)]
pub struct BrokerProxy {
    pub port: u16,
    target: u16,
    response_delay: Duration,
    tasks: Option<(JoinHandle<()>, Connections)>,
}

impl BrokerProxy {
    /// Proxies `port` to the broker on `target`, both on 127.0.0.1.
    pub async fn start(port: u16, target: u16) -> std::io::Result<Self> {
        Self::with_response_delay(port, target, Duration::ZERO).await
    }

    /// Like [`BrokerProxy::start`], every byte from the broker delivered
    /// `delay` after it arrived.
    pub async fn with_response_delay(
        port: u16,
        target: u16,
        delay: Duration,
    ) -> std::io::Result<Self> {
        let mut proxy = Self {
            port,
            target,
            response_delay: delay,
            tasks: None,
        };
        proxy.restore().await?;
        Ok(proxy)
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await?;
        let (target, delay) = (self.target, self.response_delay);
        let connections: Connections = Arc::default();
        let tracked = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (client_read, client_write) = inbound.into_split();
                let (broker_read, broker_write) = outbound.into_split();
                let piping = tokio::spawn(async move {
                    tokio::join!(
                        pipe(client_read, broker_write, Duration::ZERO),
                        pipe(broker_read, client_write, delay)
                    );
                });
                if let Ok(mut open) = tracked.lock() {
                    open.push(piping);
                }
            }
        });
        self.tasks = Some((accept, connections));
        Ok(())
    }

    /// The delay of every broker answer on connections accepted from the
    /// next `restore` on.
    pub fn set_response_delay(&mut self, delay: Duration) {
        self.response_delay = delay;
    }

    /// Refuses new connections and drops the open ones.
    pub async fn cut(&mut self) {
        if let Some((accept, connections)) = self.tasks.take() {
            accept.abort();
            let _ = accept.await;
            let open: Vec<JoinHandle<()>> = connections
                .lock()
                .map(|mut c| c.drain(..).collect())
                .unwrap_or_default();
            for connection in open {
                connection.abort();
            }
        }
    }
}

impl Drop for BrokerProxy {
    fn drop(&mut self) {
        if let Some((accept, connections)) = self.tasks.take() {
            accept.abort();
            if let Ok(mut open) = connections.lock() {
                for connection in open.drain(..) {
                    connection.abort();
                }
            }
        }
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buffer).await {
            let Some(chunk) = buffer.get(..n).filter(|c| !c.is_empty()) else {
                break;
            };
            if chunks
                .send((tokio::time::Instant::now() + delay, chunk.to_vec()))
                .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
