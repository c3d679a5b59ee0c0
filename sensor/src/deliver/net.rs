//! Connections to receivers: TCP, optionally wrapped in TLS (rustls, see [`super::tls`]),
//! for the OTLP (gRPC and HTTP) and syslog exporters.
use std::{io, os::fd::AsRawFd, sync::Arc, time::Duration};

use rustls::{ClientConfig, pki_types::ServerName};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

/// A byte stream to a receiver, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Io for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Io for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Connector {
    /// `host:port`.
    pub addr: String,
    /// TLS settings and the name the receiver's certificate must carry.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// Longest wait for the TCP connection and the TLS handshake together.
    pub timeout: Duration,
}

impl Connector {
    /// A connector to `host:port`, with TLS when `tls` is set.
    pub fn new(host: &str, port: u16, tls: Option<Arc<ClientConfig>>, timeout: Duration) -> io::Result<Self> {
        let tls = match tls {
            Some(config) => {
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
                Some((config, name))
            }
            None => None,
        };
        Ok(Self { addr: format!("{host}:{port}"), tls, timeout })
    }

    /// Opens a connection (and does the TLS handshake, verifying the receiver).
    pub async fn connect(&self) -> io::Result<Box<dyn Io>> {
        let attempt = async {
            let tcp = TcpStream::connect(&self.addr).await?;
            tcp.set_nodelay(true)?;
            Ok::<Box<dyn Io>, io::Error>(match &self.tls {
                None => Box::new(tcp),
                Some((config, name)) => {
                    let tls =
                        TlsConnector::from(config.clone()).connect(name.clone(), tcp).await.map_err(|e| {
                            io::Error::new(e.kind(), format!("TLS handshake with {} failed: {e}", self.addr))
                        })?;
                    Box::new(tls)
                }
            })
        };
        tokio::time::timeout(self.timeout, attempt).await.unwrap_or_else(|_| {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {} timed out", self.addr)))
        })
    }
}

/// Whether the receiver closed or reset the connection (checked before reusing it, so a
/// batch is not written into a socket that is already gone). For receivers that send nothing
/// back (syslog): bytes waiting are read through the stream, so that a TLS session ticket
/// keeps the connection while a TLS close_notify or the end of the stream ends it.
pub async fn peer_closed(conn: &mut Box<dyn Io>) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer we own; MSG_PEEK leaves the data where it is.
    let n = unsafe {
        libc::recv(conn.tcp().as_raw_fd(), (&raw mut byte).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    match n {
        0 => true,
        n if n > 0 => {
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(5), conn.read(&mut buf)).await {
                // Only TLS records that carry no data (session tickets): still open.
                Err(_) => false,
                Ok(Ok(0) | Err(_)) => true,
                Ok(Ok(_)) => false,
            }
        }
        _ => io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock,
    }
}

/// An exporter's own single-thread tokio runtime (exporters are called from their output's
/// thread, not from the daemon's runtime). It shuts down in the background when dropped,
/// which is allowed anywhere: the daemon drops the exporters it opened inside its own
/// runtime when it cannot start.
pub struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    pub fn new() -> io::Result<Self> {
        tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| Self(Some(rt)))
    }

    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime is there until dropped")
    }

    /// Runs `f` to completion on this thread.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.get().block_on(f)
    }

    /// Makes this runtime the current one until the guard is dropped.
    pub fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.get().enter()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// `error: cause: cause…`, for messages that say what went wrong all the way down.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
