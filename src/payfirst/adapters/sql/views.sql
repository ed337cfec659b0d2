-- The queries of adapters/store_views.py (see sql/__init__.py for the format).
--
-- Pages are newest first by a keyset: (created_at, id) for payments, (created_at,
-- transaction_id, position) for ledger entries, each page strictly after the previous
-- page's last key. With no key the bounds are 'infinity' and the largest uuid, so one
-- statement serves every page and its row comparison stays an index condition. since is
-- inclusive, until exclusive (NULL: unbounded).

-- name: view_payments_of_provider
-- A page of a provider's ($1) payments: those collected for it (idx_payment_queue_provider_created)
-- and those paid to its endpoints (idx_payment_queue_endpoint_created, at most a page from
-- each endpoint), merged; UNION drops a payment that is both. $2, $3 the key the page
-- starts after; $4 statuses (NULL: any); $5 since; $6 until; $7 the page size.
SELECT v.*
  FROM ((SELECT p.id, p.status, p.payment_type, p.payer, p.amount, p.payment_asset,
                p.chain_id, p.token_address, p.endpoint_id, p.provider_id, p.fee_bps,
                p.tx_hash, p.error, p.created_at, p.updated_at
           FROM payment_queue p
          WHERE p.provider_id = $1
            AND (p.created_at, p.id) < (coalesce($2::timestamptz, 'infinity'),
                                        coalesce($3::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
            AND p.created_at >= coalesce($5::timestamptz, '-infinity')
            AND p.created_at < coalesce($6::timestamptz, 'infinity')
            AND ($4::text[] IS NULL OR p.status = ANY ($4::text[]))
          ORDER BY p.created_at DESC, p.id DESC
          LIMIT $7)
        UNION
        (SELECT q.*
           FROM endpoints e
          CROSS JOIN LATERAL (
                SELECT p.id, p.status, p.payment_type, p.payer, p.amount, p.payment_asset,
                       p.chain_id, p.token_address, p.endpoint_id, p.provider_id, p.fee_bps,
                       p.tx_hash, p.error, p.created_at, p.updated_at
                  FROM payment_queue p
                 WHERE p.endpoint_id = e.id
                   AND (p.created_at, p.id) < (coalesce($2::timestamptz, 'infinity'),
                                               coalesce($3::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
                   AND p.created_at >= coalesce($5::timestamptz, '-infinity')
                   AND p.created_at < coalesce($6::timestamptz, 'infinity')
                   AND ($4::text[] IS NULL OR p.status = ANY ($4::text[]))
                 ORDER BY p.created_at DESC, p.id DESC
                 LIMIT $7) q
          WHERE e.provider_id = $1)) v
 ORDER BY v.created_at DESC, v.id DESC
 LIMIT $7;

-- name: view_payments_of_endpoint
-- A page of the payments to one endpoint ($1; idx_payment_queue_endpoint_created), and with
-- a provider ($2, NULL: any) only those in its scope: collected for it, or the endpoint is
-- its own. $3.. as view_payments_of_provider's $2..: key, statuses, since, until, size.
SELECT p.id, p.status, p.payment_type, p.payer, p.amount, p.payment_asset,
       p.chain_id, p.token_address, p.endpoint_id, p.provider_id, p.fee_bps,
       p.tx_hash, p.error, p.created_at, p.updated_at
  FROM payment_queue p
 WHERE p.endpoint_id = $1
   AND ($2::uuid IS NULL
        OR p.provider_id = $2
        OR EXISTS (SELECT 1 FROM endpoints e WHERE e.id = $1 AND e.provider_id = $2))
   AND (p.created_at, p.id) < (coalesce($3::timestamptz, 'infinity'),
                               coalesce($4::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
   AND p.created_at >= coalesce($6::timestamptz, '-infinity')
   AND p.created_at < coalesce($7::timestamptz, 'infinity')
   AND ($5::text[] IS NULL OR p.status = ANY ($5::text[]))
 ORDER BY p.created_at DESC, p.id DESC
 LIMIT $8;

-- name: view_payments_all
-- A page of every payment (the operator's listing). No index orders the whole queue by
-- (created_at, id): the newest are found by a scan, cut by since/until. $1.. as
-- view_payments_of_provider's $2..: key, statuses, since, until, size.
SELECT p.id, p.status, p.payment_type, p.payer, p.amount, p.payment_asset,
       p.chain_id, p.token_address, p.endpoint_id, p.provider_id, p.fee_bps,
       p.tx_hash, p.error, p.created_at, p.updated_at
  FROM payment_queue p
 WHERE (p.created_at, p.id) < (coalesce($1::timestamptz, 'infinity'),
                               coalesce($2::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
   AND p.created_at >= coalesce($4::timestamptz, '-infinity')
   AND p.created_at < coalesce($5::timestamptz, 'infinity')
   AND ($3::text[] IS NULL OR p.status = ANY ($3::text[]))
 ORDER BY p.created_at DESC, p.id DESC
 LIMIT $6;

-- name: view_payment
-- One payment ($1) if it is in the scope of provider $2 (collected for it, or paid to one
-- of its endpoints; NULL: any payment).
SELECT p.id, p.status, p.payment_type, p.payer, p.amount, p.payment_asset,
       p.chain_id, p.token_address, p.endpoint_id, p.provider_id, p.fee_bps,
       p.tx_hash, p.error, p.created_at, p.updated_at
  FROM payment_queue p
 WHERE p.id = $1
   AND ($2::uuid IS NULL
        OR p.provider_id = $2
        OR EXISTS (SELECT 1 FROM endpoints e WHERE e.id = p.endpoint_id AND e.provider_id = $2));

-- name: view_entries_of_owner
-- A page of the entries of one owner's accounts of one kind ($1 kind, $2 owner: its
-- accounts by ledger_accounts_key, their entries by idx_ledger_entries_account).
-- $3 payment (NULL: any); $4 since; $5 until; $6, $7, $8 the key the page starts after;
-- $9 the page size.
SELECT e.transaction_id, t.kind AS transaction_kind, t.payment_id, e.position,
       a.kind AS account_kind, a.owner, a.asset, a.chain_id, e.amount, e.created_at
  FROM ledger_accounts a
  JOIN ledger_entries e ON e.account_id = a.id
  JOIN ledger_transactions t ON t.id = e.transaction_id
 WHERE a.kind = $1
   AND a.owner = $2
   AND ($3::uuid IS NULL OR t.payment_id = $3)
   AND e.created_at >= coalesce($4::timestamptz, '-infinity')
   AND e.created_at < coalesce($5::timestamptz, 'infinity')
   AND (e.created_at, e.transaction_id, e.position)
       < (coalesce($6::timestamptz, 'infinity'),
          coalesce($7::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
          coalesce($8::integer, 2147483647))
 ORDER BY e.created_at DESC, e.transaction_id DESC, e.position DESC
 LIMIT $9;

-- name: view_entries_all
-- A page of every ledger entry (the operator's listing), or those of the accounts of one
-- kind ($1, NULL: any), of one payment ($2, NULL: any). $3.. as view_entries_of_owner's $4..
SELECT e.transaction_id, t.kind AS transaction_kind, t.payment_id, e.position,
       a.kind AS account_kind, a.owner, a.asset, a.chain_id, e.amount, e.created_at
  FROM ledger_entries e
  JOIN ledger_accounts a ON a.id = e.account_id
  JOIN ledger_transactions t ON t.id = e.transaction_id
 WHERE ($1::text IS NULL OR a.kind = $1)
   AND ($2::uuid IS NULL OR t.payment_id = $2)
   AND e.created_at >= coalesce($3::timestamptz, '-infinity')
   AND e.created_at < coalesce($4::timestamptz, 'infinity')
   AND (e.created_at, e.transaction_id, e.position)
       < (coalesce($5::timestamptz, 'infinity'),
          coalesce($6::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
          coalesce($7::integer, 2147483647))
 ORDER BY e.created_at DESC, e.transaction_id DESC, e.position DESC
 LIMIT $8;
