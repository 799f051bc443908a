-- Many hosts (issue 13): how peers authenticate and reach a host; which
-- frozen layers (content-addressed by SHA-256) each host holds; the queue of
-- host-local work other hosts decide; VXLAN identifiers of spread fences;
-- the host a VM of a spread deployment runs on.
ALTER TABLE hosts ADD COLUMN secret_hash BYTEA NOT NULL DEFAULT '\x';
ALTER TABLE hosts ADD COLUMN cert_fingerprint TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN underlay TEXT NOT NULL DEFAULT '';

-- sha256 is empty until the layer is frozen.
ALTER TABLE layers ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE layers ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
CREATE INDEX layers_sha256 ON layers(sha256) WHERE sha256 <> '';

CREATE TABLE host_layers (
	host_id  BIGINT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
	layer_id BIGINT NOT NULL REFERENCES layers(id) ON DELETE CASCADE,
	PRIMARY KEY (host_id, layer_id)
);
CREATE INDEX host_layers_layer ON host_layers(layer_id);

CREATE TABLE work (
	id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	host_id    BIGINT  NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
	kind       TEXT    NOT NULL CHECK (kind <> ''),
	subject    TEXT    NOT NULL,
	payload    BYTEA   NOT NULL,
	state      TEXT    NOT NULL CHECK (state IN ('queued', 'claimed', 'done', 'failed')),
	attempts   INTEGER NOT NULL,
	error      TEXT    NOT NULL,
	created_at BIGINT  NOT NULL,
	claimed_at BIGINT  NOT NULL,
	done_at    BIGINT  NOT NULL
);
CREATE INDEX work_queue ON work(host_id, state, id);
CREATE INDEX work_subject ON work(subject);

CREATE TABLE fence_vnis (
	id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	config_id  BIGINT  NOT NULL REFERENCES configs(id) ON DELETE CASCADE,
	network_id BIGINT  NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
	vni        INTEGER NOT NULL UNIQUE CHECK (vni BETWEEN 1 AND 16777215),
	UNIQUE (config_id, network_id)
);

ALTER TABLE vms ADD COLUMN host TEXT NOT NULL DEFAULT '';
