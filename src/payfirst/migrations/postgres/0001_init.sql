-- payfirst schema, version 1 (PostgreSQL).
-- Status names are part of the interface: operators query them, never rename one.

CREATE TABLE tokens (
    address         text PRIMARY KEY,
    chain_id        bigint NOT NULL,
    name            text NOT NULL,
    symbol          text NOT NULL,
    payment_asset   text NOT NULL,
    asset_name      text NOT NULL,
    asset_version   text NOT NULL,
    asset_decimals  integer NOT NULL,
    price_per_mint  numeric(78, 0) NOT NULL CHECK (price_per_mint >= 0),
    mint_amount     numeric(78, 0) NOT NULL CHECK (mint_amount >= 0),
    max_mint_count  bigint NOT NULL CHECK (max_mint_count >= 0),
    reserved_count  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tokens_reserved_within_cap
        CHECK (reserved_count >= 0 AND reserved_count <= max_mint_count)
);

CREATE TABLE payment_queue (
    id              uuid PRIMARY KEY,
    payment_type    text NOT NULL,
    payer           text NOT NULL,
    amount          numeric(78, 0) NOT NULL CHECK (amount >= 0),
    payment_asset   text NOT NULL,
    token_address   text NOT NULL,
    quantity        integer NOT NULL CHECK (quantity > 0),
    "authorization" jsonb NOT NULL,
    auth_nonce      text NOT NULL,
    valid_before    bigint NOT NULL,  -- the authorization's validBefore (unix s)
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'pending',
    tx_hash         text,
    nonce           bigint,
    relayer         text,
    raw_tx          text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    result          jsonb,
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
    id               uuid PRIMARY KEY,
    payment_id       uuid NOT NULL REFERENCES payment_queue (id),
    payer            text NOT NULL,
    token_address    text NOT NULL,
    mint_id          text NOT NULL,
    payment_tx_hash  text NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
    tx_hash          text,
    error_message    text,
    nonce            bigint,
    relayer          text,
    raw_tx           text,
    attempts         integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mint_queue_status_check CHECK (status IN (
        'pending', 'processing', 'sent', 'completed', 'failed')),
    CONSTRAINT mint_queue_mint_id_key UNIQUE (mint_id),
    CONSTRAINT mint_queue_mint_id_format CHECK (mint_id ~ '^0x[0-9a-f]{64}$')
);

CREATE INDEX idx_mint_queue_status_created ON mint_queue (status, created_at);
CREATE INDEX idx_mint_queue_payment ON mint_queue (payment_id);
CREATE INDEX idx_mint_queue_relayer_nonce ON mint_queue (relayer, nonce);
CREATE INDEX idx_mint_queue_tx_hash ON mint_queue (tx_hash);
CREATE INDEX idx_mint_queue_status_updated ON mint_queue (status, updated_at);

CREATE TABLE system_settings (
    name        text PRIMARY KEY,
    value       bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
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
    address     text PRIMARY KEY,
    next_nonce  bigint NOT NULL CHECK (next_nonce >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
