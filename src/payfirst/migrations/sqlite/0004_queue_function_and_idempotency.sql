-- A client-chosen payment id (Idempotency-Key header or the x402 payment-identifier
-- extension), unique per payer. (The PostgreSQL queueing function of this version has
-- no SQLite counterpart: SQLite queues in process.)
ALTER TABLE payment_queue ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX payment_queue_payer_idempotency_key
    ON payment_queue (payer, idempotency_key) WHERE idempotency_key IS NOT NULL;
