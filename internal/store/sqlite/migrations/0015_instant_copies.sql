-- Instant fenced copies (issue 15): a configuration cloned with its
-- source's saved memory state keeps the source's MACs and addresses (a
-- resumed guest has them in memory), so it may only be deployed fenced;
-- instant_of names the configuration whose state it took ('' for every
-- other configuration). The state files themselves are shared as hard
-- links: the file system's link count is their reference count.
ALTER TABLE configs ADD COLUMN instant_of TEXT NOT NULL DEFAULT '';
