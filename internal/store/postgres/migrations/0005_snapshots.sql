-- Snapshot trees of configurations (issue 15): a snapshot names, for each
-- disk of each VM, the frozen layer that was the disk's top when it was
-- taken, and for each VM the saved memory and device state (--with-state).
-- parent_id is the snapshot the configuration continued from when it was
-- taken; the lab re-parents the children before it deletes one.
CREATE TABLE snapshots (
	id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	config_id  BIGINT  NOT NULL REFERENCES configs(id) ON DELETE CASCADE,
	parent_id  BIGINT  REFERENCES snapshots(id),
	name       TEXT    NOT NULL CHECK (name <> ''),
	created_at BIGINT  NOT NULL,
	with_state BOOLEAN NOT NULL,
	UNIQUE (config_id, name)
);

-- A layer a snapshot names is kept while the snapshot exists.
CREATE TABLE snapshot_disks (
	snapshot_id BIGINT  NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
	vm_id       BIGINT  NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
	disk_index  INTEGER NOT NULL,
	layer_id    BIGINT  NOT NULL REFERENCES layers(id),
	PRIMARY KEY (snapshot_id, vm_id, disk_index)
);
CREATE INDEX snapshot_disks_layer ON snapshot_disks(layer_id);

CREATE TABLE snapshot_states (
	snapshot_id BIGINT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
	vm_id       BIGINT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
	path        TEXT   NOT NULL UNIQUE,
	PRIMARY KEY (snapshot_id, vm_id)
);
