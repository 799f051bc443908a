-- Fresh guest identity (issue 15): each VM's cloud-init instance-id (new
-- on every copy, never copied) and hostname ('' is the default,
-- VM-CONFIG); each template's user-data and whether its VMs get a seed.
ALTER TABLE vms ADD COLUMN instance_id TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN hostname TEXT NOT NULL DEFAULT '';
-- VMs made before: an instance-id of their own, "i-" and 16 hex digits.
UPDATE vms SET instance_id = 'i-' || lower(hex(randomblob(8))) WHERE instance_id = '';

ALTER TABLE templates ADD COLUMN user_data BLOB NOT NULL DEFAULT x'';
ALTER TABLE templates ADD COLUMN no_seed INTEGER NOT NULL DEFAULT 0;
