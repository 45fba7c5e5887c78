//! The history of a fault test, judged as a whole against the model.
//!
//! A test sends its client operations through a [`History`] (or records
//! them in it): what was sent, when, and what came back. Once the faults
//! are over, [`History::check`] waits for the system to settle, reads the
//! final state from the sandbox's database and the SMTP sink, and returns a
//! [`Verdict`] listing every violation of the model's promises:
//!
//! - **no oversell**: per show, counters, live bookings and seats agree and
//!   stay within capacity;
//! - **every `202` final**: an accepted booking exists, was never
//!   withdrawn and was decided, exactly once and with one event; an
//!   accepted confirm or cancel took effect; every event was published;
//! - **per-show order**: no request got tickets ahead of an earlier one of
//!   the same size (and section) that was refused as sold out, unless
//!   tickets came back in between. "Earlier" is what a client can tell:
//!   its `202` came before the other was first sent;
//! - **a refund exactly once per cancelled paid booking**, made and
//!   accounted, and none of a sale that stands;
//! - **ticket codes**: unique, one per unit of each confirmed booking;
//! - **each email once**: per booking and kind at most one email, or
//!   copies that all carry one `Message-ID`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::invariants;
use crate::load::{self, Request, Submitted};
use crate::mailbox;
use crate::system::Sandbox;
use crate::System;

/// How long [`History::check`] waits for what must happen eventually (every
/// accepted request decided, every refund made, every event published).
const SETTLE: Duration = Duration::from_secs(120);
/// How many violations of one rule a verdict spells out.
const LISTED: usize = 12;

/// What a client asked for.
#[derive(Debug, Clone)]
pub enum Action {
    /// `POST /v1/shows/{show}/bookings`.
    Book(Request),
    /// `POST /v1/bookings/{booking}/confirm`.
    Confirm { booking: Uuid },
    /// `POST /v1/bookings/{booking}/cancel`.
    Cancel { booking: Uuid },
}

/// One client operation: what was sent, when, and what came back.
#[derive(Debug, Clone)]
pub struct Op {
    pub action: Action,
    pub sent: Instant,
    pub answered: Instant,
    /// HTTP status, or 0 when no answer came (the connection failed).
    pub status: u16,
    /// The booking it is about: the one a booking's answer names, or the
    /// one confirmed or cancelled.
    pub booking: Option<Uuid>,
}

impl From<&Submitted> for Op {
    fn from(s: &Submitted) -> Self {
        Self {
            action: Action::Book(s.request.clone()),
            sent: s.sent,
            answered: s.answered,
            status: s.status,
            booking: s.id.as_deref().and_then(|id| id.parse().ok()),
        }
    }
}

/// The client operations of one test, in the order they were recorded.
pub struct History {
    began: Instant,
    began_at: DateTime<Utc>,
    ops: Mutex<Vec<Op>>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            began: Instant::now(),
            began_at: Utc::now(),
            ops: Mutex::default(),
        }
    }
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an operation the test made its own way.
    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    /// Records booking requests the test sent its own way (a paced crowd).
    pub fn record_all(&self, submitted: &[Submitted]) {
        self.ops
            .lock()
            .unwrap()
            .extend(submitted.iter().map(Op::from));
    }

    /// Every operation recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }

    /// [`load::submit`], recorded.
    pub async fn submit(&self, sys: &System, request: Request) -> Submitted {
        self.submit_with_key(sys, request, None).await
    }

    /// [`load::submit_with_key`], recorded.
    pub async fn submit_with_key(
        &self,
        sys: &System,
        request: Request,
        key: Option<&str>,
    ) -> Submitted {
        let submitted = load::submit_with_key(sys, request, key).await;
        self.record((&submitted).into());
        submitted
    }

    /// [`load::submit_all`], recorded.
    pub async fn submit_all(
        &self,
        sys: &System,
        requests: Vec<Request>,
        concurrency: usize,
    ) -> Vec<Submitted> {
        futures::stream::iter(requests)
            .map(|request| self.submit(sys, request))
            .buffer_unordered(concurrency)
            .collect()
            .await
    }

    /// Pays for a held booking with `payment_token`; returns the status
    /// (0 if no answer came).
    pub async fn confirm(&self, sys: &System, booking: &str, payment_token: &str) -> u16 {
        let body = json!({"payment_token": payment_token});
        self.post(sys, booking, "confirm", body, |booking| Action::Confirm {
            booking,
        })
        .await
    }

    /// Cancels a booking; returns the status (0 if no answer came).
    pub async fn cancel(&self, sys: &System, booking: &str) -> u16 {
        self.post(sys, booking, "cancel", json!({}), |booking| {
            Action::Cancel { booking }
        })
        .await
    }

    /// `POST /v1/bookings/{booking}/{verb}`, recorded as `action`.
    async fn post(
        &self,
        sys: &System,
        booking: &str,
        verb: &str,
        body: Value,
        action: fn(Uuid) -> Action,
    ) -> u16 {
        let booking: Uuid = booking
            .parse()
            .unwrap_or_else(|e| panic!("booking id {booking:?}: {e}"));
        let sent = Instant::now();
        let status = sys
            .request(
                reqwest::Method::POST,
                &format!("/v1/bookings/{booking}/{verb}"),
            )
            .json(&body)
            .send()
            .await
            .map_or(0, |res| res.status().as_u16());
        self.record(Op {
            action: action(booking),
            sent,
            answered: Instant::now(),
            status,
            booking: Some(booking),
        });
        status
    }

    /// Waits for the system to settle, then judges the whole history and
    /// the final state against the model.
    pub async fn check(&self, sys: &Sandbox) -> Verdict {
        let ops = self.ops();
        let db = sys.db().await;
        let settled = settle(db, &ops).await;
        let mut verdict = Verdict::default();
        let shows: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM shows ORDER BY created_at")
            .fetch_all(db)
            .await
            .unwrap();
        for &show in &shows {
            verdict.add(Rule::NoOversell, invariants::oversold(db, show).await);
            verdict.add(
                Rule::AcceptedIsFinal,
                invariants::decided_more_than_once(db, show).await,
            );
        }
        verdict.add(Rule::AcceptedIsFinal, accepted_final(db, &ops).await);
        verdict.add(Rule::AcceptedIsFinal, events_published(db).await);
        let (order, contested) = self.order(db, &ops).await;
        verdict.add(Rule::PerShowOrder, order);
        verdict.add(Rule::RefundOnce, refunds(db).await);
        verdict.add(Rule::TicketCodes, tickets(db).await);
        let (emails, judged) = self.emails(db).await;
        verdict.add(Rule::EmailOnce, emails);
        let statuses: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM bookings GROUP BY status ORDER BY status")
                .fetch_all(db)
                .await
                .unwrap();
        let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s} {n}")).collect();
        verdict.summary = format!(
            "{}; {} shows, bookings now {}; {contested} holds after an earlier refusal of \
             their size; {judged} emails judged; settled {}",
            tally(&ops),
            shows.len(),
            statuses.join(", "),
            settled.map_or_else(
                || format!("not within {SETTLE:?}"),
                |took| format!("in {took:.1?}")
            ),
        );
        verdict
    }

    /// No accepted request got tickets while an earlier accepted one of the
    /// same size was refused as sold out, unless tickets came back between
    /// the refusal and the hold. Returns the violations and how many holds
    /// came after an earlier refusal (and so were judged).
    async fn order(&self, db: &PgPool, ops: &[Op]) -> (Vec<String>, usize) {
        // When each request was first sent, retries (the same body to the
        // same show) included.
        let key = |r: &Request| format!("{} {}", r.show, r.body);
        let mut first_sent: HashMap<String, Instant> = HashMap::new();
        for op in ops {
            if let Action::Book(request) = &op.action {
                let at = first_sent.entry(key(request)).or_insert(op.sent);
                *at = (*at).min(op.sent);
            }
        }
        let accepted: Vec<(&Op, &Request)> = ops
            .iter()
            .filter_map(|op| match &op.action {
                Action::Book(request) if op.status == 202 && in_a_line(request) => {
                    Some((op, request))
                }
                _ => None,
            })
            .collect();
        let ids: Vec<Uuid> = accepted.iter().filter_map(|(op, _)| op.booking).collect();
        let decisions: HashMap<Uuid, (Uuid, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT booking_id, show_id,
                    min(id) FILTER (WHERE from_status = 'queued' AND to_status = 'held'),
                    min(id) FILTER (WHERE from_status = 'queued' AND to_status = 'rejected'
                                      AND reason = 'sold_out')
             FROM booking_audit WHERE booking_id = ANY($1) GROUP BY booking_id, show_id",
        )
        .bind(&ids)
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, show, held, refused)| (id, (show, held, refused)))
        .collect();
        // Where tickets came back to sale, per show, in decision order.
        let mut returns: HashMap<Uuid, Vec<i64>> = HashMap::new();
        let returned: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT show_id, id FROM booking_audit
             WHERE from_status IN ('held', 'confirmed') AND to_status IN ('cancelled', 'expired')
             ORDER BY id",
        )
        .fetch_all(db)
        .await
        .unwrap();
        for (show, id) in returned {
            returns.entry(show).or_default().push(id);
        }

        // Requests that compete for the same tickets: show, size, section.
        let mut lines: BTreeMap<(Uuid, i32, String), Vec<Entry>> = BTreeMap::new();
        for (op, request) in accepted {
            let Some((show, held, refused)) = op.booking.and_then(|id| decisions.get(&id)) else {
                continue;
            };
            let section = request.body["section"].as_str().unwrap_or_default();
            lines
                .entry((*show, request.quantity, section.to_owned()))
                .or_default()
                .push(Entry {
                    booking: op.booking.unwrap(),
                    first_sent: first_sent[&key(request)],
                    answered: op.answered,
                    held: *held,
                    refused: *refused,
                });
        }
        let (mut found, mut contested) = (Vec::new(), 0);
        for ((show, quantity, section), entries) in lines {
            let mut refusals: Vec<&Entry> =
                entries.iter().filter(|e| e.refused.is_some()).collect();
            refusals.sort_by_key(|e| e.answered);
            // The refusal decided last among the first n accepted.
            let mut latest: Vec<&Entry> = Vec::with_capacity(refusals.len());
            for e in refusals.iter().copied() {
                let previous = latest.last().copied();
                latest.push(match previous {
                    Some(p) if p.refused > e.refused => p,
                    _ => e,
                });
            }
            let returns = returns.get(&show).map_or(&[][..], Vec::as_slice);
            for b in entries.iter().filter(|e| e.held.is_some()) {
                let earlier = refusals.partition_point(|a| a.answered < b.first_sent);
                let Some(a) = earlier.checked_sub(1).map(|i| latest[i]) else {
                    continue;
                };
                contested += 1;
                let held = b.held.unwrap();
                let last_return = returns.partition_point(|&r| r < held);
                let returned_since = last_return
                    .checked_sub(1)
                    .is_some_and(|i| returns[i] > a.refused.unwrap());
                if !returned_since {
                    let section = if section.is_empty() {
                        String::new()
                    } else {
                        format!(" in {section}")
                    };
                    found.push(format!(
                        "show {show}, {quantity} ticket(s){section}: {} got them (first sent at {}) \
                         although {}, accepted before that (at {}), was refused as sold out \
                         with no tickets returned in between",
                        b.booking,
                        self.at(b.first_sent),
                        a.booking,
                        self.at(a.answered),
                    ));
                }
            }
        }
        (found, contested)
    }

    /// Each email at most once per booking and kind: to each address, no
    /// more different emails of one subject than it has bookings, copies
    /// with one `Message-ID` counting once. Only emails that arrived since
    /// the history began count, and (when a `Message-ID` names its booking)
    /// only this sandbox's. Returns the violations and how many emails were
    /// judged.
    async fn emails(&self, db: &PgPool) -> (Vec<String>, usize) {
        let bookings: HashMap<String, i64> =
            sqlx::query_as("SELECT lower(email), count(*) FROM bookings GROUP BY lower(email)")
                .fetch_all(db)
                .await
                .unwrap()
                .into_iter()
                .collect();
        let ours: HashSet<Uuid> = sqlx::query_scalar("SELECT id FROM bookings")
            .fetch_all(db)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let mut copies: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut judged = 0;
        for message in mailbox::all_messages().await {
            let arrived = message["time"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            // maildev's time is the Date header's, to the second.
            if arrived.is_some_and(|t| t < self.began_at - chrono::TimeDelta::seconds(1)) {
                continue;
            }
            let identity = mailbox::message_id(&message);
            let foreign = identity
                .and_then(booking_of)
                .is_some_and(|booking| !ours.contains(&booking));
            if foreign {
                continue;
            }
            let subject = message["subject"].as_str().unwrap_or_default().to_owned();
            for to in message["to"].as_array().into_iter().flatten() {
                let Some(address) = to["address"].as_str().map(str::to_lowercase) else {
                    continue;
                };
                if bookings.contains_key(&address) {
                    judged += 1;
                    // A copy without a Message-ID is an email of its own.
                    let identity = identity.map(str::to_owned).unwrap_or_else(|| {
                        format!(
                            "(no Message-ID; maildev {})",
                            message["id"].as_str().unwrap_or("?")
                        )
                    });
                    copies
                        .entry((address, subject.clone()))
                        .or_default()
                        .push(identity);
                }
            }
        }
        let mut found = Vec::new();
        for ((address, subject), identities) in copies {
            let distinct: HashSet<&String> = identities.iter().collect();
            let allowed = bookings[&address];
            if distinct.len() as i64 > allowed {
                found.push(format!(
                    "{address} got {} different emails \"{subject}\" ({} copies) for {allowed} \
                     booking(s); Message-IDs: {:?}",
                    distinct.len(),
                    identities.len(),
                    distinct
                ));
            }
        }
        (found, judged)
    }

    /// An instant as seconds since the history began.
    fn at(&self, instant: Instant) -> String {
        format!(
            "{:.3}s",
            instant.saturating_duration_since(self.began).as_secs_f64()
        )
    }
}

/// An accepted request in its show's line, as the order rule sees it.
struct Entry {
    booking: Uuid,
    first_sent: Instant,
    answered: Instant,
    /// The audit row of its hold, or of its refusal as sold out.
    held: Option<i64>,
    refused: Option<i64>,
}

/// Whether a request waits its turn for any tickets of a size: a request
/// for named seats competes for those seats only, and one that asked to
/// wait is never refused.
fn in_a_line(request: &Request) -> bool {
    request.body.get("seat_ids").is_none() && request.body["waitlist"] != true
}

/// The booking a `Message-ID` of the form `<{booking}.{kind}@domain>` names.
fn booking_of(message_id: &str) -> Option<Uuid> {
    let local = message_id.trim_matches(['<', '>']).split('@').next()?;
    local.split('.').next()?.parse().ok()
}

/// What an accepted operation of one kind promised.
struct Promise {
    /// What the booking was to be.
    promised: &'static str,
    /// Which operations promised it.
    of: fn(&Action) -> bool,
    /// The statuses of a booking for which it has not taken effect (yet).
    pending: &'static str,
}

/// A request is decided, a confirm pays (or is declined, or too late), a
/// cancel ends the booking.
const PROMISES: [Promise; 3] = [
    Promise {
        promised: "decided",
        of: |a| matches!(a, Action::Book(_)),
        pending: "status = 'queued'",
    },
    Promise {
        promised: "confirmed",
        of: |a| matches!(a, Action::Confirm { .. }),
        pending: "status = 'queued' OR (status = 'held' AND reason IS NULL)",
    },
    Promise {
        promised: "cancelled",
        of: |a| matches!(a, Action::Cancel { .. }),
        pending: "status IN ('queued', 'waitlisted', 'held', 'confirmed')",
    },
];

/// The bookings of the operations answered `202` that `is` picks.
fn accepted(ops: &[Op], is: fn(&Action) -> bool) -> Vec<Uuid> {
    ops.iter()
        .filter(|op| op.status == 202 && is(&op.action))
        .filter_map(|op| op.booking)
        .collect()
}

/// Accepted operations whose promise has not taken effect (yet): the
/// booking, its status, and what was promised.
async fn unkept(db: &PgPool, ops: &[Op]) -> Vec<(Uuid, String, &'static str)> {
    let mut found = Vec::new();
    for promise in PROMISES {
        let left: Vec<(Uuid, String)> = sqlx::query_as(&format!(
            "SELECT id, status FROM bookings WHERE id = ANY($1) AND ({})",
            promise.pending
        ))
        .bind(accepted(ops, promise.of))
        .fetch_all(db)
        .await
        .unwrap();
        found.extend(
            left.into_iter()
                .map(|(id, status)| (id, status, promise.promised)),
        );
    }
    found
}

/// Waits (up to [`SETTLE`]) until every accepted operation took effect,
/// every refund is made and every event published; returns how long that
/// took.
async fn settle(db: &PgPool, ops: &[Op]) -> Option<Duration> {
    let started = Instant::now();
    loop {
        // Decisions first, then what they wrote: a decision made between
        // the two reads would otherwise leave its event unseen.
        if unkept(db, ops).await.is_empty() {
            let (refunds, events): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM refunds WHERE refunded_at IS NULL),
                        (SELECT count(*) FROM outbox WHERE published_at IS NULL)",
            )
            .fetch_one(db)
            .await
            .unwrap();
            if refunds + events == 0 {
                return Some(started.elapsed());
            }
        }
        if started.elapsed() > SETTLE {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every accepted booking exists and was never withdrawn; every accepted
/// operation took effect.
async fn accepted_final(db: &PgPool, ops: &[Op]) -> Vec<String> {
    let gone: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT a.id, EXISTS (SELECT 1 FROM booking_audit w
                              WHERE w.booking_id = a.id AND w.to_status = 'withdrawn')
         FROM unnest($1::uuid[]) AS a(id)
         WHERE NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = a.id)",
    )
    .bind(accepted(ops, PROMISES[0].of))
    .fetch_all(db)
    .await
    .unwrap();
    let mut found: Vec<String> = gone
        .into_iter()
        .map(|(id, withdrawn)| {
            let then = if withdrawn { "withdrawn" } else { "lost" };
            format!("booking {id} was accepted (202), then {then}")
        })
        .collect();
    for (id, status, promised) in unkept(db, ops).await {
        found.push(format!(
            "booking {id} was to be {promised} (202), yet it is {status}"
        ));
    }
    found
}

/// Every event the deciding transactions wrote was published.
async fn events_published(db: &PgPool) -> Vec<String> {
    let pending: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT booking_id, kind FROM outbox_events WHERE published_at IS NULL ORDER BY seq",
    )
    .fetch_all(db)
    .await
    .unwrap();
    pending
        .into_iter()
        .map(|(booking, kind)| format!("the {kind} event of booking {booking} was never published"))
        .collect()
}

/// A refund exactly once per cancelled paid booking, made and accounted;
/// none of a sale that stands; the gateway paid back only what was owed.
async fn refunds(db: &PgPool) -> Vec<String> {
    let mut found = Vec::new();
    #[derive(sqlx::FromRow)]
    struct CancelledPaid {
        id: Uuid,
        total_cents: Option<i64>,
        refunded_cents: Option<i64>,
        owed: i64,
        made: i64,
        paid_back: Option<i64>,
    }
    let cancelled: Vec<CancelledPaid> = sqlx::query_as(
        "SELECT b.id, b.total_cents, b.refunded_cents,
                (SELECT count(*) FROM refunds r WHERE r.reference = b.payment_ref) AS owed,
                (SELECT count(*) FROM refunds r
                 WHERE r.reference = b.payment_ref AND r.refunded_at IS NOT NULL) AS made,
                (SELECT g.amount_cents FROM test_gateway_refunds g
                 WHERE g.reference = b.payment_ref) AS paid_back
         FROM bookings b WHERE b.status = 'cancelled' AND b.payment_ref IS NOT NULL",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for b in cancelled {
        let total = b.total_cents.unwrap_or(0);
        if b.owed != 1 || b.made != 1 {
            found.push(format!(
                "cancelled paid booking {}: {} refund(s) owed, {} made",
                b.id, b.owed, b.made
            ));
        }
        if b.paid_back != Some(total) || b.refunded_cents != Some(total) {
            found.push(format!(
                "cancelled paid booking {} of {total} cents: the gateway paid back {:?}, \
                 the booking says {:?}",
                b.id, b.paid_back, b.refunded_cents
            ));
        }
    }
    let standing: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT b.id, r.amount_cents FROM bookings b JOIN refunds r ON r.reference = b.payment_ref
         WHERE b.status = 'confirmed'",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for (id, cents) in standing {
        found.push(format!(
            "confirmed booking {id} had its charge refunded ({cents} cents)"
        ));
    }
    let unmade: Vec<(String, Uuid, i32, Option<String>)> = sqlx::query_as(
        "SELECT reference, booking_id, attempts, last_error FROM refunds WHERE refunded_at IS NULL",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for (reference, booking, attempts, error) in unmade {
        found.push(format!(
            "the refund of charge {reference} (booking {booking}) was never made: \
             {attempts} attempts, last error {error:?}"
        ));
    }
    let unowed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT g.reference, g.amount_cents FROM test_gateway_refunds g
         WHERE NOT EXISTS (SELECT 1 FROM refunds r WHERE r.reference = g.reference)",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for (reference, cents) in unowed {
        found.push(format!(
            "the gateway refunded charge {reference} ({cents} cents), which nothing owed"
        ));
    }
    found
}

/// Ticket codes are unique, each confirmed booking has one per unit, only
/// paid bookings have any, and no seat is ticketed to two live bookings.
async fn tickets(db: &PgPool) -> Vec<String> {
    let mut found = Vec::new();
    let miscounted: Vec<(Uuid, i32, i64)> = sqlx::query_as(
        "SELECT b.id, b.quantity, count(t.code) FROM bookings b
         LEFT JOIN tickets t ON t.booking_id = b.id
         WHERE b.status = 'confirmed' GROUP BY b.id HAVING count(t.code) <> b.quantity",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for (id, quantity, codes) in miscounted {
        found.push(format!(
            "confirmed booking {id} of {quantity} has {codes} ticket codes"
        ));
    }
    let repeated: Vec<(String, i64)> =
        sqlx::query_as("SELECT code, count(*) FROM tickets GROUP BY code HAVING count(*) > 1")
            .fetch_all(db)
            .await
            .unwrap();
    for (code, times) in repeated {
        found.push(format!("ticket code {code} issued {times} times"));
    }
    let unpaid: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT DISTINCT b.id, b.status FROM tickets t JOIN bookings b ON b.id = t.booking_id
         WHERE b.payment_ref IS NULL",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for (id, status) in unpaid {
        found.push(format!(
            "booking {id} ({status}) has tickets but was never paid"
        ));
    }
    let doubled: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT t.seat_id, count(*) FROM tickets t JOIN bookings b ON b.id = t.booking_id
         WHERE b.status = 'confirmed' AND t.seat_id IS NOT NULL
         GROUP BY t.seat_id HAVING count(*) > 1",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for (seat, times) in doubled {
        found.push(format!(
            "seat {seat} is ticketed to {times} confirmed bookings"
        ));
    }
    found
}

/// What was asked and answered, e.g. "bookings 2400 (202: 2050, 503: 350)".
fn tally(ops: &[Op]) -> String {
    let mut kinds: BTreeMap<&str, BTreeMap<u16, usize>> = BTreeMap::new();
    for op in ops {
        let kind = match op.action {
            Action::Book(_) => "bookings",
            Action::Confirm { .. } => "confirms",
            Action::Cancel { .. } => "cancels",
        };
        *kinds.entry(kind).or_default().entry(op.status).or_default() += 1;
    }
    if kinds.is_empty() {
        return "no client operations".to_owned();
    }
    kinds
        .into_iter()
        .map(|(kind, statuses)| {
            let total: usize = statuses.values().sum();
            let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
            format!("{kind} {total} ({})", statuses.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A promise of the model, as the verdict names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    NoOversell,
    AcceptedIsFinal,
    PerShowOrder,
    RefundOnce,
    TicketCodes,
    EmailOnce,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoOversell => "no oversell",
            Self::AcceptedIsFinal => "every 202 final",
            Self::PerShowOrder => "per-show order",
            Self::RefundOnce => "a refund exactly once per cancelled paid booking",
            Self::TicketCodes => "ticket codes unique, one per ticket",
            Self::EmailOnce => "each email once per booking and kind",
        })
    }
}

/// One broken promise.
#[derive(Debug, Clone)]
pub struct Violation {
    pub rule: Rule,
    pub detail: String,
}

/// What [`History::check`] found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    /// What was judged, in a line.
    pub summary: String,
}

impl Verdict {
    fn add(&mut self, rule: Rule, details: Vec<String>) {
        self.violations
            .extend(details.into_iter().map(|detail| Violation { rule, detail }));
    }

    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Fails the test with every violation, listed by rule; prints the
    /// summary either way.
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "{self}");
        println!("history checked, clean: {}", self.summary);
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(f, "clean: {}", self.summary);
        }
        writeln!(
            f,
            "{} violations of the model: {}",
            self.violations.len(),
            self.summary
        )?;
        let mut by_rule: BTreeMap<Rule, Vec<&str>> = BTreeMap::new();
        for v in &self.violations {
            by_rule.entry(v.rule).or_default().push(&v.detail);
        }
        for (rule, details) in by_rule {
            writeln!(f, "- {rule} ({}):", details.len())?;
            for detail in details.iter().take(LISTED) {
                writeln!(f, "    {detail}")?;
            }
            if details.len() > LISTED {
                writeln!(f, "    … and {} more", details.len() - LISTED)?;
            }
        }
        Ok(())
    }
}
