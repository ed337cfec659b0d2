-- PostgreSQL gained a one-round-trip queueing function in 0004; SQLite queues in process
-- and needs nothing. This file keeps the two dialects' version numbers aligned.
SELECT 1;
