-- The queries of adapters/store_webhooks.py (see sql/__init__.py for the format).

-- endpoints

-- name: insert_webhook_endpoint
-- Register an endpoint.
INSERT INTO webhook_endpoints (id, account_id, url, event_types, secret, description,
                               created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7);

-- name: webhook_endpoint
-- One endpoint.
SELECT id, account_id, url, event_types, secret, description, created_at, updated_at,
       disabled_at, disabled_reason, failing_since
  FROM webhook_endpoints
 WHERE id = $1;

-- name: webhook_endpoints_page
-- An account's endpoints (NULL: everyone's), oldest first, after the endpoint $2.
SELECT id, account_id, url, event_types, secret, description, created_at, updated_at,
       disabled_at, disabled_reason, failing_since
  FROM webhook_endpoints
 WHERE ($1::uuid IS NULL OR account_id = $1::uuid)
   AND ($2::uuid IS NULL OR (created_at, id) > (
            SELECT created_at, id FROM webhook_endpoints WHERE id = $2::uuid))
 ORDER BY created_at, id
 LIMIT $3;

-- name: update_webhook_endpoint
-- Set an endpoint's url, event types and description (the caller passes all three).
UPDATE webhook_endpoints
   SET url = $2, event_types = $3, description = $4, updated_at = $5
 WHERE id = $1
RETURNING id, account_id, url, event_types, secret, description, created_at, updated_at,
          disabled_at, disabled_reason, failing_since;

-- name: rotate_webhook_secret
-- A new signing secret; the current one keeps signing too until $3.
UPDATE webhook_endpoints
   SET previous_secret = secret, previous_secret_expires_at = $3, secret = $2, updated_at = now()
 WHERE id = $1
RETURNING id, account_id, url, event_types, secret, description, created_at, updated_at,
          disabled_at, disabled_reason, failing_since;

-- name: delete_webhook_endpoint
-- Delete an endpoint (its deliveries and attempts go with it).
DELETE FROM webhook_endpoints WHERE id = $1 RETURNING id;

-- name: enable_webhook_endpoint
-- Enable an endpoint again: not failing any more.
UPDATE webhook_endpoints
   SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL, updated_at = $2
 WHERE id = $1
RETURNING id, account_id, url, event_types, secret, description, created_at, updated_at,
          disabled_at, disabled_reason, failing_since;

-- name: webhook_attempts_page
-- An endpoint's delivery log, newest first, before the attempt $2.
SELECT id, delivery_id, endpoint_id, message_id, started_at, latency_ms, response_status,
       response_body, error
  FROM webhook_attempts
 WHERE endpoint_id = $1 AND ($2::bigint IS NULL OR id < $2::bigint)
 ORDER BY id DESC
 LIMIT $3;

-- replay

-- name: replay_webhook_messages
-- Send the account's messages again to one endpoint (it wants them): one message by id,
-- or those created in [since, until); a delivery already there starts afresh.
INSERT INTO webhook_deliveries (message_id, endpoint_id)
SELECT m.id, e.id
  FROM webhook_endpoints e
  JOIN webhook_messages m ON m.account_id = e.account_id
 WHERE e.id = $1
   AND ($2::text IS NULL OR m.id = $2::text)
   AND ($3::timestamptz IS NULL OR m.created_at >= $3::timestamptz)
   AND ($4::timestamptz IS NULL OR m.created_at < $4::timestamptz)
   AND (cardinality(e.event_types) = 0 OR m.event_type = ANY (e.event_types)
        OR $2::text IS NOT NULL)
ON CONFLICT (message_id, endpoint_id) DO UPDATE
   SET status = 'pending', attempts = 0, next_attempt_at = now(), locked_until = NULL,
       lease = NULL, started_at = NULL, delivered_at = NULL
RETURNING id;

-- name: notify_webhook_message
-- Wake the dispatchers (on commit).
SELECT pg_notify('payfirst_webhook_message', '');

-- the dispatcher

-- name: claim_webhook_deliveries
-- Claim up to $1 due deliveries of enabled endpoints for $2 seconds under the lease $3,
-- skipping those another dispatcher holds.
WITH due AS (
    SELECT d.id
      FROM webhook_deliveries d
      JOIN webhook_endpoints e ON e.id = d.endpoint_id
     WHERE d.status = 'pending' AND d.next_attempt_at <= now()
       AND (d.locked_until IS NULL OR d.locked_until <= now())
       AND e.disabled_at IS NULL
     ORDER BY d.next_attempt_at
     LIMIT $1
       FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
   SET locked_until = now() + make_interval(secs => $2::double precision), lease = $3,
       started_at = coalesce(d.started_at, now())
  FROM due, webhook_messages m, webhook_endpoints e
 WHERE d.id = due.id AND m.id = d.message_id AND e.id = d.endpoint_id
RETURNING d.id, d.attempts, d.started_at, m.id AS message_id, m.event_type,
          m.payload::text AS payload, e.id AS endpoint_id, e.account_id, e.url, e.secret,
          CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END
              AS previous_secret;

-- name: record_webhook_attempts
-- Log attempts of deliveries (whatever their lease; not those whose endpoint was deleted
-- meanwhile): the columns as arrays.
INSERT INTO webhook_attempts (delivery_id, endpoint_id, message_id, started_at,
                              response_status, latency_ms, response_body, error)
SELECT a.*
  FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::integer[],
              $6::integer[], $7::text[], $8::text[])
       AS a (delivery_id, endpoint_id, message_id, started_at, response_status, latency_ms,
             response_body, error)
 WHERE EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = a.delivery_id);

-- name: webhooks_delivered
-- Deliveries that succeeded (each only under the lease that claimed it); those marked.
UPDATE webhook_deliveries d
   SET status = 'delivered', attempts = d.attempts + 1, last_attempt_at = o.at,
       delivered_at = now(), locked_until = NULL, lease = NULL
  FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[]) AS o (id, lease, at)
 WHERE d.id = o.id AND d.lease = o.lease AND d.status = 'pending'
RETURNING d.id;

-- name: webhooks_endpoints_succeeded
-- Endpoints that answered 2xx: not failing.
UPDATE webhook_endpoints SET failing_since = NULL
 WHERE id = ANY ($1::uuid[]) AND failing_since IS NOT NULL;

-- name: webhooks_retry
-- Deliveries that failed: due again at their time, or (NULL) failed (each only under its
-- lease); those marked.
UPDATE webhook_deliveries d
   SET attempts = d.attempts + 1, last_attempt_at = o.at,
       status = CASE WHEN o.retry_at IS NULL THEN 'failed' ELSE 'pending' END,
       next_attempt_at = coalesce(o.retry_at, d.next_attempt_at),
       locked_until = NULL, lease = NULL
  FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::timestamptz[])
       AS o (id, lease, at, retry_at)
 WHERE d.id = o.id AND d.lease = o.lease AND d.status = 'pending'
RETURNING d.id;

-- name: webhooks_endpoints_failed
-- Endpoints that failed: failing since their first failure after the last success.
UPDATE webhook_endpoints e SET failing_since = o.at
  FROM (SELECT id, min(at) AS at FROM unnest($1::uuid[], $2::timestamptz[]) AS f (id, at)
         GROUP BY id) AS o
 WHERE e.id = o.id AND e.failing_since IS NULL;

-- name: disable_failing_webhook_endpoints
-- Disable the enabled endpoints failing since before $1; the disabled ones.
UPDATE webhook_endpoints
   SET disabled_at = now(), disabled_reason = $2, updated_at = now()
 WHERE disabled_at IS NULL AND failing_since < $1
RETURNING id, account_id, url, event_types, secret, description, created_at, updated_at,
          disabled_at, disabled_reason, failing_since;

-- name: fail_disabled_webhook_deliveries
-- A disabled endpoint's pending deliveries fail (replay sends them again once enabled).
UPDATE webhook_deliveries SET status = 'failed', locked_until = NULL, lease = NULL
 WHERE endpoint_id = ANY ($1::uuid[]) AND status = 'pending';

-- name: emit_webhook_event
-- Write an event for accounts (their subscribed enabled endpoints) and its deliveries.
SELECT payfirst_webhook_emit_v1($1::uuid[], $2::text, $3::jsonb);
