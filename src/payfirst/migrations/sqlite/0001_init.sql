-- payfirst schema, version 1 (SQLite).
-- Amounts (78-digit numbers) are TEXT holding decimal digits, so they stay exact;
-- uuids are TEXT (canonical lowercase form); json is TEXT;
-- timestamps are TEXT in UTC ISO-8601 with milliseconds, 'YYYY-MM-DDTHH:MM:SS.fffZ'
-- (the form strftime('%Y-%m-%dT%H:%M:%fZ', 'now') writes), so they sort as text.
-- Status names are part of the interface: operators query them, never rename one.

CREATE TABLE tokens (
    address         TEXT PRIMARY KEY NOT NULL,
    chain_id        INTEGER NOT NULL,
    name            TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    payment_asset   TEXT NOT NULL,
    asset_name      TEXT NOT NULL,
    asset_version   TEXT NOT NULL,
    asset_decimals  INTEGER NOT NULL,
    price_per_mint  TEXT NOT NULL,
    mint_amount     TEXT NOT NULL,
    max_mint_count  INTEGER NOT NULL CHECK (max_mint_count >= 0),
    reserved_count  INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT tokens_reserved_within_cap
        CHECK (reserved_count >= 0 AND reserved_count <= max_mint_count)
);

CREATE TABLE payment_queue (
    id              TEXT PRIMARY KEY NOT NULL,
    payment_type    TEXT NOT NULL,
    payer           TEXT NOT NULL,
    amount          TEXT NOT NULL,
    payment_asset   TEXT NOT NULL,
    token_address   TEXT NOT NULL,
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    "authorization" TEXT NOT NULL,
    auth_nonce      TEXT NOT NULL,
    valid_before    INTEGER NOT NULL,  -- the authorization's validBefore (unix s)
    metadata        TEXT NOT NULL DEFAULT '{}',
    status          TEXT NOT NULL DEFAULT 'pending',
    tx_hash         TEXT,
    nonce           INTEGER,
    relayer         TEXT,
    raw_tx          TEXT,
    error           TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    processed_at    TEXT,
    result          TEXT,
    CONSTRAINT payment_queue_status_check CHECK (status IN (
        'pending', 'processing', 'sent', 'completed', 'failed', 'confirmation_failed')),
    CONSTRAINT payment_queue_payer_auth_nonce_key UNIQUE (payer, auth_nonce)
);

CREATE INDEX idx_payment_queue_pending_created
    ON payment_queue (status, created_at)
    WHERE status = 'pending';

CREATE INDEX idx_payment_queue_sent_processed
    ON payment_queue (status, processed_at)
    WHERE status = 'sent';

CREATE INDEX idx_payment_queue_token ON payment_queue (token_address);

CREATE INDEX idx_payment_queue_pending_valid_before
    ON payment_queue (status, valid_before)
    WHERE status = 'pending';

CREATE INDEX idx_payment_queue_relayer_nonce ON payment_queue (relayer, nonce);

-- mark_sent: processing payments by tx hash.
CREATE INDEX idx_payment_queue_processing_tx
    ON payment_queue (tx_hash)
    WHERE status = 'processing';

-- payment_stats: completions of the last minute.
CREATE INDEX idx_payment_queue_completed_updated
    ON payment_queue (updated_at)
    WHERE status = 'completed';

CREATE TABLE mint_queue (
    id               TEXT PRIMARY KEY NOT NULL,
    payment_id       TEXT NOT NULL REFERENCES payment_queue (id),
    payer            TEXT NOT NULL,
    token_address    TEXT NOT NULL,
    mint_id          TEXT NOT NULL,
    payment_tx_hash  TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    tx_hash          TEXT,
    error_message    TEXT,
    nonce            INTEGER,
    relayer          TEXT,
    raw_tx           TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT mint_queue_status_check CHECK (status IN (
        'pending', 'processing', 'sent', 'completed', 'failed')),
    CONSTRAINT mint_queue_mint_id_key UNIQUE (mint_id),
    CONSTRAINT mint_queue_mint_id_format
        CHECK (length(mint_id) = 66 AND mint_id GLOB '0x*'
               AND NOT substr(mint_id, 3) GLOB '*[^0-9a-f]*')
);

CREATE INDEX idx_mint_queue_status_created ON mint_queue (status, created_at);
CREATE INDEX idx_mint_queue_payment ON mint_queue (payment_id);
CREATE INDEX idx_mint_queue_relayer_nonce ON mint_queue (relayer, nonce);
CREATE INDEX idx_mint_queue_tx_hash ON mint_queue (tx_hash);
CREATE INDEX idx_mint_queue_status_updated ON mint_queue (status, updated_at);

CREATE TABLE system_settings (
    name        TEXT PRIMARY KEY NOT NULL,
    value       INTEGER NOT NULL,
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Seed defaults (payfirst.ports.store.DEFAULT_SETTINGS).
INSERT INTO system_settings (name, value) VALUES
    ('payment_batch_size', 50),
    ('payment_batch_interval_ms', 4000),
    ('confirmation_interval_ms', 2000),
    ('confirmation_batch_size', 20),
    ('confirmation_timeout_s', 300),
    ('mint_batch_size', 10),
    ('mint_interval_ms', 3000)
ON CONFLICT (name) DO NOTHING;

CREATE TABLE relayers (
    address     TEXT PRIMARY KEY NOT NULL,
    next_nonce  INTEGER NOT NULL CHECK (next_nonce >= 0),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
