-- Several networks in one instance: a payment belongs to the chain it settles on, and a
-- relayer's state (nonce, lease, signed txs) is per (chain_id, address): one key can relay
-- on two networks, with independent nonces.
--
-- payment_queue.chain_id is NULL for "the default network" (the single chain of the legacy
-- settings, whose chain id is only known once the worker reads it from the chain). Backfill
-- of existing payments: a mint's chain is its token's; a facilitator payment's is the
-- network its metadata recorded (a CAIP-2 eip155 id or an x402 v1 name); otherwise the only
-- chain id in `tokens` when there is exactly one; else NULL (the default network).
--
-- Relayer rows get chain_id 0, "the default network" too (0 is no EVM chain): a NOT NULL
-- key cannot hold NULL, and guessing a chain for a nonce would be worse than none. The
-- worker of the default network re-keys them to its chain id at startup
-- (PostgresStore.adopt_default_chain). The DEFAULT 0 stays for the previous release's
-- processes during a rolling deploy; their `ON CONFLICT (address)` upserts of relayer
-- nonces fail once the key is (chain_id, address), so stop the old workers before the
-- new ones start (the API processes are unaffected).
ALTER TABLE payment_queue ADD COLUMN chain_id bigint;

UPDATE payment_queue q
   SET chain_id = t.chain_id
  FROM tokens t
 WHERE q.payment_type = 'mint' AND t.address = q.token_address;

UPDATE payment_queue q
   SET chain_id = CASE
       WHEN q.metadata->>'network' ~ '^eip155:[1-9][0-9]{0,17}$'
           THEN substr(q.metadata->>'network', 8)::bigint
       ELSE v1.chain_id END
  FROM (SELECT DISTINCT metadata->>'network' AS network FROM payment_queue) AS n
  LEFT JOIN (VALUES
       ('base', 8453), ('base-sepolia', 84532), ('ethereum', 1), ('polygon', 137),
       ('polygon-amoy', 80002), ('avalanche', 43114), ('avalanche-fuji', 43113),
       ('abstract', 2741), ('abstract-testnet', 11124), ('iotex', 4689), ('sei', 1329),
       ('sei-testnet', 1328), ('peaq', 3338), ('story', 1513), ('educhain', 656476),
       ('skale-base-sepolia', 1444673419), ('megaeth', 4326), ('monad', 143),
       ('monad-testnet', 10143), ('stable', 988), ('stable-testnet', 2201), ('celo', 42220),
       ('flare', 14)
  ) AS v1 (name, chain_id) ON v1.name = n.network
 WHERE q.chain_id IS NULL AND q.metadata->>'network' = n.network;

UPDATE payment_queue
   SET chain_id = (SELECT min(chain_id) FROM tokens)
 WHERE chain_id IS NULL AND (SELECT count(DISTINCT chain_id) FROM tokens) = 1;

-- A network's worker claims its pending payments.
CREATE INDEX idx_payment_queue_pending_chain
    ON payment_queue (chain_id, created_at)
    WHERE status = 'pending';

-- The default network's payments (no chain yet), adopted at every start-up: finding none
-- must not scan the table.
CREATE INDEX idx_payment_queue_no_chain ON payment_queue (id) WHERE chain_id IS NULL;

ALTER TABLE relayers ADD COLUMN chain_id bigint NOT NULL DEFAULT 0;
ALTER TABLE relayers DROP CONSTRAINT relayers_pkey;
ALTER TABLE relayers ADD PRIMARY KEY (chain_id, address);

ALTER TABLE relayer_leases ADD COLUMN chain_id bigint NOT NULL DEFAULT 0;
ALTER TABLE relayer_leases DROP CONSTRAINT relayer_leases_pkey;
ALTER TABLE relayer_leases ADD PRIMARY KEY (chain_id, address);

-- tx_hash stays the key: a signed tx commits to its chain id, so hashes never collide.
ALTER TABLE relayer_txs ADD COLUMN chain_id bigint NOT NULL DEFAULT 0;
DROP INDEX idx_relayer_txs_relayer_nonce;
CREATE INDEX idx_relayer_txs_chain_relayer_nonce ON relayer_txs (chain_id, relayer, nonce);

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
