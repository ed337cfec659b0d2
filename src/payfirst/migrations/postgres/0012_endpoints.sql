-- Providers' paid endpoints (payfirst.domain.endpoints): what payfirst sells for them, at
-- the price this registry says, never the client's or the provider's word at payment time.
-- `resource` is a path pattern ('/weather/{city}') or a full URL; `method` '*' is any.
-- A fixed price is `amount` per call; a per-unit one is `amount` per unit, the count read
-- from the request's `unit_param` (1..max_units). An endpoint is never deleted, only
-- disabled: payments and ledger entries keep pointing at it.
CREATE TABLE endpoints (
    id                   uuid PRIMARY KEY,
    provider_id          uuid NOT NULL REFERENCES accounts (id),
    method               text NOT NULL,
    resource             text NOT NULL,
    pricing              text NOT NULL DEFAULT 'fixed',
    amount               numeric(78, 0) NOT NULL,
    unit_param           text,
    max_units            integer,
    asset                text NOT NULL,
    chain_id             bigint NOT NULL,
    pay_to               text NOT NULL,
    description          text NOT NULL DEFAULT '',
    mime_type            text NOT NULL DEFAULT 'application/json',
    input_schema         jsonb,
    output_schema        jsonb,
    discoverable         boolean NOT NULL DEFAULT false,
    max_timeout_seconds  integer NOT NULL DEFAULT 300,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    disabled_at          timestamptz,
    CONSTRAINT endpoints_method_check
        CHECK (method IN ('*', 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')),
    CONSTRAINT endpoints_resource_check CHECK (char_length(resource) BETWEEN 1 AND 512),
    CONSTRAINT endpoints_pricing_check CHECK (
        (pricing = 'fixed' AND unit_param IS NULL AND max_units IS NULL)
        OR (pricing = 'per_unit' AND unit_param IS NOT NULL AND max_units >= 1)),
    CONSTRAINT endpoints_amount_check CHECK (amount > 0),
    CONSTRAINT endpoints_description_check CHECK (char_length(description) <= 1000),
    CONSTRAINT endpoints_max_timeout_check CHECK (max_timeout_seconds BETWEEN 1 AND 86400)
);

-- A provider's endpoints by page; the discoverable ones (Bazaar) by page.
CREATE INDEX idx_endpoints_provider_created ON endpoints (provider_id, created_at, id);
CREATE INDEX idx_endpoints_discoverable ON endpoints (created_at, id)
    WHERE discoverable AND disabled_at IS NULL;

-- The endpoint a payment paid for (no foreign key, like provider_id: the pipeline's hot
-- table never waits on the platform's).
ALTER TABLE payment_queue ADD COLUMN endpoint_id uuid;

-- A provider's payments by page: by the provider a platform-collected payment is for, and
-- by the endpoint paid for.
CREATE INDEX idx_payment_queue_provider_created ON payment_queue (provider_id, created_at, id)
    WHERE provider_id IS NOT NULL;
CREATE INDEX idx_payment_queue_endpoint_created ON payment_queue (endpoint_id, created_at, id)
    WHERE endpoint_id IS NOT NULL;
