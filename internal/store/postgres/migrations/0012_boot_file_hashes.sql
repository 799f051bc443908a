-- Kernel-boot templates move between hosts (issue 13): a template's boot
-- files (kernel, initrd under DATA/files) never change after import, so
-- they are content-addressed like frozen layers. A host adopting a
-- configuration pulls the ones it lacks by these hashes ('' and 0: no
-- such file, or a template imported before hashes were recorded).
ALTER TABLE templates ADD COLUMN kernel_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE templates ADD COLUMN kernel_size BIGINT NOT NULL DEFAULT 0;
ALTER TABLE templates ADD COLUMN initrd_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE templates ADD COLUMN initrd_size BIGINT NOT NULL DEFAULT 0;
