-- The queries of adapters/store_policies.py (see sql/__init__.py for the format).

-- payer challenges and payers

-- name: insert_payer_challenge
-- Record a challenge an agent is to sign with a payer key.
INSERT INTO payer_challenges (nonce, account_id, address, message, expires_at)
VALUES ($1, $2, $3, $4, $5);

-- name: open_payer_challenges
-- The unused challenges of an agent for an address, not expired at $3, newest first.
SELECT nonce, account_id, address, message, expires_at
  FROM payer_challenges
 WHERE account_id = $1 AND address = $2 AND used_at IS NULL AND expires_at > $3
 ORDER BY created_at DESC
 LIMIT 10;

-- name: use_payer_challenge
-- Use a challenge once (if still unused and unexpired at $2).
UPDATE payer_challenges SET used_at = $2
 WHERE nonce = $1 AND used_at IS NULL AND expires_at > $2
RETURNING account_id, address;

-- name: insert_agent_payer
-- Attach a payer address to an agent (nothing if the address is anyone's already).
INSERT INTO agent_payers (address, account_id, verified_at, created_at)
VALUES ($1, $2, $3, $3)
ON CONFLICT (address) DO NOTHING
RETURNING address, account_id, verified_at, created_at;

-- name: get_agent_payer
-- One payer address.
SELECT address, account_id, verified_at, created_at FROM agent_payers WHERE address = $1;

-- name: list_agent_payers
-- Payer addresses of an agent ($1; NULL: everyone's), by address, after $3, at most $2.
SELECT address, account_id, verified_at, created_at
  FROM agent_payers
 WHERE ($1::uuid IS NULL OR account_id = $1) AND ($3::text IS NULL OR address > $3)
 ORDER BY address
 LIMIT $2;

-- name: delete_agent_payer
-- Detach a payer address (of agent $2; NULL: anyone's); its policy goes with it.
DELETE FROM agent_payers
 WHERE address = $1 AND ($2::uuid IS NULL OR account_id = $2)
RETURNING address;

-- policies

-- name: upsert_spending_policy
-- Set a payer's whole policy.
INSERT INTO spending_policies (
    payer, max_per_payment, max_per_day, max_per_month, approval_threshold,
    allowed_providers, allowed_endpoints, allowed_pay_to, allowed_networks, updated_at
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (payer) DO UPDATE SET
    max_per_payment = EXCLUDED.max_per_payment,
    max_per_day = EXCLUDED.max_per_day,
    max_per_month = EXCLUDED.max_per_month,
    approval_threshold = EXCLUDED.approval_threshold,
    allowed_providers = EXCLUDED.allowed_providers,
    allowed_endpoints = EXCLUDED.allowed_endpoints,
    allowed_pay_to = EXCLUDED.allowed_pay_to,
    allowed_networks = EXCLUDED.allowed_networks,
    updated_at = EXCLUDED.updated_at;

-- name: get_spending_policy
-- A payer's policy.
SELECT payer, max_per_payment, max_per_day, max_per_month, approval_threshold,
       allowed_providers, allowed_endpoints, allowed_pay_to, allowed_networks, updated_at
  FROM spending_policies
 WHERE payer = $1;

-- name: delete_spending_policy
-- Remove a payer's policy.
DELETE FROM spending_policies WHERE payer = $1 RETURNING payer;

-- name: policy_spent
-- What a payer spent (or holds) in an asset: in the last 24 h, and this calendar month (UTC);
-- failed payments do not count.
SELECT coalesce(sum(q.amount) FILTER (WHERE q.created_at > now() - interval '24 hours'), 0)
           AS day,
       coalesce(sum(q.amount) FILTER (
           WHERE q.created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
           0) AS month
  FROM payment_queue q
 WHERE q.payer = $1 AND q.payment_asset = $2
   AND q.created_at >= least(now() - interval '24 hours',
                             date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
   AND q.status NOT IN ('failed', 'confirmation_failed');

-- approvals

-- name: list_awaiting_approval
-- Payments awaiting approval whose payer is agent $1's (NULL: anyone's), oldest first.
SELECT q.id, q.payment_type, q.payer, q.amount, q.payment_asset, q.token_address, q.quantity,
       q."authorization", q.metadata, q.status, q.tx_hash, q.nonce, q.relayer, q.raw_tx,
       q.error, q.created_at, q.processed_at, q.result, q.chain_id, q.endpoint_id
  FROM payment_queue q
 WHERE q.status = 'awaiting_approval'
   AND ($1::uuid IS NULL
        OR q.payer IN (SELECT p.address FROM agent_payers p WHERE p.account_id = $1))
 ORDER BY q.created_at, q.id
 LIMIT $2;

-- name: approve_payment
-- A payment awaiting approval (whose payer is agent $2's; NULL: anyone's) becomes pending.
UPDATE payment_queue SET status = 'pending', updated_at = now()
 WHERE id = $1 AND status = 'awaiting_approval'
   AND ($2::uuid IS NULL
        OR payer IN (SELECT p.address FROM agent_payers p WHERE p.account_id = $2))
RETURNING id;

-- name: wake_senders
-- Tell every worker a payment is pending (as queueing one does).
SELECT pg_notify('payfirst_payment_queued', '');

-- name: reject_payment
-- A payment awaiting approval (whose payer is agent $2's; NULL: anyone's) fails.
UPDATE payment_queue SET status = 'failed', error = $3, updated_at = now()
 WHERE id = $1 AND status = 'awaiting_approval'
   AND ($2::uuid IS NULL
        OR payer IN (SELECT p.address FROM agent_payers p WHERE p.account_id = $2))
RETURNING token_address, quantity, payment_type;
