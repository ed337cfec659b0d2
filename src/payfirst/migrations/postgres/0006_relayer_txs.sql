-- Every tx payfirst signed for a relayer nonce once it signed more than one for it (a
-- fee-bumped replacement: same nonce, higher fees). The rows of payment_queue and
-- mint_queue carry the newest; any of these may be the one mined, so the confirmer reads
-- the receipts of all of them.
CREATE TABLE relayer_txs (
    tx_hash     text PRIMARY KEY,
    relayer     text NOT NULL,
    nonce       bigint NOT NULL,
    raw_tx      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_relayer_txs_relayer_nonce ON relayer_txs (relayer, nonce);

-- Confirmation depth (blocks on top of a receipt's block before payfirst acts on it);
-- -1: the chain's default (payfirst.pipeline.decide.CHAIN_CONFIRMATION_DEPTH).
INSERT INTO system_settings (name, value) VALUES
    ('confirmation_depth', -1),
    ('fee_bump_after_s', 30),
    ('max_fee_per_gas_gwei', 500)
ON CONFLICT (name) DO NOTHING;
