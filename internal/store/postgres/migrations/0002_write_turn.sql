-- write_turn holds no rows, only a lock: an Update's first attempt holds
-- it in ROW SHARE mode, beside the others; an Update that PostgreSQL
-- aborted for serialisation runs again holding it in EXCLUSIVE mode, taken
-- before the transaction's first query (so before its snapshot): alone,
-- across every host, the way SQLite's single writer runs them all.
CREATE TABLE write_turn (id INTEGER PRIMARY KEY);
