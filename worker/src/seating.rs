//! Best available: which free seats a seated booking that asks only for a
//! quantity gets. No I/O, so the worker can run it inside its per-show batch
//! and the rules are testable on their own.

use std::cmp::{Ordering, Reverse};

use uuid::Uuid;

/// Where a seat is, as the picker ranks it (lower rank = better).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub section: String,
    pub section_rank: i32,
    pub row_rank: i32,
    pub number: i32,
}

/// Picks `quantity` of the `free` seats (in any order) for a best-available
/// request, optionally only in `section` (by name); None if too few are free.
///
/// Adjacent seats in one row where possible: the first row by section and
/// row rank with a long enough run, lowest numbers first. Otherwise the
/// fewest rows, in the best section that alone has enough, else across all.
/// Refusing depends only on how many are free, so a later request is never
/// given seats an earlier one of the same size was refused. The result is
/// sorted by section, row and number.
pub fn pick(free: &[(Uuid, &Place)], quantity: usize, section: Option<&str>) -> Option<Vec<Uuid>> {
    let mut seats: Vec<Seat> = free
        .iter()
        .filter(|(_, place)| section.is_none_or(|name| place.section == name))
        .map(|&(id, place)| Seat { id, place })
        .collect();
    if seats.len() < quantity {
        return None;
    }
    if quantity == 0 {
        return Some(Vec::new());
    }
    seats.sort_unstable_by(Seat::rank);
    let rows: Vec<&[Seat]> = seats.chunk_by(|a, b| a.row() == b.row()).collect();
    if let Some(run) = rows
        .iter()
        .flat_map(|row| runs(row))
        .find(|run| run.len() >= quantity)
    {
        return Some(run[..quantity].iter().map(|seat| seat.id).collect());
    }
    let pool = rows
        .chunk_by(|a, b| a[0].place.section == b[0].place.section)
        .find(|section| section.iter().map(|row| row.len()).sum::<usize>() >= quantity)
        .unwrap_or(&rows);
    Some(fewest_rows(pool, quantity))
}

#[derive(Clone, Copy)]
struct Seat<'a> {
    id: Uuid,
    place: &'a Place,
}

impl Seat<'_> {
    /// Section, row, number; the section name and the id only break ties,
    /// so the pick never depends on the order the seats came in.
    fn rank(&self, other: &Self) -> Ordering {
        let key = |s: &Self| {
            let p = s.place;
            (p.section_rank, &p.section, p.row_rank, p.number, s.id)
        };
        key(self).cmp(&key(other))
    }

    fn row(&self) -> (i32, &str, i32) {
        let p = self.place;
        (p.section_rank, &p.section, p.row_rank)
    }
}

/// A row's runs of consecutive numbers, lowest first (the row is sorted).
fn runs<'r, 'a>(row: &'r [Seat<'a>]) -> impl Iterator<Item = &'r [Seat<'a>]> {
    // i64: no overflow at the ends of i32.
    row.chunk_by(|a, b| i64::from(b.place.number) - i64::from(a.place.number) == 1)
}

/// `quantity` seats in as few of `rows` (sorted by rank, together holding
/// at least `quantity`) as possible: fullest rows first, so every row but
/// the last is taken whole, and in a row the longest runs first.
fn fewest_rows(rows: &[&[Seat]], quantity: usize) -> Vec<Uuid> {
    let mut by_size = rows.to_vec();
    // Stable: equally full rows stay in rank order.
    by_size.sort_by_key(|row| Reverse(row.len()));
    let mut picked: Vec<Seat> = by_size
        .into_iter()
        .flat_map(|row| {
            let mut blocks: Vec<_> = runs(row).collect();
            // Stable: equally long runs stay lowest number first.
            blocks.sort_by_key(|block| Reverse(block.len()));
            blocks.into_iter().flatten()
        })
        .take(quantity)
        .copied()
        .collect();
    picked.sort_unstable_by(Seat::rank);
    picked.into_iter().map(|seat| seat.id).collect()
}

#[cfg(test)]
mod tests;
