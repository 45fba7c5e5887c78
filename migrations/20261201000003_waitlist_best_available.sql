-- Waiting list and best-available seats (PRODUCT.md §5a).

-- `waitlisted` joins the lifecycle.
ALTER TABLE bookings DROP CONSTRAINT bookings_status_check;
ALTER TABLE bookings ADD CONSTRAINT bookings_status_check
    CHECK (status IN ('queued', 'waitlisted', 'held', 'confirmed', 'rejected', 'expired', 'cancelled'));

-- What the request asked for: best available in this section (seated, no
-- seat_ids), and to wait rather than be refused when sold out.
ALTER TABLE bookings ADD COLUMN section text;
ALTER TABLE bookings ADD COLUMN waitlist boolean NOT NULL DEFAULT false;
-- Join order on the show's waiting list, from `shows.waitlist_tail`: the
-- version-checked show row hands out each number once.
ALTER TABLE bookings ADD COLUMN waitlist_seq bigint;
ALTER TABLE bookings ADD CONSTRAINT bookings_waitlisted_has_place
    CHECK (status <> 'waitlisted' OR waitlist_seq IS NOT NULL);
ALTER TABLE shows ADD COLUMN waitlist_tail bigint NOT NULL DEFAULT 0;

CREATE UNIQUE INDEX bookings_waitlist_seq_idx ON bookings (show_id, waitlist_seq)
    WHERE waitlist_seq IS NOT NULL;
-- The worker reads the head of each (section, size) queue when tickets
-- return; a poll counts the waiting ahead of a booking.
CREATE INDEX bookings_waitlisted_idx ON bookings (show_id, coalesce(section, ''), quantity, waitlist_seq)
    WHERE status = 'waitlisted';
CREATE INDEX bookings_waitlist_position_idx ON bookings (show_id, waitlist_seq)
    WHERE status = 'waitlisted';
