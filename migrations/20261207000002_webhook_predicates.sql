-- Statements pass delivery statuses as parameters, except where the status
-- is what a partial index depends on: a generic plan cannot match
-- `status = $1` to `webhook_deliveries_due_idx` (`WHERE status = 'pending'`)
-- and scans instead. This function holds that predicate; PostgreSQL inlines
-- it, so plans, generic ones too, still use the index.
CREATE FUNCTION webhook_delivery_pending(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT status = 'pending' $$;
