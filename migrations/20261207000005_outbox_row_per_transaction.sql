-- A deciding transaction writes all its events, of however many shows, as
-- one outbox row: with many shows on sale a transaction decides dozens of
-- shows, and a row for each cost as much as the decisions. Such a row
-- belongs to no single show.
ALTER TABLE outbox ALTER COLUMN show_id DROP NOT NULL;
ALTER TABLE outbox DROP CONSTRAINT outbox_row_names_its_booking;
ALTER TABLE outbox ADD CONSTRAINT outbox_row_names_its_booking
    CHECK (topic = 'events' OR (show_id IS NOT NULL AND booking_id IS NOT NULL AND kind IS NOT NULL));
