-- Per-customer ticket limits: a show may cap the held + confirmed tickets one
-- customer (by case-insensitive email) has; the worker counts them per run.
ALTER TABLE shows ADD COLUMN max_tickets_per_customer integer
    CHECK (max_tickets_per_customer > 0);
CREATE INDEX bookings_live_customer_idx ON bookings (show_id, lower(email))
    WHERE status IN ('held', 'confirmed');
