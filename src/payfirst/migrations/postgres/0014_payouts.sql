-- Payouts (payfirst.domain.payouts): what the treasury holds for a provider, paid out on
-- chain by an ERC-20 transfer from the treasury (a relayer key) to the provider's payout
-- address. Written ahead like every payfirst tx: the claim that gives a payout its nonce
-- also stores its signed tx (`processing`), before any broadcast. `completed` comes with
-- its `payout` ledger transaction, in the same database transaction; `failed` (its tx
-- reverted) moved nothing and writes nothing to the ledger.

-- A provider's automatic payouts: when what is available reaches payout_threshold, and
-- when its last payout is older than payout_interval_s (NULL: never).
ALTER TABLE accounts ADD COLUMN payout_threshold numeric(78, 0);
ALTER TABLE accounts ADD COLUMN payout_interval_s integer;
ALTER TABLE accounts ADD CONSTRAINT accounts_payout_threshold_check
    CHECK (payout_threshold > 0);
ALTER TABLE accounts ADD CONSTRAINT accounts_payout_interval_check
    CHECK (payout_interval_s BETWEEN 60 AND 31622400);

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
    -- Claim and sign are one transaction: past pending, a payout always carries its tx.
    CONSTRAINT payouts_signed_check CHECK (
        status = 'pending'
        OR (relayer IS NOT NULL AND nonce IS NOT NULL AND tx_hash IS NOT NULL
            AND raw_tx IS NOT NULL))
);

-- A provider's payouts by page; the undecided ones of a chain (claims, balances); a
-- relayer's persisted txs (the broadcaster, the confirmer).
CREATE INDEX idx_payouts_provider_created ON payouts (provider_id, created_at, id);
CREATE INDEX idx_payouts_open ON payouts (chain_id, status, created_at)
    WHERE status IN ('pending', 'processing', 'sent');
CREATE INDEX idx_payouts_relayer_nonce ON payouts (relayer, chain_id, nonce)
    WHERE raw_tx IS NOT NULL;

-- A payout's ledger transaction (kind 'payout'): at most one per payout.
ALTER TABLE ledger_transactions ADD COLUMN payout_id uuid REFERENCES payouts (id);
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_payout_key UNIQUE (payout_id);
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_payout_kind_check
    CHECK (payout_id IS NULL OR kind = 'payout');
