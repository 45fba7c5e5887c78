//! The harness's fault-injecting proxy (`tests/src/proxy.rs`) does to a
//! connection what it is told, in front of a small echo server.

use std::time::{Duration, Instant};

use tests::proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server that sends back whatever it receives; returns its address.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut from, mut to) = socket.split();
                let _ = tokio::io::copy(&mut from, &mut to).await;
            });
        }
    });
    addr
}

/// Sends a byte and waits (up to `limit`) for it to come back; returns
/// how long that took, or `None` if it did not come back in time.
async fn echo(client: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let sent = Instant::now();
    client.write_all(b"x").await.unwrap();
    let mut byte = [0];
    match tokio::time::timeout(limit, client.read_exact(&mut byte)).await {
        Ok(read) => {
            read.unwrap();
            Some(sent.elapsed())
        }
        Err(_) => None,
    }
}

/// Whether the connection was cut: reading ends in an error or at once.
async fn was_cut(client: &mut TcpStream) -> bool {
    let mut byte = [0];
    let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut byte)).await;
    matches!(read, Ok(Err(_) | Ok(0)))
}

#[tokio::test]
async fn the_proxy_delays_stalls_resets_and_refuses_as_it_is_told() {
    let server = echo_server().await;
    let proxy = Proxy::start(&server);
    assert_eq!(proxy.upstream(), server);
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let quick = echo(&mut client, Duration::from_secs(5)).await.unwrap();

    // Latency: each way, for every chunk.
    proxy.set_latency(Duration::from_millis(100), Duration::from_millis(50));
    let slow = echo(&mut client, Duration::from_secs(5)).await.unwrap();
    assert!(slow >= Duration::from_millis(150), "{slow:?}");
    proxy.set_latency(Duration::ZERO, Duration::ZERO);
    println!("an echo took {quick:?}, {slow:?} with 150 ms added");

    // Stalled: nothing passes, the connection stays open; then it flows.
    proxy.stall();
    assert_eq!(echo(&mut client, Duration::from_millis(500)).await, None);
    proxy.flow();
    let mut byte = [0];
    client.read_exact(&mut byte).await.unwrap();
    assert_eq!(&byte, b"x", "what waited passes first");

    // Reset: every open connection is cut at once.
    assert_eq!(proxy.open_connections(), 1);
    assert_eq!(proxy.reset(), 1);
    assert!(was_cut(&mut client).await);

    // Refusing: a new connection is cut as soon as it arrives (the cut
    // may come before the client has seen it made).
    proxy.refuse(true);
    let refused = match TcpStream::connect(proxy.addr()).await {
        Ok(mut made) => was_cut(&mut made).await,
        Err(_) => true,
    };
    assert!(refused);
    proxy.refuse(false);
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(echo(&mut again, Duration::from_secs(5)).await.is_some());
    assert_eq!(proxy.open_connections(), 1, "the cut ones are gone");
}
