-- Rules that several statements share, written once in the schema so that
-- the stores (shared/src/store/) never spell them out again.

-- Seat order, the order of every seat list: sections by position, then
-- rows with shorter labels first (row "9" before "10", "Z" before "AA"),
-- then seat number. `row_key` carries the row rule as one string that
-- sorts bytewise (the worker ranks rows by it without knowing the rule).
CREATE FUNCTION seat_row_key(row_label text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lpad(length(row_label)::text, 4, '0') || row_label COLLATE "C";

CREATE TYPE seat_order AS (section_position integer, row_key text COLLATE "C", number integer);

-- A seat with its section's name and rank, as every reader wants it:
-- `ORDER BY seat_order` is the seat order.
CREATE VIEW seat_places AS
SELECT s.id, s.show_id, s.section_id, sec.name AS section, sec.position AS section_rank,
       s.row_label AS row, seat_row_key(s.row_label) AS row_key, s.number, s.price_cents,
       s.status, s.booking_id, s.version,
       ROW(sec.position, seat_row_key(s.row_label), s.number)::seat_order AS seat_order
FROM seats s JOIN sections sec ON sec.id = s.section_id;

-- Predicates that partial indexes are built on. A statement names the
-- predicate instead of comparing `status` with a literal or a parameter:
-- PostgreSQL inlines these functions, so the partial index matches, also
-- in a generic plan (a parameter would not match it there).
CREATE FUNCTION booking_in_line(status text, dead_lettered_at timestamptz) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN status = 'queued' AND dead_lettered_at IS NULL;
CREATE FUNCTION booking_waiting_for_offer(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN status = 'waitlisted';
CREATE FUNCTION booking_holds_tickets(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN status IN ('held', 'confirmed');
CREATE FUNCTION booking_on_hold(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN status = 'held';
CREATE FUNCTION booking_confirmed(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN status = 'confirmed';

-- The partial indexes, declared with the same predicates.
DROP INDEX bookings_line_idx;
CREATE INDEX bookings_line_idx ON bookings (show_id, accepted_seq)
    WHERE booking_in_line(status, dead_lettered_at);
DROP INDEX bookings_queued_idx;
CREATE INDEX bookings_queued_idx ON bookings (created_at)
    WHERE booking_in_line(status, dead_lettered_at);
DROP INDEX bookings_waitlisted_idx;
CREATE INDEX bookings_waitlisted_idx ON bookings (show_id, coalesce(section, ''), quantity, waitlist_seq)
    WHERE booking_waiting_for_offer(status);
DROP INDEX bookings_waitlist_position_idx;
CREATE INDEX bookings_waitlist_position_idx ON bookings (show_id, waitlist_seq)
    WHERE booking_waiting_for_offer(status);
DROP INDEX bookings_live_customer_idx;
CREATE INDEX bookings_live_customer_idx ON bookings (show_id, lower(email))
    WHERE booking_holds_tickets(status);
DROP INDEX bookings_hold_expiry_idx;
CREATE INDEX bookings_hold_expiry_idx ON bookings (hold_expires_at)
    WHERE booking_on_hold(status);
DROP INDEX bookings_confirmed_idx;
CREATE INDEX bookings_confirmed_idx ON bookings (show_id)
    WHERE booking_confirmed(status);

-- The audit trail outlives what it describes: a request withdrawn because
-- its publish failed leaves its booking row, but its history stays.
ALTER TABLE booking_audit DROP CONSTRAINT booking_audit_booking_id_fkey;
