-- Refunds (PRODUCT.md §5a): written in the transaction that decides them
-- (a cancel of a confirmed booking, or a charge that did not confirm), so
-- a crash after that commit cannot lose one; the worker's refund sweeper
-- asks the gateway until it says yes.
CREATE TABLE refunds (
    -- The charge paid back. A gateway refunds a charge once whatever the
    -- number of asks, so this is also the refund's idempotency key.
    reference       text        PRIMARY KEY,
    -- No foreign key: a charge can outlive a booking the API withdrew.
    booking_id      uuid        NOT NULL,
    amount_cents    bigint      NOT NULL CHECK (amount_cents >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    -- When the sweeper may ask (again); a claim pushes it past the call's
    -- timeout, so a sweeper that dies mid-call leaves it to another.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    refunded_at     timestamptz
);
CREATE INDEX refunds_pending_idx ON refunds (next_attempt_at) WHERE refunded_at IS NULL;
CREATE INDEX refunds_booking_idx ON refunds (booking_id);

-- What has been paid back, once the gateway said so.
ALTER TABLE bookings ADD COLUMN refunded_cents bigint CHECK (refunded_cents >= 0);

-- The built-in test gateway's ledger: one row per refunded charge however
-- often it is asked (as a real gateway's idempotency key makes it), with
-- the number of asks, so tests can count refunds.
CREATE TABLE test_gateway_refunds (
    reference    text        PRIMARY KEY,
    amount_cents bigint      NOT NULL,
    asks         integer     NOT NULL DEFAULT 1,
    refunded_at  timestamptz NOT NULL DEFAULT now()
);
