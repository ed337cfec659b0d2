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
