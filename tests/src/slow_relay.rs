//! An SMTP relay that is slow to say it took a message, in front of the
//! shared sink (`TEST_SMTP_URL`). It passes everything on at once but
//! holds its answer to the end of each message's data, as a relay that
//! scans mail before answering does: for a while, and for as long as the
//! test says. Meanwhile the sink has the message and the notifier does not
//! know it, which is the moment a crash repeats an email. It also counts
//! the messages waiting for their answer, i.e. those the notifier is
//! sending at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The relay; it stops when dropped.
pub struct SlowRelay {
    url: String,
    shared: Arc<Shared>,
    accepting: tokio::task::JoinHandle<()>,
}

struct Shared {
    sink: String,
    delay: Duration,
    /// `true` while answers are held until [`SlowRelay::release`].
    holding: watch::Sender<bool>,
    taken: AtomicUsize,
    waiting: AtomicUsize,
    most_waiting: AtomicUsize,
}

impl SlowRelay {
    /// Starts a relay on 127.0.0.1 that answers each message `delay` after
    /// the sink took it.
    pub async fn start(delay: Duration) -> Self {
        let url = std::env::var("TEST_SMTP_URL").expect("TEST_SMTP_URL");
        let url = reqwest::Url::parse(&url).expect("TEST_SMTP_URL is a URL");
        let sink = format!(
            "{}:{}",
            url.host_str().expect("TEST_SMTP_URL has a host"),
            url.port().unwrap_or(25)
        );
        let shared = Arc::new(Shared {
            sink,
            delay,
            holding: watch::Sender::new(false),
            taken: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            most_waiting: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let relaying = shared.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // A connection ends when either side goes; nothing to report.
                tokio::spawn(relay(client, relaying.clone()));
            }
        });
        Self {
            url,
            shared,
            accepting,
        }
    }

    /// `SMTP_URL` for the notifier.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// From now on, answers wait until [`Self::release`].
    pub fn hold(&self) {
        self.shared.holding.send_replace(true);
    }

    pub fn release(&self) {
        self.shared.holding.send_replace(false);
    }

    /// Messages the sink has taken so far.
    pub fn taken(&self) -> usize {
        self.shared.taken.load(Ordering::SeqCst)
    }

    /// Messages the sink has taken whose answer is still held.
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::SeqCst)
    }

    /// The most messages that waited for their answer at once.
    pub fn most_waiting(&self) -> usize {
        self.shared.most_waiting.load(Ordering::SeqCst)
    }
}

impl Drop for SlowRelay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// One client connection, passed to a connection of its own to the sink.
async fn relay(client: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let sink = TcpStream::connect(&shared.sink).await?;
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_sink, mut to_sink) = sink.into_split();
    let data_ended = AtomicBool::new(false);
    let upstream = async {
        let (mut buf, mut tail) = (vec![0; 16 * 1024], Vec::new());
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return to_sink.shutdown().await;
            }
            if ends_data(&mut tail, &buf[..n]) {
                data_ended.store(true, Ordering::SeqCst);
            }
            to_sink.write_all(&buf[..n]).await?;
        }
    };
    let downstream = async {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = from_sink.read(&mut buf).await?;
            if n == 0 {
                return to_client.shutdown().await;
            }
            // SMTP without pipelining is lockstep: what the sink says after
            // the end of the data is its answer to the message.
            if data_ended.swap(false, Ordering::SeqCst) {
                let _waiting = Waiting::new(&shared);
                tokio::time::sleep(shared.delay).await;
                let mut holding = shared.holding.subscribe();
                // The sender lives in `shared`, so it is never dropped.
                let _ = holding.wait_for(|held| !held).await;
            }
            to_client.write_all(&buf[..n]).await?;
        }
    };
    tokio::try_join!(upstream, downstream).map(drop)
}

/// Whether `chunk`, after what the client sent before (its last bytes kept
/// in `tail`), ends a message's data: `CRLF . CRLF`, which dot-stuffing
/// keeps out of the data itself.
fn ends_data(tail: &mut Vec<u8>, chunk: &[u8]) -> bool {
    const END: &[u8] = b"\r\n.\r\n";
    tail.extend_from_slice(chunk);
    let ended = tail.windows(END.len()).any(|w| w == END);
    let keep = tail.len().saturating_sub(END.len() - 1);
    tail.drain(..keep);
    ended
}

/// A message whose answer the relay holds, counted while it lives (also
/// when its connection breaks meanwhile).
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.taken.fetch_add(1, Ordering::SeqCst);
        let now = shared.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_waiting.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_the_data_is_found_across_chunks_and_only_there() {
        let mut tail = Vec::new();
        assert!(!ends_data(
            &mut tail,
            b"DATA\r\nSubject: x\r\n\r\n..dot\r\n"
        ));
        assert!(!ends_data(&mut tail, b"body\r"));
        assert!(ends_data(&mut tail, b"\n.\r\n"));
        assert!(!ends_data(&mut tail, b"QUIT\r\n"));
    }
}
