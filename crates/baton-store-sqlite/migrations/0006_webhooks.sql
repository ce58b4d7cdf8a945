-- Baton schema v6: the webhook inbox. Every webhook whose signature verified is stored here,
-- once per (source, delivery id), before it is acknowledged; a worker parses each pending row
-- afterwards and records the outcome (`parsed`: a one-line summary of the event, or `error`).
-- A redelivery of the same id finds its row and changes nothing.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    processed_at INTEGER,
    parsed TEXT,
    error TEXT,
    UNIQUE (source, delivery_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (processed_at, id);
