-- Relayer leases: a worker holds a relayer key by a lease it renews; a dead worker's
-- lease expires and another worker takes the key over.
CREATE TABLE relayer_leases (
    address     text PRIMARY KEY,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Wake workers the moment a payment is queued (delivered on commit, one per transaction).
CREATE FUNCTION payfirst_notify_payment_queued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payfirst_payment_queued', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER payment_queued_notify
    AFTER INSERT ON payment_queue
    FOR EACH STATEMENT EXECUTE FUNCTION payfirst_notify_payment_queued();
