//! One typed configuration struct, read from the environment (docs/CONFIGURATION.md, docs/API.md#runtime-contract).

use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU16, NonZeroU32};
use std::str::FromStr;
use std::time::Duration;

pub use secrecy::{ExposeSecret, SecretString};

/// A variable that is missing or does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// Settings of all three services. Each service reads only what it needs;
/// the rest keeps its default, so one `.env` can serve the whole system.
/// What may hold a password or a token is a [`SecretString`]: its `Debug`
/// prints `[REDACTED]`, so neither a log line nor a panic shows it, and
/// every use spells out `expose_secret()`.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: SecretString,
    /// Replicas for the api's reads that may lag (`DATABASE_READ_URL`): the
    /// show list, a show's page and its seat map. `None`: the primary.
    pub database_read_url: Option<SecretString>,
    /// One RabbitMQ node, or the nodes of a cluster, comma separated.
    pub amqp_url: SecretString,
    /// Replicas of each quorum queue (`QUORUM_INITIAL_GROUP_SIZE`); `None`:
    /// the broker's default.
    pub quorum_initial_group_size: Option<NonZeroU16>,
    pub smtp_url: SecretString,
    pub mail_from: String,
    pub email_concurrency: EmailConcurrency,
    /// The bootstrap admin's bearer token; the api refuses to start
    /// without it.
    pub admin_token: Option<SecretString>,
    pub api_addr: SocketAddr,
    /// Where a worker or notifier serves `/healthz`, `/readyz`, `/metrics`.
    pub metrics_addr: SocketAddr,
    pub hold_duration: Duration,
    pub reminder_lead: Duration,
    /// Number of booking-request shard queues (fixed per deployment).
    pub shards: u16,
    /// Unacknowledged messages a consumer may hold per queue.
    pub prefetch: u16,
    /// Deliveries after which the broker dead-letters a message that keeps
    /// crashing its consumer.
    pub delivery_limit: u32,
    /// Attempts a worker makes at one message before dead-lettering it.
    pub max_attempts: u32,
    pub db_pool_size: u32,
    /// Queued bookings older than this are republished (API crash recovery).
    pub requeue_after: Duration,
    /// The longest the api takes over a request before it answers `503`
    /// (`REQUEST_TIMEOUT_SECONDS`): a database or broker that stops
    /// answering never holds a client past it. It leaves room for a whole
    /// publish budget ([`crate::amqp::PUBLISH_BUDGET`]).
    pub request_timeout: Duration,
    /// After SIGTERM, how long a process may drain before it exits anyway.
    pub shutdown_grace: Duration,
    /// How long one refund call to the payment gateway may take before it
    /// counts as failed and is retried.
    pub refund_timeout: Duration,
    pub test_gateway: TestGatewaySettings,
    /// How often an idle event stream (`GET /v1/bookings/{id}/events`)
    /// sends a keep-alive comment.
    pub sse_keep_alive: Duration,
    pub webhooks: WebhookSettings,
    /// The per-client limit on booking submissions; `None` when
    /// `RATE_LIMIT_PER_SECOND` or `RATE_LIMIT_BURST` is 0 (off).
    pub rate_limit: Option<RateLimitSettings>,
    /// Peers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// Event streams one client address may hold open at once
    /// (`STREAMS_PER_CLIENT`): past it, `429`.
    pub streams_per_client: usize,
    /// Event streams one api process holds open at most (`MAX_STREAMS`);
    /// `None` (unset or 0): half the process's file-descriptor limit, up to
    /// [`DEFAULT_MAX_STREAMS`]. Past it, `503`.
    pub max_streams: Option<usize>,
}

/// [`Config::streams_per_client`] unless `STREAMS_PER_CLIENT` says
/// otherwise: a household or an office behind one address, each person
/// with a booking page and a show page open, stays far inside it.
pub const DEFAULT_STREAMS_PER_CLIENT: usize = 100;
/// The most [`Config::max_streams`] defaults to, however many file
/// descriptors the process may open (about 18 kB of memory each).
pub const DEFAULT_MAX_STREAMS: usize = 50_000;

/// Booking submissions one client address may make: a bucket of `burst`
/// requests, refilled at `per_second`.
///
/// The defaults (10 a second, 20 at once) are far above what one person
/// does, yet leave room for the many customers behind one address (an
/// office, a carrier's NAT) pressing "book" together when a sale opens,
/// while one client alone cannot flood the queue and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// [`Config::rate_limit`] unless `RATE_LIMIT_PER_SECOND` says otherwise.
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 10;
/// [`Config::rate_limit`] unless `RATE_LIMIT_BURST` says otherwise.
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 20;

/// The proxies in front of the api, as IP addresses and CIDR networks:
/// comma separated, e.g. `10.0.0.0/8, 192.0.2.7`. Only a request from one
/// of them has its `X-Forwarded-For` read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Whether `ip` (IPv4-mapped IPv6 counts as the IPv4 address) is a
    /// trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("{entry:?} is neither an IP address nor a CIDR network (e.g. 192.0.2.7 or 10.0.0.0/8)")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Emails a notifier sends at once (`EMAIL_CONCURRENCY`), each on an SMTP
/// connection of its own.
///
/// A slow relay (hundreds of milliseconds per message) needs several sends
/// in flight to keep up with a sale, but every one of them can be repeated:
/// a crash after the relay took an email and before its record commits
/// sends it again. So the setting is also the most emails a notifier crash
/// can repeat, and it is bounded: relays limit the connections of one
/// client too (Postfix's default is 50).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmailConcurrency(NonZeroU16);

impl EmailConcurrency {
    pub const DEFAULT: Self = Self(NonZeroU16::new(8).unwrap());
    pub const MAX: u16 = 64;

    pub fn get(self) -> u16 {
        self.0.get()
    }
}

impl FromStr for EmailConcurrency {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let out_of_range = || format!("must be a whole number from 1 to {}", Self::MAX);
        let n: u16 = value.trim().parse().map_err(|_| out_of_range())?;
        NonZeroU16::new(n)
            .filter(|n| n.get() <= Self::MAX)
            .map(Self)
            .ok_or_else(out_of_range)
    }
}

/// How the notifier delivers webhooks (and the API vets their URLs).
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings {
    /// Let endpoints on loopback, private and other non-public addresses
    /// be registered and called (development and tests).
    pub allow_private_networks: bool,
    /// How long one POST may take before it counts as failed.
    pub timeout: Duration,
    /// Longest wait between two attempts (the backoff starts at 1 s).
    pub backoff_max: Duration,
    /// How long after its first attempt a delivery is retried before it
    /// fails and is dead-lettered.
    pub retry_for: Duration,
    /// Booking requests waiting in the shard queues from which on the
    /// notifier paces webhooks to let the sale go first; 0: never.
    pub sale_backlog: u32,
    /// Webhook events a notifier fans out per second while it paces them.
    pub sale_rate: u64,
}

/// [`Config::sse_keep_alive`] unless `SSE_KEEP_ALIVE_SECONDS` says otherwise.
pub const DEFAULT_SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Switches of the built-in test payment gateway, so tests and demos can
/// play a gateway outage or a slow gateway.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestGatewaySettings {
    /// Every refund fails as if the gateway were unreachable.
    pub refunds_down: bool,
    /// Each refund takes this long (after the gateway recorded it).
    pub refund_delay: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            database_url: required("DATABASE_URL")?.into(),
            database_read_url: std::env::var("DATABASE_READ_URL")
                .ok()
                .filter(|url| !url.is_empty())
                .map(SecretString::from),
            amqp_url: amqp_url()?,
            quorum_initial_group_size: parsed::<u16>("QUORUM_INITIAL_GROUP_SIZE", "0")
                .map(NonZeroU16::new)?,
            smtp_url: or("SMTP_URL", "smtp://127.0.0.1:1025").into(),
            mail_from: or("MAIL_FROM", "Booking <tickets@booking.local>"),
            email_concurrency: parsed(
                "EMAIL_CONCURRENCY",
                &EmailConcurrency::DEFAULT.get().to_string(),
            )?,
            admin_token: std::env::var("ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
            api_addr: parsed("API_ADDR", "127.0.0.1:8080")?,
            metrics_addr: parsed("METRICS_ADDR", "127.0.0.1:9100")?,
            hold_duration: Duration::from_secs(parsed("HOLD_SECONDS", "300")?),
            reminder_lead: Duration::from_secs(parsed("REMINDER_LEAD_SECONDS", "86400")?),
            shards: parsed("SHARDS", "16")?,
            prefetch: parsed("PREFETCH", "200")?,
            delivery_limit: parsed("DELIVERY_LIMIT", "10")?,
            max_attempts: parsed("MAX_ATTEMPTS", "5")?,
            db_pool_size: parsed("DB_POOL_SIZE", "16")?,
            requeue_after: Duration::from_secs(parsed("REQUEUE_AFTER_SECONDS", "120")?),
            request_timeout: request_timeout()?,
            shutdown_grace: Duration::from_secs(parsed("SHUTDOWN_GRACE_SECONDS", "30")?),
            refund_timeout: Duration::from_secs(parsed("REFUND_TIMEOUT_SECONDS", "30")?),
            test_gateway: TestGatewaySettings {
                refunds_down: parsed("TEST_GATEWAY_REFUNDS_DOWN", "false")?,
                refund_delay: Duration::from_millis(parsed("TEST_GATEWAY_REFUND_DELAY_MS", "0")?),
            },
            webhooks: WebhookSettings {
                allow_private_networks: parsed("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "false")?,
                timeout: Duration::from_secs(parsed("WEBHOOK_TIMEOUT_SECONDS", "10")?),
                backoff_max: Duration::from_secs(parsed("WEBHOOK_BACKOFF_MAX_SECONDS", "300")?),
                retry_for: Duration::from_secs(parsed("WEBHOOK_RETRY_FOR_SECONDS", "3900")?),
                sale_backlog: parsed("WEBHOOK_SALE_BACKLOG", "1000")?,
                sale_rate: positive("WEBHOOK_SALE_RATE", "50")?,
            },
            sse_keep_alive: Duration::from_secs(positive(
                "SSE_KEEP_ALIVE_SECONDS",
                &DEFAULT_SSE_KEEP_ALIVE.as_secs().to_string(),
            )?),
            rate_limit: rate_limit()?,
            trusted_proxies: parsed("TRUSTED_PROXIES", "")?,
            streams_per_client: positive(
                "STREAMS_PER_CLIENT",
                &DEFAULT_STREAMS_PER_CLIENT.to_string(),
            )? as usize,
            max_streams: Some(parsed("MAX_STREAMS", "0")?).filter(|&max: &usize| max > 0),
        })
    }
}

/// `AMQP_URL`, checked node by node; a bad one is reported without its
/// value, which holds a password.
fn amqp_url() -> Result<SecretString, ConfigError> {
    let urls = or("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    match urls.parse::<crate::amqp::nodes::Nodes>() {
        Ok(_) => Ok(urls.into()),
        Err(err) => Err(ConfigError::Invalid {
            name: "AMQP_URL",
            value: "[REDACTED]".to_owned(),
            reason: err.to_string(),
        }),
    }
}

/// [`Config::request_timeout`] unless `REQUEST_TIMEOUT_SECONDS` says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `REQUEST_TIMEOUT_SECONDS`: a publish budget and then some, or a booking
/// whose publish is still being tried elsewhere would be cut off.
fn request_timeout() -> Result<Duration, ConfigError> {
    let name = "REQUEST_TIMEOUT_SECONDS";
    let seconds: u64 = parsed(name, &DEFAULT_REQUEST_TIMEOUT.as_secs().to_string())?;
    let timeout = Duration::from_secs(seconds);
    let least = crate::amqp::PUBLISH_BUDGET + Duration::from_secs(2);
    if timeout < least {
        return Err(ConfigError::Invalid {
            name,
            value: seconds.to_string(),
            reason: format!(
                "must be at least {} s: the publish budget of {} s, and time to record and answer",
                least.as_secs(),
                crate::amqp::PUBLISH_BUDGET.as_secs()
            ),
        });
    }
    Ok(timeout)
}

/// `RATE_LIMIT_PER_SECOND` and `RATE_LIMIT_BURST`; 0 in either turns the
/// limit off.
fn rate_limit() -> Result<Option<RateLimitSettings>, ConfigError> {
    let per_second: u32 = parsed(
        "RATE_LIMIT_PER_SECOND",
        &DEFAULT_RATE_LIMIT_PER_SECOND.to_string(),
    )?;
    let burst: u32 = parsed("RATE_LIMIT_BURST", &DEFAULT_RATE_LIMIT_BURST.to_string())?;
    Ok(NonZeroU32::new(per_second)
        .zip(NonZeroU32::new(burst))
        .map(|(per_second, burst)| RateLimitSettings { per_second, burst }))
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))
}

fn or(name: &'static str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn positive(name: &'static str, default: &str) -> Result<u64, ConfigError> {
    match parsed(name, default)? {
        0 => Err(ConfigError::Invalid {
            name,
            value: "0".to_owned(),
            reason: "must be at least 1".to_owned(),
        }),
        n => Ok(n),
    }
}

fn parsed<T>(name: &'static str, default: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let value = or(name, default);
    value.parse().map_err(|e: T::Err| ConfigError::Invalid {
        name,
        reason: e.to_string(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_are_addresses_and_networks_of_both_families() {
        let trusted: TrustedProxies = " 10.0.0.0/8, 192.0.2.7,2001:db8::/32 ,".parse().unwrap();
        for inside in ["10.1.2.3", "192.0.2.7", "2001:db8::1", "::ffff:10.9.9.9"] {
            assert!(trusted.contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "127.0.0.1"] {
            assert!(!trusted.contains(outside.parse().unwrap()), "{outside}");
        }
        assert_eq!("".parse::<TrustedProxies>(), Ok(TrustedProxies::default()));
    }

    #[test]
    fn email_concurrency_is_from_1_to_its_maximum() {
        for (value, n) in [("1", 1), (" 8 ", 8), ("64", EmailConcurrency::MAX)] {
            assert_eq!(
                value.parse::<EmailConcurrency>().map(EmailConcurrency::get),
                Ok(n)
            );
        }
        for bad in ["0", "65", "-1", "eight", ""] {
            let err = bad.parse::<EmailConcurrency>().unwrap_err();
            assert_eq!(err, "must be a whole number from 1 to 64", "{bad:?}");
        }
    }

    #[test]
    fn a_trusted_proxy_that_is_not_an_address_or_network_is_refused_by_name() {
        for bad in [
            "10.0.0.0/33",
            "proxy.example.com",
            "10.0.0.1, 300.1.1.1",
            "10.0.0.0/",
        ] {
            let err = bad.parse::<TrustedProxies>().unwrap_err();
            assert!(
                err.contains("neither an IP address nor a CIDR"),
                "{bad}: {err}"
            );
        }
    }
}
