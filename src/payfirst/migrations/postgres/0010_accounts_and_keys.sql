-- Accounts and their API keys (payfirst.domain.accounts): who may call the admin routes
-- (/v1/...). A key is stored as its visible prefix and the SHA-256 of the whole key, never
-- the key itself (payfirst.usecases.api_keys). A revoked account's keys stop working with
-- it. fee_bps and payout_address are a provider's terms, set for the issues that charge and
-- pay out.
CREATE TABLE accounts (
    id              uuid PRIMARY KEY,
    role            text NOT NULL,
    name            text NOT NULL,
    fee_bps         integer,
    payout_address  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    CONSTRAINT accounts_role_check CHECK (role IN ('operator', 'provider', 'agent')),
    CONSTRAINT accounts_name_check CHECK (char_length(name) BETWEEN 1 AND 100),
    CONSTRAINT accounts_fee_bps_check CHECK (fee_bps BETWEEN 0 AND 10000)
);

-- Listing pages (created_at, id).
CREATE INDEX idx_accounts_created ON accounts (created_at, id);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    account_id    uuid NOT NULL REFERENCES accounts (id),
    prefix        text NOT NULL,
    secret_hash   bytea NOT NULL,
    name          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix),
    CONSTRAINT api_keys_secret_hash_check CHECK (octet_length(secret_hash) = 32),
    CONSTRAINT api_keys_name_check CHECK (char_length(name) <= 100)
);

-- An account's keys, by page.
CREATE INDEX idx_api_keys_account_created ON api_keys (account_id, created_at, id);
