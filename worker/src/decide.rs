//! Deciding commands: each one is a single transaction of version-checked
//! updates (`... WHERE id = $1 AND version = $2`, bumping the version) that
//! also writes the audit trail and the outbox. Zero rows updated means
//! someone else changed the row first: a [`DecideError::Conflict`] the
//! caller retries with backoff. The schema's constraints would refuse an
//! oversell even if this logic were wrong.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rand::Rng;
use shared::domain::{BookingStatus, Reason, SeatStatus, ShowKind};
use shared::messages::{BookingCommand, BookingEvent, BookingSnapshot, EventKind, SeatLabel};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::payment::{Charge, GatewayError, PaymentGateway};

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("version conflict on {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl DecideError {
    /// Failures of a dependency (not of this message) are retried without
    /// limit: the message is fine and must not be dead-lettered for them.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Database(err) => shared::db::is_transient(err),
            Self::Gateway(_) => true,
            Self::Conflict(_) => false,
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The booking moved to this status (or got this reason).
    Applied(EventKind),
    /// Nothing to do: a redelivery, or a command that no longer applies.
    Skipped(&'static str),
}

/// Who expired a hold, for the audit trail (workers sign with their name).
const EXPIRY: &str = "expiry-sweeper";

pub struct Decider<G> {
    db: PgPool,
    gateway: G,
    hold: chrono::Duration,
    /// This worker's name in the audit trail.
    actor: String,
}

#[derive(Debug)]
struct BookingRow {
    id: Uuid,
    show_id: Uuid,
    status: BookingStatus,
    quantity: i32,
    version: i64,
    email: String,
    name: String,
    total_cents: Option<i64>,
    hold_expires_at: Option<DateTime<Utc>>,
    payment_ref: Option<String>,
}

#[derive(Debug)]
struct ShowRow {
    id: Uuid,
    name: String,
    venue: String,
    starts_at: DateTime<Utc>,
    kind: ShowKind,
    capacity: i32,
    held: i32,
    booked: i32,
    version: i64,
}

/// The booking's state after a transition, for the event snapshot.
struct After<'a> {
    status: BookingStatus,
    reason: Option<Reason>,
    hold_expires_at: Option<DateTime<Utc>>,
    tickets: &'a [String],
}

impl<G: PaymentGateway> Decider<G> {
    pub fn new(db: PgPool, gateway: G, hold: std::time::Duration, actor: String) -> Self {
        let hold = chrono::Duration::from_std(hold).expect("hold duration fits");
        Self {
            db,
            gateway,
            hold,
            actor,
        }
    }

    /// Applies one command. Safe to call again with the same command: a
    /// redelivery finds the booking already moved on and is skipped.
    pub async fn apply(&self, command: &BookingCommand) -> Result<Outcome, DecideError> {
        match command {
            BookingCommand::Request {
                booking_id,
                show_id,
            } => {
                let mut outcomes = self.hold_batch(*show_id, &[*booking_id]).await?;
                Ok(outcomes.pop().expect("one outcome per booking"))
            }
            BookingCommand::Confirm {
                booking_id,
                payment_token,
                ..
            } => self.confirm(*booking_id, payment_token).await,
            BookingCommand::Cancel { booking_id, .. } => {
                self.release(*booking_id, BookingStatus::Cancelled, &self.actor)
                    .await
            }
            BookingCommand::Expire { booking_id, .. } => {
                self.release(*booking_id, BookingStatus::Expired, EXPIRY)
                    .await
            }
        }
    }

    /// Decides a run of booking requests for one show, in order, in one
    /// transaction: one read of the show, the bookings and their seats, the
    /// decisions in memory, then one version-checked write per table. A
    /// conflict anywhere rolls the whole run back for a retry.
    pub async fn hold_batch(
        &self,
        show_id: Uuid,
        booking_ids: &[Uuid],
    ) -> Result<Vec<Outcome>, DecideError> {
        let mut tx = self.db.begin().await?;
        let mut bookings: HashMap<Uuid, BookingRow> = sqlx::query_as!(
            BookingRow,
            r#"SELECT id, show_id, status AS "status: BookingStatus", quantity, version, email, name,
                      total_cents, hold_expires_at, payment_ref
               FROM bookings WHERE id = ANY($1)"#,
            booking_ids
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|b| (b.id, b))
        .collect();
        let show = load_show(&mut tx, show_id).await?;
        let mut seats_of: HashMap<Uuid, Vec<SeatRow>> = HashMap::new();
        if show.kind == ShowKind::Seated {
            for row in sqlx::query!(
                r#"SELECT bs.booking_id, s.id, s.status AS "status: SeatStatus", s.version
                   FROM booking_seats bs JOIN seats s ON s.id = bs.seat_id
                   WHERE bs.booking_id = ANY($1)"#,
                booking_ids
            )
            .fetch_all(&mut *tx)
            .await?
            {
                seats_of.entry(row.booking_id).or_default().push(SeatRow {
                    id: row.id,
                    status: row.status,
                    version: row.version,
                });
            }
        }

        let expires = Utc::now() + self.hold;
        let mut available = show.capacity - show.held - show.booked;
        let mut taken: HashSet<Uuid> = HashSet::new();
        let mut seat_updates: Vec<(Uuid, i64, Uuid)> = Vec::new();
        let mut decided: Vec<(BookingRow, Result<(), Reason>)> = Vec::new();
        let mut outcomes = Vec::with_capacity(booking_ids.len());
        for id in booking_ids {
            let Some(booking) = bookings.remove(id) else {
                outcomes.push(Outcome::Skipped("booking withdrawn"));
                continue;
            };
            if booking.status != BookingStatus::Queued {
                outcomes.push(Outcome::Skipped("already decided"));
                continue;
            }
            if booking.show_id != show_id {
                outcomes.push(Outcome::Skipped("misrouted"));
                continue;
            }
            let verdict = match show.kind {
                ShowKind::GeneralAdmission if available >= booking.quantity => Ok(()),
                ShowKind::GeneralAdmission => Err(Reason::SoldOut),
                ShowKind::Seated => {
                    let wanted = seats_of.get(id).map(Vec::as_slice).unwrap_or_default();
                    let free =
                        |s: &SeatRow| s.status == SeatStatus::Available && !taken.contains(&s.id);
                    if !wanted.is_empty() && wanted.iter().all(free) {
                        for seat in wanted {
                            taken.insert(seat.id);
                            seat_updates.push((seat.id, seat.version, booking.id));
                        }
                        Ok(())
                    } else {
                        Err(Reason::SeatsUnavailable)
                    }
                }
            };
            if verdict.is_ok() {
                available -= booking.quantity;
            }
            outcomes.push(Outcome::Applied(match verdict {
                Ok(()) => EventKind::Held,
                Err(_) => EventKind::Rejected,
            }));
            decided.push((booking, verdict));
        }
        if decided.is_empty() {
            return Ok(outcomes);
        }

        if !seat_updates.is_empty() {
            let (ids, versions, owners): (Vec<Uuid>, Vec<i64>, Vec<Uuid>) = unzip3(&seat_updates);
            let updated = sqlx::query!(
                "UPDATE seats SET status = 'held', booking_id = t.owner, version = seats.version + 1
                 FROM unnest($1::uuid[], $2::bigint[], $3::uuid[]) AS t(id, version, owner)
                 WHERE seats.id = t.id AND seats.version = t.version AND seats.status = 'available'",
                &ids,
                &versions,
                &owners
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != seat_updates.len() as u64 {
                return Err(DecideError::Conflict("seat"));
            }
        }
        let newly_held = (show.capacity - show.held - show.booked) - available;
        if newly_held > 0 {
            bump_show(&mut tx, &show, newly_held, 0).await?;
        }

        let afters: Vec<After> = decided
            .iter()
            .map(|(_, verdict)| match verdict {
                Ok(()) => After {
                    status: BookingStatus::Held,
                    reason: None,
                    hold_expires_at: Some(expires),
                    tickets: &[],
                },
                Err(reason) => After {
                    status: BookingStatus::Rejected,
                    reason: Some(*reason),
                    hold_expires_at: None,
                    tickets: &[],
                },
            })
            .collect();
        let ids: Vec<Uuid> = decided.iter().map(|(b, _)| b.id).collect();
        let versions: Vec<i64> = decided.iter().map(|(b, _)| b.version).collect();
        let statuses: Vec<&str> = afters.iter().map(|a| a.status.as_str()).collect();
        let reasons: Vec<Option<&str>> = afters
            .iter()
            .map(|a| a.reason.map(Reason::as_str))
            .collect();
        let expiries: Vec<Option<DateTime<Utc>>> =
            afters.iter().map(|a| a.hold_expires_at).collect();
        let updated = sqlx::query!(
            "UPDATE bookings SET status = t.status, reason = t.reason, hold_expires_at = t.expires,
                    dead_lettered_at = NULL, version = bookings.version + 1, updated_at = now()
             FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
                  AS t(id, version, status, reason, expires)
             WHERE bookings.id = t.id AND bookings.version = t.version",
            &ids,
            &versions,
            &statuses as &[&str],
            &reasons as &[Option<&str>],
            &expiries as &[Option<DateTime<Utc>>]
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != ids.len() as u64 {
            return Err(DecideError::Conflict("booking"));
        }
        sqlx::query!(
            "INSERT INTO booking_audit (booking_id, show_id, from_status, to_status, reason, actor)
             SELECT t.id, $2, 'queued', t.status, t.reason, $5
             FROM unnest($1::uuid[], $3::text[], $4::text[]) AS t(id, status, reason)",
            &ids,
            show_id,
            &statuses as &[&str],
            &reasons as &[Option<&str>],
            &self.actor
        )
        .execute(&mut *tx)
        .await?;

        let mut labels = seat_labels(&mut tx, &ids).await?;
        let events: Vec<BookingEvent> = decided
            .iter()
            .zip(&afters)
            .map(|((booking, verdict), after)| {
                let kind = if verdict.is_ok() {
                    EventKind::Held
                } else {
                    EventKind::Rejected
                };
                snapshot(
                    kind,
                    booking,
                    &show,
                    after,
                    labels.remove(&booking.id).unwrap_or_default(),
                )
            })
            .collect();
        insert_outbox(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn confirm(&self, booking_id: Uuid, token: &str) -> Result<Outcome, DecideError> {
        let mut conn = self.db.acquire().await?;
        let Some(booking) = load_booking(&mut conn, booking_id).await? else {
            return Ok(Outcome::Skipped("unknown booking"));
        };
        drop(conn);
        if booking.status != BookingStatus::Held {
            return Ok(Outcome::Skipped("not held"));
        }
        if booking.hold_expires_at.is_some_and(|at| at <= Utc::now()) {
            return self
                .release(booking_id, BookingStatus::Expired, EXPIRY)
                .await;
        }
        // Charged outside the transaction (a gateway call must not hold row
        // locks); the gateway is idempotent per booking, so a retry after a
        // conflict or a crash charges once.
        let charge = self
            .gateway
            .charge(booking.id, booking.total_cents.unwrap_or(0), token)
            .await?;

        let mut tx = self.db.begin().await?;
        let current = load_booking(&mut tx, booking_id).await?;
        let Some(booking) = current.filter(|b| b.status == BookingStatus::Held) else {
            drop(tx);
            if let Charge::Approved { reference } = &charge {
                self.gateway.refund(reference).await?;
            }
            return Ok(Outcome::Skipped("hold ended during payment"));
        };
        let show = load_show(&mut tx, booking.show_id).await?;
        let (kind, after_status, reason, hold, tickets, reference) = match charge {
            Charge::Declined => (
                EventKind::PaymentDeclined,
                BookingStatus::Held,
                Some(Reason::PaymentDeclined),
                booking.hold_expires_at,
                Vec::new(),
                None,
            ),
            Charge::Approved { reference } => {
                let seats = owned_seats(&mut tx, booking.id).await?;
                set_seats(&mut tx, &seats, SeatStatus::Booked, Some(booking.id)).await?;
                bump_show(&mut tx, &show, -booking.quantity, booking.quantity).await?;
                let tickets = issue_tickets(&mut tx, &booking, &seats).await?;
                (
                    EventKind::Confirmed,
                    BookingStatus::Confirmed,
                    None,
                    None,
                    tickets,
                    Some(reference),
                )
            }
        };
        let after = After {
            status: after_status,
            reason,
            hold_expires_at: hold,
            tickets: &tickets,
        };
        transition(&mut tx, &booking, &after, reference.as_deref(), &self.actor).await?;
        emit(&mut tx, kind, &booking, &show, &after).await?;
        tx.commit().await?;
        Ok(Outcome::Applied(kind))
    }

    /// Marks a booking whose request was dead-lettered, so the requeue
    /// sweep leaves it to the operator's replay instead of looping it.
    pub async fn mark_dead_lettered(&self, booking_id: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE bookings SET dead_lettered_at = now() WHERE id = $1 AND status = 'queued'",
            booking_id
        )
        .execute(&self.db)
        .await
        .map(drop)
    }

    /// Ends a live booking (`cancelled` or `expired`) and puts its seats or
    /// quantity back on sale.
    async fn release(
        &self,
        booking_id: Uuid,
        to: BookingStatus,
        actor: &str,
    ) -> Result<Outcome, DecideError> {
        let mut tx = self.db.begin().await?;
        let Some(booking) = load_booking(&mut tx, booking_id).await? else {
            return Ok(Outcome::Skipped("unknown booking"));
        };
        let (held, booked) = match (booking.status, to) {
            (BookingStatus::Held, BookingStatus::Expired)
                if booking.hold_expires_at.is_some_and(|at| at <= Utc::now()) =>
            {
                (booking.quantity, 0)
            }
            (BookingStatus::Held, BookingStatus::Cancelled) => (booking.quantity, 0),
            (BookingStatus::Confirmed, BookingStatus::Cancelled) => (0, booking.quantity),
            // Cancelled before a worker decided it: nothing to give back.
            (BookingStatus::Queued, BookingStatus::Cancelled) => (0, 0),
            _ => return Ok(Outcome::Skipped("nothing to release")),
        };
        let show = load_show(&mut tx, booking.show_id).await?;
        let seats = owned_seats(&mut tx, booking.id).await?;
        set_seats(&mut tx, &seats, SeatStatus::Available, None).await?;
        if held + booked > 0 {
            bump_show(&mut tx, &show, -held, -booked).await?;
        }
        let (kind, reason) = match to {
            BookingStatus::Expired => (EventKind::Expired, Reason::HoldExpired),
            _ => (EventKind::Cancelled, Reason::CancelledByCustomer),
        };
        let after = After {
            status: to,
            reason: Some(reason),
            hold_expires_at: None,
            tickets: &[],
        };
        transition(
            &mut tx,
            &booking,
            &after,
            booking.payment_ref.as_deref(),
            actor,
        )
        .await?;
        emit(&mut tx, kind, &booking, &show, &after).await?;
        tx.commit().await?;
        if let (Some(reference), true) = (&booking.payment_ref, booked > 0) {
            // After the commit: a crash here can at worst miss a refund of
            // the test gateway; a real one refunds from the cancelled event.
            self.gateway.refund(reference).await?;
        }
        Ok(Outcome::Applied(kind))
    }
}

async fn load_booking(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<BookingRow>, sqlx::Error> {
    sqlx::query_as!(
        BookingRow,
        r#"SELECT id, show_id, status AS "status: BookingStatus", quantity, version, email, name,
                  total_cents, hold_expires_at, payment_ref
           FROM bookings WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

async fn load_show(conn: &mut PgConnection, id: Uuid) -> Result<ShowRow, sqlx::Error> {
    sqlx::query_as!(
        ShowRow,
        r#"SELECT id, name, venue, starts_at, kind AS "kind: ShowKind", capacity, held, booked, version
           FROM shows WHERE id = $1"#,
        id
    )
    .fetch_one(conn)
    .await
}

struct SeatRow {
    id: Uuid,
    status: SeatStatus,
    version: i64,
}

/// The seats a booking holds or owns now.
async fn owned_seats(
    conn: &mut PgConnection,
    booking_id: Uuid,
) -> Result<Vec<SeatRow>, sqlx::Error> {
    sqlx::query_as!(
        SeatRow,
        r#"SELECT id, status AS "status: SeatStatus", version
           FROM seats WHERE booking_id = $1 ORDER BY id"#,
        booking_id
    )
    .fetch_all(conn)
    .await
}

/// Moves seats to `status` with one version-checked statement; any seat
/// changed since it was read makes the whole move a conflict.
async fn set_seats(
    conn: &mut PgConnection,
    seats: &[SeatRow],
    status: SeatStatus,
    owner: Option<Uuid>,
) -> Result<(), DecideError> {
    if seats.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = seats.iter().map(|s| s.id).collect();
    let versions: Vec<i64> = seats.iter().map(|s| s.version).collect();
    let updated = sqlx::query!(
        "UPDATE seats SET status = $1, booking_id = $2, version = seats.version + 1
         FROM unnest($3::uuid[], $4::bigint[]) AS t(id, version)
         WHERE seats.id = t.id AND seats.version = t.version",
        status as SeatStatus,
        owner,
        &ids,
        &versions
    )
    .execute(conn)
    .await?
    .rows_affected();
    if updated != seats.len() as u64 {
        return Err(DecideError::Conflict("seat"));
    }
    Ok(())
}

/// Adjusts the show's held/booked counters under its version.
async fn bump_show(
    conn: &mut PgConnection,
    show: &ShowRow,
    held: i32,
    booked: i32,
) -> Result<(), DecideError> {
    let updated = sqlx::query!(
        "UPDATE shows SET held = held + $3, booked = booked + $4, version = version + 1
         WHERE id = $1 AND version = $2",
        show.id,
        show.version,
        held,
        booked
    )
    .execute(conn)
    .await?
    .rows_affected();
    if updated != 1 {
        return Err(DecideError::Conflict("show"));
    }
    Ok(())
}

/// Moves the booking under its version and records the change in the audit trail.
async fn transition(
    conn: &mut PgConnection,
    booking: &BookingRow,
    after: &After<'_>,
    payment_ref: Option<&str>,
    actor: &str,
) -> Result<(), DecideError> {
    let reason = after.reason.map(Reason::as_str);
    let updated = sqlx::query!(
        "UPDATE bookings SET status = $3, reason = $4, hold_expires_at = $5, payment_ref = $6,
                version = version + 1, updated_at = now()
         WHERE id = $1 AND version = $2",
        booking.id,
        booking.version,
        after.status as BookingStatus,
        reason,
        after.hold_expires_at,
        payment_ref
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated != 1 {
        return Err(DecideError::Conflict("booking"));
    }
    sqlx::query!(
        "INSERT INTO booking_audit (booking_id, show_id, from_status, to_status, reason, actor)
         VALUES ($1, $2, $3, $4, $5, $6)",
        booking.id,
        booking.show_id,
        booking.status as BookingStatus,
        after.status as BookingStatus,
        reason,
        actor
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Ticket codes: short enough to read out, random enough not to guess.
fn ticket_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let code: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("TKT-{}-{}-{}", &code[..4], &code[4..8], &code[8..])
}

/// One ticket per seat, or per unit of a general-admission booking.
async fn issue_tickets(
    conn: &mut PgConnection,
    booking: &BookingRow,
    seats: &[SeatRow],
) -> Result<Vec<String>, sqlx::Error> {
    let codes: Vec<String> = (0..booking.quantity).map(|_| ticket_code()).collect();
    let seat_ids: Vec<Option<Uuid>> = (0..booking.quantity as usize)
        .map(|i| seats.get(i).map(|s| s.id))
        .collect();
    sqlx::query!(
        "INSERT INTO tickets (code, booking_id, show_id, seat_id)
         SELECT code, $1, $2, seat FROM unnest($3::text[], $4::uuid[]) AS t(code, seat)",
        booking.id,
        booking.show_id,
        &codes,
        &seat_ids as &[Option<Uuid>]
    )
    .execute(conn)
    .await?;
    Ok(codes)
}

/// Writes the event to the outbox, in the deciding transaction.
async fn emit(
    conn: &mut PgConnection,
    kind: EventKind,
    booking: &BookingRow,
    show: &ShowRow,
    after: &After<'_>,
) -> Result<(), sqlx::Error> {
    let seats = seat_labels(&mut *conn, &[booking.id])
        .await?
        .remove(&booking.id)
        .unwrap_or_default();
    insert_outbox(conn, &[snapshot(kind, booking, show, after, seats)]).await
}

/// The seats each booking asked for, named as a customer reads them.
async fn seat_labels(
    conn: &mut PgConnection,
    booking_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<SeatLabel>>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT bs.booking_id, sec.name AS section, s.row_label AS row, s.number, s.price_cents
           FROM booking_seats bs
           JOIN seats s ON s.id = bs.seat_id
           JOIN sections sec ON sec.id = s.section_id
           WHERE bs.booking_id = ANY($1) ORDER BY sec.position, s.row_label, s.number"#,
        booking_ids
    )
    .fetch_all(conn)
    .await?;
    let mut labels: HashMap<Uuid, Vec<SeatLabel>> = HashMap::new();
    for r in rows {
        labels.entry(r.booking_id).or_default().push(SeatLabel {
            section: r.section,
            row: r.row,
            number: r.number,
            price_cents: r.price_cents,
        });
    }
    Ok(labels)
}

fn snapshot(
    kind: EventKind,
    booking: &BookingRow,
    show: &ShowRow,
    after: &After<'_>,
    seats: Vec<SeatLabel>,
) -> BookingEvent {
    BookingEvent {
        event_id: Uuid::now_v7(),
        kind,
        occurred_at: Utc::now(),
        booking: BookingSnapshot {
            id: booking.id,
            show_id: booking.show_id,
            show_name: show.name.clone(),
            venue: show.venue.clone(),
            starts_at: show.starts_at,
            email: booking.email.clone(),
            name: booking.name.clone(),
            status: after.status,
            reason: after.reason,
            quantity: booking.quantity,
            seats,
            total_cents: booking.total_cents,
            hold_expires_at: after.hold_expires_at,
            tickets: after.tickets.to_vec(),
        },
    }
}

async fn insert_outbox(
    conn: &mut PgConnection,
    events: &[BookingEvent],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let shows: Vec<Uuid> = events.iter().map(|e| e.booking.show_id).collect();
    let bookings: Vec<Uuid> = events.iter().map(|e| e.booking.id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let payloads: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).expect("events serialize"))
        .collect();
    sqlx::query!(
        "INSERT INTO outbox (id, show_id, booking_id, kind, payload)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[])",
        &ids,
        &shows,
        &bookings,
        &kinds as &[&str],
        &payloads
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn unzip3<A: Copy, B: Copy, C: Copy>(items: &[(A, B, C)]) -> (Vec<A>, Vec<B>, Vec<C>) {
    let mut out = (
        Vec::with_capacity(items.len()),
        Vec::with_capacity(items.len()),
        Vec::with_capacity(items.len()),
    );
    for &(a, b, c) in items {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ticket_code;

    #[test]
    fn ticket_codes_are_readable_and_distinct() {
        let a = ticket_code();
        assert_eq!(a.len(), "TKT-XXXX-XXXX-XXXX".len());
        assert!(a.starts_with("TKT-"));
        assert!(!a.contains('0') && !a.contains('O') && !a.contains('1') && !a.contains('I'));
        assert_ne!(a, ticket_code());
    }
}
