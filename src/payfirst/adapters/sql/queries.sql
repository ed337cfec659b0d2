-- Every query of the PostgreSQL store (payfirst.adapters.store_postgres), by name.
-- Each block starts with `-- name: <name>` and a comment line saying what it does; the
-- file is parsed once at import (payfirst.adapters.sql). Functions are called by their
-- versioned names (payfirst/migrations/postgres/README.md).

-- name: ping
-- Is the database answering?
SELECT 1;

-- name: take_migration_lock
-- Serialize schema changes of concurrent processes until the transaction ends.
SELECT pg_advisory_xact_lock($1);

-- tokens

-- name: upsert_token
-- Register a token or update its terms (not its chain: no row then); reserved count kept.
INSERT INTO tokens (
    address, chain_id, name, symbol, payment_asset, asset_name, asset_version,
    asset_decimals, price_per_mint, mint_amount, max_mint_count, reserved_count
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (address) DO UPDATE SET
    chain_id = EXCLUDED.chain_id,
    name = EXCLUDED.name,
    symbol = EXCLUDED.symbol,
    payment_asset = EXCLUDED.payment_asset,
    asset_name = EXCLUDED.asset_name,
    asset_version = EXCLUDED.asset_version,
    asset_decimals = EXCLUDED.asset_decimals,
    price_per_mint = EXCLUDED.price_per_mint,
    mint_amount = EXCLUDED.mint_amount,
    max_mint_count = EXCLUDED.max_mint_count,
    updated_at = now()
WHERE tokens.chain_id = EXCLUDED.chain_id
RETURNING address;

-- name: get_token
-- The token at an address.
SELECT address, chain_id, name, symbol, payment_asset, asset_name, asset_version,
       asset_decimals, price_per_mint, mint_amount, max_mint_count, reserved_count
  FROM tokens
 WHERE address = $1;

-- name: list_tokens
-- Every token, oldest first.
SELECT address, chain_id, name, symbol, payment_asset, asset_name, asset_version,
       asset_decimals, price_per_mint, mint_amount, max_mint_count, reserved_count
  FROM tokens
 ORDER BY created_at, address;

-- settings

-- name: get_settings
-- The runtime settings an operator set.
SELECT name, value FROM system_settings;

-- name: set_setting
-- Set one runtime setting.
INSERT INTO system_settings (name, value) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now();

-- name: unset_setting
-- Remove one runtime setting (back to its default in code).
DELETE FROM system_settings WHERE name = $1;

-- relayers

-- name: get_relayer_nonce
-- A relayer's next nonce on a chain, if it has a row.
SELECT next_nonce FROM relayers WHERE address = $1 AND chain_id = $2;

-- name: set_relayer_nonce
-- Set a relayer's next nonce on a chain, creating its row if missing.
INSERT INTO relayers (address, next_nonce, chain_id) VALUES ($1, $2, $3)
ON CONFLICT (chain_id, address) DO UPDATE
    SET next_nonce = EXCLUDED.next_nonce, updated_at = now();

-- name: create_relayer
-- Create a relayer's row on a chain at nonce 0 unless it has one.
INSERT INTO relayers (address, next_nonce, chain_id) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING;

-- name: lock_relayer
-- A relayer's next nonce, its row locked until the transaction ends.
SELECT next_nonce FROM relayers WHERE address = $1 AND chain_id = $2 FOR UPDATE;

-- name: set_next_nonce
-- Move a relayer's next nonce on after signing.
UPDATE relayers SET next_nonce = $2, updated_at = now() WHERE address = $1 AND chain_id = $3;

-- name: sync_relayer_nonce
-- Raise a relayer's next nonce to the chain's (never lower it); the resulting nonce.
INSERT INTO relayers (address, next_nonce, chain_id) VALUES ($1, $2, $3)
ON CONFLICT (chain_id, address) DO UPDATE
    SET next_nonce = greatest(relayers.next_nonce, EXCLUDED.next_nonce),
        updated_at = now()
RETURNING next_nonce;

-- payments: accepting

-- name: queue_payments
-- Queue the payments coalesced from one event-loop turn in one round trip; one outcome
-- row per payment (v4: each checked against its payer's spending policy, if any).
SELECT idx, payment_id, outcome
  FROM payfirst_queue_payments_v4(
      $1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::text[],
      $7::integer[], $8::jsonb[], $9::text[], $10::jsonb[], $11::bigint[], $12::text[],
      $13::bigint[], $14::uuid[], $15::integer[], $16::uuid[]);

-- name: find_payment
-- The payment of a payer's authorization nonce.
SELECT id, payment_type, payer, amount, payment_asset, token_address, quantity,
       "authorization", metadata, status, tx_hash, nonce, relayer, raw_tx, error,
       created_at, processed_at, result, chain_id, endpoint_id
  FROM payment_queue
 WHERE payer = $1 AND auth_nonce = $2;

-- name: get_payment
-- One payment by id.
SELECT id, payment_type, payer, amount, payment_asset, token_address, quantity,
       "authorization", metadata, status, tx_hash, nonce, relayer, raw_tx, error,
       created_at, processed_at, result, chain_id, endpoint_id
  FROM payment_queue
 WHERE id = $1;

-- name: count_payments_by_status
-- How many payments are in each status.
SELECT status, count(*) AS n FROM payment_queue GROUP BY status;

-- name: count_mints_by_status
-- How many mint items are in each status.
SELECT status, count(*) AS n FROM mint_queue GROUP BY status;

-- payments: settling

-- name: lock_pending_payments
-- The oldest pending payments of chain $3 (of `only`'s ids when given), locked; rows others
-- hold are skipped.
SELECT id, payment_type, payer, amount, payment_asset, token_address, quantity,
       "authorization", metadata, status, tx_hash, nonce, relayer, raw_tx, error,
       created_at, processed_at, result, chain_id, endpoint_id
  FROM payment_queue
 WHERE status = 'pending' AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))
   AND chain_id = $3
 ORDER BY created_at, id
 LIMIT $1
   FOR UPDATE SKIP LOCKED;

-- name: mark_payment_processing
-- Record the signed tx of one claimed payment.
UPDATE payment_queue
   SET status = 'processing', tx_hash = $2, nonce = $3, relayer = $4,
       raw_tx = $5, updated_at = now()
 WHERE id = $1;

-- name: lock_batch_asset
-- The asset of the oldest pending payment of chain $2 (as lock_pending_payments) no other
-- claim holds, that payment locked.
SELECT payment_asset FROM payment_queue
 WHERE status = 'pending' AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))
   AND chain_id = $2
 ORDER BY created_at, id
 LIMIT 1
   FOR UPDATE SKIP LOCKED;

-- name: lock_pending_payments_of_asset
-- The oldest pending payments of one asset on chain $4, locked; rows others hold are skipped.
SELECT id, payment_type, payer, amount, payment_asset, token_address, quantity,
       "authorization", metadata, status, tx_hash, nonce, relayer, raw_tx, error,
       created_at, processed_at, result, chain_id, endpoint_id
  FROM payment_queue
 WHERE status = 'pending' AND payment_asset = $2
   AND ($3::uuid[] IS NULL OR id = ANY($3::uuid[]))
   AND chain_id = $4
 ORDER BY created_at, id
 LIMIT $1
   FOR UPDATE SKIP LOCKED;

-- name: mark_payments_processing
-- Record the one signed batch tx of many claimed payments.
UPDATE payment_queue
   SET status = 'processing', tx_hash = $2, nonce = $3, relayer = $4,
       raw_tx = $5, updated_at = now()
 WHERE id = ANY($1::uuid[]);

-- name: list_payments
-- Payments of chain $4 in a status, oldest first (optionally only those expiring before a
-- time).
SELECT id, payment_type, payer, amount, payment_asset, token_address, quantity,
       "authorization", metadata, status, tx_hash, nonce, relayer, raw_tx, error,
       created_at, processed_at, result, chain_id, endpoint_id
  FROM payment_queue
 WHERE status = $1 AND ($3::bigint IS NULL OR valid_before < $3)
   AND chain_id = $4
 ORDER BY created_at, id
 LIMIT $2;

-- name: list_sent_payments
-- Sent payments of chain $3, longest sent first (optionally only those expiring before a
-- time).
SELECT id, payment_type, payer, amount, payment_asset, token_address, quantity,
       "authorization", metadata, status, tx_hash, nonce, relayer, raw_tx, error,
       created_at, processed_at, result, chain_id, endpoint_id
  FROM payment_queue
 WHERE status = 'sent' AND ($2::bigint IS NULL OR valid_before < $2)
   AND chain_id = $3
 ORDER BY processed_at, created_at, id
 LIMIT $1;

-- name: amounts_in_flight
-- What each of these payers has in processing or sent payments on chain $2, per asset.
SELECT payment_asset, payer, sum(amount) AS amount
  FROM payment_queue
 WHERE status IN ('processing', 'sent') AND payer = ANY($1::text[])
   AND chain_id = $2
 GROUP BY payment_asset, payer;

-- name: sent_payments
-- The sent payments of a relayer's lowest-nonce sent txs (at most $2 txs) on chain $3.
SELECT id, payment_type, payer, amount, payment_asset, token_address, quantity,
       "authorization", metadata, status, tx_hash, nonce, relayer, raw_tx, error,
       created_at, processed_at, result, chain_id, endpoint_id
  FROM payment_queue
 WHERE status = 'sent' AND relayer = $1 AND tx_hash IN (
       SELECT tx_hash FROM payment_queue
        WHERE status = 'sent' AND relayer = $1
          AND chain_id = $3
        GROUP BY tx_hash ORDER BY min(nonce) LIMIT $2)
 ORDER BY processed_at, created_at, id;

-- name: mark_payments_sent
-- Processing payments whose tx was broadcast become sent.
UPDATE payment_queue
   SET status = 'sent', processed_at = now(), updated_at = now()
 WHERE status = 'processing' AND tx_hash = ANY($1::text[]);

-- name: lock_payment_to_complete
-- What completing a payment (and its ledger transaction) needs, its row locked.
SELECT payer, token_address, status, amount, payment_asset, chain_id, provider_id, fee_bps
  FROM payment_queue WHERE id = $1 FOR UPDATE;

-- name: complete_payment
-- A confirmed payment becomes completed, with its tx and result.
UPDATE payment_queue
   SET status = 'completed', tx_hash = $2, result = $3,
       processed_at = coalesce(processed_at, now()), updated_at = now()
 WHERE id = $1;

-- name: insert_mint_item
-- One pending mint item of a completed payment; created_at steps by $7 µs to keep order.
INSERT INTO mint_queue (
    id, payment_id, payer, token_address, mint_id, payment_tx_hash,
    status, created_at, updated_at
) VALUES (
    $1, $2, $3, $4, $5, $6, 'pending',
    now() + $7 * interval '1 microsecond',
    now() + $7 * interval '1 microsecond'
);

-- name: fail_payment
-- A payment not yet terminal (and in status $4 when given) fails; what it reserved.
UPDATE payment_queue SET status = $2, error = $3, updated_at = now()
 WHERE id = $1 AND status IN ('pending', 'processing', 'sent', 'awaiting_approval')
   AND ($4::text IS NULL OR status = $4)
RETURNING token_address, quantity, payment_type;

-- name: release_reserved_supply
-- Give a failed mint payment's reserved supply back to its token.
UPDATE tokens SET reserved_count = reserved_count - $2, updated_at = now()
 WHERE address = $1;

-- name: requeue_payment
-- A processing or sent payment goes back to pending, its tx fields cleared.
UPDATE payment_queue
   SET status = 'pending', tx_hash = NULL, nonce = NULL, relayer = NULL,
       raw_tx = NULL, processed_at = NULL, error = $2, updated_at = now()
 WHERE id = $1 AND status IN ('processing', 'sent');

-- mint items

-- name: get_mint_items
-- A payment's mint items, in mint order.
SELECT id, payment_id, payer, token_address, mint_id, payment_tx_hash, status, tx_hash,
       error_message, created_at, updated_at, nonce, relayer, raw_tx, attempts
  FROM mint_queue
 WHERE payment_id = $1
 ORDER BY created_at, id;

-- name: list_mint_items
-- Mint items of chain $3's tokens in a status, least recently updated first.
SELECT id, payment_id, payer, token_address, mint_id, payment_tx_hash, status, tx_hash,
       error_message, created_at, updated_at, nonce, relayer, raw_tx, attempts
  FROM mint_queue
 WHERE status = $1
   AND token_address IN (SELECT address FROM tokens WHERE chain_id = $3)
 ORDER BY updated_at, created_at, id
 LIMIT $2;

-- name: pending_mint_items
-- The oldest pending mint items of one token (that of the oldest pending item of a token
-- on chain $2).
SELECT id, payment_id, payer, token_address, mint_id, payment_tx_hash, status, tx_hash,
       error_message, created_at, updated_at, nonce, relayer, raw_tx, attempts
  FROM mint_queue
 WHERE status = 'pending'
   AND token_address = (
       SELECT token_address FROM mint_queue WHERE status = 'pending'
          AND token_address IN (SELECT address FROM tokens WHERE chain_id = $2)
        ORDER BY created_at, id LIMIT 1)
 ORDER BY created_at, id
 LIMIT $1;

-- name: lock_pending_mint_items
-- These mint items if still pending, locked; rows others hold are skipped.
SELECT id, payment_id, payer, token_address, mint_id, payment_tx_hash, status, tx_hash,
       error_message, created_at, updated_at, nonce, relayer, raw_tx, attempts
  FROM mint_queue
 WHERE id = ANY($1::uuid[]) AND status = 'pending'
 ORDER BY created_at, id
   FOR UPDATE SKIP LOCKED;

-- name: mark_mint_items_processing
-- Record the one signed batchMint tx of claimed mint items.
UPDATE mint_queue
   SET status = 'processing', tx_hash = $2, nonce = $3, relayer = $4,
       raw_tx = $5, updated_at = now()
 WHERE id = ANY($1::uuid[])
RETURNING id, payment_id, payer, token_address, mint_id, payment_tx_hash, status, tx_hash,
          error_message, created_at, updated_at, nonce, relayer, raw_tx, attempts;

-- name: mark_mint_items_sent
-- Processing mint items whose tx was broadcast become sent.
UPDATE mint_queue SET status = 'sent', updated_at = now()
 WHERE status = 'processing' AND tx_hash = ANY($1::text[]);

-- name: sent_mint_items
-- The sent mint items of a relayer's lowest-nonce sent txs (at most $2 txs) on chain $3.
SELECT id, payment_id, payer, token_address, mint_id, payment_tx_hash, status, tx_hash,
       error_message, created_at, updated_at, nonce, relayer, raw_tx, attempts
  FROM mint_queue
 WHERE status = 'sent' AND relayer = $1 AND tx_hash IN (
       SELECT tx_hash FROM mint_queue
        WHERE status = 'sent' AND relayer = $1
          AND token_address IN (SELECT address FROM tokens WHERE chain_id = $3)
        GROUP BY tx_hash ORDER BY min(nonce) LIMIT $2)
 ORDER BY updated_at, created_at, id;

-- name: complete_mint_items
-- Mint items not yet terminal become completed (keeping their tx hash when $2 is null).
UPDATE mint_queue
   SET status = 'completed', tx_hash = coalesce($2, tx_hash), updated_at = now()
 WHERE id = ANY($1::uuid[]) AND status IN ('pending', 'processing', 'sent');

-- name: retry_mint_items
-- Count an attempt: back to pending with fresh tx fields, or failed (keeping them) at $3.
UPDATE mint_queue
   SET attempts = attempts + 1,
       status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END,
       error_message = $2,
       tx_hash = CASE WHEN attempts + 1 >= $3 THEN tx_hash END,
       nonce = CASE WHEN attempts + 1 >= $3 THEN nonce END,
       relayer = CASE WHEN attempts + 1 >= $3 THEN relayer END,
       raw_tx = CASE WHEN attempts + 1 >= $3 THEN raw_tx END,
       updated_at = now()
 WHERE id = ANY($1::uuid[]) AND status IN ('pending', 'processing', 'sent');

-- relayer outbox

-- name: unconfirmed_txs
-- A relayer's signed txs from a nonce on (and any still processing), one per nonce.
SELECT DISTINCT ON (nonce)
       nonce, tx_hash, raw_tx,
       bool_or(status = 'processing') OVER (PARTITION BY nonce) AS processing
  FROM (
        SELECT nonce, tx_hash, raw_tx, status FROM payment_queue
         WHERE relayer = $1 AND (nonce >= $2 OR status = 'processing') AND raw_tx IS NOT NULL
           AND chain_id = $3
        UNION ALL
        SELECT nonce, tx_hash, raw_tx, status FROM mint_queue
         WHERE relayer = $1 AND (nonce >= $2 OR status = 'processing') AND raw_tx IS NOT NULL
           AND token_address IN (SELECT address FROM tokens WHERE chain_id = $3)
        UNION ALL
        SELECT nonce, tx_hash, raw_tx, status FROM payouts
         WHERE relayer = $1 AND (nonce >= $2 OR status = 'processing') AND raw_tx IS NOT NULL
           AND chain_id = $3
       ) AS txs
 ORDER BY nonce, tx_hash;

-- name: raw_tx_to_replace
-- The raw tx a relayer's unfinished rows carry for (nonce, tx hash), if any.
SELECT raw_tx FROM payment_queue
 WHERE relayer = $1 AND nonce = $2 AND tx_hash = $3 AND status IN ('processing', 'sent')
UNION ALL
SELECT raw_tx FROM mint_queue
 WHERE relayer = $1 AND nonce = $2 AND tx_hash = $3 AND status IN ('processing', 'sent')
UNION ALL
SELECT raw_tx FROM payouts
 WHERE relayer = $1 AND nonce = $2 AND tx_hash = $3 AND status IN ('processing', 'sent')
LIMIT 1;

-- name: replace_payment_tx
-- Unfinished payments of (relayer, nonce, old hash) carry the replacement tx.
UPDATE payment_queue SET tx_hash = $4, raw_tx = $5, updated_at = now()
 WHERE relayer = $1 AND nonce = $2 AND tx_hash = $3 AND status IN ('processing', 'sent');

-- name: replace_mint_tx
-- Unfinished mint items of (relayer, nonce, old hash) carry the replacement tx.
UPDATE mint_queue SET tx_hash = $4, raw_tx = $5, updated_at = now()
 WHERE relayer = $1 AND nonce = $2 AND tx_hash = $3 AND status IN ('processing', 'sent');

-- name: record_relayer_tx
-- Remember a tx signed for a relayer nonce (any of them may be the one mined).
INSERT INTO relayer_txs (tx_hash, relayer, nonce, raw_tx, chain_id)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tx_hash) DO NOTHING;

-- name: tx_hashes
-- Every tx hash signed for these nonces of a relayer, oldest first.
SELECT nonce, tx_hash FROM relayer_txs
 WHERE relayer = $1 AND nonce = ANY($2::bigint[]) AND chain_id = $3
 ORDER BY nonce, created_at, tx_hash;

-- operators

-- name: recent_activity
-- The age of the oldest sent payment and the completions of the last minute.
SELECT
  (SELECT extract(epoch FROM now() - min(processed_at))
     FROM payment_queue WHERE status = 'sent') AS oldest_sent_age_s,
  (SELECT count(*) FROM payment_queue
    WHERE status = 'completed'
      AND updated_at >= now() - interval '1 minute') AS completed,
  (SELECT count(*) FROM mint_queue
    WHERE status = 'completed'
      AND updated_at >= now() - interval '1 minute') AS mints_completed;

-- relayer leases

-- name: acquire_relayer_lease
-- Take or renew a relayer's lease unless another holder's is still valid; the holder.
INSERT INTO relayer_leases (address, holder, expires_at, chain_id)
VALUES ($1, $2, now() + make_interval(secs => $3), $4)
ON CONFLICT (chain_id, address) DO UPDATE
    SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
        updated_at = now()
  WHERE relayer_leases.holder = EXCLUDED.holder
     OR relayer_leases.expires_at < now()
RETURNING holder;

-- name: release_relayer_lease
-- Give up a relayer's lease if this holder has it.
DELETE FROM relayer_leases WHERE address = $1 AND holder = $2 AND chain_id = $3;

-- default network

-- name: adopt_default_payments
-- Payments of the default network (chain_id NULL) get its chain id (idx_payment_queue_no_chain).
UPDATE payment_queue SET chain_id = $1 WHERE chain_id IS NULL;

-- name: default_network_rows
-- Whether unfinished payments or relayer nonces of the default network await adoption.
SELECT EXISTS (SELECT 1 FROM payment_queue
                WHERE chain_id IS NULL AND status IN ('pending', 'processing', 'sent'))
    OR EXISTS (SELECT 1 FROM relayers WHERE chain_id = 0);

-- name: adopt_default_relayers
-- The default network's relayer nonces (chain 0) move to its chain id (never lowering one).
INSERT INTO relayers (address, next_nonce, chain_id)
SELECT address, next_nonce, $1 FROM relayers WHERE chain_id = 0
ON CONFLICT (chain_id, address) DO UPDATE
    SET next_nonce = greatest(relayers.next_nonce, EXCLUDED.next_nonce), updated_at = now();

-- name: drop_default_relayers
-- The chain-0 relayer rows, once moved.
DELETE FROM relayers WHERE chain_id = 0;

-- name: adopt_default_leases
-- The default network's relayer leases (chain 0) move to its chain id unless taken there.
INSERT INTO relayer_leases (address, holder, expires_at, chain_id)
SELECT address, holder, expires_at, $1 FROM relayer_leases WHERE chain_id = 0
ON CONFLICT (chain_id, address) DO NOTHING;

-- name: drop_default_leases
-- The chain-0 relayer leases, once moved.
DELETE FROM relayer_leases WHERE chain_id = 0;

-- name: adopt_default_relayer_txs
-- The default network's recorded relayer txs (chain 0) move to its chain id.
UPDATE relayer_txs SET chain_id = $1 WHERE chain_id = 0;

-- accounts and API keys (0010)

-- name: create_account
-- Insert an account.
INSERT INTO accounts (id, role, name, fee_bps, payout_address, created_at)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: get_account
-- The account of an id.
SELECT id, role, name, fee_bps, payout_address, created_at, revoked_at
  FROM accounts
 WHERE id = $1;

-- name: list_accounts
-- A page of accounts, oldest first: those after the account $2 (NULL: from the first).
SELECT id, role, name, fee_bps, payout_address, created_at, revoked_at
  FROM accounts
 WHERE $2::uuid IS NULL
    OR (created_at, id) > (SELECT a.created_at, a.id FROM accounts a WHERE a.id = $2)
 ORDER BY created_at, id
 LIMIT $1;

-- name: revoke_account
-- Revoke an account (its keys stop working with it); a second revocation keeps the first time.
UPDATE accounts SET revoked_at = coalesce(revoked_at, $2)
 WHERE id = $1
RETURNING id, role, name, fee_bps, payout_address, created_at, revoked_at;

-- name: active_operator_exists
-- Whether an operator account is not revoked.
SELECT EXISTS (SELECT 1 FROM accounts WHERE role = 'operator' AND revoked_at IS NULL);

-- name: create_api_key
-- Insert a key of an account that exists and is not revoked (no row returned otherwise).
INSERT INTO api_keys (id, account_id, prefix, secret_hash, name, created_at, expires_at)
SELECT $1::uuid, a.id, $3::text, $4::bytea, $5::text, $6::timestamptz, $7::timestamptz
  FROM accounts a
 WHERE a.id = $2 AND a.revoked_at IS NULL
RETURNING id;

-- name: find_api_key_by_prefix
-- A key by its prefix, with its account.
SELECT k.id, k.account_id, k.prefix, k.secret_hash, k.name, k.created_at, k.expires_at,
       k.revoked_at, k.last_used_at, a.role, a.name AS account_name, a.fee_bps,
       a.payout_address, a.created_at AS account_created_at,
       a.revoked_at AS account_revoked_at
  FROM api_keys k
  JOIN accounts a ON a.id = k.account_id
 WHERE k.prefix = $1;

-- name: list_api_keys
-- A page of an account's keys, oldest first: those after its key $3 (NULL: from the first).
SELECT id, account_id, prefix, secret_hash, name, created_at, expires_at, revoked_at,
       last_used_at
  FROM api_keys
 WHERE account_id = $1
   AND ($3::uuid IS NULL
        OR (created_at, id) > (SELECT k.created_at, k.id FROM api_keys k WHERE k.id = $3))
 ORDER BY created_at, id
 LIMIT $2;

-- name: revoke_api_key
-- Revoke a key (only one of account $2 when given); a second revocation keeps the first time.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)
 WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2)
RETURNING id, account_id, prefix, secret_hash, name, created_at, expires_at, revoked_at,
          last_used_at;

-- name: touch_api_key
-- Record a key's use, at most once a minute.
UPDATE api_keys SET last_used_at = $2::timestamptz
 WHERE id = $1
   AND (last_used_at IS NULL OR last_used_at <= $2::timestamptz - interval '1 minute');

-- ledger (payfirst.domain.ledger; migration 0011)

-- name: ledger_upsert_accounts
-- Create the ledger accounts of a completion that do not exist yet (in key order).
INSERT INTO ledger_accounts (kind, owner, asset, chain_id)
SELECT DISTINCT a.kind, a.owner, a.asset, a.chain_id
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS a (kind, owner, asset, chain_id)
 ORDER BY a.kind, a.owner, a.asset, a.chain_id
ON CONFLICT (kind, owner, asset, chain_id) DO NOTHING;

-- name: ledger_record_payments
-- One `payment` ledger transaction per completed payment ($1, $2) and all their entries;
-- a payment already recorded (completed again after a hand edit) is not recorded twice. An
-- entry whose account is missing fails the statement (account_id NOT NULL), never dropped.
WITH transactions AS (
    INSERT INTO ledger_transactions (id, kind, payment_id)
    SELECT t.id, 'payment', t.payment_id FROM unnest($1::uuid[], $2::uuid[]) AS t (id, payment_id)
    ON CONFLICT (payment_id, kind) DO NOTHING
    RETURNING id
)
INSERT INTO ledger_entries (transaction_id, position, account_id, amount)
SELECT e.transaction_id, e.position, a.id, e.amount
  FROM unnest($3::uuid[], $4::integer[], $5::text[], $6::text[], $7::text[], $8::bigint[],
              $9::numeric[]) AS e (transaction_id, position, kind, owner, asset, chain_id, amount)
  JOIN transactions t ON t.id = e.transaction_id
  LEFT JOIN ledger_accounts a
    ON a.kind = e.kind AND a.owner = e.owner AND a.asset = e.asset AND a.chain_id = e.chain_id;

-- name: ledger_add_reversal
-- A `reversal` ledger transaction of a payment's `payment` one, unless it has one; its id.
INSERT INTO ledger_transactions (id, kind, payment_id, reverses, reason)
SELECT $2::uuid, 'reversal', t.payment_id, t.id, $3::text
  FROM ledger_transactions t
 WHERE t.payment_id = $1 AND t.kind = 'payment'
ON CONFLICT (payment_id, kind) DO NOTHING
RETURNING id;

-- name: ledger_reverse_entries
-- The reversal's entries: those of the transaction it reverses, negated.
INSERT INTO ledger_entries (transaction_id, position, account_id, amount)
SELECT r.id, e.position, e.account_id, -e.amount
  FROM ledger_transactions r
  JOIN ledger_entries e ON e.transaction_id = r.reverses
 WHERE r.id = $1;

-- name: ledger_unbalanced
-- Ledger transactions whose entries of an asset on a chain do not sum to zero, with the sum.
SELECT e.transaction_id, sum(e.amount) AS total
  FROM ledger_entries e
  JOIN ledger_accounts a ON a.id = e.account_id
 GROUP BY e.transaction_id, a.asset, a.chain_id
HAVING sum(e.amount) <> 0
 ORDER BY e.transaction_id
 LIMIT $1;

-- name: ledger_records
-- A page (by id after $1) of the payments completed or in the ledger; $3: the default
-- network's chain id for payments of no recorded chain.
SELECT q.id, q.status, q.payer, q.token_address, q.payment_asset, q.amount,
       coalesce(q.chain_id, $3::bigint) AS chain_id, q.provider_id, q.fee_bps, q.tx_hash, q.auth_nonce,
       EXISTS (SELECT 1 FROM ledger_transactions t
                WHERE t.payment_id = q.id AND t.kind = 'payment') AS has_payment_transaction
  FROM payment_queue q
 WHERE ($1::uuid IS NULL OR q.id > $1)
   AND (q.status = 'completed'
        OR EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.payment_id = q.id))
 ORDER BY q.id
 LIMIT $2;

-- name: ledger_entries_of_payments
-- The entries of these payments' ledger transactions, with their accounts, in order.
SELECT t.payment_id, t.kind AS transaction_kind, a.kind, a.owner, a.asset, a.chain_id,
       e.amount
  FROM ledger_transactions t
  JOIN ledger_entries e ON e.transaction_id = t.id
  JOIN ledger_accounts a ON a.id = e.account_id
 WHERE t.payment_id = ANY($1::uuid[])
 ORDER BY t.payment_id, t.kind, e.position;

-- name: ledger_holdings
-- What the ledger says a treasury holds per asset on a chain: provider and fee accounts
-- and its own external account.
SELECT a.asset, sum(e.amount) AS amount
  FROM ledger_accounts a
  JOIN ledger_entries e ON e.account_id = a.id
 WHERE a.chain_id = $2
   AND (a.kind IN ('provider', 'fees') OR (a.kind = 'external' AND a.owner = $1))
 GROUP BY a.asset;

-- name: amounts_in_flight_to
-- Payments to a payee signed but not yet decided on a chain ($3: it is the default
-- network, whose payments may have no recorded chain), per asset.
SELECT payment_asset, sum(amount) AS amount
  FROM payment_queue
 WHERE status IN ('processing', 'sent') AND lower(token_address) = lower($1)
   AND (chain_id = $2 OR (chain_id IS NULL AND $3::boolean))
 GROUP BY payment_asset;
