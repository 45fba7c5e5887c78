//! The per-client limit on booking submissions (PRODUCT.md §5a "Limits").
//!
//! A route layer on `POST /v1/shows/{id}/bookings` checks the client's
//! bucket before the body is read: a refused request costs no parsing and
//! records nothing. Clients are told the limit with the `RateLimit-Policy`
//! and `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-10.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use shared::config::{RateLimitSettings, TrustedProxies};
use shared::service::Tasks;

use crate::error::ApiError;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The policy's name in the `RateLimit-Policy` and `RateLimit` fields.
const POLICY: &str = "bookings";

/// Stands for the peer when the app is served without connect info (an
/// embedding that did not ask for it): such requests share one bucket,
/// so the limit still holds rather than silently lapsing.
const UNKNOWN_PEER: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// One bucket per client address.
pub struct Limiter {
    buckets: RateLimiter<
        IpAddr,
        DefaultKeyedStateStore<IpAddr>,
        DefaultClock,
        StateInformationMiddleware,
    >,
    trusted: TrustedProxies,
    /// The `RateLimit-Policy` value, the same on every answer.
    policy: HeaderValue,
    /// How long an emptied bucket takes to fill up again.
    refill: Duration,
}

impl Limiter {
    pub fn new(settings: RateLimitSettings, trusted: TrustedProxies) -> Self {
        let quota = Quota::per_second(settings.per_second).allow_burst(settings.burst);
        let refill = quota.burst_size_replenished_in();
        // A bucket of B refilled at R a second never refuses B requests
        // within a window of B/R seconds: that is the policy clients get,
        // the window rounded up to whole seconds as the draft requires.
        let window = whole_seconds(refill);
        let policy = format!("\"{POLICY}\";q={};w={window}", settings.burst);
        Self {
            buckets: RateLimiter::dashmap(quota).with_middleware(),
            trusted,
            policy: HeaderValue::from_str(&policy).expect("digits and a token"),
            refill,
        }
    }

    /// Takes one request from `client`'s bucket: `Ok` with what remains,
    /// or `Err` with the whole seconds (at least 1) until one is allowed.
    fn take(&self, client: IpAddr) -> Result<u32, u64> {
        match self.buckets.check_key(&client) {
            Ok(state) => Ok(state.remaining_burst_capacity()),
            Err(refused) => {
                let wait = refused.wait_time_from(self.buckets.clock().now());
                Err(whole_seconds(wait).max(1))
            }
        }
    }

    /// The `RateLimit-Policy` and `RateLimit` fields: what remains and,
    /// when refused, how long until more (the same as `Retry-After`).
    fn describe(&self, headers: &mut HeaderMap, remaining: u32, retry_after: Option<u64>) {
        let limit = match retry_after {
            Some(seconds) => format!("\"{POLICY}\";r={remaining};t={seconds}"),
            None => format!("\"{POLICY}\";r={remaining}"),
        };
        headers.insert(RATELIMIT_POLICY.clone(), self.policy.clone());
        headers.insert(
            RATELIMIT.clone(),
            HeaderValue::from_str(&limit).expect("digits and a token"),
        );
    }
}

/// `duration` rounded up to whole seconds, as the header fields count.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The route layer: refuses a client past its limit with `429`, before the
/// handler reads anything.
pub async fn check(State(limiter): State<Arc<Limiter>>, request: Request, next: Next) -> Response {
    let client = client_of(&request, &limiter.trusted);
    match limiter.take(client) {
        Ok(remaining) => {
            let mut response = next.run(request).await;
            limiter.describe(response.headers_mut(), remaining, None);
            response
        }
        Err(retry_after) => {
            let mut response = ApiError::RateLimited { retry_after }.into_response();
            limiter.describe(response.headers_mut(), 0, Some(retry_after));
            response
        }
    }
}

/// Forgets the clients whose bucket is full again, once per refill time
/// (at least a second), on `tasks` until shutdown: the limiter then holds
/// only the clients seen in about the last two refill times.
pub fn spawn_pruning(limiter: Arc<Limiter>, tasks: &Tasks) {
    tasks.spawn(|shutdown| async move {
        let mut every = tokio::time::interval(limiter.refill.max(Duration::from_secs(1)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            limiter.buckets.retain_recent();
            limiter.buckets.shrink_to_fit();
            metrics::gauge!("api_rate_limit_clients").set(limiter.buckets.len() as f64);
        }
    });
}

/// The client address of `request` ([`client_address`]).
pub fn client_of(request: &Request, trusted: &TrustedProxies) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(UNKNOWN_PEER, |ConnectInfo(addr)| addr.ip());
    let forwarded = request.headers().get_all(&X_FORWARDED_FOR).iter();
    client_address(peer, forwarded, trusted)
}

/// The address a request is limited by: the peer, unless the peer is a
/// trusted proxy; then the right-most `X-Forwarded-For` hop that is not a
/// trusted proxy. Each proxy appends the address it got the request from,
/// so the hops right of the client were written by trusted proxies and
/// anything left of it by the client (who may write anything there). A hop
/// that is not an IP address ends the walk at the last trusted address
/// checked; the header is ignored entirely from an untrusted peer.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted.contains(client) {
        return client;
    }
    for field in forwarded.rev() {
        let Ok(hops) = field.to_str() else {
            return client;
        };
        for hop in hops.rsplit(',') {
            let Ok(hop) = hop.trim().parse::<IpAddr>() else {
                return client;
            };
            client = hop.to_canonical();
            if !trusted.contains(client) {
                return client;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use proptest::prelude::*;

    use super::*;

    fn trusted() -> TrustedProxies {
        "10.0.0.0/8, 192.0.2.1, fd00::/8".parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn from(peer: &str, fields: &[&str]) -> IpAddr {
        let fields: Vec<HeaderValue> = fields
            .iter()
            .map(|f| HeaderValue::from_str(f).unwrap())
            .collect();
        client_address(ip(peer), fields.iter(), &trusted())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(from("198.51.100.7", &["203.0.113.9"]), ip("198.51.100.7"));
        assert_eq!(from("198.51.100.7", &[]), ip("198.51.100.7"));
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_right_most_untrusted_hop() {
        assert_eq!(from("10.0.0.2", &["203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(
            from("10.0.0.2", &["203.0.113.9, 192.0.2.1, 10.5.5.5"]),
            ip("203.0.113.9")
        );
        // What the client wrote itself, left of its own address, is ignored.
        assert_eq!(
            from("10.0.0.2", &["1.1.1.1, 8.8.8.8,203.0.113.9, 10.5.5.5"]),
            ip("203.0.113.9")
        );
        // Several fields are one list, in order.
        assert_eq!(
            from("10.0.0.2", &["1.1.1.1, 203.0.113.9", "10.5.5.5"]),
            ip("203.0.113.9")
        );
        assert_eq!(from("fd00::1", &["2001:db8::7"]), ip("2001:db8::7"));
    }

    #[test]
    fn an_unreadable_hop_ends_the_walk_at_the_last_trusted_address() {
        assert_eq!(from("10.0.0.2", &["203.0.113.9, junk"]), ip("10.0.0.2"));
        assert_eq!(
            from("10.0.0.2", &["203.0.113.9, unknown, 10.5.5.5"]),
            ip("10.5.5.5")
        );
        assert_eq!(from("10.0.0.2", &["203.0.113.9,"]), ip("10.0.0.2"));
        let opaque = HeaderValue::from_bytes(b"203.0.113.9, \xff").unwrap();
        assert_eq!(
            client_address(ip("10.0.0.2"), [opaque].iter(), &trusted()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn without_forwarded_hops_or_with_only_trusted_ones_the_last_proxy_is_the_client() {
        assert_eq!(from("10.0.0.2", &[]), ip("10.0.0.2"));
        assert_eq!(from("10.0.0.2", &["192.0.2.1, 10.0.0.3"]), ip("192.0.2.1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_are_their_ipv4_addresses() {
        assert_eq!(
            from("::ffff:10.0.0.2", &["::ffff:203.0.113.9"]),
            ip("203.0.113.9")
        );
        assert_eq!(from("::ffff:198.51.100.7", &[]), ip("198.51.100.7"));
    }

    #[test]
    fn the_policy_advertises_the_burst_over_the_whole_seconds_it_takes_to_refill() {
        let policy = |per_second: u32, burst: u32| {
            let settings = RateLimitSettings {
                per_second: NonZeroU32::new(per_second).unwrap(),
                burst: NonZeroU32::new(burst).unwrap(),
            };
            Limiter::new(settings, TrustedProxies::default()).policy
        };
        assert_eq!(policy(10, 20), "\"bookings\";q=20;w=2");
        assert_eq!(policy(3, 20), "\"bookings\";q=20;w=7");
        assert_eq!(policy(10, 1), "\"bookings\";q=1;w=1");
    }

    #[test]
    fn a_client_past_its_burst_waits_whole_seconds_and_others_are_not_affected() {
        let settings = RateLimitSettings {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(2).unwrap(),
        };
        let limiter = Limiter::new(settings, TrustedProxies::default());
        assert_eq!(limiter.take(ip("198.51.100.7")), Ok(1));
        assert_eq!(limiter.take(ip("198.51.100.7")), Ok(0));
        assert_eq!(limiter.take(ip("198.51.100.7")), Err(1));
        assert_eq!(limiter.take(ip("203.0.113.9")), Ok(1));
    }

    fn trusted_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::from([10, a, b, c])),
            Just(ip("192.0.2.1")),
            any::<u128>().prop_map(|bits| IpAddr::V6(((0xfd_u128 << 120) | (bits >> 8)).into())),
        ]
    }

    fn untrusted_ip() -> impl Strategy<Value = IpAddr> {
        any::<IpAddr>().prop_filter("untrusted", |ip| !trusted().contains(*ip))
    }

    /// Anything a client may write into the header: addresses or not.
    fn hop() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<IpAddr>().prop_map(|ip| ip.to_string()),
            "[ -+--~]{0,12}", // visible ASCII and spaces, no comma
        ]
    }

    fn fields(hops: &[String], cuts: &[usize]) -> Vec<HeaderValue> {
        let mut fields = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain([&hops.len()]) {
            let cut = cut.clamp(start, hops.len());
            if cut > start {
                fields.push(HeaderValue::from_str(&hops[start..cut].join(", ")).unwrap());
                start = cut;
            }
        }
        fields
    }

    proptest! {
        #[test]
        fn an_untrusted_peer_cannot_choose_its_address(
            peer in untrusted_ip(),
            hops in prop::collection::vec(hop(), 0..6),
        ) {
            let fields = fields(&hops, &[]);
            prop_assert_eq!(client_address(peer, fields.iter(), &trusted()), peer.to_canonical());
        }

        #[test]
        fn what_a_client_writes_left_of_its_address_never_changes_it(
            peer in trusted_ip(),
            spoofed in prop::collection::vec(hop(), 0..6),
            client in untrusted_ip(),
            proxies in prop::collection::vec(trusted_ip(), 0..4),
            cuts in prop::collection::vec(0..12_usize, 0..3),
        ) {
            let mut hops = spoofed;
            hops.push(client.to_string());
            hops.extend(proxies.iter().map(IpAddr::to_string));
            let fields = fields(&hops, &cuts);
            prop_assert_eq!(client_address(peer, fields.iter(), &trusted()), client.to_canonical());
        }

        #[test]
        fn the_client_is_the_peer_or_a_forwarded_hop_and_splitting_the_header_changes_nothing(
            peer in prop_oneof![trusted_ip(), untrusted_ip()],
            hops in prop::collection::vec(prop_oneof![hop(), trusted_ip().prop_map(|ip| ip.to_string())], 0..8),
            cuts in prop::collection::vec(0..10_usize, 0..4),
        ) {
            let whole = fields(&hops, &[]);
            let split = fields(&hops, &cuts);
            let client = client_address(peer, whole.iter(), &trusted());
            prop_assert_eq!(client_address(peer, split.iter(), &trusted()), client);
            let candidates: Vec<IpAddr> = std::iter::once(peer)
                .chain(hops.iter().filter_map(|h| h.trim().parse().ok()))
                .map(|ip: IpAddr| ip.to_canonical())
                .collect();
            prop_assert!(candidates.contains(&client), "{client} is none of {candidates:?}");
        }
    }
}
