-- Reminder emails: which confirmed bookings have had their reminder queued.
CREATE TABLE reminders (
    booking_id uuid PRIMARY KEY REFERENCES bookings (id),
    queued_at  timestamptz NOT NULL DEFAULT now()
);
-- The reminder sweep looks for confirmed bookings of shows starting soon.
CREATE INDEX shows_starts_at_idx ON shows (starts_at);
CREATE INDEX bookings_confirmed_idx ON bookings (show_id) WHERE status = 'confirmed';
