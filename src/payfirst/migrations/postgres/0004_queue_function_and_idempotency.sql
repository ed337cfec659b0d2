-- A client-chosen payment id (Idempotency-Key header or the x402 payment-identifier
-- extension): the same id and payload give the same payment, another payload is refused.
ALTER TABLE payment_queue ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX payment_queue_payer_idempotency_key
    ON payment_queue (payer, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- The accept path's whole transaction as one function, so queueing a payment costs one
-- round trip: insert (a concurrent identical insert waits on the unique keys), then for a
-- mint reserve supply under the cap; a sold-out or unknown token undoes the insert.
-- Outcomes: created, duplicate (same authorization, its id returned), nonce_reused,
-- idempotency_conflict, sold_out, unknown_token.
CREATE FUNCTION payfirst_queue_payment(
    p_id uuid, p_payment_type text, p_payer text, p_amount numeric, p_payment_asset text,
    p_token_address text, p_quantity integer, p_authorization jsonb, p_auth_nonce text,
    p_metadata jsonb, p_valid_before bigint, p_idempotency_key text
) RETURNS TABLE (payment_id uuid, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_existing_auth jsonb;
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
        SELECT q.id, q."authorization" INTO v_id, v_existing_auth
          FROM payment_queue q
         WHERE q.payer = p_payer AND q.auth_nonce = p_auth_nonce;
        IF v_id IS NULL THEN
            -- Not the authorization: the payer's idempotency key is taken by another one.
            SELECT q.id INTO v_id
              FROM payment_queue q
             WHERE q.payer = p_payer AND q.idempotency_key = p_idempotency_key;
            RETURN QUERY SELECT v_id, 'idempotency_conflict'::text;
        ELSIF v_existing_auth = p_authorization THEN
            RETURN QUERY SELECT v_id, 'duplicate'::text;
        ELSE
            RETURN QUERY SELECT v_id, 'nonce_reused'::text;
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

-- Many payments in one round trip (the API coalesces the requests that arrive together).
-- Each is decided exactly as payfirst_queue_payment decides it, in order.
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
