//! Servers' side: TCP connections accepted and their TLS handshakes done
//! off the accept loop, for tonic (a stream of [`TlsConnection`]s) and axum
//! (a [`TlsListener`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::wrapped::Wrapped;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 128;
/// Handshakes under way at once; past it the loop stops accepting until
/// one ends, so silent connections cannot use up the descriptors.
const HANDSHAKES_AT_ONCE: usize = 256;

/// Accepts connections on `listener` and completes their TLS handshakes
/// with the settings `current` gives when each is accepted (so reloaded
/// certificates serve new connections), each in its own task: a slow or
/// silent client holds up nobody. Handshaken connections come out of the
/// receiver; a failed handshake is logged and dropped. Stops at `shutdown`.
pub fn accept_tls(
    listener: TcpListener,
    current: impl Fn() -> Option<Arc<ServerConfig>> + Send + 'static,
    shutdown: CancellationToken,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (sender, receiver) = mpsc::channel(ACCEPTED_BACKLOG);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_AT_ONCE));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => return,
                permit = Arc::clone(&handshakes).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: back off, do not spin.
                    tracing::warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(config) = current() else { return };
            // Small frames (an offer, an ack) must not wait for delayed ACKs.
            let _ = tcp.set_nodelay(true);
            let sender = sender.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send((stream, peer)).await;
                    }
                    Ok(Err(error)) => tracing::info!(peer = %peer, error = %error, "tls handshake failed"),
                    Err(_) => tracing::info!(peer = %peer, "tls handshake timed out"),
                }
            });
        }
    });
    receiver
}

/// A handshaken server connection, as tonic serves it.
pub type TlsConnection = Wrapped<TlsStream<TcpStream>>;

/// What tonic records of a TLS connection: the peer's address.
#[derive(Debug, Clone)]
pub struct TlsConnectInfo {
    pub remote_addr: Option<SocketAddr>,
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> TlsConnectInfo {
        TlsConnectInfo { remote_addr: self.0.get_ref().0.peer_addr().ok() }
    }
}

/// The HTTP server's listener over [`accept_tls`].
pub struct TlsListener {
    pub accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    pub local_addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop stopped (shutdown): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}
