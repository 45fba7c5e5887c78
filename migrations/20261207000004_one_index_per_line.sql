-- `bookings_queued_idx` held exactly the rows of `bookings_line_idx` (the
-- same predicate), ordered by time. While a sale's line grows faster than
-- statistics are refreshed the planner rates both as one-row indexes, ties
-- them, and took the time-ordered one to find a show's head of line:
-- reading every queued request of every show, for each show, per recorded
-- batch (most of PostgreSQL's time with a thousand shows on sale). The
-- requeue sweep, its only user, reads the line index instead: it runs every
-- few seconds over the requests in line, which a line index holds anyway.
DROP INDEX bookings_queued_idx;
