-- The queries of adapters/store_endpoints.py (see sql/__init__.py for the format).

-- name: insert_endpoint
-- Register a paid endpoint.
INSERT INTO endpoints (
    id, provider_id, method, resource, pricing, amount, unit_param, max_units, asset,
    chain_id, pay_to, description, mime_type, input_schema, output_schema, discoverable,
    max_timeout_seconds, created_at, updated_at, disabled_at
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
          $19, $20);

-- name: lock_endpoints_of_provider
-- Lock a provider's account row (FOR NO KEY UPDATE: its endpoints' foreign keys still take
-- theirs), so registrations for one provider count its endpoints one at a time.
SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE;

-- name: count_enabled_endpoints
-- How many enabled endpoints a provider ($1) has (idx_endpoints_provider_created).
SELECT count(*) AS n FROM endpoints WHERE provider_id = $1 AND disabled_at IS NULL;

-- name: get_endpoint
-- One endpoint by id, disabled or not.
SELECT * FROM endpoints WHERE id = $1;

-- name: list_endpoints
-- A page of endpoints, oldest first: a provider's ($2; NULL: everyone's), enabled ones only
-- unless $4, after the endpoint $3 (NULL: from the first; one not of provider $2: none).
SELECT *
  FROM endpoints
 WHERE ($2::uuid IS NULL OR provider_id = $2)
   AND ($4::boolean OR disabled_at IS NULL)
   AND ($3::uuid IS NULL
        OR (created_at, id) > (SELECT e.created_at, e.id
                                 FROM endpoints e
                                WHERE e.id = $3 AND ($2::uuid IS NULL OR e.provider_id = $2)))
 ORDER BY created_at, id
 LIMIT $1;

-- name: update_endpoint
-- Replace an endpoint's terms (id, provider and times of creation and disabling are kept).
UPDATE endpoints
   SET method = $2, resource = $3, pricing = $4, amount = $5, unit_param = $6,
       max_units = $7, asset = $8, chain_id = $9, pay_to = $10, description = $11,
       mime_type = $12, input_schema = $13, output_schema = $14, discoverable = $15,
       max_timeout_seconds = $16, updated_at = $17
 WHERE id = $1
RETURNING *;

-- name: disable_endpoint
-- Disable an endpoint; disabling again keeps the first time.
UPDATE endpoints
   SET disabled_at = coalesce(disabled_at, $2),
       updated_at = CASE WHEN disabled_at IS NULL THEN $2 ELSE updated_at END
 WHERE id = $1
RETURNING *;

-- name: discoverable_endpoints
-- A page of the enabled, discoverable endpoints (the Bazaar listing), oldest first, with
-- how many there are in all.
SELECT e.*, count(*) OVER () AS total
  FROM endpoints e
 WHERE e.discoverable AND e.disabled_at IS NULL
 ORDER BY e.created_at, e.id
 LIMIT $1 OFFSET $2;

-- name: count_discoverable_endpoints
-- How many enabled, discoverable endpoints there are (for a page past the last).
SELECT count(*) AS n FROM endpoints WHERE discoverable AND disabled_at IS NULL;
