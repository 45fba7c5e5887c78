-- The whole booking schema. Every hot table carries show_id so that a
-- distributed PostgreSQL (e.g. Citus) could shard by it later.
--
-- Oversell is impossible by construction, not by application care:
--   * shows.held + shows.booked <= shows.capacity (CHECK), for both kinds;
--   * a seat row points at no more than one booking (seats.booking_id);
--   * every row the workers touch has a `version` bumped on each update, and
--     workers update with `WHERE id = $1 AND version = $2`.

CREATE TABLE shows (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    venue       text        NOT NULL CHECK (length(venue) BETWEEN 1 AND 200),
    starts_at   timestamptz NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('general_admission', 'seated')),
    capacity    integer     NOT NULL CHECK (capacity > 0),
    -- Price of one general-admission ticket; seated shows price per section.
    price_cents bigint      CHECK (price_cents >= 0),
    held        integer     NOT NULL DEFAULT 0 CHECK (held >= 0),
    booked      integer     NOT NULL DEFAULT 0 CHECK (booked >= 0),
    version     bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT shows_never_oversold CHECK (held + booked <= capacity),
    CONSTRAINT shows_ga_has_price CHECK ((kind = 'general_admission') = (price_cents IS NOT NULL))
);

CREATE TABLE sections (
    id          uuid PRIMARY KEY,
    show_id     uuid   NOT NULL REFERENCES shows (id),
    name        text   NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    position    integer NOT NULL,
    UNIQUE (show_id, name)
);

CREATE TABLE bookings (
    id              uuid PRIMARY KEY,
    show_id         uuid        NOT NULL REFERENCES shows (id),
    email           text        NOT NULL,
    name            text        NOT NULL,
    quantity        integer     NOT NULL CHECK (quantity > 0),
    status          text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'held', 'confirmed', 'rejected', 'expired', 'cancelled')),
    reason          text,
    total_cents     bigint      CHECK (total_cents >= 0),
    hold_expires_at timestamptz,
    -- The payment gateway's reference for the charge that confirmed it.
    payment_ref     text,
    version         bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bookings_hold_has_expiry CHECK ((status = 'held') = (hold_expires_at IS NOT NULL))
);
CREATE INDEX bookings_show_idx ON bookings (show_id, created_at);
CREATE INDEX bookings_email_idx ON bookings (lower(email));
-- The expiry sweeper scans only live holds.
CREATE INDEX bookings_hold_expiry_idx ON bookings (hold_expires_at) WHERE status = 'held';
-- Crash recovery for the API: queued rows whose message may never have been published.
CREATE INDEX bookings_queued_idx ON bookings (created_at) WHERE status = 'queued';

CREATE TABLE seats (
    id          uuid PRIMARY KEY,
    show_id     uuid    NOT NULL REFERENCES shows (id),
    section_id  uuid    NOT NULL REFERENCES sections (id),
    row_label   text    NOT NULL,
    number      integer NOT NULL CHECK (number > 0),
    price_cents bigint  NOT NULL CHECK (price_cents >= 0),
    status      text    NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'held', 'booked')),
    -- The one live booking that holds or owns this seat: a seat can never be
    -- in two live bookings because there is only one column to point from.
    booking_id  uuid    REFERENCES bookings (id),
    version     bigint  NOT NULL DEFAULT 0,
    UNIQUE (section_id, row_label, number),
    CONSTRAINT seats_owner_matches_status CHECK ((status = 'available') = (booking_id IS NULL))
);
CREATE INDEX seats_show_idx ON seats (show_id);
CREATE INDEX seats_booking_idx ON seats (booking_id) WHERE booking_id IS NOT NULL;

-- The seats a booking asked for (kept after the booking ends, for history).
CREATE TABLE booking_seats (
    booking_id uuid NOT NULL REFERENCES bookings (id),
    seat_id    uuid NOT NULL REFERENCES seats (id),
    show_id    uuid NOT NULL REFERENCES shows (id),
    PRIMARY KEY (booking_id, seat_id)
);

CREATE TABLE tickets (
    code       text PRIMARY KEY,
    booking_id uuid NOT NULL REFERENCES bookings (id),
    show_id    uuid NOT NULL REFERENCES shows (id),
    seat_id    uuid REFERENCES seats (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_booking_idx ON tickets (booking_id);

-- Audit trail: every booking state change, who made it and why.
CREATE TABLE booking_audit (
    id          bigserial PRIMARY KEY,
    booking_id  uuid        NOT NULL REFERENCES bookings (id),
    show_id     uuid        NOT NULL,
    from_status text,
    to_status   text        NOT NULL,
    reason      text,
    actor       text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX booking_audit_booking_idx ON booking_audit (booking_id, id);

-- Idempotency-Key header: the same key and body return the same booking.
CREATE TABLE idempotency_keys (
    key          text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request_hash bytea       NOT NULL,
    booking_id   uuid        NOT NULL REFERENCES bookings (id),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: events written in the deciding transaction and
-- relayed to RabbitMQ with publisher confirms.
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    seq          bigserial   NOT NULL UNIQUE,
    show_id      uuid        NOT NULL,
    booking_id   uuid        NOT NULL,
    kind         text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;

-- What the notifier has sent, so a redelivered event does not send twice.
CREATE TABLE sent_emails (
    booking_id uuid        NOT NULL,
    kind       text        NOT NULL,
    event_id   uuid        NOT NULL,
    recipient  text        NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (booking_id, kind)
);
