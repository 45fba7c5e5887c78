-- A booking whose request was dead-lettered stays `queued` until an operator
-- replays (or discards) the dead letter; it is marked so that the requeue
-- sweep leaves it to the operator instead of looping it through the queue.
ALTER TABLE bookings ADD COLUMN dead_lettered_at timestamptz;
