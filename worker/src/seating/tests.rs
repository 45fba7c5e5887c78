//! The seat picker: examples on small drawn halls first, then properties
//! over random halls, checked against brute force.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;

/// A hall: every seat, with whether it is free.
#[derive(Debug, Clone)]
struct Hall {
    seats: Vec<(Uuid, Place, bool)>,
}

/// One section: name, rank, and its rows as (row rank, picture). In a
/// picture `o` is a free seat, `x` a taken one and ` ` a gap (an aisle);
/// seat numbers count from 1 at the left, gaps included.
type Section = (String, i32, Vec<(i32, String)>);

impl Hall {
    fn new(sections: &[Section]) -> Hall {
        let mut seats = Vec::new();
        for (name, section_rank, rows) in sections {
            for (row_rank, picture) in rows {
                for (i, c) in picture.chars().enumerate() {
                    if c == ' ' {
                        continue;
                    }
                    let place = Place {
                        section: name.clone(),
                        section_rank: *section_rank,
                        row_rank: *row_rank,
                        number: i as i32 + 1,
                    };
                    seats.push((Uuid::from_u128(seats.len() as u128 + 1), place, c == 'o'));
                }
            }
        }
        Hall { seats }
    }

    fn free(&self) -> Vec<(Uuid, &Place)> {
        self.seats
            .iter()
            .filter(|(_, _, free)| *free)
            .map(|(id, place, _)| (*id, place))
            .collect()
    }

    fn place(&self, id: Uuid) -> &Place {
        &self.seats.iter().find(|(s, _, _)| *s == id).unwrap().1
    }

    /// What a best-available request gets, as "Section row-number".
    fn pick(&self, quantity: usize, section: Option<&str>) -> Option<Vec<String>> {
        let picked = pick(&self.free(), quantity, section)?;
        let name = |id| {
            let p = self.place(id);
            format!("{} {}-{}", p.section, p.row_rank, p.number)
        };
        Some(picked.into_iter().map(name).collect())
    }
}

/// A hall drawn best section first, each best row first (row ranks 1, 2, …).
fn hall(sections: &[(&str, &[&str])]) -> Hall {
    let sections: Vec<Section> = sections
        .iter()
        .enumerate()
        .map(|(rank, (name, rows))| {
            let rows = rows
                .iter()
                .enumerate()
                .map(|(i, picture)| (i as i32 + 1, picture.to_string()))
                .collect();
            (name.to_string(), rank as i32, rows)
        })
        .collect();
    Hall::new(&sections)
}

#[test]
fn a_pair_sits_together_in_the_lowest_row_with_room() {
    let hall = hall(&[("Stalls", &["oxoxo", "xxoox", "ooooo"])]);
    assert_eq!(hall.pick(2, None).unwrap(), ["Stalls 2-3", "Stalls 2-4"]);
}

#[test]
fn in_the_row_the_lowest_numbered_run_is_taken() {
    let hall = hall(&[("Stalls", &["xooxooo"])]);
    assert_eq!(hall.pick(2, None).unwrap(), ["Stalls 1-2", "Stalls 1-3"]);
    assert_eq!(
        hall.pick(3, None).unwrap(),
        ["Stalls 1-5", "Stalls 1-6", "Stalls 1-7"]
    );
}

#[test]
fn an_aisle_breaks_a_run() {
    let hall = hall(&[("Stalls", &["oo oo", "xooox"])]);
    assert_eq!(
        hall.pick(3, None).unwrap(),
        ["Stalls 2-2", "Stalls 2-3", "Stalls 2-4"]
    );
}

#[test]
fn the_best_section_is_tried_first() {
    let hall = hall(&[("Stalls", &["xxxx", "xxxx", "xoox"]), ("Circle", &["oooo"])]);
    assert_eq!(hall.pick(2, None).unwrap(), ["Stalls 3-2", "Stalls 3-3"]);
    assert_eq!(
        hall.pick(3, None).unwrap(),
        ["Circle 1-1", "Circle 1-2", "Circle 1-3"]
    );
}

#[test]
fn a_named_section_is_honoured() {
    let hall = hall(&[("Stalls", &["oooo"]), ("Circle", &["xxoo", "oxxo"])]);
    assert_eq!(
        hall.pick(2, Some("Circle")).unwrap(),
        ["Circle 1-3", "Circle 1-4"]
    );
    // Even when it means splitting up while another section has a run.
    assert_eq!(
        hall.pick(4, Some("Circle")).unwrap(),
        ["Circle 1-3", "Circle 1-4", "Circle 2-1", "Circle 2-4"]
    );
    assert_eq!(hall.pick(5, Some("Circle")), None);
    assert_eq!(hall.pick(1, Some("Balcony")), None);
}

#[test]
fn too_few_free_seats_is_a_refusal_however_they_are_spread() {
    let hall = hall(&[("Stalls", &["oxo", "xox"])]);
    assert_eq!(hall.pick(4, None), None);
    assert_eq!(
        hall.pick(3, None).unwrap(),
        ["Stalls 1-1", "Stalls 1-3", "Stalls 2-2"]
    );
}

#[test]
fn nothing_asked_is_nothing_given() {
    let hall = hall(&[("Stalls", &["xxx"])]);
    assert_eq!(hall.pick(0, None).unwrap(), Vec::<String>::new());
}

#[test]
fn a_party_too_big_for_any_row_spans_the_fewest_rows() {
    // Rows one, three and four could seat six; two and four (4 + 3) are
    // fewer: the fuller one is taken whole, the rest from the other.
    let hall = hall(&[("Stalls", &["oxoxx", "oooox", "oxo", "oooxx"])]);
    assert_eq!(
        hall.pick(6, None).unwrap(),
        [
            "Stalls 2-1",
            "Stalls 2-2",
            "Stalls 2-3",
            "Stalls 2-4",
            "Stalls 4-1",
            "Stalls 4-2"
        ]
    );
}

#[test]
fn equally_full_rows_are_taken_lowest_first() {
    let hall = hall(&[("Stalls", &["ooxoo", "oxo", "oooxo"])]);
    assert_eq!(
        hall.pick(5, None).unwrap(),
        [
            "Stalls 1-1",
            "Stalls 1-2",
            "Stalls 1-4",
            "Stalls 1-5",
            "Stalls 3-1"
        ]
    );
}

#[test]
fn in_the_last_row_the_longest_run_is_filled_first() {
    let hall = hall(&[("Stalls", &["ooxooox", "oooooo"])]);
    assert_eq!(
        hall.pick(8, None).unwrap(),
        [
            "Stalls 1-4",
            "Stalls 1-5",
            "Stalls 2-1",
            "Stalls 2-2",
            "Stalls 2-3",
            "Stalls 2-4",
            "Stalls 2-5",
            "Stalls 2-6"
        ]
    );
}

#[test]
fn a_section_that_alone_has_enough_beats_spanning_sections() {
    let hall = hall(&[("Stalls", &["oxo", "xox"]), ("Circle", &["oxox", "xoxo"])]);
    assert_eq!(
        hall.pick(4, None).unwrap(),
        ["Circle 1-1", "Circle 1-3", "Circle 2-2", "Circle 2-4"]
    );
}

#[test]
fn when_no_section_has_enough_the_fewest_rows_of_the_whole_hall_are_used() {
    let hall = hall(&[("Stalls", &["oxo", "xxx"]), ("Circle", &["xxox", "ooxo"])]);
    assert_eq!(
        hall.pick(5, None).unwrap(),
        [
            "Stalls 1-1",
            "Stalls 1-3",
            "Circle 2-1",
            "Circle 2-2",
            "Circle 2-4"
        ]
    );
}

// Properties over random halls: up to three sections of up to four rows
// of up to eight seats, ranks listed in random order.

fn section(name: &'static str) -> impl Strategy<Value = (String, Vec<(i32, String)>)> {
    let seat = prop_oneof![4 => Just('o'), 3 => Just('x'), 1 => Just(' ')];
    let row = prop::collection::vec(seat, 1..=8).prop_map(String::from_iter);
    prop::collection::vec(row, 1..=4)
        .prop_flat_map(|rows| {
            let ranks: Vec<i32> = (1..=rows.len() as i32).collect();
            (Just(rows), Just(ranks).prop_shuffle())
        })
        .prop_map(move |(rows, ranks)| (name.to_string(), ranks.into_iter().zip(rows).collect()))
}

#[derive(Debug, Clone)]
struct Case {
    hall: Hall,
    /// The free seats in the order the picker is given them.
    order: Vec<usize>,
    quantity: usize,
    section: Option<&'static str>,
}

fn case() -> impl Strategy<Value = Case> {
    let sections = (section("A"), section("B"), section("C"), 1..=3usize);
    let ranks = Just(vec![0, 1, 2]).prop_shuffle();
    (sections, ranks)
        .prop_map(|((a, b, c, n), ranks)| {
            let sections: Vec<Section> = [a, b, c]
                .into_iter()
                .zip(ranks)
                .take(n)
                .map(|((name, rows), rank)| (name, rank, rows))
                .collect();
            Hall::new(&sections)
        })
        .prop_flat_map(|hall| {
            let order: Vec<usize> = (0..hall.free().len()).collect();
            let section = prop::option::of(prop_oneof![
                Just("A"),
                Just("B"),
                Just("C"),
                Just("Nowhere")
            ]);
            (Just(hall), Just(order).prop_shuffle(), 0..=10usize, section)
        })
        .prop_map(|(hall, order, quantity, section)| Case {
            hall,
            order,
            quantity,
            section,
        })
}

/// A row as the picker sees it: section rank, section, row rank.
type RowKey = (i32, String, i32);

fn row_of(place: &Place) -> RowKey {
    (place.section_rank, place.section.clone(), place.row_rank)
}

impl Case {
    fn eligible(&self) -> Vec<(Uuid, &Place)> {
        let mut free = self.hall.free();
        free.retain(|(_, p)| self.section.is_none_or(|name| p.section == name));
        free
    }

    fn pick(&self) -> Option<Vec<Uuid>> {
        let free = self.hall.free();
        let shuffled: Vec<_> = self.order.iter().map(|&i| free[i]).collect();
        pick(&shuffled, self.quantity, self.section)
    }

    /// The free seat numbers of each eligible row, best row first.
    fn rows(&self) -> BTreeMap<RowKey, BTreeSet<i32>> {
        let mut rows: BTreeMap<RowKey, BTreeSet<i32>> = BTreeMap::new();
        for (_, place) in self.eligible() {
            rows.entry(row_of(place)).or_default().insert(place.number);
        }
        rows
    }

    /// The first row with `quantity` consecutive free seats, and the
    /// lowest such run in it, found by trying every start.
    fn first_run(&self) -> Option<(RowKey, Vec<i32>)> {
        let q = self.quantity as i32;
        self.rows().into_iter().find_map(|(row, free)| {
            free.iter()
                .find(|&&start| (start..start + q).all(|n| free.contains(&n)))
                .map(|&start| (row, (start..start + q).collect()))
        })
    }

    /// The seats fewest rows are counted in: the best section that alone
    /// has enough, else every eligible seat.
    fn pool(&self) -> BTreeMap<RowKey, BTreeSet<i32>> {
        let rows = self.rows();
        let mut by_section: BTreeMap<(i32, String), usize> = BTreeMap::new();
        for ((rank, name, _), free) in &rows {
            *by_section.entry((*rank, name.clone())).or_default() += free.len();
        }
        match by_section.into_iter().find(|(_, n)| *n >= self.quantity) {
            Some(((rank, name), _)) => rows
                .into_iter()
                .filter(|((r, n, _), _)| (*r, n) == (rank, &name))
                .collect(),
            None => rows,
        }
    }
}

/// The fewest of these rows that together hold `quantity` seats, trying
/// every subset.
fn fewest_rows_by_brute_force(sizes: &[usize], quantity: usize) -> u32 {
    (0u32..1 << sizes.len())
        .filter(|subset| {
            let seats: usize = (0..sizes.len())
                .filter(|i| subset & (1 << i) != 0)
                .map(|i| sizes[i])
                .sum();
            seats >= quantity
        })
        .map(u32::count_ones)
        .min()
        .unwrap()
}

proptest! {
    #[test]
    fn a_request_is_served_exactly_when_enough_eligible_seats_are_free(case in case()) {
        prop_assert_eq!(case.pick().is_some(), case.eligible().len() >= case.quantity);
    }

    #[test]
    fn the_pick_is_the_quantity_of_distinct_free_eligible_seats_in_order(case in case()) {
        let Some(picked) = case.pick() else { return Ok(()) };
        let eligible: HashSet<Uuid> = case.eligible().iter().map(|(id, _)| *id).collect();
        prop_assert_eq!(picked.len(), case.quantity);
        prop_assert_eq!(picked.iter().collect::<HashSet<_>>().len(), case.quantity);
        prop_assert!(picked.iter().all(|id| eligible.contains(id)));
        let keys: Vec<_> = picked
            .iter()
            .map(|id| {
                let p = case.hall.place(*id);
                (p.section_rank, p.row_rank, p.number)
            })
            .collect();
        prop_assert!(keys.is_sorted(), "{:?}", keys);
    }

    #[test]
    fn a_party_that_fits_in_a_row_gets_the_first_run_of_the_best_row(case in case()) {
        let (Some(picked), Some((row, numbers))) = (case.pick(), case.first_run()) else {
            return Ok(());
        };
        let got: Vec<(RowKey, i32)> = picked
            .iter()
            .map(|id| {
                let p = case.hall.place(*id);
                (row_of(p), p.number)
            })
            .collect();
        let expected: Vec<(RowKey, i32)> = numbers.into_iter().map(|n| (row.clone(), n)).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn a_party_too_big_for_any_row_spans_the_fewest_rows_of_the_chosen_section(case in case()) {
        let Some(picked) = case.pick() else { return Ok(()) };
        if case.first_run().is_some() {
            return Ok(());
        }
        let pool = case.pool();
        let rows: BTreeSet<RowKey> = picked.iter().map(|id| row_of(case.hall.place(*id))).collect();
        prop_assert!(rows.iter().all(|row| pool.contains_key(row)), "{:?} outside {:?}", rows, pool);
        let sizes: Vec<usize> = pool.values().map(BTreeSet::len).collect();
        prop_assert_eq!(rows.len() as u32, fewest_rows_by_brute_force(&sizes, case.quantity));
    }

    #[test]
    fn the_pick_does_not_depend_on_the_order_seats_are_given(case in case()) {
        let in_hall_order = pick(&case.hall.free(), case.quantity, case.section);
        prop_assert_eq!(case.pick(), in_hall_order);
    }
}
