-- write_turn holds no rows: an Update that PostgreSQL aborted for
-- serialisation runs again holding an EXCLUSIVE lock on it, taken before
-- the transaction's first query (so before its snapshot). Updates run
-- again one at a time, across every host, the way SQLite's single writer
-- runs them all; first attempts stay optimistic and concurrent.
CREATE TABLE write_turn (id INTEGER PRIMARY KEY);
