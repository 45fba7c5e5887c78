//! A small Server-Sent Events reader for the event streams,
//! for the tests and the benchmark: reads the response body chunk by chunk
//! and splits it into events (`text/event-stream`, lines ending in `\n`).
//! The [`Decoder`] alone serves clients that read the bytes themselves.

use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`None` means the default, `message`).
    pub event: Option<String>,
    /// The `data:` lines, joined by `\n`.
    pub data: String,
}

impl SseEvent {
    /// The data as JSON (a booking, for the booking stream).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

/// An open event stream.
pub struct EventStream {
    response: Response,
    decoder: Decoder,
}

/// Splits the bytes of an event stream into events, whatever the pieces
/// they arrive in.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
    /// Comment lines (`:` keep-alives) seen so far.
    pub comments: usize,
}

/// A client for streams: no overall timeout, since a stream lasts as long
/// as its booking is undecided (callers bound each read instead).
pub fn client() -> Client {
    Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("building an HTTP client")
}

impl EventStream {
    /// Opens `url`; a response that is not a `200` event stream is handed
    /// back as it is (a 404 problem, say).
    pub async fn open(client: &Client, url: &str) -> Result<Self, Response> {
        Self::open_with(client.get(url)).await
    }

    /// [`open`](Self::open) with a request of the caller's (extra headers).
    pub async fn open_with(request: RequestBuilder) -> Result<Self, Response> {
        let response = request
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap_or_else(|e| panic!("opening an event stream: {e}"));
        let is_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if response.status() != 200 || !is_stream {
            return Err(response);
        }
        Ok(Self {
            response,
            decoder: Decoder::default(),
        })
    }

    /// Comment lines (`:` keep-alives) seen so far.
    pub fn comments(&self) -> usize {
        self.decoder.comments
    }

    /// The next event, or `None` once the server has ended the stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.decoder.next_event() {
                return Some(event);
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.decoder.push(&chunk),
                Ok(None) => return None,
                Err(e) => panic!("reading the event stream: {e}"),
            }
        }
    }

    /// [`next`](Self::next), failing the test after `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Option<SseEvent> {
        tokio::time::timeout(limit, self.next())
            .await
            .unwrap_or_else(|_| panic!("no event and no end of stream within {limit:?}"))
    }
}

impl Decoder {
    /// Takes in the next bytes of the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole event in what was pushed so far.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            if let Some(event) = self.parse(&block[..end]) {
                return Some(event);
            }
        }
        None
    }

    /// One block of lines: an event, or `None` if it held only comments.
    fn parse(&mut self, block: &[u8]) -> Option<SseEvent> {
        let text = std::str::from_utf8(block).expect("event streams are UTF-8");
        let mut event = None;
        let mut data: Option<String> = None;
        for line in text.split('\n') {
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = Some(value.to_owned()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
        Some(SseEvent { event, data: data? })
    }
}
