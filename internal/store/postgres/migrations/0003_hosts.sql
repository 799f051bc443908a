-- The daemons sharing the database (one per host) and, on each
-- configuration, the name of the host it was last deployed on.
CREATE TABLE hosts (
	id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name          TEXT    NOT NULL UNIQUE CHECK (name <> ''),
	advertise_url TEXT    NOT NULL,
	state         TEXT    NOT NULL CHECK (state IN ('active', 'draining', 'removed')),
	memory_mib    INTEGER NOT NULL,
	cpus          INTEGER NOT NULL,
	started_at    BIGINT  NOT NULL,
	last_seen     BIGINT  NOT NULL,
	created_at    BIGINT  NOT NULL
);
ALTER TABLE configs ADD COLUMN host TEXT NOT NULL DEFAULT '';
CREATE INDEX configs_host ON configs(host) WHERE host <> '';
