-- Liveness is judged on the registry's own clock: last_seen_at is set when the registry
-- writes an introspection or heartbeat of the node, whatever the producer's clock says.
ALTER TABLE node_registrations
    ADD COLUMN IF NOT EXISTS last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now();

CREATE INDEX IF NOT EXISTS node_registrations_last_seen_idx
    ON node_registrations (last_seen_at) WHERE deregistered_at IS NULL;
