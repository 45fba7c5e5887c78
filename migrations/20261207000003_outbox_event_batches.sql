-- A deciding transaction writes the events of each show it decided as one
-- outbox row (topic 'events', payload a JSON array of events) instead of a
-- row per event: one heap tuple and three index entries per show and
-- transaction, not per decision, and one row for the relay to mark.
-- Such a row has no booking or kind of its own.
ALTER TABLE outbox ALTER COLUMN booking_id DROP NOT NULL,
                   ALTER COLUMN kind DROP NOT NULL;
ALTER TABLE outbox DROP CONSTRAINT outbox_topic_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_topic_check
    CHECK (topic IN ('event', 'command', 'events'));
ALTER TABLE outbox ADD CONSTRAINT outbox_row_names_its_booking
    CHECK (topic = 'events' OR (booking_id IS NOT NULL AND kind IS NOT NULL));

-- What the outbox holds, event by event however it is packed, for whoever
-- inspects it: `event_id`, `booking_id` and `kind` of each event, with its
-- row's `seq` and `published_at`.
CREATE VIEW outbox_events AS
SELECT o.seq, (e ->> 'event_id')::uuid AS event_id, (e -> 'booking' ->> 'id')::uuid AS booking_id,
       e ->> 'kind' AS kind, o.published_at
FROM outbox o CROSS JOIN LATERAL jsonb_array_elements(o.payload) AS e
WHERE o.topic = 'events'
UNION ALL
SELECT o.seq, o.id, o.booking_id, o.kind, o.published_at
FROM outbox o
WHERE o.topic = 'event';
