-- Batched settlement: 1 = many payments in one BatchSettler tx (when a settler is
-- configured), 0 = one transferWithAuthorization tx per payment
-- (payfirst.ports.store.DEFAULT_SETTINGS).
INSERT INTO system_settings (name, value) VALUES
    ('payment_tx_batching', 1)
ON CONFLICT (name) DO NOTHING;
