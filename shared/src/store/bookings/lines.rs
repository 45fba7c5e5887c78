//! Where this process has seen its shows' lines start (see [`Lines`]).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

/// Where this process has seen its shows' lines start, so that the next
/// read of a line's head starts there instead of at the line's first
/// index entry.
///
/// A line's head never moves back: a booking leaves the line for good
/// (`queued` has no way back, and a dead-lettered request is decided when
/// it is replayed), and one that joins takes a number above every number
/// visible before it. So a head read once is a floor for every later read
/// of that show, by any process. Reading from the floor matters in a sale:
/// the index keeps an entry for every booking decided since the table's
/// last vacuum, all of them in front of the head, and a read from the start
/// would step over tens of thousands of them on every poll.
#[derive(Debug, Default)]
pub struct Lines {
    floors: Mutex<Floors>,
}

/// Recently read shows' floors; the coldest goes when there are too many.
#[derive(Debug, Default)]
struct Floors {
    by_show: HashMap<Uuid, Floor>,
    reads: u64,
}

#[derive(Debug, Clone, Copy)]
struct Floor {
    head: i64,
    read: u64,
}

impl Lines {
    /// Shows whose floors are kept: the busy ones of the moment. A show
    /// without one is read from its line's start, once.
    const KEPT: usize = 64;

    /// The floors of every show kept, as two parallel arrays for SQL.
    pub(super) fn floors(&self) -> (Vec<Uuid>, Vec<i64>) {
        let floors = self.floors.lock().unwrap_or_else(PoisonError::into_inner);
        floors
            .by_show
            .iter()
            .map(|(show, f)| (*show, f.head))
            .unzip()
    }

    /// Heads just read: each raises its show's floor.
    pub(super) fn read(&self, heads: impl IntoIterator<Item = (Uuid, i64)>) {
        let mut floors = self.floors.lock().unwrap_or_else(PoisonError::into_inner);
        for (show, head) in heads {
            floors.reads += 1;
            let read = floors.reads;
            let floor = floors.by_show.entry(show).or_insert(Floor { head, read });
            floor.head = floor.head.max(head);
            floor.read = read;
        }
        while floors.by_show.len() > Self::KEPT {
            let coldest = floors.by_show.iter().min_by_key(|(_, f)| f.read);
            let Some((&show, _)) = coldest else { break };
            floors.by_show.remove(&show);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shows_floor_only_rises() {
        let (lines, show) = (Lines::default(), Uuid::new_v4());
        lines.read([(show, 10)]);
        // A read that started earlier and finished later.
        lines.read([(show, 7)]);
        assert_eq!(lines.floors(), (vec![show], vec![10]));
        lines.read([(show, 12)]);
        assert_eq!(lines.floors(), (vec![show], vec![12]));
    }

    #[test]
    fn only_the_most_recently_read_shows_keep_their_floors() {
        let lines = Lines::default();
        let shows: Vec<Uuid> = (0..Lines::KEPT + 10).map(|_| Uuid::new_v4()).collect();
        for show in &shows {
            lines.read([(*show, 1)]);
        }
        // The first show is read again, so it is no longer the coldest.
        lines.read([(shows[0], 2)]);
        lines.read([(Uuid::new_v4(), 1)]);
        let (kept, _) = lines.floors();
        assert_eq!(kept.len(), Lines::KEPT);
        assert!(kept.contains(&shows[0]));
        assert!(!kept.contains(&shows[11]));
        assert!(kept.contains(&shows[Lines::KEPT + 9]));
    }
}
