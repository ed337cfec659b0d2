-- Relayer leases: a worker holds a relayer key by a lease it renews; a dead worker's
-- lease expires and another worker takes the key over. (SQLite has no NOTIFY: the store
-- wakes in-process watchers itself.)
CREATE TABLE relayer_leases (
    address     TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
