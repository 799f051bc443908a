-- Many hosts (issue 13): the host whose files a journal entry names. Each
-- daemon recovers only its own entries ('' is an entry of a daemon
-- without a host name: recovered by any).
ALTER TABLE ops ADD COLUMN host TEXT NOT NULL DEFAULT '';
