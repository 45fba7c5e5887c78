//! A lean client for one booking's event stream, for `--streams`.
//!
//! The bench opens ten thousand streams on the two cores it shares with
//! the system under test, so whatever its own client spends per stream is
//! taken from the sale it measures. A general HTTP client spends a pool
//! checkout, a connection task beside the caller's and a channel hop per
//! body chunk on each connection; this one is the stream's task reading its
//! own socket. It speaks just the HTTP/1.1 the API answers a stream with: a
//! `GET`, a `200` head and a chunked `text/event-stream` body, split into
//! events by the harness's [`Decoder`] (the one the tests read with).

use std::net::SocketAddr;

use anyhow::{bail, ensure, Context};
use harness::sse::{Decoder, SseEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes asked of the socket per read: an event is under one KiB.
const READ_SIZE: usize = 2048;

/// Where the API listens, as a stream's request names it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    /// The `Host` header.
    host: String,
}

impl Endpoint {
    /// The API at `base_url` (`http://host:port`).
    pub fn of(base_url: &str) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(base_url).context("the API's URL")?;
        let addr = *url
            .socket_addrs(|| None)?
            .first()
            .context("the API's URL names no address")?;
        let host = format!("{}:{}", url.host_str().unwrap_or_default(), addr.port());
        Ok(Self { addr, host })
    }
}

/// An open stream.
pub struct EventStream {
    socket: TcpStream,
    /// Bytes read and not yet taken apart.
    raw: Vec<u8>,
    body: Chunked,
    events: Decoder,
}

impl EventStream {
    /// Opens the event stream of booking `id`; anything but a `200`
    /// chunked answer is an error.
    pub async fn open(api: &Endpoint, id: &str) -> anyhow::Result<Self> {
        let mut socket = TcpStream::connect(api.addr).await?;
        socket.set_nodelay(true)?;
        let request = format!(
            "GET /v1/bookings/{id}/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            api.host
        );
        socket.write_all(request.as_bytes()).await?;
        let mut raw = Vec::with_capacity(READ_SIZE);
        loop {
            raw.reserve(READ_SIZE);
            if socket.read_buf(&mut raw).await? == 0 {
                bail!("the connection closed before the response's head");
            }
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut head = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(len) = head.parse(&raw)? else {
                continue;
            };
            ensure!(head.code == Some(200), "answered {:?}", head.code);
            let chunked = head.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    && h.value.eq_ignore_ascii_case(b"chunked")
            });
            ensure!(chunked, "the stream's body is not chunked");
            raw.drain(..len);
            return Ok(Self {
                socket,
                raw,
                body: Chunked::default(),
                events: Decoder::default(),
            });
        }
    }

    /// The next event, or `None` once the server has ended the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            let taken = self.body.decode(&self.raw, &mut self.events)?;
            self.raw.drain(..taken);
            if let Some(event) = self.events.next_event() {
                return Ok(Some(event));
            }
            if self.body.ended() {
                return Ok(None);
            }
            self.raw.reserve(READ_SIZE);
            if self.socket.read_buf(&mut self.raw).await? == 0 {
                bail!("the connection closed inside the stream");
            }
        }
    }
}

/// A chunked body (RFC 9112 §7.1) taken apart as its bytes arrive.
#[derive(Debug, Default)]
struct Chunked {
    at: At,
}

/// Where the body is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before a chunk's size line.
    #[default]
    Head,
    /// Inside a chunk, with this many bytes still to come.
    Data(usize),
    /// After a chunk's bytes, before its closing CRLF.
    DataEnd,
    /// The last (empty) chunk has come: the server ended the stream.
    Done,
}

impl Chunked {
    /// Hands the chunks' bytes in `raw` to `events`, and answers how much
    /// of `raw` it took: the rest does not yet make a whole size line or
    /// chunk end.
    fn decode(&mut self, raw: &[u8], events: &mut Decoder) -> anyhow::Result<usize> {
        let mut taken = 0;
        loop {
            let rest = &raw[taken..];
            match self.at {
                At::Head => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        break;
                    };
                    let line = std::str::from_utf8(&rest[..end])?;
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(size, 16)
                        .with_context(|| format!("a chunk's size line {line:?}"))?;
                    taken += end + 2;
                    self.at = if size == 0 { At::Done } else { At::Data(size) };
                }
                At::Data(left) => {
                    let take = left.min(rest.len());
                    if take == 0 {
                        break;
                    }
                    events.push(&rest[..take]);
                    taken += take;
                    self.at = if take == left {
                        At::DataEnd
                    } else {
                        At::Data(left - take)
                    };
                }
                At::DataEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    ensure!(&rest[..2] == b"\r\n", "a chunk without its closing CRLF");
                    taken += 2;
                    self.at = At::Head;
                }
                At::Done => break,
            }
        }
        Ok(taken)
    }

    fn ended(&self) -> bool {
        self.at == At::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two events and a keep-alive in three chunks, the second event split
    /// across two of them, then the last chunk.
    const BODY: &[u8] = b"1e\r\nevent: booking\ndata: {\"a\":1}\n\n\r\n\
        19;ext=1\r\n:\n\nevent: booking\ndata: {\r\n\
        8\r\n\"b\":2}\n\n\r\n\
        0\r\n\r\n";

    fn events_of(pieces: impl IntoIterator<Item = Vec<u8>>) -> (Vec<String>, bool) {
        let (mut body, mut events, mut raw, mut seen) = (
            Chunked::default(),
            Decoder::default(),
            Vec::new(),
            Vec::new(),
        );
        for piece in pieces {
            raw.extend_from_slice(&piece);
            let taken = body.decode(&raw, &mut events).expect("a well-formed body");
            raw.drain(..taken);
            while let Some(event) = events.next_event() {
                seen.push(event.data);
            }
        }
        (seen, body.ended())
    }

    #[test]
    fn events_come_out_whole_however_the_chunks_arrive() {
        let whole = (vec![r#"{"a":1}"#.to_owned(), r#"{"b":2}"#.to_owned()], true);
        for size in 1..=BODY.len() {
            let pieces = BODY.chunks(size).map(<[u8]>::to_vec);
            assert_eq!(events_of(pieces), whole, "read {size} bytes at a time");
        }
    }

    #[test]
    fn a_size_line_that_is_not_hex_is_an_error() {
        let mut events = Decoder::default();
        assert!(Chunked::default()
            .decode(b"zz\r\nabc", &mut events)
            .is_err());
    }
}
