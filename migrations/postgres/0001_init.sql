-- hookgate schema (PostgreSQL). Times are unix milliseconds.
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS tenants (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    api_key_hash TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS provider_configs (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    provider   TEXT NOT NULL,
    config     TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);

CREATE TABLE IF NOT EXISTS dedup_keys (
    tenant_id  TEXT NOT NULL,
    provider   TEXT NOT NULL,
    key        TEXT NOT NULL,
    event_id   TEXT,
    status     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider, key)
);
CREATE INDEX IF NOT EXISTS dedup_keys_created ON dedup_keys (created_at);

CREATE TABLE IF NOT EXISTS subjects (
    tenant_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    rank       BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject)
);

CREATE TABLE IF NOT EXISTS events (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    tenant_id  TEXT NOT NULL,
    type       TEXT NOT NULL,
    subject    TEXT,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_tenant_seq ON events (tenant_id, seq);
CREATE INDEX IF NOT EXISTS events_tenant_type_seq ON events (tenant_id, type, seq);
CREATE INDEX IF NOT EXISTS events_created ON events (created_at);

CREATE TABLE IF NOT EXISTS inbound_log (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    tenant_id   TEXT NOT NULL,
    provider    TEXT NOT NULL,
    route       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    reason      TEXT,
    remote_addr TEXT,
    event_id    TEXT,
    dedup_key   TEXT,
    body        BYTEA,
    received_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbound_tenant_seq ON inbound_log (tenant_id, seq);
CREATE INDEX IF NOT EXISTS inbound_tenant_outcome_seq ON inbound_log (tenant_id, outcome, seq);
CREATE INDEX IF NOT EXISTS inbound_received ON inbound_log (received_at);

CREATE TABLE IF NOT EXISTS subscriptions (
    seq                   BIGSERIAL PRIMARY KEY,
    id                    TEXT NOT NULL UNIQUE,
    tenant_id             TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url                   TEXT NOT NULL,
    event_types           TEXT NOT NULL,
    description           TEXT,
    enabled               BOOLEAN NOT NULL,
    secret                TEXT NOT NULL,
    old_secret            TEXT,
    old_secret_expires_at BIGINT,
    failed_streak         BIGINT NOT NULL DEFAULT 0,
    disabled_reason       TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_tenant ON subscriptions (tenant_id, seq);

CREATE TABLE IF NOT EXISTS deliveries (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    ordering_key     TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT,
    locked_by        TEXT,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_chain ON deliveries (subscription_id, ordering_key, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_tenant_seq ON deliveries (tenant_id, seq);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);

CREATE TABLE IF NOT EXISTS attempts (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    delivery_id     TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    attempt         BIGINT NOT NULL,
    status_code     BIGINT,
    error           TEXT,
    response_body   TEXT,
    latency_ms      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_event ON attempts (event_id, seq);
