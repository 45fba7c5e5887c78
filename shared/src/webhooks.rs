//! Webhooks (docs/API.md#webhooks): the event types endpoints subscribe to, the
//! states of a delivery, and which destinations may be called. The API
//! checks a URL when an endpoint is registered and the notifier again
//! before every POST, since what a name resolves to can change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::lifecycle::EventKind;
use crate::names::named_enum;

/// Secrets are `whsec_` followed by the base64 of the signing key.
pub const SECRET_PREFIX: &str = "whsec_";

/// Advisory lock taken by whoever changes whether `webhooks.events` is
/// bound: the api creating an endpoint (insert, then bind) and a notifier
/// checking (read, then bind or unbind). Without it a notifier could read
/// "no endpoint" just before a creation and unbind just after its bind.
pub const ROUTING_LOCK: i64 = 0x7765_626b_686f_6f6b;

named_enum! {
    /// What an endpoint can subscribe to; the `type` of a webhook payload.
    pub enum WebhookEvent {
        Held = "booking.held",
        Rejected = "booking.rejected",
        Waitlisted = "booking.waitlisted",
        Confirmed = "booking.confirmed",
        Cancelled = "booking.cancelled",
        Expired = "booking.expired",
    }
}

impl WebhookEvent {
    /// The webhook type of a booking event, if it has one. An offer holds
    /// tickets for a waitlisted booking, so it is a `booking.held`; a
    /// declined payment leaves the booking held and reminders change
    /// nothing, so neither is sent.
    pub fn for_event(kind: EventKind) -> Option<Self> {
        match kind {
            EventKind::Held | EventKind::Offered => Some(Self::Held),
            EventKind::Rejected => Some(Self::Rejected),
            EventKind::Waitlisted => Some(Self::Waitlisted),
            EventKind::Confirmed => Some(Self::Confirmed),
            EventKind::Cancelled => Some(Self::Cancelled),
            EventKind::Expired => Some(Self::Expired),
            EventKind::PaymentDeclined | EventKind::Reminder => None,
        }
    }

    /// Routing keys on `booking.events` of every event that has a webhook.
    pub fn routing_keys() -> impl Iterator<Item = String> {
        EventKind::ALL
            .iter()
            .filter(|kind| Self::for_event(**kind).is_some())
            .map(|kind| kind.routing_key())
    }
}

named_enum! {
    /// Where one event's delivery to one endpoint stands.
    pub enum DeliveryStatus {
        /// Not yet answered with a 2xx; attempted again when due.
        Pending = "pending",
        Delivered = "delivered",
        /// Retried for `WEBHOOK_RETRY_FOR_SECONDS` without a 2xx.
        Failed = "failed",
        /// Its endpoint was deleted first.
        Cancelled = "cancelled",
    }
}

/// Why a webhook URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("not a URL: {0}")]
    Malformed(#[from] url::ParseError),
    #[error("the scheme must be http or https")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("the host does not resolve: {0}")]
    Unresolvable(#[source] std::io::Error),
    #[error("{0} is a loopback, private or reserved address")]
    NotPublic(IpAddr),
}

/// Parses `url` and, unless `allow_private`, refuses it if its host is or
/// resolves to an address that is not public.
pub async fn check_destination(url: &str, allow_private: bool) -> Result<Url, DestinationError> {
    let url = Url::parse(url)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DestinationError::Scheme);
    }
    let host = url.host().ok_or(DestinationError::NoHost)?;
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match host {
        Host::Ipv4(ip) => vec![ip.into()],
        Host::Ipv6(ip) => vec![ip.into()],
        Host::Domain(name) => tokio::net::lookup_host((name, port))
            .await
            .map_err(DestinationError::Unresolvable)?
            .map(|a| a.ip())
            .collect(),
    };
    match addrs.into_iter().find(|ip| !is_public(*ip)) {
        Some(ip) => Err(DestinationError::NotPublic(ip)),
        None => Ok(url),
    }
}

/// Whether an address is on the public internet: not loopback, private
/// (RFC 1918, fc00::/7), link-local, shared (CGNAT), unspecified,
/// broadcast, documentation, benchmarking, multicast or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", unspecified
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || ip.is_multicast()
        || a >= 240) // reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || ip.is_multicast()
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.1",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "100.128.0.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn loopback_names_and_other_schemes_are_refused() {
        let refused = |url: &'static str| async move {
            check_destination(url, false).await.unwrap_err().to_string()
        };
        assert!(refused("http://localhost:9/hook")
            .await
            .contains("loopback"));
        assert!(refused("http://[::1]/").await.contains("loopback"));
        assert!(refused("ftp://example.com/").await.contains("scheme"));
        assert!(refused("not a url").await.contains("not a URL"));
        assert!(check_destination("http://localhost:9/hook", true)
            .await
            .is_ok());
    }

    #[test]
    fn every_webhook_type_has_an_event_and_offers_are_holds() {
        let mapped: Vec<_> = EventKind::ALL
            .iter()
            .filter_map(|k| WebhookEvent::for_event(*k))
            .collect();
        for event in WebhookEvent::ALL {
            assert!(mapped.contains(event), "{event}");
        }
        assert_eq!(
            WebhookEvent::for_event(EventKind::Offered),
            Some(WebhookEvent::Held)
        );
        assert!(WebhookEvent::routing_keys().any(|k| k == "booking.offered"));
        assert!(!WebhookEvent::routing_keys().any(|k| k == "booking.reminder"));
    }
}
