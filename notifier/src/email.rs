//! Which events become which emails, and rendering them (plain text and
//! HTML, from the templates in `notifier/templates`).

use minijinja::{context, Environment};
use shared::messages::{BookingEvent, BookingSnapshot};

pub use shared::store::emails::EmailKind;

/// The subject line of an email of `kind` about booking `b`.
fn subject(kind: EmailKind, b: &BookingSnapshot) -> String {
    match kind {
        EmailKind::Confirmation => format!("Your tickets for {}", b.show_name),
        EmailKind::Cancellation => format!("Booking cancelled: {}", b.show_name),
        EmailKind::HoldExpired => format!("Your hold for {} has expired", b.show_name),
        EmailKind::Reminder => format!("Reminder: {} is coming up", b.show_name),
        EmailKind::Offer => format!("A place opened up for {}", b.show_name),
    }
}

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Templates compiled into the binary, parsed once.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = Environment::new();
        for (name, source) in [
            ("layout.html", include_str!("../templates/layout.html")),
            ("details.txt", include_str!("../templates/details.txt")),
            ("tickets.txt", include_str!("../templates/tickets.txt")),
            ("tickets.html", include_str!("../templates/tickets.html")),
            (
                "confirmation.html",
                include_str!("../templates/confirmation.html"),
            ),
            (
                "confirmation.txt",
                include_str!("../templates/confirmation.txt"),
            ),
            (
                "cancellation.html",
                include_str!("../templates/cancellation.html"),
            ),
            (
                "cancellation.txt",
                include_str!("../templates/cancellation.txt"),
            ),
            (
                "hold_expired.html",
                include_str!("../templates/hold_expired.html"),
            ),
            (
                "hold_expired.txt",
                include_str!("../templates/hold_expired.txt"),
            ),
            ("reminder.html", include_str!("../templates/reminder.html")),
            ("reminder.txt", include_str!("../templates/reminder.txt")),
            ("offer.html", include_str!("../templates/offer.html")),
            ("offer.txt", include_str!("../templates/offer.txt")),
        ] {
            env.add_template(name, source).expect("templates parse");
        }
        Self { env }
    }
}

impl Templates {
    pub fn render(
        &self,
        kind: EmailKind,
        event: &BookingEvent,
    ) -> Result<Rendered, minijinja::Error> {
        let b = &event.booking;
        let subject = subject(kind, b);
        let ctx = context! {
            b => b,
            subject => &subject,
            starts_at => b.starts_at.format("%A %-d %B %Y, %H:%M UTC").to_string(),
            total => money(b.total_cents.unwrap_or(0)),
            refund => b.refund_cents.map(money),
            hold_until => b.hold_expires_at.map(|at| at.format("%H:%M UTC on %A %-d %B").to_string()),
            qr_codes => b.tickets.iter().map(|code| crate::qr::html(code)).collect::<Vec<_>>(),
        };
        let text = self
            .env
            .get_template(&format!("{}.txt", kind.as_str()))?
            .render(&ctx)?;
        let html = self
            .env
            .get_template(&format!("{}.html", kind.as_str()))?
            .render(&ctx)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::Utc;
    use shared::domain::BookingStatus;
    use shared::messages::{EventKind, SeatLabel};
    use uuid::Uuid;

    /// A confirmation of two tickets for Hamlet.
    pub(crate) fn event(seats: Vec<SeatLabel>) -> BookingEvent {
        BookingEvent {
            event_id: Uuid::now_v7(),
            kind: EventKind::Confirmed,
            occurred_at: Utc::now(),
            booking: BookingSnapshot {
                id: Uuid::new_v4(),
                show_id: Uuid::new_v4(),
                show_name: "Hamlet".into(),
                venue: "Globe".into(),
                starts_at: Utc::now(),
                email: "ada@example.com".into(),
                name: "Ada".into(),
                status: BookingStatus::Confirmed,
                reason: None,
                quantity: 2,
                seats,
                total_cents: Some(9050),
                hold_expires_at: None,
                tickets: vec!["TKT-AAAA-BBBB-CCCC".into(), "TKT-DDDD-EEEE-FFFF".into()],
                refund_cents: None,
            },
        }
    }

    #[test]
    fn confirmation_lists_every_ticket_code_in_both_parts() {
        let mail = Templates::default()
            .render(EmailKind::Confirmation, &event(vec![]))
            .unwrap();
        for code in ["TKT-AAAA-BBBB-CCCC", "TKT-DDDD-EEEE-FFFF"] {
            assert!(
                mail.text.contains(code) && mail.html.contains(code),
                "{code} missing"
            );
        }
        assert!(mail.text.contains("2 x general admission"));
        assert!(mail.text.contains("90.50"));
        assert_eq!(mail.subject, "Your tickets for Hamlet");
    }

    #[test]
    fn seated_emails_pair_each_ticket_code_with_its_seat() {
        let seat = |number| SeatLabel {
            section: "Stalls".into(),
            row: "B".into(),
            number,
            price_cents: 4525,
        };
        let templates = Templates::default();
        for kind in [EmailKind::Confirmation, EmailKind::Reminder] {
            let mail = templates
                .render(kind, &event(vec![seat(7), seat(8)]))
                .unwrap();
            assert!(
                mail.text
                    .contains("TKT-AAAA-BBBB-CCCC  Stalls, row B, seat 7\n  TKT-DDDD-EEEE-FFFF  Stalls, row B, seat 8"),
                "{}",
                mail.text
            );
            let (first, second) = (
                mail.html.find("TKT-AAAA-BBBB-CCCC").unwrap(),
                mail.html.find("TKT-DDDD-EEEE-FFFF").unwrap(),
            );
            let seat_7 = mail.html[first..second].find("Stalls, row B, seat 7");
            assert!(seat_7.is_some(), "{}", mail.html);
        }
    }

    #[test]
    fn the_cancellation_of_a_paid_booking_says_how_much_is_refunded() {
        let mut cancelled = event(vec![]);
        cancelled.kind = EventKind::Cancelled;
        let templates = Templates::default();
        let unpaid = templates
            .render(EmailKind::Cancellation, &cancelled)
            .unwrap();
        assert!(!unpaid.text.contains("refunded"), "{}", unpaid.text);
        cancelled.booking.refund_cents = Some(9050);
        let paid = templates
            .render(EmailKind::Cancellation, &cancelled)
            .unwrap();
        assert!(
            paid.text.contains("Your payment of 90.50 is refunded"),
            "{}",
            paid.text
        );
        assert!(paid.html.contains("<strong>90.50</strong> is refunded"));
    }

    #[test]
    fn every_kind_of_email_renders() {
        let templates = Templates::default();
        for kind in [
            EmailKind::Confirmation,
            EmailKind::Cancellation,
            EmailKind::HoldExpired,
            EmailKind::Reminder,
            EmailKind::Offer,
        ] {
            let mail = templates.render(kind, &event(vec![])).unwrap();
            assert!(mail.text.contains("Hamlet") && mail.html.contains("Hamlet"));
        }
    }

    #[test]
    fn an_offer_says_until_when_the_tickets_are_held() {
        let mut offer = event(vec![]);
        offer.kind = EventKind::Offered;
        offer.booking.hold_expires_at = Some("2030-06-01T18:05:00Z".parse().unwrap());
        let mail = Templates::default()
            .render(EmailKind::Offer, &offer)
            .unwrap();
        assert!(
            mail.text.contains("18:05 UTC on Saturday 1 June"),
            "{}",
            mail.text
        );
        assert!(mail.html.contains("18:05 UTC on Saturday 1 June"));
        assert_eq!(mail.subject, "A place opened up for Hamlet");
    }

    #[test]
    fn a_waiting_list_place_ends_when_the_show_starts() {
        let mut ended = event(vec![]);
        ended.booking.reason = Some(shared::domain::Reason::ShowStarted);
        let mail = Templates::default()
            .render(EmailKind::HoldExpired, &ended)
            .unwrap();
        assert!(mail.text.contains("The show has started"));
    }

    #[test]
    fn only_customer_facing_events_send_email() {
        assert_eq!(EmailKind::for_event(EventKind::Held), None);
        assert_eq!(
            EmailKind::for_event(EventKind::Expired),
            Some(EmailKind::HoldExpired)
        );
    }
}
