-- Instant fenced copies (issue 15): a copy that resumes another
-- configuration's saved memory state keeps that configuration's MACs
-- (the guest has them in memory), and is only ever deployed fenced. A
-- MAC stays unique among every other NIC: shared_mac marks a copy's NICs,
-- which the partial unique index leaves out.
ALTER TABLE nics ADD COLUMN shared_mac BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE nics DROP CONSTRAINT nics_mac_key;
CREATE UNIQUE INDEX nics_mac_key ON nics(mac) WHERE NOT shared_mac;
CREATE INDEX nics_mac_shared ON nics(mac) WHERE shared_mac;
