-- A double-entry ledger (payfirst.domain.ledger). An account per (kind, owner, asset, chain);
-- a ledger transaction per completed payment, written in the very database transaction
-- that marks the payment `completed` (PostgresStore.complete_payments); its entries sum to
-- zero per asset and chain (checked by the statement that writes them all). Entries are
-- append-only: a payment found not on chain is reversed by a new `reversal` transaction of
-- opposite entries, never by an edit.
--
-- The payment's provider and fee are fixed when it is accepted (as Stripe does): a payment
-- with a provider_id was made payable to the platform's treasury, and its amount is split
-- at completion into the provider's share and the platform's fee (fee_bps basis points,
-- rounded down: the provider keeps the remainder). No foreign key to the provider's
-- account: the accounts table is another migration's (0010); the ledger keeps the id.
ALTER TABLE payment_queue ADD COLUMN provider_id uuid;
ALTER TABLE payment_queue ADD COLUMN fee_bps integer;
ALTER TABLE payment_queue ADD CONSTRAINT payment_queue_fee_bps_check
    CHECK (fee_bps BETWEEN 0 AND 10000);
ALTER TABLE payment_queue ADD CONSTRAINT payment_queue_provider_fee_check
    CHECK (provider_id IS NULL OR fee_bps IS NOT NULL);

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
    CONSTRAINT ledger_transactions_kind_check CHECK (kind IN ('payment', 'reversal', 'payout')),
    CONSTRAINT ledger_transactions_payment_kind_key UNIQUE (payment_id, kind),
    CONSTRAINT ledger_transactions_of_a_payment
        CHECK (kind = 'payout' OR payment_id IS NOT NULL),
    CONSTRAINT ledger_transactions_reversal_reverses
        CHECK ((kind = 'reversal') = (reverses IS NOT NULL))
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
