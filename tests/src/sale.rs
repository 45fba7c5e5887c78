//! A flash sale for fault tests: one hot show that sells out and three
//! quieter ones, a steady crowd sending until the fault is over, customers
//! paying as they go, and the checks every fault must pass afterwards (the
//! history model's verdict, the longest pause in decisions, exactly the
//! right emails). The test's own reads go to the database the services
//! use, and wait out its faults (a failover, say) like any client.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::history::History;
use crate::load::{ga_request, steady_until, Submitted};
use crate::mailbox::all_messages;
use crate::System;

/// Requests in flight during a sale, at most.
const CROWD: usize = 16;
/// A new request every so often, for as long as the chaos lasts.
const PACE: Duration = Duration::from_millis(12);
/// Held bookings paid for during each sale (each must get one email).
const PAID: usize = 60;

/// A flash sale: one hot show that sells out and three quieter ones, a
/// crowd of [`CROWD`] clients sending until told to stop, and customers
/// paying for [`PAID`] of the hot show's held bookings as they go.
pub struct Sale<'a> {
    pub sys: &'a System,
    pub db: &'a PgPool,
    /// The show that sells out, and every show of the sale (the hot one
    /// first).
    pub hot: String,
    pub shows: Vec<String>,
    started: Instant,
    /// Every client operation of the sale, for the checker.
    history: History,
}

impl<'a> Sale<'a> {
    pub async fn open(sys: &'a System) -> Self {
        let hot = sys.ga_show(1500).await;
        let mut shows = vec![hot.clone()];
        for _ in 0..3 {
            shows.push(sys.ga_show(400).await);
        }
        Self {
            sys,
            db: sys.db().await,
            hot,
            shows,
            started: Instant::now(),
            history: History::new(),
        }
    }

    /// When the API answered the first `202` for the hot show to a request
    /// sent after `since`.
    pub fn first_hot_accept_sent_after(&self, results: &[Submitted], since: Instant) -> Instant {
        results
            .iter()
            .filter(|r| r.accepted() && r.request.show == self.hot && r.sent >= since)
            .map(|r| r.answered)
            .min()
            .expect("the hot show accepted nothing after the fault")
    }

    /// One ticket of `show`, booked as part of the sale's history.
    pub async fn book_accepted(&self, show: &str) {
        let submitted = self.history.submit(self.sys, ga_request(show, 1)).await;
        assert!(submitted.accepted(), "a booking got {}", submitted.status);
    }

    fn show_ids(&self) -> Vec<Uuid> {
        self.shows.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// Decisions so far; `None` while the database is away.
    async fn decided_now(&self) -> Option<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM bookings WHERE show_id = ANY($1) AND status <> 'queued'",
        )
        .bind(self.show_ids())
        .fetch_one(self.db)
        .await
        .ok()
    }

    pub async fn wait_decided(&self, count: i64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self
            .decided_now()
            .await
            .is_none_or(|decided| decided < count)
        {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} decisions after two minutes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Some more of the sale, on the healed cluster.
    pub async fn wait_more_decided(&self, more: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let now = loop {
            if let Some(now) = self.decided_now().await {
                break now;
            }
            assert!(
                Instant::now() < deadline,
                "the database is away for a minute"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.wait_decided(now + more).await;
    }

    /// Sends requests (four in five to the hot show) and pays for held
    /// bookings until `chaos` is over; returns every answer and what
    /// `chaos` returned.
    pub async fn run_until<T>(&self, chaos: impl Future<Output = T>) -> (Vec<Submitted>, T) {
        let stop = AtomicBool::new(false);
        let chaos = async {
            let outcome = chaos.await;
            stop.store(true, Ordering::Relaxed);
            outcome
        };
        let request = |i: usize| {
            let show = if i % 5 == 4 {
                &self.shows[1 + i / 5 % 3]
            } else {
                &self.hot
            };
            ga_request(show, (i % 4) as i32 + 1)
        };
        let sale = steady_until(self.sys, PACE, CROWD, request, chaos);
        let ((results, outcome), ()) = tokio::join!(sale, self.pay_while(&stop));
        self.history.record_all(&results);
        (results, outcome)
    }

    /// Pays for up to [`PAID`] held bookings of the hot show, retrying a
    /// `503` as a client would, until `stop` (and at least once).
    async fn pay_while(&self, stop: &AtomicBool) {
        let mut paid = HashSet::new();
        loop {
            let held: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM bookings WHERE show_id = $1 AND status = 'held' LIMIT 100",
            )
            .bind(self.hot.parse::<Uuid>().unwrap())
            .fetch_all(self.db)
            .await
            // The database away: try again later, as a customer would.
            .unwrap_or_default();
            for id in held {
                if paid.len() == PAID {
                    return;
                }
                if paid.insert(id) {
                    self.pay(id).await;
                }
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn pay(&self, id: Uuid) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self
                .history
                .confirm(self.sys, &id.to_string(), "tok_visa")
                .await;
            match status {
                202 => return,
                503 => assert!(
                    Instant::now() < deadline,
                    "paying for {id} got 503 for a minute"
                ),
                other => panic!("paying for held booking {id} got {other}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Prints and checks the share of `results` refused (`503`) during
    /// `fault`: at most `at_most`.
    pub fn assert_few_refused(results: &[Submitted], fault: &str, at_most: f64) {
        let refused = results.iter().filter(|r| r.status == 503).count();
        let share = refused as f64 / results.len() as f64;
        println!(
            "{fault}: {refused} of {} submissions refused ({:.2} %)",
            results.len(),
            share * 100.0
        );
        assert!(
            share <= at_most,
            "{refused} of {} submissions refused during {fault}",
            results.len()
        );
    }

    /// Only `202` or `503` came back, the history is clean, decisions
    /// never paused for longer than `resume_within`, and every customer
    /// got exactly the emails of their booking.
    pub async fn assert_promises_kept(&self, results: &[Submitted], resume_within: Duration) {
        for r in results {
            assert!(
                matches!(r.status, 202 | 503),
                "only 202 or 503, got {} for {:?}",
                r.status,
                r.request.body
            );
        }
        let accepted: Vec<Uuid> = results
            .iter()
            .filter(|r| r.accepted())
            .map(|r| r.id.as_ref().unwrap().parse().unwrap())
            .collect();
        let refused = results.len() - accepted.len();

        // The model's verdict on the whole history: no oversell, every 202
        // final and decided once, per-show order, refunds, tickets, emails.
        self.history.check(self.sys).await.assert_clean();
        let sold_out: i32 =
            sqlx::query_scalar("SELECT capacity - held - booked FROM shows WHERE id = $1")
                .bind(self.hot.parse::<Uuid>().unwrap())
                .fetch_one(self.db)
                .await
                .unwrap();

        let gap = self.longest_pause_in_decisions().await;
        println!(
            "accepted {}, refused with 503 {refused}, hot show left with {sold_out} tickets, \
             longest pause in decisions {gap:?}, sale {:?}",
            accepted.len(),
            self.started.elapsed()
        );
        assert!(
            gap <= resume_within,
            "decisions paused for {gap:?} (more than {resume_within:?})"
        );

        self.assert_exactly_their_emails().await;
    }

    /// The longest time between two decisions of this sale, as the audit
    /// trail dates them.
    pub async fn longest_pause_in_decisions(&self) -> Duration {
        let times: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM at)::float8 FROM booking_audit
             WHERE show_id = ANY($1) AND from_status = 'queued' ORDER BY at",
        )
        .bind(self.show_ids())
        .fetch_all(self.db)
        .await
        .unwrap();
        let longest = times
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .fold(0.0, f64::max);
        Duration::from_secs_f64(longest)
    }

    /// Every confirmed booking got exactly one email, its confirmation;
    /// every other customer of the sale none.
    async fn assert_exactly_their_emails(&self) {
        let customers: Vec<(String, String)> =
            sqlx::query_as("SELECT email, status FROM bookings WHERE show_id = ANY($1)")
                .bind(self.show_ids())
                .fetch_all(self.db)
                .await
                .unwrap();
        let confirmed = customers.iter().filter(|(_, s)| s == "confirmed").count();
        assert!(confirmed > 0, "no booking was paid for during the sale");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = subjects_by_recipient().await;
            let arrived = customers
                .iter()
                .filter(|(email, s)| s == "confirmed" && received.contains_key(email))
                .count();
            if arrived == confirmed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{arrived} of {confirmed} confirmation emails arrived"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // A duplicate would come soon after the first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let received = subjects_by_recipient().await;
        for (email, status) in &customers {
            let subjects = received.get(email).cloned().unwrap_or_default();
            let expected = usize::from(status == "confirmed");
            assert_eq!(
                subjects.len(),
                expected,
                "{email} ({status}) got {subjects:?}"
            );
        }
    }
}

/// The subjects of every email in the sink, by recipient address.
async fn subjects_by_recipient() -> HashMap<String, Vec<String>> {
    let mut received: HashMap<String, Vec<String>> = HashMap::new();
    for message in all_messages().await {
        let subject = message["subject"].as_str().unwrap_or_default();
        for to in message["to"].as_array().into_iter().flatten() {
            if let Some(address) = to["address"].as_str() {
                received
                    .entry(address.to_owned())
                    .or_default()
                    .push(subject.to_owned());
            }
        }
    }
    received
}
