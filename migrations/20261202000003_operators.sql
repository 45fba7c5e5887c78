-- Operator tokens with roles, check-in at the door, and who did what
-- (PRODUCT.md §5a "Operators and roles", "Tickets at the door").
CREATE TABLE operator_tokens (
    id         uuid        PRIMARY KEY,
    -- The actor the audit trail names for what the token did.
    name       text        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('admin', 'box_office', 'viewer')),
    -- SHA-256 of the secret, never the secret: a token of 256 random bits
    -- needs no slow hash to resist guessing.
    token_hash bytea       NOT NULL UNIQUE,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_by text
);

-- A ticket is scanned at most once: the first scan sets these.
ALTER TABLE tickets
    ADD COLUMN checked_in_at timestamptz,
    ADD COLUMN checked_in_by text;
-- Sales count checked-in tickets per show.
CREATE INDEX tickets_checked_in_idx ON tickets (show_id) WHERE checked_in_at IS NOT NULL;

-- Who created a show (an operator token's name, or `admin` for ADMIN_TOKEN).
ALTER TABLE shows ADD COLUMN created_by text;
