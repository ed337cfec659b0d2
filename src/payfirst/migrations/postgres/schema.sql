-- payfirst's current schema (PostgreSQL): what applying every migration of this folder
-- gives, in one file to read. tests/integration/test_schema_sql.py proves the two equal; a
-- new migration updates this file in the same change. (schema_migrations, the runner's
-- own table, is created by payfirst.adapters.migrate.)
--
-- Rule: PL/pgSQL functions are versioned by name. A changed function gets a new _vN name
-- in a new migration, so during a rolling deploy the old release's processes keep calling
-- the version they know until they stop; a migration of a later release drops the old
-- version. Never CREATE OR REPLACE a function processes call (README.md).
--
-- Table, column and status names are part of the operators' interface: never rename one.

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
    idempotency_key text,  -- the client's payment id (Idempotency-Key, payment-identifier)
    -- The chain it settles on; NULL: the default network (the legacy single chain).
    chain_id        bigint,
    -- Ledger (0011): the provider a platform-collected payment is for, and the platform's
    -- fee in basis points, both fixed when it is accepted (no FK: see ledger_accounts).
    provider_id     uuid,
    fee_bps         integer,
    -- The provider's endpoint it paid for (0012; no FK: the hot table never waits on it).
    endpoint_id     uuid,
    CONSTRAINT payment_queue_status_check CHECK (status IN (
        'pending', 'processing', 'sent', 'completed', 'failed', 'confirmation_failed',
        'awaiting_approval')),
    CONSTRAINT payment_queue_payer_auth_nonce_key UNIQUE (payer, auth_nonce),
    CONSTRAINT payment_queue_fee_bps_check CHECK (fee_bps BETWEEN 0 AND 10000),
    CONSTRAINT payment_queue_provider_fee_check CHECK (provider_id IS NULL OR fee_bps IS NOT NULL)
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

CREATE UNIQUE INDEX payment_queue_payer_idempotency_key
    ON payment_queue (payer, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- A network's worker claims its pending payments.
CREATE INDEX idx_payment_queue_pending_chain
    ON payment_queue (chain_id, created_at)
    WHERE status = 'pending';

-- The default network's payments (no chain yet), adopted at every start-up: finding none
-- must not scan the table.
CREATE INDEX idx_payment_queue_no_chain ON payment_queue (id) WHERE chain_id IS NULL;

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

-- Runtime settings an operator set; the defaults live in code
-- (payfirst.domain.settings.RuntimeSettings).
CREATE TABLE system_settings (
    name        text PRIMARY KEY,
    value       bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Relayer state is per network: one key relays on several chains with independent nonces.
-- chain_id 0: the default network (the legacy single chain), until its worker re-keys the
-- rows to the chain id it reads (PostgresStore.adopt_default_chain).
CREATE TABLE relayers (
    address     text NOT NULL,
    next_nonce  bigint NOT NULL CHECK (next_nonce >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    chain_id    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, address)
);

-- Relayer leases: a worker holds a relayer key by a lease it renews; a dead worker's
-- lease expires and another worker takes the key over.
CREATE TABLE relayer_leases (
    address     text NOT NULL,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    chain_id    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, address)
);

-- Every tx payfirst signed for a relayer nonce once it signed more than one for it (a
-- fee-bumped replacement: same nonce, higher fees). The rows of payment_queue and
-- mint_queue carry the newest; any of these may be the one mined, so the confirmer reads
-- the receipts of all of them. (tx_hash is the key across chains: a signed tx commits to
-- its chain id.)
CREATE TABLE relayer_txs (
    tx_hash     text PRIMARY KEY,
    relayer     text NOT NULL,
    nonce       bigint NOT NULL,
    raw_tx      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    chain_id    bigint NOT NULL DEFAULT 0
);

CREATE INDEX idx_relayer_txs_chain_relayer_nonce ON relayer_txs (chain_id, relayer, nonce);

-- payfirst_queue_payment(s)_v1 are superseded by their _v2 (0009, below), which record the
-- payment's chain; kept for the previous release's processes during a rolling deploy
-- (their rows get chain_id NULL: the default network). A later release drops them.

-- The accept path's whole transaction as one function, so queueing a payment costs one
-- round trip: insert (a concurrent identical insert waits on the unique keys), then for a
-- mint reserve supply under the cap; a sold-out or unknown token undoes the insert.
-- An authorization already queued matches a new request only when it is the same purchase:
-- the same signed authorization AND the same payment type, token (or payee), asset and
-- quantity; anything else re-using the (payer, nonce) is refused (nonce_reused).
-- Outcomes: created, duplicate (same purchase, its id returned), nonce_reused,
-- idempotency_conflict, sold_out, unknown_token.
CREATE FUNCTION payfirst_queue_payment_v1(
    p_id uuid, p_payment_type text, p_payer text, p_amount numeric, p_payment_asset text,
    p_token_address text, p_quantity integer, p_authorization jsonb, p_auth_nonce text,
    p_metadata jsonb, p_valid_before bigint, p_idempotency_key text
) RETURNS TABLE (payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_existing payment_queue%ROWTYPE;
BEGIN
    INSERT INTO payment_queue (
        id, payment_type, payer, amount, payment_asset, token_address, quantity,
        "authorization", auth_nonce, metadata, valid_before, status, idempotency_key
    ) VALUES (
        p_id, p_payment_type, p_payer, p_amount, p_payment_asset, p_token_address, p_quantity,
        p_authorization, p_auth_nonce, p_metadata, p_valid_before, 'pending', p_idempotency_key
    )
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        SELECT q.* INTO v_existing
          FROM payment_queue q
         WHERE q.payer = p_payer AND q.auth_nonce = p_auth_nonce;
        IF v_existing.id IS NULL THEN
            -- Not the authorization: the payer's idempotency key is taken by another one.
            SELECT q.id INTO v_id
              FROM payment_queue q
             WHERE q.payer = p_payer AND q.idempotency_key = p_idempotency_key;
            RETURN QUERY SELECT v_id, 'idempotency_conflict'::text;
        ELSIF v_existing."authorization" = p_authorization
              AND v_existing.payment_type = p_payment_type
              AND v_existing.token_address = p_token_address
              AND v_existing.payment_asset = p_payment_asset
              AND v_existing.quantity = p_quantity THEN
            RETURN QUERY SELECT v_existing.id, 'duplicate'::text;
        ELSE
            RETURN QUERY SELECT v_existing.id, 'nonce_reused'::text;
        END IF;
        RETURN;
    END IF;

    IF p_payment_type = 'mint' THEN
        UPDATE tokens
           SET reserved_count = reserved_count + p_quantity, updated_at = now()
         WHERE address = p_token_address AND reserved_count + p_quantity <= max_mint_count;
        IF NOT FOUND THEN
            DELETE FROM payment_queue WHERE id = v_id;
            IF EXISTS (SELECT 1 FROM tokens WHERE address = p_token_address) THEN
                RETURN QUERY SELECT NULL::uuid, 'sold_out'::text;
            ELSE
                RETURN QUERY SELECT NULL::uuid, 'unknown_token'::text;
            END IF;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_id, 'created'::text;
END;
$$;

-- Many payments in one round trip (the API coalesces the requests that arrive in one
-- event-loop turn). Each is decided exactly as payfirst_queue_payment_v1 decides it, in order.
CREATE FUNCTION payfirst_queue_payments_v1(
    p_ids uuid[], p_payment_types text[], p_payers text[], p_amounts numeric[],
    p_payment_assets text[], p_token_addresses text[], p_quantities integer[],
    p_authorizations jsonb[], p_auth_nonces text[], p_metadata jsonb[], p_valid_befores bigint[],
    p_idempotency_keys text[]
) RETURNS TABLE (idx integer, payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        RETURN QUERY
            SELECT i, q.payment_id, q.outcome
              FROM payfirst_queue_payment_v1(
                  p_ids[i], p_payment_types[i], p_payers[i], p_amounts[i], p_payment_assets[i],
                  p_token_addresses[i], p_quantities[i], p_authorizations[i], p_auth_nonces[i],
                  p_metadata[i], p_valid_befores[i], p_idempotency_keys[i]
              ) AS q;
    END LOOP;
END;
$$;

-- payfirst_queue_payment_v1 with the payment's chain id (a mint's defaults to its token's).
-- An authorization already queued is the same purchase only on the same chain (a row of
-- unknown chain, queued by the previous release, matches any).
CREATE FUNCTION payfirst_queue_payment_v2(
    p_id uuid, p_payment_type text, p_payer text, p_amount numeric, p_payment_asset text,
    p_token_address text, p_quantity integer, p_authorization jsonb, p_auth_nonce text,
    p_metadata jsonb, p_valid_before bigint, p_idempotency_key text, p_chain_id bigint
) RETURNS TABLE (payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_chain_id bigint := p_chain_id;
    v_existing payment_queue%ROWTYPE;
BEGIN
    IF v_chain_id IS NULL AND p_payment_type = 'mint' THEN
        SELECT t.chain_id INTO v_chain_id FROM tokens t WHERE t.address = p_token_address;
    END IF;

    INSERT INTO payment_queue (
        id, payment_type, payer, amount, payment_asset, token_address, quantity,
        "authorization", auth_nonce, metadata, valid_before, status, idempotency_key, chain_id
    ) VALUES (
        p_id, p_payment_type, p_payer, p_amount, p_payment_asset, p_token_address, p_quantity,
        p_authorization, p_auth_nonce, p_metadata, p_valid_before, 'pending', p_idempotency_key,
        v_chain_id
    )
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        SELECT q.* INTO v_existing
          FROM payment_queue q
         WHERE q.payer = p_payer AND q.auth_nonce = p_auth_nonce;
        IF v_existing.id IS NULL THEN
            -- Not the authorization: the payer's idempotency key is taken by another one.
            SELECT q.id INTO v_id
              FROM payment_queue q
             WHERE q.payer = p_payer AND q.idempotency_key = p_idempotency_key;
            RETURN QUERY SELECT v_id, 'idempotency_conflict'::text;
        ELSIF v_existing."authorization" = p_authorization
              AND v_existing.payment_type = p_payment_type
              AND v_existing.token_address = p_token_address
              AND v_existing.payment_asset = p_payment_asset
              AND v_existing.quantity = p_quantity
              AND (v_existing.chain_id IS NULL OR v_chain_id IS NULL
                   OR v_existing.chain_id = v_chain_id) THEN
            RETURN QUERY SELECT v_existing.id, 'duplicate'::text;
        ELSE
            RETURN QUERY SELECT v_existing.id, 'nonce_reused'::text;
        END IF;
        RETURN;
    END IF;

    IF p_payment_type = 'mint' THEN
        UPDATE tokens
           SET reserved_count = reserved_count + p_quantity, updated_at = now()
         WHERE address = p_token_address AND reserved_count + p_quantity <= max_mint_count;
        IF NOT FOUND THEN
            DELETE FROM payment_queue WHERE id = v_id;
            IF EXISTS (SELECT 1 FROM tokens WHERE address = p_token_address) THEN
                RETURN QUERY SELECT NULL::uuid, 'sold_out'::text;
            ELSE
                RETURN QUERY SELECT NULL::uuid, 'unknown_token'::text;
            END IF;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_id, 'created'::text;
END;
$$;

CREATE FUNCTION payfirst_queue_payments_v2(
    p_ids uuid[], p_payment_types text[], p_payers text[], p_amounts numeric[],
    p_payment_assets text[], p_token_addresses text[], p_quantities integer[],
    p_authorizations jsonb[], p_auth_nonces text[], p_metadata jsonb[], p_valid_befores bigint[],
    p_idempotency_keys text[], p_chain_ids bigint[]
) RETURNS TABLE (idx integer, payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        RETURN QUERY
            SELECT i, q.payment_id, q.outcome
              FROM payfirst_queue_payment_v2(
                  p_ids[i], p_payment_types[i], p_payers[i], p_amounts[i], p_payment_assets[i],
                  p_token_addresses[i], p_quantities[i], p_authorizations[i], p_auth_nonces[i],
                  p_metadata[i], p_valid_befores[i], p_idempotency_keys[i], p_chain_ids[i]
              ) AS q;
    END LOOP;
END;
$$;

-- Wake workers the moment a payment is queued (delivered on commit, one per transaction).
CREATE FUNCTION payfirst_notify_payment_queued_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payfirst_payment_queued', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER payment_queued_notify
    AFTER INSERT ON payment_queue
    FOR EACH STATEMENT EXECUTE FUNCTION payfirst_notify_payment_queued_v1();

-- A notice per payment whose status (or whose mint items' status) changed, delivered on
-- commit (mint items are created in the transaction that completes their payment, so
-- inserts need no notice of their own): API processes wake the clients waiting on that
-- payment (long-poll, SSE, /settle) instead of polling. The payload is the payment id; a
-- transaction sends each id once.
CREATE FUNCTION payfirst_notify_payment_changed_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'mint_queue' THEN
        PERFORM pg_notify('payfirst_payment_changed', NEW.payment_id::text);
    ELSE
        PERFORM pg_notify('payfirst_payment_changed', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER payment_changed_notify
    AFTER UPDATE OF status ON payment_queue
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION payfirst_notify_payment_changed_v1();

CREATE TRIGGER mint_changed_notify
    AFTER UPDATE OF status ON mint_queue
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION payfirst_notify_payment_changed_v1();

-- Superseded by their _v1 (0008), kept for the previous release's processes during a
-- rolling deploy; a later release drops them. Nothing of this release calls them.
CREATE FUNCTION payfirst_queue_payment(
    p_id uuid, p_payment_type text, p_payer text, p_amount numeric, p_payment_asset text,
    p_token_address text, p_quantity integer, p_authorization jsonb, p_auth_nonce text,
    p_metadata jsonb, p_valid_before bigint, p_idempotency_key text
) RETURNS TABLE (payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_existing payment_queue%ROWTYPE;
BEGIN
    INSERT INTO payment_queue (
        id, payment_type, payer, amount, payment_asset, token_address, quantity,
        "authorization", auth_nonce, metadata, valid_before, status, idempotency_key
    ) VALUES (
        p_id, p_payment_type, p_payer, p_amount, p_payment_asset, p_token_address, p_quantity,
        p_authorization, p_auth_nonce, p_metadata, p_valid_before, 'pending', p_idempotency_key
    )
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        SELECT q.* INTO v_existing
          FROM payment_queue q
         WHERE q.payer = p_payer AND q.auth_nonce = p_auth_nonce;
        IF v_existing.id IS NULL THEN
            -- Not the authorization: the payer's idempotency key is taken by another one.
            SELECT q.id INTO v_id
              FROM payment_queue q
             WHERE q.payer = p_payer AND q.idempotency_key = p_idempotency_key;
            RETURN QUERY SELECT v_id, 'idempotency_conflict'::text;
        ELSIF v_existing."authorization" = p_authorization
              AND v_existing.payment_type = p_payment_type
              AND v_existing.token_address = p_token_address
              AND v_existing.payment_asset = p_payment_asset
              AND v_existing.quantity = p_quantity THEN
            RETURN QUERY SELECT v_existing.id, 'duplicate'::text;
        ELSE
            RETURN QUERY SELECT v_existing.id, 'nonce_reused'::text;
        END IF;
        RETURN;
    END IF;

    IF p_payment_type = 'mint' THEN
        UPDATE tokens
           SET reserved_count = reserved_count + p_quantity, updated_at = now()
         WHERE address = p_token_address AND reserved_count + p_quantity <= max_mint_count;
        IF NOT FOUND THEN
            DELETE FROM payment_queue WHERE id = v_id;
            IF EXISTS (SELECT 1 FROM tokens WHERE address = p_token_address) THEN
                RETURN QUERY SELECT NULL::uuid, 'sold_out'::text;
            ELSE
                RETURN QUERY SELECT NULL::uuid, 'unknown_token'::text;
            END IF;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_id, 'created'::text;
END;
$$;

CREATE FUNCTION payfirst_queue_payments(
    p_ids uuid[], p_payment_types text[], p_payers text[], p_amounts numeric[],
    p_payment_assets text[], p_token_addresses text[], p_quantities integer[],
    p_authorizations jsonb[], p_auth_nonces text[], p_metadata jsonb[], p_valid_befores bigint[],
    p_idempotency_keys text[]
) RETURNS TABLE (idx integer, payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        RETURN QUERY
            SELECT i, q.payment_id, q.outcome
              FROM payfirst_queue_payment(
                  p_ids[i], p_payment_types[i], p_payers[i], p_amounts[i], p_payment_assets[i],
                  p_token_addresses[i], p_quantities[i], p_authorizations[i], p_auth_nonces[i],
                  p_metadata[i], p_valid_befores[i], p_idempotency_keys[i]
              ) AS q;
    END LOOP;
END;
$$;

-- Accounts and API keys (0010): who may call the admin routes (/v1/...). A key is stored as
-- its visible prefix and the SHA-256 of the whole key, never the key itself
-- (payfirst.usecases.api_keys); a revoked account's keys stop working with it. fee_bps and
-- payout_address are a provider's terms.
CREATE TABLE accounts (
    id              uuid PRIMARY KEY,
    role            text NOT NULL,
    name            text NOT NULL,
    fee_bps         integer,
    payout_address  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    payout_threshold   numeric(78, 0),
    payout_interval_s  integer,
    CONSTRAINT accounts_role_check CHECK (role IN ('operator', 'provider', 'agent')),
    CONSTRAINT accounts_name_check CHECK (char_length(name) BETWEEN 1 AND 100),
    CONSTRAINT accounts_fee_bps_check CHECK (fee_bps BETWEEN 0 AND 10000),
    CONSTRAINT accounts_payout_threshold_check CHECK (payout_threshold > 0),
    CONSTRAINT accounts_payout_interval_check CHECK (payout_interval_s BETWEEN 60 AND 31622400)
);

CREATE INDEX idx_accounts_created ON accounts (created_at, id);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    account_id    uuid NOT NULL REFERENCES accounts (id),
    prefix        text NOT NULL,
    secret_hash   bytea NOT NULL,
    name          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix),
    CONSTRAINT api_keys_secret_hash_check CHECK (octet_length(secret_hash) = 32),
    CONSTRAINT api_keys_name_check CHECK (char_length(name) <= 100)
);

CREATE INDEX idx_api_keys_account_created ON api_keys (account_id, created_at, id);

-- Ledger (0011): a double-entry ledger (payfirst.domain.ledger). A ledger transaction per
-- completed payment, written in the database transaction that completes it; its entries sum
-- to zero (checked by the statement that writes them); append-only (a reversal is a new
-- transaction).
-- kind external: an on-chain address (owner: EIP-55); provider: money the treasury holds
-- for a provider (owner: the provider's id); fees: the platform's (owner: 'platform').
CREATE TABLE ledger_accounts (
    id        bigserial PRIMARY KEY,
    kind      text NOT NULL,
    owner     text NOT NULL,
    asset     text NOT NULL,
    chain_id  bigint NOT NULL,
    CONSTRAINT ledger_accounts_kind_check CHECK (kind IN ('external', 'provider', 'fees')),
    CONSTRAINT ledger_accounts_key UNIQUE (kind, owner, asset, chain_id)
);

-- A payment is recorded once and reversed at most once (payment_id, kind).
CREATE TABLE ledger_transactions (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL,
    payment_id  uuid REFERENCES payment_queue (id),
    reverses    uuid REFERENCES ledger_transactions (id),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    payout_id   uuid,
    CONSTRAINT ledger_transactions_kind_check CHECK (kind IN ('payment', 'reversal', 'payout')),
    CONSTRAINT ledger_transactions_payment_kind_key UNIQUE (payment_id, kind),
    CONSTRAINT ledger_transactions_of_a_payment
        CHECK (kind = 'payout' OR payment_id IS NOT NULL),
    CONSTRAINT ledger_transactions_reversal_reverses
        CHECK ((kind = 'reversal') = (reverses IS NOT NULL)),
    CONSTRAINT ledger_transactions_payout_key UNIQUE (payout_id),
    CONSTRAINT ledger_transactions_payout_kind_check CHECK (payout_id IS NULL OR kind = 'payout')
);

-- An entry is (its transaction, its position in it): no sequence, one index fewer. Its
-- references are checked per statement by ledger_entries_checked (below) rather than by
-- foreign keys: a key check per row costs the confirmer's completions as much again.
CREATE TABLE ledger_entries (
    transaction_id  uuid NOT NULL,
    position        integer NOT NULL,
    account_id      bigint NOT NULL,
    amount          numeric(78, 0) NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transaction_id, position),
    CONSTRAINT ledger_entries_amount_check CHECK (amount <> 0)
);

CREATE INDEX idx_ledger_entries_account ON ledger_entries (account_id);

-- Append-only: an account, a transaction or an entry is never changed or removed.
CREATE FUNCTION payfirst_ledger_append_only_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused (reverse with new entries)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION payfirst_ledger_append_only_v1();

CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION payfirst_ledger_append_only_v1();

CREATE TRIGGER ledger_accounts_append_only
    BEFORE UPDATE OR DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION payfirst_ledger_append_only_v1();

-- TRUNCATE too, unless the session says it means it (a deliberate wipe, such as a test's
-- reset: SET LOCAL payfirst.allow_ledger_truncate = 'on').
CREATE FUNCTION payfirst_ledger_no_truncate_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('payfirst.allow_ledger_truncate', true), '') <> 'on' THEN
        RAISE EXCEPTION 'the ledger is append-only: TRUNCATE on % refused', TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION payfirst_ledger_no_truncate_v1();

CREATE TRIGGER ledger_transactions_no_truncate
    BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION payfirst_ledger_no_truncate_v1();

CREATE TRIGGER ledger_accounts_no_truncate
    BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION payfirst_ledger_no_truncate_v1();

-- Each INSERT into ledger_entries must refer to existing transactions and accounts (both
-- append-only, so they stay), write all of each transaction's entries (none may be added to
-- a transaction that has entries from an earlier statement), and leave every transaction
-- it wrote to balanced: per asset and chain, its entries sum to zero (-100 USDC on one
-- chain is not balanced by +100 of another asset or chain). Checked once per statement,
-- set-based: a per-row (deferred constraint) trigger and per-row key checks cost a query
-- per entry, too much for the confirmer's completions of hundreds at once.
CREATE FUNCTION payfirst_ledger_entries_check_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_asset text;
    v_chain bigint;
    v_sum numeric;
BEGIN
    IF EXISTS (
        SELECT 1 FROM new_entries n
         WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = n.transaction_id)
            OR NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = n.account_id)) THEN
        RAISE EXCEPTION 'ledger entries refer to a transaction or an account that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT e.transaction_id INTO v_id
      FROM ledger_entries e
     WHERE e.transaction_id IN (SELECT transaction_id FROM new_entries)
       AND NOT EXISTS (
           SELECT 1 FROM new_entries n
            WHERE n.transaction_id = e.transaction_id AND n.position = e.position)
     LIMIT 1;
    IF v_id IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % already has entries: they are written at once',
            v_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    SELECT n.transaction_id, a.asset, a.chain_id, sum(n.amount)
      INTO v_id, v_asset, v_chain, v_sum
      FROM new_entries n
      JOIN ledger_accounts a ON a.id = n.account_id
     GROUP BY n.transaction_id, a.asset, a.chain_id
    HAVING sum(n.amount) <> 0
     LIMIT 1;
    IF v_id IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its entries of % on chain % sum to %',
            v_id, v_asset, v_chain, v_sum
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_entries_checked
    AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION payfirst_ledger_entries_check_v1();

-- Providers' paid endpoints (payfirst.domain.endpoints): what payfirst sells for them, at
-- the price this registry says, never the client's or the provider's word at payment time.
-- `resource` is a path pattern ('/weather/{city}') or a full URL; `method` '*' is any.
-- A fixed price is `amount` per call; a per-unit one is `amount` per unit, the count read
-- from the request's `unit_param` (1..max_units). An endpoint is never deleted, only
-- disabled: payments and ledger entries keep pointing at it.
CREATE TABLE endpoints (
    id                   uuid PRIMARY KEY,
    provider_id          uuid NOT NULL REFERENCES accounts (id),
    method               text NOT NULL,
    resource             text NOT NULL,
    pricing              text NOT NULL DEFAULT 'fixed',
    amount               numeric(78, 0) NOT NULL,
    unit_param           text,
    max_units            integer,
    asset                text NOT NULL,
    chain_id             bigint NOT NULL,
    pay_to               text NOT NULL,
    description          text NOT NULL DEFAULT '',
    mime_type            text NOT NULL DEFAULT 'application/json',
    input_schema         jsonb,
    output_schema        jsonb,
    discoverable         boolean NOT NULL DEFAULT false,
    max_timeout_seconds  integer NOT NULL DEFAULT 300,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    disabled_at          timestamptz,
    CONSTRAINT endpoints_method_check
        CHECK (method IN ('*', 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')),
    CONSTRAINT endpoints_resource_check CHECK (char_length(resource) BETWEEN 1 AND 512),
    CONSTRAINT endpoints_pricing_check CHECK (
        (pricing = 'fixed' AND unit_param IS NULL AND max_units IS NULL)
        OR (pricing = 'per_unit' AND unit_param IS NOT NULL AND max_units >= 1)),
    CONSTRAINT endpoints_amount_check CHECK (amount > 0),
    CONSTRAINT endpoints_description_check CHECK (char_length(description) <= 1000),
    CONSTRAINT endpoints_max_timeout_check CHECK (max_timeout_seconds BETWEEN 1 AND 86400)
);

-- A provider's endpoints by page; the discoverable ones (Bazaar) by page.
CREATE INDEX idx_endpoints_provider_created ON endpoints (provider_id, created_at, id);
CREATE INDEX idx_endpoints_discoverable ON endpoints (created_at, id)
    WHERE discoverable AND disabled_at IS NULL;

-- A provider's payments by page: by the provider a platform-collected payment is for, and
-- by the endpoint paid for.
CREATE INDEX idx_payment_queue_provider_created ON payment_queue (provider_id, created_at, id)
    WHERE provider_id IS NOT NULL;
CREATE INDEX idx_payment_queue_endpoint_created ON payment_queue (endpoint_id, created_at, id)
    WHERE endpoint_id IS NOT NULL;

-- payfirst_queue_payment_v2 with what a payment to a provider's paid endpoint records,
-- fixed when it is accepted: the endpoint paid for and, when the platform collects (payTo is
-- the network's treasury), the provider credited and the fee in basis points
-- (payfirst.domain.ledger splits it at completion). An authorization already queued is the
-- same purchase only for the same endpoint (or none, both).
CREATE FUNCTION payfirst_queue_payment_v3(
    p_id uuid, p_payment_type text, p_payer text, p_amount numeric, p_payment_asset text,
    p_token_address text, p_quantity integer, p_authorization jsonb, p_auth_nonce text,
    p_metadata jsonb, p_valid_before bigint, p_idempotency_key text, p_chain_id bigint,
    p_provider_id uuid, p_fee_bps integer, p_endpoint_id uuid
) RETURNS TABLE (payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_chain_id bigint := p_chain_id;
    v_existing payment_queue%ROWTYPE;
BEGIN
    IF v_chain_id IS NULL AND p_payment_type = 'mint' THEN
        SELECT t.chain_id INTO v_chain_id FROM tokens t WHERE t.address = p_token_address;
    END IF;

    INSERT INTO payment_queue (
        id, payment_type, payer, amount, payment_asset, token_address, quantity,
        "authorization", auth_nonce, metadata, valid_before, status, idempotency_key, chain_id,
        provider_id, fee_bps, endpoint_id
    ) VALUES (
        p_id, p_payment_type, p_payer, p_amount, p_payment_asset, p_token_address, p_quantity,
        p_authorization, p_auth_nonce, p_metadata, p_valid_before, 'pending', p_idempotency_key,
        v_chain_id, p_provider_id, p_fee_bps, p_endpoint_id
    )
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        SELECT q.* INTO v_existing
          FROM payment_queue q
         WHERE q.payer = p_payer AND q.auth_nonce = p_auth_nonce;
        IF v_existing.id IS NULL THEN
            -- Not the authorization: the payer's idempotency key is taken by another one.
            SELECT q.id INTO v_id
              FROM payment_queue q
             WHERE q.payer = p_payer AND q.idempotency_key = p_idempotency_key;
            RETURN QUERY SELECT v_id, 'idempotency_conflict'::text;
        ELSIF v_existing."authorization" = p_authorization
              AND v_existing.payment_type = p_payment_type
              AND v_existing.token_address = p_token_address
              AND v_existing.payment_asset = p_payment_asset
              AND v_existing.quantity = p_quantity
              AND v_existing.endpoint_id IS NOT DISTINCT FROM p_endpoint_id
              AND (v_existing.chain_id IS NULL OR v_chain_id IS NULL
                   OR v_existing.chain_id = v_chain_id) THEN
            RETURN QUERY SELECT v_existing.id, 'duplicate'::text;
        ELSE
            RETURN QUERY SELECT v_existing.id, 'nonce_reused'::text;
        END IF;
        RETURN;
    END IF;

    IF p_payment_type = 'mint' THEN
        UPDATE tokens
           SET reserved_count = reserved_count + p_quantity, updated_at = now()
         WHERE address = p_token_address AND reserved_count + p_quantity <= max_mint_count;
        IF NOT FOUND THEN
            DELETE FROM payment_queue WHERE id = v_id;
            IF EXISTS (SELECT 1 FROM tokens WHERE address = p_token_address) THEN
                RETURN QUERY SELECT NULL::uuid, 'sold_out'::text;
            ELSE
                RETURN QUERY SELECT NULL::uuid, 'unknown_token'::text;
            END IF;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT v_id, 'created'::text;
END;
$$;

CREATE FUNCTION payfirst_queue_payments_v3(
    p_ids uuid[], p_payment_types text[], p_payers text[], p_amounts numeric[],
    p_payment_assets text[], p_token_addresses text[], p_quantities integer[],
    p_authorizations jsonb[], p_auth_nonces text[], p_metadata jsonb[], p_valid_befores bigint[],
    p_idempotency_keys text[], p_chain_ids bigint[], p_provider_ids uuid[], p_fee_bpss integer[],
    p_endpoint_ids uuid[]
) RETURNS TABLE (idx integer, payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        RETURN QUERY
            SELECT i, q.payment_id, q.outcome
              FROM payfirst_queue_payment_v3(
                  p_ids[i], p_payment_types[i], p_payers[i], p_amounts[i], p_payment_assets[i],
                  p_token_addresses[i], p_quantities[i], p_authorizations[i], p_auth_nonces[i],
                  p_metadata[i], p_valid_befores[i], p_idempotency_keys[i], p_chain_ids[i],
                  p_provider_ids[i], p_fee_bpss[i], p_endpoint_ids[i]
              ) AS q;
    END LOOP;
END;
$$;

-- 0014: payouts (payfirst.domain.payouts); a payout's ledger transaction is ledger_transactions.payout_id.
CREATE TABLE payouts (
    id            uuid PRIMARY KEY,
    provider_id   uuid NOT NULL REFERENCES accounts (id),
    asset         text NOT NULL,
    chain_id      bigint NOT NULL,
    to_address    text NOT NULL,
    amount        numeric(78, 0) NOT NULL,
    status        text NOT NULL DEFAULT 'pending',
    trigger       text NOT NULL,
    relayer       text,
    nonce         bigint,
    tx_hash       text,
    raw_tx        text,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CONSTRAINT payouts_amount_check CHECK (amount > 0),
    CONSTRAINT payouts_status_check
        CHECK (status IN ('pending', 'processing', 'sent', 'completed', 'failed')),
    CONSTRAINT payouts_trigger_check CHECK (trigger IN ('on_demand', 'threshold', 'schedule')),
    CONSTRAINT payouts_signed_check CHECK (
        status = 'pending'
        OR (relayer IS NOT NULL AND nonce IS NOT NULL AND tx_hash IS NOT NULL
            AND raw_tx IS NOT NULL))
);

CREATE INDEX idx_payouts_provider_created ON payouts (provider_id, created_at, id);
CREATE INDEX idx_payouts_open ON payouts (chain_id, status, created_at)
    WHERE status IN ('pending', 'processing', 'sent');
CREATE INDEX idx_payouts_relayer_nonce ON payouts (relayer, chain_id, nonce)
    WHERE raw_tx IS NOT NULL;

ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_payout_id_fkey
    FOREIGN KEY (payout_id) REFERENCES payouts (id);

-- 0015: agents' payers and spending policies.
-- Agents' payer addresses and their spending policies (payfirst.domain.policies), enforced
-- when a payment is queued: payfirst_queue_payment_v4 locks the payer's policy row and sums
-- the payer's payments of the asset in the same transaction as the insert, so concurrent
-- payments take turns and never exceed a limit together. A payment above the policy's
-- approval threshold is queued `awaiting_approval`: the sender never claims it until its
-- owner approves it (`pending`) or rejects it (`failed`).

-- A payer's payments over a window (its policy's day and month limits).
CREATE INDEX idx_payment_queue_payer_created ON payment_queue (payer, created_at);

-- Payments waiting for their owner's approval (few), and those whose authorization expires.
CREATE INDEX idx_payment_queue_awaiting_approval
    ON payment_queue (chain_id, valid_before)
    WHERE status = 'awaiting_approval';

-- A payer address (EIP-55) an agent account proved it controls; one agent at most.
CREATE TABLE agent_payers (
    address      text PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id),
    verified_at  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_agent_payers_account ON agent_payers (account_id, address);

-- The messages an agent signs with a payer key to prove it controls it; each used once.
CREATE TABLE payer_challenges (
    nonce        text PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id),
    address      text NOT NULL,
    message      text NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_payer_challenges_open
    ON payer_challenges (account_id, address, expires_at)
    WHERE used_at IS NULL;

-- A payer's policy. Amount limits are jsonb objects: asset address (EIP-55) or "*" (every
-- asset) -> atomic units as a string; NULL: no limit. An allow-list NULL: anything.
CREATE TABLE spending_policies (
    payer               text PRIMARY KEY REFERENCES agent_payers (address) ON DELETE CASCADE,
    max_per_payment     jsonb,
    max_per_day         jsonb,
    max_per_month       jsonb,
    approval_threshold  jsonb,
    allowed_providers   uuid[],
    allowed_endpoints   uuid[],
    allowed_pay_to      text[],
    allowed_networks    bigint[],
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Every API process caches policies; a change tells them all at once (payload: the payer).
CREATE FUNCTION payfirst_notify_policy_changed_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_row jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_row := to_jsonb(OLD);
    ELSE
        v_row := to_jsonb(NEW);
    END IF;
    PERFORM pg_notify('payfirst_policy_changed', coalesce(v_row->>'payer', v_row->>'address'));
    RETURN NULL;
END;
$$;

CREATE TRIGGER spending_policies_changed_notify
    AFTER INSERT OR UPDATE OR DELETE ON spending_policies
    FOR EACH ROW EXECUTE FUNCTION payfirst_notify_policy_changed_v1();

CREATE TRIGGER agent_payers_changed_notify
    AFTER INSERT OR UPDATE OR DELETE ON agent_payers
    FOR EACH ROW EXECUTE FUNCTION payfirst_notify_policy_changed_v1();

-- A limit of a policy for an asset: its own, else the "*" one, else p_default (NULL limits:
-- no limit at all).
CREATE FUNCTION payfirst_policy_amount_v1(p_limits jsonb, p_asset text, p_default numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_limits IS NULL THEN NULL
        ELSE coalesce((p_limits->>p_asset)::numeric, (p_limits->>'*')::numeric, p_default)
    END;
$$;

-- payfirst_queue_payment_v3 with the payer's spending policy. Without one the extra work is
-- one primary-key lookup. With one, its row is locked until commit (payments of one payer
-- take turns), the payment is inserted as v3 does and then, before any supply is reserved,
-- refused (and removed) when it breaks the policy: 'policy_not_allowed',
-- 'policy_max_per_payment', 'policy_daily_limit' (rolling 24 h) or 'policy_monthly_limit'
-- (calendar month, UTC), counting every payment of the payer in that asset that did not
-- fail. Above the approval threshold it is queued 'awaiting_approval' (outcome 'held').
CREATE FUNCTION payfirst_queue_payment_v4(
    p_id uuid, p_payment_type text, p_payer text, p_amount numeric, p_payment_asset text,
    p_token_address text, p_quantity integer, p_authorization jsonb, p_auth_nonce text,
    p_metadata jsonb, p_valid_before bigint, p_idempotency_key text, p_chain_id bigint,
    p_provider_id uuid, p_fee_bps integer, p_endpoint_id uuid
) RETURNS TABLE (payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_chain_id bigint := p_chain_id;
    v_existing payment_queue%ROWTYPE;
    v_policy spending_policies%ROWTYPE;
    v_status text := 'pending';
    v_provider uuid;
    v_limit numeric;
    v_day numeric;
    v_month numeric;
    v_month_start timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    v_refusal text;
BEGIN
    IF v_chain_id IS NULL AND p_payment_type = 'mint' THEN
        SELECT t.chain_id INTO v_chain_id FROM tokens t WHERE t.address = p_token_address;
    END IF;

    SELECT sp.* INTO v_policy FROM spending_policies sp WHERE sp.payer = p_payer FOR UPDATE;
    IF v_policy.payer IS NOT NULL
       AND p_amount > payfirst_policy_amount_v1(v_policy.approval_threshold, p_payment_asset, NULL)
    THEN
        v_status := 'awaiting_approval';
    END IF;

    INSERT INTO payment_queue (
        id, payment_type, payer, amount, payment_asset, token_address, quantity,
        "authorization", auth_nonce, metadata, valid_before, status, idempotency_key, chain_id,
        provider_id, fee_bps, endpoint_id
    ) VALUES (
        p_id, p_payment_type, p_payer, p_amount, p_payment_asset, p_token_address, p_quantity,
        p_authorization, p_auth_nonce, p_metadata, p_valid_before, v_status, p_idempotency_key,
        v_chain_id, p_provider_id, p_fee_bps, p_endpoint_id
    )
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;

    IF v_id IS NULL THEN
        SELECT q.* INTO v_existing
          FROM payment_queue q
         WHERE q.payer = p_payer AND q.auth_nonce = p_auth_nonce;
        IF v_existing.id IS NULL THEN
            SELECT q.id INTO v_id
              FROM payment_queue q
             WHERE q.payer = p_payer AND q.idempotency_key = p_idempotency_key;
            RETURN QUERY SELECT v_id, 'idempotency_conflict'::text;
        ELSIF v_existing."authorization" = p_authorization
              AND v_existing.payment_type = p_payment_type
              AND v_existing.token_address = p_token_address
              AND v_existing.payment_asset = p_payment_asset
              AND v_existing.quantity = p_quantity
              AND v_existing.endpoint_id IS NOT DISTINCT FROM p_endpoint_id
              AND (v_existing.chain_id IS NULL OR v_chain_id IS NULL
                   OR v_existing.chain_id = v_chain_id) THEN
            RETURN QUERY SELECT v_existing.id, 'duplicate'::text;
        ELSE
            RETURN QUERY SELECT v_existing.id, 'nonce_reused'::text;
        END IF;
        RETURN;
    END IF;

    IF v_policy.payer IS NOT NULL THEN
        IF v_policy.allowed_providers IS NOT NULL THEN
            v_provider := p_provider_id;
            IF v_provider IS NULL AND p_endpoint_id IS NOT NULL THEN
                SELECT e.provider_id INTO v_provider FROM endpoints e WHERE e.id = p_endpoint_id;
            END IF;
            IF v_provider IS NULL OR NOT v_provider = ANY (v_policy.allowed_providers) THEN
                v_refusal := 'policy_not_allowed';
            END IF;
        END IF;
        IF v_refusal IS NULL AND v_policy.allowed_endpoints IS NOT NULL
           AND (p_endpoint_id IS NULL OR NOT p_endpoint_id = ANY (v_policy.allowed_endpoints)) THEN
            v_refusal := 'policy_not_allowed';
        END IF;
        IF v_refusal IS NULL AND v_policy.allowed_pay_to IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM unnest(v_policy.allowed_pay_to) a
                            WHERE lower(a) = lower(p_token_address)) THEN
            v_refusal := 'policy_not_allowed';
        END IF;
        IF v_refusal IS NULL AND v_policy.allowed_networks IS NOT NULL
           AND (v_chain_id IS NULL OR NOT v_chain_id = ANY (v_policy.allowed_networks)) THEN
            v_refusal := 'policy_not_allowed';
        END IF;
        IF v_refusal IS NULL THEN
            v_limit := payfirst_policy_amount_v1(v_policy.max_per_payment, p_payment_asset, 0);
            IF p_amount > v_limit THEN
                v_refusal := 'policy_max_per_payment';
            END IF;
        END IF;
        IF v_refusal IS NULL
           AND (v_policy.max_per_day IS NOT NULL OR v_policy.max_per_month IS NOT NULL) THEN
            -- Read after the lock: every payment of this payer committed before is counted
            -- (each statement of a READ COMMITTED transaction reads a new snapshot).
            SELECT coalesce(sum(q.amount) FILTER (
                       WHERE q.created_at > now() - interval '24 hours'), 0),
                   coalesce(sum(q.amount) FILTER (WHERE q.created_at >= v_month_start), 0)
              INTO v_day, v_month
              FROM payment_queue q
             WHERE q.payer = p_payer
               AND q.created_at >= least(now() - interval '24 hours', v_month_start)
               AND q.payment_asset = p_payment_asset
               AND q.status NOT IN ('failed', 'confirmation_failed');
            IF v_day > payfirst_policy_amount_v1(v_policy.max_per_day, p_payment_asset, 0) THEN
                v_refusal := 'policy_daily_limit';
            ELSIF v_month > payfirst_policy_amount_v1(v_policy.max_per_month, p_payment_asset, 0)
            THEN
                v_refusal := 'policy_monthly_limit';
            END IF;
        END IF;
        IF v_refusal IS NOT NULL THEN
            DELETE FROM payment_queue WHERE id = v_id;
            RETURN QUERY SELECT NULL::uuid, v_refusal;
            RETURN;
        END IF;
    END IF;

    IF p_payment_type = 'mint' THEN
        UPDATE tokens
           SET reserved_count = reserved_count + p_quantity, updated_at = now()
         WHERE address = p_token_address AND reserved_count + p_quantity <= max_mint_count;
        IF NOT FOUND THEN
            DELETE FROM payment_queue WHERE id = v_id;
            IF EXISTS (SELECT 1 FROM tokens WHERE address = p_token_address) THEN
                RETURN QUERY SELECT NULL::uuid, 'sold_out'::text;
            ELSE
                RETURN QUERY SELECT NULL::uuid, 'unknown_token'::text;
            END IF;
            RETURN;
        END IF;
    END IF;
    IF v_status = 'awaiting_approval' THEN
        RETURN QUERY SELECT v_id, 'held'::text;
    ELSE
        RETURN QUERY SELECT v_id, 'created'::text;
    END IF;
END;
$$;

CREATE FUNCTION payfirst_queue_payments_v4(
    p_ids uuid[], p_payment_types text[], p_payers text[], p_amounts numeric[],
    p_payment_assets text[], p_token_addresses text[], p_quantities integer[],
    p_authorizations jsonb[], p_auth_nonces text[], p_metadata jsonb[], p_valid_befores bigint[],
    p_idempotency_keys text[], p_chain_ids bigint[], p_provider_ids uuid[], p_fee_bpss integer[],
    p_endpoint_ids uuid[]
) RETURNS TABLE (idx integer, payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
BEGIN
    -- Every policy row of the batch first, in one order: concurrent batches then never
    -- wait for each other in a cycle (a policy row, then a token's row).
    PERFORM 1 FROM spending_policies sp
      WHERE sp.payer = ANY (p_payers)
      ORDER BY sp.payer
        FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        RETURN QUERY
            SELECT i, q.payment_id, q.outcome
              FROM payfirst_queue_payment_v4(
                  p_ids[i], p_payment_types[i], p_payers[i], p_amounts[i], p_payment_assets[i],
                  p_token_addresses[i], p_quantities[i], p_authorizations[i], p_auth_nonces[i],
                  p_metadata[i], p_valid_befores[i], p_idempotency_keys[i], p_chain_ids[i],
                  p_provider_ids[i], p_fee_bpss[i], p_endpoint_ids[i]
              ) AS q;
    END LOOP;
END;
$$;

-- Webhooks (0016): endpoints, the outbox (messages), deliveries and their attempts; the
-- triggers that write the outbox in the transaction of the status change.
CREATE TABLE webhook_endpoints (
    id               uuid PRIMARY KEY,
    account_id       uuid NOT NULL REFERENCES accounts (id),
    url              text NOT NULL,
    event_types      text[] NOT NULL DEFAULT '{}',  -- empty: every event type
    secret           text NOT NULL,  -- whsec_ + base64 of 24+ random bytes
    description      text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    disabled_at      timestamptz,
    disabled_reason  text,
    -- The first failed attempt since the last success (NULL: not failing).
    failing_since    timestamptz,
    -- After a rotation the previous secret also signs until it expires (24 h, as Svix).
    previous_secret  text,
    previous_secret_expires_at  timestamptz,
    CONSTRAINT webhook_endpoints_url_check CHECK (char_length(url) BETWEEN 1 AND 2048),
    CONSTRAINT webhook_endpoints_description_check CHECK (char_length(description) <= 1000),
    CONSTRAINT webhook_endpoints_disabled_check
        CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL))
);

CREATE INDEX idx_webhook_endpoints_account ON webhook_endpoints (account_id, created_at, id);

-- The outbox: one message per event and interested account. `id` is the `webhook-id`
-- header, the same on every attempt and replay (receivers dedupe on it).
CREATE TABLE webhook_messages (
    id          text PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id),
    event_type  text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_webhook_messages_account_created ON webhook_messages (account_id, created_at);

-- A message to one endpoint. A dispatcher claims due ones (FOR UPDATE SKIP LOCKED) under a
-- lease: `locked_until` and its `lease` token; a dead dispatcher's claims come due again
-- when the lease runs out, and a result is recorded only under the lease that claimed it.
CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    message_id       text NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    lease            uuid,
    -- The first attempt since it was written or replayed: retries stop RETRY_FOR after it.
    started_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    delivered_at     timestamptz,
    CONSTRAINT webhook_deliveries_status_check
        CHECK (status IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_deliveries_message_endpoint_key UNIQUE (message_id, endpoint_id)
);

CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX idx_webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id);

-- The delivery log: one row per attempt (the response's first KiB at most).
CREATE TABLE webhook_attempts (
    id               bigserial PRIMARY KEY,
    delivery_id      bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id      uuid NOT NULL,
    message_id       text NOT NULL,
    started_at       timestamptz NOT NULL,
    response_status  integer,
    latency_ms       integer NOT NULL,
    response_body    text,
    error            text,
    CONSTRAINT webhook_attempts_body_check CHECK (char_length(response_body) <= 1024)
);

CREATE INDEX idx_webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX idx_webhook_attempts_delivery ON webhook_attempts (delivery_id);

-- Write one message per account of `p_accounts` that has an endpoint subscribed to `p_type`
-- and, in the same statement, its deliveries to the enabled ones (a disabled endpoint's
-- owner replays what it missed once it is enabled again); NOTIFY the dispatchers (on
-- commit) when a delivery was written.
CREATE FUNCTION payfirst_webhook_emit_v1(p_accounts uuid[], p_type text, p_data jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_written integer;
BEGIN
    WITH targets AS (
        SELECT e.id, e.account_id, e.disabled_at IS NULL AS enabled
          FROM webhook_endpoints e
         WHERE e.account_id = ANY (p_accounts)
           AND (cardinality(e.event_types) = 0 OR p_type = ANY (e.event_types))
    ), messages AS (
        INSERT INTO webhook_messages (id, account_id, event_type, payload)
        SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), a.account_id, p_type,
               jsonb_build_object(
                   'type', p_type,
                   'timestamp', to_char(now() AT TIME ZONE 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   'data', p_data)
          FROM (SELECT DISTINCT account_id FROM targets) a
        RETURNING id, account_id
    )
    INSERT INTO webhook_deliveries (message_id, endpoint_id)
    SELECT m.id, t.id FROM messages m JOIN targets t ON t.account_id = m.account_id
     WHERE t.enabled;
    GET DIAGNOSTICS v_written = ROW_COUNT;
    IF v_written > 0 THEN
        PERFORM pg_notify('payfirst_webhook_message', '');
    END IF;
END;
$$;

-- The accounts a payment concerns: the provider it is for (its own, or its endpoint's) and
-- the agent that registered its payer (agent_payers, migration 0015).
CREATE FUNCTION payfirst_webhook_payment_accounts_v1(p_provider uuid, p_endpoint uuid,
                                                     p_payer text)
RETURNS uuid[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_accounts uuid[] := '{}';
    v_id uuid;
BEGIN
    IF p_provider IS NOT NULL THEN
        v_accounts := v_accounts || p_provider;
    ELSIF p_endpoint IS NOT NULL THEN
        SELECT provider_id INTO v_id FROM endpoints WHERE id = p_endpoint;
        IF v_id IS NOT NULL THEN
            v_accounts := v_accounts || v_id;
        END IF;
    END IF;
    -- Both EIP-55: the primary key finds it.
    RETURN v_accounts || ARRAY(SELECT account_id FROM agent_payers WHERE address = p_payer);
END;
$$;

CREATE FUNCTION payfirst_webhook_payment_data_v1(p payment_queue) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p.id,
        'status', p.status,
        'payment_type', p.payment_type,
        'amount', p.amount::text,
        'asset', p.payment_asset,
        'network', CASE WHEN p.chain_id IS NULL THEN NULL ELSE 'eip155:' || p.chain_id END,
        'payer', p.payer,
        'pay_to', p.token_address,
        'quantity', p.quantity,
        'endpoint_id', p.endpoint_id,
        'provider_id', p.provider_id,
        'tx_hash', p.tx_hash,
        'error', p.error,
        'created_at', p.created_at,
        'updated_at', p.updated_at)
$$;

-- payment.queued (inserted pending, or approved), payment.awaiting_approval,
-- payment.completed, payment.failed (failed, confirmation_failed).
CREATE FUNCTION payfirst_webhook_payment_event_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_type text;
    v_accounts uuid[];
BEGIN
    -- The common case, no endpoint at all, costs one look at a (small) table.
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        -- Fired at commit (deferred): a payment refused in the transaction that inserted it
        -- (sold out, its payer's spending policy) was removed again and is no event.
        PERFORM 1 FROM payment_queue WHERE id = NEW.id;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    v_type := CASE
        WHEN NEW.status = 'completed' THEN 'payment.completed'
        WHEN NEW.status IN ('failed', 'confirmation_failed') THEN 'payment.failed'
        WHEN NEW.status = 'awaiting_approval' THEN 'payment.awaiting_approval'
        WHEN NEW.status = 'pending' AND (TG_OP = 'INSERT' OR OLD.status = 'awaiting_approval')
            THEN 'payment.queued'
    END;
    IF v_type IS NULL THEN
        RETURN NULL;
    END IF;
    v_accounts := payfirst_webhook_payment_accounts_v1(NEW.provider_id, NEW.endpoint_id,
                                                       NEW.payer);
    IF cardinality(v_accounts) > 0 THEN
        PERFORM payfirst_webhook_emit_v1(v_accounts, v_type,
                                         payfirst_webhook_payment_data_v1(NEW));
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER payment_webhook_inserted_v1
    AFTER INSERT ON payment_queue
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.status IN ('pending', 'awaiting_approval'))
    EXECUTE FUNCTION payfirst_webhook_payment_event_v1();

CREATE TRIGGER payment_webhook_changed_v1
    AFTER UPDATE OF status ON payment_queue
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND (
        NEW.status IN ('completed', 'failed', 'confirmation_failed', 'awaiting_approval')
        OR (NEW.status = 'pending' AND OLD.status = 'awaiting_approval')))
    EXECUTE FUNCTION payfirst_webhook_payment_event_v1();

-- mint.completed: to the accounts of the payment that bought it.
CREATE FUNCTION payfirst_webhook_mint_event_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_payment payment_queue;
    v_accounts uuid[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_payment FROM payment_queue WHERE id = NEW.payment_id;
    v_accounts := payfirst_webhook_payment_accounts_v1(v_payment.provider_id,
                                                       v_payment.endpoint_id, v_payment.payer);
    IF cardinality(v_accounts) > 0 THEN
        PERFORM payfirst_webhook_emit_v1(v_accounts, 'mint.completed', jsonb_build_object(
            'id', NEW.id,
            'status', NEW.status,
            'payment_id', NEW.payment_id,
            'mint_id', NEW.mint_id,
            'payer', NEW.payer,
            'token_address', NEW.token_address,
            'network', CASE WHEN v_payment.chain_id IS NULL THEN NULL
                            ELSE 'eip155:' || v_payment.chain_id END,
            'tx_hash', NEW.tx_hash,
            'payment_tx_hash', NEW.payment_tx_hash));
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER mint_webhook_completed_v1
    AFTER UPDATE OF status ON mint_queue
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status = 'completed')
    EXECUTE FUNCTION payfirst_webhook_mint_event_v1();

-- payout.completed: to the provider paid.
CREATE FUNCTION payfirst_webhook_payout_event_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM payfirst_webhook_emit_v1(ARRAY[NEW.provider_id], 'payout.completed',
        jsonb_build_object(
            'id', NEW.id,
            'status', NEW.status,
            'provider_id', NEW.provider_id,
            'amount', NEW.amount::text,
            'asset', NEW.asset,
            'network', 'eip155:' || NEW.chain_id,
            'to', NEW.to_address,
            'tx_hash', NEW.tx_hash,
            'trigger', NEW.trigger,
            'created_at', NEW.created_at,
            'completed_at', NEW.completed_at));
    RETURN NULL;
END;
$$;

CREATE TRIGGER payout_webhook_completed_v1
    AFTER UPDATE OF status ON payouts
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status = 'completed')
    EXECUTE FUNCTION payfirst_webhook_payout_event_v1();

-- The status page's reads (0017, payfirst.usecases.status): the payments accepted and failed
-- in the last minute and the latest failures, without a scan of the whole table.
CREATE INDEX idx_payment_queue_created_brin
    ON payment_queue USING brin (created_at) WITH (autosummarize = on);

CREATE INDEX idx_payment_queue_failed_updated
    ON payment_queue (updated_at)
    WHERE status IN ('failed', 'confirmation_failed');
