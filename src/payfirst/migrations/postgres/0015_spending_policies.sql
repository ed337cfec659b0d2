-- Agents' payer addresses and their spending policies (payfirst.domain.policies), enforced
-- when a payment is queued: payfirst_queue_payment_v4 locks the payer's policy row and sums
-- the payer's payments of the asset in the same transaction as the insert, so concurrent
-- payments take turns and never exceed a limit together. A payment above the policy's
-- approval threshold is queued `awaiting_approval`: the sender never claims it until its
-- owner approves it (`pending`) or rejects it (`failed`).

ALTER TABLE payment_queue DROP CONSTRAINT payment_queue_status_check;
ALTER TABLE payment_queue ADD CONSTRAINT payment_queue_status_check CHECK (status IN (
    'pending', 'processing', 'sent', 'completed', 'failed', 'confirmation_failed',
    'awaiting_approval'));

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
