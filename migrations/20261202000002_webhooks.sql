-- Signed webhooks (PRODUCT.md §5a). The notifier fans each booking event
-- out to one delivery row per subscribed endpoint, then its sweeper POSTs
-- due rows, retrying with backoff until the delivery is delivered or fails.
CREATE TABLE webhook_endpoints (
    id         uuid        PRIMARY KEY,
    url        text        NOT NULL,
    -- Webhook event types (`booking.held`, …) it subscribes to.
    events     text[]      NOT NULL CHECK (cardinality(events) > 0),
    -- `whsec_` + base64 key; shown once, when the endpoint is created.
    secret     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Deleted endpoints stay for their delivery history but get nothing new.
    deleted_at timestamptz
);
-- Fan-out looks up the live endpoints of an event type.
CREATE INDEX webhook_endpoints_live_idx ON webhook_endpoints USING gin (events)
    WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    -- The `webhook-id` header: the same on every attempt, so receivers dedupe.
    id               uuid        PRIMARY KEY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id),
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    booking_id       uuid        NOT NULL,
    show_id          uuid        NOT NULL,
    -- The body POSTed: `{type, timestamp, data}`.
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts         integer     NOT NULL DEFAULT 0,
    -- When the sweeper may POST (again); a claim pushes it past the call's
    -- timeout (a lease), so a notifier that dies mid-call leaves it to another.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Retries end `WEBHOOK_RETRY_FOR_SECONDS` after this.
    first_attempt_at timestamptz,
    last_status_code integer,
    last_error       text,
    delivered_at     timestamptz,
    -- A redelivered event fans out to nothing new.
    UNIQUE (endpoint_id, event_id)
);
-- The sweeper leases each live endpoint's due rows, a few per endpoint.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at DESC);

-- Every answered or failed POST, for `GET /v1/webhooks/{id}/deliveries`.
CREATE TABLE webhook_attempts (
    delivery_id uuid        NOT NULL REFERENCES webhook_deliveries (id),
    attempt     integer     NOT NULL,
    status_code integer,
    error       text,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, attempt)
);
