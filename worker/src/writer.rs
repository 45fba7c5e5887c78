//! The one writer: reads what a run of commands for one show needs, lets
//! the decision core ([`crate::decide`]) decide it, and persists 1..N
//! decisions of every kind (request, confirm, cancel, expire) inside the
//! caller's transaction: one version-checked statement per table (seats,
//! show counters, bookings), the audit rows, the tickets, one outbox
//! event per decision and the refunds to make. Zero or too few rows updated means someone changed a
//! row since it was read: a [`DecideError::Conflict`] that rolls the whole
//! run back for a retry.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rand::Rng;
use shared::domain::{BookingStatus, Reason, SeatStatus, ShowKind, MAX_TICKETS_PER_BOOKING};
use shared::lifecycle::CommandKind;
use shared::messages::{BookingEvent, BookingSnapshot, SeatLabel};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::decide::{
    self, Booking, Command, Decided, Decision, Queue, Rules, Seat, Show, State, Verdict,
};
use crate::error::DecideError;
use crate::outbox;
use crate::payment::Refund;
use crate::seating::Place;

/// Who expired a hold, for the audit trail (otherwise the worker's name).
const EXPIRY_ACTOR: &str = "expiry-sweeper";

/// Whom the audit trail names for a run's decisions.
#[derive(Debug, Default)]
pub struct Actors<'a> {
    /// This worker: the actor of what nobody else asked for.
    pub worker: &'a str,
    /// Cancels an operator asked for on a customer's behalf, by booking.
    pub cancelled_by: HashMap<Uuid, &'a str>,
}

impl<'a> Actors<'a> {
    pub fn worker(worker: &'a str) -> Self {
        Self {
            worker,
            cancelled_by: HashMap::new(),
        }
    }

    fn of(&self, decision: &Decision) -> &'a str {
        match (decision.to, decision.command) {
            (BookingStatus::Expired, _) => EXPIRY_ACTOR,
            (_, CommandKind::Cancel) => self
                .cancelled_by
                .get(&decision.booking)
                .copied()
                .unwrap_or(self.worker),
            _ => self.worker,
        }
    }
}

/// Loads the state of `show_id` and of the bookings `commands` name,
/// decides the run and writes the decisions, all in `conn`'s transaction.
/// The caller commits (or rolls back on an error).
pub async fn decide_in(
    conn: &mut PgConnection,
    show_id: Uuid,
    commands: &[Command],
    rules: &Rules,
    actors: &Actors<'_>,
) -> Result<Decided, DecideError> {
    let loaded = Loaded::read(conn, show_id, commands).await?;
    let mut state = loaded.state.clone();
    let order = decide::line_order(&state, commands);
    let in_line: Vec<Command> = order.iter().map(|&i| commands[i].clone()).collect();
    let mut decided = decide::decide(&mut state, &in_line, rules);
    let decisions: Vec<&Decision> = decided.decisions().collect();
    if !decisions.is_empty() {
        loaded
            .write(conn, &state, &decisions, &decided.refunds, actors)
            .await?;
    }
    // Even a skipped command can leave a charge to pay back.
    record_refunds(conn, &decided.refunds).await?;
    // Written in the order decided; answered in the order given.
    let mut verdicts: Vec<Option<Verdict>> = (0..commands.len()).map(|_| None).collect();
    for (&i, verdict) in order.iter().zip(decided.verdicts.drain(..)) {
        verdicts[i] = Some(verdict);
    }
    decided.verdicts = verdicts.into_iter().flatten().collect();
    Ok(decided)
}

/// Marks a booking whose request was dead-lettered, so the requeue sweep
/// leaves it to the operator's replay instead of looping it.
pub async fn mark_dead_lettered(db: &PgPool, booking_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE bookings SET dead_lettered_at = now() WHERE id = $1 AND status = 'queued'",
        booking_id
    )
    .execute(db)
    .await
    .map(drop)
}

/// The rows a run read: the core's state, plus what the writer needs to
/// check versions and to describe bookings in their events.
struct Loaded {
    state: State,
    show: ShowRow,
    bookings: HashMap<Uuid, BookingRow>,
    seats: HashMap<Uuid, SeatRow>,
}

struct ShowRow {
    name: String,
    venue: String,
    starts_at: DateTime<Utc>,
    version: i64,
}

struct BookingRow {
    version: i64,
    email: String,
    name: String,
}

struct SeatRow {
    version: i64,
    label: SeatLabel,
}

enum SeatsOf<'a> {
    Bookings(&'a [Uuid]),
    FreeInShow,
}

/// A seat as read, with the loaded booking it belongs to, if any.
struct SeatRecord {
    booking_id: Option<Uuid>,
    id: Uuid,
    status: SeatStatus,
    owner: Option<Uuid>,
    version: i64,
    section: String,
    section_rank: i32,
    row: String,
    number: i32,
    price_cents: i64,
}

impl Loaded {
    async fn read(
        conn: &mut PgConnection,
        show_id: Uuid,
        commands: &[Command],
    ) -> Result<Self, sqlx::Error> {
        let show = sqlx::query!(
            r#"SELECT name, venue, starts_at, kind AS "kind: ShowKind", capacity, held, booked, version,
                      max_tickets_per_customer, waitlist_tail
               FROM shows WHERE id = $1"#,
            show_id
        )
        .fetch_one(&mut *conn)
        .await?;
        let mut loaded = Self {
            state: State {
                show_id,
                show: Show {
                    kind: show.kind,
                    capacity: show.capacity,
                    held: show.held,
                    booked: show.booked,
                    max_per_customer: show.max_tickets_per_customer,
                    starts_at: show.starts_at,
                    waitlist_tail: show.waitlist_tail,
                },
                seats: HashMap::new(),
                bookings: HashMap::new(),
                customer_tickets: HashMap::new(),
                waitlist: BTreeMap::new(),
                waitlist_read_until: HashMap::new(),
            },
            show: ShowRow {
                name: show.name,
                venue: show.venue,
                starts_at: show.starts_at,
                version: show.version,
            },
            bookings: HashMap::new(),
            seats: HashMap::new(),
        };
        let ids: Vec<Uuid> = commands.iter().map(Command::booking).collect();
        loaded.read_bookings(conn, &ids).await?;
        loaded.read_waitlist_head(conn, commands).await?;
        if show.max_tickets_per_customer.is_some() {
            loaded.read_customer_tickets(conn).await?;
        }
        if show.kind == ShowKind::Seated {
            let ids: Vec<Uuid> = loaded.state.bookings.keys().copied().collect();
            loaded.read_seats(conn, SeatsOf::Bookings(&ids)).await?;
            // Best-available requests and offers pick from the free seats.
            let picks = loaded.state.bookings.values().any(|b| {
                b.seats.is_empty()
                    && matches!(b.status, BookingStatus::Queued | BookingStatus::Waitlisted)
            });
            if picks {
                loaded.read_seats(conn, SeatsOf::FreeInShow).await?;
            }
            loaded.rank_rows();
        }
        Ok(loaded)
    }

    /// Adds the bookings `ids` (those that exist) to the state.
    async fn read_bookings(
        &mut self,
        conn: &mut PgConnection,
        ids: &[Uuid],
    ) -> Result<(), sqlx::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        for b in sqlx::query!(
            r#"SELECT id, show_id, status AS "status: BookingStatus", reason AS "reason: Reason",
                      quantity, version, email, name, total_cents, hold_expires_at, payment_ref,
                      section, waitlist, waitlist_seq, accepted_seq
               FROM bookings WHERE id = ANY($1)"#,
            ids
        )
        .fetch_all(&mut *conn)
        .await?
        {
            self.state.bookings.insert(
                b.id,
                Booking {
                    show_id: b.show_id,
                    customer: b.email.to_lowercase(),
                    status: b.status,
                    reason: b.reason,
                    quantity: b.quantity,
                    seats: Vec::new(),
                    section: b.section,
                    waitlist: b.waitlist,
                    waitlist_seq: b.waitlist_seq,
                    accepted_seq: b.accepted_seq,
                    total_cents: b.total_cents,
                    hold_expires_at: b.hold_expires_at,
                    payment_ref: b.payment_ref,
                },
            );
            self.bookings.insert(
                b.id,
                BookingRow {
                    version: b.version,
                    email: b.email,
                    name: b.name,
                },
            );
        }
        Ok(())
    }

    /// The waitlisted bookings a run could offer tickets to: only a run that
    /// can return tickets needs them. At most `most` tickets can be free at
    /// any point of the run (free now, plus all that its commands' bookings
    /// hold), so at most `most / n` bookings of size `n` can be offered:
    /// that many from the head of each (section, size) queue, in join
    /// order, are all the run can reach, however long the list. A queue
    /// read only in part is marked, so that nobody behind the part read
    /// (someone joining during the run, say) is offered anything.
    async fn read_waitlist_head(
        &mut self,
        conn: &mut PgConnection,
        commands: &[Command],
    ) -> Result<(), sqlx::Error> {
        let state = &self.state;
        let returning: i32 = commands
            .iter()
            .filter(|c| !matches!(c, Command::Request(_)))
            .filter_map(|c| state.bookings.get(&c.booking()))
            .map(|b| b.quantity)
            .sum();
        if returning == 0 || state.show.waitlist_tail == 0 {
            return Ok(());
        }
        let most = (state.show.available() + returning).min(state.show.capacity);
        let mut sections = vec![String::new()];
        if state.show.kind == ShowKind::Seated {
            sections.extend(
                sqlx::query_scalar!(
                    "SELECT name FROM sections WHERE show_id = $1",
                    state.show_id
                )
                .fetch_all(&mut *conn)
                .await?,
            );
        }
        let head = sqlx::query!(
            r#"SELECT w.id AS "id!", w.waitlist_seq AS "seq!", k.section AS "section!", q.n AS "size!"
               FROM unnest($2::text[]) AS k(section), generate_series(1, $4::int) AS q(n),
                    LATERAL (SELECT id, waitlist_seq FROM bookings
                             WHERE show_id = $1 AND status = 'waitlisted'
                               AND coalesce(section, '') = k.section AND quantity = q.n
                             ORDER BY waitlist_seq LIMIT $3 / q.n) w"#,
            state.show_id,
            &sections,
            most,
            MAX_TICKETS_PER_BOOKING
        )
        .fetch_all(&mut *conn)
        .await?;
        // Per queue: how many were read and the last place read.
        let mut read: HashMap<Queue, (i32, i64)> = HashMap::new();
        for w in &head {
            let queue = (Some(w.section.clone()).filter(|s| !s.is_empty()), w.size);
            let entry = read.entry(queue).or_default();
            *entry = (entry.0 + 1, entry.1.max(w.seq));
        }
        for (queue, (count, last)) in read {
            if count >= most / queue.1 {
                self.state.waitlist_read_until.insert(queue, last);
            }
        }
        let ids: Vec<Uuid> = head.iter().map(|w| w.id).collect();
        self.read_bookings(conn, &ids).await?;
        for w in head {
            self.state.waitlist.insert(w.seq, w.id);
        }
        Ok(())
    }

    /// Held + confirmed tickets of every customer in the state, for limits.
    async fn read_customer_tickets(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let mut customers: Vec<String> = self
            .state
            .bookings
            .values()
            .map(|b| b.customer.clone())
            .collect();
        customers.sort_unstable();
        customers.dedup();
        for c in sqlx::query!(
            r#"SELECT lower(email) AS "customer!", sum(quantity)::int AS "tickets!"
               FROM bookings
               WHERE show_id = $1 AND lower(email) = ANY($2) AND status IN ('held', 'confirmed')
               GROUP BY lower(email)"#,
            self.state.show_id,
            &customers
        )
        .fetch_all(&mut *conn)
        .await?
        {
            self.state.customer_tickets.insert(c.customer, c.tickets);
        }
        Ok(())
    }

    /// Seats of the given bookings (each booking's list in seat order), or
    /// every free seat of the show (to pick from).
    async fn read_seats(
        &mut self,
        conn: &mut PgConnection,
        of: SeatsOf<'_>,
    ) -> Result<(), sqlx::Error> {
        let records = match of {
            SeatsOf::Bookings(ids) => {
                sqlx::query_as!(
                    SeatRecord,
                    r#"SELECT bs.booking_id AS "booking_id?", s.id, s.status AS "status: SeatStatus",
                              s.booking_id AS owner, s.version, sec.name AS section,
                              sec.position AS section_rank, s.row_label AS row, s.number, s.price_cents
                       FROM booking_seats bs
                       JOIN seats s ON s.id = bs.seat_id
                       JOIN sections sec ON sec.id = s.section_id
                       WHERE bs.booking_id = ANY($1)
                       ORDER BY sec.position, length(s.row_label), s.row_label, s.number"#,
                    ids
                )
                .fetch_all(&mut *conn)
                .await?
            }
            SeatsOf::FreeInShow => {
                sqlx::query_as!(
                    SeatRecord,
                    r#"SELECT NULL::uuid AS "booking_id?", s.id, s.status AS "status: SeatStatus",
                              s.booking_id AS owner, s.version, sec.name AS section,
                              sec.position AS section_rank, s.row_label AS row, s.number, s.price_cents
                       FROM seats s
                       JOIN sections sec ON sec.id = s.section_id
                       WHERE s.show_id = $1 AND s.status = 'available'"#,
                    self.state.show_id
                )
                .fetch_all(&mut *conn)
                .await?
            }
        };
        for s in records {
            if let Some(booking) = s.booking_id.and_then(|b| self.state.bookings.get_mut(&b)) {
                booking.seats.push(s.id);
            }
            let place = Place {
                section: s.section.clone(),
                section_rank: s.section_rank,
                row_rank: 0,
                number: s.number,
            };
            self.state.seats.entry(s.id).or_insert(Seat {
                status: s.status,
                owner: s.owner,
                place,
                price_cents: s.price_cents,
            });
            self.seats.entry(s.id).or_insert(SeatRow {
                version: s.version,
                label: SeatLabel {
                    section: s.section,
                    row: s.row,
                    number: s.number,
                    price_cents: s.price_cents,
                },
            });
        }
        Ok(())
    }

    /// Ranks the rows of the loaded seats within their section: shorter
    /// labels first, so row "9" comes before row "10" and "Z" before "AA".
    fn rank_rows(&mut self) {
        let mut rows: Vec<(i32, &str)> = self
            .state
            .seats
            .iter()
            .map(|(id, seat)| (seat.place.section_rank, self.seats[id].label.row.as_str()))
            .collect();
        rows.sort_by(|a, b| (a.0, a.1.len(), a.1).cmp(&(b.0, b.1.len(), b.1)));
        rows.dedup();
        let rank: HashMap<(i32, String), i32> = rows
            .into_iter()
            .enumerate()
            .map(|(i, (section, row))| ((section, row.to_owned()), i as i32))
            .collect();
        for (id, seat) in &mut self.state.seats {
            let row = self.seats[id].label.row.clone();
            seat.place.row_rank = rank[&(seat.place.section_rank, row)];
        }
    }

    /// Writes the difference between what was read and `after`, plus the
    /// audit rows, tickets and events of `verdicts`.
    async fn write(
        &self,
        conn: &mut PgConnection,
        after: &State,
        decisions: &[&Decision],
        refunds: &[Refund],
        actors: &Actors<'_>,
    ) -> Result<(), DecideError> {
        self.write_seats(conn, after).await?;
        self.write_show(conn, after).await?;
        self.write_bookings(conn, after, decisions).await?;
        self.write_picked_seats(conn, after).await?;
        write_audit(conn, after.show_id, decisions, actors).await?;
        let mut tickets = self.issue_tickets(conn, after, decisions).await?;
        let events: Vec<BookingEvent> = decisions
            .iter()
            .enumerate()
            .map(|(i, d)| {
                // What ending this booking pays back, if anything.
                let refund = refunds
                    .iter()
                    .filter(|r| d.returns_tickets() && r.booking == d.booking)
                    .map(|r| r.amount_cents)
                    .sum::<i64>();
                let tickets = tickets.remove(&i).unwrap_or_default();
                self.event(after, d, tickets, Some(refund).filter(|&cents| cents > 0))
            })
            .collect();
        outbox::insert_events(conn, &events).await?;
        Ok(())
    }

    async fn write_seats(&self, conn: &mut PgConnection, after: &State) -> Result<(), DecideError> {
        let changed: Vec<(&Uuid, &Seat)> = after
            .seats
            .iter()
            .filter(|(id, seat)| self.state.seats.get(id) != Some(seat))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = changed.iter().map(|(id, _)| **id).collect();
        let versions: Vec<i64> = ids.iter().map(|id| self.seats[id].version).collect();
        let statuses: Vec<&str> = changed.iter().map(|(_, s)| s.status.as_str()).collect();
        let owners: Vec<Option<Uuid>> = changed.iter().map(|(_, s)| s.owner).collect();
        let updated = sqlx::query!(
            "UPDATE seats SET status = t.status, booking_id = t.owner, version = seats.version + 1
             FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::uuid[]) AS t(id, version, status, owner)
             WHERE seats.id = t.id AND seats.version = t.version",
            &ids,
            &versions,
            &statuses as &[&str],
            &owners as &[Option<Uuid>]
        )
        .execute(conn)
        .await?
        .rows_affected();
        if updated != ids.len() as u64 {
            return Err(DecideError::Conflict("seat"));
        }
        Ok(())
    }

    async fn write_show(&self, conn: &mut PgConnection, after: &State) -> Result<(), DecideError> {
        if after.show == self.state.show {
            return Ok(());
        }
        let held = after.show.held - self.state.show.held;
        let booked = after.show.booked - self.state.show.booked;
        let updated = sqlx::query!(
            "UPDATE shows SET held = held + $3, booked = booked + $4, waitlist_tail = $5,
                    version = version + 1
             WHERE id = $1 AND version = $2",
            after.show_id,
            self.show.version,
            held,
            booked,
            after.show.waitlist_tail
        )
        .execute(conn)
        .await?
        .rows_affected();
        if updated != 1 {
            return Err(DecideError::Conflict("show"));
        }
        Ok(())
    }

    /// Each changed booking once, in its final state for the run.
    async fn write_bookings(
        &self,
        conn: &mut PgConnection,
        after: &State,
        decisions: &[&Decision],
    ) -> Result<(), DecideError> {
        let mut ids: Vec<Uuid> = decisions.iter().map(|d| d.booking).collect();
        ids.sort_unstable();
        ids.dedup();
        let finals: Vec<&Booking> = ids.iter().map(|id| &after.bookings[id]).collect();
        let versions: Vec<i64> = ids.iter().map(|id| self.bookings[id].version).collect();
        let statuses: Vec<&str> = finals.iter().map(|b| b.status.as_str()).collect();
        let reasons: Vec<Option<&str>> = finals
            .iter()
            .map(|b| b.reason.map(Reason::as_str))
            .collect();
        let expiries: Vec<Option<DateTime<Utc>>> =
            finals.iter().map(|b| b.hold_expires_at).collect();
        let payments: Vec<Option<&str>> = finals.iter().map(|b| b.payment_ref.as_deref()).collect();
        let totals: Vec<Option<i64>> = finals.iter().map(|b| b.total_cents).collect();
        let places: Vec<Option<i64>> = finals.iter().map(|b| b.waitlist_seq).collect();
        let updated = sqlx::query!(
            "UPDATE bookings SET status = t.status, reason = t.reason, hold_expires_at = t.expires,
                    payment_ref = t.payment_ref, total_cents = t.total, waitlist_seq = t.place,
                    dead_lettered_at = NULL, version = bookings.version + 1, updated_at = now()
             FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                         $7::bigint[], $8::bigint[])
                  AS t(id, version, status, reason, expires, payment_ref, total, place)
             WHERE bookings.id = t.id AND bookings.version = t.version",
            &ids,
            &versions,
            &statuses as &[&str],
            &reasons as &[Option<&str>],
            &expiries as &[Option<DateTime<Utc>>],
            &payments as &[Option<&str>],
            &totals as &[Option<i64>],
            &places as &[Option<i64>]
        )
        .execute(conn)
        .await?
        .rows_affected();
        if updated != ids.len() as u64 {
            return Err(DecideError::Conflict("booking"));
        }
        Ok(())
    }

    /// The seats the worker picked for best-available bookings become
    /// theirs, as named seats are from the start.
    async fn write_picked_seats(
        &self,
        conn: &mut PgConnection,
        after: &State,
    ) -> Result<(), sqlx::Error> {
        let (bookings, seats): (Vec<Uuid>, Vec<Uuid>) = after
            .bookings
            .iter()
            .filter(|(id, b)| !b.seats.is_empty() && self.state.bookings[*id].seats.is_empty())
            .flat_map(|(id, b)| b.seats.iter().map(move |seat| (*id, *seat)))
            .unzip();
        if !seats.is_empty() {
            sqlx::query!(
                "INSERT INTO booking_seats (booking_id, seat_id, show_id)
                 SELECT booking, seat, $1 FROM unnest($2::uuid[], $3::uuid[]) AS t(booking, seat)",
                after.show_id,
                &bookings,
                &seats
            )
            .execute(conn)
            .await?;
        }
        Ok(())
    }

    /// One ticket per seat (in seat order) or per unit, for each confirm;
    /// returns the codes by decision index.
    async fn issue_tickets(
        &self,
        conn: &mut PgConnection,
        after: &State,
        decisions: &[&Decision],
    ) -> Result<HashMap<usize, Vec<String>>, sqlx::Error> {
        let mut codes_of = HashMap::new();
        let (mut bookings, mut codes, mut seats) = (Vec::new(), Vec::new(), Vec::new());
        for (i, d) in decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.issue_tickets)
        {
            let booking = &after.bookings[&d.booking];
            let mine: Vec<String> = (0..booking.quantity).map(|_| ticket_code()).collect();
            for (n, code) in mine.iter().enumerate() {
                bookings.push(d.booking);
                codes.push(code.clone());
                seats.push(booking.seats.get(n).copied());
            }
            codes_of.insert(i, mine);
        }
        if !codes.is_empty() {
            sqlx::query!(
                "INSERT INTO tickets (code, booking_id, show_id, seat_id)
                 SELECT code, booking, $1, seat
                 FROM unnest($2::text[], $3::uuid[], $4::uuid[]) AS t(code, booking, seat)",
                after.show_id,
                &codes,
                &bookings,
                &seats as &[Option<Uuid>]
            )
            .execute(conn)
            .await?;
        }
        Ok(codes_of)
    }

    /// The event of one decision, with the booking as it was right then.
    fn event(
        &self,
        after: &State,
        d: &Decision,
        tickets: Vec<String>,
        refund_cents: Option<i64>,
    ) -> BookingEvent {
        let row = &self.bookings[&d.booking];
        let booking = &after.bookings[&d.booking];
        BookingEvent {
            event_id: Uuid::now_v7(),
            kind: d.event,
            occurred_at: Utc::now(),
            booking: BookingSnapshot {
                id: d.booking,
                show_id: after.show_id,
                show_name: self.show.name.clone(),
                venue: self.show.venue.clone(),
                starts_at: self.show.starts_at,
                email: row.email.clone(),
                name: row.name.clone(),
                status: d.to,
                reason: d.reason,
                quantity: booking.quantity,
                seats: booking
                    .seats
                    .iter()
                    .map(|s| self.seats[s].label.clone())
                    .collect(),
                total_cents: booking.total_cents,
                hold_expires_at: d.hold_expires_at,
                tickets,
                refund_cents,
            },
        }
    }
}

/// The refunds a run decided, in its transaction: from here the refund
/// sweeper ([`crate::refunds`]) sees them through. Once per charge, however
/// often the run is decided again.
async fn record_refunds(conn: &mut PgConnection, refunds: &[Refund]) -> Result<(), sqlx::Error> {
    if refunds.is_empty() {
        return Ok(());
    }
    let references: Vec<&str> = refunds.iter().map(|r| r.reference.as_str()).collect();
    let bookings: Vec<Uuid> = refunds.iter().map(|r| r.booking).collect();
    let amounts: Vec<i64> = refunds.iter().map(|r| r.amount_cents).collect();
    sqlx::query!(
        "INSERT INTO refunds (reference, booking_id, amount_cents)
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[])
         ON CONFLICT (reference) DO NOTHING",
        &references as &[&str],
        &bookings,
        &amounts
    )
    .execute(conn)
    .await
    .map(drop)
}

/// One audit row per decision: from, to, why and who.
async fn write_audit(
    conn: &mut PgConnection,
    show_id: Uuid,
    decisions: &[&Decision],
    actors: &Actors<'_>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = decisions.iter().map(|d| d.booking).collect();
    let froms: Vec<&str> = decisions.iter().map(|d| d.from.as_str()).collect();
    let tos: Vec<&str> = decisions.iter().map(|d| d.to.as_str()).collect();
    let reasons: Vec<Option<&str>> = decisions
        .iter()
        .map(|d| d.reason.map(Reason::as_str))
        .collect();
    let actors: Vec<&str> = decisions.iter().map(|d| actors.of(d)).collect();
    sqlx::query!(
        "INSERT INTO booking_audit (booking_id, show_id, from_status, to_status, reason, actor)
         SELECT t.id, $2, t.from_status, t.to_status, t.reason, t.actor
         FROM unnest($1::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
              AS t(id, from_status, to_status, reason, actor)",
        &ids,
        show_id,
        &froms as &[&str],
        &tos as &[&str],
        &reasons as &[Option<&str>],
        &actors as &[&str]
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
