//! The show as a calendar entry (RFC 5545), attached to the confirmation so
//! the customer can put it in their calendar in one tap.

use chrono::{DateTime, Duration, Utc};
use shared::messages::BookingSnapshot;

/// Octets a content line may have before it is folded (RFC 5545, 3.1),
/// without its CRLF.
const LINE_OCTETS: usize = 75;

/// How long the entry lasts. A show carries only its start, and an entry
/// without an end is a point in time (RFC 5545, 3.6.1) that calendars draw
/// as nothing; two hours is a typical evening and blocks it out.
const LENGTH: Duration = Duration::hours(2);

/// The `.ics` of booking `b`'s show, one `VEVENT` in a `METHOD:PUBLISH`
/// calendar. `stamp` is when the booking was confirmed, not now, so every
/// copy of the email carries the same entry. The `UID` is the booking's id
/// under the sender's `domain`: a calendar that imports the entry twice
/// (two copies of the email, or a second click) updates it instead of
/// adding another.
pub fn ics(b: &BookingSnapshot, stamp: DateTime<Utc>, domain: &str) -> String {
    [
        ("BEGIN", "VCALENDAR".to_owned()),
        ("VERSION", "2.0".to_owned()),
        (
            "PRODID",
            "-//Queue-driven ticket booking//notifier//EN".to_owned(),
        ),
        ("METHOD", "PUBLISH".to_owned()),
        ("BEGIN", "VEVENT".to_owned()),
        ("UID", format!("{}@{domain}", b.id)),
        ("DTSTAMP", utc(stamp)),
        ("DTSTART", utc(b.starts_at)),
        ("DTEND", utc(b.starts_at + LENGTH)),
        ("SUMMARY", text(&b.show_name)),
        ("LOCATION", text(&b.venue)),
        ("DESCRIPTION", text(&description(b))),
        ("END", "VEVENT".to_owned()),
        ("END", "VCALENDAR".to_owned()),
    ]
    .iter()
    .map(|(name, value)| fold(&format!("{name}:{value}")))
    .collect()
}

/// A time in UTC, the form (`YYYYMMDDTHHMMSSZ`) every calendar reads
/// without a `VTIMEZONE`.
fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The ticket codes, each with its seat when seated (as in the email's
/// text), and the booking, for whoever opens the entry at the door.
fn description(b: &BookingSnapshot) -> String {
    let mut lines = vec!["Show one ticket code per person at the door:".to_owned()];
    for (i, code) in b.tickets.iter().enumerate() {
        lines.push(match b.seats.get(i) {
            Some(s) => format!("{code}  {}, row {}, seat {}", s.section, s.row, s.number),
            None => code.clone(),
        });
    }
    lines.push(format!("Booking {}", b.id));
    lines.join("\n")
}

/// `value` as a TEXT value (RFC 5545, 3.3.11): backslash, semicolon and
/// comma escaped, each line break as `\n`, and other control characters,
/// which TEXT cannot hold, dropped.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.replace("\r\n", "\n").chars() {
        match c {
            '\\' | ';' | ',' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push_str("\\n"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// One content line, folded after every 75 octets (RFC 5545, 3.1) and
/// ended with CRLF. Folds fall between characters, never inside one, so
/// each physical line stays valid UTF-8; a continuation starts with the
/// space that unfolding removes.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / LINE_OCTETS * 3 + 2);
    let mut octets = 0;
    for c in line.chars() {
        if octets + c.len_utf8() > LINE_OCTETS {
            out.push_str("\r\n ");
            octets = 1;
        }
        out.push(c);
        octets += c.len_utf8();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::tests::event;
    use shared::messages::SeatLabel;
    use uuid::Uuid;

    const DOMAIN: &str = "booking.test";

    fn stamp() -> DateTime<Utc> {
        "2030-05-01T10:00:00Z".parse().unwrap()
    }

    /// The logical lines of `ics`, unfolded.
    fn unfolded(ics: &str) -> Vec<String> {
        ics.replace("\r\n ", "")
            .split("\r\n")
            .map(str::to_owned)
            .collect()
    }

    fn property<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
    }

    #[test]
    fn text_values_escape_backslashes_semicolons_commas_and_line_breaks() {
        assert_eq!(
            text("Rock, Paper; Scissors \\ Co.\nSecond\r\nThird"),
            "Rock\\, Paper\\; Scissors \\\\ Co.\\nSecond\\nThird"
        );
        assert_eq!(text("Bell\u{7}\ttab"), "Bell\ttab");
    }

    #[test]
    fn long_lines_fold_within_75_octets_between_characters_and_unfold_to_the_original() {
        let line = format!("SUMMARY:{}", "Zauberflöte über alles – ".repeat(12));
        let folded = fold(&line);
        assert!(folded.ends_with("\r\n"));
        let physical: Vec<&str> = folded.trim_end_matches("\r\n").split("\r\n").collect();
        assert!(physical.len() > 4, "{folded}");
        assert!(physical.iter().all(|l| l.len() <= LINE_OCTETS), "{folded}");
        assert!(physical[1..].iter().all(|l| l.starts_with(' ')));
        assert_eq!(folded.replace("\r\n ", ""), format!("{line}\r\n"));
        assert_eq!(fold("VERSION:2.0"), "VERSION:2.0\r\n");
    }

    #[test]
    fn every_line_ends_with_crlf_and_none_is_longer_than_75_octets() {
        let mut long = event(vec![]);
        long.booking.show_name = "A very long show name, with commas; and more ".repeat(4);
        let ics = ics(&long.booking, stamp(), DOMAIN);
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        assert!(!ics.replace("\r\n", "").contains('\n'));
        assert!(ics.split("\r\n").all(|l| l.len() <= LINE_OCTETS));
        let lines = unfolded(&ics);
        assert_eq!(
            property(&lines, "SUMMARY"),
            Some(text(&long.booking.show_name).as_str())
        );
    }

    #[test]
    fn the_uid_is_fixed_per_booking_and_differs_between_bookings() {
        let first = event(vec![]);
        let uid = |b: &BookingSnapshot, stamp| {
            property(&unfolded(&ics(b, stamp, DOMAIN)), "UID").map(str::to_owned)
        };
        let expected = format!("{}@{DOMAIN}", first.booking.id);
        assert_eq!(uid(&first.booking, stamp()).as_deref(), Some(&*expected));
        assert_eq!(uid(&first.booking, Utc::now()).as_deref(), Some(&*expected));
        let mut other = first.booking.clone();
        other.id = Uuid::new_v4();
        assert_ne!(uid(&other, stamp()), uid(&first.booking, stamp()));
    }

    #[test]
    fn the_show_starts_and_ends_in_utc_and_is_stamped_when_confirmed() {
        let mut confirmed = event(vec![]);
        confirmed.booking.starts_at = "2030-06-01T19:30:05.250+02:00".parse().unwrap();
        let lines = unfolded(&ics(&confirmed.booking, stamp(), DOMAIN));
        assert_eq!(property(&lines, "DTSTART"), Some("20300601T173005Z"));
        assert_eq!(property(&lines, "DTEND"), Some("20300601T193005Z"));
        assert_eq!(property(&lines, "DTSTAMP"), Some("20300501T100000Z"));
    }

    #[test]
    fn the_entry_is_a_published_event_at_the_venue_listing_every_ticket_with_its_seat() {
        let seat = |number| SeatLabel {
            section: "Stalls".into(),
            row: "B".into(),
            number,
            price_cents: 4525,
        };
        let seated = event(vec![seat(7), seat(8)]);
        let lines = unfolded(&ics(&seated.booking, stamp(), DOMAIN));
        assert_eq!(
            &lines[..5],
            [
                "BEGIN:VCALENDAR",
                "VERSION:2.0",
                "PRODID:-//Queue-driven ticket booking//notifier//EN",
                "METHOD:PUBLISH",
                "BEGIN:VEVENT"
            ]
        );
        assert_eq!(property(&lines, "SUMMARY"), Some("Hamlet"));
        assert_eq!(property(&lines, "LOCATION"), Some("Globe"));
        let description = property(&lines, "DESCRIPTION").unwrap();
        for line in [
            "TKT-AAAA-BBBB-CCCC  Stalls\\, row B\\, seat 7\\n",
            "TKT-DDDD-EEEE-FFFF  Stalls\\, row B\\, seat 8\\n",
        ] {
            assert!(description.contains(line), "{line:?} not in {description}");
        }
    }
}
