-- Place in line (PRODUCT.md §5a): every accepted request gets the next
-- number of its show's line when the API records it.
--
-- The number comes from `show_queue_tails`, not from `shows` (which the
-- workers update under their version check): the API's group commit bumps
-- the show's tail in the statement that inserts the bookings, so the row
-- lock orders the commits of one show and numbers become visible in the
-- order they were handed out. A booking's place is then its number minus
-- the smallest number still queued, plus one: one index lookup, however
-- long the line.
CREATE TABLE show_queue_tails (
    show_id uuid   PRIMARY KEY REFERENCES shows (id),
    tail    bigint NOT NULL
);

ALTER TABLE bookings ADD COLUMN accepted_seq bigint;

-- The head of each show's line. A dead-lettered request waits for an
-- operator, not for the workers, so it is not in the line.
CREATE INDEX bookings_line_idx ON bookings (show_id, accepted_seq)
    WHERE status = 'queued' AND dead_lettered_at IS NULL;
