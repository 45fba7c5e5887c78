//! A fault-injecting TCP proxy: a bad network between the services and a
//! server. The services are pointed at [`Proxy::addr`] (see
//! [`crate::Options::database_via`] and [`crate::Options::broker_via`]) and
//! the test turns faults on and off while they run: latency added to every
//! chunk, connections stalled without being closed, every open connection
//! reset, new connections refused.
//!
//! It runs on a thread and runtime of its own, so it goes on forwarding
//! while the test's runtime is busy or blocked (a `kill` that waits, say).
//! Written here rather than taken from `noxious` (a library port of
//! Toxiproxy): that crate has no reset of open connections, and its toxics
//! are set through a server API rather than by a call.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the proxy does to the traffic now.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Added to each chunk on its way to the server.
    to_server: Duration,
    /// Added to each chunk on its way back to the client.
    to_client: Duration,
    /// Nothing is passed on (connections stay open, data waits).
    stalled: bool,
    /// New connections are reset as soon as they are accepted.
    refusing: bool,
    /// Bumped by each reset: a connection opened before the bump ends.
    resets: u64,
    /// The proxy is being dropped.
    closing: bool,
}

/// A proxy listening on 127.0.0.1 and forwarding each connection to one
/// upstream server.
pub struct Proxy {
    addr: SocketAddr,
    upstream: String,
    faults: Arc<watch::Sender<Faults>>,
    open: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`), on a free port of its own.
    pub fn start(upstream: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(watch::Sender::new(Faults::default()));
        let open = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (faults, open, upstream) = (faults.clone(), open.clone(), upstream.to_owned());
            std::thread::Builder::new()
                .name(format!("proxy-{}", addr.port()))
                .spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(serve(listener, upstream, faults, open));
                })
                .unwrap()
        };
        Self {
            addr,
            upstream: upstream.to_owned(),
            faults,
            open,
            thread: Some(thread),
        }
    }

    /// A proxy to the server of `url` (`postgres://…`, `amqp://…`, with
    /// its port; of a list of a cluster's nodes, the first).
    pub fn to_server_of(url: &str) -> Self {
        let url = first_server(url);
        let url = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let host = url.host_str().expect("a server URL names a host");
        let port = url.port().expect("a server URL names its port");
        Self::start(&format!("{host}:{port}"))
    }

    /// Where clients connect instead of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server it forwards to (`host:port`).
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Holds each chunk back this long on its way to the server and on its
    /// way back (chunks keep their order and do not wait for each other):
    /// a request–response round trip takes `to_server + to_client` more.
    pub fn set_latency(&self, to_server: Duration, to_client: Duration) {
        self.faults.send_modify(|f| {
            f.to_server = to_server;
            f.to_client = to_client;
        });
    }

    /// Stops passing anything on, in either direction, without closing a
    /// connection: a frozen network, or a frozen server.
    pub fn stall(&self) {
        self.faults.send_modify(|f| f.stalled = true);
    }

    /// Passes traffic on again after [`Self::stall`], what waited first.
    pub fn flow(&self) {
        self.faults.send_modify(|f| f.stalled = false);
    }

    /// Resets every connection open now (both sides get a TCP RST, what was
    /// in flight is lost); returns how many there were. New ones are
    /// accepted as before.
    pub fn reset(&self) -> usize {
        let open = self.open.load(Ordering::SeqCst);
        self.faults.send_modify(|f| f.resets += 1);
        open
    }

    /// Whether new connections are reset as soon as they arrive (the open
    /// ones go on).
    pub fn refuse(&self, refusing: bool) {
        self.faults.send_modify(|f| f.refusing = refusing);
    }

    /// How many connections are open through the proxy now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// `url` with its server's address replaced by `via`, if given: where a
/// client reaches the server through a proxy. A proxy stands before one
/// server: of a list of a cluster's nodes, the first (as
/// [`Proxy::to_server_of`] takes it).
pub fn through(url: &str, via: Option<SocketAddr>) -> String {
    let Some(via) = via else {
        return url.to_owned();
    };
    let mut url = reqwest::Url::parse(first_server(url)).expect("a server URL");
    url.set_ip_host(via.ip()).expect("a URL with a host");
    url.set_port(Some(via.port())).expect("a URL with a port");
    url.to_string()
}

/// The first URL of a comma-separated list (or the only one).
fn first_server(urls: &str) -> &str {
    urls.split(',').next().unwrap_or_default().trim()
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.faults.send_modify(|f| f.closing = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    upstream: String,
    faults: Arc<watch::Sender<Faults>>,
    open: Arc<AtomicUsize>,
) {
    let listener = TcpListener::from_std(listener).unwrap();
    let mut closing = faults.subscribe();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closing.wait_for(|f| f.closing) => break,
        };
        let Ok((client, _)) = accepted else { continue };
        if faults.borrow().refusing {
            let _ = client.set_zero_linger();
            continue;
        }
        let (faults, open, upstream) = (faults.subscribe(), open.clone(), upstream.clone());
        connections.spawn(async move {
            open.fetch_add(1, Ordering::SeqCst);
            relay(client, &upstream, faults).await;
            open.fetch_sub(1, Ordering::SeqCst);
        });
        while connections.try_join_next().is_some() {}
    }
    // Dropping the tasks closes every connection.
    connections.shutdown().await;
}

/// Forwards one connection both ways until either side closes it, or
/// resets it when the proxy is told to.
async fn relay(mut client: TcpStream, upstream: &str, faults: watch::Receiver<Faults>) {
    let born = faults.borrow().resets;
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let both_ways = async {
            tokio::try_join!(
                pump(client_read, server_write, faults.clone(), |f| f.to_server),
                pump(server_read, client_write, faults.clone(), |f| f.to_client),
            )
        };
        let mut told = faults.clone();
        tokio::select! {
            ended = both_ways => {
                if ended.is_ok() {
                    return;
                }
            }
            _ = told.wait_for(|f| f.resets != born || f.closing) => {}
        }
    }
    for stream in [&client, &server] {
        let _ = stream.set_zero_linger();
    }
}

/// Copies one direction chunk by chunk, each held back by the latency of
/// the moment it was read, and none while the proxy is stalled.
async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    faults: watch::Receiver<Faults>,
    latency: fn(&Faults) -> Duration,
) -> std::io::Result<()> {
    let (chunks, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let read = {
        let mut faults = faults.clone();
        async move {
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let _ = faults.wait_for(|f| !f.stalled).await;
                let n = from.read(&mut buffer).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                let at = Instant::now() + latency(&faults.borrow());
                if chunks.send((at, buffer[..n].to_vec())).await.is_err() {
                    return Ok(());
                }
            }
        }
    };
    let write = {
        let mut faults = faults.clone();
        async move {
            while let Some((at, chunk)) = due.recv().await {
                tokio::time::sleep_until(at).await;
                let _ = faults.wait_for(|f| !f.stalled).await;
                to.write_all(&chunk).await?;
            }
            to.shutdown().await
        }
    };
    tokio::try_join!(read, write).map(drop)
}
