-- The outbox carries booking commands as well as events: a sweep that asks
-- for a state change (an expiry) records the command in its transaction and
-- the relay publishes it, so nothing is published while rows are locked.
ALTER TABLE outbox ADD COLUMN topic text NOT NULL DEFAULT 'event'
    CHECK (topic IN ('event', 'command'));
