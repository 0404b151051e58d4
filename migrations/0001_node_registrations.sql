-- Registrations of the nodes one registry has seen. One registry per schema: the
-- operator sets search_path to the RegistryNode's configured schema before migrating.
CREATE TABLE IF NOT EXISTS node_registrations (
    node_id          TEXT PRIMARY KEY,
    registry_id      TEXT        NOT NULL,
    node_type        TEXT        NOT NULL,
    node_role        TEXT,
    node_version     TEXT,
    capabilities     JSONB       NOT NULL DEFAULT '{}'::jsonb,
    endpoints        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    metadata         JSONB       NOT NULL DEFAULT '{}'::jsonb,
    health_status    TEXT        NOT NULL DEFAULT 'healthy'
        CHECK (health_status IN ('healthy', 'degraded', 'unhealthy', 'critical', 'recovering')),
    health_endpoint  TEXT,
    network_id       TEXT,
    deployment_id    TEXT,
    epoch            BIGINT,
    registered_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_heartbeat   TIMESTAMPTZ,
    -- Ordering and idempotency: an event whose timestamp is older than these never
    -- changes the row, and replaying the same event_id changes nothing.
    last_event_id        UUID        NOT NULL,
    last_event_timestamp TIMESTAMPTZ NOT NULL,
    -- Set by a shutdown introspection. A later heartbeat never clears it; only a newer
    -- introspection does.
    deregistered_at  TIMESTAMPTZ
);

CREATE INDEX IF NOT EXISTS node_registrations_type_idx ON node_registrations (node_type);
CREATE INDEX IF NOT EXISTS node_registrations_health_idx ON node_registrations (health_status);
CREATE INDEX IF NOT EXISTS node_registrations_heartbeat_idx ON node_registrations (last_heartbeat);
CREATE INDEX IF NOT EXISTS node_registrations_registry_idx ON node_registrations (registry_id);
