-- The queries of adapters/store_payouts.py (see sql/__init__.py for the format).

-- creating a payout (one transaction, the provider's account row locked)

-- name: payout_lock_provider
-- A provider's account and payout terms, its row locked until the transaction ends.
SELECT id, role, payout_address, revoked_at
  FROM accounts
 WHERE id = $1
   FOR UPDATE;

-- name: payout_available
-- A provider's ledger balance of an asset on a chain, and its payouts not yet decided.
SELECT
  (SELECT coalesce(sum(e.amount), 0)
     FROM ledger_accounts a
     JOIN ledger_entries e ON e.account_id = a.id
    WHERE a.kind = 'provider' AND a.owner = ($1::uuid)::text AND a.asset = $2::text
      AND a.chain_id = $3::bigint) AS balance,
  (SELECT coalesce(sum(p.amount), 0)
     FROM payouts p
    WHERE p.provider_id = $1::uuid AND p.asset = $2::text AND p.chain_id = $3::bigint
      AND p.status IN ('pending', 'processing', 'sent')) AS in_payout;

-- name: insert_payout
-- Insert a pending payout.
INSERT INTO payouts (id, provider_id, asset, chain_id, to_address, amount, trigger)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, provider_id, asset, chain_id, to_address, amount, status, trigger, relayer,
          nonce, tx_hash, raw_tx, error, created_at, updated_at, completed_at;

-- reading payouts and balances

-- name: get_payout
-- One payout by id.
SELECT id, provider_id, asset, chain_id, to_address, amount, status, trigger, relayer,
       nonce, tx_hash, raw_tx, error, created_at, updated_at, completed_at
  FROM payouts
 WHERE id = $1;

-- name: list_payouts
-- A page of payouts, newest first (of provider $1 when given): those before payout $3.
SELECT id, provider_id, asset, chain_id, to_address, amount, status, trigger, relayer,
       nonce, tx_hash, raw_tx, error, created_at, updated_at, completed_at
  FROM payouts
 WHERE ($1::uuid IS NULL OR provider_id = $1::uuid)
   AND ($3::uuid IS NULL
        OR (created_at, id) < (SELECT p.created_at, p.id FROM payouts p WHERE p.id = $3::uuid))
 ORDER BY created_at DESC, id DESC
 LIMIT $2;

-- name: provider_ledger_balances
-- A provider's ledger balance per asset and chain.
SELECT a.asset, a.chain_id, sum(e.amount) AS amount
  FROM ledger_accounts a
  JOIN ledger_entries e ON e.account_id = a.id
 WHERE a.kind = 'provider' AND a.owner = ($1::uuid)::text
 GROUP BY a.asset, a.chain_id;

-- name: provider_payout_sums
-- A provider's payouts per asset and chain: undecided (in payout) and completed (paid out).
SELECT asset, chain_id,
       coalesce(sum(amount) FILTER (WHERE status IN ('pending', 'processing', 'sent')), 0)
           AS in_payout,
       coalesce(sum(amount) FILTER (WHERE status = 'completed'), 0) AS paid_out
  FROM payouts
 WHERE provider_id = $1
 GROUP BY asset, chain_id;

-- name: provider_pending_payments
-- A provider's share (amount - fee, the fee rounded down) of its payments accepted but not
-- completed, per asset and chain.
SELECT payment_asset AS asset, chain_id,
       sum(amount - div(amount * coalesce(fee_bps, 0), 10000)) AS amount
  FROM payment_queue
 WHERE provider_id = $1 AND status IN ('pending', 'processing', 'sent')
   AND chain_id IS NOT NULL
 GROUP BY payment_asset, chain_id;

-- name: payout_candidates
-- Per provider with automatic payouts and a payout address, per asset on chain $1: what is
-- available (ledger balance - undecided payouts), its terms, and the seconds since its
-- last payout that did not fail (or since the account was created).
WITH booked AS (
    SELECT acc.id AS provider_id, la.asset, acc.payout_threshold, acc.payout_interval_s,
           acc.created_at, sum(e.amount) AS balance
      FROM accounts acc
      JOIN ledger_accounts la
        ON la.kind = 'provider' AND la.owner = acc.id::text AND la.chain_id = $1
      JOIN ledger_entries e ON e.account_id = la.id
     WHERE acc.role = 'provider' AND acc.revoked_at IS NULL AND acc.payout_address IS NOT NULL
       AND (acc.payout_threshold IS NOT NULL OR acc.payout_interval_s IS NOT NULL)
     GROUP BY acc.id, la.asset, acc.payout_threshold, acc.payout_interval_s, acc.created_at
)
SELECT b.provider_id, b.asset, b.payout_threshold, b.payout_interval_s,
       b.balance - coalesce(f.in_payout, 0) AS available,
       extract(epoch FROM now() - coalesce(f.last_at, b.created_at)) AS since_s
  FROM booked b
  LEFT JOIN LATERAL (
       SELECT sum(p.amount) FILTER (WHERE p.status IN ('pending', 'processing', 'sent'))
                  AS in_payout,
              max(p.created_at) FILTER (WHERE p.status <> 'failed') AS last_at
         FROM payouts p
        WHERE p.provider_id = b.provider_id AND p.asset = b.asset AND p.chain_id = $1
       ) f ON true
 WHERE b.balance - coalesce(f.in_payout, 0) > 0;

-- payout terms (accounts)

-- name: get_payout_terms
-- An account's payout terms.
SELECT payout_address, payout_threshold, payout_interval_s FROM accounts WHERE id = $1;

-- name: update_account_terms
-- Set the terms flagged ($2 payout address, $4 threshold, $6 interval, $8 fee) of an account.
UPDATE accounts
   SET payout_address = CASE WHEN $2::boolean THEN $3::text ELSE payout_address END,
       payout_threshold = CASE WHEN $4::boolean THEN $5::numeric ELSE payout_threshold END,
       payout_interval_s = CASE WHEN $6::boolean THEN $7::integer ELSE payout_interval_s END,
       fee_bps = CASE WHEN $8::boolean THEN $9::integer ELSE fee_bps END
 WHERE id = $1
RETURNING id, role, name, fee_bps, payout_address, created_at, revoked_at, payout_threshold,
          payout_interval_s;

-- the pipeline (the treasury relayer's payout loop, broadcaster and confirmer)

-- name: lock_pending_payouts
-- The oldest pending payouts of chain $2, locked; rows others hold are skipped.
SELECT id, provider_id, asset, chain_id, to_address, amount, status, trigger, relayer,
       nonce, tx_hash, raw_tx, error, created_at, updated_at, completed_at
  FROM payouts
 WHERE status = 'pending' AND chain_id = $2
 ORDER BY created_at, id
 LIMIT $1
   FOR UPDATE SKIP LOCKED;

-- name: mark_payout_processing
-- Record the signed tx of one claimed payout.
UPDATE payouts
   SET status = 'processing', relayer = $2, nonce = $3, tx_hash = $4, raw_tx = $5,
       updated_at = now()
 WHERE id = $1 AND status = 'pending';

-- name: mark_payouts_sent
-- Processing payouts whose tx was broadcast become sent.
UPDATE payouts SET status = 'sent', updated_at = now()
 WHERE status = 'processing' AND tx_hash = ANY($1::text[]);

-- name: sent_payouts
-- A relayer's sent payouts on chain $3, lowest nonce first (at most $2).
SELECT id, provider_id, asset, chain_id, to_address, amount, status, trigger, relayer,
       nonce, tx_hash, raw_tx, error, created_at, updated_at, completed_at
  FROM payouts
 WHERE status = 'sent' AND relayer = $1 AND chain_id = $3
 ORDER BY nonce
 LIMIT $2;

-- name: replace_payout_tx
-- Unfinished payouts of (relayer, nonce, old hash) carry the replacement tx.
UPDATE payouts SET tx_hash = $4, raw_tx = $5, updated_at = now()
 WHERE relayer = $1 AND nonce = $2 AND tx_hash = $3 AND status IN ('processing', 'sent');

-- name: lock_payout_to_decide
-- A payout about to be completed or failed, its row locked.
SELECT id, provider_id, asset, chain_id, to_address, amount, status, trigger, relayer,
       nonce, tx_hash, raw_tx, error, created_at, updated_at, completed_at
  FROM payouts
 WHERE id = $1
   FOR UPDATE;

-- name: complete_payout
-- A payout paid at depth becomes completed, with the tx that paid it.
UPDATE payouts
   SET status = 'completed', tx_hash = $2, error = NULL, completed_at = now(),
       updated_at = now()
 WHERE id = $1 AND status IN ('processing', 'sent');

-- name: ledger_record_payout
-- The `payout` ledger transaction ($1) of payout $2 and its entries; an entry whose account
-- is missing fails the statement (account_id NOT NULL).
WITH t AS (
    INSERT INTO ledger_transactions (id, kind, payout_id) VALUES ($1, 'payout', $2)
    RETURNING id
)
INSERT INTO ledger_entries (transaction_id, position, account_id, amount)
SELECT t.id, e.position, a.id, e.amount
  FROM t
  CROSS JOIN unnest($3::integer[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                    $8::numeric[]) AS e (position, kind, owner, asset, chain_id, amount)
  LEFT JOIN ledger_accounts a
    ON a.kind = e.kind AND a.owner = e.owner AND a.asset = e.asset AND a.chain_id = e.chain_id;

-- name: fail_payout
-- A sent payout whose tx reverted at depth fails: nothing moved, its amount is available.
UPDATE payouts SET status = 'failed', error = $2, updated_at = now()
 WHERE id = $1 AND status = 'sent';

-- the ledger check

-- name: payouts_to_check
-- Payouts of chain $1 whose tx may have moved money the ledger does not show yet: signed
-- and undecided, or completed in the last hour (their tx may be above the check's block).
SELECT id, provider_id, asset, chain_id, to_address, amount, status, trigger, relayer,
       nonce, tx_hash, raw_tx, error, created_at, updated_at, completed_at
  FROM payouts
 WHERE chain_id = $1
   AND (status IN ('processing', 'sent')
        OR (status = 'completed' AND completed_at > now() - interval '1 hour'))
 ORDER BY nonce;
