//! What the API needs to know about a show to validate a booking, cached in
//! memory. Shows never change once created (there is no endpoint that
//! edits one), and reading them on every request of an on-sale minute would
//! double the API's database work.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use shared::domain::ShowKind;
use shared::store::bookings::BookedSeat;
use shared::store::{seats, shows};
use sqlx::PgPool;
use uuid::Uuid;

/// Shows kept at most; beyond that the cache starts over (cheap, and
/// bounded memory however many shows exist).
const MAX_SHOWS: usize = 10_000;

pub struct ShowInfo {
    pub kind: ShowKind,
    pub price_cents: Option<i64>,
    /// Seated shows: every seat, with its place in seat-map order.
    pub seats: HashMap<Uuid, (usize, BookedSeat)>,
    /// Seated shows: the section names.
    pub sections: HashSet<String>,
}

#[derive(Default)]
pub struct Catalog {
    shows: RwLock<HashMap<Uuid, Arc<ShowInfo>>>,
    /// One load at a time: when a sale opens, the first thousand requests
    /// for a show must not all read its seat map.
    loading: tokio::sync::Mutex<()>,
}

impl Catalog {
    fn cached(&self, id: Uuid) -> Option<Arc<ShowInfo>> {
        self.shows.read().expect("not poisoned").get(&id).cloned()
    }

    /// The show, from memory or else from the database; `None` if unknown.
    pub async fn get(&self, db: &PgPool, id: Uuid) -> Result<Option<Arc<ShowInfo>>, sqlx::Error> {
        if let Some(info) = self.cached(id) {
            return Ok(Some(info));
        }
        let _loading = self.loading.lock().await;
        if let Some(info) = self.cached(id) {
            return Ok(Some(info));
        }
        let Some(show) = shows::terms(db, id).await? else {
            return Ok(None);
        };
        let seats: HashMap<Uuid, (usize, BookedSeat)> = if show.kind == ShowKind::Seated {
            seats::of_show(db, id)
                .await?
                .into_iter()
                .enumerate()
                .map(|(place, seat)| (seat.id, (place, seat)))
                .collect()
        } else {
            HashMap::new()
        };
        let sections = seats.values().map(|(_, s)| s.section.clone()).collect();
        let info = Arc::new(ShowInfo {
            kind: show.kind,
            price_cents: show.price_cents,
            seats,
            sections,
        });
        let mut shows = self.shows.write().expect("not poisoned");
        if shows.len() >= MAX_SHOWS {
            shows.clear();
        }
        shows.insert(id, info.clone());
        Ok(Some(info))
    }
}
