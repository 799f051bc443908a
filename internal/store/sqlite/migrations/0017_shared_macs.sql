-- rebuild
-- Instant fenced copies (issue 15): a copy that resumes another
-- configuration's saved memory state keeps that configuration's MACs
-- (the guest has them in memory), and is only ever deployed fenced. A
-- MAC stays unique among every other NIC: shared_mac marks a copy's NICs,
-- which the partial unique index leaves out. SQLite cannot drop a column
-- constraint, so the table is rebuilt (same columns, ids and indexes).
CREATE TABLE nics_v17 (
	id                     INTEGER PRIMARY KEY AUTOINCREMENT,
	vm_id                  INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
	idx                    INTEGER NOT NULL,
	network_id             INTEGER NOT NULL REFERENCES networks(id) ON DELETE RESTRICT,
	mac                    TEXT    NOT NULL,
	ip_mode                TEXT    NOT NULL,
	ip                     TEXT,
	allocation_id          INTEGER REFERENCES allocations(id) ON DELETE RESTRICT,
	external_allocation_id INTEGER REFERENCES allocations(id),
	shared_mac             INTEGER NOT NULL DEFAULT 0,
	UNIQUE (vm_id, idx)
) STRICT;
INSERT INTO nics_v17 (id, vm_id, idx, network_id, mac, ip_mode, ip, allocation_id, external_allocation_id)
	SELECT id, vm_id, idx, network_id, mac, ip_mode, ip, allocation_id, external_allocation_id FROM nics;
DROP TABLE nics;
ALTER TABLE nics_v17 RENAME TO nics;
CREATE INDEX nics_network ON nics(network_id);
CREATE INDEX nics_allocation ON nics(allocation_id);
-- Deleting an allocation checks that no NIC maps it.
CREATE INDEX nics_external_allocation ON nics(external_allocation_id);
CREATE UNIQUE INDEX nics_mac ON nics(mac) WHERE shared_mac = 0;
CREATE INDEX nics_mac_shared ON nics(mac) WHERE shared_mac = 1;
