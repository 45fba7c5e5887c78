-- Holds are expired through their show's shard queue, like every other
-- change to a show; the sweeper notes when it asked, so it asks once (and
-- again only if the request seems lost).
ALTER TABLE bookings ADD COLUMN expiry_requested_at timestamptz;
