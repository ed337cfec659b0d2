-- An authorization already queued matches a new request only when it is the same purchase:
-- the same signed authorization AND the same payment type, token (or payee) and quantity.
-- Anything else re-using the (payer, nonce) is refused (nonce_reused), so a header copied
-- from a /settle onto a mint route (or from one mint order onto another) buys nothing.
CREATE OR REPLACE FUNCTION payfirst_queue_payment(
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

-- A notice per payment whose status (or whose mint items' status) changed, delivered on
-- commit (mint items are created in the transaction that completes their payment, so
-- inserts need no notice of their own): API processes wake the clients waiting on that payment (long-poll, SSE, /settle)
-- instead of polling. The payload is the payment id; a transaction sends each id once.
CREATE FUNCTION payfirst_notify_payment_changed() RETURNS trigger
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
    EXECUTE FUNCTION payfirst_notify_payment_changed();

CREATE TRIGGER mint_changed_notify
    AFTER UPDATE OF status ON mint_queue
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION payfirst_notify_payment_changed();
