//! Reads what runs of commands for shows need, inside the deciding
//! transaction: the show, the bookings its commands name (and the head of
//! its waiting list when tickets may return, and its customers' tickets
//! when it has a limit), and their seats (and every free seat when a
//! best-available request or an offer has to pick). [`crate::persist`]
//! writes the difference after the core has decided.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use shared::domain::{BookingStatus, SeatStatus, ShowKind, Wanted, MAX_TICKETS_PER_BOOKING};
use shared::messages::SeatLabel;
use shared::store::bookings::deciding as bookings;
use shared::store::{seats, shows};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::decide::{Booking, Command, Queue, Seat, Show, State};
use crate::seating::Place;

/// The rows a run read: the core's state, plus what the writer needs to
/// check versions and to describe bookings in their events.
pub struct Loaded {
    pub state: State,
    pub show: ShowRow,
    pub bookings: HashMap<Uuid, BookingRow>,
    pub seats: HashMap<Uuid, SeatRow>,
}

pub struct ShowRow {
    pub name: String,
    pub venue: String,
    pub starts_at: DateTime<Utc>,
    pub version: i64,
}

pub struct BookingRow {
    pub version: i64,
    pub email: String,
    pub name: String,
}

pub struct SeatRow {
    pub version: i64,
    pub label: SeatLabel,
    /// Sorts the seat's row in seat order (see [`Loaded::rank_rows`]).
    row_key: String,
}

enum SeatsOf<'a> {
    Bookings(&'a [Uuid]),
    FreeInShow,
}

impl Loaded {
    /// What each of `runs` (a show and its commands) needs, in run order:
    /// the shows and the bookings the commands name in one statement each,
    /// however many shows; the rest (waiting lists, limits, seats) per show
    /// that needs it.
    pub async fn read_runs(
        conn: &mut PgConnection,
        runs: &[(Uuid, &[Command])],
    ) -> Result<Vec<Self>, sqlx::Error> {
        let show_ids: Vec<Uuid> = runs.iter().map(|(show, _)| *show).collect();
        let mut shows: HashMap<Uuid, shows::ForDeciding> =
            shows::load_for_deciding(conn, &show_ids)
                .await?
                .into_iter()
                .map(|show| (show.id, show))
                .collect();
        let ids: Vec<Uuid> = runs
            .iter()
            .flat_map(|(_, commands)| commands.iter().map(Command::booking))
            .collect();
        let mut rows: HashMap<Uuid, bookings::ForDeciding> =
            bookings::load_for_deciding(conn, &ids)
                .await?
                .into_iter()
                .map(|b| (b.id, b))
                .collect();
        let mut loaded = Vec::with_capacity(runs.len());
        for (show_id, commands) in runs {
            // A show twice in one transaction fails here, and each of its
            // runs is then decided alone.
            let show = shows.remove(show_id).ok_or(sqlx::Error::RowNotFound)?;
            let mine = commands
                .iter()
                .filter_map(|c| rows.remove(&c.booking()))
                .collect();
            let mut run = Self::new(show);
            run.add_bookings(mine);
            run.complete(conn, commands).await?;
            loaded.push(run);
        }
        Ok(loaded)
    }

    fn new(show: shows::ForDeciding) -> Self {
        Self {
            state: State {
                show_id: show.id,
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
        }
    }

    /// Reads what only some runs need, once the run's bookings are in.
    async fn complete(
        &mut self,
        conn: &mut PgConnection,
        commands: &[Command],
    ) -> Result<(), sqlx::Error> {
        self.read_waitlist_head(conn, commands).await?;
        if self.state.show.max_per_customer.is_some() {
            self.read_customer_tickets(conn).await?;
        }
        if self.state.show.kind == ShowKind::Seated {
            let ids: Vec<Uuid> = self.state.bookings.keys().copied().collect();
            self.read_seats(conn, SeatsOf::Bookings(&ids)).await?;
            // Best-available requests and offers pick from the free seats.
            let picks = self.state.bookings.values().any(|b| {
                matches!(b.wanted, Wanted::BestAvailable { .. })
                    && matches!(b.status, BookingStatus::Queued | BookingStatus::Waitlisted)
            });
            if picks {
                self.read_seats(conn, SeatsOf::FreeInShow).await?;
            }
            self.rank_rows();
        }
        Ok(())
    }

    /// Adds the bookings `ids` (those that exist) to the state.
    async fn read_bookings(
        &mut self,
        conn: &mut PgConnection,
        ids: &[Uuid],
    ) -> Result<(), sqlx::Error> {
        if !ids.is_empty() {
            let rows = bookings::load_for_deciding(conn, ids).await?;
            self.add_bookings(rows);
        }
        Ok(())
    }

    fn add_bookings(&mut self, rows: Vec<bookings::ForDeciding>) {
        for b in rows {
            // A seated booking asks for the best available until its seats
            // are read ([`Self::read_seats`]): named, or picked for it.
            let wanted = match self.state.show.kind {
                ShowKind::GeneralAdmission => Wanted::Quantity(b.quantity),
                ShowKind::Seated => Wanted::BestAvailable {
                    quantity: b.quantity,
                    section: b.section,
                },
            };
            self.state.bookings.insert(
                b.id,
                Booking {
                    show_id: b.show_id,
                    customer: b.email.to_lowercase(),
                    status: b.status,
                    reason: b.reason,
                    wanted,
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
            .map(|b| b.quantity())
            .sum();
        if returning == 0 || state.show.waitlist_tail == 0 {
            return Ok(());
        }
        let most = (state.show.available() + returning).min(state.show.capacity);
        let mut sections = vec![String::new()];
        if state.show.kind == ShowKind::Seated {
            sections.extend(seats::section_names(conn, state.show_id).await?);
        }
        let head = bookings::waitlist_heads(
            conn,
            state.show_id,
            &sections,
            most,
            MAX_TICKETS_PER_BOOKING,
        )
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
        for (customer, tickets) in
            bookings::tickets_per_customer(conn, self.state.show_id, &customers).await?
        {
            self.state.customer_tickets.insert(customer, tickets);
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
            SeatsOf::Bookings(ids) => seats::of_bookings(conn, ids).await?,
            SeatsOf::FreeInShow => {
                seats::of_show_in(conn, self.state.show_id, SeatStatus::Available).await?
            }
        };
        for s in records {
            if let Some(booking) = s.booking_id.and_then(|b| self.state.bookings.get_mut(&b)) {
                match &mut booking.wanted {
                    Wanted::Seats(seats) => seats.push(s.id),
                    wanted => *wanted = Wanted::Seats(vec![s.id]),
                }
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
                row_key: s.row_key,
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

    /// Ranks the rows of the loaded seats within their show, in seat order
    /// (by the key the schema gives each row: the rule is not repeated here).
    fn rank_rows(&mut self) {
        let mut rows: Vec<(i32, &str)> = self
            .state
            .seats
            .iter()
            .map(|(id, seat)| (seat.place.section_rank, self.seats[id].row_key.as_str()))
            .collect();
        rows.sort_unstable();
        rows.dedup();
        let rank: HashMap<(i32, String), i32> = rows
            .into_iter()
            .enumerate()
            .map(|(i, (section, row))| ((section, row.to_owned()), i as i32))
            .collect();
        for (id, seat) in &mut self.state.seats {
            let row = self.seats[id].row_key.clone();
            seat.place.row_rank = rank[&(seat.place.section_rank, row)];
        }
    }
}
