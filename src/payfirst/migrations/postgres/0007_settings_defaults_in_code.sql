-- Runtime settings' defaults live in one place, payfirst.domain.settings.RuntimeSettings;
-- system_settings holds only what an operator set. The rows earlier migrations seeded and
-- nobody changed (still at their seed value) are removed, so a default changed in code
-- applies to existing databases too. A value an operator set stays.
DELETE FROM system_settings
WHERE (name, value) IN (
    ('payment_batch_size', 50),
    ('payment_batch_interval_ms', 4000),
    ('confirmation_interval_ms', 2000),
    ('confirmation_batch_size', 20),
    ('confirmation_timeout_s', 300),
    ('mint_batch_size', 10),
    ('mint_interval_ms', 3000),
    ('payment_tx_batching', 1),
    ('confirmation_depth', -1),
    ('fee_bump_after_s', 30),
    ('max_fee_per_gas_gwei', 500)
);
