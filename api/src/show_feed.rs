//! Live availability for `GET /v1/shows/{id}/events`: what a storefront
//! needs to keep a show's page and seat map current without polling.
//!
//! Like the booking [`Hub`](crate::live::Hub), each API process keeps one
//! `watch` channel per show that has an open stream, holding the show's
//! latest [`Snapshot`]. Booking events (from the hub's consumer) only mark
//! their show as due; every [`FLUSH_EVERY`] the feed reloads the due shows
//! (the show's counters and, when seated, its seat statuses: two reads per
//! show, however many streams watch it) and sends on what changed. So a
//! sale's thousands of decisions a second reach a stream as at most four
//! batches a second, each with the seats that changed since the last.
//!
//! The state always comes from the database, never from the event, so a
//! lost or repeated event costs at most one reload.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use shared::domain::{SeatStatus, ShowKind};
use shared::service::Tasks;
use shared::store::seats::{self, SeatMapEntry};
use shared::store::shows::{self, ShowView};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::live::{self, Current};

/// How often the feed reloads the shows events touched: the contract's
/// "batched at most every 250 ms".
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// A show's availability: in all and per section (seated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Availability {
    pub available: i32,
    pub held: i32,
    pub booked: i32,
    /// Seated shows: per section, in seat-map order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<SectionAvailability>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SectionAvailability {
    pub name: String,
    pub available: i32,
    pub held: i32,
    pub booked: i32,
}

/// A seat's status, as the `seats` event lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct SeatState {
    pub id: Uuid,
    pub status: SeatStatus,
}

/// A show as its streams last heard of it.
#[derive(Debug)]
pub struct Snapshot {
    /// Counts the changes: a stream that saw `version - 1` needs only
    /// [`Snapshot::changed`].
    pub version: u64,
    /// Exactly what `GET /v1/shows/{id}` answers.
    pub show: String,
    pub availability: Availability,
    /// Seated shows: every seat, in seat-map order.
    pub seats: Vec<SeatState>,
    /// The seats whose status differs from the version before.
    pub changed: Vec<SeatState>,
}

impl Snapshot {
    /// The snapshot after `prev` given freshly read state, or `None` if
    /// nothing a stream shows changed.
    pub fn next(prev: Option<&Snapshot>, show: &ShowView, map: &[SeatMapEntry]) -> Option<Self> {
        let seats: Vec<SeatState> = map
            .iter()
            .map(|s| SeatState {
                id: s.id,
                status: s.status,
            })
            .collect();
        let availability = Availability {
            available: show.available,
            held: show.held,
            booked: show.booked,
            sections: sections(map),
        };
        let json = serde_json::to_string(show).expect("show views serialize");
        let (version, changed) = match prev {
            Some(prev) if prev.show == json && prev.seats == seats => return None,
            Some(prev) => (prev.version + 1, changes(&prev.seats, &seats)),
            None => (0, Vec::new()),
        };
        Some(Self {
            version,
            show: json,
            availability,
            seats,
            changed,
        })
    }
}

/// The seats of `new` whose status differs from `old` (every seat of
/// `new` if the two are not the same seats).
pub fn changes(old: &[SeatState], new: &[SeatState]) -> Vec<SeatState> {
    if old.len() != new.len() || old.iter().zip(new).any(|(a, b)| a.id != b.id) {
        return new.to_vec();
    }
    old.iter()
        .zip(new)
        .filter(|(a, b)| a.status != b.status)
        .map(|(_, b)| *b)
        .collect()
}

/// Counts per section, sections in the order the map first lists them.
fn sections(map: &[SeatMapEntry]) -> Vec<SectionAvailability> {
    let mut sections: Vec<SectionAvailability> = Vec::new();
    for seat in map {
        let at = match sections.iter().position(|s| s.name == seat.section) {
            Some(at) => at,
            None => {
                sections.push(SectionAvailability {
                    name: seat.section.clone(),
                    available: 0,
                    held: 0,
                    booked: 0,
                });
                sections.len() - 1
            }
        };
        let section = &mut sections[at];
        match seat.status {
            SeatStatus::Available => section.available += 1,
            SeatStatus::Held => section.held += 1,
            SeatStatus::Booked => section.booked += 1,
        }
    }
    sections
}

/// The watched shows, shared by the stream handlers, the hub's consumer
/// (which marks shows due) and the flusher.
#[derive(Default)]
pub struct ShowFeed {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    watched: HashMap<Uuid, Watched>,
    /// Watched shows to reload at the next flush.
    due: HashSet<Uuid>,
}

struct Watched {
    state: watch::Sender<Current<Snapshot>>,
    streams: usize,
}

/// One stream's hold on a watched show.
pub struct ShowSubscription {
    feed: Arc<ShowFeed>,
    id: Uuid,
    pub state: watch::Receiver<Current<Snapshot>>,
}

impl ShowSubscription {
    /// The show as the feed first loads it ([`live::first`]).
    pub async fn first(&mut self) -> Result<Arc<Snapshot>, ApiError> {
        live::first(&mut self.state, "show").await
    }
}

impl Drop for ShowSubscription {
    fn drop(&mut self) {
        let mut inner = self.feed.lock();
        if let Entry::Occupied(mut entry) = inner.watched.entry(self.id) {
            entry.get_mut().streams -= 1;
            if entry.get().streams == 0 {
                entry.remove();
            }
        }
        metrics::gauge!("api_live_shows").set(inner.watched.len() as f64);
    }
}

impl ShowFeed {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches show `id`; a first watcher makes it due.
    pub fn subscribe(self: &Arc<Self>, id: Uuid) -> ShowSubscription {
        let mut inner = self.lock();
        let state = match inner.watched.entry(id) {
            Entry::Occupied(mut entry) => {
                entry.get_mut().streams += 1;
                entry.get().state.subscribe()
            }
            Entry::Vacant(entry) => {
                let (tx, rx) = watch::channel(Current::Loading);
                entry.insert(Watched {
                    state: tx,
                    streams: 1,
                });
                inner.due.insert(id);
                rx
            }
        };
        metrics::gauge!("api_live_shows").set(inner.watched.len() as f64);
        ShowSubscription {
            feed: self.clone(),
            id,
            state,
        }
    }

    /// A booking of `show` changed: reload the show at the next flush.
    pub fn touched(&self, show: Uuid) {
        let mut inner = self.lock();
        if inner.watched.contains_key(&show) {
            inner.due.insert(show);
        }
    }

    /// Events may have been missed (a reconnect): reload every show.
    pub fn refresh_all(&self) {
        let mut inner = self.lock();
        let Inner { watched, due } = &mut *inner;
        due.extend(watched.keys().copied());
    }

    fn take_due(&self) -> Vec<(Uuid, watch::Sender<Current<Snapshot>>)> {
        let mut inner = self.lock();
        let due = std::mem::take(&mut inner.due);
        due.into_iter()
            .filter_map(|id| Some((id, inner.watched.get(&id)?.state.clone())))
            .collect()
    }

    fn due_again(&self, id: Uuid) {
        self.lock().due.insert(id);
    }
}

/// Starts the flusher on `tasks`; it stops at shutdown. Reads go to `db`,
/// the replicas when there are: a show page tolerates their lag.
pub fn spawn(feed: Arc<ShowFeed>, db: PgPool, tasks: &Tasks) {
    tasks.spawn(|cancel| flush(feed, db, cancel));
}

async fn flush(feed: Arc<ShowFeed>, db: PgPool, cancel: CancellationToken) {
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        for (id, sender) in feed.take_due() {
            match load(&db, id).await {
                Ok(Some((show, map))) => {
                    sender.send_if_modified(|current| {
                        let prev = match current {
                            Current::View(prev) => Some(&**prev),
                            _ => None,
                        };
                        match Snapshot::next(prev, &show, &map) {
                            Some(next) => {
                                *current = Current::View(Arc::new(next));
                                true
                            }
                            None => false,
                        }
                    });
                }
                Ok(None) => live::settle(&sender, Current::Missing),
                Err(err) => {
                    tracing::warn!(show_id = %id, error = %err, "show feed could not load a show");
                    live::settle(&sender, Current::Unavailable(Arc::new(err)));
                    feed.due_again(id);
                }
            }
        }
    }
}

async fn load(db: &PgPool, id: Uuid) -> Result<Option<(ShowView, Vec<SeatMapEntry>)>, sqlx::Error> {
    let Some(show) = shows::view(db, id).await? else {
        return Ok(None);
    };
    let map = match show.kind {
        ShowKind::Seated => seats::map(db, id).await?,
        ShowKind::GeneralAdmission => Vec::new(),
    };
    Ok(Some((show, map)))
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn show(held: i32, booked: i32) -> ShowView {
        ShowView {
            id: Uuid::nil(),
            name: "Show".into(),
            venue: "Hall".into(),
            starts_at: DateTime::UNIX_EPOCH,
            kind: ShowKind::Seated,
            capacity: 3,
            available: 3 - held - booked,
            held,
            booked,
            price_cents: None,
            max_tickets_per_customer: None,
            description: None,
            category: None,
            tags: Vec::new(),
            venue_address: None,
            latitude: None,
            longitude: None,
            distance_km: None,
        }
    }

    fn seat(n: u128, section: &str, status: SeatStatus) -> SeatMapEntry {
        SeatMapEntry {
            id: Uuid::from_u128(n),
            section: section.into(),
            row: "A".into(),
            number: n as i32,
            price_cents: 100,
            status,
        }
    }

    #[test]
    fn a_snapshot_counts_each_section_and_lists_every_seat() {
        use SeatStatus::*;
        let map = [
            seat(1, "Stalls", Held),
            seat(2, "Circle", Booked),
            seat(3, "Stalls", Available),
        ];
        let first = Snapshot::next(None, &show(1, 1), &map).unwrap();
        assert_eq!(first.version, 0);
        assert_eq!(first.seats.len(), 3);
        let names: Vec<_> = first
            .availability
            .sections
            .iter()
            .map(|s| &s.name)
            .collect();
        assert_eq!(names, ["Stalls", "Circle"]);
        assert_eq!(
            first.availability.sections[0],
            SectionAvailability {
                name: "Stalls".into(),
                available: 1,
                held: 1,
                booked: 0
            }
        );
    }

    #[test]
    fn only_what_changed_is_sent_on_and_nothing_when_nothing_did() {
        use SeatStatus::*;
        let before = [seat(1, "S", Held), seat(2, "S", Available)];
        let first = Snapshot::next(None, &show(1, 0), &before).unwrap();
        assert!(Snapshot::next(Some(&first), &show(1, 0), &before).is_none());
        let after = [seat(1, "S", Booked), seat(2, "S", Available)];
        let second = Snapshot::next(Some(&first), &show(0, 1), &after).unwrap();
        assert_eq!(second.version, 1);
        assert_eq!(
            second.changed,
            [SeatState {
                id: Uuid::from_u128(1),
                status: Booked
            }]
        );
    }

    #[test]
    fn a_different_seat_list_is_sent_whole() {
        use SeatStatus::*;
        let old = [SeatState {
            id: Uuid::from_u128(1),
            status: Held,
        }];
        let new = [SeatState {
            id: Uuid::from_u128(2),
            status: Held,
        }];
        assert_eq!(changes(&old, &new), new);
    }
}
