-- The status page's reads (payfirst.adapters.store_status): every second, so each is bounded
-- by an index whatever the table's size (0017, and those of the unfinished statuses).

-- name: status_depth
-- Payments waiting in each unfinished status (each count over its status's partial index).
SELECT
  (SELECT count(*) FROM payment_queue WHERE status = 'pending') AS pending,
  (SELECT count(*) FROM payment_queue WHERE status = 'processing') AS processing,
  (SELECT count(*) FROM payment_queue WHERE status = 'sent') AS sent,
  (SELECT count(*) FROM payment_queue WHERE status = 'awaiting_approval') AS awaiting_approval,
  now() AS at;

-- name: status_recent
-- Payments accepted, completed and failed in the last minute, and in the last $1 seconds.
SELECT
  (SELECT count(*) FROM payment_queue
    WHERE created_at >= now() - interval '1 minute') AS accepted,
  (SELECT count(*) FROM payment_queue
    WHERE created_at >= now() - make_interval(secs => $1)) AS accepted_recent,
  (SELECT count(*) FROM payment_queue
    WHERE status = 'completed' AND updated_at >= now() - interval '1 minute') AS completed,
  (SELECT count(*) FROM payment_queue
    WHERE status = 'completed'
      AND updated_at >= now() - make_interval(secs => $1)) AS completed_recent,
  (SELECT count(*) FROM payment_queue
    WHERE status IN ('failed', 'confirmation_failed')
      AND updated_at >= now() - interval '1 minute') AS failed,
  (SELECT count(*) FROM payment_queue
    WHERE status IN ('failed', 'confirmation_failed')
      AND updated_at >= now() - make_interval(secs => $1)) AS failed_recent;

-- name: status_latency
-- Percentiles (seconds) of accepted -> sent and sent -> completed over the latest $2
-- payments completed in the last $1 seconds.
WITH done AS (
  SELECT extract(epoch FROM processed_at - created_at) AS to_sent,
         extract(epoch FROM updated_at - processed_at) AS to_completed
    FROM payment_queue
   WHERE status = 'completed' AND updated_at >= now() - make_interval(secs => $1)
     AND processed_at IS NOT NULL
   ORDER BY updated_at DESC
   LIMIT $2
)
SELECT count(*) AS n,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY to_sent) AS to_sent,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY to_completed)
         AS to_completed
  FROM done;

-- name: status_failures
-- The latest $1 failed payments, the latest first.
SELECT id, status, error, chain_id, payer, amount, updated_at
  FROM payment_queue
 WHERE status IN ('failed', 'confirmation_failed')
 ORDER BY updated_at DESC
 LIMIT $1;

-- name: status_stuck
-- Payments sent more than $1 seconds ago, the longest sent first (at most $2).
SELECT id, chain_id, tx_hash, relayer, nonce, processed_at
  FROM payment_queue
 WHERE status = 'sent' AND processed_at < now() - make_interval(secs => $1)
 ORDER BY processed_at, id
 LIMIT $2;

-- name: status_stuck_count
-- How many payments were sent more than $1 seconds ago.
SELECT count(*) AS n
  FROM payment_queue
 WHERE status = 'sent' AND processed_at < now() - make_interval(secs => $1);
