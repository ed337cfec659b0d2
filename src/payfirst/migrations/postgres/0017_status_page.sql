-- The status page (payfirst.usecases.status) reads, every second, the payments accepted and
-- failed in the last minute and the latest failures. Without these indexes each read would
-- scan the whole table. Accepted: a BRIN index on created_at (rows are inserted in time
-- order; it costs the accept path next to nothing). Failed: a partial index, as failures
-- are few.
CREATE INDEX idx_payment_queue_created_brin
    ON payment_queue USING brin (created_at) WITH (autosummarize = on);

CREATE INDEX idx_payment_queue_failed_updated
    ON payment_queue (updated_at)
    WHERE status IN ('failed', 'confirmation_failed');
