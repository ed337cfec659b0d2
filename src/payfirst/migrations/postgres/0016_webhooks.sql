-- Webhooks (payfirst.domain.webhooks): accounts register endpoints (a URL, the event types
-- they want, a signing secret); events are written to an outbox, `webhook_messages`, by
-- triggers in the very transaction that changes a payment's, a mint item's or a payout's
-- status, and fanned out to `webhook_deliveries` (one per message and endpoint) in the same
-- statement. The worker's dispatcher sends the due deliveries, signed the Standard Webhooks
-- way, and logs every attempt in `webhook_attempts`. Only an account with an endpoint
-- subscribed to the event gets a message (delivered to its enabled ones): without one, a
-- status change writes nothing.
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
