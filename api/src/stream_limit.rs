//! Caps on open event streams (`GET /v1/bookings/{id}/events`,
//! `GET /v1/shows/{id}/events`).
//!
//! A stream holds a connection, a file descriptor and some memory for as
//! long as the client likes. Without a cap one client could open streams
//! until the process runs out of file descriptors (tried: 19,992 streams
//! from one address against a limit of 20,000), after which nobody can
//! book. So each client address may hold `STREAMS_PER_CLIENT` at once
//! (`429 too_many_streams` past it) and the process `MAX_STREAMS` in all
//! (`503 streams_unavailable`), by default half its file-descriptor limit:
//! well before the descriptors run out, the rest stay for bookings, the
//! database and the broker.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shared::config::{TrustedProxies, DEFAULT_MAX_STREAMS};

use crate::error::ApiError;
use crate::rate_limit;

/// Open streams, per client address and in all.
pub struct StreamLimit {
    per_client: usize,
    total: usize,
    trusted: TrustedProxies,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    by_client: HashMap<IpAddr, usize>,
    all: usize,
}

/// One open stream's place; given back when dropped.
pub struct Permit {
    limit: Arc<StreamLimit>,
    client: IpAddr,
}

impl StreamLimit {
    /// `total`: the configured cap, else half of `file_limit` up to
    /// [`DEFAULT_MAX_STREAMS`]; a configured cap never exceeds the file
    /// limit's half either, or the process would run out before refusing.
    pub fn new(
        per_client: usize,
        total: Option<usize>,
        file_limit: u64,
        trusted: TrustedProxies,
    ) -> Self {
        let half = usize::try_from(file_limit / 2).unwrap_or(usize::MAX);
        let total = total.unwrap_or(DEFAULT_MAX_STREAMS).min(half).max(1);
        Self {
            per_client,
            total,
            trusted,
            open: Mutex::default(),
        }
    }

    /// Streams the process holds at most.
    pub fn total(&self) -> usize {
        self.total
    }

    /// A place for one more stream of `client`, or why not.
    pub fn open(self: &Arc<Self>, client: IpAddr) -> Result<Permit, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.all >= self.total {
            return Err(ApiError::StreamsFull);
        }
        let held = open.by_client.entry(client).or_default();
        if *held >= self.per_client {
            return Err(ApiError::TooManyStreams(self.per_client));
        }
        *held += 1;
        open.all += 1;
        metrics::gauge!("api_open_streams").set(open.all as f64);
        Ok(Permit {
            limit: self.clone(),
            client,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self
            .limit
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = open.by_client.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                open.by_client.remove(&self.client);
            }
        }
        open.all -= 1;
        metrics::gauge!("api_open_streams").set(open.all as f64);
    }
}

/// The route layer of the stream routes: takes a place before the handler
/// runs and keeps it as long as the answer's body is being sent.
pub async fn check(
    State(limit): State<Arc<StreamLimit>>,
    request: Request,
    next: Next,
) -> Response {
    let client = rate_limit::client_of(&request, &limit.trusted);
    let permit = match limit.open(client) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    next.run(request).await.map(|body| {
        let stream = body.into_data_stream();
        Body::from_stream(futures::StreamExt::inspect(stream, move |_| {
            let _held = &permit;
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_client: usize, total: Option<usize>, files: u64) -> Arc<StreamLimit> {
        Arc::new(StreamLimit::new(
            per_client,
            total,
            files,
            TrustedProxies::default(),
        ))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_client_past_its_streams_is_refused_until_it_closes_one() {
        let limit = limit(2, None, 1_000);
        let first = limit.open(ip(1)).unwrap();
        let _second = limit.open(ip(1)).unwrap();
        assert!(matches!(
            limit.open(ip(1)),
            Err(ApiError::TooManyStreams(2))
        ));
        let _other = limit.open(ip(2)).expect("another client is not held up");
        drop(first);
        limit.open(ip(1)).expect("a closed stream frees its place");
    }

    #[test]
    fn past_the_process_cap_everyone_is_refused_with_503() {
        let limit = limit(10, Some(3), 1_000);
        let _held: Vec<Permit> = (1..=3).map(|i| limit.open(ip(i)).unwrap()).collect();
        assert!(matches!(limit.open(ip(9)), Err(ApiError::StreamsFull)));
    }

    #[test]
    fn the_cap_stays_at_half_the_file_limit_whatever_is_configured() {
        assert_eq!(limit(1, None, 20_000).total(), 10_000);
        assert_eq!(limit(1, Some(19_000), 20_000).total(), 10_000);
        assert_eq!(limit(1, Some(500), 20_000).total(), 500);
        assert_eq!(limit(1, None, 1 << 20).total(), DEFAULT_MAX_STREAMS);
    }
}
