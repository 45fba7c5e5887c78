//! `--waitlist`: the flash sale with every request asking to wait when sold
//! out, then every tenth held booking cancelled over HTTP. The worker offers
//! returned tickets to the waiting list in the transaction that decides the
//! cancel; this measures the offers per second, how long after the bench
//! sent a cancel its tickets were offered, and whether anyone was passed
//! over in the line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use harness::System;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::flash_sale::{progress, Invariant};
use crate::stats::{per_second, Latency};

/// Every tenth held booking is cancelled.
const CANCEL_EVERY: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Waitlist {
    /// Requests that joined the waiting list during the sale.
    pub waitlisted: usize,
    pub cancels_sent: usize,
    pub cancels_accepted: usize,
    /// Cancels the worker decided within the settle timeout.
    pub cancelled: usize,
    pub tickets_returned: i64,
    pub offers: usize,
    pub tickets_offered: i64,
    /// First cancel sent to the last offer.
    pub offer_seconds: f64,
    pub offers_per_s: f64,
    /// From the bench sending the cancel whose tickets completed an offer
    /// (see `completing_release`) to the offer's audit row.
    pub offer_latency: Latency,
    /// From that cancel's audit row to the offer's: zero when the offer was
    /// made in the cancel's own transaction.
    pub decision_to_offer: Latency,
    /// Bookings still waiting at the end.
    pub still_waiting: i64,
    /// Bookings that got tickets while one that joined the list before them,
    /// for as many tickets or fewer, was left waiting.
    pub passed_over: usize,
}

/// What the offer phase needs from the sale.
pub struct Phase<'a> {
    pub sys: &'a System,
    pub db: &'a PgPool,
    pub show: Uuid,
    /// The sale's clock anchor: an instant and the wall-clock time then.
    pub anchor: (Instant, DateTime<Utc>),
    /// Cancels in flight at once.
    pub concurrency: usize,
    pub timeout: Duration,
}

/// One row of the audit trail, with the booking's size.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Move {
    id: i64,
    booking_id: Uuid,
    from_status: Option<String>,
    to_status: String,
    at: DateTime<Utc>,
    quantity: i32,
}

impl Move {
    fn is(&self, from: &str, to: &str) -> bool {
        self.from_status.as_deref() == Some(from) && self.to_status == to
    }
}

struct Cancel {
    booking: Uuid,
    /// HTTP status, or 0 when the connection failed.
    status: u16,
    sent: Instant,
}

/// Cancels every tenth of `held` (the sale's held bookings), waits until the
/// worker has decided those cancels (and so made its offers), and measures
/// the offers from the audit trail. Cancels that were not accepted are
/// counted in `errors`.
pub async fn run(
    phase: &Phase<'_>,
    held: &[Uuid],
    errors: &mut BTreeMap<String, usize>,
) -> anyhow::Result<Waitlist> {
    let (db, show) = (phase.db, phase.show);
    // Where the sale's audit trail ends, and the tickets it left unsold.
    let sale_end: i64 =
        sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM booking_audit WHERE show_id = $1")
            .bind(show)
            .fetch_one(db)
            .await?;
    let free_at_start: i32 =
        sqlx::query_scalar("SELECT capacity - held - booked FROM shows WHERE id = $1")
            .bind(show)
            .fetch_one(db)
            .await?;

    let targets: Vec<Uuid> = held.iter().step_by(CANCEL_EVERY).copied().collect();
    eprintln!(
        "waiting list: cancelling {} of {} held bookings …",
        targets.len(),
        held.len()
    );
    let cancels = cancel_all(phase.sys, targets, phase.concurrency).await;
    let mut sent_at: HashMap<Uuid, Instant> = HashMap::new();
    for c in &cancels {
        if c.status == 202 {
            sent_at.insert(c.booking, c.sent);
        } else {
            let kind = if c.status == 0 {
                "cancel: connection failed".to_owned()
            } else {
                format!("cancel: HTTP {}", c.status)
            };
            *errors.entry(kind).or_default() += 1;
        }
    }
    let accepted: Vec<Uuid> = sent_at.keys().copied().collect();
    wait_decided(db, &accepted, phase.timeout).await;

    let moves: Vec<Move> = sqlx::query_as(
        "SELECT a.id, a.booking_id, a.from_status, a.to_status, a.at, b.quantity
         FROM booking_audit a JOIN bookings b ON b.id = a.booking_id
         WHERE a.show_id = $1 ORDER BY a.id",
    )
    .bind(show)
    .fetch_all(db)
    .await?;
    let after_sale = || moves.iter().filter(|m| m.id > sale_end);
    let releases: Vec<&Move> = after_sale().filter(|m| m.is("held", "cancelled")).collect();
    let offers: Vec<&Move> = after_sale()
        .filter(|m| m.is("waitlisted", "held"))
        .collect();
    let tickets =
        |moves: &[&Move]| -> Vec<i64> { moves.iter().map(|m| i64::from(m.quantity)).collect() };
    let completed_by = completing_release(
        i64::from(free_at_start),
        &tickets(&releases),
        &tickets(&offers),
    );

    let since_anchor = |sent: Instant| sent.duration_since(phase.anchor.0).as_secs_f64();
    let on_client_clock =
        |at: DateTime<Utc>| (at - phase.anchor.1).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let seconds = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1e6;
    let mut offer_latency = Vec::with_capacity(offers.len());
    let mut decision_to_offer = Vec::with_capacity(offers.len());
    for (offer, release) in offers.iter().zip(completed_by) {
        let Some(release) = release.map(|k| releases[k]) else {
            continue;
        };
        if let Some(&sent) = sent_at.get(&release.booking_id) {
            offer_latency.push(on_client_clock(offer.at) - since_anchor(sent));
        }
        decision_to_offer.push(seconds(offer.at - release.at));
    }
    let first_cancel = cancels
        .iter()
        .map(|c| since_anchor(c.sent))
        .fold(f64::INFINITY, f64::min);
    let offer_seconds = offers
        .iter()
        .map(|m| on_client_clock(m.at) - first_cancel)
        .fold(0.0, f64::max);

    Ok(Waitlist {
        waitlisted: moves
            .iter()
            .filter(|m| m.is("queued", "waitlisted"))
            .count(),
        cancels_sent: cancels.len(),
        cancels_accepted: accepted.len(),
        cancelled: releases.len(),
        tickets_returned: tickets(&releases).iter().sum(),
        offers: offers.len(),
        tickets_offered: tickets(&offers).iter().sum(),
        offer_seconds,
        offers_per_s: per_second(offers.len(), offer_seconds),
        offer_latency: Latency::of_seconds(offer_latency),
        decision_to_offer: Latency::of_seconds(decision_to_offer),
        still_waiting: sqlx::query_scalar(
            "SELECT count(*) FROM bookings WHERE show_id = $1 AND status = 'waitlisted'",
        )
        .bind(show)
        .fetch_one(db)
        .await?,
        passed_over: passed_over(&moves),
    })
}

/// Sends the cancels with at most `concurrency` in flight.
async fn cancel_all(sys: &System, ids: Vec<Uuid>, concurrency: usize) -> Vec<Cancel> {
    let bar = progress(ids.len(), "cancel");
    let cancels = futures::stream::iter(ids)
        .map(|booking| {
            let bar = bar.clone();
            async move {
                let sent = Instant::now();
                let status = sys
                    .request(
                        reqwest::Method::POST,
                        &format!("/v1/bookings/{booking}/cancel"),
                    )
                    .send()
                    .await
                    .map_or(0, |res| res.status().as_u16());
                bar.inc(1);
                Cancel {
                    booking,
                    status,
                    sent,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    bar.finish();
    cancels
}

/// Waits until none of `ids` is still held (or the timeout). The offers are
/// made in the transaction that decides the cancel, so they are all made
/// then too.
async fn wait_decided(db: &PgPool, ids: &[Uuid], timeout: Duration) {
    let bar = progress(ids.len(), "offer");
    let deadline = Instant::now() + timeout;
    loop {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bookings WHERE id = ANY($1) AND status = 'held'",
        )
        .bind(ids)
        .fetch_one(db)
        .await
        .unwrap_or(i64::MAX);
        bar.set_position((ids.len() as i64 - held).max(0) as u64);
        if held == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish();
}

/// For each offer (its tickets, in audit order), the release (index into
/// `releases`, in audit order) that completed it. Tickets go out first come,
/// first served: the `free` ones left by the sale, then each release's in
/// the order the worker decided them; an offer is complete with the release
/// that brought its last ticket. A release can complete several offers, and
/// an offer can use tickets of several releases (a booking for 4 waits for
/// two cancels of 2). `None` for an offer that needs no release at all or
/// more than all of them: neither happens while nothing is oversold and
/// nobody waits for tickets that are free.
fn completing_release(free: i64, releases: &[i64], offers: &[i64]) -> Vec<Option<usize>> {
    let mut available = free;
    let mut counted = 0;
    let mut offered = 0;
    offers
        .iter()
        .map(|&tickets| {
            offered += tickets;
            if offered <= free {
                return None;
            }
            while available < offered && counted < releases.len() {
                available += releases[counted];
                counted += 1;
            }
            (available >= offered).then(|| counted - 1)
        })
        .collect()
}

/// Bookings that got tickets (a request held at once, or an offer) while a
/// booking that had joined the waiting list before them, for as many
/// tickets or fewer, was still waiting when their transaction ended. Judged
/// per transaction (its moves share the audit `at`), because the worker
/// writes a transaction's offers after its commands' decisions although it
/// made them first. General admission: one line per size. Customer limits
/// could excuse a pass-over; the bench's customers each book once.
fn passed_over(moves: &[Move]) -> usize {
    // The join rows (audit ids) of the bookings waiting, by size.
    let mut waiting: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    let mut joined: HashMap<Uuid, (i32, i64)> = HashMap::new();
    let mut passed = 0;
    for transaction in moves.chunk_by(|a, b| a.at == b.at) {
        // Size and place in line of each booking served: for a request held
        // at once, its decision row (anyone who joined before it was first).
        let mut served = Vec::new();
        for m in transaction {
            if m.is("queued", "waitlisted") {
                waiting.entry(m.quantity).or_default().insert(m.id);
                joined.insert(m.booking_id, (m.quantity, m.id));
            } else if m.is("queued", "held") {
                served.push((m.quantity, m.id));
            } else if m.from_status.as_deref() == Some("waitlisted") {
                if let Some((size, place)) = joined.remove(&m.booking_id) {
                    if let Some(line) = waiting.get_mut(&size) {
                        line.remove(&place);
                    }
                    if m.to_status == "held" {
                        served.push((size, place));
                    }
                }
            }
        }
        passed += served
            .iter()
            .filter(|&&(size, place)| {
                waiting
                    .range(..=size)
                    .any(|(_, line)| line.first().is_some_and(|&first| first < place))
            })
            .count();
    }
    passed
}

/// The waiting list's own invariant, on top of the harness's: nobody is
/// still waiting for as many tickets as are free.
pub async fn invariants(db: &PgPool, show: Uuid) -> Invariant {
    let outcome = list_served(db, show).await;
    Invariant {
        name: "nobody waits for tickets that are free",
        ok: outcome.is_ok(),
        detail: outcome.err(),
    }
}

async fn list_served(db: &PgPool, show: Uuid) -> Result<(), String> {
    let (free, smallest): (i32, Option<i32>) = sqlx::query_as(
        "SELECT s.capacity - s.held - s.booked,
                (SELECT min(quantity) FROM bookings b WHERE b.show_id = s.id AND b.status = 'waitlisted')
         FROM shows s WHERE s.id = $1",
    )
    .bind(show)
    .fetch_one(db)
    .await
    .map_err(|e| e.to_string())?;
    match smallest {
        Some(size) if size <= free => Err(format!(
            "{free} tickets free while a booking for {size} waits"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_is_completed_by_the_release_that_brought_its_last_ticket() {
        assert_eq!(
            completing_release(0, &[2, 3, 1], &[1, 1, 3, 1]),
            [Some(0), Some(0), Some(1), Some(2)]
        );
    }

    #[test]
    fn a_large_offer_waits_for_several_releases_and_the_sales_leftovers_go_first() {
        assert_eq!(
            completing_release(0, &[1, 1, 2], &[2, 1]),
            [Some(1), Some(2)]
        );
        assert_eq!(completing_release(1, &[2], &[3]), [Some(0)]);
    }

    #[test]
    fn offers_that_no_release_explains_are_not_paired() {
        assert_eq!(
            completing_release(2, &[1], &[2, 1, 1]),
            [None, Some(0), None]
        );
        assert_eq!(completing_release(0, &[], &[1]), [None]);
    }

    /// Bookings are numbered; transactions are whole seconds of `at`.
    fn mv(id: i64, booking: u128, from: &str, to: &str, transaction: i64, quantity: i32) -> Move {
        Move {
            id,
            booking_id: Uuid::from_u128(booking),
            from_status: Some(from.to_owned()),
            to_status: to.to_owned(),
            at: DateTime::from_timestamp(transaction, 0).expect("valid"),
            quantity,
        }
    }

    #[test]
    fn an_offer_past_an_earlier_booking_of_the_same_or_smaller_size_is_a_pass_over() {
        let sale = [
            mv(1, 1, "queued", "held", 0, 2),
            mv(2, 2, "queued", "waitlisted", 0, 2),
            mv(3, 3, "queued", "waitlisted", 0, 1),
            mv(4, 4, "queued", "waitlisted", 0, 2),
        ];
        // 2 tickets back: booking 4 served before 2 (same size, earlier)
        // and before 3 (smaller, earlier) is one booking passed over.
        let mut moves = sale.to_vec();
        moves.extend([
            mv(5, 1, "held", "cancelled", 1, 2),
            mv(6, 4, "waitlisted", "held", 1, 2),
        ]);
        assert_eq!(passed_over(&moves), 1);
        // In join order, 2 then (next release) 3: nobody passed over.
        let mut moves = sale.to_vec();
        moves.extend([
            mv(5, 1, "held", "cancelled", 1, 2),
            mv(6, 2, "waitlisted", "held", 1, 2),
            mv(7, 2, "held", "cancelled", 2, 2),
            mv(8, 3, "waitlisted", "held", 2, 1),
        ]);
        assert_eq!(passed_over(&moves), 0);
    }

    #[test]
    fn a_smaller_later_booking_may_go_before_a_larger_one_that_does_not_fit() {
        let moves = [
            mv(1, 1, "queued", "held", 0, 1),
            mv(2, 2, "queued", "waitlisted", 0, 3),
            mv(3, 3, "queued", "waitlisted", 0, 1),
            mv(4, 1, "held", "cancelled", 1, 1),
            mv(5, 3, "waitlisted", "held", 1, 1),
        ];
        assert_eq!(passed_over(&moves), 0);
    }

    #[test]
    fn a_transaction_is_judged_when_it_ends_not_in_the_order_of_its_audit_rows() {
        // One transaction: a cancel, a new request held, and the offer
        // that the worker made before deciding the request but wrote after.
        let moves = [
            mv(1, 1, "queued", "held", 0, 2),
            mv(2, 2, "queued", "waitlisted", 0, 1),
            mv(3, 1, "held", "cancelled", 1, 2),
            mv(4, 3, "queued", "held", 1, 1),
            mv(5, 2, "waitlisted", "held", 1, 1),
        ];
        assert_eq!(passed_over(&moves), 0);
        // Without the offer, the new request jumped the line.
        assert_eq!(passed_over(&moves[..4]), 1);
    }

    #[test]
    fn leaving_the_list_without_tickets_frees_the_place() {
        let moves = [
            mv(1, 1, "queued", "held", 0, 1),
            mv(2, 2, "queued", "waitlisted", 0, 1),
            mv(3, 3, "queued", "waitlisted", 0, 1),
            mv(4, 2, "waitlisted", "cancelled", 1, 1),
            mv(5, 1, "held", "cancelled", 2, 1),
            mv(6, 3, "waitlisted", "held", 2, 1),
        ];
        assert_eq!(passed_over(&moves), 0);
    }
}
