//! The decision rules, without any I/O: examples first, then properties
//! over random shows and random runs of commands.

use std::collections::{BTreeMap, HashMap};

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use shared::domain::{SeatStatus, ShowKind, Wanted};
use shared::lifecycle::{transition, BookingStatus, CommandKind, Reason, Refusal};
use uuid::Uuid;

use super::*;

fn rules(hold_seconds: i64) -> Rules {
    Rules {
        now: Utc.with_ymd_and_hms(2030, 6, 1, 18, 0, 0).unwrap(),
        hold: chrono::Duration::seconds(hold_seconds),
    }
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

const SHOW: Uuid = Uuid::from_u128(0xdead);

fn ga(capacity: i32, quantities: &[i32]) -> State {
    State {
        show_id: SHOW,
        show: Show {
            kind: ShowKind::GeneralAdmission,
            capacity,
            held: 0,
            booked: 0,
            max_per_customer: None,
            starts_at: rules(0).now + chrono::Duration::days(1),
            waitlist_tail: 0,
        },
        seats: HashMap::new(),
        bookings: quantities
            .iter()
            .enumerate()
            .map(|(i, &quantity)| (id(i as u128 + 1), queued(i, Wanted::Quantity(quantity))))
            .collect(),
        customer_tickets: HashMap::new(),
        waitlist: BTreeMap::new(),
        waitlist_read_until: HashMap::new(),
    }
}

/// A seated show with `seats` seats (ids 1000..) in rows of four, and
/// bookings asking for the given seat numbers (none: the best available
/// one).
fn seated(seats: u128, wants: &[&[u128]]) -> State {
    State {
        show_id: SHOW,
        show: Show {
            kind: ShowKind::Seated,
            capacity: seats as i32,
            held: 0,
            booked: 0,
            max_per_customer: None,
            starts_at: rules(0).now + chrono::Duration::days(1),
            waitlist_tail: 0,
        },
        seats: (0..seats)
            .map(|n| {
                let seat = Seat {
                    status: SeatStatus::Available,
                    owner: None,
                    place: Place {
                        section: "Stalls".into(),
                        section_rank: 0,
                        row_rank: (n / 4) as i32,
                        number: (n % 4) as i32 + 1,
                    },
                    price_cents: 1000 + n as i64,
                };
                (id(1000 + n), seat)
            })
            .collect(),
        bookings: wants
            .iter()
            .enumerate()
            .map(|(i, seats)| {
                let wanted = match seats {
                    [] => Wanted::BestAvailable {
                        quantity: 1,
                        section: None,
                    },
                    named => Wanted::Seats(named.iter().map(|n| id(1000 + n)).collect()),
                };
                (id(i as u128 + 1), queued(i, wanted))
            })
            .collect(),
        customer_tickets: HashMap::new(),
        waitlist: BTreeMap::new(),
        waitlist_read_until: HashMap::new(),
    }
}

/// The `n`th booking, for one of three customers.
fn queued(n: usize, wanted: Wanted) -> Booking {
    Booking {
        show_id: SHOW,
        customer: format!("customer-{}@example.com", n % 3),
        status: BookingStatus::Queued,
        reason: None,
        wanted,
        waitlist: false,
        waitlist_seq: None,
        accepted_seq: Some(n as i64),
        total_cents: None,
        hold_expires_at: None,
        payment_ref: None,
    }
}

/// What the fixtures' gateway charges.
const CHARGED: i64 = 5_000;

fn approved(reference: &str) -> Option<Charge> {
    Some(Charge::Approved {
        reference: reference.into(),
        amount_cents: CHARGED,
    })
}

fn refunded(decided: &Decided) -> Vec<(Uuid, &str, i64)> {
    decided
        .refunds
        .iter()
        .map(|r| (r.booking, r.reference.as_str(), r.amount_cents))
        .collect()
}

fn statuses(state: &State, n: u128) -> Vec<BookingStatus> {
    (1..=n).map(|i| state.bookings[&id(i)].status).collect()
}

#[test]
fn requests_are_held_in_order_until_the_show_is_sold_out() {
    let mut state = ga(5, &[2, 2, 2, 1]);
    let run: Vec<Command> = (1..=4).map(|i| Command::Request(id(i))).collect();
    let decided = decide(&mut state, &run, &rules(300));
    use BookingStatus::*;
    assert_eq!(statuses(&state, 4), [Held, Held, Rejected, Held]);
    assert_eq!(state.bookings[&id(3)].reason, Some(Reason::SoldOut));
    assert_eq!(state.show.held, 5);
    let expires = rules(300).now + chrono::Duration::seconds(300);
    assert_eq!(state.bookings[&id(1)].hold_expires_at, Some(expires));
    assert!(decided.refunds.is_empty());
}

#[test]
fn a_customer_cannot_hold_more_than_the_shows_limit() {
    // Bookings 1, 4, 7 and 10 are the same customer's.
    let mut state = ga(50, &[2, 1, 1, 2, 1, 1, 1, 1, 1, 2]);
    state.show.max_per_customer = Some(3);
    let run: Vec<Command> = [1, 4, 7].map(|i| Command::Request(id(i))).to_vec();
    decide(&mut state, &run, &rules(300));
    use BookingStatus::*;
    let mine: Vec<_> = [1, 4, 7].map(|i| state.bookings[&id(i)].status).to_vec();
    assert_eq!(mine, [Held, Rejected, Held]);
    assert_eq!(state.bookings[&id(4)].reason, Some(Reason::LimitExceeded));
    // A cancel gives the customer room again.
    let run = [Command::Cancel(id(1)), Command::Request(id(10))];
    decide(&mut state, &run, &rules(300));
    assert_eq!(state.bookings[&id(10)].status, Held);
}

#[test]
fn a_seat_goes_to_the_first_request_that_asks_for_it() {
    let mut state = seated(4, &[&[0, 1], &[1, 2], &[2, 3]]);
    let run: Vec<Command> = (1..=3).map(|i| Command::Request(id(i))).collect();
    decide(&mut state, &run, &rules(300));
    use BookingStatus::*;
    assert_eq!(statuses(&state, 3), [Held, Rejected, Held]);
    assert_eq!(
        state.bookings[&id(2)].reason,
        Some(Reason::SeatsUnavailable)
    );
    assert_eq!(state.seats[&id(1001)].owner, Some(id(1)));
    assert_eq!(state.seats[&id(1002)].owner, Some(id(3)));
}

#[test]
fn a_redelivered_request_changes_nothing() {
    let mut state = ga(5, &[2]);
    decide(&mut state, &[Command::Request(id(1))], &rules(300));
    let before = state.clone();
    let again = decide(&mut state, &[Command::Request(id(1))], &rules(300));
    assert_eq!(
        again.verdicts,
        [Verdict::Skipped(Skip::Refused(Refusal::AlreadyDecided))]
    );
    assert_eq!(state, before);
}

#[test]
fn an_approved_confirm_books_the_seats_and_issues_tickets() {
    let mut state = seated(2, &[&[0, 1]]);
    let run = [
        Command::Request(id(1)),
        Command::Confirm {
            booking: id(1),
            charge: approved("ch_1"),
        },
    ];
    let decided = decide(&mut state, &run, &rules(300));
    let Verdict::Applied(confirmed) = &decided.verdicts[1] else {
        panic!("{decided:?}")
    };
    assert_eq!(confirmed.to, BookingStatus::Confirmed);
    assert!(confirmed.issue_tickets);
    assert_eq!((state.show.held, state.show.booked), (0, 2));
    assert_eq!(state.seats[&id(1000)].status, SeatStatus::Booked);
    assert_eq!(state.bookings[&id(1)].payment_ref.as_deref(), Some("ch_1"));
}

#[test]
fn a_declined_payment_keeps_the_hold_with_its_reason() {
    let mut state = ga(5, &[2]);
    let run = [
        Command::Request(id(1)),
        Command::Confirm {
            booking: id(1),
            charge: Some(Charge::Declined),
        },
    ];
    decide(&mut state, &run, &rules(300));
    let booking = &state.bookings[&id(1)];
    assert_eq!(booking.status, BookingStatus::Held);
    assert_eq!(booking.reason, Some(Reason::PaymentDeclined));
    assert!(booking.hold_expires_at.is_some());
    assert_eq!(state.show.held, 2);
}

#[test]
fn a_confirm_after_the_hold_ran_out_expires_it_and_refunds_the_charge() {
    let mut state = ga(5, &[2]);
    let run = [
        Command::Request(id(1)),
        Command::Confirm {
            booking: id(1),
            charge: approved("ch_late"),
        },
    ];
    let decided = decide(&mut state, &run, &rules(0));
    assert_eq!(state.bookings[&id(1)].status, BookingStatus::Expired);
    // The charge that came too late is paid back in full.
    assert_eq!(refunded(&decided), [(id(1), "ch_late", CHARGED)]);
    assert_eq!(state.show.held, 0);
}

#[test]
fn cancelling_a_paid_booking_returns_its_tickets_and_refunds_it() {
    let mut state = ga(5, &[3]);
    state.bookings.get_mut(&id(1)).unwrap().total_cents = Some(7_500);
    let run = [
        Command::Request(id(1)),
        Command::Confirm {
            booking: id(1),
            charge: approved("ch_9"),
        },
        Command::Cancel(id(1)),
    ];
    let decided = decide(&mut state, &run, &rules(300));
    assert_eq!(state.bookings[&id(1)].status, BookingStatus::Cancelled);
    assert_eq!(
        state.bookings[&id(1)].reason,
        Some(Reason::CancelledByCustomer)
    );
    assert_eq!((state.show.held, state.show.booked), (0, 0));
    // The booking's total, exactly once.
    assert_eq!(refunded(&decided), [(id(1), "ch_9", 7_500)]);
}

#[test]
fn a_repeated_confirm_neither_charges_again_nor_refunds_the_sale() {
    let mut state = ga(5, &[1]);
    let confirm = Command::Confirm {
        booking: id(1),
        charge: approved("ch_1"),
    };
    let run = [Command::Request(id(1)), confirm.clone(), confirm];
    let decided = decide(&mut state, &run, &rules(300));
    assert_eq!(decided.verdicts[2], Verdict::Skipped(Skip::AlreadyDone));
    assert!(decided.refunds.is_empty());
}

#[test]
fn an_expiry_before_the_hold_is_due_is_skipped() {
    let mut state = ga(5, &[1]);
    let run = [Command::Request(id(1)), Command::Expire(id(1))];
    let decided = decide(&mut state, &run, &rules(300));
    assert_eq!(decided.verdicts[1], Verdict::Skipped(Skip::HoldNotDue));
    assert_eq!(state.bookings[&id(1)].status, BookingStatus::Held);
}

#[test]
fn a_cancelled_queued_booking_releases_nothing_it_did_not_hold() {
    let mut state = seated(2, &[&[0], &[0]]);
    let run = [Command::Request(id(1)), Command::Cancel(id(2))];
    decide(&mut state, &run, &rules(300));
    assert_eq!(state.bookings[&id(2)].status, BookingStatus::Cancelled);
    assert_eq!(state.seats[&id(1000)].owner, Some(id(1)));
    assert_eq!(state.show.held, 1);
}

#[test]
fn commands_for_unknown_or_foreign_bookings_are_skipped() {
    let mut state = ga(5, &[1]);
    state.bookings.get_mut(&id(1)).unwrap().show_id = id(7);
    let run = [Command::Request(id(1)), Command::Cancel(id(99))];
    let decided = decide(&mut state, &run, &rules(300));
    assert_eq!(
        decided.verdicts,
        [
            Verdict::Skipped(Skip::Misrouted),
            Verdict::Skipped(Skip::Unknown)
        ]
    );
}

// Properties over random runs.

/// A sold-out GA show of `capacity`, booking 1 holding all of it, and
/// waiting requests of the given sizes (bookings 2..).
fn sold_out_with_waiting(capacity: i32, waiting: &[i32]) -> State {
    let mut quantities = vec![capacity];
    quantities.extend_from_slice(waiting);
    let mut state = ga(capacity, &quantities);
    for n in 2..=quantities.len() as u128 {
        state.bookings.get_mut(&id(n)).unwrap().waitlist = true;
    }
    let run: Vec<Command> = (1..=quantities.len() as u128)
        .map(|i| Command::Request(id(i)))
        .collect();
    decide(&mut state, &run, &rules(300));
    state
}

#[test]
fn a_sold_out_request_that_asked_to_wait_joins_the_waiting_list_in_order() {
    let state = sold_out_with_waiting(4, &[2, 1, 3]);
    use BookingStatus::*;
    assert_eq!(
        statuses(&state, 4),
        [Held, Waitlisted, Waitlisted, Waitlisted]
    );
    let places: Vec<_> = (2..=4)
        .map(|n| state.bookings[&id(n)].waitlist_seq)
        .collect();
    assert_eq!(places, [Some(1), Some(2), Some(3)]);
    assert_eq!(state.show.waitlist_tail, 3);
    assert_eq!(state.bookings[&id(2)].reason, None);
}

#[test]
fn returned_tickets_are_offered_in_join_order_before_the_next_command() {
    let mut state = sold_out_with_waiting(4, &[2, 2, 2]);
    // The cancel returns 4 tickets: the first two in line get them, and the
    // request right behind the cancel in the same run finds none.
    let mut late = queued(9, Wanted::Quantity(2));
    late.waitlist = true;
    state.bookings.insert(id(9), late);
    let run = [Command::Cancel(id(1)), Command::Request(id(9))];
    let decided = decide(&mut state, &run, &rules(300));
    let offered: Vec<Uuid> = decided.offers.iter().map(|d| d.booking).collect();
    assert_eq!(offered, [id(2), id(3)]);
    for d in &decided.offers {
        assert_eq!(
            (d.command, d.from, d.to),
            (
                CommandKind::Offer,
                BookingStatus::Waitlisted,
                BookingStatus::Held
            )
        );
        assert_eq!(d.event, EventKind::Offered);
        assert_eq!(
            d.hold_expires_at,
            Some(rules(300).now + chrono::Duration::seconds(300))
        );
    }
    assert_eq!(state.bookings[&id(4)].status, BookingStatus::Waitlisted);
    assert_eq!(state.bookings[&id(9)].status, BookingStatus::Waitlisted);
    assert_eq!(
        state.waitlist.values().copied().collect::<Vec<_>>(),
        [id(4), id(9)]
    );
}

#[test]
fn a_larger_waiting_booking_keeps_its_place_while_smaller_ones_fit() {
    // Two tickets come back: too few for the 3, enough for the 1 behind it.
    let mut state = ga(4, &[2, 2]);
    let run: Vec<Command> = (1..=2).map(|i| Command::Request(id(i))).collect();
    decide(&mut state, &run, &rules(300));
    for (n, q) in [(3u128, 3), (4, 1)] {
        let mut b = queued(n as usize, Wanted::Quantity(q));
        b.waitlist = true;
        state.bookings.insert(id(n), b);
    }
    decide(
        &mut state,
        &[Command::Request(id(3)), Command::Request(id(4))],
        &rules(300),
    );
    let decided = decide(&mut state, &[Command::Cancel(id(1))], &rules(300));
    let offered: Vec<Uuid> = decided.offers.iter().map(|d| d.booking).collect();
    assert_eq!(offered, [id(4)]);
    assert_eq!(state.bookings[&id(3)].status, BookingStatus::Waitlisted);
    // The other two come back: now the 3 fits, ahead of anyone later.
    let decided = decide(&mut state, &[Command::Cancel(id(2))], &rules(300));
    assert_eq!(
        decided.offers.iter().map(|d| d.booking).collect::<Vec<_>>(),
        [id(3)]
    );
    assert_consistent(&state);
}

#[test]
fn an_offer_that_expires_passes_the_tickets_to_the_next_in_line() {
    let mut state = sold_out_with_waiting(2, &[2, 2]);
    decide(&mut state, &[Command::Cancel(id(1))], &rules(300));
    assert_eq!(state.bookings[&id(2)].status, BookingStatus::Held);
    let later = Rules {
        now: rules(0).now + chrono::Duration::seconds(301),
        hold: chrono::Duration::seconds(300),
    };
    let decided = decide(&mut state, &[Command::Expire(id(2))], &later);
    assert_eq!(state.bookings[&id(2)].status, BookingStatus::Expired);
    assert_eq!(
        decided.offers.iter().map(|d| d.booking).collect::<Vec<_>>(),
        [id(3)]
    );
    assert_consistent(&state);
}

#[test]
fn a_waitlisted_booking_can_be_cancelled_and_the_rest_expire_when_the_show_starts() {
    let mut state = sold_out_with_waiting(2, &[1, 1]);
    decide(&mut state, &[Command::Cancel(id(2))], &rules(300));
    assert_eq!(state.bookings[&id(2)].status, BookingStatus::Cancelled);
    assert_eq!(
        state.waitlist.values().copied().collect::<Vec<_>>(),
        [id(3)]
    );
    // Before the show starts, an expiry of a place in line is not due.
    let early = decide(&mut state, &[Command::Expire(id(3))], &rules(300));
    assert_eq!(early.verdicts, [Verdict::Skipped(Skip::HoldNotDue)]);
    state.show.starts_at = rules(0).now;
    decide(&mut state, &[Command::Expire(id(3))], &rules(300));
    let b = &state.bookings[&id(3)];
    assert_eq!(
        (b.status, b.reason),
        (BookingStatus::Expired, Some(Reason::ShowStarted))
    );
    assert!(state.waitlist.is_empty());
}

#[test]
fn nobody_behind_the_part_of_a_queue_that_was_read_is_offered_anything() {
    let mut state = sold_out_with_waiting(2, &[1, 1]);
    // As if the loader had read only booking 2 of the queue of ones, and a
    // limit then passed it over: booking 3 is behind unread bookings.
    state.show.max_per_customer = Some(2);
    state
        .customer_tickets
        .insert(state.bookings[&id(2)].customer.clone(), 2);
    state.waitlist_read_until.insert((None, 1), 1);
    let decided = decide(&mut state, &[Command::Cancel(id(1))], &rules(300));
    assert!(decided.offers.is_empty(), "{:?}", decided.offers);
    assert_eq!(state.bookings[&id(3)].status, BookingStatus::Waitlisted);
}

#[test]
fn best_available_holds_adjacent_seats_and_prices_them() {
    // Seats 0..8 in rows of four; seat 1 is taken, so a pair sits in 2-3.
    let mut state = seated(8, &[&[1], &[], &[]]);
    let best = |quantity| Wanted::BestAvailable {
        quantity,
        section: None,
    };
    state.bookings.get_mut(&id(2)).unwrap().wanted = best(2);
    state.bookings.get_mut(&id(3)).unwrap().wanted = best(4);
    let run: Vec<Command> = (1..=3).map(|i| Command::Request(id(i))).collect();
    decide(&mut state, &run, &rules(300));
    let pair = &state.bookings[&id(2)];
    assert_eq!(pair.status, BookingStatus::Held);
    assert_eq!(pair.seats(), [id(1002), id(1003)]);
    assert_eq!(pair.total_cents, Some(1002 + 1003));
    // Four together only fit in the second row.
    assert_eq!(
        state.bookings[&id(3)].seats(),
        [id(1004), id(1005), id(1006), id(1007)]
    );
    assert_consistent(&state);
}

/// A random show with random bookings, and a random run over them.
#[derive(Debug, Clone)]
struct Case {
    state: State,
    run: Vec<Command>,
    hold_seconds: i64,
}

fn command(bookings: u128) -> impl Strategy<Value = Command> {
    let booking = (1..=bookings).prop_map(id);
    (0..8u8, booking, 0..3u8).prop_map(|(kind, booking, charge)| match kind {
        0..=3 => Command::Request(booking),
        4 => Command::Confirm {
            booking,
            charge: match charge {
                0 => None,
                1 => Some(Charge::Declined),
                _ => approved(&format!("ch_{}", booking.as_u128())),
            },
        },
        5 | 6 => Command::Cancel(booking),
        _ => Command::Expire(booking),
    })
}

fn case() -> impl Strategy<Value = Case> {
    let ga_case = (1..30i32, prop::collection::vec(1..5i32, 1..12))
        .prop_map(|(capacity, qs)| ga(capacity, &qs));
    let seated_case = (1..12u128)
        .prop_flat_map(|seats| {
            let wants = prop::collection::vec(
                prop::collection::btree_set(0..seats, 1..=(seats.min(3) as usize)),
                1..12,
            );
            (Just(seats), wants, prop::collection::vec(any::<bool>(), 12))
        })
        .prop_map(|(seats, wants, best)| {
            let wants: Vec<Vec<u128>> =
                wants.into_iter().map(|w| w.into_iter().collect()).collect();
            let refs: Vec<&[u128]> = wants.iter().map(Vec::as_slice).collect();
            let mut state = seated(seats, &refs);
            // Some ask for the best available of as many seats instead.
            for (n, best) in best.into_iter().enumerate() {
                if let (true, Some(b)) = (best, state.bookings.get_mut(&id(n as u128 + 1))) {
                    b.wanted = Wanted::BestAvailable {
                        quantity: b.quantity(),
                        section: None,
                    };
                }
            }
            state
        });
    let limit = prop::option::of(1..8i32);
    let waits = prop::collection::vec(any::<bool>(), 12);
    (prop_oneof![ga_case, seated_case], limit, waits).prop_flat_map(|(mut state, limit, waits)| {
        state.show.max_per_customer = limit;
        // Requests by quantity may ask to wait when sold out.
        for (n, wait) in waits.into_iter().enumerate() {
            if let Some(b) = state.bookings.get_mut(&id(n as u128 + 1)) {
                b.waitlist = wait && !matches!(b.wanted, Wanted::Seats(_));
            }
        }
        let bookings = state.bookings.len() as u128;
        (
            Just(state),
            prop::collection::vec(command(bookings), 0..40),
            prop_oneof![Just(0i64), Just(300i64)],
        )
            .prop_map(|(state, run, hold_seconds)| Case {
                state,
                run,
                hold_seconds,
            })
    })
}

/// Whether a waitlisted booking could be offered tickets right now.
fn could_be_offered(state: &State, booking: &Booking) -> bool {
    let fits = match state.show.kind {
        ShowKind::GeneralAdmission => state.show.available() >= booking.quantity(),
        ShowKind::Seated => best_available(state, booking).is_some(),
    };
    fits && !over_limit(state, booking)
}

/// The counters, seats and bookings agree, and nothing is oversold.
fn assert_consistent(state: &State) {
    let show = &state.show;
    assert!(show.held >= 0 && show.booked >= 0, "{show:?}");
    assert!(
        show.held + show.booked <= show.capacity,
        "oversold: {show:?}"
    );
    let sum = |status| -> i32 {
        state
            .bookings
            .values()
            .filter(|b| b.status == status)
            .map(|b| b.quantity())
            .sum()
    };
    assert_eq!(show.held, sum(BookingStatus::Held));
    assert_eq!(show.booked, sum(BookingStatus::Confirmed));
    let mut live: HashMap<&str, i32> = HashMap::new();
    for b in state.bookings.values() {
        if matches!(b.status, BookingStatus::Held | BookingStatus::Confirmed) {
            *live.entry(&b.customer).or_default() += b.quantity();
        }
    }
    for (customer, &tickets) in &live {
        assert_eq!(state.customer_tickets[*customer], tickets, "{customer}");
        if let Some(max) = show.max_per_customer {
            assert!(tickets <= max, "{customer} has {tickets} > {max}");
        }
    }
    // The waiting list is exactly the waitlisted bookings, each with its
    // own place, and none of them could take what is free now: offers went
    // out the moment tickets returned.
    let waiting: Vec<Uuid> = state.waitlist.values().copied().collect();
    let mut waitlisted: Vec<Uuid> = state
        .bookings
        .iter()
        .filter(|(_, b)| b.status == BookingStatus::Waitlisted)
        .map(|(id, _)| *id)
        .collect();
    waitlisted.sort_by_key(|id| state.bookings[id].waitlist_seq);
    assert_eq!(waiting, waitlisted);
    for id in &waiting {
        let b = &state.bookings[id];
        assert!(b.waitlist_seq.is_some_and(|seq| seq <= show.waitlist_tail));
        assert!(!could_be_offered(state, b), "{b:?} waits while it fits");
    }
    for (seat_id, seat) in &state.seats {
        match seat.owner {
            None => assert_eq!(seat.status, SeatStatus::Available),
            Some(owner) => {
                let booking = &state.bookings[&owner];
                let expected = match booking.status {
                    BookingStatus::Held => SeatStatus::Held,
                    BookingStatus::Confirmed => SeatStatus::Booked,
                    other => panic!("seat owned by a {other} booking"),
                };
                assert_eq!(seat.status, expected);
                assert!(booking.seats().contains(seat_id));
            }
        }
    }
    // A seat is never in two live bookings: every live booking owns all
    // the seats it asked for, and a seat has one owner.
    for (booking_id, booking) in &state.bookings {
        if matches!(
            booking.status,
            BookingStatus::Held | BookingStatus::Confirmed
        ) {
            for seat in booking.seats() {
                assert_eq!(state.seats[seat].owner, Some(*booking_id));
            }
        }
    }
}

#[test]
fn requests_take_their_slots_in_line_order_around_other_commands() {
    // Bookings 1..=4 are numbered 0..=3 in line; they arrive out of line.
    let state = ga(10, &[1, 1, 1, 1]);
    let run = [
        Command::Request(id(3)),
        Command::Cancel(id(9)),
        Command::Request(id(1)),
        Command::Request(id(4)),
        Command::Expire(id(8)),
        Command::Request(id(2)),
    ];
    let order = line_order(&state, &run);
    let decided: Vec<&Command> = order.iter().map(|&i| &run[i]).collect();
    assert_eq!(
        decided,
        [
            &Command::Request(id(1)),
            &Command::Cancel(id(9)),
            &Command::Request(id(2)),
            &Command::Request(id(3)),
            &Command::Expire(id(8)),
            &Command::Request(id(4)),
        ]
    );
}

#[test]
fn requests_without_a_number_keep_their_order_after_the_numbered() {
    let mut state = ga(10, &[1, 1, 1]);
    state.bookings.get_mut(&id(1)).unwrap().accepted_seq = None;
    let run = [
        Command::Request(id(1)),
        Command::Request(id(3)),
        Command::Request(id(7)),
        Command::Request(id(2)),
    ];
    let order = line_order(&state, &run);
    assert_eq!(order, [3, 1, 0, 2]);
}

proptest! {
    #[test]
    fn line_order_is_a_permutation_that_moves_only_requests_and_sorts_them(case in case()) {
        let order = line_order(&case.state, &case.run);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..case.run.len()).collect::<Vec<_>>());
        let seq = |i: usize| case.state.bookings.get(&case.run[i].booking())
            .and_then(|b| b.accepted_seq).unwrap_or(i64::MAX);
        let mut last = i64::MIN;
        for (slot, &i) in order.iter().enumerate() {
            let is_request = matches!(case.run[i], Command::Request(_));
            prop_assert_eq!(is_request, matches!(case.run[slot], Command::Request(_)));
            if is_request {
                prop_assert!(seq(i) >= last);
                last = seq(i);
            } else {
                prop_assert_eq!(i, slot);
            }
        }
    }

    #[test]
    fn no_run_oversells_or_leaves_seats_and_counters_disagreeing(case in case()) {
        let mut state = case.state;
        for command in &case.run {
            decide(&mut state, std::slice::from_ref(command), &rules(case.hold_seconds));
            assert_consistent(&state);
        }
    }

    #[test]
    fn the_same_run_decided_twice_gives_the_same_result(case in case()) {
        let rules = rules(case.hold_seconds);
        let (mut a, mut b) = (case.state.clone(), case.state);
        prop_assert_eq!(decide(&mut a, &case.run, &rules), decide(&mut b, &case.run, &rules));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn deciding_a_run_at_once_equals_deciding_it_one_by_one(case in case()) {
        let rules = rules(case.hold_seconds);
        let (mut whole, mut single) = (case.state.clone(), case.state);
        let at_once = decide(&mut whole, &case.run, &rules);
        let mut one_by_one = Decided::default();
        for command in &case.run {
            let d = decide(&mut single, std::slice::from_ref(command), &rules);
            one_by_one.verdicts.extend(d.verdicts);
            one_by_one.offers.extend(d.offers);
            one_by_one.refunds.extend(d.refunds);
        }
        prop_assert_eq!(at_once, one_by_one);
        prop_assert_eq!(whole, single);
    }

    #[test]
    fn every_decision_is_a_move_the_lifecycle_allows(case in case()) {
        let mut state = case.state;
        let decided = decide(&mut state, &case.run, &rules(case.hold_seconds));
        for d in decided.decisions() {
            let allowed = transition(d.from, d.command)
                .is_ok_and(|t| t.targets(d.from).contains(&d.to));
            prop_assert!(allowed, "{:?}", d);
        }
    }

    #[test]
    fn a_later_request_never_gets_what_an_earlier_one_was_refused(case in case()) {
        let asked = case.state.clone();
        let mut state = case.state;
        let decided = decide(&mut state, &case.run, &rules(case.hold_seconds));
        // What each request asked for: a quantity, or a set of seats.
        let ask = |booking: Uuid| {
            let b = &asked.bookings[&booking];
            let mut seats = b.seats().to_vec();
            seats.sort();
            (b.quantity(), seats)
        };
        let mut refused: Vec<(i32, Vec<Uuid>)> = Vec::new();
        for verdict in &decided.verdicts {
            let Verdict::Applied(d) = verdict else { continue };
            match (d.command, d.to) {
                // A limit binds one customer, not the ones after them.
                (CommandKind::Request, BookingStatus::Rejected)
                    if d.reason != Some(Reason::LimitExceeded) =>
                {
                    refused.push(ask(d.booking))
                }
                (CommandKind::Request, BookingStatus::Waitlisted) => refused.push(ask(d.booking)),
                (CommandKind::Request, BookingStatus::Held) => {
                    prop_assert!(!refused.contains(&ask(d.booking)), "inversion at {:?}", d);
                }
                // Tickets back on sale: earlier refusals no longer bind.
                (_, BookingStatus::Cancelled | BookingStatus::Expired)
                    if matches!(d.from, BookingStatus::Held | BookingStatus::Confirmed) =>
                {
                    refused.clear();
                }
                _ => {}
            }
        }
    }
}
