-- The schema of store/sqlite at its version 6, in PostgreSQL's terms.
--
-- Ids are identities that are never reused (what AUTOINCREMENT gives
-- SQLite: ids live on in other rows, lists and host names). Times are unix
-- nanoseconds in BIGINT, NULL for never/none: the store's contract keeps a
-- given time to the nanosecond, and TIMESTAMPTZ keeps microseconds.
-- Addresses are INET, subnets CIDR; lists are arrays, address pools JSONB.
-- Every unique rule of SQLite's schema (names, paths, MACs, and an address
-- once per network) is a unique constraint or index here too: concurrent
-- writers on several hosts rely on them.

CREATE TABLE organizations (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name       TEXT   NOT NULL UNIQUE,
	created_at BIGINT NOT NULL
);

CREATE TABLE workspaces (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	-- An organization with workspaces cannot be deleted.
	org_id     BIGINT NOT NULL REFERENCES organizations(id) ON DELETE RESTRICT,
	name       TEXT   NOT NULL,
	kind       TEXT   NOT NULL CHECK (kind IN ('shared', 'private')),
	created_at BIGINT NOT NULL,
	UNIQUE (org_id, name)
);

CREATE TABLE users (
	id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name          TEXT    NOT NULL UNIQUE,
	email         TEXT,             -- NULL: none; unique without case
	display_name  TEXT    NOT NULL,
	password_hash TEXT,             -- NULL: no password login
	disabled      BOOLEAN NOT NULL,
	system_admin  BOOLEAN NOT NULL,
	default_workspace_id BIGINT REFERENCES workspaces(id) ON DELETE SET NULL,
	created_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (lower(email));
CREATE INDEX users_default_workspace ON users(default_workspace_id) WHERE default_workspace_id IS NOT NULL;

CREATE TABLE groups (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	org_id     BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
	name       TEXT   NOT NULL,
	created_at BIGINT NOT NULL,
	UNIQUE (org_id, name)
);

CREATE TABLE group_members (
	group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
	user_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

CREATE TABLE memberships (
	user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	workspace_id BIGINT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
	role         TEXT   NOT NULL CHECK (role <> ''),
	PRIMARY KEY (user_id, workspace_id)
);
CREATE INDEX memberships_workspace ON memberships(workspace_id);

CREATE TABLE org_admins (
	org_id  BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
	user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_admins_user ON org_admins(user_id);

-- Objects carry a workspace and an owner: neither can be deleted while an
-- object refers to it (the lab moves or deletes the objects first).

CREATE TABLE templates (
	id           BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name         TEXT     NOT NULL UNIQUE,
	description  TEXT     NOT NULL,
	cpus         INTEGER  NOT NULL,
	memory_mib   INTEGER  NOT NULL,
	layer_ids    BIGINT[] NOT NULL, -- in disk order
	kernel       TEXT     NOT NULL,
	initrd       TEXT     NOT NULL,
	cmdline      TEXT     NOT NULL,
	created_at   BIGINT   NOT NULL,
	workspace_id BIGINT   REFERENCES workspaces(id),
	owner_id     BIGINT   REFERENCES users(id)
);

CREATE TABLE layers (
	id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	path         TEXT    NOT NULL UNIQUE,
	-- A parent with children cannot be deleted.
	parent_id    BIGINT  REFERENCES layers(id) ON DELETE RESTRICT,
	frozen       BOOLEAN NOT NULL,
	-- No foreign key: the lab clears it before it deletes the template.
	template_id  BIGINT,
	virtual_size BIGINT  NOT NULL,
	created_at   BIGINT  NOT NULL
);
CREATE INDEX layers_parent ON layers(parent_id);

CREATE TABLE networks (
	id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name         TEXT   NOT NULL UNIQUE,
	subnet       CIDR,
	gateway      INET,
	dns          INET[] NOT NULL,
	pools        JSONB  NOT NULL, -- [{"first","last"}]
	created_at   BIGINT NOT NULL,
	workspace_id BIGINT REFERENCES workspaces(id),
	owner_id     BIGINT REFERENCES users(id)
);

CREATE TABLE allocations (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	network_id BIGINT NOT NULL REFERENCES networks(id) ON DELETE RESTRICT,
	ip         INET   NOT NULL,
	kind       TEXT   NOT NULL,
	holder     TEXT   NOT NULL,
	created_at BIGINT NOT NULL,
	-- An address is held once per network, whoever asks and from which host.
	UNIQUE (network_id, ip)
);
-- Rows of one network in id order (ListAllocations).
CREATE INDEX allocations_network ON allocations(network_id, id);

CREATE TABLE configs (
	id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name         TEXT    NOT NULL UNIQUE,
	description  TEXT    NOT NULL,
	owner        TEXT    NOT NULL,
	state        TEXT    NOT NULL,
	fenced       BOOLEAN NOT NULL,
	fence_policy TEXT    NOT NULL,
	last_error   TEXT    NOT NULL,
	created_at   BIGINT  NOT NULL,
	updated_at   BIGINT  NOT NULL,
	kind         TEXT    NOT NULL DEFAULT 'config',
	workspace_id BIGINT  REFERENCES workspaces(id),
	owner_id     BIGINT  REFERENCES users(id)
);

CREATE TABLE vms (
	id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	config_id   BIGINT  NOT NULL REFERENCES configs(id) ON DELETE CASCADE,
	name        TEXT    NOT NULL,
	-- Informational once created: a template may go while its VMs stay.
	template_id BIGINT,
	cpus        INTEGER NOT NULL,
	memory_mib  INTEGER NOT NULL,
	state       TEXT    NOT NULL,
	UNIQUE (config_id, name)
);

CREATE TABLE disks (
	id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	vm_id        BIGINT  NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
	idx          INTEGER NOT NULL,
	top_layer_id BIGINT  NOT NULL REFERENCES layers(id) ON DELETE RESTRICT,
	UNIQUE (vm_id, idx)
);
CREATE INDEX disks_top_layer ON disks(top_layer_id);

CREATE TABLE nics (
	id                     BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	vm_id                  BIGINT  NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
	idx                    INTEGER NOT NULL,
	network_id             BIGINT  NOT NULL REFERENCES networks(id) ON DELETE RESTRICT,
	mac                    TEXT    NOT NULL CONSTRAINT nics_mac_key UNIQUE,
	ip_mode                TEXT    NOT NULL,
	ip                     INET,
	allocation_id          BIGINT  REFERENCES allocations(id) ON DELETE RESTRICT,
	external_allocation_id BIGINT  REFERENCES allocations(id),
	UNIQUE (vm_id, idx)
);
CREATE INDEX nics_network ON nics(network_id);
CREATE INDEX nics_allocation ON nics(allocation_id);
-- Deleting an allocation checks that no NIC maps it.
CREATE INDEX nics_external_allocation ON nics(external_allocation_id);

CREATE TABLE ops (
	id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind          TEXT    NOT NULL,
	subject       TEXT    NOT NULL,
	created_files TEXT[]  NOT NULL,
	frozen_files  TEXT[]  NOT NULL,
	remove_files  TEXT[]  NOT NULL,
	committed     BOOLEAN NOT NULL,
	started_at    BIGINT  NOT NULL
);

CREATE TABLE archives (
	id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name         TEXT   NOT NULL UNIQUE,
	source       TEXT   NOT NULL,
	dir          TEXT   NOT NULL UNIQUE,
	manifest     BYTEA  NOT NULL, -- JSON, owned by the lab
	size         BIGINT NOT NULL,
	created_at   BIGINT NOT NULL,
	workspace_id BIGINT REFERENCES workspaces(id),
	owner_id     BIGINT REFERENCES users(id)
);

-- Lease times are unix nanoseconds, 0 for none.
CREATE TABLE leases (
	id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	config_id       BIGINT UNIQUE REFERENCES configs(id) ON DELETE CASCADE,
	archive_id      BIGINT UNIQUE REFERENCES archives(id) ON DELETE CASCADE,
	storage_expires BIGINT NOT NULL,
	expired_at      BIGINT NOT NULL,
	deploy_lease    BIGINT NOT NULL, -- nanoseconds
	deploy_expires  BIGINT NOT NULL,
	undeploy_action TEXT   NOT NULL,
	last_used       BIGINT NOT NULL,
	CHECK ((config_id IS NULL) <> (archive_id IS NULL))
);

CREATE TABLE events (
	id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- followers resume after one
	at      BIGINT NOT NULL,
	actor   TEXT   NOT NULL,
	action  TEXT   NOT NULL,
	object  TEXT   NOT NULL,
	subject TEXT   NOT NULL,
	result  TEXT   NOT NULL,
	detail  TEXT   NOT NULL
);
CREATE INDEX events_at ON events(at);

CREATE TABLE tokens (
	id                    TEXT   PRIMARY KEY CHECK (id <> ''),
	user_id               BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	hash                  BYTEA  NOT NULL,
	kind                  TEXT   NOT NULL CHECK (kind IN ('api', 'session', 'console')),
	name                  TEXT   NOT NULL,
	created_at            BIGINT NOT NULL,
	expires_at            BIGINT,
	last_used_at          BIGINT,
	revoked_at            BIGINT,
	-- A token must not outlive the workspace it is restricted to: were the
	-- restriction cleared instead, the token would act everywhere.
	restrict_workspace_id BIGINT REFERENCES workspaces(id) ON DELETE CASCADE,
	restrict_role         TEXT,
	console_config_id     BIGINT REFERENCES configs(id) ON DELETE CASCADE,
	console_vm            TEXT,
	CHECK ((kind = 'console') = (console_config_id IS NOT NULL AND console_vm IS NOT NULL))
);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE INDEX tokens_expires ON tokens(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tokens_restrict_workspace ON tokens(restrict_workspace_id) WHERE restrict_workspace_id IS NOT NULL;
CREATE INDEX tokens_console_config ON tokens(console_config_id) WHERE console_config_id IS NOT NULL;

CREATE TABLE shares (
	id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	object_kind      TEXT   NOT NULL CHECK (object_kind IN ('config', 'template', 'network', 'archive')),
	object_id        BIGINT NOT NULL,
	grantee_user_id  BIGINT REFERENCES users(id) ON DELETE CASCADE,
	grantee_group_id BIGINT REFERENCES groups(id) ON DELETE CASCADE,
	level            TEXT   NOT NULL CHECK (level IN ('full', 'change', 'read', 'console')),
	created_at       BIGINT NOT NULL,
	CHECK ((grantee_user_id IS NULL) <> (grantee_group_id IS NULL)),
	UNIQUE (object_kind, object_id, grantee_user_id),
	UNIQUE (object_kind, object_id, grantee_group_id)
);
CREATE INDEX shares_user ON shares(grantee_user_id, object_kind, object_id) WHERE grantee_user_id IS NOT NULL;
CREATE INDEX shares_group ON shares(grantee_group_id, object_kind, object_id) WHERE grantee_group_id IS NOT NULL;

CREATE TABLE quotas (
	scope        TEXT   NOT NULL CHECK (scope IN ('user', 'workspace')),
	scope_id     BIGINT NOT NULL,
	stored_vms   BIGINT NOT NULL,
	deployed_vms BIGINT NOT NULL,
	vcpus        BIGINT NOT NULL,
	memory_mib   BIGINT NOT NULL,
	disk_gib     BIGINT NOT NULL,
	PRIMARY KEY (scope, scope_id)
);

-- The visibility filter reads objects by workspace (and owner, for private
-- workspaces) and by owner (user quotas, DeleteUser).
CREATE INDEX templates_workspace ON templates(workspace_id, owner_id);
CREATE INDEX templates_owner     ON templates(owner_id);
CREATE INDEX networks_workspace  ON networks(workspace_id, owner_id);
CREATE INDEX networks_owner      ON networks(owner_id);
CREATE INDEX configs_workspace   ON configs(workspace_id, owner_id);
CREATE INDEX configs_owner       ON configs(owner_id);
CREATE INDEX archives_workspace  ON archives(workspace_id, owner_id);
CREATE INDEX archives_owner      ON archives(owner_id);
CREATE INDEX vms_config          ON vms(config_id);

-- Shares and quotas name their object or scope by kind and id, which no
-- foreign key can express; triggers delete them with what they name.
CREATE FUNCTION unshare() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM shares WHERE object_kind = TG_ARGV[0] AND object_id = OLD.id;
	RETURN NULL;
END $$;
CREATE TRIGGER configs_unshare   AFTER DELETE ON configs   FOR EACH ROW EXECUTE FUNCTION unshare('config');
CREATE TRIGGER templates_unshare AFTER DELETE ON templates FOR EACH ROW EXECUTE FUNCTION unshare('template');
CREATE TRIGGER networks_unshare  AFTER DELETE ON networks  FOR EACH ROW EXECUTE FUNCTION unshare('network');
CREATE TRIGGER archives_unshare  AFTER DELETE ON archives  FOR EACH ROW EXECUTE FUNCTION unshare('archive');

CREATE FUNCTION unquota() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM quotas WHERE scope = TG_ARGV[0] AND scope_id = OLD.id;
	RETURN NULL;
END $$;
CREATE TRIGGER users_unquota      AFTER DELETE ON users      FOR EACH ROW EXECUTE FUNCTION unquota('user');
CREATE TRIGGER workspaces_unquota AFTER DELETE ON workspaces FOR EACH ROW EXECUTE FUNCTION unquota('workspace');

-- A new store holds the organization 'default' with its shared workspace 'main'.
INSERT INTO organizations (name, created_at)
	VALUES ('default', (extract(epoch FROM clock_timestamp()) * 1e9)::bigint);
INSERT INTO workspaces (org_id, name, kind, created_at)
	SELECT id, 'main', 'shared', created_at FROM organizations WHERE name = 'default';
