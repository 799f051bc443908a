-- Many hosts (issue 13): how peers authenticate and reach a host; which
-- frozen layers (content-addressed by SHA-256) each host holds; the queue of
-- host-local work other hosts decide; VXLAN identifiers of spread fences;
-- the host a VM of a spread deployment runs on.
ALTER TABLE hosts ADD COLUMN secret_hash BLOB NOT NULL DEFAULT x'';
ALTER TABLE hosts ADD COLUMN cert_fingerprint TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN underlay TEXT NOT NULL DEFAULT '';

-- sha256 is empty until the layer is frozen.
ALTER TABLE layers ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE layers ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
CREATE INDEX layers_sha256 ON layers(sha256) WHERE sha256 <> '';

CREATE TABLE host_layers (
	host_id  INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
	layer_id INTEGER NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
	PRIMARY KEY (host_id, layer_id)
) STRICT;
CREATE INDEX host_layers_layer ON host_layers(layer_id);

CREATE TABLE work (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	host_id    INTEGER NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
	kind       TEXT    NOT NULL CHECK (kind <> ''),
	subject    TEXT    NOT NULL,
	payload    BLOB    NOT NULL,
	state      TEXT    NOT NULL CHECK (state IN ('queued', 'claimed', 'done', 'failed')),
	attempts   INTEGER NOT NULL,
	error      TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	claimed_at INTEGER NOT NULL,
	done_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX work_queue ON work(host_id, state, id);
CREATE INDEX work_subject ON work(subject);

CREATE TABLE fence_vnis (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	config_id  INTEGER NOT NULL REFERENCES configs(id) ON DELETE CASCADE,
	network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
	vni        INTEGER NOT NULL UNIQUE CHECK (vni BETWEEN 1 AND 16777215),
	UNIQUE (config_id, network_id)
) STRICT;

ALTER TABLE vms ADD COLUMN host TEXT NOT NULL DEFAULT '';
