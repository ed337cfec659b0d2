-- Kept in step with PostgreSQL's 0005, which changes only PL/pgSQL: on SQLite the
-- same-purchase match is done by the store in Python (SqliteStore._same_purchase) and
-- change notices come from TEMP triggers the store creates on its own connection.
SELECT 1;
